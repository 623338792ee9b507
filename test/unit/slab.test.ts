// Goal: arrays cut from a Slab (src/util/slab.ts) never share bytes, start 8-byte aligned, come
// zeroed, and keep at most one slab alive each; an array over a quarter of a slab is its own.
// Method: cut arrays of 0–600 bytes from 2 KiB slabs, fill each with its own byte, then check
// every array still holds only its byte, and where each one lives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Slab } from '../../src/util/slab.js';

test('arrays cut from slabs are disjoint, aligned and zeroed; large ones get their own buffer', () => {
  const slab = new Slab(2048);
  const arrays: Uint8Array[] = [];
  for (let i = 0; i < 200; i++) {
    const length = (i * 37) % 601;
    const array = slab.alloc(length);
    assert.equal(array.length, length);
    assert.ok(array.every((byte) => byte === 0), 'a fresh array is zeroed');
    array.fill(i % 251 + 1);
    arrays.push(array);
  }
  const slabs = new Set<ArrayBufferLike>();
  for (let i = 0; i < arrays.length; i++) {
    const array = arrays[i];
    assert.ok(array.every((byte) => byte === i % 251 + 1), `array ${i} was written over`);
    if (array.length > 512) {
      assert.equal(array.buffer.byteLength, array.length, 'over a quarter of a slab: a buffer of its own');
      continue;
    }
    assert.equal(array.buffer.byteLength, 2048);
    assert.equal(array.byteOffset % 8, 0);
    slabs.add(array.buffer);
  }
  assert.ok(slabs.size > 1 && slabs.size < arrays.length, `${slabs.size} slabs`);
});

// Goal: crc32c() computes CRC-32C (Castagnoli) exactly. Method: published check vectors (the
// "123456789" check value, RFC 3720 B.4 iSCSI vectors), continuation of a running checksum, and a
// cross-check of the slicing-by-8 loop against the byte-at-a-time reference on random inputs of
// every length 0..200 and odd alignments.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32c, crc32cBytewise, crc32cRange } from '../../../src/wal/crc32c.js';

test('check value of "123456789" is 0xE3069283', () => {
  assert.equal(crc32c(Buffer.from('123456789', 'ascii')), 0xe3069283);
});

test('empty input has CRC 0', () => {
  assert.equal(crc32c(new Uint8Array(0)), 0);
});

test('RFC 3720 B.4 vectors', () => {
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e);
  assert.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c);
});

test('a running checksum continues across chunks', () => {
  const bytes = Buffer.from('The quick brown fox jumps over the lazy dog, several times over.');
  const whole = crc32c(bytes);
  for (let split = 0; split <= bytes.length; split++) {
    assert.equal(crc32c(bytes.subarray(split), crc32c(bytes.subarray(0, split))), whole, `split at ${split}`);
  }
});

test('slicing-by-8 matches the bytewise reference for every length and alignment', () => {
  let seed = 12345;
  const next = (): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed >>> 24;
  };
  const pool = Uint8Array.from({ length: 512 }, next);
  for (let length = 0; length <= 200; length++) {
    for (const start of [0, 1, 3, 7]) {
      const view = pool.subarray(start, start + length);
      assert.equal(crc32c(view), crc32cBytewise(view), `length ${length} start ${start}`);
      assert.equal(crc32c(view, 0xdeadbeef), crc32cBytewise(view, 0xdeadbeef));
      assert.equal(crc32cRange(pool, start, start + length, 0x1234), crc32cBytewise(view, 0x1234));
    }
  }
});

// Goal: ChunkQueue gives back length-prefixed messages whole and in order however their bytes were
// split into chunks (the prefix itself split, several messages in one chunk, empty chunks), each
// as a copy of its own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChunkQueue } from '../../../src/util/grpc-fast-path.js';

function framed(payload: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(payload.length, 1);
  return Buffer.concat([prefix, payload]);
}

function drain(queue: ChunkQueue): Buffer[] {
  const out: Buffer[] = [];
  while (queue.holdsMessage()) out.push(queue.take(5 + queue.messageLength()).subarray(5));
  return out;
}

test('messages split at every byte boundary, and many per chunk, come back whole and in order', () => {
  const payloads = [Buffer.alloc(0), Buffer.from('a'), Buffer.alloc(300, 7), Buffer.from('last message')];
  const bytes = Buffer.concat(payloads.map(framed));
  for (const size of [1, 2, 3, 4, 5, 6, 7, 13, 64, bytes.length]) {
    const queue = new ChunkQueue();
    const got: Buffer[] = [];
    for (let at = 0; at < bytes.length; at += size) {
      queue.push(Buffer.alloc(0));
      queue.push(bytes.subarray(at, at + size));
      got.push(...drain(queue));
    }
    assert.deepEqual(got.map((b) => b.toString('hex')), payloads.map((b) => b.toString('hex')), `chunks of ${size}`);
    assert.equal(queue.bytes, 0);
    assert.equal(queue.holdsMessage(), false);
  }
});

test('a message taken is a copy: the chunks it came from can change afterwards', () => {
  const chunk = framed(Buffer.from('hello'));
  const queue = new ChunkQueue();
  queue.push(chunk);
  const taken = queue.take(chunk.length);
  chunk.fill(0);
  assert.equal(taken.subarray(5).toString(), 'hello');
});

// Goal: entry data made by encodeEnvelope owns exactly its bytes. Entry data stays alive as long
// as its entry is in the in-memory Raft log (up to --snapshot-count entries); msgpackr packs all
// its Packrs into one module-wide buffer that only grows, so a view into it kept megabytes alive (a
// leader that had loaded 1M keys held about three times its log in such buffers).
// Method: grow the packer's buffer with a large request, then encode small and large envelopes
// and check that each one's backing buffer is its own and the size of its bytes, and that it
// decodes back to the same request.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeEnvelope, encodeEnvelope, type InternalRequest } from '../../../src/server/requests.js';

function put(key: string, valueBytes: number): InternalRequest {
  return { type: 'put', request: { key: Buffer.from(key), value: Buffer.alloc(valueBytes, 7), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } };
}

test('encoded entry data is not a view into a shared buffer', () => {
  encodeEnvelope({ id: 1n, request: put('big', 1_500_000) }); // grows the packer's buffer past 1 MB
  const encoded: Uint8Array[] = [];
  for (let i = 0; i < 50; i++) encoded.push(encodeEnvelope({ id: BigInt(i + 2), request: put(`key-${i}`, i % 5 === 0 ? 30_000 : 256) }));
  const buffers = new Set<ArrayBufferLike>();
  for (const data of encoded) {
    assert.equal(data.byteOffset, 0);
    assert.equal(data.buffer.byteLength, data.byteLength, 'the backing buffer holds this entry only');
    buffers.add(data.buffer);
  }
  assert.equal(buffers.size, encoded.length);
  const decoded = decodeEnvelope(encoded[5]);
  assert.equal(decoded.id, 7n);
  assert.ok(decoded.request.type === 'put');
  assert.equal(Buffer.from(decoded.request.request.key).toString(), 'key-5');
  assert.equal(decoded.request.request.value.byteLength, 30_000);
});

// Goal: entry data made by encodeEnvelope never keeps more than a few KiB of other bytes alive.
// Entry data stays alive as long as its entry is in the in-memory Raft log (up to --snapshot-count
// entries); msgpackr packs all its Packrs into one module-wide buffer that only grows, so a view
// into it kept megabytes alive (a leader that had loaded 1M keys held about three times its log in
// such buffers). A put's envelope is cut from an 8 KiB slab of envelopes (src/util/slab.ts).
// Method: grow the packer's buffer with a large request, then encode small and large envelopes,
// puts and others, and check that each one's backing buffer is its own or a slab of at most 8 KiB,
// that no two overlap, and that each decodes back to the same request.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Packr } from 'msgpackr';
import { decodeEnvelope, encodeEnvelope, type Envelope, type InternalRequest } from '../../../src/server/requests.js';

function put(key: string, valueBytes: number): InternalRequest {
  return { type: 'put', request: { key: Buffer.from(key), value: Buffer.alloc(valueBytes, 7), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } };
}

test('encoded entry data is not a view into a shared buffer but for a small slab of entries', () => {
  encodeEnvelope({ id: 1n, request: put('big', 1_500_000) }); // grows the packer's buffer past 1 MB
  const encoded: Uint8Array[] = [];
  for (let i = 0; i < 60; i++) {
    const request: InternalRequest = i % 3 === 2 ? { type: 'lease-grant', id: BigInt(i), ttlSeconds: 10 } : put(`key-${i}`, i % 5 === 0 ? 30_000 : 256);
    encoded.push(encodeEnvelope({ id: BigInt(i + 2), request }));
  }
  const ranges = new Map<ArrayBufferLike, Array<[number, number]>>();
  for (const data of encoded) {
    assert.ok(data.buffer.byteLength === data.byteLength || data.buffer.byteLength <= 8 * 1024, `entry data of ${data.byteLength} bytes in a buffer of ${data.buffer.byteLength}`);
    const taken = ranges.get(data.buffer) ?? [];
    for (const [start, end] of taken) assert.ok(data.byteOffset >= end || data.byteOffset + data.byteLength <= start, 'no two entries share bytes');
    taken.push([data.byteOffset, data.byteOffset + data.byteLength]);
    ranges.set(data.buffer, taken);
  }
  assert.ok(ranges.size < encoded.length, 'small puts share slabs');
  for (let i = 0; i < encoded.length; i++) {
    const decoded = decodeEnvelope(encoded[i]);
    assert.equal(decoded.id, BigInt(i + 2));
    if (i % 3 === 2) {
      assert.deepEqual(decoded.request, { type: 'lease-grant', id: BigInt(i), ttlSeconds: 10 });
      continue;
    }
    assert.ok(decoded.request.type === 'put');
    assert.equal(Buffer.from(decoded.request.request.key).toString(), `key-${i}`);
    assert.equal(decoded.request.request.value.byteLength, i % 5 === 0 ? 30_000 : 256);
    assert.ok(decoded.request.request.value.every((byte) => byte === 7), 'no later entry wrote over this one');
  }
});

// Puts are written and read without msgpackr's general code, in exactly msgpackr's bytes: members of
// older builds read these entries as before, and entries written by them read the same here.
const generalPackr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true });

function putEnvelopes(): Envelope[] {
  const envelopes: Envelope[] = [];
  const ids = [1n, 0x7fff_ffff_ffff_ffffn, 0x8000_0000_0000_0000n, 0xffff_ffff_ffff_ffffn, 0x1234_5678_9abc_def0n];
  const leases = [0n, 1n, -1n, 0x7fff_ffff_ffff_ffffn, -0x8000_0000_0000_0000n];
  const sizes = [0, 1, 255, 256, 65_535, 65_536, 200_000];
  const auths: Array<Envelope['auth']> = [undefined, { user: '' }, { user: 'root' }, { user: 'a'.repeat(31) }, { user: 'svc', tokenRevision: 0 }, { user: 'svc', tokenRevision: 127 }, { user: 'svc', tokenRevision: 128 }, { user: 'svc', tokenRevision: 70_000 }, { user: 'svc', tokenRevision: 0xffff_ffff }];
  let n = 0;
  for (const id of ids) {
    for (const lease of leases) {
      for (const size of sizes) {
        const auth = auths[n % auths.length];
        const flags = n % 8;
        n += 1;
        const request: InternalRequest = { type: 'put', request: { key: Buffer.from(`k${n}`), value: Buffer.alloc(size, n), lease, prevKv: (flags & 1) !== 0, ignoreValue: (flags & 2) !== 0, ignoreLease: (flags & 4) !== 0 } };
        envelopes.push(auth === undefined ? { id, request } : { id, request, auth });
      }
    }
  }
  return envelopes;
}

test("a put's entry data is byte for byte msgpackr's, and reads back as msgpackr reads it", () => {
  for (const envelope of putEnvelopes()) {
    const encoded = encodeEnvelope(envelope);
    assert.deepEqual(Buffer.from(encoded), Buffer.from(generalPackr.pack(envelope)));
    for (const data of [encoded, Buffer.from(encoded), new Uint8Array([9, ...encoded]).subarray(1)]) {
      assert.deepEqual(decodeEnvelope(data), generalPackr.unpack(data));
    }
  }
});

test('other requests and unusual puts still go through msgpackr, both ways', () => {
  const others: Envelope[] = [
    { id: 5n, request: { type: 'lease-grant', id: 7n, ttlSeconds: 30 } },
    { id: 6n, request: { type: 'delete-range', request: { key: Buffer.from('a'), rangeEnd: Buffer.from('b'), prevKv: false } } },
    { id: 7n, request: put('k', 3), auth: { user: 'ü-non-ascii' } },
    { id: 8n, request: put('k', 3), auth: { user: 'x'.repeat(32) } },
    { id: 9n, request: put('k', 3), auth: { user: 'svc', tokenRevision: 2 ** 40 } },
    { id: 10n, request: put('k', 3), auth: { user: 'svc', tokenRevision: undefined } },
  ];
  for (const envelope of others) {
    const encoded = encodeEnvelope(envelope);
    assert.deepEqual(Buffer.from(encoded), Buffer.from(generalPackr.pack(envelope)));
    assert.deepEqual(decodeEnvelope(encoded), generalPackr.unpack(encoded));
  }
  // Entry data cut short, or with a byte changed: whatever decodeEnvelope answers, msgpackr answers too.
  const whole = encodeEnvelope({ id: 3n, request: put('key', 10), auth: { user: 'u', tokenRevision: 4 } });
  const variants: Uint8Array[] = [];
  for (let cut = 1; cut < whole.length; cut++) variants.push(whole.subarray(0, cut));
  for (let at = 0; at < whole.length; at++) {
    const changed = Uint8Array.from(whole);
    changed[at] ^= 0x01;
    variants.push(changed);
  }
  for (const data of variants) {
    let actual: unknown;
    try {
      actual = decodeEnvelope(data);
    } catch {
      continue; // refused: the applier stops on such an entry, as before
    }
    assert.deepEqual(actual, generalPackr.unpack(data));
  }
});

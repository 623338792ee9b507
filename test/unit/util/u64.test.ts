// Goal: u64 fields (Raft terms and indexes in the peer codec, the WAL and snapshots) decode to the
// same numbers as before and, below 2^31, to small integers V8 keeps unboxed: one decoded entry
// whose term was a heap number made every entry object of the process box its term and index.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { decodeEntries, encodeEntries } from '../../../src/transport/codec.js';
import { decodePayload, entryRecordBytes, readFrame, writeEntryRecord } from '../../../src/wal/record.js';
import { TWO_POW_32, joinU64, readU64LE, writeU64LE } from '../../../src/util/u64.js';
import type { Entry } from '../../../src/raft/types.js';

setFlagsFromString('--allow-natives-syntax');
// eslint-disable-next-line @typescript-eslint/no-implied-eval -- V8's %IsSmi is only reachable from source compiled after the flag.
const isSmi = new Function('value', 'return %IsSmi(value)') as (value: unknown) => boolean;

const entry = (term: number, index: number): Entry => ({ term, index, type: 'normal', data: new Uint8Array([1, 2, 3]) });

test('joinU64 and the little-endian reader and writer round-trip every size of value', () => {
  for (const value of [0, 1, 2 ** 31 - 1, 2 ** 31, TWO_POW_32 - 1, TWO_POW_32, TWO_POW_32 + 5, Number.MAX_SAFE_INTEGER]) {
    assert.equal(joinU64(Math.floor(value / TWO_POW_32), value >>> 0), value);
    const buffer = Buffer.alloc(8);
    writeU64LE(buffer, 0, value);
    assert.equal(readU64LE(buffer, 0), value);
  }
  const beyond = Buffer.alloc(8);
  beyond.writeUInt32LE(0x20_0000, 4);
  assert.equal(readU64LE(beyond, 0), -1, 'beyond 2^53 is refused');
  assert.throws(() => writeU64LE(Buffer.alloc(8), 0, -1));
});

test('a decoded entry keeps a small term and index as small integers (peer codec and WAL)', () => {
  const bytes = encodeEntries([entry(7, 1234), entry(7, 1235)]);
  // Often enough for V8 to optimize the decoder: both tiers must give small integers.
  for (let round = 0; round < 20_000; round++) {
    const decoded = decodeEntries(bytes);
    assert.ok(decoded.ok);
    if (round % 5_000 !== 0 && round !== 19_999) continue;
    assert.deepEqual(decoded.value.map((e) => [e.term, e.index]), [[7, 1234], [7, 1235]]);
    assert.ok(isSmi(decoded.value[0].term) && isSmi(decoded.value[1].index), `round ${round}: a small integer, not a heap number`);
  }
  const record = Buffer.alloc(entryRecordBytes(entry(9, 4321)));
  writeEntryRecord(record, 0, entry(9, 4321));
  const frame = readFrame(record, 0);
  assert.ok(frame.ok);
  const decoded = decodePayload(record, frame);
  assert.ok(typeof decoded !== 'string' && decoded.type === 'entry');
  assert.deepEqual([decoded.entry.term, decoded.entry.index], [9, 4321]);
  assert.ok(isSmi(decoded.entry.term) && isSmi(decoded.entry.index), 'a small integer, not a heap number');

  // Last: a term beyond 2^31 is a heap number, and from then on entries box theirs (as they must).
  const big = decodeEntries(encodeEntries([entry(TWO_POW_32 + 3, Number.MAX_SAFE_INTEGER)]));
  assert.ok(big.ok);
  assert.deepEqual([big.value[0].term, big.value[0].index], [TWO_POW_32 + 3, Number.MAX_SAFE_INTEGER]);
});

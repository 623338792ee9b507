// Goal: backup segments decode exactly what was encoded, and a reader stops at the first record
// it cannot trust (torn frame, torn body, checksum mismatch, revision gap, bad seal, bytes after
// the seal), reporting where and why, with the valid part's size, last revision and running CRC
// equal to what a writer that stopped there would have. Method: encode segments in memory,
// damage them in each way, read them back with SegmentReader from temp files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { SegmentReader, encodeRecord, encodeSegmentHeader, type BackupRevision, type SegmentRecord } from '../../../src/client/backup-format.js';

function revision(number: bigint, ...keys: string[]): BackupRevision {
  return {
    revision: number,
    events: keys.map((key, i) => (key.startsWith('-')
      ? { type: 'delete' as const, key: Buffer.from(key.slice(1)), value: Buffer.alloc(0), createRevision: 0n, version: 0n, lease: 0n }
      : { type: 'put' as const, key: Buffer.from(key), value: Buffer.from(`v${number}-${i}`), createRevision: number - 1n, version: BigInt(i + 1), lease: i === 0 ? 0xffff_ffff_ffff_fffen : 0n })),
  };
}

/** A segment from revision 10: leases, two revisions records, optionally sealed. */
function segment(options: { sealed: boolean }): { bytes: Buffer; records: SegmentRecord[]; recordEnds: number[] } {
  const records: SegmentRecord[] = [
    { type: 'leases', leases: [{ id: 0xffff_ffff_ffff_fffen, grantedTtlSeconds: 30 }, { id: 5n, grantedTtlSeconds: 0 }] },
    { type: 'revisions', revisions: [revision(10n, 'a', 'b'), revision(11n, '-a')] },
    { type: 'revisions', revisions: [revision(12n, 'c')] },
  ];
  const parts = [encodeSegmentHeader({ chain: 3, firstRevision: 10n })];
  const recordEnds: number[] = [];
  let size = parts[0].length;
  for (const record of records) {
    const frame = encodeRecord(record);
    parts.push(frame);
    size += frame.length;
    recordEnds.push(size);
  }
  if (options.sealed) {
    const before = Buffer.concat(parts);
    parts.push(encodeRecord({ type: 'seal', lastRevision: 12n, records: 3, crc: crc32(before) >>> 0 }));
  }
  return { bytes: Buffer.concat(parts), records, recordEnds };
}

async function read(bytes: Buffer): Promise<{ records: SegmentRecord[]; reader: SegmentReader }> {
  const dir = await mkdtemp(join(tmpdir(), 'kvd-segment-'));
  const path = join(dir, 'seg.kvseg');
  await writeFile(path, bytes);
  const reader = await SegmentReader.open(path);
  const records: SegmentRecord[] = [];
  try {
    for (;;) {
      const record = await reader.next();
      if (record === undefined) break;
      records.push(record);
    }
  } finally {
    await reader.close();
    await rm(dir, { recursive: true, force: true });
  }
  return { records, reader };
}

test('a sealed segment reads back record for record', async () => {
  const { bytes, records } = segment({ sealed: true });
  const { records: read_, reader } = await read(bytes);
  assert.deepEqual(read_.slice(0, 3), records);
  assert.equal(read_[3].type, 'seal');
  assert.equal(reader.sealed, true);
  assert.equal(reader.problem, undefined);
  assert.equal(reader.lastRevision, 12n);
  assert.equal(reader.validBytes, bytes.length);
  assert.deepEqual(reader.header, { chain: 3, firstRevision: 10n });
});

test('an open segment cut anywhere reads up to the last whole record and says why it stopped', async () => {
  const { bytes, recordEnds } = segment({ sealed: false });
  for (let cut = recordEnds[0] - 3; cut < bytes.length; cut += 7) {
    const { reader } = await read(bytes.subarray(0, cut));
    const whole = recordEnds.filter((end) => end <= cut);
    const validBytes = whole.length === 0 ? 28 : whole[whole.length - 1];
    assert.equal(reader.validBytes, validBytes, `cut at ${cut}`);
    assert.equal(reader.crc, crc32(bytes.subarray(0, validBytes)) >>> 0, 'running CRC of the valid part');
    assert.equal(reader.lastRevision, whole.length >= 3 ? 12n : whole.length === 2 ? 11n : 9n);
    assert.equal(reader.problem === undefined, cut === validBytes, `a problem is reported exactly when bytes follow the valid part (cut ${cut})`);
    assert.equal(reader.sealed, false);
  }
});

test('damage is reported: checksum mismatch, revision gap, bad seal, bytes after the seal, a foreign file', async () => {
  const { bytes, recordEnds } = segment({ sealed: true });
  const flipped = Buffer.from(bytes);
  flipped[recordEnds[0] + 20] ^= 0x01;
  assert.match((await read(flipped)).reader.problem?.why ?? '', /checksum mismatch/);
  assert.equal((await read(flipped)).reader.lastRevision, 9n);

  const gap = Buffer.concat([encodeSegmentHeader({ chain: 1, firstRevision: 10n }), encodeRecord({ type: 'revisions', revisions: [revision(11n, 'a')] })]);
  assert.match((await read(gap)).reader.problem?.why ?? '', /revision 11 where 10 was expected/);

  const open = segment({ sealed: false }).bytes;
  const badSeal = Buffer.concat([open, encodeRecord({ type: 'seal', lastRevision: 12n, records: 2, crc: crc32(open) >>> 0 })]);
  assert.match((await read(badSeal)).reader.problem?.why ?? '', /seal counts 2 records/);
  const wrongCrc = Buffer.concat([open, encodeRecord({ type: 'seal', lastRevision: 12n, records: 3, crc: 1 })]);
  assert.match((await read(wrongCrc)).reader.problem?.why ?? '', /seal checksum mismatch/);

  const trailing = Buffer.concat([bytes, Buffer.from('x')]);
  const { reader } = await read(trailing);
  assert.equal(reader.sealed, true);
  assert.match(reader.problem?.why ?? '', /data after the seal/);

  await assert.rejects(read(Buffer.from('not a segment at all, just text')), /not a backup segment/);
});

// Goal: whatever state a crash leaves a backup directory in, the next run resumes from the last
// durable revision without losing an acknowledged one: revisions fsynced but not yet
// acknowledged are adopted, a torn last record is cut off, a segment sealed just before the crash
// is recorded as sealed and followed by a new one, files the manifest does not name are removed,
// a segment missing an acknowledged revision is refused; and the reader behind point-in-time
// restore picks the right chain and yields exactly the recorded revisions. Method: directories
// built by hand with the segment encoder; runBackup with an already-aborted signal runs only its
// start-up (resume, seal) and never touches the network.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { describeBackup, planRestore, runBackup, type BackupEventReport, type Client } from '../../../src/client/index.js';
import { SegmentReader, encodeRecord, encodeSegmentHeader, type BackupRevision } from '../../../src/client/backup-format.js';
import { withTempDir } from '../temp-dir.js';

function revisions(from: bigint, to: bigint): BackupRevision[] {
  const out: BackupRevision[] = [];
  for (let r = from; r <= to; r++) out.push({ revision: r, events: [{ type: 'put', key: Buffer.from(`k${r}`), value: Buffer.from('v'), createRevision: r, version: 1n, lease: 0n }] });
  return out;
}

/** A segment of `chain` from `first` holding the given revision ranges as records; `seal` appends a seal. */
function segmentBytes(chain: number, first: bigint, ranges: Array<[bigint, bigint]>, options: { seal?: boolean } = {}): Buffer {
  const parts = [encodeSegmentHeader({ chain, firstRevision: first })];
  let last = first - 1n;
  for (const [from, to] of ranges) {
    parts.push(encodeRecord({ type: 'revisions', revisions: revisions(from, to) }));
    last = to;
  }
  if (options.seal === true) {
    const before = Buffer.concat(parts);
    parts.push(encodeRecord({ type: 'seal', lastRevision: last, records: ranges.length, crc: crc32(before) >>> 0 }));
  }
  return Buffer.concat(parts);
}

interface SegmentJson { file: string; firstRevision: string; lastRevision: string; state: 'open' | 'sealed' }

function manifest(chains: Array<{ chain: number; snapshotRevision: bigint; segments: SegmentJson[] }>): string {
  return JSON.stringify({
    format: 'kvd-backup/1',
    clusterId: 'abc',
    chains: chains.map((chain) => ({
      chain: chain.chain, reason: chain.chain === 1 ? 'start' : 'compacted', segments: chain.segments,
      snapshot: { file: `snap-${String(chain.chain).padStart(4, '0')}.snap`, revision: chain.snapshotRevision.toString(), sizeBytes: 544, memberId: '1', takenAt: '2026-01-01T00:00:00Z' },
    })),
  });
}

const withDir = (body: (dir: string) => Promise<void>): Promise<void> => withTempDir('kvd-backup-', body);

/** Runs only the start-up of a backup (the signal is already aborted: no watch, no snapshot). */
async function startUp(dir: string): Promise<{ events: BackupEventReport[]; revision: bigint }> {
  const events: BackupEventReport[] = [];
  const controller = new AbortController();
  controller.abort();
  const { revision } = await runBackup({} as Client, { dir, signal: controller.signal, onEvent: (event) => events.push(event) });
  return { events, revision };
}

async function readManifest(dir: string): Promise<{ chains: Array<{ segments: SegmentJson[] }> }> {
  return JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { chains: Array<{ segments: SegmentJson[] }> };
}

test('resume adopts fsynced but unacknowledged revisions, cuts a torn record, removes stray files and seals', () => withDir(async (dir) => {
  const full = segmentBytes(1, 11n, [[11n, 15n], [16n, 18n]]);
  const torn = Buffer.concat([full, encodeRecord({ type: 'revisions', revisions: revisions(19n, 20n) }).subarray(0, 30)]);
  await writeFile(join(dir, 'seg-0001-000001.kvseg'), torn);
  await writeFile(join(dir, 'snap-0001.snap'), 'placeholder');
  await writeFile(join(dir, 'snap-0002.snap.part'), 'an interrupted snapshot');
  await writeFile(join(dir, 'seg-0001-000002.kvseg'), 'a segment created but never named');
  await writeFile(join(dir, 'manifest.json'), manifest([{ chain: 1, snapshotRevision: 10n, segments: [{ file: 'seg-0001-000001.kvseg', firstRevision: '11', lastRevision: '15', state: 'open' }] }]));

  const { events, revision } = await startUp(dir);
  assert.equal(revision, 18n, 'revisions 16..18 were durable though not acknowledged');
  assert.deepEqual(events.find((event) => event.type === 'resumed'), { type: 'resumed', chain: 1, fromRevision: 19n, truncated: { file: 'seg-0001-000001.kvseg', droppedBytes: 30, why: 'truncated record' } });
  assert.equal(existsSync(join(dir, 'snap-0002.snap.part')), false);
  assert.equal(existsSync(join(dir, 'seg-0001-000002.kvseg')), false);
  assert.deepEqual((await readManifest(dir)).chains[0].segments, [{ file: 'seg-0001-000001.kvseg', firstRevision: '11', lastRevision: '18', state: 'sealed' }]);
  const reader = await SegmentReader.open(join(dir, 'seg-0001-000001.kvseg'));
  try {
    while ((await reader.next()) !== undefined) { /* to the end */ }
    assert.equal(reader.sealed, true);
    assert.equal(reader.problem, undefined);
    assert.equal(reader.validBytes, (await stat(join(dir, 'seg-0001-000001.kvseg'))).size);
  } finally {
    await reader.close();
  }

  // The next start finds it sealed and opens the chain's next segment (left open while empty).
  for (let run = 0; run < 2; run++) {
    const again = await startUp(dir);
    assert.equal(again.revision, 18n);
    assert.deepEqual((await readManifest(dir)).chains[0].segments.map((segment) => [segment.file, segment.firstRevision, segment.lastRevision, segment.state]), [
      ['seg-0001-000001.kvseg', '11', '18', 'sealed'],
      ['seg-0001-000002.kvseg', '19', '18', 'open'],
    ]);
  }
}));

test('a segment sealed just before a crash is recorded as sealed; one missing an acknowledged revision is refused', () => withDir(async (dir) => {
  await writeFile(join(dir, 'snap-0001.snap'), 'placeholder');
  await writeFile(join(dir, 'seg-0001-000001.kvseg'), segmentBytes(1, 11n, [[11n, 14n]], { seal: true }));
  await writeFile(join(dir, 'manifest.json'), manifest([{ chain: 1, snapshotRevision: 10n, segments: [{ file: 'seg-0001-000001.kvseg', firstRevision: '11', lastRevision: '14', state: 'open' }] }]));
  const { revision } = await startUp(dir);
  assert.equal(revision, 14n);
  assert.deepEqual((await readManifest(dir)).chains[0].segments.map((segment) => segment.state), ['sealed', 'open']);

  await writeFile(join(dir, 'seg-0001-000002.kvseg'), segmentBytes(1, 15n, [[15n, 16n]]));
  const withLoss = JSON.parse(manifest([{ chain: 1, snapshotRevision: 10n, segments: [
    { file: 'seg-0001-000001.kvseg', firstRevision: '11', lastRevision: '14', state: 'sealed' },
    { file: 'seg-0001-000002.kvseg', firstRevision: '15', lastRevision: '20', state: 'open' },
  ] }])) as object;
  await writeFile(join(dir, 'manifest.json'), JSON.stringify(withLoss));
  await assert.rejects(startUp(dir), { message: /seg-0001-000002\.kvseg ends at revision 16 but revision 20 was acknowledged/ });
  await assert.rejects(async () => {
    for await (const item of (await planRestore(dir, 16n)).revisions) void item;
  }, { message: /ends at revision 16 but revision 20 was acknowledged/ });
}));

test('point-in-time planning picks the newest chain that holds the revision and yields its revisions in order', () => withDir(async (dir) => {
  await writeFile(join(dir, 'snap-0001.snap'), 'placeholder');
  await writeFile(join(dir, 'snap-0002.snap'), 'placeholder');
  await writeFile(join(dir, 'seg-0001-000001.kvseg'), segmentBytes(1, 11n, [[11n, 20n]], { seal: true }));
  await writeFile(join(dir, 'seg-0001-000002.kvseg'), segmentBytes(1, 21n, [[21n, 25n]], { seal: true }));
  const chain2 = Buffer.concat([segmentBytes(2, 41n, [[41n, 43n]]), encodeRecord({ type: 'leases', leases: [{ id: 9n, grantedTtlSeconds: 0 }, { id: 8n, grantedTtlSeconds: 30 }] }), encodeRecord({ type: 'revisions', revisions: revisions(44n, 47n) })]);
  await writeFile(join(dir, 'seg-0002-000001.kvseg'), chain2);
  await writeFile(join(dir, 'manifest.json'), manifest([
    { chain: 1, snapshotRevision: 10n, segments: [{ file: 'seg-0001-000001.kvseg', firstRevision: '11', lastRevision: '20', state: 'sealed' }, { file: 'seg-0001-000002.kvseg', firstRevision: '21', lastRevision: '25', state: 'sealed' }] },
    { chain: 2, snapshotRevision: 40n, segments: [{ file: 'seg-0002-000001.kvseg', firstRevision: '41', lastRevision: '43', state: 'open' }] },
  ]));
  const description = await describeBackup(dir);
  assert.deepEqual(description.chains.map((chain) => [chain.chain, chain.snapshotRevision, chain.lastRevision]), [[1, 10n, 25n], [2, 40n, 47n]], 'the open segment holds more than the manifest acknowledged');

  const early = await planRestore(dir, 22n);
  assert.equal(early.chain, 1);
  const seen: bigint[] = [];
  for await (const revision of early.revisions) seen.push(revision.revision);
  assert.deepEqual(seen, revisions(11n, 25n).map((r) => r.revision));

  const late = await planRestore(dir);
  assert.deepEqual([late.chain, late.snapshotRevision, late.toRevision], [2, 40n, 47n]);
  for await (const revision of late.revisions) void revision;
  assert.deepEqual(late.leaseTtls, new Map([[9n, 0], [8n, 30]]));

  assert.equal((await planRestore(dir, 40n)).chain, 2, 'a snapshot revision itself is restorable');
  await assert.rejects(planRestore(dir, 30n), { message: /revision 30 is not restorable from .* \(restorable revisions: 10\.\.25, 40\.\.47\)/ });
  await assert.rejects(planRestore(dir, 48n), { message: /revision 48 is not restorable/ });
}));

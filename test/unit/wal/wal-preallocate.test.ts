// Goal: preallocation (zeros kept ahead of the last record, durably, written in the background)
// changes nothing about what the WAL returns: zeros after the last record are the segment's end,
// not damage; a torn record inside preallocated space is repaired like any torn tail; zeros never
// land on records, also when saves reach into a region still being zero-filled (a zero-fill slowed
// down on purpose); segments left behind by rotations end at their last record, and zeros at the
// end of an older segment read as its end too.
// Method: small preallocation sizes so that zero-fills are in flight under the saves; damage the
// files directly (zero the end of the last record at every byte offset, as a write torn inside
// preallocated space leaves it) and reopen.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import type { Entry } from '../../../src/raft/types.js';
import { Wal } from '../../../src/wal/index.js';
import type { WalEvent } from '../../../src/wal/index.js';
import { withTempDir } from '../temp-dir.js';

const withDir = (body: (dir: string) => Promise<void>): Promise<void> => withTempDir('kvd-wal-prealloc-', body);

function entry(index: number, text = `entry ${index}, a few bytes of payload`): Entry {
  return { index, term: 1, type: 'normal', data: Buffer.from(text) };
}

function plain(entries: readonly Entry[]): string[] {
  return entries.map((e) => `${e.index}/${e.term}/${Buffer.from(e.data).toString('latin1')}`);
}

function isZero(bytes: Buffer): boolean {
  return bytes.every((byte) => byte === 0);
}

test('a segment is kept zero-filled ahead of its last record; reopening reads the zeros as its end, with no repair', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir, preallocateBytes: 64 * 1024 });
    for (let i = 1; i <= 20; i++) await wal.save({ hardState: { term: 1, vote: 1n, commit: i - 1 }, entries: [entry(i)] });
    await wal.close(); // waits for a zero-fill in flight
    const [segment] = wal.segmentPaths();
    const bytes = readFileSync(segment);
    const end = wal.writtenBytes();
    assert.ok(bytes.length >= end + 32 * 1024, `zeros ahead of the records (${bytes.length} bytes, records end at ${end})`);
    assert.ok(isZero(bytes.subarray(end)));
    const events: WalEvent[] = [];
    const { wal: again, state } = await Wal.open({ dir, logger: (event) => events.push(event) });
    assert.deepEqual(plain(state.entries), plain(Array.from({ length: 20 }, (_, i) => entry(i + 1))));
    assert.deepEqual(state.hardState, { term: 1, vote: 1n, commit: 19 });
    assert.deepEqual(events, []);
    assert.equal(statSync(segment).size, bytes.length, 'preallocated space is not cut on open');
    // Writing goes on where the records end, over the zeros.
    await again.save({ entries: [entry(21)] });
    await again.close();
    const third = await Wal.open({ dir });
    assert.equal(third.state.entries.length, 21);
    await third.wal.close();
  });
});

test('a record torn inside preallocated space (its end still zeros) is repaired at every byte offset', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir, preallocateBytes: 16 * 1024 });
    for (let i = 1; i <= 9; i++) await wal.save({ hardState: { term: 1, vote: 1n, commit: i - 1 }, entries: [entry(i)] });
    const [segment] = wal.segmentPaths();
    const lastStart = wal.writtenBytes();
    await wal.save({ entries: [entry(10, 'the last record, long enough to tear in many places')] });
    const lastEnd = wal.writtenBytes();
    await wal.close();
    const bytes = readFileSync(segment);
    assert.ok(lastEnd > lastStart && bytes.length > lastEnd);
    for (let cut = lastStart; cut < lastEnd; cut++) {
      const torn = Buffer.from(bytes);
      torn.fill(0, cut, lastEnd);
      writeFileSync(segment, torn);
      const events: WalEvent[] = [];
      const { wal: opened, state } = await Wal.open({ dir, logger: (event) => events.push(event) });
      assert.deepEqual(plain(state.entries), plain(Array.from({ length: 9 }, (_, i) => entry(i + 1))), `cut at ${cut}`);
      const repaired = events.some((event) => event.kind === 'torn-tail-truncated');
      // Only zeros from the record's start on: preallocated space, nothing to repair.
      assert.equal(repaired, cut > lastStart, `cut at ${cut}: ${JSON.stringify(events)}`);
      assert.equal(statSync(segment).size, repaired ? lastStart : bytes.length, `cut at ${cut}`);
      await opened.close();
    }
    // Garbage after the zeros is damage, not preallocation: cut at the last record.
    writeFileSync(segment, Buffer.concat([bytes, Buffer.from('not zeros')]));
    const events: WalEvent[] = [];
    const garbage = await Wal.open({ dir, logger: (event) => events.push(event) });
    assert.equal(garbage.state.entries.length, 10);
    assert.ok(events.some((event) => event.kind === 'torn-tail-truncated'));
    assert.equal(statSync(segment).size, lastEnd);
    await garbage.wal.close();
  });
});

test('saves that reach into a region still being zero-filled wait for it: zeros never land on records', async () => {
  // Every zero-fill's write is held back 20 ms (node:fs's write, which the WAL's file helpers
  // import, patched for this test), so that the saves after it reach into its region while it runs.
  const FILL = 64 * 1024;
  const nodeFs = createRequire(import.meta.url)('node:fs') as typeof import('node:fs');
  const write = nodeFs.write;
  const slowFills = ((fd: number, buffer: Buffer, ...rest: unknown[]) => {
    const delay = buffer.length === FILL && buffer.every((byte) => byte === 0) ? 20 : 0;
    setTimeout(() => (write as (...args: unknown[]) => void)(fd, buffer, ...rest), delay);
  }) as typeof nodeFs.write;
  Object.assign(nodeFs, { write: slowFills });
  syncBuiltinESMExports();
  try {
    await withDir(async (dir) => {
      const { wal } = await Wal.open({ dir, preallocateBytes: FILL });
      const expected: Entry[] = [];
      for (let i = 1; i <= 40; i++) {
        // 10-30 KiB per save: a few saves cross each 64 KiB fill while it is being written.
        const batch = [entry(i, `entry ${i} `.padEnd(10_000 + (i % 5) * 5_000, String.fromCharCode(97 + (i % 26))))];
        expected.push(...batch);
        await wal.save({ hardState: { term: 1, vote: 1n, commit: i - 1 }, entries: batch });
      }
      await wal.close();
      const events: WalEvent[] = [];
      const { wal: again, state } = await Wal.open({ dir, logger: (event) => events.push(event) });
      assert.deepEqual(plain(state.entries), plain(expected));
      assert.deepEqual(events, []);
      await again.close();
    });
  } finally {
    Object.assign(nodeFs, { write });
    syncBuiltinESMExports();
  }
});

test('segments left behind by rotations end at their last record; zeros at the end of an older segment read as its end', async () => {
  await withDir(async (dir) => {
    const saveAll = async (wal: Wal): Promise<void> => {
      for (let i = 1; i <= 120; i++) await wal.save({ hardState: { term: 1, vote: 1n, commit: i - 1 }, entries: [entry(i)] });
      await wal.close();
    };
    const { wal } = await Wal.open({ dir, segmentBytes: 4096, preallocateBytes: 2048 });
    await saveAll(wal);
    const segments = wal.segmentPaths();
    assert.ok(segments.length >= 3, `rotated (${segments.length} segments)`);
    // The segments left behind hold the same bytes as those of a WAL that never preallocates.
    await withDir(async (plainDir) => {
      const appendOnly = await Wal.open({ dir: plainDir, segmentBytes: 4096, preallocateBytes: 0 });
      await saveAll(appendOnly.wal);
      const plainSegments = appendOnly.wal.segmentPaths();
      assert.equal(plainSegments.length, segments.length);
      for (let i = 0; i < segments.length - 1; i++) assert.ok(readFileSync(segments[i]).equals(readFileSync(plainSegments[i])), `segment ${i} cut at its last record`);
    });
    // Zeros after an older segment's records (zero-fills stop at segmentBytes, so kvd leaves none).
    const older = segments[1];
    writeFileSync(older, Buffer.concat([readFileSync(older), Buffer.alloc(3000)]));
    const events: WalEvent[] = [];
    const { wal: again, state } = await Wal.open({ dir, segmentBytes: 4096, preallocateBytes: 2048, logger: (event) => events.push(event) });
    assert.deepEqual(plain(state.entries), plain(Array.from({ length: 120 }, (_, i) => entry(i + 1))));
    assert.deepEqual(events, []);
    await again.close();
  });
});

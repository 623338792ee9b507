// Goal: snapshot files are saved atomically with a checksum, the newest valid one is loaded, a
// corrupt newest file is reported and skipped, and old files are purged beyond `keep`.
// Method: save snapshots into a temp dir, damage files directly, reload and inspect the directory.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Snapshot } from '../../../src/raft/types.js';
import { SnapshotStore } from '../../../src/wal/index.js';
import type { SnapshotEvent } from '../../../src/wal/index.js';
import { withTempDir } from '../temp-dir.js';

const withDir = (body: (dir: string) => Promise<void>): Promise<void> => withTempDir('kvd-snap-', body);

function snapshot(index: number, term: number, size = 100): Snapshot {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (i * 31 + index) & 0xff;
  return { metadata: { index, term, confState: { voters: [1n, 0xfedcba9876543210n], learners: [] } }, data };
}

function same(actual: Snapshot | undefined, expected: Snapshot): void {
  assert.ok(actual !== undefined);
  assert.deepEqual(actual.metadata, expected.metadata);
  assert.deepEqual(Buffer.from(actual.data), Buffer.from(expected.data));
}

test('save then loadNewest returns the newest snapshot; empty store returns undefined', async () => {
  await withDir(async (parent) => {
    const dir = join(parent, 'snap');
    const store = await SnapshotStore.open({ dir });
    assert.equal(await store.loadNewest(), undefined);
    await store.save(snapshot(10, 1));
    await store.save(snapshot(30, 2, 200000));
    await store.save(snapshot(20, 2));
    same(await store.loadNewest(), snapshot(30, 2, 200000));
    same(await store.loadNewest({ maxIndex: 29 }), snapshot(20, 2));
    assert.equal(await store.loadNewest({ maxIndex: 5 }), undefined);
    const reopened = await SnapshotStore.open({ dir });
    same(await reopened.loadNewest(), snapshot(30, 2, 200000));
    const names = (await fs.readdir(dir)).sort();
    assert.deepEqual(names, ['0000000000000001-000000000000000a.snap', '0000000000000002-0000000000000014.snap', '0000000000000002-000000000000001e.snap']);
  });
});

test('a corrupt newest snapshot is reported, set aside, and the next older one is loaded', async () => {
  await withDir(async (dir) => {
    const store = await SnapshotStore.open({ dir });
    await store.save(snapshot(10, 1));
    await store.save(snapshot(20, 1));
    await store.save(snapshot(30, 1));
    const newest = join(dir, '0000000000000001-000000000000001e.snap');
    const bytes = readFileSync(newest);
    bytes[bytes.length - 10] ^= 1;
    writeFileSync(newest, bytes);
    const middle = join(dir, '0000000000000001-0000000000000014.snap');
    writeFileSync(middle, readFileSync(middle).subarray(0, 50));
    const events: SnapshotEvent[] = [];
    const reopened = await SnapshotStore.open({ dir, logger: (event) => events.push(event) });
    same(await reopened.loadNewest(), snapshot(10, 1));
    assert.deepEqual(
      events.map((e) => e.kind === 'snapshot-corrupt' && [e.file, e.why]),
      [
        [newest, 'checksum mismatch'],
        [middle, 'checksum mismatch'],
      ],
    );
    const names = await fs.readdir(dir);
    assert.ok(names.includes('0000000000000001-000000000000001e.snap.broken'));
  });
});

test('save keeps only the newest `keep` files and leftover temp files are removed on open', async () => {
  await withDir(async (dir) => {
    writeFileSync(join(dir, '0000000000000001-0000000000000063.snap.tmp'), 'half-written');
    const store = await SnapshotStore.open({ dir, keep: 2 });
    for (const index of [1, 2, 3, 4, 5]) await store.save(snapshot(index, 1));
    const names = (await fs.readdir(dir)).sort();
    assert.deepEqual(names, ['0000000000000001-0000000000000004.snap', '0000000000000001-0000000000000005.snap']);
  });
});

test('a renamed file whose metadata disagrees with its name is rejected', async () => {
  await withDir(async (dir) => {
    const store = await SnapshotStore.open({ dir });
    await store.save(snapshot(7, 1));
    await fs.rename(join(dir, '0000000000000001-0000000000000007.snap'), join(dir, '0000000000000001-0000000000000008.snap'));
    assert.equal(await store.loadNewest(), undefined);
  });
});

test('a snapshot with no members and no data round-trips', async () => {
  await withDir(async (dir) => {
    const store = await SnapshotStore.open({ dir });
    const empty: Snapshot = { metadata: { index: 0, term: 0, confState: { voters: [], learners: [] } }, data: new Uint8Array(0) };
    await store.save(empty);
    same(await store.loadNewest(), empty);
  });
});

// Goal: a database installed from a snapshot (a joining or lagging member, `kvd snapshot restore`)
// is written as the store writes its own, without LevelDB's Snappy compression, so its size on
// disk follows the bytes it holds on every member alike: the quota (--quota-backend-bytes) and
// dbSize must not depend on whether a member received its data through Raft or through a snapshot.
// Method: a source store with 6 MiB of very compressible values (more than LevelDB's 4 MiB write
// buffer, so tables are written during the install), its snapshot prepared into a new path; the
// files written there must hold at least the values' bytes (with compression they held 2.7 MB of 6.3).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MvccStore } from '../../../../src/store/mvcc/index.js';
import { put } from './helpers.js';

async function directoryBytes(path: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(path)) total += (await stat(join(path, name))).size;
  return total;
}

test('a snapshot is installed without compression, as the store writes its own data', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kvd-install-size-'));
  try {
    const source = await MvccStore.open({ path: join(dir, 'source') });
    const value = 'v'.repeat(1024);
    const keys = 6 * 1024;
    for (let batch = 0; batch < keys / 512; batch += 1) {
      await source.applyBatch(Array.from({ length: 512 }, (_, i) => ({ index: batch * 512 + i + 1, request: put(`k/${String(batch * 512 + i).padStart(5, '0')}`, value) })));
    }
    const prepared = await MvccStore.prepareRestore({ path: join(dir, 'installed'), chunks: source.exportSnapshot() });
    await source.close();
    try {
      const written = await directoryBytes(join(dir, 'installed.restore'));
      assert.ok(written >= keys * value.length, `the installed database takes ${written} bytes for ${keys * value.length} bytes of values`);
    } finally {
      await prepared.discard();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

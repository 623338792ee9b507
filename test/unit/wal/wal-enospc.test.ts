// Goal: a full disk is not fatal to the WAL: the save that hits ENOSPC throws WalNoSpaceError
// (not the sticky WalFatalError), nothing of it counts, retrying the same save fails the same way
// while the disk is full and succeeds once space returns, in the middle of a segment and when a
// new segment cannot be created (the partial one is removed); after reopening, the log holds
// exactly the acknowledged saves, commit-only ('buffered') saves included, with no corruption.
// Method: a real, tiny tmpfs mounted on a temp dir (needs root; skipped otherwise), grown with
// `mount -o remount,size=` to give the space back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Entry, HardState } from '../../../src/raft/types.js';
import { Wal, WalFatalError, WalNoSpaceError } from '../../../src/wal/index.js';
import type { WalEvent } from '../../../src/wal/index.js';

function mount(dir: string, size: string): boolean {
  return spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]).status === 0;
}

function resize(dir: string, size: string): void {
  const result = spawnSync('mount', ['-o', `remount,size=${size}`, dir], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
}

const canMount = ((): boolean => {
  if (process.getuid?.() !== 0) return false;
  const probe = spawnSync('mount', ['--version']);
  return probe.status === 0;
})();
/** CI runs as root, so these run there; elsewhere they are skipped with this reason. */
const skip = canMount ? false : 'needs root to mount a tmpfs';

async function withTinyDisk(size: string, body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await fs.mkdtemp(join(tmpdir(), 'kvd-wal-full-'));
  if (!mount(dir, size)) {
    await fs.rm(dir, { recursive: true, force: true });
    throw new Error('mount failed');
  }
  try {
    await body(dir);
  } finally {
    spawnSync('umount', [dir]);
    await fs.rm(dir, { recursive: true, force: true });
  }
}

const entry = (index: number, bytes: number): Entry => ({ index, term: 1, type: 'normal', data: Buffer.alloc(bytes, index % 251) });

/** Saves 1 kB entries (a commit-only save between them) until the disk is full; returns what was acknowledged. */
async function fillUp(wal: Wal): Promise<{ last: number; hardState: HardState; failed: { hardState: HardState; entries: Entry[] } }> {
  let hardState: HardState = { term: 1, vote: 1n, commit: 0 };
  for (let index = 1; index < 10_000; index++) {
    const next: HardState = { term: 1, vote: 1n, commit: index - 1 };
    const entries = [entry(index, 1024)];
    try {
      await wal.save({ hardState: next, entries });
      hardState = next;
      // Raft's mustSync=false Ready: only the commit index moved.
      const commitOnly: HardState = { term: 1, vote: 1n, commit: index };
      await wal.save({ hardState: commitOnly, entries: [], durability: 'buffered' });
      hardState = commitOnly;
    } catch (error: unknown) {
      assert.ok(error instanceof WalNoSpaceError, `a full disk throws WalNoSpaceError, got ${String(error)}`);
      assert.ok(!(error instanceof WalFatalError));
      return { last: index - 1, hardState, failed: { hardState: next, entries } };
    }
  }
  throw new Error('the disk never filled up');
}

for (const shape of [
  { name: 'in the middle of a segment', segmentBytes: 64 * 1024 * 1024 },
  { name: 'when a new segment cannot be created', segmentBytes: 1 },
]) {
  test(`a full disk ${shape.name}: the save fails without harm, the retry succeeds once space returns, nothing acknowledged is lost`, { skip }, async () => {
    await withTinyDisk('64k', async (dir) => {
      const events: WalEvent[] = [];
      const { wal } = await Wal.open({ dir: join(dir, 'wal'), segmentBytes: shape.segmentBytes, logger: (event) => events.push(event) });
      const filled = await fillUp(wal);
      assert.ok(filled.last >= 5, `some entries fit first (${filled.last})`);
      assert.ok(events.some((event) => event.kind === 'no-space'));
      if (shape.segmentBytes === 1) assert.ok(events.some((event) => event.kind === 'partial-segment-removed'), 'the partial segment was removed');
      await assert.rejects(wal.save(filled.failed), WalNoSpaceError, 'still full: the retry fails the same way');
      resize(dir, '4m');
      await wal.save(filled.failed);
      let last = filled.last + 1;
      for (; last < filled.last + 20; last++) await wal.save({ hardState: { term: 1, vote: 1n, commit: last }, entries: [entry(last + 1, 1024)] });
      const finalState: HardState = { term: 1, vote: 1n, commit: last };
      await wal.save({ hardState: finalState, entries: [], durability: 'buffered' });
      await wal.close();
      assert.ok(!readdirSync(join(dir, 'wal')).some((name) => name.endsWith('.tmp')));
      const reopened = await Wal.open({ dir: join(dir, 'wal'), segmentBytes: shape.segmentBytes });
      assert.deepEqual(reopened.state.entries.map((e) => e.index), Array.from({ length: last }, (_, i) => i + 1), 'every acknowledged entry, in order, nothing else');
      assert.ok(reopened.state.entries.every((e) => e.data.byteLength === 1024 && e.data[0] === e.index % 251));
      assert.deepEqual(reopened.state.hardState, finalState);
      await reopened.wal.close();
    });
  });
}

test('commit-only saves made before the disk filled up survive a failed write and its retry', { skip }, async () => {
  await withTinyDisk('64k', async (dir) => {
    const { wal } = await Wal.open({ dir: join(dir, 'wal') });
    const filled = await fillUp(wal);
    // The last acknowledged save was commit-only (buffered): it must not be lost by the failure.
    resize(dir, '1m');
    await wal.close();
    const reopened = await Wal.open({ dir: join(dir, 'wal') });
    assert.deepEqual(reopened.state.hardState, filled.hardState);
    assert.equal(reopened.state.entries.length, filled.last);
    await reopened.wal.close();
  });
});

test('a zero-fill that finds the disk full is not fatal: it gives back what it wrote, preallocation stops in that segment, saves go on', { skip }, async () => {
  await withTinyDisk('256k', async (dir) => {
    const events: WalEvent[] = [];
    // 1 MiB of zeros ahead cannot fit on a 256 KiB disk.
    const { wal } = await Wal.open({ dir: join(dir, 'wal'), preallocateBytes: 1024 * 1024, logger: (event) => events.push(event) });
    await wal.save({ hardState: { term: 1, vote: 1n, commit: 0 }, entries: [entry(1, 1024)] });
    // The next save reaches past what is allocated, so it waits for the fill to end first.
    await wal.save({ hardState: { term: 1, vote: 1n, commit: 1 }, entries: [entry(2, 1024)] });
    assert.ok(events.some((event) => event.kind === 'preallocate-failed'), JSON.stringify(events));
    const [segment] = wal.segmentPaths();
    assert.equal(statSync(segment).size, wal.writtenBytes(), 'the zeros written before the failure were given back');
    // Saves go on until the disk really is full, and every acknowledged one replays.
    const filled = await fillUp(wal);
    assert.ok(filled.last >= 100, `most of the disk was usable (${filled.last} entries of 1 KiB)`);
    await wal.close();
    const reopened = await Wal.open({ dir: join(dir, 'wal') });
    assert.deepEqual(reopened.state.entries.map((e) => e.index), Array.from({ length: filled.last }, (_, i) => i + 1));
    await reopened.wal.close();
  });
});

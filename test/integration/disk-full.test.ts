// Goal: a full disk on ONE member does not take the cluster down, nor that member: it refuses
// writes (and linearizable reads) with a clear error, keeps serving what it can, and recovers by
// itself once space returns, losing nothing: first with its WAL's directory on a full file system,
// then with only its backend's (LevelDB) directory full.
// Method: real 3-member clusters where m3's member/wal (or member/db) dir is a small tmpfs
// mounted by the test (needs root; skipped otherwise). The disk is filled with a file, or by the
// writes themselves, and space is given back by deleting the file or growing the tmpfs
// (`mount -o remount,size=`). Waits have deadlines; the mounts are removed in cleanup.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, openSync, writeSync, closeSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Cluster, call, get, put, waitFor, type MemberProcess } from './harness.js';

const UNAVAILABLE = 14;
const DISK_FULL_TEXT = 'etcdserver: no space left on device';

const canMount = process.getuid?.() === 0 && spawnSync('mount', ['--version']).status === 0;
const skip = canMount ? false : 'needs root to mount a tmpfs';

function mountTmpfs(dir: string, size: string): void {
  mkdirSync(dir, { recursive: true });
  const result = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  assert.equal(result.status, 0, `mount: ${result.stderr}`);
}

/** Fills the file system of `dir` with one file until ENOSPC. */
function fill(dir: string): string {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  } finally {
    closeSync(fd);
  }
  return path;
}

/** Starts a cluster whose m3 has `mountAt(m3)` on a tmpfs of `size`; cleanup unmounts before removing. */
async function clusterWithSmallDisk(options: { mountAt: (member: MemberProcess) => string; size: string }): Promise<{ cluster: Cluster; mountPoint: string }> {
  let mountPoint = '';
  const cluster = await Cluster.start({
    size: 3,
    prepare: (member) => {
      if (member.name !== 'm3') return;
      mountPoint = options.mountAt(member);
      mountTmpfs(mountPoint, options.size);
    },
  });
  after(async () => {
    await cluster.stop({ keepData: true });
    spawnSync('umount', [mountPoint]);
    await rm(cluster.root, { recursive: true, force: true });
  });
  return { cluster, mountPoint };
}

const isDiskFull = (error: { code: number; details: string }): boolean => error.code === UNAVAILABLE && error.details === DISK_FULL_TEXT;

/** Puts through m1/m2, retrying while an election replaces a stuck leader. */
async function putThroughHealthy(cluster: Cluster, key: string, value: string): Promise<number> {
  return waitFor(`put ${key} through a healthy member`, async () => {
    for (const member of cluster.members.slice(0, 2)) {
      try {
        return Number((await put(member.endpoint, key, value)).header.revision);
      } catch (error: unknown) {
        void error; // no leader yet (the stuck member led): try the other member, then again
      }
    }
    return undefined;
  }, { timeoutMs: 15_000, intervalMs: 100 });
}

async function revisionOf(endpoint: string): Promise<number> {
  return Number((await get(endpoint, 'none', { serializable: true })).header.revision);
}

async function expectRecovered(cluster: Cluster, latest: number): Promise<void> {
  const m3 = cluster.member('m3');
  await waitFor('m3 to catch up after space returned', async () => ((await revisionOf(m3.endpoint)) >= latest ? true : undefined), { timeoutMs: 30_000, intervalMs: 200 });
  const hashes = await Promise.all(cluster.members.map((m) => call<{ hash: number }>(m.endpoint, 'Maintenance', 'HashKV', { revision: String(latest) })));
  assert.equal(new Set(hashes.map((h) => h.hash)).size, 1, 'every member holds the same data');
  await waitFor('m3 to take writes again', async () => put(m3.endpoint, 'after/m3', 'ok').then(() => true, () => undefined), { timeoutMs: 10_000, intervalMs: 100 });
  assert.ok(cluster.logEvents('m3').some((e) => e.event === 'disk-space-recovered'));
}

test('a leader whose WAL disk fills up keeps running, is replaced, refuses writes with a clear error while the cluster keeps serving, and recovers when space returns', { skip }, async () => {
  // The WAL's own file system (etcd's --wal-dir shape): on a shared one, the backend's writes may
  // find the disk full first, since the WAL keeps its segment zero-filled ahead of its records.
  const { cluster, mountPoint } = await clusterWithSmallDisk({ mountAt: (member) => join(member.dataDir, 'member', 'wal'), size: '20m' });
  const leader = await cluster.waitForLeader();
  for (let i = 0; i < 10; i++) await putThroughHealthy(cluster, `before/${i}`, `v${i}`);
  await waitFor('m3 to apply the first writes', async () => ((await get(cluster.member('m3').endpoint, 'before/9', { serializable: true })).kvs.length === 1 ? true : undefined), { timeoutMs: 10_000 });
  // The worst case: the member whose disk fills up leads.
  const m3Id = (await call<{ header: { member_id: string } }>(cluster.member('m3').endpoint, 'Maintenance', 'Status', {})).header.member_id;
  if (leader !== 'm3') await call(cluster.member(leader).endpoint, 'Maintenance', 'MoveLeader', { targetID: m3Id }, { timeoutMs: 10_000 });
  assert.equal(await cluster.waitForLeader(), 'm3');

  const filler = fill(mountPoint);
  // Writes of 64 KiB until the WAL has used up the space zero-filled before the disk filled (2 MiB).
  const m3 = cluster.member('m3');
  const walFull = (): boolean => cluster.logEvents('m3').some((e) => e.event === 'disk-full' && e.part === 'wal');
  let latest = 0;
  let written = 0;
  for (; written < 100 && !walFull(); written++) latest = await putThroughHealthy(cluster, `during/${written}`, randomBytes(32 * 1024).toString('hex'));
  assert.ok(written > 20, `the WAL took writes into its zero-filled space first (${written} before it was full)`);
  await waitFor('m3 to report its full WAL', () => (cluster.logEvents('m3').some((e) => e.event === 'disk-full' && e.part === 'wal') ? true : undefined), { timeoutMs: 10_000 });
  assert.ok(m3.process !== undefined && m3.process.exitCode === null, 'm3 is still running');
  const statuses = await Promise.all(cluster.members.slice(0, 2).map((m) => call<{ leader: string }>(m.endpoint, 'Maintenance', 'Status', {})));
  assert.ok(statuses.every((s) => s.leader !== m3Id && s.leader !== '0'), 'm1 and m2 elected another leader');
  await waitFor('m3 to refuse writes with the disk-full error', async () => put(m3.endpoint, 'refused', 'x').then(() => undefined, (error: { code: number; details: string }) => (isDiskFull(error) ? true : undefined)), { timeoutMs: 10_000, intervalMs: 100 });
  await assert.rejects(get(m3.endpoint, 'before/1'), isDiskFull, 'a linearizable read through m3 is refused at once');
  assert.equal((await get(m3.endpoint, 'before/1', { serializable: true })).kvs[0].value.toString(), 'v1', 'm3 serves serializable reads');
  assert.equal((await get(cluster.members[0].endpoint, `during/${written - 1}`)).kvs.length, 1, 'the others serve linearizable reads');

  rmSync(filler);
  await expectRecovered(cluster, latest);
  assert.equal((await get(m3.endpoint, `during/${written - 1}`, { serializable: true })).kvs.length, 1);
});

test('a member whose backend (LevelDB) disk fills up reopens its store once space returns and re-applies what it lacked', { skip }, async () => {
  const { cluster, mountPoint } = await clusterWithSmallDisk({ mountAt: (member) => join(member.dataDir, 'member', 'db'), size: '2m' });
  await cluster.waitForLeader();
  const m3 = cluster.member('m3');
  let latest = 0;
  for (let i = 0; i < 40 && !cluster.logEvents('m3').some((e) => e.event === 'disk-full' && e.part === 'store'); i++) {
    latest = await putThroughHealthy(cluster, `big/${i}`, randomBytes(100_000).toString('latin1'));
  }
  await waitFor('m3\'s backend to be full', () => (cluster.logEvents('m3').some((e) => e.event === 'disk-full' && e.part === 'store') ? true : undefined), { timeoutMs: 10_000 });
  assert.ok(m3.process !== undefined && m3.process.exitCode === null, 'm3 is still running');
  await assert.rejects(get(m3.endpoint, 'big/0', { serializable: true }), isDiskFull, 'a read of the failed store says why');
  await assert.rejects(put(m3.endpoint, 'refused', 'x'), isDiskFull);
  for (let i = 0; i < 5; i++) latest = await putThroughHealthy(cluster, `more/${i}`, 'small');

  const grown = spawnSync('mount', ['-o', 'remount,size=64m', mountPoint], { encoding: 'utf8' });
  assert.equal(grown.status, 0, grown.stderr);
  await expectRecovered(cluster, latest);
  assert.ok(cluster.logEvents('m3').some((e) => e.event === 'store-reopened'));
});

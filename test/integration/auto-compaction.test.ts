// Goal: --auto-compaction-mode periodic|revision with a short retention compacts the cluster's
// history through Raft (every member refuses reads below the compacted revision), driven by the
// leader alone, and logs it as etcd's compactor does.
// Method: real 3-member clusters; periodic with a 2 s retention; revision with a retention of 10
// and the test-only failpoint that shortens etcd's 5-minute check to 300 ms. Waits have deadlines.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, get, put, waitFor } from './harness.js';

const OUT_OF_RANGE = 11;

/** True once `revision` is compacted on `endpoint` (a serializable read at it fails with OUT_OF_RANGE). */
async function compactedOn(endpoint: string, revision: number): Promise<true | undefined> {
  return get(endpoint, 'k/0', { serializable: true, revision: String(revision) }).then(
    () => undefined,
    (error: { code: number; details: string }) => (error.code === OUT_OF_RANGE && /compacted/.test(error.details) ? true : undefined),
  );
}

test('periodic auto-compaction keeps the retention\'s worth of history: the leader compacts, every member applies it, logged', async () => {
  const cluster = await Cluster.start({ size: 3, extraArgs: ['--auto-compaction-mode', 'periodic', '--auto-compaction-retention', '2s'] });
  after(() => cluster.stop());
  const leader = await cluster.waitForLeader();
  let revision = 0;
  for (let i = 0; i < 20; i++) revision = Number((await put(cluster.members[i % 3].endpoint, `k/${i}`, `v${i}`)).header.revision);
  const written = Date.now();
  for (const member of cluster.members) {
    await waitFor(`${member.name} to see revision ${revision - 1} compacted`, () => compactedOn(member.endpoint, revision - 1), { timeoutMs: 15_000, intervalMs: 100 });
  }
  assert.ok(Date.now() - written >= 1_000, 'nothing younger than the retention was compacted right away');
  assert.equal((await get(cluster.members[0].endpoint, 'k/19', { revision: String(revision) })).kvs.length, 1, 'the newest revision stays readable');
  // Only leaders propose: the members that logged a compaction are the ones that led (usually one).
  // (Logs reach their files through pipes: wait for the lines.)
  const logged = (name: string, event: string): boolean => cluster.logEvents(name).some((e) => e.event === event && e.mode === 'periodic');
  await waitFor('a compaction in the logs', () => (cluster.members.some((m) => logged(m.name, 'auto-compaction-finished')) ? true : undefined), { timeoutMs: 5_000 });
  const proposers = cluster.members.filter((m) => logged(m.name, 'auto-compaction-started'));
  const led = (name: string): boolean => name === leader || cluster.logEvents(name).some((e) => e.event === 'leader-changed' && e.role === 'leader');
  assert.ok(proposers.length >= 1 && proposers.every((m) => led(m.name)), `proposed by ${proposers.map((m) => m.name).join(',')}, members that led`);
});

test('revision auto-compaction keeps the last N revisions', async () => {
  const cluster = await Cluster.start({
    size: 3,
    extraArgs: ['--auto-compaction-mode', 'revision', '--auto-compaction-retention', '10'],
    env: { KVD_TEST_FAILPOINTS: 'compactorRevisionIntervalMs=300' },
  });
  after(() => cluster.stop());
  await cluster.waitForLeader();
  let revision = 0;
  for (let i = 0; i < 30; i++) revision = Number((await put(cluster.members[0].endpoint, `k/${i}`, 'v')).header.revision);
  for (const member of cluster.members) {
    await waitFor(`${member.name} to compact up to ${revision - 10}`, () => compactedOn(member.endpoint, revision - 11), { timeoutMs: 10_000, intervalMs: 100 });
    assert.equal((await get(member.endpoint, 'k/0', { serializable: true, revision: String(revision - 10) })).kvs.length, 1, 'the last 10 revisions stay readable');
  }
  const logged = (name: string): boolean => cluster.logEvents(name).some((e) => e.event === 'auto-compaction-finished' && e.mode === 'revision' && e.revision === revision - 10);
  await waitFor('the compaction in the leader\'s log', () => (cluster.members.some((m) => logged(m.name)) ? true : undefined), { timeoutMs: 5_000 });
});

// Goal: the member-level defects of the safety review stay fixed, each seen from outside on real
// processes: a new leader answers lease keep-alives only once it has applied what was committed
// at its election; a proposal the leader refuses fails at once with etcd's error instead of at the
// request deadline; a client that goes away frees its proposal slot; a broken Raft invariant
// stops the member with the 'invariant' exit code; SIGTERM with a watcher open stops the member
// cleanly; leftover snapshot downloads are removed at start; the proposal gauges move.
// Method: real kvd processes (harness.ts) with the test-only failpoint KVD_TEST_FAILPOINTS where a
// timing must be forced (an applier lagging its commit index), peer-protocol frames crafted with
// the transport codec, and /metrics scraped over HTTP. Waits have deadlines; no fixed sleeps.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Cluster, call, freePort, get, put, waitFor, watchStream, type StatusResponse } from './harness.js';
import { FATAL_EXIT_CODES } from '../../src/server/fatal.js';

const ELECTION_MS = 500;

async function status(endpoint: string): Promise<StatusResponse> {
  return call<StatusResponse>(endpoint, 'Maintenance', 'Status', {}, { timeoutMs: 2000 });
}

async function memberIdOf(endpoint: string): Promise<string> {
  return (await status(endpoint)).header.member_id;
}

/** One keep-alive over a fresh LeaseKeepAlive stream; resolves with the TTL answered. */
function keepAliveOnce(endpoint: string, id: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stream = (leaseClient(endpoint) as unknown as { LeaseKeepAlive: (opts: grpc.CallOptions) => grpc.ClientDuplexStream<object, { ID: string; TTL: string }> }).LeaseKeepAlive({ deadline: Date.now() + 10_000 });
    stream.once('data', (response) => {
      stream.cancel();
      resolve(response.TTL);
    });
    stream.once('error', (error: grpc.ServiceError) => {
      if (error.code !== grpc.status.CANCELLED) reject(error);
    });
    stream.write({ ID: id });
  });
}

const leaseClients = new Map<string, grpc.Client>();
function leaseClient(endpoint: string): grpc.Client {
  let client = leaseClients.get(endpoint);
  if (client === undefined) {
    // The harness exposes unary calls only; streams need the generated Lease client.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    client = new (loadLease())(endpoint, grpc.credentials.createInsecure());
    leaseClients.set(endpoint, client);
  }
  return client;
}

import { loadServices } from '../../src/api/proto.js';
function loadLease(): grpc.ServiceClientConstructor {
  return loadServices().Lease as unknown as grpc.ServiceClientConstructor;
}

after(() => {
  for (const client of leaseClients.values()) client.close();
});

test('a new leader whose applier lags answers keep-alives only after applying the grant (no TTL 0 for a live lease)', async () => {
  // m2 applies every batch 0.5 s late; a lease granted through m1 is committed on m2 well before
  // m2 applies it. Leadership then moves to m2 at once.
  const cluster = await Cluster.start({ size: 3, electionMs: ELECTION_MS });
  after(() => cluster.stop());
  cluster.members[1].process?.kill('SIGKILL');
  await waitFor('m2 down', () => (cluster.members[1].process === undefined ? true : undefined), { timeoutMs: 5000 });
  cluster.startMember('m2', { env: { KVD_TEST_FAILPOINTS: 'applyDelayMs=500' } });
  const leader = await cluster.waitForLeader({ timeoutMs: 30_000 });
  const leaderEndpoint = cluster.member(leader).endpoint;
  const m2 = cluster.member('m2');
  const m2Id = await memberIdOf(m2.endpoint);
  if (leader === 'm2') {
    // Move leadership away first so the grant goes through another leader.
    await call(leaderEndpoint, 'Maintenance', 'MoveLeader', { targetID: await memberIdOf(cluster.member('m1').endpoint) }, { timeoutMs: 10_000 });
  }
  const first = await cluster.waitForLeader({ timeoutMs: 30_000 });
  assert.notEqual(first, 'm2');
  const granted = await call<{ ID: string; TTL: string }>(cluster.member(first).endpoint, 'Lease', 'LeaseGrant', { TTL: 30 });
  await call(cluster.member(first).endpoint, 'Maintenance', 'MoveLeader', { targetID: m2Id }, { timeoutMs: 10_000 });
  // m2 leads now, with the grant committed but (for up to 0.5 s per queued batch) not applied.
  const ttl = await keepAliveOnce(m2.endpoint, granted.ID);
  assert.equal(ttl, '30', 'the new leader renewed the live lease instead of answering TTL 0');
});

test('a proposal the leader refuses (leadership transfer in progress) fails at once with "leader changed", not at the deadline', async () => {
  const cluster = await Cluster.start({ size: 3, electionMs: 2000, heartbeatMs: 100 });
  after(() => cluster.stop());
  const leader = await cluster.waitForLeader({ timeoutMs: 30_000 });
  const others = cluster.members.filter((m) => m.name !== leader);
  const [follower, victim] = others;
  const victimId = await memberIdOf(victim.endpoint);
  await cluster.kill(victim.name);
  // The transfer to a dead member stays in progress for an election timeout (2 s): the leader
  // refuses proposals meanwhile.
  const transfer = call(cluster.member(leader).endpoint, 'Maintenance', 'MoveLeader', { targetID: victimId }, { timeoutMs: 10_000 }).catch((error: unknown) => error);
  const outcomes: string[] = [];
  const started = Date.now();
  while (Date.now() - started < 1500) {
    try {
      await call(follower.endpoint, 'KV', 'Put', { key: Buffer.from('during-transfer'), value: Buffer.from('x') }, { timeoutMs: 7000 });
      outcomes.push('ok');
    } catch (error: unknown) {
      outcomes.push((error as grpc.ServiceError).details);
    }
  }
  await transfer;
  assert.ok(outcomes.includes('etcdserver: leader changed'), `a refused proposal answered at once: ${outcomes.join(' | ')}`);
  assert.ok(!outcomes.some((outcome) => outcome.includes('timed out')), `no write waited for its deadline: ${outcomes.join(' | ')}`);
});

test('a client that cancels a pending write frees its proposal slot at once', async () => {
  const metricsPort = await freePort();
  const cluster = await Cluster.start({
    size: 1, electionMs: ELECTION_MS,
    env: { KVD_TEST_FAILPOINTS: 'applyDelayMs=2500' },
    extraArgs: ['--listen-metrics-urls', `http://127.0.0.1:${metricsPort}`],
  });
  after(() => cluster.stop());
  await cluster.waitForLeader({ timeoutMs: 30_000 });
  const pending = async (): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith('etcd_server_proposals_pending '));
    return Number(line?.split(' ')[1]);
  };
  // Start-up proposals (the member's attribute publish) wait on the slow applier: once the member
  // list shows the published client URL, nothing else is pending.
  await waitFor('the member attributes published', async () => {
    const list = await call<{ members: Array<{ clientURLs: string[] }> }>(cluster.members[0].endpoint, 'Cluster', 'MemberList', {});
    return list.members[0]?.clientURLs.length > 0 ? true : undefined;
  }, { timeoutMs: 30_000 });
  await waitFor('start-up proposals applied', async () => ((await pending()) === 0 ? true : undefined), { timeoutMs: 30_000 });
  const base = 0;
  const KvClient = loadServices().KV;
  const client = new KvClient(cluster.members[0].endpoint, grpc.credentials.createInsecure());
  after(() => client.close());
  const inflight = (client as unknown as { Put: (req: object, cb: (error: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall }).Put(
    { key: Buffer.from('slow'), value: Buffer.from('v') },
    () => undefined,
  );
  await waitFor('the write to be pending', async () => ((await pending()) > base ? true : undefined), { timeoutMs: 3000, intervalMs: 20 });
  inflight.cancel();
  // Freed on cancel, long before the 2.5 s apply delay or the 7 s request timeout.
  await waitFor('the slot to be freed', async () => ((await pending()) <= base ? true : undefined), { timeoutMs: 1500, intervalMs: 20 });
});

test('a broken Raft invariant while stepping a peer message stops the member with the invariant exit code', async () => {
  // The core tolerates malformed peer messages (etcd-io/raft's clamps); a throw from step() is a
  // bug in the core. The failpoint stands in for one: any message of the next term throws an
  // AssertionError inside step(). A leadership transfer between the other two members starts
  // that term.
  const cluster = await Cluster.start({ size: 3, electionMs: ELECTION_MS });
  after(() => cluster.stop());
  const leader = await cluster.waitForLeader({ timeoutMs: 30_000 });
  const [victim, other] = cluster.members.filter((m) => m.name !== leader);
  const term = Number((await status(cluster.member(leader).endpoint)).raftTerm);
  await cluster.kill(victim.name);
  cluster.startMember(victim.name, { env: { KVD_TEST_FAILPOINTS: `raftAssertOnTerm=${term + 1}` } });
  const child = victim.process;
  assert.ok(child !== undefined);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  await waitFor(`${victim.name} serving`, async () => ((await status(victim.endpoint)).leader !== '0' ? true : undefined), { timeoutMs: 30_000 });
  await call(cluster.member(leader).endpoint, 'Maintenance', 'MoveLeader', { targetID: await memberIdOf(other.endpoint) }, { timeoutMs: 10_000 });
  const code = await Promise.race([exited, new Promise<'alive'>((resolve) => setTimeout(() => resolve('alive'), 30_000))]);
  assert.equal(code, FATAL_EXIT_CODES.invariant, `exit code (log:\n${cluster.log(victim.name).slice(-3000)})`);
  assert.match(cluster.log(victim.name), /"reason":"invariant".*failpoint raftAssertOnTerm/);
});

test('SIGTERM with a watcher open stops the member cleanly (exit 0, member stopped)', async () => {
  const cluster = await Cluster.start({ size: 1, electionMs: ELECTION_MS });
  after(() => cluster.stop());
  await cluster.waitForLeader({ timeoutMs: 30_000 });
  const watch = watchStream(cluster.members[0].endpoint);
  watch.on('error', () => undefined);
  const created = new Promise<void>((resolve) => watch.once('data', () => resolve()));
  watch.write({ create_request: { key: Buffer.from('w') } });
  await created;
  const child = cluster.members[0].process;
  assert.ok(child !== undefined);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  const code = await exited;
  assert.equal(code, 0, cluster.log('m1').slice(-2000));
  assert.match(cluster.log('m1'), /"event":"stopped"/);
});

test('SIGTERM while the member is still starting stops it cleanly once started (exit 0), not by the signal', async () => {
  // Seen as a flaky failure of the test above: with front-ends the client port answers before the
  // core has finished starting, and the core installed its SIGTERM handler only then. The signal
  // is sent as soon as the log shows the peer listener up, well before the front-ends are ready.
  const cluster = await Cluster.start({ size: 1, electionMs: ELECTION_MS });
  after(() => cluster.stop());
  const child = cluster.members[0].process;
  assert.ok(child !== undefined);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  await waitFor('the peer listener', async () => (cluster.log('m1').includes('"event":"transport-listening"') ? true : undefined), { timeoutMs: 30_000, intervalMs: 2 });
  child.kill('SIGTERM');
  const { code, signal } = await exited;
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, cluster.log('m1').slice(-2000));
  assert.match(cluster.log('m1'), /"event":"shutdown".*"starting":true/);
  assert.match(cluster.log('m1'), /"event":"stopped"/);
});

test('snapshot data received but never installed is removed at start', async () => {
  const cluster = await Cluster.start({ size: 1, electionMs: ELECTION_MS });
  after(() => cluster.stop());
  await cluster.waitForLeader({ timeoutMs: 30_000 });
  await cluster.kill('m1', 'SIGTERM');
  const leftover = join(cluster.members[0].dataDir, 'member', 'snap', 'incoming-77.db');
  await mkdir(join(cluster.members[0].dataDir, 'member', 'snap'), { recursive: true });
  await writeFile(leftover, 'partial');
  cluster.startMember('m1');
  await cluster.waitForLeader({ timeoutMs: 30_000 });
  assert.equal(existsSync(leftover), false);
});

test('the proposal gauges follow the committed and applied raft indexes', async () => {
  const metricsPort = await freePort();
  const cluster = await Cluster.start({ size: 1, electionMs: ELECTION_MS, extraArgs: ['--listen-metrics-urls', `http://127.0.0.1:${metricsPort}`] });
  after(() => cluster.stop());
  await cluster.waitForLeader({ timeoutMs: 30_000 });
  const gauges = async (): Promise<{ committed: number; applied: number }> => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const value = (name: string): number => Number(text.split('\n').find((l) => l.startsWith(`${name} `))?.split(' ')[1]);
    return { committed: value('etcd_server_proposals_committed_total'), applied: value('etcd_server_proposals_applied_total') };
  };
  // The member opens its metrics listener just after its client port (so that /health never
  // answers before clients can connect): the first scrape waits for it.
  const before = await waitFor('the metrics listener', () => gauges().catch(() => undefined), { timeoutMs: 5000 });
  for (let i = 0; i < 5; i++) await put(cluster.members[0].endpoint, `g${i}`, 'v');
  const index = Number((await status(cluster.members[0].endpoint)).raftIndex);
  const afterPuts = await waitFor('the gauges to reach the raft index', async () => {
    const now = await gauges();
    return now.applied >= index ? now : undefined;
  }, { timeoutMs: 5000 });
  assert.ok(afterPuts.committed >= before.committed + 5, `committed ${before.committed} → ${afterPuts.committed}`);
  assert.ok(afterPuts.applied >= before.applied + 5, `applied ${before.applied} → ${afterPuts.applied}`);
  assert.ok((await get(cluster.members[0].endpoint, 'g4')).kvs.length === 1);
});

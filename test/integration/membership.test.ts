// Goal: membership changes on a live kvd cluster keep every acknowledged write and leave the
// members identical: growing 1 → 3 → 5 and shrinking 5 → 3 under writes; replacing every
// member of a 3-member cluster with `kvctl member replace` under writes (the removed members
// stop by themselves and their data dirs refuse to start again); removing the leader, which
// hands leadership over first so no election timeout passes without a leader; learners that
// are refused promotion while behind and promoted once caught up, --max-learners, and learners
// the leader promotes by itself (autoPromote).
// Method: real kvd processes (harness.ts; heartbeat 50 ms, election 500 ms); members join as an
// operator would make them join: `member add`, then a process started with
// `--initial-cluster-state existing` and the ETCD_INITIAL_CLUSTER the add implies, on an empty
// data dir. A Writer (membership-helpers.ts) writes unique keys through the members in turn and
// records which writes were acknowledged; at the end each acknowledged write must read back with
// its value, and HashKV at one revision must agree on every member. Exact refusals are checked
// on the wire (gRPC code and etcd's message). The leader removal runs with the test failpoint
// applyDelayMs on every member, so the leader elected by the hand-over is still applying when
// the removal reaches it (the timing of a loaded machine, made certain). Every wait has a
// deadline.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { connect, type Client } from '../../src/client/index.js';
import { Cluster, call, put, waitFor } from './harness.js';
import { Writer, addMember, assertAckedReadable, assertExitsRemoved, assertRefusesRestart, assertSameHashKv, memberNamed, removeMember, status, waitServing, type WriterReport } from './membership-helpers.js';

const KVCTL = fileURLToPath(new URL('../../bin/kvctl.js', import.meta.url));
const ELECTION_MS = 500;
const LEARNER_NOT_READY = 'etcdserver: can only promote a learner member which is in sync with leader';
const TOO_MANY_LEARNERS = 'etcdserver: too many learner members in cluster';

/** Clients made by a test, closed when it ends. */
function clients(t: { after(fn: () => void): void }): (endpoints: readonly string[]) => Client {
  const made: Client[] = [];
  t.after(() => {
    for (const client of made) client.close();
  });
  return (endpoints) => {
    const client = connect({ endpoints });
    made.push(client);
    return client;
  };
}

function runningEndpoints(cluster: Cluster): string[] {
  return cluster.members.filter((m) => m.process !== undefined).map((m) => m.endpoint);
}

/** The member id a member reports for itself. */
async function idOf(cluster: Cluster, name: string): Promise<bigint> {
  return BigInt((await status(cluster.member(name).endpoint)).header.member_id);
}

/** A gRPC call that must fail: resolves with its status code and details. */
async function refusal(promise: Promise<unknown>): Promise<{ code: number; details: string }> {
  try {
    await promise;
  } catch (error: unknown) {
    const serviceError = error as grpc.ServiceError;
    return { code: serviceError.code, details: serviceError.details };
  }
  assert.fail('the call succeeded but should have been refused');
}

interface MemberJs { ID: string; name: string; isLearner: boolean }

/**
 * Promotes `id` through `endpoint` on the wire, retrying "not in sync" (the leader's view of a
 * learner that caught up lags a little); resolves with the members the answer lists.
 */
async function promoteWhenInSync(endpoint: string, id: bigint, timeoutMs = 20_000): Promise<MemberJs[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return (await call<{ members: MemberJs[] }>(endpoint, 'Cluster', 'MemberPromote', { ID: id.toString() }, { timeoutMs: 5_000 })).members;
    } catch (error: unknown) {
      if ((error as grpc.ServiceError).details !== LEARNER_NOT_READY || Date.now() > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Waits until every member in `endpoints` lists exactly `expected` (`name:voter` or
 * `name:learner`, sorted). Each answers from its own applied state, so a member whose applier
 * lags shows a change a little later than the member that made it.
 */
async function waitMembership(endpoints: readonly string[], expected: readonly string[]): Promise<void> {
  for (const endpoint of endpoints) {
    let last = '';
    await waitFor(`${endpoint} to list ${expected.join(', ')}`, async () => {
      const listed = await call<{ members: MemberJs[] }>(endpoint, 'Cluster', 'MemberList', {}, { timeoutMs: 2_000 });
      last = listed.members.map((m) => `${m.name}:${m.isLearner ? 'learner' : 'voter'}`).sort().join(', ');
      return last === [...expected].sort().join(', ') ? true : undefined;
    }, { timeoutMs: 10_000 }).catch((error: unknown) => {
      throw new Error(`${String(error)}; it lists ${last}`);
    });
  }
}

/** Waits until the member list `endpoint` serves (its own applied state) shows `name` as a voter. */
async function waitVoter(endpoint: string, name: string): Promise<void> {
  await waitFor(`${endpoint} to list ${name} as a voter`, async () => {
    const listed = await call<{ members: MemberJs[] }>(endpoint, 'Cluster', 'MemberList', {}, { timeoutMs: 2_000 });
    return listed.members.some((m) => m.name === name && !m.isLearner) ? true : undefined;
  }, { timeoutMs: 10_000 });
}

/** Writes `count` keys through `endpoint`, `parallel` at a time (each must succeed). */
async function writeMany(endpoint: string, prefix: string, count: number, parallel = 16): Promise<void> {
  for (let start = 0; start < count; start += parallel) {
    await Promise.all(Array.from({ length: Math.min(parallel, count - start) }, (_, i) => put(endpoint, `${prefix}${start + i}`, 'x')));
  }
}

function describeReport(report: WriterReport): string {
  return `${report.acked.size} of ${report.attempted} writes acknowledged; failures: ${[...report.failures].map(([reason, count]) => `${count}× ${reason}`).join('; ') || 'none'}`;
}

test('grows 1 → 3 → 5 voters and shrinks 5 → 3 (a follower, then the leader) under writes without losing an acknowledged write', { timeout: 180_000 }, async (t) => {
  const cluster = await Cluster.start({ size: 1, electionMs: ELECTION_MS });
  t.after(() => cluster.stop());
  const clientFor = clients(t);
  await cluster.waitForLeader();
  const writer = new Writer({ prefix: 'grow/', endpoints: cluster.endpoints, loops: 3 });
  let report: WriterReport;
  try {
    await writer.waitForProgress(20, 10_000);
    for (const name of ['m2', 'm3', 'm4', 'm5']) {
      const client = clientFor(runningEndpoints(cluster));
      await cluster.planJoining(name);
      // Adding a voter to a cluster that just changed is refused as "unhealthy cluster" for
      // ~5 s (every voter must have been connected that long): addMember retries it.
      const { added, initialCluster } = await addMember(client, cluster, name, { timeoutMs: 30_000 });
      assert.equal(added.member.isLearner, false);
      assert.equal(added.member.name, '', 'an added member has no name until it starts');
      cluster.startMember(name, { initialCluster });
      await waitServing(client, cluster, name);
      writer.setEndpoints(runningEndpoints(cluster));
      await writer.waitForProgress(20, 20_000);
      if (name === 'm3') await assertSameHashKv(cluster, ['m1', 'm2', 'm3']);
    }
    await waitMembership(runningEndpoints(cluster), ['m1:voter', 'm2:voter', 'm3:voter', 'm4:voter', 'm5:voter']);

    // Shrink: a follower first (asked through the leader), then the leader (asked through a follower).
    let leader = await cluster.waitForLeader();
    const follower = cluster.members.filter((m) => m.process !== undefined && m.name !== leader).at(-1)?.name ?? assert.fail('a follower');
    writer.setEndpoints(runningEndpoints(cluster).filter((e) => e !== cluster.member(follower).endpoint));
    await removeMember(clientFor([cluster.member(leader).endpoint]), await idOf(cluster, follower));
    await assertExitsRemoved(cluster, follower);
    await writer.waitForProgress(20, 20_000);

    leader = await cluster.waitForLeader();
    const rest = runningEndpoints(cluster).filter((e) => e !== cluster.member(leader).endpoint);
    writer.setEndpoints(rest);
    await removeMember(clientFor(rest), await idOf(cluster, leader));
    await assertExitsRemoved(cluster, leader);
    await writer.waitForProgress(20, 20_000);
  } finally {
    report = await writer.stop();
  }
  t.diagnostic(describeReport(report));
  const remaining = cluster.members.filter((m) => m.process !== undefined);
  assert.equal(remaining.length, 3);
  await waitMembership(remaining.map((m) => m.endpoint), remaining.map((m) => `${m.name}:voter`));
  for (const member of remaining) await assertAckedReadable(member.endpoint, 'grow/', report);
  await assertSameHashKv(cluster, remaining.map((m) => m.name));
});

/** A running `kvctl member replace`: its output so far and its exit code. */
function startReplace(endpoints: readonly string[], args: readonly string[]): { output(): string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [KVCTL, '--endpoints', endpoints.join(','), 'member', 'replace', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return { output: () => output, exited };
}

test('kvctl member replace replaces every member of a 3-member cluster one by one under writes; the old data dirs refuse to start', { timeout: 180_000 }, async (t) => {
  const cluster = await Cluster.start({ size: 3, electionMs: ELECTION_MS });
  t.after(() => cluster.stop());
  await cluster.waitForLeader();
  const writer = new Writer({ prefix: 'replace/', endpoints: cluster.endpoints, loops: 3 });
  let report: WriterReport;
  try {
    await writer.waitForProgress(20, 10_000);
    for (const [old, name] of [['m1', 'n1'], ['m2', 'n2'], ['m3', 'n3']]) {
      await cluster.planJoining(name);
      // The old member last: kvctl's calls fail over away from it once it is removed.
      const endpoints = [...runningEndpoints(cluster).filter((e) => e !== cluster.member(old).endpoint), cluster.member(old).endpoint];
      const run = startReplace(endpoints, [old, '--name', name, `--peer-urls=${cluster.peerUrl(name)}`, '--timeout', '2m', '--poll-interval', '200ms']);
      await waitFor('kvctl to say what to start', () => (/ETCD_INITIAL_CLUSTER_STATE="existing"/.test(run.output()) ? true : undefined), { timeoutMs: 60_000 }).catch((error: unknown) => {
        throw new Error(`${String(error)}; kvctl printed:\n${run.output()}`);
      });
      const initialCluster = /^ETCD_INITIAL_CLUSTER="([^"]*)"$/m.exec(run.output())?.[1] ?? assert.fail(`no ETCD_INITIAL_CLUSTER in:\n${run.output()}`);
      cluster.startMember(name, { initialCluster });
      const code = await run.exited;
      assert.equal(code, 0, `kvctl member replace ${old}:\n${run.output()}`);
      assert.match(run.output(), new RegExp(`^Done: [0-9a-f]+ \\(${name}\\) is a voter and ${old} is not a member$`, 'm'));
      // The removed member stops by itself, as etcd's does.
      await assertExitsRemoved(cluster, old);
      writer.setEndpoints(runningEndpoints(cluster));
      await writer.waitForProgress(20, 20_000);
    }
  } finally {
    report = await writer.stop();
  }
  t.diagnostic(describeReport(report));
  await waitMembership(runningEndpoints(cluster), ['n1:voter', 'n2:voter', 'n3:voter']);
  for (const name of ['n1', 'n2', 'n3']) await assertAckedReadable(cluster.member(name).endpoint, 'replace/', report);
  await assertSameHashKv(cluster, ['n1', 'n2', 'n3']);
  await Promise.all(['m1', 'm2', 'm3'].map((name) => assertRefusesRestart(cluster, name)));
  // The refused restarts did not disturb the cluster.
  await waitMembership(runningEndpoints(cluster), ['n1:voter', 'n2:voter', 'n3:voter']);
});

/** Structured log lines of a member (pino JSON), in order. */
function events(cluster: Cluster, name: string): Array<{ event?: string; term?: number; action?: string; node?: string; leader?: string }> {
  return cluster
    .log(name)
    .split('\n')
    .filter((line) => line.startsWith('{') && line.endsWith('}'))
    .map((line) => JSON.parse(line) as { event?: string });
}

/** Each member applies every committed batch this late (a slow disk): a new leader then takes a while to apply its predecessor's entries. */
const SLOW_APPLY = { KVD_TEST_FAILPOINTS: 'applyDelayMs=100' };

for (const through of ['the leader', 'a follower'] as const) {
  test(`removing the leader (asked through ${through}, appliers slow) hands leadership over first: a new leader is in place when MemberRemove returns, and the old leader exits 0`, { timeout: 120_000 }, async (t) => {
    await removeTheLeader(t, through);
  });
}

async function removeTheLeader(t: TestContext, through: 'the leader' | 'a follower'): Promise<void> {
  const cluster = await Cluster.start({ size: 3, electionMs: ELECTION_MS, env: SLOW_APPLY });
  t.after(() => cluster.stop());
  const clientFor = clients(t);
  const leader = await cluster.waitForLeader();
  const leaderId = await idOf(cluster, leader);
  const others = cluster.members.filter((m) => m.name !== leader);
  const writer = new Writer({ prefix: 'leader/', endpoints: others.map((m) => m.endpoint), loops: 3 });
  let report: WriterReport;
  let term: string;
  let newLeader: string;
  try {
    await writer.waitForProgress(20, 10_000);
    // Asked through the leader itself, it hands leadership over, then its removal is committed
    // by the new leader and the answer still reaches the caller. Asked through a follower, the
    // follower has the leadership moved first. Either way the new leader has only just been
    // elected when the removal is proposed and, its applier being slow and busy with the
    // writes, has not yet applied its predecessor's entries.
    const asked = through === 'the leader' ? cluster.member(leader) : others[0];
    const members = await removeMember(clientFor([asked.endpoint]), leaderId);
    assert.ok(!members.some((m) => m.id === leaderId), 'the answer lists the members after the removal');

    // Right away (no election timeout later): both remaining members know the same new leader,
    // the member list answers, and writes succeed through either.
    const statuses = await Promise.all(others.map((m) => status(m.endpoint)));
    assert.equal(new Set(statuses.map((s) => s.leader)).size, 1, `the remaining members agree on the leader: ${statuses.map((s) => s.leader).join(', ')}`);
    newLeader = statuses[0].leader;
    assert.ok(newLeader !== '0' && BigInt(newLeader) !== leaderId, `a new leader is in place when MemberRemove returns (leader ${newLeader}, removed ${leaderId})`);
    term = statuses[0].raftTerm;
    for (const member of others) await call(member.endpoint, 'Cluster', 'MemberList', {}, { timeoutMs: 2_000 });
    for (const member of others) await call(member.endpoint, 'KV', 'Put', { key: Buffer.from(`after/${member.name}`), value: Buffer.from('x') }, { timeoutMs: 2_000 });
    // MemberList is served from the member's own applied state (etcd 3.4 has no linearizable
    // member list): a follower whose applier lags lists the removed member a little longer.
    await waitMembership(others.map((m) => m.endpoint), others.map((m) => `${m.name}:voter`));

    await assertExitsRemoved(cluster, leader);
    // No election since: the leader and term the removal found are still in place now that the
    // old leader is gone (had it still led when its removal applied, the others would have
    // elected a leader an election timeout after it stopped).
    const after = await Promise.all(others.map((m) => status(m.endpoint)));
    assert.deepEqual(after.map((s) => [s.leader, s.raftTerm]), others.map(() => [newLeader, term]), 'no election after the removal');
    await writer.waitForProgress(20, 20_000);
  } finally {
    report = await writer.stop();
  }
  t.diagnostic(describeReport(report));
  // The old leader started a transfer before its removal applied on it ...
  const own = events(cluster, leader);
  const transfer = own.findIndex((e) => e.event === 'transfer-started');
  const removed = own.findIndex((e) => e.event === 'removed');
  assert.ok(transfer >= 0 && transfer < removed, `${leader} transfers leadership before its removal`);
  assert.ok(events(cluster, through === 'the leader' ? leader : others[0].name).some((e) => e.event === 'leader-handover'), 'the member asked logs the hand-over');
  // ... and the removal applied on the others in the new leader's term, with no election since.
  for (const member of others) {
    const applied = events(cluster, member.name).find((e) => e.event === 'conf-change-applied' && e.action === 'remove');
    assert.ok(applied !== undefined, `${member.name} logs the removal`);
    assert.equal(String(applied.term), term, `${member.name} applied the removal in term ${term}`);
  }
  for (const member of others) await assertAckedReadable(member.endpoint, 'leader/', report);
  await assertSameHashKv(cluster, others.map((m) => m.name));
}

test('a learner is refused promotion while unstarted or behind (etcd\'s error), and promoted once caught up; a second learner is refused by default', { timeout: 120_000 }, async (t) => {
  const cluster = await Cluster.start({ size: 3, electionMs: ELECTION_MS });
  t.after(() => cluster.stop());
  const clientFor = clients(t);
  const leader = await cluster.waitForLeader();
  const follower = cluster.members.find((m) => m.name !== leader) ?? assert.fail('a follower');
  const client = clientFor(cluster.endpoints);
  await cluster.planJoining('l1');
  const { added, initialCluster } = await addMember(client, cluster, 'l1', { isLearner: true });
  const id = added.member.id;
  assert.equal(added.member.isLearner, true);
  const promote = (endpoint: string): Promise<unknown> => call(endpoint, 'Cluster', 'MemberPromote', { ID: id.toString() }, { timeoutMs: 5_000 });

  // Never started: refused through the leader and through a follower (which forwards it).
  for (const endpoint of [cluster.member(leader).endpoint, follower.endpoint]) {
    assert.deepEqual(await refusal(promote(endpoint)), { code: grpc.status.FAILED_PRECONDITION, details: LEARNER_NOT_READY }, `promote an unstarted learner through ${endpoint}`);
  }
  // One learner at most by default (etcd's --max-learners 1), checked when the add applies.
  await cluster.planJoining('l2');
  assert.deepEqual(await refusal(call(follower.endpoint, 'Cluster', 'MemberAdd', { peerURLs: [cluster.peerUrl('l2')], isLearner: true }, { timeoutMs: 5_000 })), { code: grpc.status.FAILED_PRECONDITION, details: TOO_MANY_LEARNERS });

  // Started and caught up, then killed while the cluster takes writes: behind, refused again.
  cluster.startMember('l1', { initialCluster });
  await waitServing(client, cluster, 'l1');
  // A learner serves only Status and serializable Range, as etcd 3.4's (isRPCSupportedForLearner).
  const learnerEndpoint = cluster.member('l1').endpoint;
  const NOT_FOR_LEARNER = { code: grpc.status.UNAVAILABLE, details: 'etcdserver: rpc not supported for learner' };
  assert.deepEqual(await refusal(call(learnerEndpoint, 'KV', 'Put', { key: Buffer.from('k'), value: Buffer.from('v') })), NOT_FOR_LEARNER, 'a put on a learner');
  assert.deepEqual(await refusal(call(learnerEndpoint, 'KV', 'Range', { key: Buffer.from('k') })), NOT_FOR_LEARNER, 'a linearizable range on a learner');
  assert.deepEqual(await refusal(call(learnerEndpoint, 'Cluster', 'MemberList', {})), NOT_FOR_LEARNER, 'MemberList on a learner');
  assert.deepEqual(await refusal(call(learnerEndpoint, 'Lease', 'LeaseGrant', { TTL: 10 })), NOT_FOR_LEARNER, 'a lease grant on a learner');
  await call(learnerEndpoint, 'KV', 'Range', { key: Buffer.from('k'), serializable: true });
  assert.equal((await status(learnerEndpoint)).isLearner, true);
  await cluster.kill('l1');
  const before = BigInt((await status(cluster.member(leader).endpoint)).raftIndex);
  await writeMany(cluster.member(leader).endpoint, 'behind/', Math.max(200, Number(before)));
  assert.deepEqual(await refusal(promote(follower.endpoint)), { code: grpc.status.FAILED_PRECONDITION, details: LEARNER_NOT_READY }, 'promote a learner that is behind');
  assert.equal((await memberNamed(client, 'l1')).isLearner, true);

  // Restarted, it catches up and the promotion goes through (asked through a follower, which
  // forwards it to the leader: the answer lists l1 as a voter, as the leader sees it then).
  cluster.startMember('l1');
  await waitServing(client, cluster, 'l1');
  const promoted = await promoteWhenInSync(follower.endpoint, id);
  assert.equal(promoted.find((m) => m.ID === id.toString())?.isLearner, false, 'the promote answer lists l1 as a voter');
  for (const endpoint of runningEndpoints(cluster)) await waitVoter(endpoint, 'l1');
  await put(cluster.member('l1').endpoint, 'through/l1', 'voter');
  assert.equal((await call<{ kvs: unknown[] }>(cluster.member('l1').endpoint, 'KV', 'Range', { key: Buffer.from('behind/0') })).kvs.length, 1);
});

test('--max-learners 2 allows a second learner and refuses a third; an autoPromote learner becomes a voter by itself once started and in sync', { timeout: 120_000 }, async (t) => {
  const cluster = await Cluster.start({ size: 1, electionMs: ELECTION_MS, extraArgs: ['--max-learners', '2'] });
  t.after(() => cluster.stop());
  const client = clients(t)(cluster.endpoints);
  await cluster.waitForLeader();
  for (const name of ['a1', 'a2', 'a3']) await cluster.planJoining(name);
  // a1 asks for auto-promotion but never starts: it must stay a learner.
  await addMember(client, cluster, 'a1', { isLearner: true, autoPromote: true });
  const a2 = await addMember(client, cluster, 'a2', { isLearner: true });
  assert.deepEqual(await refusal(call(cluster.endpoints[0], 'Cluster', 'MemberAdd', { peerURLs: [cluster.peerUrl('a3')], isLearner: true }, { timeoutMs: 5_000 })), { code: grpc.status.FAILED_PRECONDITION, details: TOO_MANY_LEARNERS });

  // Make room, then add a3 with autoPromote and start it: nobody calls promote. Its settings
  // name the unstarted a1 without a name (`=url`), as etcdctl prints them.
  await client.cluster.memberRemove(a2.added.member.id);
  const a3 = await addMember(client, cluster, 'a3', { isLearner: true, autoPromote: true });
  assert.equal(a3.added.member.autoPromote, true);
  assert.ok(a3.initialCluster.split(',').includes(`=${cluster.peerUrl('a1')}`), a3.initialCluster);
  cluster.startMember('a3', { initialCluster: a3.initialCluster });
  await waitFor('a3 to become a voter by itself', async () => {
    if (cluster.member('a3').process === undefined) throw new Error(`a3 exited: ${cluster.log('a3').slice(-1000)}`);
    const member = (await client.cluster.memberList()).members.find((m) => m.id === a3.added.member.id);
    return member !== undefined && !member.isLearner ? true : undefined;
  }, { timeoutMs: 30_000 });
  // The promotion is applied by the others first: wait until a3 itself serves as a voter (its
  // client port open, its front-ends told that it is no longer a learner).
  await waitFor('a3 to serve as a voter', async () => {
    const status = await call<{ isLearner?: boolean }>(cluster.member('a3').endpoint, 'Maintenance', 'Status', {}, { timeoutMs: 1_000 });
    return status.isLearner === true ? undefined : true;
  }, { timeoutMs: 30_000 });
  await put(cluster.member('a3').endpoint, 'through/a3', 'voter');
  const a1 = (await client.cluster.memberList()).members.find((m) => m.peerUrls.includes(cluster.peerUrl('a1')));
  assert.equal(a1?.isLearner, true, 'an unstarted autoPromote learner stays a learner');
});

test('members whose --max-learners differ still decide a learner add alike (the proposer\'s limit travels in the entry)', { timeout: 120_000 }, async (t) => {
  const cluster = await Cluster.prepare({ size: 3, electionMs: ELECTION_MS });
  t.after(() => cluster.stop());
  cluster.startMember('m1', { extraArgs: ['--max-learners', '2'] });
  cluster.startMember('m2');
  cluster.startMember('m3');
  await waitFor('a leader', async () => ((await status(cluster.member('m1').endpoint)).leader !== '0' ? true : undefined), { timeoutMs: 30_000 });
  for (const name of ['l1', 'l2']) {
    await cluster.planJoining(name);
    await call(cluster.member('m1').endpoint, 'Cluster', 'MemberAdd', { peerURLs: [cluster.peerUrl(name)], isLearner: true }, { timeoutMs: 10_000 });
  }
  // Before the limit travelled in the entry, m2 and m3 (limit 1) refused the second add at
  // apply time while m1 accepted it: m1 listed 5 members, m2 and m3 four.
  for (const name of ['m1', 'm2', 'm3']) {
    const endpoint = cluster.member(name).endpoint;
    const listed = async (): Promise<number> => (await call<{ members: unknown[] }>(endpoint, 'Cluster', 'MemberList', { linearizable: false }, { timeoutMs: 5_000 })).members.length;
    await waitFor(`${name} to list both learners`, async () => ((await listed()) === 5 ? true : undefined), { timeoutMs: 15_000 });
  }
});

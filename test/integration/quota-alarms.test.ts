// Goal: the backend quota and the alarms behave as etcd's on every member (NOSPACE raised through
// Raft when a backend passes --quota-backend-bytes; growing writes refused with etcd's code and
// text everywhere while reads, deletes, compaction and defragmentation work; Status `errors` and
// Alarm GET list it), and as kvd adds: the alarm clears itself once compaction and
// defragmentation bring the backend under the low-water mark; a client's alarm (ACTIVATE,
// DEACTIVATE of NOSPACE and CORRUPT for any member) is agreed by every member, survives a
// restart, and only a client clears it.
// Method: a real 3-member cluster with a 2 MiB quota, filled with incompressible 100 kB values;
// every check goes to every member over gRPC; waits have deadlines, never fixed sleeps.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Cluster, call, get, prefixEnd, put, waitFor, type StatusResponse } from './harness.js';

const QUOTA_BYTES = 2 * 1024 * 1024;
const NOSPACE_TEXT = 'etcdserver: mvcc: database space exceeded';
const RESOURCE_EXHAUSTED = 8;
const DATA_LOSS = 15;

interface AlarmResponse { alarms: Array<{ memberID: string; alarm: string }> }
type GrpcError = { code: number; details: string };

const isNoSpace = (error: GrpcError): boolean => error.code === RESOURCE_EXHAUSTED && error.details === NOSPACE_TEXT;
const isCorrupt = (error: GrpcError): boolean => error.code === DATA_LOSS && error.details === 'etcdserver: corrupt cluster';

async function alarms(endpoint: string): Promise<string[]> {
  const response = await call<AlarmResponse>(endpoint, 'Maintenance', 'Alarm', { action: 'GET', memberID: '0', alarm: 'NONE' });
  return response.alarms.map((a) => `${a.memberID}:${a.alarm}`);
}

async function status(endpoint: string): Promise<StatusResponse & { dbSizeInUse: string }> {
  return call(endpoint, 'Maintenance', 'Status', {}, { timeoutMs: 3000 });
}

test('NOSPACE: raised through Raft past the quota, refused everywhere with etcd\'s error, reads/deletes/compaction work, clears itself after compaction + defrag', async () => {
  const cluster = await Cluster.start({ size: 3, extraArgs: ['--quota-backend-bytes', String(QUOTA_BYTES)] });
  after(() => cluster.stop());
  await cluster.waitForLeader();
  const [m1] = cluster.members;

  // Fill through m1 until the quota refuses: about 20 values of 100 kB.
  let stored = 0;
  for (;;) {
    assert.ok(stored < 80, 'the quota refuses a put within 8 MB of values');
    try {
      await put(m1.endpoint, `big/${stored}`, randomBytes(100_000).toString('latin1'));
      stored += 1;
    } catch (error: unknown) {
      assert.ok(isNoSpace(error as GrpcError), `refused with etcd's NOSPACE error: ${JSON.stringify(error)}`);
      break;
    }
  }
  assert.ok(stored >= 10, `the quota let ${stored} values through first`);

  // Every member agrees on the alarm and refuses every write that grows the store.
  const everyone = await waitFor('every member to list the same NOSPACE alarms', async () => {
    const lists = await Promise.all(cluster.members.map((m) => alarms(m.endpoint)));
    const texts = lists.map((list) => list.join(','));
    return new Set(texts).size === 1 && lists[0].length > 0 && lists[0].every((a) => a.endsWith(':NOSPACE')) ? lists[0] : undefined;
  }, { timeoutMs: 10_000 });
  for (const member of cluster.members) {
    await assert.rejects(put(member.endpoint, 'small', 'x'), isNoSpace, `${member.name} refuses a put`);
    await assert.rejects(call(member.endpoint, 'Lease', 'LeaseGrant', { TTL: '60' }), isNoSpace, `${member.name} refuses a lease grant`);
    await assert.rejects(call(member.endpoint, 'KV', 'Txn', { success: [{ request_range: { key: Buffer.from('big/0') } }], failure: [{ request_put: { key: Buffer.from('t'), value: Buffer.from('v') } }] }), isNoSpace, `${member.name} refuses a txn with a put in a branch`);
    const readOnly = await call<{ succeeded: boolean }>(member.endpoint, 'KV', 'Txn', { success: [{ request_range: { key: Buffer.from('big/0') } }] });
    assert.equal(readOnly.succeeded, true, `${member.name} serves a read-only txn`);
    assert.equal((await get(member.endpoint, 'big/0')).kvs.length, 1, `${member.name} serves linearizable reads`);
    assert.equal((await get(member.endpoint, 'big/1', { serializable: true })).kvs.length, 1, `${member.name} serves serializable reads`);
    const errors = (await status(member.endpoint)).errors;
    assert.deepEqual(errors, everyone.map((a) => `memberID:${a.split(':')[0]} alarm:NOSPACE `), `${member.name} Status errors list the alarms as etcd prints them`);
  }

  // Deletes and compaction work; defragmenting every member brings it under the low-water mark.
  const deleted = await call<{ deleted: string; header: { revision: string } }>(m1.endpoint, 'KV', 'DeleteRange', { key: Buffer.from('big/'), range_end: prefixEnd('big/') });
  assert.equal(Number(deleted.deleted), stored);
  await call(m1.endpoint, 'KV', 'Compact', { revision: deleted.header.revision, physical: true }, { timeoutMs: 10_000 });
  for (const member of cluster.members) {
    await waitFor(`${member.name} to show that a defrag would help (in use well under the file size)`, async () => {
      const before = await status(member.endpoint);
      return Number(before.dbSizeInUse) * 2 < Number(before.dbSize) ? true : undefined;
    }, { timeoutMs: 10_000 });
  }
  for (const member of cluster.members) {
    await waitFor(`${member.name} to apply the compaction`, async () => (await get(member.endpoint, 'big/0', { serializable: true, revision: String(Number(deleted.header.revision) - 1) }).then(() => undefined, (error: GrpcError) => (error.code === 11 ? true : undefined))), { timeoutMs: 10_000 });
    await call(member.endpoint, 'Maintenance', 'Defragment', {}, { timeoutMs: 30_000 });
    const after = await status(member.endpoint);
    assert.ok(Number(after.dbSize) < QUOTA_BYTES * 0.8, `${member.name} is under the low-water mark after defrag (${after.dbSize} bytes)`);
    assert.ok(Number(after.dbSizeInUse) <= Number(after.dbSize));
  }
  await waitFor('the NOSPACE alarms to clear by themselves on every member', async () => {
    const lists = await Promise.all(cluster.members.map((m) => alarms(m.endpoint)));
    return lists.every((list) => list.length === 0) ? true : undefined;
  }, { timeoutMs: 15_000 });
  const raiser = cluster.members.find((m) => cluster.log(m.name).includes('"event":"quota-low-water"'));
  assert.ok(raiser !== undefined, 'the member whose alarm it was logged the low-water clear');
  assert.match(cluster.log(m1.name), /"event":"alarm-cleared".*"origin":"low-water"/);
  for (const member of cluster.members) await put(member.endpoint, `after/${member.name}`, 'ok');
});

test('Hash agrees across members; MoveLeader refuses as etcd does (on a follower, to a non-member) and moves leadership', async () => {
  const cluster = await Cluster.start({ size: 3 });
  after(() => cluster.stop());
  const leaderName = await cluster.waitForLeader();
  let revision = 0;
  for (let i = 0; i < 20; i++) revision = Number((await put(cluster.members[i % 3].endpoint, `h/${i}`, `v${i}`)).header.revision);
  const hashes = await waitFor('every member to hash the same backend', async () => {
    const answers = await Promise.all(cluster.members.map((m) => call<{ hash: number; header: { revision: string } }>(m.endpoint, 'Maintenance', 'Hash', {})));
    return answers.every((a) => Number(a.header.revision) === revision) && new Set(answers.map((a) => a.hash)).size === 1 ? answers : undefined;
  }, { timeoutMs: 10_000 });
  assert.ok(hashes[0].hash > 0);
  const leader = cluster.member(leaderName);
  const follower = cluster.members.find((m) => m.name !== leaderName);
  assert.ok(follower !== undefined);
  const followerId = (await status(follower.endpoint)).header.member_id;
  const isFailedPrecondition = (text: string) => (error: GrpcError): boolean => error.code === 9 && error.details === text;
  await assert.rejects(call(follower.endpoint, 'Maintenance', 'MoveLeader', { targetID: followerId }), isFailedPrecondition('etcdserver: not leader'));
  await assert.rejects(call(leader.endpoint, 'Maintenance', 'MoveLeader', { targetID: '12345' }), isFailedPrecondition('etcdserver: bad leader transferee'));
  await call(leader.endpoint, 'Maintenance', 'MoveLeader', { targetID: followerId }, { timeoutMs: 10_000 });
  assert.equal(await cluster.waitForLeader(), follower.name);
});

test('Alarm ACTIVATE/DEACTIVATE of NOSPACE and CORRUPT for any member: every member agrees and refuses alike, the alarm survives a restart, only a client clears it', async () => {
  const cluster = await Cluster.start({ size: 3 });
  after(() => cluster.stop());
  await cluster.waitForLeader();
  const [m1, m2, m3] = cluster.members;
  await put(m1.endpoint, 'k', 'v');
  const m3Id = (await status(m3.endpoint)).header.member_id;

  const raised = await call<AlarmResponse>(m2.endpoint, 'Maintenance', 'Alarm', { action: 'ACTIVATE', memberID: m3Id, alarm: 'NOSPACE' });
  assert.deepEqual(raised.alarms, [{ memberID: m3Id, alarm: 'NOSPACE' }]);
  const again = await call<AlarmResponse>(m1.endpoint, 'Maintenance', 'Alarm', { action: 'ACTIVATE', memberID: m3Id, alarm: 'NOSPACE' });
  assert.deepEqual(again.alarms, [{ memberID: m3Id, alarm: 'NOSPACE' }], 'activating an active alarm answers it, as etcd does');
  await call(m1.endpoint, 'Maintenance', 'Alarm', { action: 'ACTIVATE', memberID: '12345', alarm: 'CORRUPT' });
  for (const member of cluster.members) {
    await waitFor(`${member.name} to list both alarms`, async () => ((await alarms(member.endpoint)).join(',') === `12345:CORRUPT,${m3Id}:NOSPACE` || (await alarms(member.endpoint)).join(',') === `${m3Id}:NOSPACE,12345:CORRUPT` ? true : undefined), { timeoutMs: 5_000 });
    const corruptOnly = await call<AlarmResponse>(member.endpoint, 'Maintenance', 'Alarm', { action: 'GET', alarm: 'CORRUPT' });
    assert.deepEqual(corruptOnly.alarms, [{ memberID: '12345', alarm: 'CORRUPT' }], 'GET filters by type');
    await assert.rejects(put(member.endpoint, 'k', 'w'), isCorrupt, `${member.name}: CORRUPT wins over NOSPACE`);
    await assert.rejects(call(member.endpoint, 'KV', 'DeleteRange', { key: Buffer.from('k') }), isCorrupt);
    await assert.rejects(call(member.endpoint, 'KV', 'Compact', { revision: '1' }), isCorrupt);
    await assert.rejects(call(member.endpoint, 'Lease', 'LeaseRevoke', { ID: '1' }), isCorrupt);
    assert.equal((await get(member.endpoint, 'k')).kvs[0].value.toString(), 'v', `${member.name} serves reads`);
  }
  const cleared = await call<AlarmResponse>(m3.endpoint, 'Maintenance', 'Alarm', { action: 'DEACTIVATE', memberID: '12345', alarm: 'CORRUPT' });
  assert.deepEqual(cleared.alarms, [{ memberID: '12345', alarm: 'CORRUPT' }]);
  const none = await call<AlarmResponse>(m3.endpoint, 'Maintenance', 'Alarm', { action: 'DEACTIVATE', memberID: '12345', alarm: 'CORRUPT' });
  assert.deepEqual(none.alarms, [], 'deactivating what is not active answers nothing');
  await assert.rejects(put(m1.endpoint, 'k', 'w'), isNoSpace, 'NOSPACE still refuses puts');
  await call(m1.endpoint, 'KV', 'DeleteRange', { key: Buffer.from('gone') });

  // The alarm is in the backend: a restarted member still has it and still refuses.
  await cluster.kill('m3');
  cluster.startMember('m3');
  await waitFor('m3 to serve again', async () => (await alarms(m3.endpoint)).join(',') === `${m3Id}:NOSPACE` ? true : undefined, { timeoutMs: 20_000 });
  await assert.rejects(put(m3.endpoint, 'k', 'w'), isNoSpace);
  const disarmed = await call<AlarmResponse>(m3.endpoint, 'Maintenance', 'Alarm', { action: 'DEACTIVATE', memberID: m3Id, alarm: 'NOSPACE' });
  assert.deepEqual(disarmed.alarms, [{ memberID: m3Id, alarm: 'NOSPACE' }]);
  for (const member of cluster.members) {
    await waitFor(`${member.name} to take writes again`, async () => put(member.endpoint, 'k', member.name).then(() => true, () => undefined), { timeoutMs: 10_000 });
    assert.deepEqual((await status(member.endpoint)).errors, []);
  }
});

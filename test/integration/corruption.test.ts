// Goal: corruption detection is on by default and catches a member whose backend was silently
// changed: the initial check at its restart (HashKV compared with its peers at the same revision
// over the hashkv member call) raises a CORRUPT alarm for it through Raft, logged with the
// revision and both hashes; every member then lists the alarm and refuses writes with etcd's
// `etcdserver: corrupt cluster` (DATA_LOSS) while serving reads. The leader's periodic check
// (--corrupt-check-time) catches it as well when the initial check is off.
// Method: real 3-member clusters; one member is stopped, one value of its LevelDB backend is
// rewritten with flipped bytes by a test tool (tools/flip-value.ts), and it is started again.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, call, get, put, waitFor, type StatusResponse } from './harness.js';
import { flipValue } from './tools/flip-value.js';
import { etcdctl, haveEtcdctl } from '../compat/etcd-cluster.js';

const DATA_LOSS = 15;
const isCorrupt = (error: { code: number; details: string }): boolean => error.code === DATA_LOSS && error.details === 'etcdserver: corrupt cluster';

async function memberId(endpoint: string): Promise<string> {
  return (await call<StatusResponse>(endpoint, 'Maintenance', 'Status', {})).header.member_id;
}

async function alarmList(endpoint: string): Promise<string[]> {
  const response = await call<{ alarms: Array<{ memberID: string; alarm: string }> }>(endpoint, 'Maintenance', 'Alarm', { action: 'GET' });
  return response.alarms.map((a) => `${a.memberID}:${a.alarm}`);
}

/** Writes keys through every member and waits until every member has applied them. */
async function writeAndConverge(cluster: Cluster): Promise<number> {
  let revision = 0;
  for (let i = 0; i < 30; i++) revision = Number((await put(cluster.members[i % 3].endpoint, `key/${i}`, `value-${i}`)).header.revision);
  for (const member of cluster.members) {
    await waitFor(`${member.name} at revision ${revision}`, async () => (Number((await get(member.endpoint, 'x', { serializable: true })).header.revision) >= revision ? true : undefined), { timeoutMs: 10_000 });
  }
  return revision;
}

async function expectCorruptAlarm(cluster: Cluster, corruptId: string): Promise<void> {
  for (const member of cluster.members) {
    await waitFor(`${member.name} to list the CORRUPT alarm of ${corruptId}`, async () => ((await alarmList(member.endpoint)).includes(`${corruptId}:CORRUPT`) ? true : undefined), { timeoutMs: 20_000 });
    await assert.rejects(put(member.endpoint, 'key/0', 'new'), isCorrupt, `${member.name} refuses writes`);
    assert.equal((await get(member.endpoint, 'key/1')).kvs[0].value.toString(), 'value-1', `${member.name} serves reads`);
    const status = await call<StatusResponse>(member.endpoint, 'Maintenance', 'Status', {});
    assert.ok(status.errors.includes(`memberID:${corruptId} alarm:CORRUPT `), `${member.name} Status errors: ${status.errors.join('|')}`);
  }
}

test('the initial check of a restarted member whose backend was changed raises CORRUPT for it; every member refuses writes', async () => {
  const cluster = await Cluster.start({ size: 3 });
  after(() => cluster.stop());
  await cluster.waitForLeader();
  await writeAndConverge(cluster);
  const m3 = cluster.member('m3');
  const m3Id = await memberId(m3.endpoint);
  await waitFor('m3\'s own initial check to pass', () => (cluster.logEvents('m3').some((e) => e.event === 'corruption-check-passed' && e.check === 'initial') ? true : undefined), { timeoutMs: 10_000 });

  await cluster.kill('m3', 'SIGTERM');
  const flipped = await flipValue(m3.dataDir, 'key/7');
  cluster.startMember('m3');
  await expectCorruptAlarm(cluster, m3Id);
  const found = await waitFor('m3 to log the mismatch', () => cluster.logEvents('m3').find((e) => e.event === 'corruption-detected'), { timeoutMs: 5_000 });
  assert.equal(found.check, 'initial');
  assert.ok(typeof found.revision === 'number' && found.revision >= flipped, 'logged with the revision compared');
  const peerHashes = Object.values(found.peerHashes as Record<string, { hash: number }>).map((peer) => peer.hash);
  assert.equal(peerHashes.length, 2);
  assert.ok(peerHashes.every((hash) => hash === peerHashes[0] && hash !== found.localHash), `both hashes logged: local ${String(found.localHash)}, peers ${peerHashes.join(',')}`);
  assert.deepEqual(found.blamed, [BigInt(m3Id).toString(16)]);
  if (haveEtcdctl()) {
    const listed = etcdctl([cluster.member('m1').endpoint], ['alarm', 'list']);
    assert.equal(listed.stdout, `memberID:${m3Id} alarm:CORRUPT \n`, 'etcdctl alarm list shows it as etcd would');
    const refused = etcdctl([cluster.member('m2').endpoint], ['put', 'key/0', 'x']);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /^Error: etcdserver: corrupt cluster$/m);
  }
});

test('with the initial check off, the leader\'s periodic check finds the changed member', async () => {
  const cluster = await Cluster.start({ size: 3, extraArgs: ['--corrupt-check-time', '1s', '--experimental-initial-corrupt-check', 'false'] });
  after(() => cluster.stop());
  await cluster.waitForLeader();
  await writeAndConverge(cluster);
  await waitFor('a periodic check to pass', () => (cluster.members.some((m) => cluster.logEvents(m.name).some((e) => e.event === 'corruption-check-passed' && e.check === 'periodic')) ? true : undefined), { timeoutMs: 10_000 });
  // Corrupt a follower: the leader's check blames the member whose hash differs from the majority.
  const leader = await cluster.waitForLeader();
  const follower = cluster.members.find((m) => m.name !== leader);
  assert.ok(follower !== undefined);
  const followerId = await memberId(follower.endpoint);
  await cluster.kill(follower.name, 'SIGTERM');
  await flipValue(follower.dataDir, 'key/3');
  cluster.startMember(follower.name);
  await expectCorruptAlarm(cluster, followerId);
  assert.ok(!cluster.logEvents(follower.name).some((e) => e.event === 'corruption-check-passed' && e.check === 'initial'), 'no initial check ran');
});

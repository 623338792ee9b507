// Goal: the `etcd3` npm client (what many Node services use against etcd) works against kvd for
// KV, watch and lease use: watchers get puts and deletes in order, resume from a revision,
// leases keep keys alive and revoke them, locks exclude, elections elect.
// Method: a real 3-member kvd cluster; the etcd3 client connected to all three endpoints.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { Cluster, waitFor } from '../integration/harness.js';

let cluster: Cluster;
let client: Etcd3;

before(async () => {
  cluster = await Cluster.start({ size: 3 });
  await cluster.waitForLeader();
  client = new Etcd3({ hosts: cluster.endpoints.map((e) => `http://${e}`) });
});

after(async () => {
  client.close();
  await cluster.stop();
});

test('etcd3: put, get, prefix, delete and a transaction', async () => {
  await client.put('cfg/a').value('1');
  await client.put('cfg/b').value('2');
  assert.equal(await client.get('cfg/a').string(), '1');
  assert.deepEqual(await client.getAll().prefix('cfg/').strings(), { 'cfg/a': '1', 'cfg/b': '2' });
  const result = await client.if('cfg/a', 'Value', '==', '1').then(client.put('cfg/c').value('3')).else(client.put('cfg/c').value('no')).commit();
  assert.equal(result.succeeded, true);
  assert.equal(await client.get('cfg/c').string(), '3');
  await client.delete().prefix('cfg/');
  assert.equal(await client.getAll().prefix('cfg/').count(), 0);
});

test('etcd3: a prefix watcher sees puts and deletes in order, and a watcher from a revision replays history', async () => {
  const watcher = await client.watch().prefix('svc/').create();
  const seen: string[] = [];
  watcher.on('put', (kv) => seen.push(`put ${kv.key.toString()}=${kv.value.toString()}`));
  watcher.on('delete', (kv) => seen.push(`delete ${kv.key.toString()}`));
  const first = await client.put('svc/one').value('a').exec();
  await client.put('svc/two').value('b');
  await client.delete().key('svc/one');
  await waitFor('three events', () => (seen.length >= 3 ? true : undefined), { timeoutMs: 10_000 });
  assert.deepEqual(seen, ['put svc/one=a', 'put svc/two=b', 'delete svc/one']);
  await watcher.cancel();
  const replay = await client.watch().prefix('svc/').startRevision(first.header.revision).create();
  const replayed: string[] = [];
  replay.on('data', (response) => {
    for (const event of response.events) replayed.push(`${event.type} ${event.kv.key.toString()}`);
  });
  await waitFor('the replayed history', () => (replayed.length >= 3 ? true : undefined), { timeoutMs: 10_000 });
  assert.deepEqual(replayed, ['Put svc/one', 'Put svc/two', 'Delete svc/one']);
  await replay.cancel();
});

test('etcd3: a lease keeps its key alive until revoked; revoking deletes the key', async () => {
  const ttlMs = 2000;
  const lease = client.lease(ttlMs / 1000);
  const renewedAt: number[] = [];
  let lost: unknown;
  lease.on('keepaliveSucceeded', () => renewedAt.push(Date.now()));
  lease.on('lost', (error) => (lost = error));
  await lease.put('lease/key').value('alive');
  const putAt = Date.now();
  // The client renews every TTL / 3. Wait, with a deadline, until a renewal answered more than
  // 1.5 TTLs after the put: the key is then only there because the keep-alives worked.
  await waitFor('keep-alives renewing the lease past its TTL', () => (lost === undefined && renewedAt.some((at) => at - putAt > 1.5 * ttlMs) ? true : undefined), { timeoutMs: 20_000 });
  assert.equal(lost, undefined, 'the client never lost the lease');
  assert.equal(await client.get('lease/key').string(), 'alive');
  await lease.revoke();
  assert.equal(await client.get('lease/key').string(), null);
});

test('etcd3: locks exclude each other and elections elect one leader', async () => {
  // etcd3's lock does not wait: a second acquire while the first holds it fails.
  const first = client.lock('etcd3-lock').ttl(5);
  await first.acquire();
  await assert.rejects(client.lock('etcd3-lock').ttl(5).acquire(), /Failed to acquire a lock/);
  await first.release();
  const second = client.lock('etcd3-lock').ttl(5);
  await second.acquire();
  await second.release();
  const election = client.election('etcd3-election', 5);
  const campaign = election.campaign('candidate-1');
  await campaign.wait();
  assert.equal(await election.leader(), 'candidate-1');
  await campaign.resign();
});

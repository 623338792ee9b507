// Goal: watches and leases behave as etcd's across a real 3-member cluster: a watcher from a past
// revision gets every event once and in order, then live events; watchers on different members
// see the same sequence; a watcher resuming after a leader kill (from last revision + 1) misses
// and repeats nothing; a leased key disappears after its TTL (never before) once keep-alives stop;
// keep-alives sent to a follower reach the leader; kept-alive leases survive a leader change.
// Method: real kvd processes (harness.ts) driven over raw gRPC streams; deadlines, no sleeps
// except where the property itself is about time (TTL bounds).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, call, get, put, waitFor, watchStream, prefixEnd } from './harness.js';

type WatchResponseJs = { header: { revision: string }; watch_id: string; created: boolean; canceled: boolean; compact_revision: string; events: Array<{ type: string; kv: { key: Buffer; mod_revision: string; value: Buffer } }> };

/** Collects events of one watcher (key prefix) from `endpoint`, starting at `startRevision`. */
function collect(endpoint: string, prefix: string, startRevision: string): { events: Array<{ type: string; key: string; revision: bigint }>; created: Promise<void>; close(): void } {
  const stream = watchStream(endpoint);
  const events: Array<{ type: string; key: string; revision: bigint }> = [];
  let resolveCreated: () => void = () => {};
  const created = new Promise<void>((resolve) => { resolveCreated = resolve; });
  stream.on('data', (response: WatchResponseJs) => {
    if (response.created) resolveCreated();
    for (const event of response.events) events.push({ type: event.type, key: event.kv.key.toString(), revision: BigInt(event.kv.mod_revision) });
  });
  stream.on('error', () => {});
  stream.write({ create_request: { key: Buffer.from(prefix), range_end: prefixEnd(prefix), start_revision: startRevision } });
  return { events, created, close: () => stream.cancel() };
}

test('watchers from a past revision on every member see the same gap-free sequence, then live events', async () => {
  const cluster = await Cluster.start({ size: 3 });
  after(() => cluster.stop());
  await cluster.waitForLeader();
  const first = await put(cluster.members[0].endpoint, 'w/a', '1');
  for (let i = 0; i < 20; i++) await put(cluster.members[i % 3].endpoint, `w/k${i % 5}`, String(i));
  await call(cluster.members[0].endpoint, 'KV', 'DeleteRange', { key: Buffer.from('w/k0') });
  const watchers = cluster.members.map((m) => collect(m.endpoint, 'w/', first.header.revision));
  await Promise.all(watchers.map((w) => w.created));
  for (let i = 0; i < 20; i++) await put(cluster.members[(i + 1) % 3].endpoint, `w/live${i}`, String(i));
  const expected = 1 + 20 + 1 + 20;
  await waitFor('every watcher to receive every event', () => (watchers.every((w) => w.events.length >= expected) ? true : undefined), { timeoutMs: 15_000 });
  for (const watcher of watchers) {
    watcher.close();
    assert.equal(watcher.events.length, expected);
    for (let i = 1; i < watcher.events.length; i++) assert.ok(watcher.events[i].revision > watcher.events[i - 1].revision, 'strictly increasing revisions, no duplicates');
    assert.deepEqual(watcher.events, watchers[0].events, 'same sequence on every member');
  }
  assert.equal(watchers[0].events[0].revision, BigInt(first.header.revision));
  assert.equal(watchers[0].events.filter((e) => e.type === 'DELETE').length, 1);
});

test('a watcher resuming from last revision + 1 after a leader kill misses and repeats nothing', async () => {
  const cluster = await Cluster.start({ size: 3 });
  after(() => cluster.stop());
  const leader = await cluster.waitForLeader();
  const follower = cluster.members.find((m) => m.name !== leader);
  assert.ok(follower !== undefined);
  const start = await put(follower.endpoint, 'r/start', '0');
  let watcher = collect(cluster.member(leader).endpoint, 'r/', start.header.revision);
  await watcher.created;
  const seen: Array<{ key: string; revision: bigint }> = [];
  const written: string[] = ['r/start'];
  for (let i = 0; i < 30; i++) {
    await put(follower.endpoint, `r/${i}`, String(i));
    written.push(`r/${i}`);
  }
  await waitFor('events before the kill', () => (watcher.events.length >= 31 ? true : undefined), { timeoutMs: 10_000 });
  seen.push(...watcher.events);
  watcher.close();
  await cluster.kill(leader, 'SIGKILL');
  await cluster.waitForLeader();
  for (let i = 30; i < 60; i++) {
    await put(follower.endpoint, `r/${i}`, String(i));
    written.push(`r/${i}`);
  }
  const resumeFrom = (seen[seen.length - 1].revision + 1n).toString();
  watcher = collect(follower.endpoint, 'r/', resumeFrom);
  await waitFor('events after the kill', () => (watcher.events.length >= 30 ? true : undefined), { timeoutMs: 10_000 });
  seen.push(...watcher.events);
  watcher.close();
  assert.deepEqual(seen.map((e) => e.key), written);
});

test('a leased key vanishes after its TTL once keep-alives stop, never before; keep-alives through a follower reach the leader', async () => {
  const cluster = await Cluster.start({ size: 3, heartbeatMs: 50, electionMs: 500 });
  after(() => cluster.stop());
  const leader = await cluster.waitForLeader();
  const follower = cluster.members.find((m) => m.name !== leader);
  assert.ok(follower !== undefined);
  const grant = await call<{ ID: string; TTL: string }>(follower.endpoint, 'Lease', 'LeaseGrant', { TTL: 3 });
  assert.equal(grant.TTL, '3');
  await put(follower.endpoint, 'leased', 'v', { lease: grant.ID });
  // Keep it alive through the follower for ~4 s (longer than the TTL).
  const deadline = Date.now() + 4000;
  while (Date.now() < deadline) {
    const response = await call<{ TTL: string }>(follower.endpoint, 'Lease', 'LeaseTimeToLive', { ID: grant.ID });
    assert.ok(Number(response.TTL) > 0, 'lease alive while kept');
    await keepAliveOnce(follower.endpoint, grant.ID);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  assert.equal((await get(follower.endpoint, 'leased')).kvs.length, 1, 'kept-alive key still there after more than one TTL');
  const stoppedAt = Date.now();
  // Never before the TTL: check until TTL - 0.5 s after the last keep-alive.
  while (Date.now() < stoppedAt + 2500) {
    assert.equal((await get(follower.endpoint, 'leased', { serializable: true })).kvs.length, 1, 'key present before its TTL ran out');
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await waitFor('the leased key to vanish', async () => ((await get(follower.endpoint, 'leased')).kvs.length === 0 ? true : undefined), { timeoutMs: 3000 + 500 + 2000 });
  const goneAfterMs = Date.now() - stoppedAt;
  assert.ok(goneAfterMs <= 3000 + 500 + 1500, `gone ${goneAfterMs} ms after the last keep-alive`);
});

test('a kept-alive lease survives a leader change', async () => {
  const cluster = await Cluster.start({ size: 3, heartbeatMs: 50, electionMs: 500 });
  after(() => cluster.stop());
  const leader = await cluster.waitForLeader();
  const follower = cluster.members.find((m) => m.name !== leader);
  assert.ok(follower !== undefined);
  const grant = await call<{ ID: string }>(follower.endpoint, 'Lease', 'LeaseGrant', { TTL: 4 });
  await put(follower.endpoint, 'survivor', 'v', { lease: grant.ID });
  await keepAliveOnce(follower.endpoint, grant.ID);
  await cluster.kill(leader, 'SIGKILL');
  await cluster.waitForLeader();
  for (let i = 0; i < 8; i++) {
    await keepAliveOnce(follower.endpoint, grant.ID).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  assert.equal((await get(follower.endpoint, 'survivor')).kvs.length, 1);
  const revoked = await call<{ header: { revision: string } }>(follower.endpoint, 'Lease', 'LeaseRevoke', { ID: grant.ID });
  assert.ok(BigInt(revoked.header.revision) > 0n);
  assert.equal((await get(follower.endpoint, 'survivor')).kvs.length, 0);
});

/** One LeaseKeepAlive round trip on a fresh stream. */
async function keepAliveOnce(endpoint: string, id: string): Promise<string> {
  const grpc = await import('@grpc/grpc-js');
  const { loadServices } = await import('../../src/api/proto.js');
  const client = new (loadServices().Lease)(endpoint, grpc.credentials.createInsecure()) as unknown as { LeaseKeepAlive: () => import('@grpc/grpc-js').ClientDuplexStream<object, { ID: string; TTL: string }>; close(): void };
  try {
    const stream = client.LeaseKeepAlive();
    const answer = new Promise<string>((resolve, reject) => {
      stream.once('data', (response) => resolve(response.TTL));
      stream.once('error', reject);
    });
    stream.write({ ID: id });
    const ttl = await answer;
    stream.cancel();
    if (ttl === '0') throw new Error('lease not found at keep-alive');
    return ttl;
  } finally {
    client.close();
  }
}

test('revoking a lease with more keys than a txn may hold deletes them all in one revision; live prevKv watchers get previous values', async () => {
  const cluster = await Cluster.start({ size: 3 });
  after(() => cluster.stop());
  await cluster.waitForLeader();
  const endpoint = cluster.members[0].endpoint;
  const grant = await call<{ ID: string }>(endpoint, 'Lease', 'LeaseGrant', { TTL: 60 });
  for (let i = 0; i < 200; i += 20) {
    await Promise.all(Array.from({ length: 20 }, (_, j) => put(endpoint, `many/${String(i + j).padStart(3, '0')}`, 'x', { lease: grant.ID })));
  }
  // A live watcher with prev_kv on one of the keys.
  const stream = watchStream(cluster.members[1].endpoint);
  const prevValues: string[] = [];
  let created: () => void = () => {};
  const isCreated = new Promise<void>((resolve) => { created = resolve; });
  stream.on('data', (response: { created: boolean; events: Array<{ type: string; prev_kv: { value: Buffer } | null }> }) => {
    if (response.created) created();
    for (const event of response.events) prevValues.push(`${event.type}:${event.prev_kv?.value.toString() ?? '-'}`);
  });
  stream.on('error', () => {});
  stream.write({ create_request: { key: Buffer.from('many/000'), prev_kv: true } });
  await isCreated;
  await put(endpoint, 'many/000', 'y', { lease: grant.ID });
  const revoked = await call<{ header: { revision: string } }>(endpoint, 'Lease', 'LeaseRevoke', { ID: grant.ID });
  await waitFor('the watcher to see the put and the delete', () => (prevValues.length >= 2 ? true : undefined), { timeoutMs: 10_000 });
  stream.cancel();
  assert.deepEqual(prevValues, ['PUT:x', 'DELETE:y']);
  const left = await get(endpoint, 'many/', { range_end: prefixEnd('many/'), count_only: true });
  assert.equal(left.count, '0');
  // All 200 deletions share the revoke's revision.
  const before = await get(endpoint, 'many/', { range_end: prefixEnd('many/'), count_only: true, revision: String(BigInt(revoked.header.revision) - 1n) });
  assert.equal(before.count, '200');
});

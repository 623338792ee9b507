// Goal: watches and leases behave as etcd's across a real 3-member cluster: a watcher from a past
// revision gets every event once and in order, then live events; watchers on different members
// see the same sequence; a watcher resuming after a leader kill (from last revision + 1) misses
// and repeats nothing; a leased key disappears after its TTL (never before) once keep-alives stop;
// keep-alives sent to a follower reach the leader; keep-alives go on renewing a lease after a
// leader change (the key outlives several TTLs after it, which the new leader's one-time
// extension alone cannot do).
// Method: real kvd processes (harness.ts) driven over raw gRPC streams; conditions are awaited
// with deadlines; the only timers are a keep-alive client's cadence and poll intervals, and
// time bounds are checked against timestamps taken when each read returned.
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
  const ttlMs = 3000;
  const grantedAt = Date.now();
  const grant = await call<{ ID: string; TTL: string }>(follower.endpoint, 'Lease', 'LeaseGrant', { TTL: ttlMs / 1000 });
  assert.equal(grant.TTL, '3');
  await put(follower.endpoint, 'leased', 'v', { lease: grant.ID });
  // Keep it alive through the follower, at a client's cadence (TTL / 6), until more than 1.5
  // TTLs have passed since the grant: only renewals that reached the leader keep it.
  let lastKeepAliveSentAt = grantedAt;
  while (Date.now() - grantedAt < 1.5 * ttlMs) {
    lastKeepAliveSentAt = Date.now();
    assert.equal(await keepAliveOnce(follower.endpoint, grant.ID), '3', 'each renewal answers the full TTL');
    await new Promise((resolve) => setTimeout(resolve, ttlMs / 6));
  }
  assert.equal((await get(follower.endpoint, 'leased')).kvs.length, 1, 'kept-alive key still there after more than one TTL');
  // Keep-alives stop. The leader renewed the lease when the last one arrived, no earlier than
  // it was sent, so no read may find the key gone before lastKeepAliveSentAt + TTL. Poll with
  // linearizable reads and stamp each one when it returns: that is exact, with no margin to tune.
  let presentReads = 0;
  const goneSeenAt = await waitFor('the leased key to vanish', async () => {
    const found = (await get(follower.endpoint, 'leased')).kvs.length;
    const returnedAt = Date.now();
    if (found === 1) {
      presentReads += 1;
      return undefined;
    }
    return returnedAt;
  }, { timeoutMs: ttlMs + 10_000, intervalMs: 50 });
  const goneAfterMs = goneSeenAt - lastKeepAliveSentAt;
  assert.ok(goneAfterMs >= ttlMs, `gone ${goneAfterMs} ms after the last keep-alive was sent: before its TTL`);
  assert.ok(presentReads > 0, 'the key was seen present after keep-alives stopped');
});

test('keep-alives through a follower renew the lease after a leader failover: the key outlives several TTLs after it', async () => {
  const cluster = await Cluster.start({ size: 3, heartbeatMs: 50, electionMs: 500 });
  after(() => cluster.stop());
  const leader = await cluster.waitForLeader();
  const follower = cluster.members.find((m) => m.name !== leader);
  assert.ok(follower !== undefined);
  // A TTL short against the failover: a new leader extends every lease once, to TTL + one
  // election timeout (2.5 s here); only keep-alives that work after the failover keep the key
  // for the 4 TTLs (8 s) checked below.
  const ttlS = 2;
  const grant = await call<{ ID: string; TTL: string }>(follower.endpoint, 'Lease', 'LeaseGrant', { TTL: ttlS });
  assert.equal(grant.TTL, String(ttlS));
  await put(follower.endpoint, 'survivor', 'v', { lease: grant.ID });
  const keeper = keepAliveEvery(follower.endpoint, grant.ID, { everyMs: (ttlS * 1000) / 4 });
  try {
    await waitFor('a renewal before the failover', () => (keeper.answers.some((a) => a.ttl === String(ttlS)) ? true : undefined), { timeoutMs: 10_000 });
    await cluster.kill(leader, 'SIGKILL');
    await cluster.waitForLeader();
    const newLeaderUpAt = Date.now();
    // The key must be there on every read for 4 TTLs after the new leader is up.
    let reads = 0;
    while (Date.now() < newLeaderUpAt + 4 * ttlS * 1000) {
      const found: number = (await get(follower.endpoint, 'survivor')).kvs.length;
      assert.equal(found, 1, `key gone ${Date.now() - newLeaderUpAt} ms after the new leader was up; keep-alives: ${keeper.describe(newLeaderUpAt)}`);
      reads += 1;
      await new Promise((resolve) => setTimeout(resolve, 100)); // poll interval, not a wait for a condition
    }
    assert.ok(reads >= 4, `only ${reads} reads in 4 TTLs`);
    await keeper.stop();
    // Renewals after the failover: answered with the full TTL, at least one per TTL on average,
    // and the last one succeeded. Errors are counted in the message; TTL 0 (lease lost) never.
    const afterFailover = keeper.answers.filter((a) => a.sentAt >= newLeaderUpAt);
    const renewed = afterFailover.filter((a) => a.ttl === String(ttlS));
    assert.ok(renewed.length >= 4, `${renewed.length} renewals after the failover: ${keeper.describe(newLeaderUpAt)}`);
    assert.equal(afterFailover.at(-1)?.ttl, String(ttlS), `the last keep-alive failed: ${keeper.describe(newLeaderUpAt)}`);
    assert.ok(!keeper.answers.some((a) => a.ttl === '0'), `the lease was reported lost: ${keeper.describe(newLeaderUpAt)}`);
    const remaining = await call<{ TTL: string }>(follower.endpoint, 'Lease', 'LeaseTimeToLive', { ID: grant.ID });
    assert.ok(Number(remaining.TTL) > 0, `lease alive after the renewals (TTL ${remaining.TTL})`);
  } finally {
    await keeper.stop();
  }
  const revoked = await call<{ header: { revision: string } }>(follower.endpoint, 'Lease', 'LeaseRevoke', { ID: grant.ID });
  assert.ok(BigInt(revoked.header.revision) > 0n);
  assert.equal((await get(follower.endpoint, 'survivor')).kvs.length, 0);
});

interface KeepAliveAnswer {
  /** When the keep-alive was sent (Date.now()). */
  readonly sentAt: number;
  /** The TTL answered, or undefined when the keep-alive failed. */
  readonly ttl?: string;
  readonly error?: string;
}

/**
 * A keep-alive client as etcd's clients run one: a renewal every `everyMs` (each on a fresh
 * stream with its own deadline), recording every answer and error until stopped.
 */
function keepAliveEvery(endpoint: string, id: string, options: { everyMs: number }): { answers: KeepAliveAnswer[]; stop(): Promise<void>; describe(since: number): string } {
  const answers: KeepAliveAnswer[] = [];
  const stopper = new AbortController();
  const loop = (async () => {
    while (!stopper.signal.aborted) {
      const sentAt = Date.now();
      try {
        answers.push({ sentAt, ttl: await keepAliveOnce(endpoint, id, { timeoutMs: options.everyMs * 2 }) });
      } catch (error: unknown) {
        answers.push({ sentAt, error: error instanceof Error ? error.message : String(error) });
      }
      const wait = Math.max(0, sentAt + options.everyMs - Date.now());
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        stopper.signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
      });
    }
  })();
  return {
    answers,
    stop: async () => {
      stopper.abort();
      await loop;
    },
    describe: (since) => {
      const afterFailover = answers.filter((a) => a.sentAt >= since);
      const errors = afterFailover.filter((a) => a.ttl === undefined);
      return `${afterFailover.length} sent after the failover, ${afterFailover.length - errors.length} answered, ${errors.length} failed` +
        (errors.length > 0 ? ` (first: ${errors[0].error})` : '') + `; answers ${afterFailover.map((a) => `+${a.sentAt - since}ms:${a.ttl ?? 'error'}`).join(' ')}`;
    },
  };
}

/** One LeaseKeepAlive round trip on a fresh stream, within `timeoutMs`; throws on TTL 0 (lease not found). */
async function keepAliveOnce(endpoint: string, id: string, options: { timeoutMs?: number } = {}): Promise<string> {
  const grpc = await import('@grpc/grpc-js');
  const { loadServices } = await import('../../src/api/proto.js');
  const client = new (loadServices().Lease)(endpoint, grpc.credentials.createInsecure()) as unknown as { LeaseKeepAlive: (options: { deadline: number }) => import('@grpc/grpc-js').ClientDuplexStream<object, { ID: string; TTL: string }>; close(): void };
  try {
    const stream = client.LeaseKeepAlive({ deadline: Date.now() + (options.timeoutMs ?? 5000) });
    const answer = new Promise<string>((resolve, reject) => {
      stream.once('data', (response) => resolve(response.TTL));
      stream.once('error', reject);
    });
    stream.write({ ID: id });
    const ttl = await answer;
    stream.on('error', () => undefined); // the cancel below ends the stream with CANCELLED
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

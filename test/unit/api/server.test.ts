// Goal: prove what the gRPC layer itself does, over any backend: it is wire-compatible with real
// etcd clients; it encodes 64-bit ids and uint32 hashes without loss or sign flips; it maps every
// catalog error to its gRPC code and etcd's exact text; it refuses invalid and oversized
// requests before the backend sees them; it hands each call's deadline (bounded by the server's
// request timeout) and cancellation to the backend; it applies the hasleader guard; and it runs
// etcd's watch-stream protocol (id assignment, created/canceled, fragmentation, flow control).
// Method: start createGrpcServer on 127.0.0.1:0 over the in-memory fake backends
// (fake-backend.ts), which record every call the api layer makes and can be told to fail or
// hold one; drive it with (1) the `etcd3` npm client, (2) a raw grpc-js client built from our
// own protos, and (3) the real `etcdctl` v3 binary when installed. Assertions are about what
// the api layer did with the backend's values and the client's requests, not about values the
// fake made up.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import etcd3 from 'etcd3';
import { createGrpcServer, startGrpcServer } from '../../../src/api/server.js';
import { loadServices } from '../../../src/api/proto.js';
import type { PbMessage } from '../../../src/api/codec.js';
import { ERRORS, KvdError, type ErrorCode } from '../../../src/util/errors.js';
import { CLUSTER_ID, createFakeBackends, MEMBER_ID, type FakeStore, type RecordedCall } from './fake-backend.js';

const execFileAsync = promisify(execFile);
const ETCDCTL = '/usr/bin/etcdctl';
const MAX_REQUEST_BYTES = 64 * 1024;
const MAX_TXN_OPS = 16;
const DEFAULT_REQUEST_TIMEOUT_MS = 4000;

let server: grpc.Server;
let store: FakeStore;
let endpoint: string;
const unexpected: unknown[] = [];
const services = loadServices();

before(async () => {
  const fake = createFakeBackends();
  store = fake.store;
  server = createGrpcServer({
    backends: fake.backends,
    maxRequestBytes: MAX_REQUEST_BYTES,
    maxTxnOps: MAX_TXN_OPS,
    defaultRequestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS,
    watchProgressIntervalMs: 100,
    onUnexpectedError: (error) => unexpected.push(error),
  });
  const [bound] = await startGrpcServer(server, ['http://127.0.0.1:0']);
  endpoint = `127.0.0.1:${bound.port}`;
});

after(() => {
  store.intercept = undefined;
  server.forceShutdown();
  assert.deepEqual(unexpected, [], 'no unexpected errors reached the handler');
});

/** Waits until `condition()` holds, polling on timers, or fails after `timeoutMs`. */
async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function unaryCall(client: grpc.Client, method: string, request: PbMessage, metadata = new grpc.Metadata(), options: grpc.CallOptions = {}): Promise<PbMessage> {
  return new Promise((resolve, reject) => {
    type Callback = (error: grpc.ServiceError | null, response: PbMessage) => void;
    const fn = (client as unknown as Record<string, (request: PbMessage, metadata: grpc.Metadata, options: grpc.CallOptions, callback: Callback) => void>)[method];
    fn.call(client, request, metadata, options, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

/** The backend calls of one kind made while `body` ran. */
async function callsDuring(method: string, body: () => Promise<unknown>): Promise<RecordedCall[]> {
  const from = store.calls.length;
  await body();
  return store.calls.slice(from).filter((call) => call.method === method);
}

async function rejectsWith(promise: Promise<unknown>, code: grpc.status, details: string): Promise<void> {
  await assert.rejects(promise, (error: grpc.ServiceError) => {
    assert.equal(error.code, code);
    assert.equal(error.details, details);
    return true;
  });
}

test('etcd3 client: put, get, prefix get, delete, txn, lease, watch', async () => {
  const client = new etcd3.Etcd3({ hosts: endpoint });
  try {
    await client.put('e3/foo').value('bar');
    assert.equal(await client.get('e3/foo').string(), 'bar');
    await client.put('e3/baz').value('qux');
    assert.deepEqual(await client.getAll().prefix('e3/').strings(), { 'e3/baz': 'qux', 'e3/foo': 'bar' });
    assert.equal(await client.getAll().prefix('e3/').count(), 2);

    const txn = await client.if('e3/foo', 'Value', '==', 'bar').then(client.put('e3/foo').value('txn')).else(client.get('e3/foo')).commit();
    assert.equal(txn.succeeded, true);
    assert.equal(await client.get('e3/foo').string(), 'txn');
    const failed = await client.if('e3/foo', 'Create', '==', 0).then(client.put('e3/foo').value('nope')).else(client.get('e3/foo')).commit();
    assert.equal(failed.succeeded, false);
    assert.equal(failed.responses[0].response_range?.kvs[0].value.toString(), 'txn');

    const lease = client.lease(10);
    const leaseId = await lease.grant();
    assert.ok(BigInt(leaseId) > 2n ** 53n, 'lease id beyond 2^53 survives the client');
    await lease.put('e3/leased').value('x');
    const leased = await client.get('e3/leased').exec();
    assert.equal(leased.kvs[0].lease, leaseId);
    const renewed = await lease.keepaliveOnce();
    assert.equal(renewed.ID, leaseId);
    assert.equal(renewed.TTL, '10');
    assert.deepEqual(await client.getAll().prefix('e3/').sort('Key', 'Descend').limit(1).keys(), ['e3/leased']);
    await lease.revoke();
    assert.equal(await client.get('e3/leased').string(), null);

    const watcher = await client.watch().key('e3/w').create();
    const seen: string[] = [];
    watcher.on('put', (kv) => seen.push(`put ${kv.value.toString()}`));
    watcher.on('delete', (kv) => seen.push(`delete ${kv.key.toString()}`));
    await client.put('e3/w').value('1');
    await client.put('e3/w').value('2');
    await client.delete().key('e3/w');
    await waitFor(() => seen.length === 3, 'three watch events');
    assert.deepEqual(seen, ['put 1', 'put 2', 'delete e3/w']);
    await watcher.cancel();

    assert.equal(await client.delete().prefix('e3/').then((result) => result.deleted), '2');
    await assert.rejects(client.get('e3/x').revision(1_000_000).exec(), /required revision is a future revision/);
  } finally {
    client.close();
  }
});

test('invalid and oversized requests are refused with etcd\'s code and text before the backend is called', async () => {
  const kv = new services.KV(endpoint, grpc.credentials.createInsecure());
  const refusals: Array<[method: string, request: PbMessage, code: grpc.status, details: string]> = [
    ['Range', {}, grpc.status.INVALID_ARGUMENT, 'etcdserver: key is not provided'],
    ['Range', { key: Buffer.from('a'), sort_order: 7 }, grpc.status.INVALID_ARGUMENT, 'etcdserver: invalid sort option'],
    ['Range', { key: Buffer.from('a'), revision: '9007199254740993' }, grpc.status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision is a future revision'],
    ['Put', { value: Buffer.from('v') }, grpc.status.INVALID_ARGUMENT, 'etcdserver: key is not provided'],
    ['Put', { key: Buffer.from('a'), value: Buffer.from('v'), ignore_value: true }, grpc.status.INVALID_ARGUMENT, 'etcdserver: value is provided'],
    ['Put', { key: Buffer.from('a'), lease: '5', ignore_lease: true }, grpc.status.INVALID_ARGUMENT, 'etcdserver: lease is provided'],
    ['Put', { key: Buffer.from('big'), value: Buffer.alloc(MAX_REQUEST_BYTES + 100) }, grpc.status.INVALID_ARGUMENT, 'etcdserver: request is too large'],
    ['DeleteRange', {}, grpc.status.INVALID_ARGUMENT, 'etcdserver: key is not provided'],
    ['Txn', { success: [{ request_put: { key: Buffer.from('d') } }, { request_put: { key: Buffer.from('d') } }] }, grpc.status.INVALID_ARGUMENT, 'etcdserver: duplicate key given in txn request'],
    ['Txn', { success: [{ request_delete_range: { key: Buffer.from('a'), range_end: Buffer.from('c') } }, { request_put: { key: Buffer.from('b') } }] }, grpc.status.INVALID_ARGUMENT, 'etcdserver: duplicate key given in txn request'],
    ['Txn', { success: Array.from({ length: MAX_TXN_OPS + 1 }, (_, i) => ({ request_range: { key: Buffer.from(`k${i}`) } })) }, grpc.status.INVALID_ARGUMENT, 'etcdserver: too many operations in txn request'],
    ['Txn', { compare: [{ key: Buffer.from(''), target: 'VERSION', result: 'EQUAL' }] }, grpc.status.INVALID_ARGUMENT, 'etcdserver: key is not provided'],
    ['Txn', { success: [{ request_put: { key: Buffer.from('big'), value: Buffer.alloc(MAX_REQUEST_BYTES) } }] }, grpc.status.INVALID_ARGUMENT, 'etcdserver: request is too large'],
    ['Compact', { revision: '9007199254740993' }, grpc.status.OUT_OF_RANGE, 'etcdserver: mvcc: required revision is a future revision'],
  ];
  try {
    const before = store.calls.length;
    for (const [method, request, code, details] of refusals) await rejectsWith(unaryCall(kv, method, request), code, details);
    // Beyond max-request-bytes + 512 KiB gRPC itself refuses the message.
    const wayTooLarge = { key: Buffer.from('big'), value: Buffer.alloc(MAX_REQUEST_BYTES + 600 * 1024) };
    await assert.rejects(unaryCall(kv, 'Put', wayTooLarge), (error: grpc.ServiceError) => error.code === grpc.status.RESOURCE_EXHAUSTED);
    assert.deepEqual(store.calls.slice(before).map((call) => call.method), [], 'no refused request reached the backend');
    // The limits are limits, not guesses: just inside them, the backend is called.
    const inside = await callsDuring('kv.write', () => unaryCall(kv, 'Txn', { success: Array.from({ length: MAX_TXN_OPS }, (_, i) => ({ request_put: { key: Buffer.from(`ok${i}`) } })) }));
    assert.equal(inside.length, 1);
    const lock = new services.Lock(endpoint, grpc.credentials.createInsecure());
    await assert.rejects(unaryCall(lock, 'Lock', { name: Buffer.from('l') }), (error: grpc.ServiceError) => error.code === grpc.status.UNIMPLEMENTED);
    lock.close();
  } finally {
    kv.close();
  }
});

test('every catalog error thrown by a backend reaches the client with its gRPC code and etcd\'s exact text; other errors are UNKNOWN and reported', async () => {
  const kv = new services.KV(endpoint, grpc.credentials.createInsecure());
  const lease = new services.Lease(endpoint, grpc.credentials.createInsecure());
  try {
    for (const [code, entry] of Object.entries(ERRORS) as Array<[ErrorCode, (typeof ERRORS)[ErrorCode]]>) {
      store.intercept = () => { throw new KvdError(code); };
      await rejectsWith(unaryCall(kv, 'Range', { key: Buffer.from('a') }), entry.status as number as grpc.status, entry.message);
    }
    // The same mapping on a stream: a keep-alive failing with no-leader ends the stream with it.
    store.intercept = (call) => { if (call.method === 'lease.keepAlive') throw new KvdError('no-leader'); };
    const stream = (lease as unknown as { LeaseKeepAlive(): grpc.ClientDuplexStream<PbMessage, PbMessage> }).LeaseKeepAlive();
    const failure = new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
    stream.write({ ID: '1' });
    const error = await failure;
    assert.deepEqual([error.code, error.details], [grpc.status.UNAVAILABLE, 'etcdserver: no leader']);
    // Anything that is not a KvdError is a bug: UNKNOWN on the wire, and reported.
    store.intercept = () => { throw new TypeError('boom'); };
    const reportedBefore = unexpected.length;
    await rejectsWith(unaryCall(kv, 'Range', { key: Buffer.from('a') }), grpc.status.UNKNOWN, 'boom');
    assert.equal(unexpected.length, reportedBefore + 1);
    assert.ok(unexpected.pop() instanceof TypeError, 'the reported error is the one thrown');
  } finally {
    store.intercept = undefined;
    kv.close();
    lease.close();
  }
});

test('each call hands the backend its deadline, bounded by the server\'s request timeout, and a signal that aborts when the client cancels', async () => {
  const kv = new services.KV(endpoint, grpc.credentials.createInsecure());
  try {
    const near = (actual: number, expected: number, what: string): void => assert.ok(Math.abs(actual - expected) < 1000, `${what}: deadline ${actual - expected} ms off`);
    const clientDeadline = Date.now() + 2000;
    const [withDeadline] = await callsDuring('kv.range', () => unaryCall(kv, 'Range', { key: Buffer.from('a') }, new grpc.Metadata(), { deadline: clientDeadline }));
    near(withDeadline.options.deadline, clientDeadline, 'a client deadline shorter than the server timeout');
    const sentAt = Date.now();
    const [withoutDeadline] = await callsDuring('kv.range', () => unaryCall(kv, 'Range', { key: Buffer.from('a') }));
    near(withoutDeadline.options.deadline, sentAt + DEFAULT_REQUEST_TIMEOUT_MS, 'no client deadline');
    const longSentAt = Date.now();
    const [longDeadline] = await callsDuring('kv.write', () => unaryCall(kv, 'Put', { key: Buffer.from('d'), value: Buffer.from('v') }, new grpc.Metadata(), { deadline: longSentAt + 60_000 }));
    near(longDeadline.options.deadline, longSentAt + DEFAULT_REQUEST_TIMEOUT_MS, 'a client deadline beyond the server timeout');

    // Cancellation: the backend holds the call until its signal aborts (bounded), the client cancels.
    let aborted: Promise<boolean> | undefined;
    store.intercept = (call) => {
      if (call.method !== 'kv.range') return;
      aborted = new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 10_000);
        call.options.signal.addEventListener('abort', () => { clearTimeout(timer); resolve(true); }, { once: true });
      });
      return aborted.then(() => undefined);
    };
    const pending = (kv as unknown as { Range(request: PbMessage, callback: (error: grpc.ServiceError | null) => void): grpc.ClientUnaryCall }).Range({ key: Buffer.from('held') }, () => undefined);
    await waitFor(() => aborted !== undefined, 'the held call to reach the backend');
    pending.cancel();
    assert.equal(await aborted, true, 'the backend saw the cancellation');
  } finally {
    store.intercept = undefined;
    kv.close();
  }
});

test('lease service: exact ids, TTL -1 for unknown leases, keep-alive TTL 0 for unknown leases', async () => {
  const lease = new services.Lease(endpoint, grpc.credentials.createInsecure());
  try {
    const [grantCall] = await callsDuring('lease.grant', () => unaryCall(lease, 'LeaseGrant', { ID: '9223372036854775807', TTL: '30' }));
    assert.deepEqual(grantCall.request, { id: 2n ** 63n - 1n, ttlSeconds: 30 }, 'the backend got the exact int64 id');
    const granted = await unaryCall(lease, 'LeaseTimeToLive', { ID: '9223372036854775807' });
    assert.equal(granted.ID, '9223372036854775807', 'and it comes back exact');
    const kv = new services.KV(endpoint, grpc.credentials.createInsecure());
    const [putCall] = await callsDuring('kv.write', () => unaryCall(kv, 'Put', { key: Buffer.from('leased-by-max'), value: Buffer.from('v'), lease: '9223372036854775807' }));
    assert.equal((putCall.request as { request: { lease: bigint } }).request.lease, 2n ** 63n - 1n);
    const read = await unaryCall(kv, 'Range', { key: Buffer.from('leased-by-max') });
    assert.equal(((read.kvs as PbMessage[])[0]).lease, '9223372036854775807');
    kv.close();
    await rejectsWith(unaryCall(lease, 'LeaseGrant', { ID: '9223372036854775807', TTL: '30' }), grpc.status.FAILED_PRECONDITION, 'etcdserver: lease already exists');
    const ttl = await unaryCall(lease, 'LeaseTimeToLive', { ID: '12345' });
    assert.equal(ttl.TTL, '-1');
    const list = await unaryCall(lease, 'LeaseLeases', {});
    assert.ok((list.leases as PbMessage[]).some((item) => item.ID === '9223372036854775807'));
    await rejectsWith(unaryCall(lease, 'LeaseRevoke', { ID: '12345' }), grpc.status.NOT_FOUND, 'etcdserver: requested lease not found');

    const stream = (lease as unknown as { LeaseKeepAlive(): grpc.ClientDuplexStream<PbMessage, PbMessage> }).LeaseKeepAlive();
    const answers: PbMessage[] = [];
    stream.on('data', (response: PbMessage) => answers.push(response));
    stream.write({ ID: '9223372036854775807' });
    stream.write({ ID: '777' });
    await waitFor(() => answers.length === 2, 'two keep-alive answers');
    assert.deepEqual(answers.map((answer) => [answer.ID, answer.TTL]), [['9223372036854775807', '30'], ['777', '0']]);
    const ended = new Promise<void>((resolve) => stream.on('status', () => resolve()));
    stream.end();
    await ended;
    await unaryCall(lease, 'LeaseRevoke', { ID: '9223372036854775807' });
  } finally {
    lease.close();
  }
});

/** A raw watch stream collecting every response. */
function openWatch(): { stream: grpc.ClientDuplexStream<PbMessage, PbMessage>; responses: PbMessage[]; client: grpc.Client } {
  const client = new services.Watch(endpoint, grpc.credentials.createInsecure());
  const stream = (client as unknown as { Watch(): grpc.ClientDuplexStream<PbMessage, PbMessage> }).Watch();
  const responses: PbMessage[] = [];
  stream.on('data', (response: PbMessage) => responses.push(response));
  stream.on('error', () => undefined);
  return { stream, responses, client };
}

async function put(key: string, value: string): Promise<void> {
  const kv = new services.KV(endpoint, grpc.credentials.createInsecure());
  await unaryCall(kv, 'Put', { key: Buffer.from(key), value: Buffer.from(value) });
  kv.close();
}

test('watch stream: ids, created before events, duplicates, bad requests, cancel, history, filters', async () => {
  const { stream, responses, client } = openWatch();
  try {
    await put('w/history', 'old');
    const historyRevision = store.revision;
    stream.write({ create_request: { key: Buffer.from('w/'), range_end: Buffer.from('w0'), prev_kv: true } });
    stream.write({ create_request: { key: Buffer.from('w/history'), start_revision: String(historyRevision), watch_id: '100' } });
    stream.write({ create_request: { key: Buffer.from('w/x'), watch_id: '100' } });
    stream.write({ create_request: { key: Buffer.from('w/x'), start_revision: '-1' } });
    stream.write({ create_request: { key: Buffer.from('w/z'), range_end: Buffer.from('w/a') } });
    stream.write({ create_request: { key: Buffer.from('w/'), range_end: Buffer.from('w0'), filters: ['NOPUT'] } });
    await waitFor(() => responses.length >= 7, 'created responses and the history event');

    assert.deepEqual(
      responses.slice(0, 2).map((response) => [response.watch_id, response.created, response.canceled]),
      [['0', true, false], ['100', true, false]],
    );
    const historyEvent = responses[2];
    assert.equal(historyEvent.watch_id, '100');
    assert.equal(String(((historyEvent.events as PbMessage[])[0].kv as PbMessage).value), 'old');
    const failures = responses.slice(3, 6);
    assert.deepEqual(failures.map((response) => [response.watch_id, response.created, response.canceled, response.cancel_reason]), [
      ['-1', true, true, 'mvcc: duplicate watch ID provided on the WatchStream'],
      ['-1', true, true, 'etcdserver: mvcc: required revision has been compacted'],
      ['-1', true, true, 'mvcc: watcher range is empty'],
    ]);
    assert.equal(responses[6].watch_id, '1', 'auto ids skip ids in use and count on');
    assert.equal((responses[0].header as PbMessage).member_id, MEMBER_ID.toString());

    responses.length = 0;
    await put('w/a', '1');
    await waitFor(() => responses.length >= 1, 'the put event (the NOPUT watcher sees nothing)');
    const [event] = responses;
    assert.equal(event.watch_id, '0');
    assert.equal(String(((event.events as PbMessage[])[0].kv as PbMessage).key), 'w/a');
    assert.equal((event.header as PbMessage).revision, String(store.revision));

    stream.write({ cancel_request: { watch_id: '0' } });
    stream.write({ cancel_request: { watch_id: '424242' } });
    await waitFor(() => responses.some((response) => response.canceled === true && response.watch_id === '0'), 'cancel response');
    responses.length = 0;
    const kv = new services.KV(endpoint, grpc.credentials.createInsecure());
    await unaryCall(kv, 'DeleteRange', { key: Buffer.from('w/a') });
    kv.close();
    await waitFor(() => responses.length >= 1, 'delete event on the NOPUT watcher');
    assert.deepEqual(responses.map((response) => response.watch_id), ['1'], 'no events after cancel; only the NOPUT watcher sees the delete');
    assert.equal((responses[0].events as PbMessage[])[0].type, 'DELETE');
  } finally {
    stream.cancel();
    client.close();
  }
});

test('watch stream: compacted start, progress request and periodic progress notifications', async () => {
  const { stream, responses, client } = openWatch();
  try {
    await put('c/a', '1');
    await put('c/a', '2');
    const kv = new services.KV(endpoint, grpc.credentials.createInsecure());
    await unaryCall(kv, 'Compact', { revision: String(store.revision) });
    kv.close();
    stream.write({ create_request: { key: Buffer.from('c/a'), start_revision: '2' } });
    await waitFor(() => responses.length >= 2, 'created then canceled for compaction');
    assert.equal(responses[0].created, true);
    assert.equal(responses[1].canceled, true);
    assert.equal(responses[1].compact_revision, String(store.compactRevision));
    assert.equal(responses[1].watch_id, responses[0].watch_id);

    responses.length = 0;
    stream.write({ create_request: { key: Buffer.from('p/a'), progress_notify: true } });
    stream.write({ progress_request: {} });
    await waitFor(() => responses.some((response) => response.watch_id === '-1'), 'stream-wide progress response');
    const progress = responses.find((response) => response.watch_id === '-1');
    assert.equal((progress?.header as PbMessage).revision, String(store.revision));
    const created = responses[0];
    await waitFor(() => responses.some((response) => response.watch_id === created.watch_id && response.created !== true), 'periodic progress notification', 3000);
  } finally {
    stream.cancel();
    client.close();
  }
});

test('ids above 2^63, counters up to 2^53 and hashes above 2^31 reach the client without loss or sign flips', async () => {
  const cluster = new services.Cluster(endpoint, grpc.credentials.createInsecure());
  const maintenance = new services.Maintenance(endpoint, grpc.credentials.createInsecure());
  const saved = store.status;
  try {
    const members = await unaryCall(cluster, 'MemberList', {});
    assert.equal((members.members as PbMessage[])[0].ID, '18364758544493064720', 'member id 0xfedcba9876543210 as unsigned decimal');
    assert.equal((members.header as PbMessage).member_id, MEMBER_ID.toString());
    assert.equal((members.header as PbMessage).cluster_id, CLUSTER_ID.toString());
    await assert.rejects(unaryCall(cluster, 'MemberAdd', { peerURLs: ['http://127.0.0.1:9999'] }), (error: grpc.ServiceError) => error.code === grpc.status.UNIMPLEMENTED);

    store.status = { ...saved, leader: MEMBER_ID, raftIndex: Number.MAX_SAFE_INTEGER, raftAppliedIndex: Number.MAX_SAFE_INTEGER - 1, raftTerm: 2 ** 40 + 1, dbSizeBytes: 2 ** 41 + 3 };
    const status = await unaryCall(maintenance, 'Status', {});
    assert.deepEqual(
      [status.leader, status.raftIndex, status.raftAppliedIndex, status.raftTerm, status.dbSize],
      [MEMBER_ID.toString(), '9007199254740991', '9007199254740990', '1099511627777', '2199023255555'],
    );

    store.hashKvValue = 0xdeadbeef | 0; // negative as a signed 32-bit number, as a CRC may come out
    const [hashCall] = await callsDuring('maintenance.hashKv', () => unaryCall(maintenance, 'HashKV', { revision: '7' }));
    assert.deepEqual(hashCall.request, { revision: 7 });
    const hash = await unaryCall(maintenance, 'HashKV', { revision: '0' });
    assert.equal(hash.hash, 0xdeadbeef, 'sent as uint32');
    await assert.rejects(unaryCall(maintenance, 'Defragment', {}), (error: grpc.ServiceError) => error.code === grpc.status.UNIMPLEMENTED);
  } finally {
    store.status = saved;
    cluster.close();
    maintenance.close();
  }
});

/** Runs etcdctl against the test server; resolves with stdout (or stderr, where etcdctl 3.4 prints health). */
async function etcdctl(args: readonly string[], input?: string, stream: 'stdout' | 'stderr' = 'stdout'): Promise<string> {
  const child = execFileAsync(ETCDCTL, [`--endpoints=${endpoint}`, '--dial-timeout=3s', '--command-timeout=5s', ...args], {
    env: { ...process.env, ETCDCTL_API: '3' },
    timeout: 15_000,
  });
  if (input !== undefined) {
    child.child.stdin?.end(input);
  }
  const { stdout, stderr } = await child;
  return stream === 'stdout' ? stdout : stderr;
}

test('etcdctl v3: put, get --prefix, del, txn, endpoint status, member list', { skip: existsSync(ETCDCTL) ? false : 'etcdctl not installed' }, async () => {
  assert.equal(await etcdctl(['put', 'ctl/foo', 'bar']), 'OK\n');
  assert.equal(await etcdctl(['put', 'ctl/zoo', 'baz']), 'OK\n');
  assert.equal(await etcdctl(['get', '--prefix', 'ctl/']), 'ctl/foo\nbar\nctl/zoo\nbaz\n');
  assert.equal(await etcdctl(['get', 'ctl/', '--prefix', '--keys-only', '--limit=1']), 'ctl/foo\n\n');
  const json = await etcdctl(['get', 'ctl/foo', '-w', 'json']);
  assert.match(json, /"revision":\d+/);
  assert.match(json, /"count":1/);
  assert.equal(await etcdctl(['del', 'ctl/zoo']), '1\n');

  const txn = await etcdctl(['txn'], 'value("ctl/foo") = "bar"\n\nput ctl/foo new\nget ctl/foo\n\nput ctl/foo failed\n\n');
  assert.equal(txn, 'SUCCESS\n\nOK\n\nctl/foo\nnew\n');
  const failed = await etcdctl(['txn'], 'value("ctl/foo") = "bar"\n\nput ctl/foo never\n\nget ctl/foo\n\n');
  assert.equal(failed, 'FAILURE\n\nctl/foo\nnew\n');

  // etcdctl reads each field from its wire number: the line shows what the backend reported.
  const { version, raftTerm, raftIndex, raftAppliedIndex } = store.status;
  const status = await etcdctl(['endpoint', 'status']);
  assert.equal(status, `${endpoint}, ${MEMBER_ID.toString(16)}, ${version}, 20 kB, true, false, ${raftTerm}, ${raftIndex}, ${raftAppliedIndex}, \n`);
  const members = await etcdctl(['member', 'list']);
  assert.equal(members, `${MEMBER_ID.toString(16)}, started, kvd-test, http://127.0.0.1:2380, http://127.0.0.1:2379, false\n`);

  await assert.rejects(etcdctl(['get', 'ctl/foo', '--rev=100000']), /required revision is a future revision/);
});

test('watch stream: a slow reader gets every event in order through bounded queues', async () => {
  const { stream, responses, client } = openWatch();
  try {
    stream.write({ create_request: { key: Buffer.from('bp/'), range_end: Buffer.from('bp0') } });
    await waitFor(() => responses.length === 1, 'created');
    const hubs = [...store.streams];
    stream.pause();
    const count = 600;
    const value = Buffer.alloc(4096, 7);
    const first = store.revision + 1;
    for (let index = 0; index < count; index++) {
      store.write({ type: 'put', request: { key: Buffer.from(`bp/${index}`), value, lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } });
    }
    assert.ok(hubs.some((hub) => hub.fullCount > 0), 'the bounded send queue pushed back on the hub');
    stream.resume();
    const events = (): PbMessage[] => responses.flatMap((response) => (response.events as PbMessage[] | undefined) ?? []);
    await waitFor(() => events().length === count, `all ${count} events`, 10_000);
    const revisions = events().map((event) => Number((event.kv as PbMessage).mod_revision));
    assert.deepEqual(revisions, Array.from({ length: count }, (_, index) => first + index));
  } finally {
    stream.cancel();
    client.close();
  }
});

test('watch stream: large revisions are fragmented for fragment watchers only', async () => {
  const { stream, responses, client } = openWatch();
  try {
    stream.write({ create_request: { key: Buffer.from('fr/'), range_end: Buffer.from('fr0'), fragment: true, watch_id: '1' } });
    stream.write({ create_request: { key: Buffer.from('fr/'), range_end: Buffer.from('fr0'), watch_id: '2' } });
    await waitFor(() => responses.length === 2, 'created twice');
    const value = Buffer.alloc(60 * 1024, 1);
    const puts = Array.from({ length: 12 }, (_, index) => ({ type: 'put' as const, request: { key: Buffer.from(`fr/${index}`), value, lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } }));
    store.write({ type: 'txn', request: { compare: [], success: puts, failure: [] } });
    const eventsOf = (id: string): number => responses.filter((response) => response.watch_id === id).reduce((sum, response) => sum + ((response.events as PbMessage[] | undefined)?.length ?? 0), 0);
    await waitFor(() => eventsOf('1') === 12 && eventsOf('2') === 12, 'both watchers got 12 events');
    const fragmented = responses.filter((response) => response.watch_id === '1' && !response.created);
    assert.ok(fragmented.length >= 2, 'split into several responses');
    assert.deepEqual(fragmented.map((response) => response.fragment), [...fragmented.slice(1).map(() => true), false]);
    assert.equal(responses.filter((response) => response.watch_id === '2' && !response.created).length, 1);
  } finally {
    stream.cancel();
    client.close();
  }
});

test('calls with hasleader metadata fail with "no leader" while the member knows none; health follows leadership', async () => {
  const kv = new services.KV(endpoint, grpc.credentials.createInsecure());
  const requireLeader = new grpc.Metadata();
  requireLeader.set('hasleader', 'true');
  try {
    store.leaderKnown = false;
    const refused = await callsDuring('kv.range', () => rejectsWith(unaryCall(kv, 'Range', { key: Buffer.from('a') }, requireLeader), grpc.status.UNAVAILABLE, 'etcdserver: no leader'));
    assert.equal(refused.length, 0, 'a refused call never reaches the backend');
    await unaryCall(kv, 'Range', { key: Buffer.from('a') });
    const watch = new services.Watch(endpoint, grpc.credentials.createInsecure());
    const stream = (watch as unknown as { Watch(metadata: grpc.Metadata): grpc.ClientDuplexStream<PbMessage, PbMessage> }).Watch(requireLeader);
    const failure = await new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
    assert.equal(failure.code, grpc.status.UNAVAILABLE);
    assert.equal(failure.details, 'etcdserver: no leader');
    watch.close();
    const health = new services.Health(endpoint, grpc.credentials.createInsecure());
    assert.deepEqual(await unaryCall(health, 'Check', {}), { status: 'NOT_SERVING' });
    store.leaderKnown = true;
    assert.deepEqual(await unaryCall(health, 'Check', { service: '' }), { status: 'SERVING' });
    await assert.rejects(unaryCall(health, 'Check', { service: 'etcdserverpb.KV' }), (error: grpc.ServiceError) => error.code === grpc.status.NOT_FOUND);
    health.close();
    await unaryCall(kv, 'Range', { key: Buffer.from('a') }, requireLeader);
  } finally {
    store.leaderKnown = true;
    kv.close();
  }
});

test('etcdctl v3: watch, lease, compaction, endpoint hashkv and health', { skip: existsSync(ETCDCTL) ? false : 'etcdctl not installed' }, async () => {
  const watcher = spawn(ETCDCTL, [`--endpoints=${endpoint}`, 'watch', 'ctlw/', '--prefix'], { env: { ...process.env, ETCDCTL_API: '3' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  watcher.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  try {
    // etcdctl watch sends hasleader=true; keep writing until its watcher is registered.
    await waitFor(() => [...store.streams].some((hub) => hub.watchers.size > 0), 'etcdctl watcher registered', 10_000);
    await put('ctlw/a', 'v1');
    const kv = new services.KV(endpoint, grpc.credentials.createInsecure());
    await unaryCall(kv, 'DeleteRange', { key: Buffer.from('ctlw/a') });
    kv.close();
    await waitFor(() => output.includes('DELETE'), 'etcdctl printed both events', 10_000);
    assert.equal(output, 'PUT\nctlw/a\nv1\nDELETE\nctlw/a\n\n');
  } finally {
    watcher.kill();
  }

  const granted = await etcdctl(['lease', 'grant', '60']);
  const match = /^lease ([0-9a-f]+) granted with TTL\(60s\)\n$/.exec(granted);
  assert.ok(match, granted);
  const leaseHex = match[1];
  assert.match(await etcdctl(['lease', 'list']), new RegExp(`found \\d+ leases\\n(.*\\n)*${leaseHex}\\n`));
  assert.equal(await etcdctl(['put', 'ctl/leased', 'x', `--lease=${leaseHex}`]), 'OK\n');
  assert.equal(await etcdctl(['lease', 'timetolive', leaseHex, '--keys']), `lease ${leaseHex} granted with TTL(60s), remaining(60s), attached keys([ctl/leased])\n`);
  assert.equal(await etcdctl(['lease', 'revoke', leaseHex]), `lease ${leaseHex} revoked\n`);
  assert.equal(await etcdctl(['get', 'ctl/leased']), '');
  assert.equal(await etcdctl(['lease', 'timetolive', '1234']), 'lease 0000000000001234 already expired\n');

  const revision = store.revision;
  assert.equal(await etcdctl(['compaction', String(revision)]), `compacted revision ${revision}\n`);
  assert.equal(await etcdctl(['endpoint', 'hashkv']), `${endpoint}, 3735928559\n`);
  assert.match(await etcdctl(['endpoint', 'health'], undefined, 'stderr'), new RegExp(`^${endpoint} is healthy: successfully committed proposal: took = `));
});

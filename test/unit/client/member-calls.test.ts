// Goal: the client's membership calls on the wire: each change is sent at most once (a change
// whose connection breaks after the server received it fails and is not resent, because it
// may have been applied), requests carry etcd's fields plus kvd's autoPromote extension, ids
// stay exact as uint64, peer URLs etcd's Go client would refuse never leave the client, and
// every refusal arrives as its typed error with etcd's message.
// Method: a fake Cluster gRPC service (the project's protos) that records requests and answers
// or refuses as etcd does, behind the cutting TCP proxy of fake-etcd.ts; a second endpoint
// reaches the fake directly, so a resend would be counted.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { loadServices } from '../../../src/api/proto.js';
import {
  connect,
  InvalidMemberUrlsError,
  KvError,
  LearnerNotReadyError,
  MemberExistsError,
  MemberNotFoundError,
  MemberNotLearnerError,
  MembershipError,
  NotEnoughStartedMembersError,
  PeerUrlsExistError,
  TooManyLearnersError,
  UnavailableError,
  UnhealthyClusterError,
  type Client,
} from '../../../src/client/index.js';
import { startCuttingProxy, type CuttingProxy } from './fake-etcd.js';

const HEADER = { cluster_id: '2386978959654086716', member_id: '3923179483587023788', revision: '0', raft_term: '2' };
const BIG_ID = '18446744073709551615'; // 2^64 - 1: must survive as a uint64

interface FakeCluster {
  readonly endpoint: string;
  readonly received: Array<{ method: string; request: Record<string, unknown> }>;
  count(method: string): number;
  /** The next call of `method` runs `cut` after being received and before being answered. */
  cutBeforeReply(method: string, cut: () => void): void;
  /** The next call of `method` is refused with `code` and `details`. */
  refuseNext(method: string, code: grpc.status, details: string): void;
  close(): void;
}

async function startFakeCluster(): Promise<FakeCluster> {
  const received: FakeCluster['received'] = [];
  const cuts = new Map<string, () => void>();
  const refusals = new Map<string, { code: grpc.status; details: string }>();
  const member = { ID: BIG_ID, name: '', peerURLs: ['http://127.0.0.1:24624'], clientURLs: [], isLearner: true, autoPromote: true };
  const handle = (method: string, response: () => unknown) => (call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>, callback: grpc.sendUnaryData<unknown>): void => {
    received.push({ method, request: call.request });
    const cut = cuts.get(method);
    cuts.delete(method);
    cut?.();
    const refusal = refusals.get(method);
    refusals.delete(method);
    if (refusal !== undefined) callback(Object.assign(new Error(refusal.details), { code: refusal.code, details: refusal.details, metadata: new grpc.Metadata() }));
    else callback(null, response());
  };
  const server = new grpc.Server();
  server.addService(loadServices().Cluster.service, {
    MemberAdd: handle('MemberAdd', () => ({ header: HEADER, member, members: [member] })),
    MemberRemove: handle('MemberRemove', () => ({ header: HEADER, members: [] })),
    MemberUpdate: handle('MemberUpdate', () => ({ header: HEADER, members: [member] })),
    MemberPromote: handle('MemberPromote', () => ({ header: HEADER, members: [{ ...member, isLearner: false }] })),
    MemberList: handle('MemberList', () => ({ header: HEADER, members: [member] })),
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error)));
  });
  return {
    endpoint: `127.0.0.1:${port}`,
    received,
    count: (method) => received.filter((entry) => entry.method === method).length,
    cutBeforeReply: (method, cut) => void cuts.set(method, cut),
    refuseNext: (method, code, details) => void refusals.set(method, { code, details }),
    close: () => server.forceShutdown(),
  };
}

let fake: FakeCluster;
let proxy: CuttingProxy;
let client: Client;

before(async () => {
  fake = await startFakeCluster();
  proxy = await startCuttingProxy(fake.endpoint);
  client = connect({ endpoints: [fake.endpoint], dialTimeout: 1000, requestTimeout: 5000 });
});

after(async () => {
  client.close();
  await proxy.close();
  fake.close();
});

const changes: Array<{ method: string; run: (client: Client) => Promise<unknown> }> = [
  { method: 'MemberAdd', run: (one) => one.cluster.memberAdd({ peerUrls: ['http://127.0.0.1:24624'], isLearner: true }) },
  { method: 'MemberRemove', run: (one) => one.cluster.memberRemove(BigInt(BIG_ID)) },
  { method: 'MemberUpdate', run: (one) => one.cluster.memberUpdate(BigInt(BIG_ID), ['http://127.0.0.1:24625']) },
  { method: 'MemberPromote', run: (one) => one.cluster.memberPromote(BigInt(BIG_ID)) },
];

for (const change of changes) {
  test(`${change.method} whose connection is cut after the server received it fails and is not resent`, async () => {
    const proxied = connect({ endpoints: [proxy.endpoint, fake.endpoint], dialTimeout: 1000, requestTimeout: 5000 });
    try {
      const before = fake.count(change.method);
      fake.cutBeforeReply(change.method, () => proxy.cutAll());
      await assert.rejects(change.run(proxied), UnavailableError);
      assert.equal(fake.count(change.method) - before, 1, `${change.method} reached the server once`);
    } finally {
      proxied.close();
    }
  });
}

test('memberAdd sends peerURLs, isLearner and autoPromote; ids and the autoPromote flag come back exact', async () => {
  const result = await client.cluster.memberAdd({ peerUrls: ['http://127.0.0.1:24624', ' http://10.0.0.1:2380'], isLearner: true, autoPromote: true });
  const request = fake.received.at(-1)?.request;
  assert.deepEqual(request, { peerURLs: ['http://127.0.0.1:24624', ' http://10.0.0.1:2380'], isLearner: true, autoPromote: true });
  assert.equal(result.member.id, 2n ** 64n - 1n);
  assert.equal(result.member.autoPromote, true);
  assert.equal(result.member.isLearner, true);
  assert.equal(result.header.clusterId, 2386978959654086716n);
  await client.cluster.memberPromote(2n ** 64n - 1n);
  assert.deepEqual(fake.received.at(-1), { method: 'MemberPromote', request: { ID: BIG_ID } });
  await client.cluster.memberRemove(-1n); // the same id read as an int64
  assert.deepEqual(fake.received.at(-1), { method: 'MemberRemove', request: { ID: BIG_ID } });
});

test('peer URLs etcd would refuse, and autoPromote without isLearner, are refused before anything is sent', async () => {
  const before = fake.received.length;
  await assert.rejects(client.cluster.memberAdd({ peerUrls: ['foo'] }), (error: unknown) => error instanceof InvalidMemberUrlsError && error.message === 'URL scheme must be http, https, unix, or unixs: foo');
  await assert.rejects(client.cluster.memberUpdate(1n, ['http://127.0.0.1:1/x']), (error: unknown) => error instanceof InvalidMemberUrlsError && error.message === 'URL must not contain a path: http://127.0.0.1:1/x');
  await assert.rejects(client.cluster.memberAdd({ peerUrls: [] }), InvalidMemberUrlsError);
  await assert.rejects(client.cluster.memberAdd({ peerUrls: ['http://127.0.0.1:1'], autoPromote: true }), (error: unknown) => error instanceof KvError && /learners only/.test(error.message));
  assert.equal(fake.received.length, before);
});

test('membership refusals arrive as typed errors with etcd\'s messages', async () => {
  const cases: Array<[string, grpc.status, string, new (...args: never[]) => MembershipError]> = [
    ['MemberAdd', grpc.status.FAILED_PRECONDITION, 'etcdserver: member ID already exist', MemberExistsError],
    ['MemberAdd', grpc.status.FAILED_PRECONDITION, 'etcdserver: Peer URLs already exists', PeerUrlsExistError],
    ['MemberAdd', grpc.status.FAILED_PRECONDITION, 'etcdserver: too many learner members in cluster', TooManyLearnersError],
    ['MemberAdd', grpc.status.UNAVAILABLE, 'etcdserver: unhealthy cluster', UnhealthyClusterError],
    ['MemberAdd', grpc.status.INVALID_ARGUMENT, 'etcdserver: given member URLs are invalid', InvalidMemberUrlsError],
    ['MemberRemove', grpc.status.NOT_FOUND, 'etcdserver: member not found', MemberNotFoundError],
    ['MemberRemove', grpc.status.FAILED_PRECONDITION, 'etcdserver: re-configuration failed due to not enough started members', NotEnoughStartedMembersError],
    ['MemberPromote', grpc.status.FAILED_PRECONDITION, 'etcdserver: can only promote a learner member', MemberNotLearnerError],
    ['MemberPromote', grpc.status.FAILED_PRECONDITION, 'etcdserver: can only promote a learner member which is in sync with leader', LearnerNotReadyError],
  ];
  for (const [method, code, details, Class] of cases) {
    fake.refuseNext(method, code, details);
    const before = fake.count(method);
    const call = method === 'MemberAdd' ? client.cluster.memberAdd({ peerUrls: ['http://127.0.0.1:1'] }) : method === 'MemberRemove' ? client.cluster.memberRemove(1n) : client.cluster.memberPromote(1n);
    await assert.rejects(call, (error: unknown) => error instanceof Class && error instanceof MembershipError && error.message === details && (error as KvError).grpcCode === code, details);
    assert.equal(fake.count(method) - before, 1, `${details}: sent once, not retried`);
  }
});

/**
 * The lean unary path (src/util/grpc-fast-path.ts) against grpc-js' own: the same answers,
 * errors and limits, seen by a grpc-js client and by raw HTTP/2 requests; compressed requests
 * and streams still go to grpc-js.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { createGrpcServer, startGrpcServer } from '../../../src/api/server.js';
import { loadServices } from '../../../src/api/proto.js';
import type { PbMessage } from '../../../src/api/codec.js';
import { KvdError } from '../../../src/util/errors.js';
import type { FastPathStats } from '../../../src/util/grpc-fast-path.js';
import { rawCall, framed } from './raw-http2.js';
import { createFakeBackends, type FakeStore } from './fake-backend.js';
import { call, kvClient, settle, type KvClient } from './kv-client.js';

const services = loadServices();
const MAX_REQUEST_BYTES = 64 * 1024;

interface Running { readonly server: grpc.Server; readonly port: number; readonly store: FakeStore; readonly stats: FastPathStats }
let fast: Running;
let plain: Running;

async function start(unaryFastPath: boolean): Promise<Running> {
  const fake = createFakeBackends();
  const stats: FastPathStats = { served: 0, streams: 0 };
  const server = createGrpcServer({ backends: fake.backends, maxRequestBytes: MAX_REQUEST_BYTES, unaryFastPath, fastPathStats: stats, onUnexpectedError: () => undefined });
  const [bound] = await startGrpcServer(server, ['http://127.0.0.1:0']);
  return { server, port: bound.port, store: fake.store, stats };
}

before(async () => {
  fast = await start(true);
  plain = await start(false);
});

after(() => {
  fast.server.forceShutdown();
  plain.server.forceShutdown();
});

test('unary calls are served on the lean path and answer exactly as grpc-js does', async () => {
  const clients = [kvClient(fast.port), kvClient(plain.port)];
  try {
    const before = fast.stats.served;
    const run = async (client: KvClient): Promise<unknown[]> => [
      await settle(call(client, 'Put', { key: Buffer.from('a'), value: Buffer.from('1'), prev_kv: true })),
      await settle(call(client, 'Put', { key: Buffer.from('a'), value: Buffer.from('2'), prev_kv: true })),
      await settle(call(client, 'Range', { key: Buffer.from('a') })),
      await settle(call(client, 'Range', { key: Buffer.from('') })), // etcd: key is not provided
      await settle(call(client, 'Put', { key: Buffer.from('big'), value: Buffer.alloc(MAX_REQUEST_BYTES + 10) })), // etcd: request is too large
      await settle(call(client, 'DeleteRange', { key: Buffer.from('a') })),
    ];
    const [fastAnswers, plainAnswers] = [await run(clients[0]), await run(clients[1])];
    assert.deepEqual(fastAnswers, plainAnswers);
    assert.equal(fast.stats.served - before, 6, 'every call took the lean path');
    assert.equal(plain.stats.served, 0);
    const tooLarge = fastAnswers[4] as { code: number; details: string };
    assert.equal(tooLarge.code, grpc.status.INVALID_ARGUMENT);
  } finally {
    for (const client of clients) client.close();
  }
});

test('backend errors, metadata and a message over the receive limit', async () => {
  const clients = [kvClient(fast.port, { 'grpc.max_send_message_length': -1 }), kvClient(plain.port, { 'grpc.max_send_message_length': -1 })];
  try {
    const answers = [];
    for (const [index, client] of clients.entries()) {
      const store = index === 0 ? fast.store : plain.store;
      const tokens: unknown[] = [];
      store.intercept = (recorded) => {
        tokens.push(recorded.options.auth?.token);
        if (recorded.method === 'kv.range') throw new KvdError('no-leader');
      };
      const metadata = new grpc.Metadata();
      metadata.set('token', 'secret-token');
      const failed = await settle(call(client, 'Range', { key: Buffer.from('x') }, {}, metadata));
      // Far over max-request-bytes + 512 KiB: grpc's own limit.
      const oversized = await settle(call(client, 'Put', { key: Buffer.from('k'), value: Buffer.alloc(MAX_REQUEST_BYTES + 600 * 1024) }));
      store.intercept = undefined;
      answers.push({ failed, oversized: { code: oversized.code, details: oversized.details?.replace(/\(\d+ vs/, '(N vs') }, tokens });
    }
    assert.deepEqual(answers[0], answers[1]);
    assert.equal(answers[0].failed.code, grpc.status.UNAVAILABLE);
    assert.equal(answers[0].failed.details, 'etcdserver: no leader');
    assert.deepEqual(answers[0].tokens, ['secret-token']);
    assert.equal(answers[0].oversized.code, grpc.status.RESOURCE_EXHAUSTED);
  } finally {
    fast.store.intercept = undefined;
    plain.store.intercept = undefined;
    for (const client of clients) client.close();
  }
});

test('a client deadline ends a held call with DEADLINE_EXCEEDED and cancels it in the backend', async () => {
  const client = kvClient(fast.port);
  try {
    let aborted: Promise<boolean> | undefined;
    fast.store.intercept = (recorded) => {
      aborted = new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 5000);
        recorded.options.signal.addEventListener('abort', () => { clearTimeout(timer); resolve(true); }, { once: true });
      });
      return aborted.then(() => undefined);
    };
    const answer = await settle(call(client, 'Range', { key: Buffer.from('held') }, { deadline: Date.now() + 200 }));
    assert.equal(answer.code, grpc.status.DEADLINE_EXCEEDED);
    assert.equal(await aborted, true, 'the backend saw the call end');
  } finally {
    fast.store.intercept = undefined;
    client.close();
  }
});

test('compressed requests are left to grpc-js', async () => {
  const client = kvClient(fast.port, { 'grpc.default_compression_algorithm': 2 /* gzip */ });
  try {
    const before = fast.stats.served;
    const answer = await call(client, 'Put', { key: Buffer.from('gz'), value: Buffer.alloc(4096, 7) });
    assert.ok(answer.header !== undefined);
    assert.equal(fast.stats.served, before, 'grpc-js decompressed and served it');
  } finally {
    client.close();
  }
});

test('malformed requests get grpc-js\' statuses (raw HTTP/2)', async () => {
  const statusOf = (answer: { headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders }): [string, string] => {
    const source = answer.headers['grpc-status'] !== undefined ? answer.headers : answer.trailers;
    return [String(source['grpc-status']), decodeURI(String(source['grpc-message']))];
  };
  const putBytes = (services.KV.service.Put as grpc.MethodDefinition<PbMessage, PbMessage>).requestSerialize({ key: Buffer.from('raw'), value: Buffer.from('v') });
  const cases: Array<{ name: string; body: Buffer; headers?: http2.OutgoingHttpHeaders }> = [
    { name: 'no message', body: Buffer.alloc(0) },
    { name: 'two messages', body: Buffer.concat([framed(putBytes), framed(putBytes)]) },
    { name: 'a bad timeout', body: framed(putBytes), headers: { 'grpc-timeout': 'soon' } },
    { name: 'undecodable', body: framed(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])) },
    { name: 'declared too large', body: Buffer.from([0, 0x7f, 0xff, 0xff, 0xff]) },
  ];
  for (const { name, body, headers } of cases) {
    const [onFast, onPlain] = [await rawCall(fast.port, '/etcdserverpb.KV/Put', body, headers), await rawCall(plain.port, '/etcdserverpb.KV/Put', body, headers)];
    assert.deepEqual(statusOf(onFast), statusOf(onPlain), name);
    assert.notEqual(statusOf(onFast)[0], '0', `${name} fails`);
  }
  const ok = await rawCall(fast.port, '/etcdserverpb.KV/Put', framed(putBytes));
  assert.equal(ok.headers[':status'], 200);
  assert.equal(ok.headers['content-type'], 'application/grpc+proto');
  assert.equal(ok.headers.date, undefined, 'no date header (Go servers send none; Node adds one unless told not to)');
  assert.equal(ok.trailers['grpc-status'], '0');
  assert.equal(ok.body.readUInt32BE(1), ok.body.length - 5, 'one length-prefixed message');
});

type LeaseClient = grpc.Client & {
  LeaseGrant(request: PbMessage, callback: (error: grpc.ServiceError | null, value: PbMessage) => void): void;
  LeaseKeepAlive(): grpc.ClientDuplexStream<PbMessage, PbMessage>;
};

/** Sends `ids` on one LeaseKeepAlive stream, half-closes, and collects the answers and the end status. */
function keepAliveExchange(client: LeaseClient, ids: string[]): Promise<{ answers: PbMessage[]; code: number }> {
  return new Promise((resolve) => {
    const call = client.LeaseKeepAlive();
    const answers: PbMessage[] = [];
    call.on('data', (message: PbMessage) => answers.push(message));
    call.on('error', (error: grpc.ServiceError) => resolve({ answers, code: error.code }));
    call.on('status', (status: grpc.StatusObject) => { if (status.code === grpc.status.OK) resolve({ answers, code: status.code }); });
    for (const id of ids) call.write({ ID: id });
    call.end();
  });
}

test('LeaseKeepAlive streams are served on the lean path with the answers grpc-js gives', async () => {
  const clients = [fast, plain].map((running) => new services.Lease(`127.0.0.1:${running.port}`, grpc.credentials.createInsecure()) as unknown as LeaseClient);
  try {
    const results = [];
    for (const client of clients) {
      const granted = await new Promise<PbMessage>((resolve, reject) => client.LeaseGrant({ ID: '0', TTL: '30' }, (error, value) => (error === null ? resolve(value) : reject(error))));
      const id = String(granted.ID);
      const exchange = await keepAliveExchange(client, [id, '12345', id]);
      // Lease ids differ between the two servers: compare what does not depend on them.
      results.push({ code: exchange.code, ttls: exchange.answers.map((answer) => answer.TTL), known: exchange.answers.map((answer) => String(answer.ID) === id) });
    }
    assert.deepEqual(results[0], results[1]);
    assert.deepEqual(results[0], { code: grpc.status.OK, ttls: ['30', '0', '30'], known: [true, false, true] });
    assert.ok(fast.stats.streams >= 1, 'the stream took the lean path');
    assert.equal(plain.stats.streams, 0);
  } finally {
    for (const client of clients) client.close();
  }
});

test('a LeaseKeepAlive stream: messages split across DATA frames, several in one frame, and a bad one (raw HTTP/2)', async () => {
  const method = services.Lease.service.LeaseKeepAlive as grpc.MethodDefinition<PbMessage, PbMessage>;
  const two = Buffer.concat([framed(method.requestSerialize({ ID: '7' })), framed(method.requestSerialize({ ID: '8' }))]);
  const answersOf = (body: Buffer): string[] => {
    const ids: string[] = [];
    for (let offset = 0; offset + 5 <= body.length; offset += 5 + body.readUInt32BE(offset + 1)) {
      ids.push(String(method.responseDeserialize(body.subarray(offset + 5, offset + 5 + body.readUInt32BE(offset + 1))).ID));
    }
    return ids;
  };
  for (const port of [fast.port, plain.port]) {
    const answer = await rawCall(port, '/etcdserverpb.Lease/LeaseKeepAlive', two);
    assert.deepEqual(answersOf(answer.body), ['7', '8'], `both answered, in order (port ${port})`);
    assert.equal(answer.trailers['grpc-status'], '0');
    const split = await rawCall(port, '/etcdserverpb.Lease/LeaseKeepAlive', [two.subarray(0, 3), two.subarray(3, 9), two.subarray(9)]);
    assert.deepEqual(answersOf(split.body), ['7', '8'], `split across frames (port ${port})`);
  }
  const bad = Buffer.concat([framed(method.requestSerialize({ ID: '9' })), framed(Buffer.from([0x08, 0xff, 0xff]))]);
  const [onFast, onPlain] = [await rawCall(fast.port, '/etcdserverpb.Lease/LeaseKeepAlive', bad), await rawCall(plain.port, '/etcdserverpb.Lease/LeaseKeepAlive', bad)];
  const statusOf = (answer: { headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders }): string => String((answer.headers['grpc-status'] !== undefined ? answer.headers : answer.trailers)['grpc-status']);
  assert.equal(statusOf(onFast), statusOf(onPlain));
  assert.equal(statusOf(onFast), String(grpc.status.INTERNAL));
});

/**
 * kvd's own HTTP/2 on the client port (src/util/h2, `--client-http2 kvd`) against grpc-js on
 * Node's HTTP/2 (`--client-http2 node`, no lean path): the same answers, errors and limits seen by
 * grpc-js clients and by raw HTTP/2 requests; large messages both ways (flow control), compressed
 * requests, deadlines and cancellation, watch streams whose client stops reading, many calls at
 * once on one connection, and a graceful close.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { createClientApi, GRPC_OVERHEAD_BYTES } from '../../../src/api/server.js';
import { startClientListener, type ClientListener, type Http2Implementation } from '../../../src/api/client-listener.js';
import { loadServices } from '../../../src/api/proto.js';
import type { PbMessage } from '../../../src/api/codec.js';
import { KvdError } from '../../../src/util/errors.js';
import type { H2GrpcStats } from '../../../src/util/h2/grpc-serve.js';
import { H2Connection } from '../../../src/util/h2/connection.js';
import { rawCall, framed } from './raw-http2.js';
import { createFakeBackends, type FakeStore } from './fake-backend.js';
import { call, kvClient, settle, type KvClient } from './kv-client.js';

const services = loadServices();
const MAX_REQUEST_BYTES = 1536 * 1024;

interface Running { readonly listener: ClientListener; readonly server: grpc.Server; readonly port: number; readonly store: FakeStore; readonly stats: H2GrpcStats }
let kvd: Running;
let node: Running;

async function start(http2Impl: Http2Implementation): Promise<Running> {
  const fake = createFakeBackends();
  const stats: H2GrpcStats = { calls: 0, connections: 0 };
  const api = createClientApi({ backends: fake.backends, maxRequestBytes: MAX_REQUEST_BYTES, unaryFastPath: false, onUnexpectedError: () => undefined });
  const listener = await startClientListener(['http://127.0.0.1:0'], {
    grpcServer: api.server,
    http: (_request, response) => response.end('http/1.1'),
    http2: http2Impl,
    maxReceiveBytes: MAX_REQUEST_BYTES + GRPC_OVERHEAD_BYTES,
    http2Stats: stats,
  });
  return { listener, server: api.server, port: listener.bound[0].port, store: fake.store, stats };
}

before(async () => {
  kvd = await start('kvd');
  node = await start('node');
});

after(async () => {
  for (const running of [kvd, node]) {
    await running.listener.close('force');
    running.server.forceShutdown();
  }
});

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('unary calls answer as grpc-js does, large messages both ways included', async () => {
  const clients = [kvClient(kvd.port), kvClient(node.port)];
  try {
    const before = kvd.stats.calls;
    const big = Buffer.alloc(1024 * 1024, 0x61); // far beyond the 65,535-byte windows: flow control both ways
    const run = async (client: KvClient): Promise<unknown[]> => [
      await settle(call(client, 'Put', { key: Buffer.from('a'), value: Buffer.from('1'), prev_kv: true })),
      await settle(call(client, 'Put', { key: Buffer.from('a'), value: Buffer.from('2'), prev_kv: true })),
      await settle(call(client, 'Range', { key: Buffer.from('a') })),
      await settle(call(client, 'Range', { key: Buffer.from('') })), // etcd: key is not provided
      await settle(call(client, 'Put', { key: Buffer.from('big'), value: big })),
      await settle(call(client, 'Range', { key: Buffer.from('big') })),
      await settle(call(client, 'Put', { key: Buffer.from('huge'), value: Buffer.alloc(MAX_REQUEST_BYTES + 10) })), // etcd: request is too large
      await settle(call(client, 'DeleteRange', { key: Buffer.from('a') })),
    ];
    const [onKvd, onNode] = [await run(clients[0]), await run(clients[1])];
    assert.deepEqual(onKvd, onNode);
    assert.equal(kvd.stats.calls - before, 8, 'every call was served by kvd\'s HTTP/2');
    assert.equal(node.stats.calls, 0);
    const read = onKvd[5] as { value: PbMessage };
    assert.equal(((read.value.kvs as PbMessage[])[0].value as Buffer).length, big.length);
    assert.equal((onKvd[6] as { code: number }).code, grpc.status.INVALID_ARGUMENT);
  } finally {
    for (const client of clients) client.close();
  }
});

test('backend errors, request metadata and a message over the receive limit', async () => {
  const clients = [kvClient(kvd.port), kvClient(node.port)];
  try {
    const answers = [];
    for (const [index, client] of clients.entries()) {
      const store = index === 0 ? kvd.store : node.store;
      const tokens: unknown[] = [];
      store.intercept = (recorded) => {
        tokens.push(recorded.options.auth?.token);
        if (recorded.method === 'kv.range') throw new KvdError('no-leader');
      };
      const metadata = new grpc.Metadata();
      metadata.set('token', 'secret-token');
      const failed = await settle(call(client, 'Range', { key: Buffer.from('x') }, {}, metadata));
      const oversized = await settle(call(client, 'Put', { key: Buffer.from('k'), value: Buffer.alloc(MAX_REQUEST_BYTES + 600 * 1024) }));
      store.intercept = undefined;
      answers.push({ failed, oversized, tokens });
    }
    assert.deepEqual(answers[0], answers[1]);
    assert.equal(answers[0].failed.details, 'etcdserver: no leader');
    assert.deepEqual(answers[0].tokens, ['secret-token']);
    assert.equal(answers[0].oversized.code, grpc.status.RESOURCE_EXHAUSTED);
  } finally {
    kvd.store.intercept = undefined;
    node.store.intercept = undefined;
    for (const client of clients) client.close();
  }
});

test('a deadline ends a held call with DEADLINE_EXCEEDED, a client cancel ends it too; the backend sees both', async () => {
  const client = kvClient(kvd.port);
  try {
    const held = (): Promise<boolean> => new Promise((resolve) => {
      kvd.store.intercept = (recorded) => {
        const timer = setTimeout(() => resolve(false), 5000);
        recorded.options.signal.addEventListener('abort', () => { clearTimeout(timer); resolve(true); }, { once: true });
        return new Promise<void>((done) => recorded.options.signal.addEventListener('abort', () => done(), { once: true }));
      };
    });
    let aborted = held();
    const answer = await settle(call(client, 'Range', { key: Buffer.from('held') }, { deadline: Date.now() + 200 }));
    assert.equal(answer.code, grpc.status.DEADLINE_EXCEEDED);
    assert.equal(await aborted, true, 'the backend saw the deadline');
    aborted = held();
    const pending = new Promise<number>((resolve) => {
      const unary = client.Range({ key: Buffer.from('held') }, new grpc.Metadata(), {}, (error) => resolve(error?.code ?? 0));
      setTimeout(() => unary.cancel(), 100);
    });
    assert.equal(await pending, grpc.status.CANCELLED);
    assert.equal(await aborted, true, 'the backend saw the cancel (RST_STREAM)');
  } finally {
    kvd.store.intercept = undefined;
    client.close();
  }
});

test('gzip and deflate requests are inflated and served', async () => {
  for (const algorithm of [1, 2]) {
    const clients = [kvClient(kvd.port, { 'grpc.default_compression_algorithm': algorithm }), kvClient(node.port, { 'grpc.default_compression_algorithm': algorithm })];
    try {
      const [onKvd, onNode] = await Promise.all(clients.map((client) => settle(call(client, 'Put', { key: Buffer.from('gz'), value: Buffer.alloc(40_000, 7), prev_kv: true }))));
      assert.equal(onKvd.code, undefined, `algorithm ${algorithm}`);
      assert.deepEqual(Object.keys(onKvd.value ?? {}).sort(), Object.keys(onNode.value ?? {}).sort());
    } finally {
      for (const client of clients) client.close();
    }
  }
});

function statusOf(answer: { headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders }): [string, string] {
  const source = answer.headers['grpc-status'] !== undefined ? answer.headers : answer.trailers;
  return [String(source['grpc-status']), decodeURI(String(source['grpc-message']))];
}

test('malformed requests, unknown methods and other content types get grpc-js\' answers (raw HTTP/2)', async () => {
  const putBytes = (services.KV.service.Put as grpc.MethodDefinition<PbMessage, PbMessage>).requestSerialize({ key: Buffer.from('raw'), value: Buffer.from('v') });
  const cases: Array<{ name: string; path?: string; body: Buffer | Buffer[]; headers?: http2.OutgoingHttpHeaders }> = [
    { name: 'no message', body: Buffer.alloc(0) },
    { name: 'two messages', body: Buffer.concat([framed(putBytes), framed(putBytes)]) },
    { name: 'a bad timeout', body: framed(putBytes), headers: { 'grpc-timeout': 'soon' } },
    { name: 'undecodable', body: framed(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])) },
    { name: 'declared too large', body: Buffer.from([0, 0x7f, 0xff, 0xff, 0xff]) },
    { name: 'an unknown encoding', body: framed(putBytes, 1), headers: { 'grpc-encoding': 'snappy' } },
    { name: 'gzip that is not', body: framed(putBytes, 1), headers: { 'grpc-encoding': 'gzip' } },
    { name: 'an unknown method', path: '/etcdserverpb.KV/Nope', body: framed(putBytes) },
    { name: 'split across DATA frames', body: [framed(putBytes).subarray(0, 3), framed(putBytes).subarray(3, 9), framed(putBytes).subarray(9)] },
  ];
  for (const { name, path, body, headers } of cases) {
    const target = path ?? '/etcdserverpb.KV/Put';
    const [onKvd, onNode] = [await rawCall(kvd.port, target, body, headers), await rawCall(node.port, target, body, headers)];
    assert.deepEqual(statusOf(onKvd), statusOf(onNode), name);
  }
  const ok = await rawCall(kvd.port, '/etcdserverpb.KV/Put', framed(putBytes));
  assert.equal(ok.headers[':status'], 200);
  assert.equal(ok.headers['content-type'], 'application/grpc+proto');
  assert.equal(ok.headers.date, undefined);
  assert.equal(ok.trailers['grpc-status'], '0');
  assert.equal(ok.body.readUInt32BE(1), ok.body.length - 5, 'one length-prefixed message');
  const media = await rawCall(kvd.port, '/etcdserverpb.KV/Put', framed(putBytes), { 'content-type': 'text/plain' });
  assert.equal(media.headers[':status'], 415);
});

type LeaseClient = grpc.Client & {
  LeaseGrant(request: PbMessage, callback: (error: grpc.ServiceError | null, value: PbMessage) => void): void;
  LeaseKeepAlive(): grpc.ClientDuplexStream<PbMessage, PbMessage>;
};

test('LeaseKeepAlive streams answer as grpc-js does; a bad message ends the stream with INTERNAL', async () => {
  const results = [];
  for (const running of [kvd, node]) {
    const client = new services.Lease(`127.0.0.1:${running.port}`, grpc.credentials.createInsecure()) as unknown as LeaseClient;
    try {
      const granted = await new Promise<PbMessage>((resolve, reject) => client.LeaseGrant({ ID: '0', TTL: '30' }, (error, value) => (error === null ? resolve(value) : reject(error))));
      const id = String(granted.ID);
      const exchange = await new Promise<{ answers: PbMessage[]; code: number }>((resolve) => {
        const stream = client.LeaseKeepAlive();
        const answers: PbMessage[] = [];
        stream.on('data', (message: PbMessage) => answers.push(message));
        stream.on('error', (error: grpc.ServiceError) => resolve({ answers, code: error.code }));
        stream.on('status', (status: grpc.StatusObject) => { if (status.code === grpc.status.OK) resolve({ answers, code: status.code }); });
        for (const one of [id, '12345', id]) stream.write({ ID: one });
        stream.end();
      });
      results.push({ code: exchange.code, ttls: exchange.answers.map((answer) => answer.TTL), known: exchange.answers.map((answer) => String(answer.ID) === id) });
    } finally {
      client.close();
    }
  }
  assert.deepEqual(results[0], results[1]);
  assert.deepEqual(results[0], { code: grpc.status.OK, ttls: ['30', '0', '30'], known: [true, false, true] });
  const method = services.Lease.service.LeaseKeepAlive as grpc.MethodDefinition<PbMessage, PbMessage>;
  const bad = Buffer.concat([framed(method.requestSerialize({ ID: '9' })), framed(Buffer.from([0x08, 0xff, 0xff]))]);
  const [onKvd, onNode] = [await rawCall(kvd.port, '/etcdserverpb.Lease/LeaseKeepAlive', bad), await rawCall(node.port, '/etcdserverpb.Lease/LeaseKeepAlive', bad)];
  assert.deepEqual(statusOf(onKvd), statusOf(onNode));
  assert.equal(statusOf(onKvd)[0], String(grpc.status.INTERNAL));
});

test('a watch whose client stops reading: the server holds back (bounded) and delivers every event in order once it reads again', async () => {
  const kv = kvClient(kvd.port);
  const watchClient = new services.Watch(`127.0.0.1:${kvd.port}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
  const stream = (watchClient as unknown as { Watch(): grpc.ClientDuplexStream<PbMessage, PbMessage> }).Watch();
  try {
    const revisions: number[] = [];
    let created = false;
    stream.on('data', (response: PbMessage) => {
      if (response.created === true) created = true;
      for (const event of (response.events as PbMessage[] | undefined) ?? []) revisions.push(Number((event.kv as PbMessage).mod_revision));
    });
    stream.on('error', () => undefined);
    stream.write({ create_request: { key: Buffer.from('w/'), range_end: Buffer.from('w0') } });
    await waitFor(() => created, 'the watcher');
    stream.pause();
    const value = Buffer.alloc(32 * 1024, 0x62);
    const puts = 100; // 3.2 MB of events: far beyond the client's windows
    for (let i = 0; i < puts; i += 1) await call(kv, 'Put', { key: Buffer.from(`w/${i}`), value });
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.ok(revisions.length < puts, `the paused client has not read everything (${revisions.length})`);
    stream.resume();
    await waitFor(() => revisions.length === puts, `all ${puts} events (have ${revisions.length})`);
    assert.deepEqual(revisions, [...revisions].sort((a, b) => a - b), 'in order');
    assert.equal(new Set(revisions).size, puts, 'each once');
  } finally {
    stream.cancel();
    kv.close();
    watchClient.close();
  }
});

test('500 calls at once on one connection are all answered', async () => {
  const client = kvClient(kvd.port);
  try {
    const answers = await Promise.all(Array.from({ length: 500 }, (_, i) => call(client, 'Put', { key: Buffer.from(`many/${i}`), value: Buffer.from(String(i)) })));
    assert.equal(answers.length, 500);
    const read = await call(client, 'Range', { key: Buffer.from('many/'), range_end: Buffer.from('many0'), count_only: true });
    assert.equal(read.count, '500');
  } finally {
    client.close();
  }
});

test('answers of every size that leave in one write arrive whole and in their own streams (frames staged and not)', async () => {
  const client = kvClient(kvd.port);
  try {
    // Around what a connection copies into its stage (1,024 bytes of payload) and its size (4,096).
    const sizes = [0, 1, 17, 1000, 1015, 1016, 1017, 1100, 4087, 4100, 20_000, 70_000];
    const value = (i: number): Buffer => Buffer.alloc(sizes[i % sizes.length], 97 + (i % 26));
    await Promise.all(Array.from({ length: 120 }, (_, i) => call(client, 'Put', { key: Buffer.from(`sized/${i}`), value: value(i) })));
    const reads = await Promise.all(Array.from({ length: 120 }, (_, i) => call(client, 'Range', { key: Buffer.from(`sized/${i}`) })));
    reads.forEach((read, i) => {
      const kvs = read.kvs as Array<{ key: Buffer; value: Buffer }>;
      assert.equal(kvs.length, 1, `key ${i}`);
      assert.equal(kvs[0].key.toString(), `sized/${i}`);
      assert.ok(kvs[0].value.equals(value(i)), `value ${i} (${sizes[i % sizes.length]} bytes) arrived whole`);
    });
  } finally {
    client.close();
  }
});

test('a PING is answered; a graceful close sends GOAWAY and the connection ends once its calls are done', async () => {
  const running = await start('kvd');
  const session = http2.connect(`http://127.0.0.1:${running.port}`);
  try {
    await new Promise<void>((resolve) => session.once('connect', () => resolve()));
    const rtt = await new Promise<number>((resolve, reject) => session.ping((error, duration) => (error === null ? resolve(duration) : reject(error))));
    assert.ok(rtt >= 0);
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code: number) => resolve(code)));
    const closed = new Promise<void>((resolve) => session.once('close', () => resolve()));
    const closing = running.listener.close('graceful', 2000);
    assert.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR);
    await closed;
    await closing;
    assert.equal(running.stats.connections, 1);
  } finally {
    session.destroy();
    await running.listener.close('force');
    running.server.forceShutdown();
  }
});

test('a PING acknowledgement leaves with the next frames sent (one write with the answer), or alone after a few ms', async () => {
  // A Go client sends a PING with nearly every request (grpc-go sizes its window with them).
  const server = net.createServer((socket) => {
    new H2Connection(socket, {
      maxConcurrentStreams: 10,
      maxHeaderListBytes: 8192,
      // The answer comes in a later callback than the request (an immediate, so always within the
      // acknowledgement's delay): HEADERS (':status 200', indexed) ending the stream.
      onStream: (stream) => setImmediate(() => stream.respondTrailersOnly(Buffer.from([0x88]))),
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
  const settings = Buffer.from([0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
  const ping = (payload: number): Buffer => Buffer.from([0, 0, 8, 0x6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, payload]);
  const headers = (id: number): Buffer => Buffer.from([0, 0, 1, 0x1, 0x5, 0, 0, 0, id, 0x82]); // END_STREAM | END_HEADERS
  /**
   * Frame types in each chunk the client reads after `bytes` went, and when (ms after): `bytes`
   * go 50 ms after the preface and SETTINGS (whose acknowledgements are then behind).
   */
  const exchange = (bytes: Buffer, waitMs: number): Promise<Array<{ types: number[]; atMs: number }>> => new Promise((resolve) => {
    const chunks: Array<{ types: number[]; atMs: number }> = [];
    let sent = 0;
    let pending = Buffer.alloc(0);
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write(Buffer.concat([preface, settings]));
      setTimeout(() => {
        sent = performance.now();
        socket.write(bytes);
      }, 50);
    });
    socket.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      const types: number[] = [];
      let at = 0;
      for (; at + 9 <= pending.length && at + 9 + pending.readUIntBE(at, 3) <= pending.length; at += 9 + pending.readUIntBE(at, 3)) {
        types.push(pending[at + 3] === 0x6 && (pending[at + 4] & 1) === 1 ? 0x6a : pending[at + 3]); // 0x6a: PING ACK
      }
      pending = pending.subarray(at);
      if (sent > 0) chunks.push({ types, atMs: performance.now() - sent });
    });
    socket.on('error', () => undefined);
    setTimeout(() => {
      socket.destroy();
      resolve(chunks);
    }, waitMs);
  });
  try {
    // A request with a PING in front of it: the acknowledgement leaves in the answer's write.
    const withRequest = await exchange(Buffer.concat([ping(1), headers(1)]), 300);
    const ackChunk = withRequest.find((chunk) => chunk.types.includes(0x6a));
    assert.ok(ackChunk !== undefined, `the PING is acknowledged: ${JSON.stringify(withRequest)}`);
    assert.ok(ackChunk.types.includes(0x1), `in the same write as the answer's HEADERS: ${JSON.stringify(withRequest)}`);
    // A PING alone is acknowledged all the same (no other frame to leave with).
    const alone = await exchange(ping(2), 300);
    assert.ok(alone.some((chunk) => chunk.types.includes(0x6a)), `a lone PING is acknowledged: ${JSON.stringify(alone)}`);
  } finally {
    server.close();
  }
});

test('protocol errors end the connection: a bad preface, a frame larger than allowed; streams over the limit are refused', async () => {
  const server = net.createServer((socket) => {
    new H2Connection(socket, { maxConcurrentStreams: 2, maxHeaderListBytes: 8192, onStream: () => undefined });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const exchange = (bytes: Buffer): Promise<Buffer> => new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('close', () => resolve(Buffer.concat(chunks)));
    socket.on('error', () => undefined);
    setTimeout(() => socket.destroy(), 1000);
  });
  /** GOAWAY frames' error codes in `bytes` (frames after the server's own SETTINGS and WINDOW_UPDATE). */
  const goawayCodes = (bytes: Buffer): number[] => {
    const codes: number[] = [];
    for (let at = 0; at + 9 <= bytes.length; at += 9 + bytes.readUIntBE(at, 3)) if (bytes[at + 3] === 0x7) codes.push(bytes.readUInt32BE(at + 9 + 4));
    return codes;
  };
  try {
    assert.deepEqual(goawayCodes(await exchange(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\nPRI * HTTP/2.0\r\n'))), [0x1]);
    const settings = Buffer.from([0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
    const tooLarge = Buffer.alloc(9 + 20_000);
    tooLarge.writeUIntBE(20_000, 0, 3);
    tooLarge[3] = 0x0;
    tooLarge.writeUInt32BE(1, 5);
    assert.deepEqual(goawayCodes(await exchange(Buffer.concat([preface, settings, tooLarge]))), [0x6], 'FRAME_SIZE_ERROR');
    assert.deepEqual(goawayCodes(await exchange(Buffer.concat([preface, Buffer.from([0, 0, 8, 0x6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8])]))), [0x1], 'a PING before SETTINGS');
    // Three streams (headers: ':method GET' indexed) with the limit at 2: the third is refused.
    const headers = (id: number): Buffer => Buffer.from([0, 0, 1, 0x1, 0x4, 0, 0, 0, id, 0x82]);
    const answer = await exchange(Buffer.concat([preface, settings, headers(1), headers(3), headers(5)]));
    const resets: Array<[number, number]> = [];
    for (let at = 0; at + 9 <= answer.length; at += 9 + answer.readUIntBE(at, 3)) if (answer[at + 3] === 0x3) resets.push([answer.readUInt32BE(at + 5), answer.readUInt32BE(at + 9)]);
    assert.deepEqual(resets, [[5, 0x7]], 'REFUSED_STREAM for the third');
  } finally {
    server.close();
  }
});

/** `server` on a client listener with `impl`, and a client of `definition` on it. */
async function serveStreaming(server: grpc.Server, definition: grpc.ServiceDefinition, impl: Http2Implementation): Promise<{ open(method: string): grpc.ClientReadableStream<Buffer>; close(): Promise<void> }> {
  const listener = await startClientListener(['http://127.0.0.1:0'], { grpcServer: server, http: (_request, response) => response.end(), http2: impl, maxReceiveBytes: 1 << 20 });
  const Client = grpc.makeGenericClientConstructor(definition, 'Stream');
  const client = new Client(`127.0.0.1:${listener.bound[0].port}`, grpc.credentials.createInsecure());
  return {
    open: (method) => (client as unknown as Record<string, (request: Buffer) => grpc.ClientReadableStream<Buffer>>)[method](Buffer.from('go')),
    close: async () => {
      client.close();
      await listener.close('force');
    },
  };
}

/** A service with one server-streaming method `name` (/test.Stream/name) whose messages are raw bytes. */
function serverStreamingDefinition(name: string): grpc.ServiceDefinition {
  const identity = (value: Buffer): Buffer => value;
  return {
    [name]: { path: `/test.Stream/${name}`, requestStream: false, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity },
  };
}

/**
 * Writes `messages` as a well-behaved streaming handler does (waiting for 'drain' whenever write()
 * says so), then ends the call; resolves with what each write() returned.
 */
async function writeHeedingDrain(call: grpc.ServerWritableStream<Buffer, Buffer>, messages: readonly Buffer[]): Promise<boolean[]> {
  const returned: boolean[] = [];
  for (const message of messages) {
    const flowing = call.write(message);
    returned.push(flowing);
    if (!flowing) await new Promise<void>((resolve) => call.once('drain', () => resolve()));
  }
  call.end();
  return returned;
}

test('a server-streaming handler that waits for \'drain\' delivers every message past the client\'s windows (etcdctl snapshot save\'s shape)', { timeout: 20_000 }, async () => {
  const definition = serverStreamingDefinition('Chunks');
  const chunks = 64;
  const chunkBytes = 48 * 1024;
  const server = new grpc.Server();
  let returned: boolean[] = [];
  server.addService(definition, {
    Chunks: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      void writeHeedingDrain(call, Array.from({ length: chunks }, (_, i) => Buffer.alloc(chunkBytes, i))).then((flags) => {
        returned = flags;
      });
    },
  });
  const served = await serveStreaming(server, definition, 'kvd');
  try {
    const received = await new Promise<number[]>((resolve, reject) => {
      const stream = served.open('Chunks');
      const firsts: number[] = [];
      stream.on('data', (chunk: Buffer) => {
        assert.equal(chunk.length, chunkBytes);
        firsts.push(chunk[0]);
        // A slow reader: the windows fill while it sleeps.
        stream.pause();
        setTimeout(() => stream.resume(), 2);
      });
      stream.on('end', () => resolve(firsts));
      stream.on('error', reject);
    });
    assert.deepEqual(received, Array.from({ length: chunks }, (_, i) => i));
    assert.ok(returned.includes(false), 'the handler had to wait for \'drain\'');
  } finally {
    await served.close();
    server.forceShutdown();
  }
});

test('a server-streaming handler that emits an error ends the call with that status, after what it wrote', { timeout: 20_000 }, async () => {
  const definition = serverStreamingDefinition('Fails');
  const server = new grpc.Server();
  server.addService(definition, {
    Fails: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      call.write(Buffer.from('one'));
      setTimeout(() => call.emit('error', { code: grpc.status.FAILED_PRECONDITION, details: 'etcdserver: nope' }), 5);
    },
  });
  const answers = [];
  for (const impl of ['kvd', 'node'] as const) {
    const served = await serveStreaming(server, definition, impl);
    try {
      answers.push(await new Promise<{ messages: string[]; code: number; details: string }>((resolve) => {
        const stream = served.open('Fails');
        const messages: string[] = [];
        stream.on('data', (chunk: Buffer) => messages.push(chunk.toString()));
        stream.on('error', (error: grpc.ServiceError) => resolve({ messages, code: error.code, details: error.details }));
      }));
    } finally {
      await served.close();
    }
  }
  server.forceShutdown();
  assert.deepEqual(answers[0], answers[1]);
  assert.deepEqual(answers[0], { messages: ['one'], code: grpc.status.FAILED_PRECONDITION, details: 'etcdserver: nope' });
});

test('a streaming write() returns false until the socket has taken the message, and \'drain\' follows (writers gather what comes meanwhile)', { timeout: 20_000 }, async () => {
  const definition = serverStreamingDefinition('Ticks');
  let returned: boolean[] = [];
  const server = new grpc.Server();
  server.addService(definition, {
    Ticks: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
      void writeHeedingDrain(call, [0, 1, 2, 3, 4].map((i) => Buffer.from([i]))).then((flags) => {
        returned = flags;
      });
    },
  });
  const served = await serveStreaming(server, definition, 'kvd');
  try {
    const received = await new Promise<number[]>((resolve, reject) => {
      const stream = served.open('Ticks');
      const values: number[] = [];
      stream.on('data', (chunk: Buffer) => values.push(chunk[0]));
      stream.on('end', () => resolve(values));
      stream.on('error', reject);
    });
    assert.deepEqual(received, [0, 1, 2, 3, 4]);
    assert.deepEqual(returned, [false, false, false, false, false]);
  } finally {
    await served.close();
    server.forceShutdown();
  }
});

test('a forced close ends calls still open with UNAVAILABLE "etcdserver: server stopped" (clients retry it elsewhere), not a stream without a status', { timeout: 20_000 }, async () => {
  const running = await start('kvd');
  const client = kvClient(running.port);
  try {
    running.store.intercept = (recorded) => new Promise<void>((resolve) => recorded.options.signal.addEventListener('abort', () => resolve(), { once: true }));
    const answer = settle(call(client, 'Range', { key: Buffer.from('held') }));
    await waitFor(() => running.store.calls.some((recorded) => recorded.method === 'kv.range'), 'the held call');
    await running.listener.close('force');
    const settled = await answer;
    assert.equal(settled.code, grpc.status.UNAVAILABLE);
    assert.equal(settled.details, 'etcdserver: server stopped');
  } finally {
    running.store.intercept = undefined;
    client.close();
    running.server.forceShutdown();
  }
});

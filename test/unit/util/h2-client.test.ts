// Goal: kvd's HTTP/2 gRPC client (src/util/h2/grpc-client.ts, the peer transport's streams)
// exchanges messages with both gRPC servers kvd runs (its own HTTP/2 and grpc-js on Node's), in
// order and at any size up to its limit; reports the server's status and details exactly, a cancel
// as CANCELLED, a refused connection or unknown method as grpc-js would; refuses a message over its
// receive limit; tells a writer to wait and then that it may go on; and drops a connection whose
// peer stops answering PINGs, on the client's side and on a server with keepalive.
// Method: a bidirectional echo service of raw bytes on a grpc-js server (served by grpc-js itself,
// or by src/util/h2/grpc-serve.ts over the same registered handlers); raw TCP for a silent peer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { H2GrpcServer, registeredRoutes } from '../../../src/util/h2/grpc-serve.js';
import { H2GrpcChannel, WRITE_HIGH_WATER_BYTES, type H2ClientCall } from '../../../src/util/h2/grpc-client.js';

const CHAT = '/test.Echo/Chat';
const identity = (bytes: Buffer): Buffer => bytes;
const FAIL_DETAILS = 'no such thing: naïve 100% {sure}';

const definition: grpc.ServiceDefinition = {
  Chat: { path: CHAT, requestStream: true, responseStream: true, requestSerialize: identity, requestDeserialize: identity, responseSerialize: identity, responseDeserialize: identity, originalName: 'chat' },
};

interface Served {
  readonly port: number;
  /** Calls the server saw cancelled. */
  readonly cancelled: { count: number };
  stop(): Promise<void>;
}

/** Echoes every message; 'fail' ends the call FAILED_PRECONDITION, 'end' with OK, 'big:N' answers N bytes. */
async function startEcho(impl: 'kvd' | 'node'): Promise<Served> {
  const cancelled = { count: 0 };
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 8 * 1024 * 1024, 'grpc.max_send_message_length': 8 * 1024 * 1024 });
  server.addService(definition, {
    Chat: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      call.on('cancelled', () => {
        cancelled.count += 1;
      });
      call.on('data', (message: Buffer) => {
        const text = message.toString('utf8');
        if (text === 'fail') call.emit('error', { code: grpc.status.FAILED_PRECONDITION, details: FAIL_DETAILS });
        else if (text === 'end') call.end();
        else if (text.startsWith('big:')) call.write(Buffer.alloc(Number(text.slice(4)), 7));
        else call.write(message);
      });
    },
  });
  if (impl === 'node') {
    const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error))));
    return { port, cancelled, stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())) };
  }
  const routes = registeredRoutes(server);
  assert.ok(routes !== undefined);
  const h2 = new H2GrpcServer(routes, { maxReceiveBytes: 8 * 1024 * 1024 });
  const listener = net.createServer((socket) => h2.serve(socket));
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const address = listener.address();
  assert.ok(address !== null && typeof address === 'object');
  return {
    port: address.port,
    cancelled,
    stop: async () => {
      h2.close(true);
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    },
  };
}

interface Recorded {
  readonly messages: Buffer[];
  readonly ended: Promise<{ code: number; details: string }>;
  drains: number;
}

function channelTo(port: number, maxReceiveBytes = 4 * 1024 * 1024, keepalive = { intervalMs: 5_000, timeoutMs: 5_000 }): H2GrpcChannel {
  return new H2GrpcChannel({ host: '127.0.0.1', port, maxReceiveBytes, keepalive });
}

function open(channel: H2GrpcChannel, path = CHAT): { call: H2ClientCall; recorded: Recorded } {
  let resolveEnd: (status: { code: number; details: string }) => void = () => undefined;
  const recorded: Recorded = { messages: [], ended: new Promise((resolve) => (resolveEnd = resolve)), drains: 0 };
  const call = channel.openStream(path, {
    onMessage: (message) => recorded.messages.push(message),
    onDrain: () => {
      recorded.drains += 1;
    },
    onEnd: (code, details) => resolveEnd({ code, details }),
  });
  return { call, recorded };
}

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

for (const impl of ['kvd', 'node'] as const) {
  test(`messages go both ways in order, 1 byte to 3 MiB (server on ${impl}'s HTTP/2)`, { timeout: 30_000 }, async () => {
    const served = await startEcho(impl);
    const channel = channelTo(served.port);
    try {
      const { call, recorded } = open(channel);
      const sizes = [1, 100, 16_384, 70_000, 1_000_000, 3 * 1024 * 1024, 5, 0];
      const sent = sizes.map((size, i) => Buffer.alloc(size, i + 1));
      for (const message of sent) call.write(message);
      await until(() => recorded.messages.length === sent.length, 'echoes');
      assert.deepStrictEqual(recorded.messages.map((m) => m.length), sizes);
      sent.forEach((message, i) => assert.ok(message.equals(recorded.messages[i]), `message ${i} intact`));
      call.write(Buffer.from('end'));
      assert.deepStrictEqual(await recorded.ended, { code: grpc.status.OK, details: 'OK' });
    } finally {
      channel.close();
      await served.stop();
    }
  });

  test(`the server's status and its details arrive exactly; a cancel ends the call CANCELLED on both sides (${impl})`, { timeout: 30_000 }, async () => {
    const served = await startEcho(impl);
    const channel = channelTo(served.port);
    try {
      const failing = open(channel);
      failing.call.write(Buffer.from('hello'));
      failing.call.write(Buffer.from('fail'));
      assert.deepStrictEqual(await failing.recorded.ended, { code: grpc.status.FAILED_PRECONDITION, details: FAIL_DETAILS });
      assert.deepStrictEqual(failing.recorded.messages.map(String), ['hello']);

      const cancelled = open(channel);
      cancelled.call.write(Buffer.from('x'));
      await until(() => cancelled.recorded.messages.length === 1, 'echo before cancel');
      cancelled.call.cancel();
      assert.equal((await cancelled.recorded.ended).code, grpc.status.CANCELLED);
      await until(() => served.cancelled.count >= 1, 'the server saw the cancel');
      assert.equal(cancelled.call.write(Buffer.from('late')), false, 'an ended call takes no writes');

      const unknown = open(channel, '/test.Echo/Nothing');
      assert.equal((await unknown.recorded.ended).code, grpc.status.UNIMPLEMENTED);
    } finally {
      channel.close();
      await served.stop();
    }
  });

  test(`a message over the receive limit ends the call RESOURCE_EXHAUSTED (${impl})`, { timeout: 30_000 }, async () => {
    const served = await startEcho(impl);
    const channel = channelTo(served.port, 64 * 1024);
    try {
      const { call, recorded } = open(channel);
      call.write(Buffer.from(`big:${64 * 1024}`));
      await until(() => recorded.messages.length === 1, 'a message at the limit');
      call.write(Buffer.from(`big:${64 * 1024 + 1}`));
      const ended = await recorded.ended;
      assert.equal(ended.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.match(ended.details, /larger than max \(65537 vs\. 65536\)/);
    } finally {
      channel.close();
      await served.stop();
    }
  });
}

test('write() asks the writer to wait above its mark, onDrain says when to go on; everything arrives', { timeout: 30_000 }, async () => {
  const served = await startEcho('kvd');
  const channel = channelTo(served.port);
  try {
    const { call, recorded } = open(channel);
    const message = Buffer.alloc(64 * 1024, 3);
    let accepted = 0;
    while (call.write(message)) accepted += 1;
    assert.equal(accepted, Math.floor(WRITE_HIGH_WATER_BYTES / (message.length + 5)), 'true until the mark is passed');
    await until(() => recorded.drains === 1, 'drain');
    await until(() => recorded.messages.length === accepted + 1, 'every message echoed');
  } finally {
    channel.close();
    await served.stop();
  }
});

test('a refused connection ends the call UNAVAILABLE; the channel connects again on the next call', { timeout: 30_000 }, async () => {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  const channel = channelTo(port);
  try {
    const refused = open(channel);
    const ended = await refused.recorded.ended;
    assert.equal(ended.code, grpc.status.UNAVAILABLE);
    assert.match(ended.details, /ECONNREFUSED/);
  } finally {
    channel.close();
  }
  const closed = open(channel);
  assert.equal((await closed.recorded.ended).code, grpc.status.UNAVAILABLE, 'a closed channel opens nothing');
});

test('a peer that stops answering PINGs is dropped after the keepalive timeout', { timeout: 30_000 }, async () => {
  // Accepts, reads everything, answers nothing (a member frozen, or a network that blackholes).
  const sockets: net.Socket[] = [];
  const silent = net.createServer((socket) => {
    sockets.push(socket);
    socket.resume();
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const channel = channelTo((silent.address() as net.AddressInfo).port, 1024, { intervalMs: 50, timeoutMs: 150 });
  try {
    // Without the keepalive the call would stay open (the silent peer keeps its socket) until the test's timeout.
    const { recorded } = open(channel);
    const ended = await recorded.ended;
    assert.equal(ended.code, grpc.status.UNAVAILABLE);
    assert.match(ended.details, /no PING acknowledgement within 150 ms/);
  } finally {
    channel.close();
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
  }
});

test('a server with keepalive drops a client that stops answering PINGs (a peer that vanished holds no inbound stream)', { timeout: 30_000 }, async () => {
  const server = new grpc.Server();
  server.addService(definition, { Chat: () => undefined });
  const routes = registeredRoutes(server);
  assert.ok(routes !== undefined);
  const h2 = new H2GrpcServer(routes, { maxReceiveBytes: 1024, keepalive: { intervalMs: 50, timeoutMs: 150 } });
  const listener = net.createServer((socket) => h2.serve(socket));
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  // A client that says hello (preface and empty SETTINGS) and then reads without ever answering.
  const client = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
  const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
  client.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), settings]));
  let pings = 0;
  client.on('data', (chunk: Buffer) => {
    // Frame type 6 (PING) without ACK: count them (a chunk may hold several frames; scan headers).
    for (let at = 0; at + 9 <= chunk.length;) {
      const length = chunk.readUIntBE(at, 3);
      if (chunk[at + 3] === 6 && (chunk[at + 4] & 1) === 0) pings += 1;
      at += 9 + length;
    }
  });
  try {
    // Without the keepalive the server would keep the connection until the test's timeout.
    await new Promise<void>((resolve) => client.once('close', () => resolve()));
    assert.ok(pings >= 1, 'the server pinged');
  } finally {
    client.destroy();
    h2.close(true);
    await new Promise<void>((resolve) => listener.close(() => resolve()));
  }
});

// Goal: the Maintenance.Snapshot handler streams the backend's chunks in order with exact
// remaining_bytes (0 on the last), the header on the first message only, and the server version;
// it pulls the next chunk only when the stream has drained (a client that stops reading stops
// the backend's reading, with a bounded lead); a client that goes away ends the backend's
// iterator; a backend that delivers fewer bytes than announced fails the call.
// Method: the gRPC server over the fake backends with a scripted `snapshot` that counts the
// chunks pulled; a raw grpc-js client that pauses, resumes and cancels.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { createGrpcServer, startGrpcServer } from '../../../src/api/server.js';
import { loadServices } from '../../../src/api/proto.js';
import type { MaintenanceBackend } from '../../../src/api/backend.js';
import { createFakeBackends } from './fake-backend.js';

const CHUNK_BYTES = 256 * 1024;
const CHUNKS = 96;

interface Script {
  chunks: number;
  /** Bytes announced beyond what is delivered. */
  lie: number;
  pulled: number;
  returned: boolean;
}

const script: Script = { chunks: CHUNKS, lie: 0, pulled: 0, returned: false };
let server: grpc.Server;
let client: grpc.Client;

before(async () => {
  const fake = createFakeBackends();
  const maintenance: MaintenanceBackend = {
    ...fake.backends.maintenance,
    async snapshot() {
      const chunks: AsyncIterableIterator<Uint8Array> = {
        next: async () => {
          if (script.pulled >= script.chunks) return { done: true, value: undefined };
          script.pulled += 1;
          return { done: false, value: Buffer.alloc(CHUNK_BYTES, script.pulled) };
        },
        return: async () => {
          script.returned = true;
          return { done: true, value: undefined };
        },
        [Symbol.asyncIterator]: () => chunks,
      };
      return { header: fake.store.header(), sizeBytes: script.chunks * CHUNK_BYTES + script.lie, version: '3.4.0', chunks };
    },
  };
  server = createGrpcServer({
    backends: { ...fake.backends, maintenance },
    maxRequestBytes: 1 << 20,
    maxTxnOps: 128,
    defaultRequestTimeoutMs: 5000,
    watchProgressIntervalMs: 1000,
    onUnexpectedError: () => {},
  });
  const [bound] = await startGrpcServer(server, ['http://127.0.0.1:0']);
  client = new (loadServices().Maintenance)(`127.0.0.1:${bound.port}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
});

after(() => {
  client.close();
  server.forceShutdown();
});

function open(): grpc.ClientReadableStream<{ header: unknown; remaining_bytes: string; blob: Buffer; version: string }> {
  return (client as unknown as { Snapshot: (request: object) => grpc.ClientReadableStream<{ header: unknown; remaining_bytes: string; blob: Buffer; version: string }> }).Snapshot({});
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test('chunks arrive in order with exact remaining_bytes, the header first, and a paused client stops the pulling', async () => {
  Object.assign(script, { chunks: CHUNKS, lie: 0, pulled: 0, returned: false });
  const stream = open();
  const messages: Array<{ header: unknown; remaining: number; first: number; length: number; version: string }> = [];
  let paused = false;
  stream.on('data', (message: { header: unknown; remaining_bytes: string; blob: Buffer; version: string }) => {
    messages.push({ header: message.header, remaining: Number(message.remaining_bytes), first: message.blob[0], length: message.blob.length, version: message.version });
    if (messages.length === 2 && !paused) {
      paused = true;
      stream.pause();
    }
  });
  const ended = new Promise<void>((resolve, reject) => {
    stream.on('end', () => resolve());
    stream.on('error', reject);
  });
  await until(() => paused, 'the client to pause');
  // While the client does not read, the server may run ahead only by what the transport buffers.
  const pulledWhilePaused = script.pulled;
  await new Promise((resolve) => setImmediate(resolve));
  await until(() => script.pulled === pulledWhilePaused, 'the pulling to settle');
  // grpc-js's client buffers 16 messages; a few more may be in flight.
  assert.ok(script.pulled <= 24, `the server ran ahead of a paused client by a bounded number of chunks only (pulled ${script.pulled} of ${CHUNKS})`);
  stream.resume();
  await ended;
  assert.equal(messages.length, CHUNKS);
  messages.forEach((message, i) => {
    assert.equal(message.first, i + 1, 'in order');
    assert.equal(message.length, CHUNK_BYTES);
    assert.equal(message.remaining, (CHUNKS - i - 1) * CHUNK_BYTES);
    assert.equal(message.version, '3.4.0');
    assert.equal(message.header !== null, i === 0, 'header on the first message only');
  });
});

test('a client that cancels ends the backend iterator', async () => {
  Object.assign(script, { chunks: CHUNKS, lie: 0, pulled: 0, returned: false });
  const stream = open();
  stream.on('error', () => {});
  await new Promise<void>((resolve) => stream.once('data', () => resolve()));
  stream.cancel();
  await until(() => script.returned, 'the iterator to be returned');
  assert.ok(script.pulled < CHUNKS);
});

test('a backend that delivers fewer bytes than it announced fails the call', async () => {
  Object.assign(script, { chunks: 2, lie: 5, pulled: 0, returned: false });
  const stream = open();
  stream.on('data', () => {});
  const error = await new Promise<grpc.ServiceError>((resolve) => stream.on('error', resolve));
  assert.equal(error.code, grpc.status.INTERNAL);
  assert.match(error.details, /shorter than announced/);
});

// Goal: Range and RangeStream over gRPC keep a member's memory bounded: the hand-written wire
// encoding of range pages decodes exactly like protobufjs's; a paged Range answers what the store
// answers; a response over maxResponseBytes fails with RESOURCE_EXHAUSTED and grpc-go's text with
// the exact size, without holding more than the limit; the member-wide budget refuses with
// "etcdserver: too many requests"; RangeStream chunks stay at one revision while writes and a
// compaction run; and a RangeStream client that does not read stops the server from reading on.
// Method: createGrpcServer over a real MvccStore in a temp dir (a small KvBackend adapter like
// src/server/backends.ts) or a synthetic cursor, on 127.0.0.1:0, driven by raw grpc-js clients.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { createGrpcServer, startGrpcServer } from '../../../src/api/server.js';
import { loadServices } from '../../../src/api/proto.js';
import {
  encodePutResponse, encodePutResponseWire, encodeRangeHeaderWire, encodeRangeKvsWire, encodeRangeResponse, encodeRangeTailWire, type PbMessage,
} from '../../../src/api/codec.js';
import { ByteBudget, createKvService, kvServiceDefinition } from '../../../src/api/kv-service.js';
import type { KvBackend, ResponseHeader } from '../../../src/api/backend.js';
import { MvccStore } from '../../../src/store/mvcc/index.js';
import type { KeyValue, RangeCursor, RangeRequest } from '../../../src/store/mvcc/types.js';
import { createFakeBackends, MEMBER_ID } from './fake-backend.js';
import { cleanup, tempDir } from '../store/mvcc/helpers.js';
import { join } from 'node:path';
import http2 from 'node:http2';

const services = loadServices();
const RangeMethod = services.KV.service.Range;
const RangeStreamMethod = services.KV.service.RangeStream;
const CLUSTER_ID = 0xabcdef0123456789n;

let dir: string;
let store: MvccStore;
let index = 0;

function header(revision: number): ResponseHeader {
  return { clusterId: CLUSTER_ID, memberId: MEMBER_ID, revision, raftTerm: 7 };
}

/** KvBackend over the real store: reads from it, writes by applying (what backends.ts does through Raft). */
function storeBackend(target: () => MvccStore): KvBackend {
  return {
    async range(request) {
      const response = await target().range(request);
      return { header: header(response.revision), response };
    },
    async openRange(request, options) {
      const cursor = target().openRange(request, { signal: options.signal, sortBytesMax: options.sortBytesMax });
      return { header: header(cursor.revision), cursor };
    },
    async write(request) {
      index += 1;
      const [outcome] = await target().applyBatch([{ index, request }]);
      if (!outcome.ok) throw outcome.error;
      return { header: header(outcome.revision), result: outcome.result };
    },
  };
}

interface Server {
  readonly server: grpc.Server;
  readonly port: number;
  readonly client: grpc.Client;
  readonly unexpected: unknown[];
}

async function startServer(kv: KvBackend, options: { maxResponseBytes?: number; rangeBudget?: ByteBudget } = {}): Promise<Server> {
  const unexpected: unknown[] = [];
  const fake = createFakeBackends();
  const server = createGrpcServer({ backends: { ...fake.backends, kv }, maxResponseBytes: options.maxResponseBytes, onUnexpectedError: (error) => unexpected.push(error) });
  if (options.rangeBudget !== undefined) {
    // Re-register KV with a budget the test can see (createGrpcServer makes its own otherwise).
    server.removeService(services.KV.service);
    server.addService(kvServiceDefinition(services.KV.service), createKvService({
      backend: kv, maxRequestBytes: 1 << 20, maxTxnOps: 128, maxResponseBytes: options.maxResponseBytes, rangeBudget: options.rangeBudget,
      defaultRequestTimeoutMs: 7000, onUnexpectedError: (error) => unexpected.push(error),
    }));
  }
  const [bound] = await startGrpcServer(server, ['http://127.0.0.1:0']);
  const client = new services.KV(`127.0.0.1:${bound.port}`, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
  return { server, port: bound.port, client, unexpected };
}

function stop(server: Server): void {
  server.client.close();
  server.server.forceShutdown();
  assert.deepEqual(server.unexpected, [], 'no unexpected errors reached the handler');
}

function range(client: grpc.Client, request: PbMessage): Promise<PbMessage> {
  return new Promise((resolve, reject) => {
    (client as unknown as { Range: (r: PbMessage, cb: (e: grpc.ServiceError | null, v: PbMessage) => void) => void }).Range(request, (error, value) => (error ? reject(error) : resolve(value)));
  });
}

/** The raw size of a Range response (what grpc-go would measure against its send limit). */
function rangeBytes(client: grpc.Client, request: PbMessage): Promise<number> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest<PbMessage, number>('/etcdserverpb.KV/Range', (value) => RangeMethod.requestSerialize(value), (bytes: Buffer) => bytes.length, request, (error, value) => (error ? reject(error) : resolve(value ?? -1)));
  });
}

function keyOf(i: number): string {
  return `r/${String(i).padStart(6, '0')}`;
}

async function putMany(count: number, valueBytes: number, from = 0): Promise<void> {
  for (let at = from; at < from + count; at += 500) {
    const success = Array.from({ length: Math.min(500, from + count - at) }, (_, i) => ({
      type: 'put' as const,
      request: { key: Buffer.from(keyOf(at + i)), value: Buffer.alloc(valueBytes, 0x61 + ((at + i) % 26)), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false },
    }));
    index += 1;
    await store.applyBatch([{ index, request: { type: 'txn', request: { compare: [], success, failure: [] } } }]);
  }
}

function prefix(extra: PbMessage = {}): PbMessage {
  return { key: Buffer.from('r/'), range_end: Buffer.from('r0'), ...extra };
}

before(async () => {
  dir = await tempDir();
  store = await MvccStore.open({ path: join(dir, 'db'), maxTxnOps: 500 });
  await putMany(5000, 300);
});

after(async () => {
  await store.close();
  await cleanup(dir);
});

test('wire-encoded range pages decode exactly as protobufjs encodes the same response', () => {
  const kvs: KeyValue[] = [
    { key: Buffer.from('a'), createRevision: 1, modRevision: 1, version: 1, value: Buffer.alloc(0), lease: 0n },
    { key: Buffer.from('b'.repeat(300)), createRevision: 2 ** 40 + 3, modRevision: 2 ** 52, version: 127, value: Buffer.alloc(200, 1), lease: 0x7fff_ffff_ffff_ffffn },
    { key: Buffer.from([0, 0xff]), createRevision: 5, modRevision: 9, version: 128, value: Buffer.from('v'), lease: 0xffff_ffff_ffff_fff0n },
  ];
  const responseHeader = header(2 ** 45);
  for (const [more, count] of [[false, 0], [true, 3], [false, 300_000]] as const) {
    const wire = Buffer.concat([encodeRangeHeaderWire(responseHeader), encodeRangeKvsWire(kvs), encodeRangeTailWire(more, count)]);
    const fromWire = RangeMethod.responseDeserialize(wire);
    const fromObjects = RangeMethod.responseDeserialize(RangeMethod.responseSerialize(encodeRangeResponse(responseHeader, { kvs, more, count })));
    assert.deepEqual(fromWire, fromObjects);
  }
  assert.deepEqual(RangeMethod.responseDeserialize(Buffer.concat([encodeRangeHeaderWire(header(0)), encodeRangeTailWire(false, 0)])), RangeMethod.responseDeserialize(RangeMethod.responseSerialize(encodeRangeResponse(header(0), { kvs: [], more: false, count: 0 }))));
});

test('the range header field encodes every header as protobufjs does, also when it repeats or its ids change', () => {
  const headers: ResponseHeader[] = [
    header(5), header(5), header(6), { ...header(6), raftTerm: 8 }, { ...header(6), raftTerm: 0 },
    { clusterId: 0n, memberId: 0n, revision: 0, raftTerm: 0 }, { ...header(6), memberId: 0xffff_ffff_ffff_ffffn }, header(6), header(2 ** 53 - 1),
    { ...header(9), revision: -1 }, { ...header(9), clusterId: 1n }, header(9),
  ];
  for (const responseHeader of headers) {
    const first = encodeRangeHeaderWire(responseHeader);
    const again = encodeRangeHeaderWire(responseHeader);
    assert.deepEqual(again, first, 'the same header encodes the same');
    const fromWire = RangeMethod.responseDeserialize(Buffer.concat([first, encodeRangeTailWire(false, 1)]));
    const fromObjects = RangeMethod.responseDeserialize(RangeMethod.responseSerialize(encodeRangeResponse(responseHeader, { kvs: [], more: false, count: 1 })));
    assert.deepEqual(fromWire, fromObjects, JSON.stringify(responseHeader, (_, value: unknown) => (typeof value === 'bigint' ? value.toString() : value)));
  }
  assert.deepEqual(encodeRangeHeaderWire(header(5), 9), encodeRangeHeaderWire(header(9)), 'a revision given apart replaces the header\'s');
  assert.deepEqual(encodeRangeHeaderWire(header(5), -1), encodeRangeHeaderWire({ ...header(5), revision: -1 }), 'also beyond the fast encoding');
});

test('a PutResponse encoded as wire bytes decodes as protobufjs encodes it, with and without prev_kv', () => {
  const PutMethod = services.KV.service.Put;
  const prevKvs: Array<KeyValue | undefined> = [
    undefined,
    { key: Buffer.from('k'), createRevision: 3, modRevision: 2 ** 40, version: 2, value: Buffer.alloc(300, 7), lease: 0xffff_ffff_ffff_fff0n },
    { key: Buffer.from([0]), createRevision: 1, modRevision: 1, version: 1, value: Buffer.alloc(0), lease: 0n },
  ];
  for (const responseHeader of [header(9), header(9), header(2 ** 52), { ...header(4), raftTerm: 0 }]) {
    for (const prevKv of prevKvs) {
      const response = prevKv === undefined ? {} : { prevKv };
      const fromWire = PutMethod.responseDeserialize(encodePutResponseWire(responseHeader, response).take());
      const fromObjects = PutMethod.responseDeserialize(PutMethod.responseSerialize(encodePutResponse(responseHeader, response)));
      assert.deepEqual(fromWire, fromObjects);
    }
  }
});

test('a paged Range over gRPC answers what the store answers, also sorted, limited and keys-only', async () => {
  const server = await startServer(storeBackend(() => store));
  try {
    const variants: Array<[PbMessage, RangeRequest]> = [];
    const base = { key: Buffer.from('r/'), rangeEnd: Buffer.from('r0'), limit: 0, revision: 0, sortOrder: 'none', sortTarget: 'key', serializable: false, keysOnly: false, countOnly: false, minModRevision: 0, maxModRevision: 0, minCreateRevision: 0, maxCreateRevision: 0 } as const;
    variants.push([prefix(), base]);
    variants.push([prefix({ limit: 1234 }), { ...base, limit: 1234 }]);
    variants.push([prefix({ keys_only: true }), { ...base, keysOnly: true }]);
    variants.push([prefix({ sort_order: 'DESCEND', sort_target: 'MOD', limit: 10 }), { ...base, sortOrder: 'descend', sortTarget: 'mod', limit: 10 }]);
    variants.push([prefix({ sort_order: 'DESCEND', sort_target: 'KEY', limit: 3000 }), { ...base, sortOrder: 'descend', sortTarget: 'key', limit: 3000 }]);
    for (const [wire, domain] of variants) {
      const got = await range(server.client, wire);
      const expected = await store.range(domain);
      assert.equal(got.count, String(expected.count));
      assert.equal(got.more, expected.more);
      const kvs = got.kvs as PbMessage[];
      assert.equal(kvs.length, expected.kvs.length);
      kvs.forEach((kv, i) => {
        assert.deepEqual(kv.key, Buffer.from(expected.kvs[i].key));
        assert.deepEqual(kv.value, Buffer.from(expected.kvs[i].value));
        assert.equal(kv.mod_revision, String(expected.kvs[i].modRevision));
      });
      assert.equal((got.header as PbMessage).revision, String(store.currentRevision));
    }
  } finally {
    stop(server);
  }
});

test('a Range over maxResponseBytes fails with RESOURCE_EXHAUSTED and grpc-go text carrying the exact size, holding no more than the limit', async () => {
  const unlimited = await startServer(storeBackend(() => store));
  let size: number;
  try {
    size = await rangeBytes(unlimited.client, prefix());
  } finally {
    stop(unlimited);
  }
  assert.ok(size > 1_500_000, `the full response is large (${size} bytes)`);
  const limit = 200_000;
  const budget = new ByteBudget(limit);
  const limited = await startServer(storeBackend(() => store), { maxResponseBytes: limit, rangeBudget: budget });
  try {
    await assert.rejects(range(limited.client, prefix()), (error: grpc.ServiceError) => {
      assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.equal(error.details, `grpc: trying to send message larger than max (${size} vs. ${limit})`);
      return true;
    });
    assert.ok(budget.peakUsedBytes <= limit, `held at most the limit (${budget.peakUsedBytes})`);
    // A response under the limit passes.
    const small = await range(limited.client, prefix({ limit: 100 }));
    assert.equal((small.kvs as PbMessage[]).length, 100);
    assert.equal(store.openRangeCursors, 0, 'cursors were closed');
  } finally {
    stop(limited);
  }
});

test('the member-wide budget refuses with "etcdserver: too many requests" instead of buffering, and is given back', async () => {
  const budget = new ByteBudget(1_000_000);
  const server = await startServer(storeBackend(() => store), { maxResponseBytes: 1_000_000, rangeBudget: budget });
  try {
    const other = budget.hold();
    other.add(900_000); // another call's response in flight
    await assert.rejects(range(server.client, prefix({ limit: 1000 })), (error: grpc.ServiceError) => {
      assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.equal(error.details, 'etcdserver: too many requests');
      return true;
    });
    other.release();
    const answered = await range(server.client, prefix({ limit: 1000 }));
    assert.equal((answered.kvs as PbMessage[]).length, 1000);
    await waitFor(() => budget.usedBytes === 0, 'the budget to be given back after the calls');
  } finally {
    stop(server);
  }
});

/** Waits until `condition()` holds, polling on timers, or fails after `timeoutMs`. */
async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('RangeStream chunks all come from one revision while writes and a compaction run; header first, count and more last', async () => {
  const server = await startServer(storeBackend(() => store));
  try {
    await putMany(3000, 2000, 10_000); // 6 MB more under r/: several chunks
    const readAt = store.currentRevision;
    const expected = await store.range({ key: Buffer.from('r/'), rangeEnd: Buffer.from('r0'), limit: 0, revision: readAt, sortOrder: 'none', sortTarget: 'key', serializable: false, keysOnly: false, countOnly: false, minModRevision: 0, maxModRevision: 0, minCreateRevision: 0, maxCreateRevision: 0 });
    const call = server.client.makeServerStreamRequest<PbMessage, PbMessage>('/etcdserverpb.KV/RangeStream', (value) => RangeStreamMethod.requestSerialize(value), (bytes: Buffer) => RangeStreamMethod.responseDeserialize(bytes) as PbMessage, prefix());
    const chunks: PbMessage[] = [];
    let wrote: Promise<void> | undefined;
    await new Promise<void>((resolve, reject) => {
      call.on('data', (chunk: PbMessage) => {
        chunks.push(chunk.range_response as PbMessage);
        if (chunks.length === 1) {
          call.pause();
          wrote = (async () => {
            // Rewrite keys the stream has not reached, delete some, and compact past its revision.
            await putMany(3000, 10, 10_000);
            index += 1;
            await store.applyBatch([{ index, request: { type: 'delete-range', request: { key: Buffer.from(keyOf(12_000)), rangeEnd: Buffer.from(keyOf(12_500)), prevKv: false } } }]);
            index += 1;
            const [compacted] = await store.applyBatch([{ index, request: { type: 'compact', request: { revision: store.currentRevision, physical: false } } }]);
            assert.ok(compacted.ok);
          })().finally(() => call.resume());
        }
      });
      call.on('error', reject);
      call.on('end', resolve);
    });
    await wrote;
    assert.ok(chunks.length >= 4, `several chunks (${chunks.length})`);
    const kvs = chunks.flatMap((chunk) => chunk.kvs as PbMessage[]);
    assert.equal(kvs.length, expected.kvs.length);
    kvs.forEach((kv, i) => {
      assert.deepEqual(kv.key, Buffer.from(expected.kvs[i].key));
      assert.deepEqual(kv.value, Buffer.from(expected.kvs[i].value), 'values as of the stream revision');
      assert.ok(Number(kv.mod_revision) <= readAt);
    });
    assert.equal((chunks[0].header as PbMessage).revision, String(readAt));
    assert.ok(chunks.slice(1).every((chunk) => chunk.header === null), 'header on the first chunk only');
    assert.ok(chunks.slice(0, -1).every((chunk) => chunk.count === '0' && chunk.more === false), 'count and more on the last chunk only');
    assert.equal(chunks[chunks.length - 1].count, String(expected.count));
    await store.waitCompacted(store.compactedRevision);
    assert.equal(store.openRangeCursors, 0);
  } finally {
    stop(server);
  }
});

/** A synthetic cursor: `pages` pages of `perPage` 4 KiB values, generated on demand, counting what was pulled. */
function syntheticBackend(pages: number, perPage: number): { backend: KvBackend; pulled: () => number; closed: () => boolean } {
  let pulled = 0;
  let closed = false;
  const backend: KvBackend = {
    async range() {
      throw new Error('not used');
    },
    async write() {
      throw new Error('not used');
    },
    async openRange() {
      const cursor: RangeCursor = {
        revision: 5,
        readRevision: 5,
        [Symbol.asyncIterator]: () => cursor,
        next: async () => {
          if (pulled >= pages) return { done: true, value: undefined };
          const page = Array.from({ length: perPage }, (_, i): KeyValue => ({ key: Buffer.from(keyOf(pulled * perPage + i)), createRevision: 2, modRevision: 3, version: 1, value: Buffer.alloc(4096, 0x62), lease: 0n }));
          pulled += 1;
          return { done: false, value: page };
        },
        return: async () => {
          closed = true;
          return { done: true, value: undefined };
        },
        summary: () => ({ count: pages * perPage, more: false }),
      };
      return { header: header(5), cursor };
    },
  };
  return { backend, pulled: () => pulled, closed: () => closed };
}

test('a RangeStream client that does not read stops the server from reading on (back-pressure), and cancelling ends the read', async () => {
  // 4,096 pages of 256 KiB: 1 GiB that the server would read at once without back-pressure.
  const synthetic = syntheticBackend(4096, 64);
  const budget = new ByteBudget(512 * 1024 * 1024);
  const server = await startServer(synthetic.backend, { rangeBudget: budget });
  // A raw HTTP/2 client: grpc-js's own client keeps decoding (and buffering, without bound) the
  // messages of a stream nobody reads, so only a client that stops reading shows flow control.
  const session = http2.connect(`http://127.0.0.1:${server.port}`);
  // The cancel and the server's shutdown end the stream and session with errors; they are expected.
  const transportErrors: unknown[] = [];
  session.on('error', (error: unknown) => transportErrors.push(error));
  try {
    const body = RangeStreamMethod.requestSerialize(prefix());
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt32BE(body.length, 1);
    body.copy(frame, 5);
    const stream = session.request({ ':method': 'POST', ':path': '/etcdserverpb.KV/RangeStream', 'content-type': 'application/grpc', te: 'trailers' });
    stream.on('error', (error: unknown) => transportErrors.push(error));
    stream.end(frame);
    stream.pause(); // reads nothing until told to
    await waitFor(() => synthetic.pulled() >= 2, 'the stream to start');
    // Observing an absence needs a window: the page count must stop growing, and stay small.
    const bound = 4; // a chunk in the HTTP/2 window, one being written, one waiting, one being read
    let last = -1;
    let stableSince = Date.now();
    while (Date.now() - stableSince < 300) {
      const now = synthetic.pulled();
      assert.ok(now <= bound, `the server read ${now} pages for a client that reads nothing`);
      if (now !== last) {
        last = now;
        stableSince = Date.now();
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(budget.usedBytes <= 3 * 64 * 4200, `the stream holds at most three pages (${budget.usedBytes} bytes)`);
    let receivedBytes = 0;
    stream.on('data', (data: Buffer) => { receivedBytes += data.length; });
    stream.resume();
    await waitFor(() => synthetic.pulled() >= 100, 'the server to read on once the client reads');
    assert.ok(receivedBytes > 90 * 64 * 4096, 'the client got what the server read');
    stream.close(http2.constants.NGHTTP2_CANCEL);
    await waitFor(() => synthetic.closed(), 'the cursor to be closed after the cancel');
    await waitFor(() => budget.usedBytes === 0, 'the budget to be given back');
    assert.ok(synthetic.pulled() < 4096, 'the range was not read to its end');
  } finally {
    session.destroy();
    stop(server);
  }
});

/**
 * Load worker thread: dials its connections, runs one {@link Job} and posts a
 * {@link WorkerResult}. Request loops are closed-loop (each client awaits its reply before the
 * next request), like etcd's `benchmark` tool. Watch responses are decoded by a small hand-written
 * protobuf walker that only extracts event values, so that the generator can keep up with
 * millions of events.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { loadServices } from '../../src/api/proto.js';
import { Histogram } from './histogram.js';
import { keyFor, nowMs, type Job, type WorkerResult, type WorkerMessage, type DriverMessage, type LeaseJob, type WatchJob, type LoadJob, type PutWatchJob } from './jobs.js';

type Unary = (request: object, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, response: any) => void) => void;
interface Conn { readonly kv: Record<string, Unary>; readonly lease: grpc.Client & Record<string, any>; readonly channel: ReturnType<grpc.Client['getChannel']>; readonly endpoint: string }

const job = workerData as Job;
if (parentPort === null) throw new Error('bench/lib/worker.js must run as a worker thread');
const port = parentPort;
const post = (message: WorkerMessage): void => port.postMessage(message);

const histogram = new Histogram();
const errorSamples: Record<string, number> = {};
let errors = 0;
let ops = 0;
const REQUEST_TIMEOUT_MS = 10_000;

function recordError(error: unknown): void {
  errors += 1;
  const text = error !== null && typeof error === 'object' && 'code' in error ? `${String((error as grpc.ServiceError).code)}: ${(error as grpc.ServiceError).details}` : String(error);
  if (Object.keys(errorSamples).length < 8 || text in errorSamples) errorSamples[text] = (errorSamples[text] ?? 0) + 1;
}

function dial(): Conn[] {
  const services = loadServices();
  const conns: Conn[] = [];
  for (let c = 0; c < job.conns; c++) {
    const endpoint = job.endpoints[(job.connOffset + c) % job.endpoints.length];
    // A local subchannel pool per client gives each connection its own TCP connection.
    const kv = new services.KV(endpoint, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1, 'grpc.max_receive_message_length': 64 << 20 });
    const channel = kv.getChannel();
    const lease = new services.Lease(endpoint, grpc.credentials.createInsecure(), { channelOverride: channel as unknown as grpc.ChannelOptions['channelOverride'] });
    conns.push({ kv: kv as unknown as Record<string, Unary>, lease: lease as grpc.Client & Record<string, any>, channel, endpoint });
  }
  return conns;
}

function unary(conn: Conn, method: string, request: object): Promise<any> {
  return new Promise((resolve, reject) => {
    conn.kv[method].call(conn.kv, request, { deadline: Date.now() + REQUEST_TIMEOUT_MS }, (error, response) => (error === null ? resolve(response) : reject(error)));
  });
}

const ticket = new Int32Array(job.shared);
/** Whether another op may start: not after the driver's stop, then by the shared total, or by the deadline. */
function mayContinue(deadline: number): boolean {
  if (Atomics.load(ticket, 1) !== 0) return false;
  if (job.totalOps > 0) return Atomics.add(ticket, 0, 1) < job.totalOps;
  return performance.now() < deadline;
}

/** Runs `clients` closed loops of `op` until the end condition; records latency of each op. */
async function closedLoops(conns: Conn[], op: (conn: Conn, client: number) => Promise<void>): Promise<number> {
  const start = performance.now();
  const deadline = start + job.durationMs;
  await Promise.all(Array.from({ length: job.clients }, async (_, client) => {
    const conn = conns[client % conns.length];
    while (mayContinue(deadline)) {
      const t0 = performance.now();
      try {
        await op(conn, client);
        histogram.record((performance.now() - t0) * 1000);
        ops += 1;
      } catch (error: unknown) {
        recordError(error);
      }
    }
  }));
  return performance.now() - start;
}

function waitGo(): Promise<void> {
  return new Promise((resolve) => {
    port.once('message', (message: DriverMessage) => {
      if (message.type === 'go') resolve();
    });
  });
}

function randomIndex(space: number): number { return Math.floor(Math.random() * space); }

async function runPut(conns: Conn[], keySpace: number): Promise<number> {
  const value = randomBytes(job.valueSize);
  post({ type: 'ready' });
  await waitGo();
  return closedLoops(conns, (conn) => unary(conn, 'Put', { key: keyFor('k', randomIndex(keySpace), job.keySize), value }));
}

async function runRange(conns: Conn[], options: { keySpace: number; keysPerRange: number; serializable: boolean }): Promise<number> {
  post({ type: 'ready' });
  await waitGo();
  return closedLoops(conns, async (conn) => {
    const index = randomIndex(Math.max(1, options.keySpace - options.keysPerRange + 1));
    const request = options.keysPerRange === 1
      ? { key: keyFor('k', index, job.keySize), serializable: options.serializable }
      : { key: keyFor('k', index, job.keySize), range_end: keyFor('k', index + options.keysPerRange, job.keySize), serializable: options.serializable };
    await unary(conn, 'Range', request);
  });
}

async function runTxn(conns: Conn[]): Promise<number> {
  const value = randomBytes(job.valueSize);
  const keys = Array.from({ length: job.clients }, (_, client) => keyFor('t', job.clientOffset + client, job.keySize));
  const revisions = await Promise.all(keys.map(async (key, client) => {
    const response = await unary(conns[client % conns.length], 'Put', { key, value });
    return String(response.header.revision);
  }));
  post({ type: 'ready' });
  await waitGo();
  return closedLoops(conns, async (conn, client) => {
    const key = keys[client];
    const response = await unary(conn, 'Txn', {
      compare: [{ result: 'EQUAL', target: 'MOD', key, mod_revision: revisions[client] }],
      success: [{ request_put: { key, value } }],
      failure: [{ request_range: { key } }],
    });
    if (response.succeeded === true) {
      revisions[client] = String(response.header.revision);
    } else {
      revisions[client] = String(response.responses[0].response_range.kvs[0].mod_revision);
      throw new Error('compare failed (lost CAS)');
    }
  });
}

async function runLoad(conns: Conn[], load: LoadJob): Promise<number> {
  const value = randomBytes(job.valueSize);
  post({ type: 'ready' });
  await waitGo();
  let next = load.from;
  const start = performance.now();
  await Promise.all(Array.from({ length: job.clients }, async (_, client) => {
    const conn = conns[client % conns.length];
    while (next < load.to) {
      const from = next;
      const to = Math.min(load.to, from + load.batch);
      next = to;
      const success = [];
      for (let i = from; i < to; i++) success.push({ request_put: { key: keyFor('k', i, job.keySize), value } });
      const t0 = performance.now();
      for (let attempt = 0; ; attempt++) {
        try {
          await unary(conn, 'Txn', { compare: [], success, failure: [] });
          histogram.record((performance.now() - t0) * 1000);
          ops += to - from;
          break;
        } catch (error: unknown) {
          recordError(error);
          if (attempt >= 5) break;
        }
      }
    }
  }));
  return performance.now() - start;
}

async function runLease(conns: Conn[], lease: LeaseJob): Promise<number> {
  const grant = (conn: Conn): Promise<string> => new Promise((resolve, reject) => {
    conn.lease.LeaseGrant({ TTL: 600 }, { deadline: Date.now() + REQUEST_TIMEOUT_MS }, (error: grpc.ServiceError | null, response: { ID: string }) => (error === null ? resolve(response.ID) : reject(error)));
  });
  const ids: string[][] = Array.from({ length: job.clients }, () => []);
  for (let i = 0; i < lease.leases; i += 64) {
    await Promise.all(Array.from({ length: Math.min(64, lease.leases - i) }, async (_, j) => {
      ids[(i + j) % job.clients].push(await grant(conns[(i + j) % conns.length]));
    }));
  }
  const streams = ids.map((_, client) => conns[client % conns.length].lease.LeaseKeepAlive() as grpc.ClientDuplexStream<object, { ID: string }>);
  post({ type: 'ready' });
  await waitGo();
  const start = performance.now();
  const deadline = start + job.durationMs;
  await Promise.all(streams.map((stream, client) => new Promise<void>((resolve) => {
    const mine = ids[client];
    if (mine.length === 0) { stream.end(); resolve(); return; }
    let position = 0;
    let t0 = performance.now();
    const sendNext = (): void => {
      if (!mayContinue(deadline)) { stream.end(); resolve(); return; }
      t0 = performance.now();
      stream.write({ ID: mine[position] });
      position = (position + 1) % mine.length;
    };
    stream.on('data', () => {
      histogram.record((performance.now() - t0) * 1000);
      ops += 1;
      sendNext();
    });
    stream.on('error', (error: unknown) => { recordError(error); resolve(); });
    sendNext();
  })));
  return performance.now() - start;
}

// ───────────────── watch: raw WatchResponse decoding ─────────────────

interface WatchSummary { created: number; canceled: number; values: Buffer[] }

function readVarint(buffer: Buffer, offset: number): [number, number] {
  let result = 0;
  let shift = 0;
  let position = offset;
  for (;;) {
    const byte = buffer[position++];
    if (shift < 28) result |= (byte & 0x7f) << shift; else result += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [result, position];
    shift += 7;
  }
}

/** Calls `onField(field, wireType, start, end)` for length-delimited fields, and for varints with start = value. */
function walk(buffer: Buffer, from: number, to: number, onField: (field: number, wireType: number, start: number, end: number) => void): void {
  let position = from;
  while (position < to) {
    const [tag, afterTag] = readVarint(buffer, position);
    const field = tag >>> 3;
    const wireType = tag & 7;
    position = afterTag;
    if (wireType === 0) {
      const [value, after] = readVarint(buffer, position);
      onField(field, wireType, value, after);
      position = after;
    } else if (wireType === 2) {
      const [length, after] = readVarint(buffer, position);
      onField(field, wireType, after, after + length);
      position = after + length;
    } else if (wireType === 1) {
      position += 8;
    } else if (wireType === 5) {
      position += 4;
    } else {
      throw new Error(`unexpected wire type ${wireType}`);
    }
  }
}

/** Extracts created / canceled flags and each event's kv.value from a WatchResponse. */
function decodeWatchResponse(buffer: Buffer): WatchSummary {
  const summary: WatchSummary = { created: 0, canceled: 0, values: [] };
  walk(buffer, 0, buffer.length, (field, wireType, start, end) => {
    if (field === 3 && wireType === 0 && start !== 0) summary.created = 1;
    else if (field === 4 && wireType === 0 && start !== 0) summary.canceled = 1;
    else if (field === 11 && wireType === 2) {
      walk(buffer, start, end, (eventField, eventWire, kvStart, kvEnd) => {
        if (eventField !== 2 || eventWire !== 2) return;
        walk(buffer, kvStart, kvEnd, (kvField, kvWire, valueStart, valueEnd) => {
          if (kvField === 5 && kvWire === 2) summary.values.push(buffer.subarray(valueStart, valueEnd));
        });
      });
    }
  });
  return summary;
}

async function runWatch(conns: Conn[], watch: WatchJob): Promise<number> {
  const definition = loadServices().Watch.service.Watch;
  const RawWatch = grpc.makeGenericClientConstructor({
    Watch: { ...definition, responseDeserialize: decodeWatchResponse },
  } as unknown as grpc.ServiceDefinition, 'RawWatch');
  let created = 0;
  let received = 0;
  let lastEventAt = performance.now();
  const wanted = watch.streams * watch.watchersPerStream;
  let onCreated: () => void = () => undefined;
  const allCreated = new Promise<void>((resolve) => { onCreated = resolve; });
  let onAll: () => void = () => undefined;
  const allEvents = new Promise<void>((resolve) => { onAll = resolve; });
  const streams: grpc.ClientDuplexStream<object, WatchSummary>[] = [];
  for (let s = 0; s < watch.streams; s++) {
    const conn = conns[s % conns.length];
    const client = new RawWatch(conn.endpoint, grpc.credentials.createInsecure(), { channelOverride: conn.channel as unknown as grpc.ChannelOptions['channelOverride'] }) as unknown as { Watch: () => grpc.ClientDuplexStream<object, WatchSummary> };
    const stream = client.Watch();
    stream.on('data', (summary: WatchSummary) => {
      if (summary.created === 1) {
        created += 1;
        if (created === wanted) onCreated();
      }
      if (summary.canceled === 1) recordError(new Error('watch canceled'));
      if (summary.values.length > 0) {
        const now = nowMs();
        for (const value of summary.values) {
          histogram.record((now - value.readDoubleLE(0)) * 1000);
          received += 1;
        }
        lastEventAt = performance.now();
        if (received >= watch.expectedEvents) onAll();
      }
    });
    stream.on('error', (error: unknown) => recordError(error));
    for (let w = 0; w < watch.watchersPerStream; w++) stream.write({ create_request: { key: Buffer.from(watch.key) } });
    streams.push(stream);
  }
  await allCreated;
  post({ type: 'ready' });
  await waitGo();
  const start = performance.now();
  // Done when every expected event arrived, or nothing arrived for timeoutMs.
  await Promise.race([allEvents, new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      if (performance.now() - lastEventAt > watch.timeoutMs && performance.now() - start > watch.timeoutMs) { clearInterval(timer); resolve(); }
    }, 100);
    void allEvents.then(() => { clearInterval(timer); resolve(); });
  })]);
  ops = received;
  if (received < watch.expectedEvents) recordError(new Error(`missing ${watch.expectedEvents - received} events`));
  const elapsed = lastEventAt - start;
  for (const stream of streams) stream.cancel();
  return elapsed;
}

let watchResult: WorkerResult['watch'];

/** The prefix's range end (last byte + 1). */
function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(prefix);
  end[end.length - 1] += 1;
  return end;
}

async function runPutWatch(conns: Conn[], putWatch: PutWatchJob): Promise<number> {
  const definition = loadServices().Watch.service.Watch;
  const RawWatch = grpc.makeGenericClientConstructor({ Watch: { ...definition, responseDeserialize: decodeWatchResponse } } as unknown as grpc.ServiceDefinition, 'RawWatch');
  const watchHistogram = new Histogram();
  let events = 0;
  let lastEventAt = performance.now();
  let created = 0;
  let onCreated: () => void = () => undefined;
  const allCreated = new Promise<void>((resolve) => { onCreated = resolve; });
  if (putWatch.watchStreams === 0) onCreated();
  const streams: grpc.ClientDuplexStream<object, WatchSummary>[] = [];
  for (let s = 0; s < putWatch.watchStreams; s++) {
    const conn = conns[s % conns.length];
    const client = new RawWatch(conn.endpoint, grpc.credentials.createInsecure(), { channelOverride: conn.channel as unknown as grpc.ChannelOptions['channelOverride'] }) as unknown as { Watch: () => grpc.ClientDuplexStream<object, WatchSummary> };
    const stream = client.Watch();
    stream.on('data', (summary: WatchSummary) => {
      if (summary.created === 1 && ++created === putWatch.watchStreams) onCreated();
      if (summary.canceled === 1) recordError(new Error('watch canceled'));
      if (summary.values.length === 0) return;
      const now = nowMs();
      for (const value of summary.values) watchHistogram.record((now - value.readDoubleLE(0)) * 1000);
      events += summary.values.length;
      lastEventAt = performance.now();
    });
    stream.on('error', (error: grpc.ServiceError) => {
      if (error.code !== grpc.status.CANCELLED) recordError(error);
    });
    stream.write({ create_request: { key: Buffer.from(putWatch.prefix), range_end: prefixEnd(putWatch.prefix) } });
    streams.push(stream);
  }
  await allCreated;
  post({ type: 'ready' });
  await waitGo();
  const elapsed = await closedLoops(conns, (conn) => {
    const value = Buffer.alloc(Math.max(8, job.valueSize));
    value.writeDoubleLE(nowMs(), 0);
    return unary(conn, 'Put', { key: keyFor(putWatch.prefix, randomIndex(putWatch.keySpace), job.keySize), value });
  });
  // Let the events of the last puts arrive (every stream sees every put): up to 10 s of silence.
  const expected = ops * putWatch.watchStreams;
  while (events < expected && performance.now() - lastEventAt < 10_000) await new Promise((resolve) => setTimeout(resolve, 50));
  if (events < expected) recordError(new Error(`missing ${expected - events} watch events`));
  for (const stream of streams) stream.cancel();
  watchResult = { events, latency: watchHistogram.toData() };
  return elapsed;
}

async function main(): Promise<void> {
  const conns = dial();
  let elapsedMs: number;
  switch (job.kind) {
    case 'put': elapsedMs = await runPut(conns, job.keySpace); break;
    case 'range': elapsedMs = await runRange(conns, { keySpace: job.keySpace, keysPerRange: job.keysPerRange, serializable: job.consistency === 'serializable' }); break;
    case 'txn': elapsedMs = await runTxn(conns); break;
    case 'lease': elapsedMs = await runLease(conns, job); break;
    case 'load': elapsedMs = await runLoad(conns, job); break;
    case 'watch': elapsedMs = await runWatch(conns, job); break;
    case 'putwatch': elapsedMs = await runPutWatch(conns, job); break;
  }
  const result: WorkerResult = { ops, errors, errorSamples, latency: histogram.toData(), elapsedMs, watch: watchResult };
  post({ type: 'result', result });
  for (const conn of conns) {
    conn.lease.close();
    (conn.kv as unknown as grpc.Client).close();
  }
}

main().catch((error: unknown) => post({ type: 'failed', error: error instanceof Error ? error.stack ?? error.message : String(error) }));

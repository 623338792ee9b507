/**
 * Hostile input against a running kvd cluster (issue 14): the client port gets random and mutated
 * protobuf for every RPC of every service (valid requests generated from the .proto definitions,
 * then bytes flipped, cut, spliced), random metadata, oversized messages, many streams at once,
 * raw HTTP/2 and HTTP/1.1 garbage; the peer port gets handshakes with wrong cluster or member
 * ids, random and mutated msgpack frames after a valid handshake, member calls with garbage, and
 * truncated or inconsistent snapshot streams.
 *
 * Checked while it runs: every member process stays up (no crash), answers Status within a
 * deadline (no hang), keeps its RSS (core and front-ends, each) under a bound (memory bounded),
 * and keeps accepting a legitimate client's writes; at the end the members' HashKV agree at one
 * revision (no corrupted data).
 *
 * What the peer fuzz does not send: well-formed Raft messages from a member's own id. Peers are
 * trusted by Raft (it is not Byzantine fault tolerant); the peer port is protected by TLS with
 * peer client certificates and --peer-cert-allowed-cn, which the TLS tests check. Forged frames
 * here come from ids that are not members, or do not decode.
 *
 * Run by hand: `npm run fuzz -- --duration 60 [--seed N] [--frontends N]`; a bounded run is in
 * the integration tests (test/integration/fuzz.test.ts).
 */
import * as net from 'node:net';
import * as http from 'node:http';
import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';
import { Packr } from 'msgpackr';
import { PROTO_DIR, PROTO_FILES } from '../../src/api/proto.js';
import { encodeCallRequest, encodeFrame, encodeHandshake, encodeSnapshotRecord } from '../../src/transport/codec.js';
import type { SnapshotMessage } from '../../src/raft/types.js';

/** A member as the fuzzer sees it. */
export interface FuzzTarget {
  readonly name: string;
  /** host:port of the client URL (plain http). */
  readonly endpoint: string;
  readonly peerPort: number;
  /** The member's process id (its front-ends are its children). */
  readonly pid: () => number | undefined;
}

export interface FuzzOptions {
  readonly targets: readonly FuzzTarget[];
  readonly durationMs: number;
  readonly seed: number;
  /** Largest RSS any one process of a member may reach. */
  readonly rssBoundBytes: number;
  /** Parallel fuzzing loops (each sends one case at a time). */
  readonly concurrency?: number;
  readonly log?: (line: string) => void;
}

export interface FuzzReport {
  /** Cases sent, by kind. */
  readonly cases: Record<string, number>;
  /** gRPC status codes seen for protobuf cases (by code name). */
  readonly outcomes: Record<string, number>;
  /** Invariant violations (empty when everything held). */
  readonly failures: string[];
  /** Largest RSS seen per process (bytes). */
  readonly rssMaxBytes: Record<string, number>;
  readonly seed: number;
  readonly durationMs: number;
}

/** mulberry32: a small seeded generator (reproducible case choice per loop). */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Rand {
  constructor(readonly next: () => number) {}
  int(max: number): number { return Math.floor(this.next() * max); }
  chance(p: number): boolean { return this.next() < p; }
  pick<T>(items: readonly T[]): T { return items[this.int(items.length)]; }
  bytes(length: number): Buffer {
    // Large buffers from the OS generator: a JS loop over megabytes would starve the fuzzer's
    // own event loop (and its health checks) for nothing.
    if (length > 4096) return randomBytes(length);
    const out = Buffer.alloc(length);
    for (let i = 0; i < length; i++) out[i] = this.int(256);
    return out;
  }
  /** Mostly short lengths, sometimes large ones. */
  length(): number {
    const r = this.next();
    if (r < 0.6) return this.int(16);
    if (r < 0.9) return this.int(512);
    if (r < 0.99) return this.int(64 * 1024);
    return this.int(1024 * 1024);
  }
  string(): string {
    const words = ['', 'root', 'foo', 'a', '\u0000', 'x'.repeat(300), 'http://127.0.0.1:1', '💥', '%s%n', '../..'];
    return this.chance(0.3) ? this.pick(words) : this.bytes(this.int(24)).toString('latin1');
  }
  int64(): string {
    return this.pick(['0', '1', '-1', '9223372036854775807', '-9223372036854775808', '18446744073709551615', String(this.int(1_000_000)), String(-this.int(1000))]);
  }
}

// ───────────────────────────── protobuf cases ─────────────────────────────

interface MethodCase {
  readonly path: string;
  readonly requestType: protobuf.Type;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
}

/**
 * RPCs a fuzzer must not call with random arguments: they change the membership, take seconds, or
 * (Alarm: activating NOSPACE or CORRUPT, as etcd allows any client to) legitimately stop the
 * writes the fuzzer checks keep working.
 */
const EXCLUDED_METHODS = new Set(['MemberAdd', 'MemberRemove', 'MemberUpdate', 'MemberPromote', 'MoveLeader', 'Defragment', 'AuthEnable', 'Alarm']);

function loadMethods(): MethodCase[] {
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => `${PROTO_DIR}${target}`;
  root.loadSync([...PROTO_FILES], { keepCase: true });
  root.resolveAll();
  const methods: MethodCase[] = [];
  const visit = (namespace: protobuf.NamespaceBase, prefix: string): void => {
    for (const nested of namespace.nestedArray) {
      const name = prefix === '' ? nested.name : `${prefix}.${nested.name}`;
      if (nested instanceof protobuf.Service) {
        for (const method of nested.methodsArray) {
          if (EXCLUDED_METHODS.has(method.name)) continue;
          method.resolve();
          methods.push({ path: `/${name}/${method.name}`, requestType: method.resolvedRequestType as protobuf.Type, requestStream: method.requestStream === true, responseStream: method.responseStream === true });
        }
      } else if (nested instanceof protobuf.Namespace) {
        visit(nested, name);
      }
    }
  };
  visit(root, '');
  return methods;
}

/** A random value for a message type, field by field (depth-limited). */
function randomMessage(type: protobuf.Type, rand: Rand, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of type.fieldsArray) {
    if (!rand.chance(0.6)) continue;
    const one = (): unknown => randomField(field, rand, depth);
    if (field.repeated) out[field.name] = Array.from({ length: rand.int(depth > 1 ? 2 : 5) }, one);
    else out[field.name] = one();
  }
  // A oneof keeps only one member.
  for (const oneof of type.oneofsArray) {
    const set = oneof.fieldsArray.filter((field) => out[field.name] !== undefined);
    for (const field of set.slice(1)) delete out[field.name];
  }
  return out;
}

function randomField(field: protobuf.Field, rand: Rand, depth: number): unknown {
  field.resolve();
  if (field.resolvedType instanceof protobuf.Type) return depth > 3 ? {} : randomMessage(field.resolvedType, rand, depth + 1);
  if (field.resolvedType instanceof protobuf.Enum) return rand.chance(0.9) ? rand.pick(Object.values(field.resolvedType.values)) : rand.int(1000) - 500;
  switch (field.type) {
    case 'bytes': return rand.bytes(rand.length());
    case 'string': return rand.string();
    case 'bool': return rand.chance(0.5);
    case 'int64': case 'uint64': case 'sint64': case 'fixed64': case 'sfixed64': return rand.int64();
    case 'double': case 'float': return rand.next() * 1e6;
    default: return rand.pick([0, 1, -1, 2147483647, -2147483648, rand.int(100_000)]);
  }
}

/** Mutates encoded bytes: bit flips, truncation, splices, repeated or appended garbage. */
function mutate(bytes: Uint8Array, rand: Rand): Buffer {
  let out = Buffer.from(bytes);
  const rounds = 1 + rand.int(4);
  for (let i = 0; i < rounds; i++) {
    switch (rand.int(6)) {
      case 0: if (out.length > 0) out[rand.int(out.length)] ^= 1 << rand.int(8); break;
      case 1: out = out.subarray(0, rand.int(out.length + 1)); break;
      case 2: out = Buffer.concat([out, rand.bytes(rand.int(32))]); break;
      case 3: { const at = rand.int(out.length + 1); out = Buffer.concat([out.subarray(0, at), rand.bytes(rand.int(8)), out.subarray(at)]); break; }
      case 4: out = Buffer.concat([out, out]); break;
      default: if (out.length > 0) out[rand.int(out.length)] = rand.pick([0x00, 0xff, 0x80, 0x7f, 0x0a, 0x12]);
    }
  }
  return out;
}

function randomMetadata(rand: Rand): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (rand.chance(0.2)) metadata.set('token', rand.string() || 'x');
  if (rand.chance(0.1)) metadata.set('authorization', rand.string() || 'y');
  if (rand.chance(0.1)) metadata.set('hasleader', rand.pick(['true', 'false', '']));
  if (rand.chance(0.05)) metadata.set('x-junk', 'z'.repeat(rand.int(8000)));
  return metadata;
}

const identity = (bytes: Buffer): Buffer => bytes;

/** Sends one protobuf case and resolves with its outcome (a status code name). */
function protobufCase(client: grpc.Client, method: MethodCase, rand: Rand): Promise<string> {
  const valid = method.requestType.encode(method.requestType.fromObject(randomMessage(method.requestType, rand))).finish();
  const payload = rand.chance(0.6) ? mutate(valid, rand) : Buffer.from(valid);
  const deadline = new Date(Date.now() + 3_000);
  const metadata = randomMetadata(rand);
  return new Promise((resolve) => {
    const done = (error: grpc.ServiceError | null | undefined): void => resolve(error ? (grpc.status[error.code] ?? String(error.code)) : 'OK');
    if (!method.requestStream && !method.responseStream) {
      client.makeUnaryRequest(method.path, identity, identity, payload, metadata, { deadline }, (error) => done(error));
      return;
    }
    if (!method.requestStream) {
      const call = client.makeServerStreamRequest(method.path, identity, identity, payload, metadata, { deadline });
      call.on('data', () => undefined);
      call.on('error', (error: grpc.ServiceError) => done(error));
      call.on('end', () => done(null));
      setTimeout(() => call.cancel(), 200 + rand.int(800)).unref();
      return;
    }
    const call = client.makeBidiStreamRequest(method.path, identity, identity, metadata, { deadline });
    call.on('data', () => undefined);
    call.on('error', (error: grpc.ServiceError) => done(error));
    call.on('end', () => done(null));
    const writes = 1 + rand.int(5);
    for (let i = 0; i < writes; i++) {
      const again = method.requestType.encode(method.requestType.fromObject(randomMessage(method.requestType, rand))).finish();
      call.write(rand.chance(0.5) ? mutate(again, rand) : Buffer.from(again));
    }
    if (rand.chance(0.5)) call.end();
    setTimeout(() => call.cancel(), 200 + rand.int(800)).unref();
  });
}

// ───────────────────────────── raw transport cases ─────────────────────────────

/** Writes `bytes` on a fresh TCP connection and closes it after a short while (never waits long). */
function rawTcp(host: string, port: number, bytes: Buffer, rand: Rand): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect(port, host);
    const end = (): void => {
      socket.destroy();
      resolve();
    };
    socket.on('error', end);
    socket.on('connect', () => {
      socket.write(bytes);
      if (rand.chance(0.5)) socket.end();
    });
    socket.on('data', () => undefined);
    socket.setTimeout(1_000, end);
    socket.on('close', () => resolve());
  });
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

function http2Garbage(rand: Rand): Buffer {
  // The preface, then frames with random types, flags, stream ids and lengths (often lying).
  const frames: Buffer[] = [PREFACE];
  for (let i = 0; i < 1 + rand.int(6); i++) {
    const body = rand.bytes(rand.int(64));
    const header = Buffer.alloc(9);
    header.writeUIntBE(rand.chance(0.8) ? body.length : rand.int(1 << 24), 0, 3);
    header[3] = rand.int(12);
    header[4] = rand.int(256);
    header.writeUInt32BE(rand.int(2 ** 31), 5);
    frames.push(header, body);
  }
  return Buffer.concat(frames);
}

function httpCase(endpoint: string, rand: Rand): Promise<void> {
  const [host, port] = endpoint.split(':');
  const paths = ['/v3/kv/put', '/v3/kv/range', '/v3/kv/txn', '/v3/watch', '/v3/lease/keepalive', '/v3/auth/authenticate', '/v3/auth/user/add', '/health', '/metrics', '/version', `/${rand.string()}`];
  const body = rand.chance(0.5) ? JSON.stringify({ key: rand.bytes(rand.int(20)).toString('base64'), value: rand.string(), range_end: rand.pick(['AA==', '', '!!']), lease: rand.int64(), [rand.string()]: rand.string() }) : rand.bytes(rand.length()).toString('latin1');
  return new Promise((resolve) => {
    const request = http.request({ host, port: Number(port), method: rand.pick(['POST', 'GET', 'PUT']), path: rand.pick(paths), headers: rand.chance(0.2) ? { authorization: rand.string() || 'x' } : {}, timeout: 2_000 }, (response) => {
      response.on('data', () => undefined);
      response.on('end', () => resolve());
      response.on('error', () => resolve());
      setTimeout(() => { response.destroy(); resolve(); }, 500).unref();
    });
    request.on('error', () => resolve());
    request.on('timeout', () => { request.destroy(); resolve(); });
    request.end(body);
  });
}

// ───────────────────────────── peer cases ─────────────────────────────

const packr = new Packr({ useRecords: false, int64AsType: 'bigint' });

function randomValue(rand: Rand, depth = 0): unknown {
  switch (rand.int(depth > 2 ? 6 : 9)) {
    case 0: return rand.int(1000);
    case 1: return rand.string();
    case 2: return rand.bytes(rand.int(40));
    case 3: return BigInt(rand.int64().replace(/^18446744073709551615$/, '1'));
    case 4: return rand.chance(0.5);
    case 5: return null;
    case 6: return Array.from({ length: rand.int(5) }, () => randomValue(rand, depth + 1));
    case 7: return Object.fromEntries(Array.from({ length: rand.int(5) }, () => [rand.pick(['type', 'from', 'to', 'term', 'entries', 'index', 'x']), randomValue(rand, depth + 1)]));
    default: return -rand.next();
  }
}

/** A member id that is not a member of the cluster (random 64-bit). */
function strangerId(rand: Rand): bigint {
  return (BigInt(rand.int(2 ** 30)) << 32n) | BigInt(rand.int(2 ** 32)) | 1n;
}

interface PeerIdentity {
  readonly clusterId: bigint;
  readonly memberId: bigint;
}

async function peerCase(client: grpc.Client, peer: PeerIdentity, rand: Rand): Promise<string> {
  const deadline = new Date(Date.now() + 3_000);
  const stranger = strangerId(rand);
  const handshake = (): Buffer => {
    switch (rand.int(5)) {
      case 0: return rand.bytes(rand.int(40));
      case 1: return Buffer.from(encodeHandshake({ clusterId: peer.clusterId ^ 0x5an, from: stranger, to: peer.memberId }));
      case 2: return Buffer.from(encodeHandshake({ clusterId: peer.clusterId, from: stranger, to: peer.memberId ^ 1n }));
      case 3: return Buffer.from(encodeHandshake({ clusterId: peer.clusterId, from: peer.memberId, to: peer.memberId }));
      default: return Buffer.from(encodeHandshake({ clusterId: peer.clusterId, from: stranger, to: peer.memberId }));
    }
  };
  const garbageFrame = (): Buffer => {
    switch (rand.int(3)) {
      case 0: return rand.bytes(rand.length());
      case 1: return packr.pack(randomValue(rand));
      default: return mutate(encodeFrame([{ type: 'heartbeat', from: stranger, to: peer.memberId, term: 0, commit: 0, context: new Uint8Array(0) } as never]), rand);
    }
  };
  const kind = rand.int(4);
  return new Promise((resolve) => {
    const done = (error: grpc.ServiceError | null | undefined): void => resolve(error ? (grpc.status[error.code] ?? String(error.code)) : 'OK');
    if (kind === 0) {
      const call = client.makeBidiStreamRequest('/kvd.peer.Peer/Stream', (b: Buffer) => b, (b: Buffer) => b, new grpc.Metadata(), { deadline });
      call.on('data', () => undefined);
      call.on('error', (error: grpc.ServiceError) => done(error));
      call.on('end', () => done(null));
      call.write(handshake());
      for (let i = 0; i < 1 + rand.int(5); i++) call.write(garbageFrame());
      if (rand.chance(0.5)) call.end();
      setTimeout(() => call.cancel(), 300 + rand.int(700)).unref();
      return;
    }
    if (kind === 1) {
      const valid = encodeCallRequest({ clusterId: peer.clusterId, from: stranger, to: peer.memberId, kind: rand.pick(['lease.renew', 'lease.ttl', 'member.promote', rand.string()]), payload: rand.bytes(rand.int(64)) });
      const payload = rand.chance(0.5) ? mutate(valid, rand) : Buffer.from(valid);
      client.makeUnaryRequest('/kvd.peer.Peer/Call', (b: Buffer) => b, (b: Buffer) => b, payload, new grpc.Metadata(), { deadline }, (error) => done(error));
      return;
    }
    if (kind === 2) {
      client.makeUnaryRequest('/kvd.peer.Peer/Members', (b: Buffer) => b, (b: Buffer) => b, rand.bytes(rand.int(64)), new grpc.Metadata(), { deadline }, (error) => done(error));
      return;
    }
    // A snapshot stream from a stranger: term 0 (never installable), then truncated or inconsistent data.
    const call = client.makeClientStreamRequest('/kvd.peer.Peer/Snapshot', (b: Buffer) => b, (b: Buffer) => b, new grpc.Metadata(), { deadline }, (error) => done(error));
    call.on('error', () => undefined);
    call.write(handshake());
    const message: SnapshotMessage = { type: 'snapshot', from: stranger, to: peer.memberId, term: 0, snapshot: { metadata: { index: 1 + rand.int(1_000_000), term: rand.int(3), confState: { voters: [stranger], learners: [] } }, data: rand.bytes(rand.int(32)) } };
    const header = Buffer.from(encodeSnapshotRecord({ kind: 'header', message }));
    call.write(rand.chance(0.3) ? mutate(header, rand) : header);
    let total = 0;
    for (let i = 0; i < rand.int(6); i++) {
      const data = rand.bytes(rand.length());
      total += data.length;
      call.write(rand.chance(0.2) ? rand.bytes(rand.int(16)) : Buffer.from(encodeSnapshotRecord({ kind: 'chunk', data })));
    }
    const ending = rand.int(4);
    if (ending === 0) call.write(Buffer.from(encodeSnapshotRecord({ kind: 'end', totalBytes: total + 1 + rand.int(10) })));
    else if (ending === 1) call.write(Buffer.from(encodeSnapshotRecord({ kind: 'end', totalBytes: total })));
    if (rand.chance(0.7)) call.end();
    setTimeout(() => call.cancel(), 300 + rand.int(1500)).unref();
  });
}

// ───────────────────────────── checks ─────────────────────────────

/** RSS (bytes) of a process and of its children (front-ends), from /proc. */
export function processRss(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  const read = (id: number): void => {
    try {
      const status = readFileSync(`/proc/${id}/status`, 'utf8');
      const match = /VmRSS:\s+(\d+) kB/.exec(status);
      if (match !== null) out.set(id, Number(match[1]) * 1024);
      const children = readFileSync(`/proc/${id}/task/${id}/children`, 'utf8').trim();
      for (const child of children.split(/\s+/).filter((text) => text !== '')) read(Number(child));
    } catch (error: unknown) {
      void error; // the process went away between reads: nothing to measure
    }
  };
  read(pid);
  return out;
}

/** Runs the fuzzer against running targets; resolves with what was sent and what broke. */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const log = options.log ?? (() => undefined);
  const methods = loadMethods();
  const cases: Record<string, number> = {};
  const outcomes: Record<string, number> = {};
  const failures: string[] = [];
  const rssMax: Record<string, number> = {};
  const count = (kind: string): void => {
    cases[kind] = (cases[kind] ?? 0) + 1;
  };
  const started = Date.now();
  const until = started + options.durationMs;
  const clients = options.targets.map((target) => new grpc.Client(target.endpoint, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 64 * 1024 * 1024, 'grpc.max_receive_message_length': 64 * 1024 * 1024 }));
  const peerClients = options.targets.map((target) => new grpc.Client(`127.0.0.1:${target.peerPort}`, grpc.credentials.createInsecure(), { 'grpc.max_send_message_length': 64 * 1024 * 1024 }));
  // The checks use connections of their own: a fuzz case may get its own connection closed by
  // the server (protocol errors, oversized frames), which says nothing about the member's health.
  const probes = options.targets.map((target) => new grpc.Client(target.endpoint, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
  const identities = await Promise.all(options.targets.map((target, index) => statusOf(clients[index]).then((status) => ({ clusterId: status.clusterId, memberId: status.memberId })).catch(() => undefined)));
  log(`fuzz: ${methods.length} RPCs from the protos, ${options.targets.length} members, seed ${options.seed}, ${options.durationMs} ms`);

  const loop = async (index: number): Promise<void> => {
    const rand = new Rand(random(options.seed * 7919 + index));
    while (Date.now() < until) {
      const target = rand.int(options.targets.length);
      const client = clients[target];
      const kind = rand.int(100);
      try {
        if (kind < 55) {
          const method = rand.pick(methods);
          count('protobuf');
          const outcome = await protobufCase(client, method, rand);
          outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        } else if (kind < 60) {
          count('oversized');
          const method = rand.pick(methods.filter((m) => !m.requestStream));
          await protobufCaseRaw(client, method.path, rand.bytes(2 * 1024 * 1024 + rand.int(2 * 1024 * 1024)));
        } else if (kind < 63) {
          count('many-streams');
          await manyStreams(client, rand);
        } else if (kind < 70) {
          count('raw-tcp');
          const [host, port] = options.targets[target].endpoint.split(':');
          await rawTcp(host, Number(port), rand.chance(0.5) ? http2Garbage(rand) : rand.bytes(rand.length()), rand);
        } else if (kind < 78) {
          count('http1');
          await httpCase(options.targets[target].endpoint, rand);
        } else {
          const identity = identities[target];
          if (identity === undefined) continue;
          count('peer');
          const outcome = await peerCase(peerClients[target], identity, rand);
          outcomes[`peer:${outcome}`] = (outcomes[`peer:${outcome}`] ?? 0) + 1;
        }
      } catch (error: unknown) {
        // A case failing on the client side is expected (garbage in); only the checks decide.
        void error;
      }
    }
  };

  // A legitimate writer: its writes must keep succeeding while the cluster is fuzzed.
  let writes = 0;
  let writeFailures = 0;
  const writer = (async () => {
    const client = new grpc.Client(options.targets[0].endpoint, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
    probes.push(client);
    const putType = methods.find((method) => method.path === '/etcdserverpb.KV/Put')?.requestType;
    if (putType === undefined) return;
    while (Date.now() < until) {
      const body = Buffer.from(putType.encode(putType.fromObject({ key: Buffer.from(`fuzz-check/${writes % 100}`), value: Buffer.from(String(writes)) })).finish());
      const outcome = await protobufCaseRaw(client, '/etcdserverpb.KV/Put', body, 5_000);
      writes += 1;
      if (outcome !== 'OK') writeFailures += 1;
    }
  })();

  // A member that does not answer Status three times in a row (10 s each) hangs; one slow answer
  // on a machine shared with the fuzzer's own load is not a hang.
  const unanswered = options.targets.map(() => 0);
  const lag = monitorEventLoopDelay({ resolution: 20 });
  lag.enable();
  const monitor = (async () => {
    let consecutiveWriteFailures = 0;
    let lastFailures = 0;
    while (Date.now() < until) {
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      for (const [index, target] of options.targets.entries()) {
        const pid = target.pid();
        if (pid === undefined) {
          failures.push(`${target.name}: the member process is gone (crash)`);
          continue;
        }
        for (const [id, rss] of processRss(pid)) {
          const key = `${target.name}/${id === pid ? 'core' : id}`;
          rssMax[key] = Math.max(rssMax[key] ?? 0, rss);
          if (rss > options.rssBoundBytes) failures.push(`${key}: RSS ${Math.round(rss / 1048576)} MiB over the bound ${Math.round(options.rssBoundBytes / 1048576)} MiB`);
        }
        try {
          await statusOf(probes[index], 10_000);
          unanswered[index] = 0;
        } catch (error: unknown) {
          unanswered[index] += 1;
          log(`fuzz: ${target.name} did not answer Status within 10 s (${unanswered[index]} in a row): ${String(error)}`);
          if (unanswered[index] >= 3) failures.push(`${target.name}: Status unanswered 3 times in a row (a hang): ${String(error)}`);
        }
      }
      consecutiveWriteFailures = writeFailures > lastFailures ? consecutiveWriteFailures + 1 : 0;
      lastFailures = writeFailures;
      if (consecutiveWriteFailures >= 10) failures.push(`legitimate writes failing for ${consecutiveWriteFailures} s`);
    }
  })();

  await Promise.all([...Array.from({ length: options.concurrency ?? 8 }, (_, index) => loop(index)), writer, monitor]);
  lag.disable();
  log(`fuzz: legitimate writes ${writes}, failed ${writeFailures}; the fuzzer's own event-loop delay p99 ${Math.round(lag.percentile(99) / 1e6)} ms, max ${Math.round(lag.max / 1e6)} ms`);
  if (writes > 0 && writeFailures > writes / 2) failures.push(`most legitimate writes failed (${writeFailures} of ${writes})`);

  // No corrupted data: the members agree on HashKV at one revision once they caught up.
  try {
    await agreeOnHash(probes.slice(0, options.targets.length), options.targets.map((target) => target.name), failures);
  } catch (error: unknown) {
    failures.push(`HashKV comparison failed: ${String(error)}`);
  }
  for (const client of [...clients, ...peerClients, ...probes]) client.close();
  return { cases, outcomes, failures: [...new Set(failures)], rssMaxBytes: rssMax, seed: options.seed, durationMs: Date.now() - started };
}

function protobufCaseRaw(client: grpc.Client, path: string, payload: Buffer, timeoutMs = 3_000): Promise<string> {
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, identity, identity, payload, new grpc.Metadata(), { deadline: new Date(Date.now() + timeoutMs) }, (error) => resolve(error ? (grpc.status[error.code] ?? String(error.code)) : 'OK'));
  });
}

/** Opens many watch streams on one connection at once, then drops them. */
async function manyStreams(client: grpc.Client, rand: Rand): Promise<void> {
  const streams = Array.from({ length: 100 + rand.int(400) }, () => {
    const call = client.makeBidiStreamRequest('/etcdserverpb.Watch/Watch', identity, identity, new grpc.Metadata(), { deadline: new Date(Date.now() + 5_000) });
    call.on('data', () => undefined);
    call.on('error', () => undefined);
    // A create request for a random key (field 1: create_request { key }).
    const key = rand.bytes(1 + rand.int(8));
    const create = Buffer.concat([Buffer.from([0x0a, key.length + 2, 0x0a, key.length]), key]);
    call.write(create);
    return call;
  });
  await new Promise((resolve) => setTimeout(resolve, 200 + rand.int(500)));
  for (const call of streams) call.cancel();
}

interface Status { clusterId: bigint; memberId: bigint; revision: bigint }

/** Maintenance.Status (empty request) decoded just enough: the header's ids and revision. */
function statusOf(client: grpc.Client, timeoutMs = 3_000): Promise<Status> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest('/etcdserverpb.Maintenance/Status', identity, identity, Buffer.alloc(0), new grpc.Metadata(), { deadline: new Date(Date.now() + timeoutMs) }, (error, response) => {
      if (error !== null || response === undefined) {
        reject(error ?? new Error('no response'));
        return;
      }
      const header = responseHeader(response);
      resolve(header);
    });
  });
}

let cachedTypes: { hashRequest: protobuf.Type; hashResponse: protobuf.Type; status: protobuf.Type } | undefined;

function rootTypes(): { hashRequest: protobuf.Type; hashResponse: protobuf.Type; status: protobuf.Type } {
  if (cachedTypes !== undefined) return cachedTypes;
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => `${PROTO_DIR}${target}`;
  root.loadSync([...PROTO_FILES], { keepCase: true });
  cachedTypes = { hashRequest: root.lookupType('etcdserverpb.HashKVRequest'), hashResponse: root.lookupType('etcdserverpb.HashKVResponse'), status: root.lookupType('etcdserverpb.StatusResponse') };
  return cachedTypes;
}

function responseHeader(statusBytes: Buffer): Status {
  const types = rootTypes();
  const status = types.status.toObject(types.status.decode(statusBytes), { longs: String }) as { header?: { cluster_id?: string; member_id?: string; revision?: string } };
  return { clusterId: BigInt(status.header?.cluster_id ?? '0'), memberId: BigInt(status.header?.member_id ?? '0'), revision: BigInt(status.header?.revision ?? '0') };
}

async function agreeOnHash(clients: readonly grpc.Client[], names: readonly string[], failures: string[]): Promise<void> {
  const types = rootTypes();
  const hashAt = (client: grpc.Client, revision: bigint): Promise<{ hash: number; compact: string }> => new Promise((resolve, reject) => {
    const request = Buffer.from(types.hashRequest.encode(types.hashRequest.fromObject({ revision: revision.toString() })).finish());
    client.makeUnaryRequest('/etcdserverpb.Maintenance/HashKV', identity, identity, request, new grpc.Metadata(), { deadline: new Date(Date.now() + 10_000) }, (error, response) => {
      if (error !== null || response === undefined) {
        reject(error ?? new Error('no response'));
        return;
      }
      const decoded = types.hashResponse.toObject(types.hashResponse.decode(response), { longs: String }) as { hash?: number; compact_revision?: string };
      resolve({ hash: decoded.hash ?? 0, compact: decoded.compact_revision ?? '0' });
    });
  });
  // Every member must reach the same revision (the writer has stopped); then hash there.
  const deadline = Date.now() + 30_000;
  let revision = 0n;
  for (;;) {
    const statuses = await Promise.all(clients.map((client) => statusOf(client, 5_000)));
    const revisions = statuses.map((status) => status.revision);
    revision = revisions.reduce((a, b) => (a < b ? a : b));
    if (revisions.every((r) => r === revision)) break;
    if (Date.now() > deadline) {
      failures.push(`members did not converge on one revision: ${revisions.join(', ')}`);
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const hashes = await Promise.all(clients.map((client) => hashAt(client, revision)));
  const distinct = new Set(hashes.map((h) => `${h.hash}`));
  if (distinct.size !== 1) failures.push(`HashKV at revision ${revision} differs: ${hashes.map((h, i) => `${names[i]}=${h.hash}`).join(', ')}`);
}

// ───────────────────────────── CLI ─────────────────────────────

async function main(argv: readonly string[]): Promise<void> {
  const { Cluster } = await import('../integration/harness.js');
  const arg = (name: string): string | undefined => {
    const index = argv.indexOf(`--${name}`);
    return index >= 0 ? argv[index + 1] : undefined;
  };
  const durationMs = Number(arg('duration') ?? '60') * 1000;
  const seed = Number(arg('seed') ?? String(Date.now() % 1_000_000));
  const frontends = arg('frontends');
  const cluster = await Cluster.start({ size: 3, extraArgs: frontends === undefined ? [] : ['--frontends', frontends] });
  try {
    await cluster.waitForLeader({ timeoutMs: 60_000 });
    const report = await runFuzz({
      targets: cluster.members.map((member) => ({ name: member.name, endpoint: member.endpoint, peerPort: member.peerPort, pid: () => member.process?.pid })),
      durationMs,
      seed,
      rssBoundBytes: Number(arg('rss-bound-mib') ?? '768') * 1024 * 1024,
      log: (line) => process.stdout.write(`${line}\n`),
    });
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    if (report.failures.length > 0) {
      process.stdout.write(`FAILED (seed ${seed}); member logs kept in ${cluster.root}\n`);
      await cluster.stop({ keepData: true });
      process.exit(1);
    }
  } finally {
    await cluster.stop();
  }
}

if (process.argv[1] !== undefined && import.meta.url === new URL(`file://${process.argv[1]}`).href) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`fuzz: ${String(error)}\n`);
    process.exit(2);
  });
}

/**
 * Range memory benchmark (issue 11, item 7): peak RSS of one kvd member while a client reads a
 * large prefix in one Range (no limit), with RangeStream, or with etcdctl.
 *
 * Run (after `npm run build`):
 *   node dist/bench/range-memory.js [--kvd <path to dist/cli/kvd.js>] [--data-dir DIR]
 *        [--keys 1000000] [--value-bytes 256] [--reads range,stream,etcdctl]
 *   node dist/bench/range-memory.js encode --data-dir DIR --mode wire|objects
 *
 * `measure` (the default) loads `--keys` keys `/k/0000000`… with `--value-bytes`-byte values into
 * a single-member kvd (txns of 100 puts, 16 in flight) unless DIR already holds them, then for
 * each read starts a fresh member on DIR, waits until it serves, resets its peak RSS
 * (/proc/PID/clear_refs), performs the read, and reports the member's VmHWM, its RSS before the
 * read, the response bytes and the time. DIR defaults to $TMPDIR/kvd-range-memory-<keys>; it is
 * kept so that a second run (e.g. with another build's kvd: `--kvd /tmp/rss-before/dist/cli/kvd.js`)
 * reads the same data. Its ports are chosen once and kept in DIR/bench-ports.json, because a
 * member's peer URL is part of its identity.
 *
 * `encode` compares, in this process and without gRPC, the two ways of building the unary
 * response from the store at DIR/member/db (kvd must be stopped): 'objects' keeps every page's
 * key-values and encodes one protobufjs object tree at the end; 'wire' encodes each page into wire
 * bytes as it comes. Both end with the copy grpc-js makes into its frame. It prints the process's
 * VmHWM and the time.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadServices } from '../src/api/proto.js';
import {
  EncodedMessage, encodeRangeHeaderWire, encodeRangeKvsWire, encodeRangeResponse, encodeRangeTailWire, type PbMessage,
} from '../src/api/codec.js';
import { MvccStore } from '../src/store/mvcc/index.js';
import type { KeyValue, RangeRequest } from '../src/store/mvcc/types.js';
import { freePort } from './lib/clusters.js';
import { resetPeakRss, sampleProcess } from './lib/proc.js';

const DEFAULT_KVD = fileURLToPath(new URL('../cli/kvd.js', import.meta.url));
const ETCDCTL = process.env.KVD_BENCH_ETCDCTL ?? '/usr/bin/etcdctl';
const LOAD_TXN_PUTS = 100;
const LOAD_IN_FLIGHT = 16;
const SAMPLE_INTERVAL_MS = 20;
const READY_DEADLINE_MS = 120_000;

const services = loadServices();

function option(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 && at + 1 < process.argv.length ? process.argv[at + 1] : fallback;
}

function keyOf(i: number): Buffer {
  return Buffer.from(`/k/${String(i).padStart(7, '0')}`, 'latin1');
}

function mb(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(0);
}

interface Ports {
  readonly client: number;
  readonly peer: number;
}

async function portsFor(dataDir: string): Promise<Ports> {
  const file = join(dataDir, 'bench-ports.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as Ports;
  const ports = { client: await freePort(), peer: await freePort() };
  writeFileSync(file, JSON.stringify(ports));
  return ports;
}

interface Member {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly endpoint: string;
  stop(): Promise<void>;
}

function unary(client: grpc.Client, method: string, request: PbMessage, options: grpc.CallOptions = {}): Promise<PbMessage> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (r: PbMessage, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v: PbMessage) => void) => void>)[method];
    fn.call(client, request, options, (error, value) => (error === null ? resolve(value) : reject(error)));
  });
}

async function startMember(kvd: string, dataDir: string, ports: Ports, logName: string): Promise<Member> {
  const url = (port: number): string => `http://127.0.0.1:${port}`;
  const child = spawn(process.execPath, [
    kvd, '--name', 'm1', '--data-dir', join(dataDir, 'm1'),
    '--listen-client-urls', url(ports.client), '--advertise-client-urls', url(ports.client),
    '--listen-peer-urls', url(ports.peer), '--initial-advertise-peer-urls', url(ports.peer),
    '--initial-cluster', `m1=${url(ports.peer)}`, '--log-level', 'warn',
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = createWriteStream(join(dataDir, logName), { flags: 'a' });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  if (child.pid === undefined) throw new Error('cannot start kvd');
  const endpoint = `127.0.0.1:${ports.client}`;
  const maintenance = new services.Maintenance(endpoint, grpc.credentials.createInsecure());
  const deadline = Date.now() + READY_DEADLINE_MS;
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`kvd exited with ${child.exitCode}; see ${join(dataDir, logName)}`);
      try {
        const status = await unary(maintenance, 'Status', {}, { deadline: Date.now() + 1000 });
        if (status.leader !== '0') break;
      } catch (error: unknown) {
        if (Date.now() > deadline) throw new Error(`kvd did not serve within ${READY_DEADLINE_MS} ms: ${String(error)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    maintenance.close();
  }
  return {
    child,
    pid: child.pid,
    endpoint,
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        resolve();
        return;
      }
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill('SIGTERM');
    }),
  };
}

function prefixRequest(extra: PbMessage = {}): PbMessage {
  return { key: Buffer.from('/k/'), range_end: Buffer.from('/k0'), ...extra };
}

async function countKeys(endpoint: string): Promise<number> {
  const kv = new services.KV(endpoint, grpc.credentials.createInsecure());
  try {
    return Number((await unary(kv, 'Range', prefixRequest({ count_only: true }))).count);
  } finally {
    kv.close();
  }
}

async function load(endpoint: string, keys: number, valueBytes: number): Promise<void> {
  const kv = new services.KV(endpoint, grpc.credentials.createInsecure());
  const value = Buffer.alloc(valueBytes, 0x76);
  let next = 0;
  const started = performance.now();
  const worker = async (): Promise<void> => {
    while (next < keys) {
      const from = next;
      next = Math.min(keys, next + LOAD_TXN_PUTS);
      const success = [];
      for (let i = from; i < next; i += 1) success.push({ request_put: { key: keyOf(i), value } });
      await unary(kv, 'Txn', { success }, { deadline: Date.now() + 30_000 });
      if (from % 100_000 === 0) process.stderr.write(`loaded ${from} keys (${((performance.now() - started) / 1000).toFixed(0)} s)\n`);
    }
  };
  try {
    await Promise.all(Array.from({ length: LOAD_IN_FLIGHT }, worker));
  } finally {
    kv.close();
  }
}

interface ReadResult {
  readonly read: string;
  readonly baselineRssBytes: number;
  readonly peakRssBytes: number;
  readonly responseBytes: number;
  readonly seconds: number;
  readonly error?: string;
}

/** Performs one read against the member; resolves with the bytes the client received. */
async function performRead(read: string, endpoint: string): Promise<number> {
  if (read === 'etcdctl') {
    const devNull = openSync('/dev/null', 'w');
    return new Promise((resolve, reject) => {
      const child = spawn(ETCDCTL, ['--endpoints', endpoint, '--command-timeout', '600s', 'get', '--prefix', '/k/', '--keys-only=false'], { stdio: ['ignore', devNull, 'pipe'], env: { ...process.env, ETCDCTL_API: '3' } });
      let stderr = '';
      child.stderr?.on('data', (data: Buffer) => { stderr += data.toString(); });
      child.once('error', reject);
      child.once('exit', (code) => (code === 0 ? resolve(-1) : reject(new Error(`etcdctl exited with ${code}: ${stderr.trim()}`))));
    });
  }
  const kv = new services.KV(endpoint, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1 });
  try {
    if (read === 'range') {
      return await new Promise<number>((resolve, reject) => {
        kv.makeUnaryRequest<PbMessage, number>('/etcdserverpb.KV/Range', (value) => services.KV.service.Range.requestSerialize(value), (bytes: Buffer) => bytes.length, prefixRequest(), (error, value) => (error ? reject(error) : resolve(value ?? 0)));
      });
    }
    if (read === 'stream') {
      return await new Promise<number>((resolve, reject) => {
        let bytes = 0;
        const call = kv.makeServerStreamRequest<PbMessage, number>('/etcdserverpb.KV/RangeStream', (value) => services.KV.service.RangeStream.requestSerialize(value), (data: Buffer) => data.length, prefixRequest());
        call.on('data', (length: number) => { bytes += length; });
        call.on('error', reject);
        call.on('end', () => resolve(bytes));
      });
    }
    throw new Error(`unknown read ${read} (range, stream, etcdctl)`);
  } finally {
    kv.close();
  }
}

async function measureRead(read: string, member: Member): Promise<ReadResult> {
  resetPeakRss(member.pid);
  const baseline = sampleProcess(member.pid);
  if (baseline === undefined) throw new Error('kvd is gone');
  let peak = baseline.rssBytes;
  const sampler = setInterval(() => {
    const sample = sampleProcess(member.pid);
    if (sample !== undefined) peak = Math.max(peak, sample.rssBytes, sample.peakRssBytes);
  }, SAMPLE_INTERVAL_MS);
  const started = performance.now();
  let responseBytes = 0;
  let error: string | undefined;
  try {
    responseBytes = await performRead(read, member.endpoint);
  } catch (caught: unknown) {
    error = caught instanceof Error ? caught.message : String(caught);
  } finally {
    clearInterval(sampler);
  }
  const after = sampleProcess(member.pid);
  if (after !== undefined) peak = Math.max(peak, after.peakRssBytes);
  else error = `${error ?? ''} (kvd died)`.trim();
  return { read, baselineRssBytes: baseline.rssBytes, peakRssBytes: peak, responseBytes, seconds: (performance.now() - started) / 1000, ...(error === undefined ? {} : { error }) };
}

async function measure(): Promise<void> {
  const kvd = option('kvd', DEFAULT_KVD);
  const keys = Number(option('keys', '1000000'));
  const valueBytes = Number(option('value-bytes', '256'));
  const reads = option('reads', 'range,stream,etcdctl').split(',');
  const dataDir = option('data-dir', join(tmpdir(), `kvd-range-memory-${keys}`));
  await mkdir(dataDir, { recursive: true });
  const ports = await portsFor(dataDir);
  process.stderr.write(`kvd ${kvd}, data ${dataDir}\n`);
  const loader = await startMember(kvd, dataDir, ports, 'kvd.log');
  try {
    const have = await countKeys(loader.endpoint);
    if (have < keys) {
      process.stderr.write(`loading ${keys} keys of ${valueBytes} bytes (have ${have})\n`);
      await load(loader.endpoint, keys, valueBytes);
    }
  } finally {
    await loader.stop();
  }
  const results: ReadResult[] = [];
  for (const read of reads) {
    const member = await startMember(kvd, dataDir, ports, 'kvd.log');
    try {
      const result = await measureRead(read, member);
      results.push(result);
      process.stderr.write(`${read}: ${JSON.stringify(result)}\n`);
    } finally {
      await member.stop();
    }
  }
  process.stdout.write(`\nkvd: ${kvd}\nkeys: ${keys} × ${valueBytes}-byte values\n\n`);
  process.stdout.write('| read | member RSS before (MiB) | member peak RSS (VmHWM, MiB) | response bytes | time (s) | error |\n|---|---|---|---|---|---|\n');
  for (const r of results) {
    process.stdout.write(`| ${r.read} | ${mb(r.baselineRssBytes)} | ${mb(r.peakRssBytes)} | ${r.responseBytes < 0 ? 'n/a' : r.responseBytes} | ${r.seconds.toFixed(1)} | ${r.error ?? ''} |\n`);
  }
}

/** Builds the unary response from the store at DIR/member/db both ways (see the module comment). */
async function encode(): Promise<void> {
  const dataDir = option('data-dir', '');
  const mode = option('mode', 'wire');
  if (dataDir === '') throw new Error('encode needs --data-dir');
  const store = await MvccStore.open({ path: join(dataDir, 'm1', 'member', 'db') });
  const request: RangeRequest = {
    key: Buffer.from('/k/'), rangeEnd: Buffer.from('/k0'), limit: 0, revision: 0, sortOrder: 'none', sortTarget: 'key', serializable: true,
    keysOnly: false, countOnly: false, minModRevision: 0, maxModRevision: 0, minCreateRevision: 0, maxCreateRevision: 0,
  };
  const header = { clusterId: 1n, memberId: 2n, revision: store.currentRevision, raftTerm: 2 };
  resetPeakRss(process.pid);
  const before = sampleProcess(process.pid);
  const started = performance.now();
  const cursor = store.openRange(request);
  let message: Buffer;
  try {
    if (mode === 'objects') {
      const kvs: KeyValue[] = [];
      for await (const page of cursor) for (const kv of page) kvs.push(kv);
      const { count, more } = cursor.summary();
      message = services.KV.service.Range.responseSerialize(encodeRangeResponse(header, { kvs, more, count }));
    } else {
      const parts: Buffer[] = [encodeRangeHeaderWire(header)];
      for await (const page of cursor) parts.push(encodeRangeKvsWire(page));
      const { count, more } = cursor.summary();
      parts.push(encodeRangeTailWire(more, count));
      message = new EncodedMessage(parts).take();
    }
  } finally {
    await cursor.return();
  }
  // What grpc-js does next: one more copy into the framed buffer.
  const framed = Buffer.allocUnsafe(message.length + 5);
  message.copy(framed, 5);
  const seconds = (performance.now() - started) / 1000;
  const after = sampleProcess(process.pid);
  await store.close();
  process.stdout.write(`${JSON.stringify({ mode, bytes: message.length, seconds, rssBeforeBytes: before?.rssBytes, peakRssBytes: after?.peakRssBytes })}\n`);
}

if (process.argv[2] === 'encode') await encode();
else await measure();

/**
 * Test harness for real kvd processes on loopback: free ports, temporary data dirs, start /
 * kill -9 / restart members, wait for conditions with deadlines (never fixed sleeps), and a thin
 * promise-based gRPC client over our own protos. Shared by the integration, compatibility and
 * fault tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createWriteStream, type WriteStream, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadServices } from '../../src/api/proto.js';

/** The member the tests run: the bundled `kvd` command (dist/bin/kvd.js, scripts/bundle.mjs), as users run it. */
export const KVD_BIN = fileURLToPath(new URL('../../bin/kvd.js', import.meta.url));

/**
 * Ports for test members come from below Linux's ephemeral range (32768–60999), so that no
 * socket's automatic port and no other process's `listen(0)` takes a member's port while it is
 * down for a restart (a restarted member then found another test's server on its port). Each
 * test process walks its own stripe of [20000, 32000), chosen by its pid, from a random start.
 */
const PORT_FROM = 20_000;
const PORT_TO = 32_000;
const PORT_STRIPES = 97;
let portCursor = Math.floor(Math.random() * Math.floor((PORT_TO - PORT_FROM) / PORT_STRIPES));

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** A port that was free a moment ago: the next free one of this process's stripe (else any free port). */
export async function freePort(): Promise<number> {
  const slots = Math.floor((PORT_TO - PORT_FROM) / PORT_STRIPES);
  for (let attempt = 0; attempt < slots; attempt++) {
    portCursor = (portCursor + 1) % slots;
    const port = PORT_FROM + (process.pid % PORT_STRIPES) + PORT_STRIPES * portCursor;
    if (await canListen(port)) return port;
  }
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Polls `check` until it returns a value other than undefined, or throws after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, options: { timeoutMs: number; intervalMs?: number }): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error: unknown) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 50));
  }
  throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${what}${lastError === undefined ? '' : ` (last error: ${String(lastError)})`}`);
}

export interface MemberProcess {
  readonly name: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly dataDir: string;
  readonly logPath: string;
  process: ChildProcess | undefined;
  readonly endpoint: string;
  /** `new` for the members the cluster started with; `existing` for members added at run time ({@link Cluster.planJoining}). */
  readonly initialClusterState: 'new' | 'existing';
  /** The --initial-cluster it starts with (a joining member's is set by its first start). */
  initialCluster: string;
  /** Exit code (or signal name) of its last process, once one has exited. */
  lastExit: number | string | undefined;
}

export interface ClusterOptions {
  readonly size: number;
  readonly snapshotCount?: number;
  readonly heartbeatMs?: number;
  readonly electionMs?: number;
  readonly extraArgs?: readonly string[];
  readonly token?: string;
  /** Extra environment of every member (e.g. KVD_TEST_FAILPOINTS); per member via startMember. */
  readonly env?: Readonly<Record<string, string>>;
  /** Runs before a member's first start (e.g. mounts a small file system on its data dir). */
  readonly prepare?: (member: MemberProcess) => Promise<void> | void;
  /** Scheme of the client and peer URLs (default http; https needs the TLS flags in memberArgs). */
  readonly clientScheme?: 'http' | 'https';
  readonly peerScheme?: 'http' | 'https';
  /** Extra arguments of one member (e.g. its own certificate files). */
  readonly memberArgs?: (member: MemberProcess) => readonly string[];
}

/** A cluster of real kvd processes. */
export class Cluster {
  readonly members: MemberProcess[];
  readonly root: string;
  readonly options: ClusterOptions;
  #logs = new Map<string, WriteStream>();
  readonly #initialCluster: string;

  private constructor(root: string, members: MemberProcess[], options: ClusterOptions, initialCluster: string) {
    this.#initialCluster = initialCluster;
    this.root = root;
    this.members = members;
    this.options = options;
  }

  static async start(options: ClusterOptions): Promise<Cluster> {
    const cluster = await Cluster.prepare(options);
    for (const member of cluster.members) await options.prepare?.(member);
    for (const member of cluster.members) cluster.startMember(member.name);
    return cluster;
  }

  /**
   * Picks ports and data dirs for a cluster without starting it (a test may fill the data dirs
   * first, e.g. by restoring a snapshot into them); start members with {@link startMember}.
   */
  static async prepare(options: ClusterOptions): Promise<Cluster> {
    const root = await mkdtemp(join(tmpdir(), 'kvd-it-'));
    const members: MemberProcess[] = [];
    for (let i = 0; i < options.size; i++) {
      const clientPort = await freePort();
      const peerPort = await freePort();
      const name = `m${i + 1}`;
      members.push({ name, clientPort, peerPort, dataDir: join(root, name), logPath: join(root, `${name}.log`), process: undefined, endpoint: `127.0.0.1:${clientPort}`, initialClusterState: 'new', initialCluster: '', lastExit: undefined });
    }
    const initialCluster = members.map((m) => `${m.name}=${options.peerScheme ?? 'http'}://127.0.0.1:${m.peerPort}`).join(',');
    for (const member of members) member.initialCluster = initialCluster;
    return new Cluster(root, members, options, initialCluster);
  }

  /** The --initial-cluster value the cluster was created with. */
  get initialCluster(): string {
    return this.#initialCluster;
  }

  get endpoints(): string[] { return this.members.map((m) => m.endpoint); }

  member(name: string): MemberProcess {
    const member = this.members.find((m) => m.name === name);
    if (member === undefined) throw new Error(`no member ${name}`);
    return member;
  }

  /**
   * Reserves ports, a data dir and a log for a member that will join the running cluster
   * (`--initial-cluster-state existing`) once it has been added (`member add` with its
   * {@link peerUrl}); start it with {@link startMember} and the --initial-cluster the add printed.
   */
  async planJoining(name: string): Promise<MemberProcess> {
    if (this.members.some((m) => m.name === name)) throw new Error(`member ${name} exists`);
    const clientPort = await freePort();
    const peerPort = await freePort();
    const member: MemberProcess = { name, clientPort, peerPort, dataDir: join(this.root, name), logPath: join(this.root, `${name}.log`), process: undefined, endpoint: `127.0.0.1:${clientPort}`, initialClusterState: 'existing', initialCluster: '', lastExit: undefined };
    this.members.push(member);
    return member;
  }

  /** The peer URL of a member (what `member add --peer-urls` takes). */
  peerUrl(name: string): string {
    return `${this.options.peerScheme ?? 'http'}://127.0.0.1:${this.member(name).peerPort}`;
  }

  /**
   * Starts (or restarts, with the same command line) a member process. A joining member's first
   * start needs `initialCluster` (what `member add` printed as ETCD_INITIAL_CLUSTER).
   */
  startMember(name: string, options: { env?: Readonly<Record<string, string>>; initialCluster?: string; extraArgs?: readonly string[] } = {}): void {
    const member = this.member(name);
    if (member.process !== undefined) throw new Error(`${name} is running`);
    if (options.initialCluster !== undefined) member.initialCluster = options.initialCluster;
    if (member.initialCluster === '') throw new Error(`${name} joins a running cluster: give its --initial-cluster`);
    const args = [
      KVD_BIN,
      '--name', member.name,
      '--data-dir', member.dataDir,
      '--listen-client-urls', `${this.options.clientScheme ?? 'http'}://127.0.0.1:${member.clientPort}`,
      '--advertise-client-urls', `${this.options.clientScheme ?? 'http'}://127.0.0.1:${member.clientPort}`,
      '--listen-peer-urls', `${this.options.peerScheme ?? 'http'}://127.0.0.1:${member.peerPort}`,
      '--initial-advertise-peer-urls', `${this.options.peerScheme ?? 'http'}://127.0.0.1:${member.peerPort}`,
      '--initial-cluster', member.initialCluster,
      '--initial-cluster-token', this.options.token ?? 'kvd-test',
      '--initial-cluster-state', member.initialClusterState,
      '--heartbeat-interval', String(this.options.heartbeatMs ?? 50),
      '--election-timeout', String(this.options.electionMs ?? 500),
      '--snapshot-count', String(this.options.snapshotCount ?? 100_000),
      '--log-level', 'info',
      ...(this.options.extraArgs ?? []),
      ...(options.extraArgs ?? []),
      ...(this.options.memberArgs?.(member) ?? []),
    ];
    // Front-end processes unless a test picks its mode: kvd's default on a 2-core machine is
    // --frontends 0, and the tests must cover the front-ends as well (KVD_TEST_FRONTENDS overrides).
    if (!args.includes('--frontends')) args.push('--frontends', process.env.KVD_TEST_FRONTENDS ?? '2');
    let log = this.#logs.get(name);
    if (log === undefined) {
      log = createWriteStream(member.logPath, { flags: 'a' });
      this.#logs.set(name, log);
    }
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...this.options.env, ...options.env } });
    child.stdout?.pipe(log, { end: false });
    child.stderr?.pipe(log, { end: false });
    child.on('exit', (code, signal) => {
      member.lastExit = code ?? signal ?? 'unknown';
      if (member.process === child) member.process = undefined;
    });
    member.process = child;
  }

  /** Sends `signal` and waits for the process to exit. */
  async kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const member = this.member(name);
    const child = member.process;
    if (child === undefined) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
    member.process = undefined;
  }

  /**
   * Waits until the member's process exits by itself; resolves with its exit code (or signal
   * name). Resolves at once with the last exit if no process runs. Throws after `timeoutMs`.
   */
  async waitForExit(name: string, options: { timeoutMs: number }): Promise<number | string> {
    const member = this.member(name);
    const child = member.process;
    if (child === undefined) {
      if (member.lastExit === undefined) throw new Error(`${name} was never started`);
      return member.lastExit;
    }
    let timer: NodeJS.Timeout | undefined;
    const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${name} did not exit within ${options.timeoutMs} ms`)), options.timeoutMs);
    });
    try {
      return await Promise.race([exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The log of a member (for failure messages). */
  log(name: string): string {
    try {
      return readFileSync(this.member(name).logPath, 'utf8');
    } catch {
      return '';
    }
  }

  /** The structured log lines of a member (JSON lines; other lines are skipped). */
  logEvents(name: string): Array<Record<string, unknown>> {
    const events: Array<Record<string, unknown>> = [];
    for (const line of this.log(name).split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        events.push(JSON.parse(line) as Record<string, unknown>);
      } catch (error: unknown) {
        void error; // a line cut by a kill -9: not an event
      }
    }
    return events;
  }

  /**
   * Stops every member (SIGTERM, then SIGKILL after 5 s) and removes the data dirs and logs,
   * unless `keepData` or the environment variable KVD_TEST_KEEP_DATA is set (for post-mortems:
   * the root is then named on stderr).
   */
  async stop(options: { keepData?: boolean } = {}): Promise<void> {
    await Promise.all(this.members.map(async (member) => {
      const child = member.process;
      if (child === undefined) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }));
    for (const log of this.#logs.values()) log.end();
    closeClients();
    if (process.env.KVD_TEST_KEEP_DATA !== undefined) process.stderr.write(`kept the data dirs and logs of a test cluster in ${this.root}\n`);
    else if (options.keepData !== true) await rm(this.root, { recursive: true, force: true });
  }

  /**
   * Waits until every running member reports the same leader; returns the leader's member name.
   * On a timeout the error names each member's state and the end of its log (the logs go with
   * the cluster's root when the test stops it). The default wait is 30 s: a fresh 3-member
   * cluster with front-ends is nine Node processes loading their modules, and two of them
   * started at once on this 2-core machine agreed on a leader after 11.7–12.6 s, 14.2–16.1 s
   * with four busy loops beside them (two compat tests once timed out at 15 s in a full run).
   */
  async waitForLeader(options: { timeoutMs?: number } = {}): Promise<string> {
    return this.#leaderAgreed(options).catch((error: unknown) => {
      throw new Error(`${error instanceof Error ? error.message : String(error)}\n${this.describe()}`);
    });
  }

  /** Each member's process state and the last lines of its log (for failure messages). */
  describe(lines = 8): string {
    return this.members.map((member) => {
      const state = member.process !== undefined ? `running (pid ${member.process.pid})` : member.lastExit === undefined ? 'not started' : `exited (${member.lastExit})`;
      const tail = this.log(member.name).trimEnd().split('\n').slice(-lines).map((line) => `    ${line.length > 300 ? `${line.slice(0, 300)}…` : line}`).join('\n');
      return `  ${member.name} at ${member.endpoint}: ${state}\n${tail}`;
    }).join('\n');
  }

  #leaderAgreed(options: { timeoutMs?: number }): Promise<string> {
    return waitFor('a leader agreed by every running member', async () => {
      const running = this.members.filter((m) => m.process !== undefined);
      const statuses = await Promise.all(running.map((m) => call<StatusResponse>(m.endpoint, 'Maintenance', 'Status', {}, { timeoutMs: 1000 })));
      const leaders = new Set(statuses.map((s) => s.leader));
      if (leaders.size !== 1 || statuses[0].leader === '0') return undefined;
      const leaderId = statuses[0].leader;
      const index = statuses.findIndex((s) => s.header.member_id === leaderId);
      return index >= 0 ? running[index].name : undefined;
    }, { timeoutMs: options.timeoutMs ?? 30_000, intervalMs: 50 });
  }
}

// ───────────────────────────── a thin gRPC client ─────────────────────────────

export interface Header { cluster_id: string; member_id: string; revision: string; raft_term: string }
export interface KeyValueJs { key: Buffer; create_revision: string; mod_revision: string; version: string; value: Buffer; lease: string }
export interface RangeResponseJs { header: Header; kvs: KeyValueJs[]; more: boolean; count: string }
export interface PutResponseJs { header: Header; prev_kv: KeyValueJs | null }
export interface StatusResponse { header: Header; version: string; dbSize: string; leader: string; raftIndex: string; raftTerm: string; raftAppliedIndex: string; errors: string[]; isLearner?: boolean }

const clients = new Map<string, grpc.Client>();

function clientFor(endpoint: string, service: 'KV' | 'Maintenance' | 'Cluster' | 'Lease' | 'Watch'): grpc.Client {
  const key = `${service}@${endpoint}`;
  let client = clients.get(key);
  if (client === undefined) {
    const services = loadServices();
    client = new services[service](endpoint, grpc.credentials.createInsecure());
    clients.set(key, client);
  }
  return client;
}

/** Closes every cached client. */
export function closeClients(): void {
  for (const client of clients.values()) client.close();
  clients.clear();
}

/** Calls a unary RPC; rejects with the grpc ServiceError (code + details). */
export function call<T>(endpoint: string, service: 'KV' | 'Maintenance' | 'Cluster' | 'Lease', method: string, request: object, options: { timeoutMs?: number } = {}): Promise<T> {
  const client = clientFor(endpoint, service) as unknown as Record<string, (req: object, opts: grpc.CallOptions, cb: (error: grpc.ServiceError | null, response: T) => void) => void>;
  return new Promise<T>((resolve, reject) => {
    client[method](request, { deadline: Date.now() + (options.timeoutMs ?? 5000) }, (error, response) => {
      if (error !== null) reject(error);
      else resolve(response);
    });
  });
}

export function put(endpoint: string, key: string, value: string, extra: object = {}): Promise<PutResponseJs> {
  return call<PutResponseJs>(endpoint, 'KV', 'Put', { key: Buffer.from(key), value: Buffer.from(value), ...extra });
}

export function get(endpoint: string, key: string, extra: object = {}): Promise<RangeResponseJs> {
  return call<RangeResponseJs>(endpoint, 'KV', 'Range', { key: Buffer.from(key), ...extra });
}

/** The prefix range end of `prefix` (last byte + 1). */
export function prefixEnd(prefix: string): Buffer {
  const bytes = Buffer.from(prefix);
  for (let i = bytes.length - 1; i >= 0; i--) {
    if (bytes[i] < 0xff) {
      const end = Buffer.from(bytes.subarray(0, i + 1));
      end[i] += 1;
      return end;
    }
  }
  return Buffer.from([0]);
}

/** Opens a watch stream (the caller writes requests and reads responses). */
export function watchStream(endpoint: string): grpc.ClientDuplexStream<object, { header: Header; watch_id: string; created: boolean; canceled: boolean; compact_revision: string; events: Array<{ type: string; kv: KeyValueJs; prev_kv: KeyValueJs | null }> }> {
  const client = clientFor(endpoint, 'Watch') as unknown as { Watch: () => grpc.ClientDuplexStream<object, never> };
  return client.Watch();
}

/**
 * Starting and stopping the clusters under test: 3 fresh kvd members or 3 fresh etcd members on
 * loopback (free ports, a temp dir each), with the same heartbeat / election settings, waiting
 * with a deadline until every member agrees on a leader. kvd members may run under extra node
 * flags (for --cpu-prof). Each member's PID is exposed for /proc readings.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { loadServices } from '../../src/api/proto.js';

/**
 * Path of tsc's kvd entry (<outDir>/cli/kvd.js), not the bundle the `kvd` command runs
 * (dist/bin/kvd.js): the same code once started, and CPU profiles (`--node-args --cpu-prof`) name
 * the source files instead of one bundle.
 */
export const KVD_BIN = fileURLToPath(new URL('../../cli/kvd.js', import.meta.url));
/** The etcd binary (override with KVD_BENCH_ETCD). */
export const ETCD_BIN = process.env.KVD_BENCH_ETCD ?? '/usr/bin/etcd';
/** The etcdctl binary (override with KVD_BENCH_ETCDCTL). */
export const ETCDCTL_BIN = process.env.KVD_BENCH_ETCDCTL ?? '/usr/bin/etcdctl';

/** Which server a cluster runs. */
export type SystemName = 'kvd' | 'etcd';

/** One running member. */
export interface BenchMember {
  readonly name: string;
  /** host:port of the client URL. */
  readonly endpoint: string;
  readonly pid: number;
}

/** A running cluster; stop() ends every member (SIGTERM, SIGKILL after 10 s) and removes its data. */
export interface BenchCluster {
  readonly system: SystemName;
  readonly members: readonly BenchMember[];
  readonly root: string;
  /** The member that is leader now (asks every member's Maintenance.Status). */
  leader(): Promise<BenchMember>;
  stop(): Promise<void>;
}

/** Options for {@link startCluster}. */
export interface StartClusterOptions {
  readonly system: SystemName;
  /** Members (default 3). */
  readonly size?: number;
  /** Extra node flags for kvd members, e.g. ['--cpu-prof', '--cpu-prof-dir=/tmp/p']. */
  readonly nodeArgs?: readonly string[];
  /** Keep the data dir and logs after stop() (default: remove). */
  readonly keep?: 'keep' | 'remove';
  /** Extra kvd flags, e.g. ['--frontends', '2']. */
  readonly kvdArgs?: readonly string[];
  /** Extra kvd flags of one member (given its name and the cluster's root directory). */
  readonly kvdArgsFor?: (name: string, root: string) => readonly string[];
}

/** Whether the etcd binary exists. */
export function haveEtcd(): boolean { return existsSync(ETCD_BIN); }

/** A port that was free a moment ago (listen on 0, read it, close). */
export async function freePort(): Promise<number> {
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

/**
 * Starts a fresh cluster and resolves once all members agree on a leader (30 s deadline). Tried
 * twice, with fresh ports: a port found free can be taken before its member binds it (another
 * member's outbound connection may get it as its source port). A failed attempt keeps its data
 * directory and logs (named in the message on stderr).
 */
export async function startCluster(options: StartClusterOptions): Promise<BenchCluster> {
  try {
    return await startClusterOnce(options);
  } catch (error: unknown) {
    process.stderr.write(`${String(error)}; trying once more with fresh ports\n`);
    return startClusterOnce(options);
  }
}

async function startClusterOnce(options: StartClusterOptions): Promise<BenchCluster> {
  const size = options.size ?? 3;
  const root = await mkdtemp(join(tmpdir(), `kvd-bench-${options.system}-`));
  const plan: Array<{ name: string; client: number; peer: number }> = [];
  for (let i = 0; i < size; i++) plan.push({ name: `${options.system === 'kvd' ? 'k' : 'e'}${i + 1}`, client: await freePort(), peer: await freePort() });
  const initial = plan.map((m) => `${m.name}=http://127.0.0.1:${m.peer}`).join(',');
  const children: ChildProcess[] = [];
  const members: BenchMember[] = plan.map((m) => {
    const flags = [
      '--name', m.name,
      '--data-dir', join(root, m.name),
      '--listen-client-urls', `http://127.0.0.1:${m.client}`,
      '--advertise-client-urls', `http://127.0.0.1:${m.client}`,
      '--listen-peer-urls', `http://127.0.0.1:${m.peer}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${m.peer}`,
      '--initial-cluster', initial,
      '--initial-cluster-token', `bench-${options.system}`,
      '--initial-cluster-state', 'new',
      '--heartbeat-interval', '100',
      '--election-timeout', '1000',
      '--snapshot-count', '100000',
      '--log-level', 'warn',
      ...(options.system === 'kvd' ? options.kvdArgs ?? [] : []),
      ...(options.system === 'kvd' ? options.kvdArgsFor?.(m.name, root) ?? [] : []),
    ];
    const [command, args] = options.system === 'kvd'
      ? [process.execPath, [...(options.nodeArgs ?? []), KVD_BIN, ...flags]]
      : [ETCD_BIN, flags];
    const log = createWriteStream(join(root, `${m.name}.log`));
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], });
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    children.push(child);
    if (child.pid === undefined) throw new Error(`cannot start ${command}`);
    return { name: m.name, endpoint: `127.0.0.1:${m.client}`, pid: child.pid };
  });
  const statusClients = members.map((m) => new (loadServices().Maintenance)(m.endpoint, grpc.credentials.createInsecure()));
  const status = (i: number): Promise<{ leader: string; header: { member_id: string } }> => new Promise((resolve, reject) => {
    (statusClients[i] as unknown as Record<string, (req: object, opts: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: { leader: string; header: { member_id: string } }) => void) => void>)
      .Status({}, { deadline: Date.now() + 2000 }, (error, response) => (error === null ? resolve(response) : reject(error)));
  });
  const leader = async (): Promise<BenchMember> => {
    const statuses = await Promise.all(members.map((_, i) => status(i)));
    const leaders = new Set(statuses.map((s) => s.leader));
    const leaderId = statuses[0].leader;
    const index = statuses.findIndex((s) => s.header.member_id === leaderId);
    if (leaders.size !== 1 || leaderId === '0' || index < 0) throw new Error(`no agreed leader (${[...leaders].join(',')})`);
    return members[index];
  };
  const stop = async (keepFiles = options.keep === 'keep'): Promise<void> => {
    for (const client of statusClients) client.close();
    await Promise.all(children.map((child) => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) { resolve(); return; }
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => { clearTimeout(timer); resolve(); });
      child.kill('SIGTERM');
    })));
    if (!keepFiles) await rm(root, { recursive: true, force: true });
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      await leader();
      break;
    } catch (error: unknown) {
      const dead = children.find((c) => c.exitCode !== null);
      if (dead !== undefined || Date.now() > deadline) {
        await stop(true); // the logs say why
        throw new Error(`${options.system} cluster did not elect a leader (${String(error)}); logs in ${root}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return { system: options.system, members, root, leader, stop };
}

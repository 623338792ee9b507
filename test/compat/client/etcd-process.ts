// Goal: start real etcd processes (single member or a small cluster) on loopback for
// compatibility tests, and stop them reliably. Method: pick free ports by listening on port 0,
// use a fresh temp data dir, spawn /usr/bin/etcd, wait for /health with a deadline, and kill
// exactly the PIDs we spawned on stop.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../integration/harness.js';

/** Path of the etcd binary used by the tests. */
export const ETCD_BINARY = process.env.ETCD_BINARY ?? '/usr/bin/etcd';

/** Whether etcd is installed; tests skip themselves when it is not. */
export const etcdAvailable = existsSync(ETCD_BINARY);

/** Startup deadline for a member to report healthy. */
const HEALTH_DEADLINE_MS = 20_000;

export { freePort };

/** Options of {@link startEtcd} / {@link startEtcdCluster}. */
export interface EtcdOptions {
  /** Extra etcd flags for every member. */
  readonly extraArgs?: readonly string[];
}

/** One running member. */
export interface EtcdMember {
  readonly name: string;
  /** `127.0.0.1:port` of the client URL. */
  readonly endpoint: string;
  /** Kills the member (SIGKILL) and waits for it to exit. */
  kill(): Promise<void>;
  /** Whether the process is running. */
  readonly running: boolean;
}

/** A running etcd (single member or cluster). */
export interface EtcdProcess {
  /** Client endpoints (`127.0.0.1:port`). */
  readonly endpoints: string[];
  /** The members, in start order. */
  readonly members: readonly EtcdMember[];
  /** Kills every member still running and removes the data dirs. */
  stop(): Promise<void>;
}

interface MemberPlan {
  name: string;
  clientPort: number;
  peerPort: number;
  dataDir: string;
}

function waitExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function waitHealthy(endpoint: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + HEALTH_DEADLINE_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`etcd exited with ${child.exitCode}: ${log().slice(-2000)}`);
    try {
      const response = await fetch(`http://${endpoint}/health`, { signal: AbortSignal.timeout(1000) });
      const body = (await response.json()) as { health?: string };
      if (body.health === 'true') return;
    } catch (error: unknown) {
      void error; // Not up yet: poll again until the deadline.
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`etcd at ${endpoint} not healthy within ${HEALTH_DEADLINE_MS} ms: ${log().slice(-2000)}`);
}

/** Starts an etcd cluster of `size` members on loopback and waits until all are healthy. */
export async function startEtcdCluster(size: number, options: EtcdOptions = {}): Promise<EtcdProcess> {
  const root = await mkdtemp(join(tmpdir(), 'kvd-client-etcd-'));
  const plans: MemberPlan[] = [];
  for (let index = 0; index < size; index += 1) {
    plans.push({ name: `m${index}`, clientPort: await freePort(), peerPort: await freePort(), dataDir: join(root, `m${index}`) });
  }
  const initialCluster = plans.map((plan) => `${plan.name}=http://127.0.0.1:${plan.peerPort}`).join(',');
  const children: ChildProcess[] = [];
  const logs: string[] = plans.map(() => '');
  const members: EtcdMember[] = plans.map((plan, index) => {
    const child = spawn(
      ETCD_BINARY,
      [
        '--name', plan.name,
        '--data-dir', plan.dataDir,
        '--listen-client-urls', `http://127.0.0.1:${plan.clientPort}`,
        '--advertise-client-urls', `http://127.0.0.1:${plan.clientPort}`,
        '--listen-peer-urls', `http://127.0.0.1:${plan.peerPort}`,
        '--initial-advertise-peer-urls', `http://127.0.0.1:${plan.peerPort}`,
        '--initial-cluster', initialCluster,
        '--initial-cluster-state', 'new',
        '--heartbeat-interval', '50',
        '--election-timeout', '500',
        '--log-level', 'error',
        ...(options.extraArgs ?? []),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child.stdout?.on('data', (chunk: Buffer) => (logs[index] = (logs[index] + chunk.toString()).slice(-10_000)));
    child.stderr?.on('data', (chunk: Buffer) => (logs[index] = (logs[index] + chunk.toString()).slice(-10_000)));
    children.push(child);
    return {
      name: plan.name,
      endpoint: `127.0.0.1:${plan.clientPort}`,
      get running(): boolean {
        return child.exitCode === null && child.signalCode === null;
      },
      async kill(): Promise<void> {
        if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
        await waitExit(child);
      },
    };
  });
  const stop = async (): Promise<void> => {
    await Promise.all(members.map((member) => member.kill()));
    await rm(root, { recursive: true, force: true });
  };
  try {
    await Promise.all(members.map((member, index) => waitHealthy(member.endpoint, children[index], () => logs[index])));
  } catch (error: unknown) {
    await stop();
    throw error;
  }
  return { endpoints: members.map((member) => member.endpoint), members, stop };
}

/** Starts a single-member etcd on loopback and waits until it is healthy. */
export function startEtcd(options: EtcdOptions = {}): Promise<EtcdProcess> {
  return startEtcdCluster(1, options);
}

// Goal: one way for the membership compatibility tests to get a fresh 3-member cluster of
// real etcd or real kvd processes, to start a member that joins it (`--initial-cluster-state
// existing`, the settings `member add` printed), and to wait until membership changes are
// accepted. Method: etcd through test/compat/client/etcd-process.ts, kvd through the
// integration harness; joining members are spawned here on free loopback ports in temporary
// data dirs, their output kept for failure messages, and only the PIDs spawned here are killed.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnhealthyClusterError, type Client } from '../../../src/client/index.js';
import { ETCD_BINARY, etcdAvailable, freePort, startEtcdCluster } from '../client/etcd-process.js';
import { Cluster, KVD_BIN } from '../../integration/harness.js';

/** Which server a membership test runs against. */
export type TargetKind = 'etcd' | 'kvd';

/** Why a membership test against `kind` cannot run here, or false. */
export function membershipSkip(kind: TargetKind): string | false {
  if (kind === 'kvd') return false;
  return etcdAvailable ? false : `etcd is not installed (${ETCD_BINARY})`;
}

/** One of the cluster's original members. */
export interface TargetMember {
  readonly name: string;
  /** `127.0.0.1:port` of its client URL. */
  readonly endpoint: string;
  /** Kills the process (SIGKILL) and waits for it to exit. */
  kill(): Promise<void>;
}

/** A member started by {@link MembershipTarget.startJoining}. */
export interface JoiningMember {
  readonly name: string;
  /** `127.0.0.1:port` of its client URL. */
  readonly endpoint: string;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  readonly exited: Promise<number | string>;
  /** Whether the process is still running. */
  readonly running: boolean;
  /** The process's recent output (for failure messages). */
  log(): string;
  /** Kills the process (SIGKILL) if it runs and waits for it to exit. */
  kill(): Promise<void>;
}

/** What {@link MembershipTarget.startJoining} starts. */
export interface JoinPlan {
  readonly name: string;
  readonly peerPort: number;
  readonly clientPort: number;
  /** The ETCD_INITIAL_CLUSTER value to start with. */
  readonly initialCluster: string;
}

/** A running 3-member cluster of one kind. */
export interface MembershipTarget {
  readonly kind: TargetKind;
  readonly endpoints: string[];
  readonly members: readonly TargetMember[];
  /** Starts a member joining the cluster with `--initial-cluster-state existing`. */
  startJoining(plan: JoinPlan): JoiningMember;
  /** Kills every process started for the target and removes the data dirs. */
  stop(): Promise<void>;
}

/** Starts a fresh 3-member cluster of `kind`. */
export async function startMembershipTarget(kind: TargetKind): Promise<MembershipTarget> {
  const root = await mkdtemp(join(tmpdir(), `kvd-membership-${kind}-`));
  const joined: JoiningMember[] = [];
  let endpoints: string[];
  let members: TargetMember[];
  let stopCluster: () => Promise<void>;
  if (kind === 'etcd') {
    const etcd = await startEtcdCluster(3);
    endpoints = etcd.endpoints;
    members = etcd.members.map((member) => ({ name: member.name, endpoint: member.endpoint, kill: () => member.kill() }));
    stopCluster = () => etcd.stop();
  } else {
    const cluster = await Cluster.start({ size: 3 });
    await cluster.waitForLeader({ timeoutMs: 30_000 });
    endpoints = cluster.endpoints;
    members = cluster.members.map((member) => ({ name: member.name, endpoint: member.endpoint, kill: () => cluster.kill(member.name, 'SIGKILL') }));
    stopCluster = () => cluster.stop();
  }
  return {
    kind,
    endpoints,
    members,
    startJoining(plan) {
      const member = spawnJoining(kind, plan, join(root, `${plan.name}-${joined.length}`));
      joined.push(member);
      return member;
    },
    async stop() {
      await Promise.all(joined.map((member) => member.kill()));
      await stopCluster();
      await rm(root, { recursive: true, force: true });
    },
  };
}

function spawnJoining(kind: TargetKind, plan: JoinPlan, dataDir: string): JoiningMember {
  const flags = [
    '--name', plan.name,
    '--data-dir', dataDir,
    '--listen-client-urls', `http://127.0.0.1:${plan.clientPort}`,
    '--advertise-client-urls', `http://127.0.0.1:${plan.clientPort}`,
    '--listen-peer-urls', `http://127.0.0.1:${plan.peerPort}`,
    '--initial-advertise-peer-urls', `http://127.0.0.1:${plan.peerPort}`,
    '--initial-cluster', plan.initialCluster,
    '--initial-cluster-state', 'existing',
    '--heartbeat-interval', '50',
    '--election-timeout', '500',
  ];
  const child: ChildProcess =
    kind === 'etcd'
      ? spawn(ETCD_BINARY, [...flags, '--log-level', 'error'], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn(process.execPath, [KVD_BIN, ...flags, '--initial-cluster-token', 'kvd-test', '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    name: plan.name,
    endpoint: `127.0.0.1:${plan.clientPort}`,
    exited,
    get running() {
      return running();
    },
    log: () => output,
    async kill() {
      if (running() && child.pid !== undefined) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Two free loopback ports for a joining member. */
export async function joinPorts(): Promise<{ peerPort: number; clientPort: number }> {
  return { peerPort: await freePort(), clientPort: await freePort() };
}

/**
 * Waits until the cluster accepts membership changes: etcd refuses them with "unhealthy
 * cluster" until every voter has been connected for about 5 s after start. Probes by adding a
 * learner (on a port nobody listens on) and removing it again; throws after `timeoutMs`.
 */
export async function waitUntilReconfigurable(client: Client, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const probe = `http://127.0.0.1:${await freePort()}`;
  for (;;) {
    try {
      const added = await client.cluster.memberAdd({ peerUrls: [probe], isLearner: true });
      await client.cluster.memberRemove(added.member.id);
      return;
    } catch (error: unknown) {
      if (!(error instanceof UnhealthyClusterError) || Date.now() > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * Waits until the learner at `endpoint` has applied everything the leader had when asked (the
 * condition etcd checks before a promotion, roughly); throws after `timeoutMs`.
 */
export async function waitCaughtUp(client: Client, endpoint: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no status yet';
  while (Date.now() < deadline) {
    try {
      const learner = await client.cluster.status(endpoint, { timeoutMs: 1000 });
      const members = await client.cluster.memberList();
      const leaderUrl = members.members.find((member) => member.id === learner.leader)?.clientUrls[0];
      if (leaderUrl !== undefined) {
        const leader = await client.cluster.status(leaderUrl, { timeoutMs: 1000 });
        const again = await client.cluster.status(endpoint, { timeoutMs: 1000 });
        if (again.raftAppliedIndex >= leader.raftIndex) return;
        last = `applied ${again.raftAppliedIndex} of ${leader.raftIndex}`;
      }
    } catch (error: unknown) {
      last = error instanceof Error ? error.message : String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${endpoint} did not catch up within ${timeoutMs} ms (${last})`);
}

// Goal: what the membership integration tests share: a writer that keeps a cluster busy and
// remembers exactly which writes were acknowledged, the end-of-test checks (every acknowledged
// write readable, one HashKV at one revision on every member), adding a member as an operator
// does (retrying etcd's "unhealthy cluster" until a deadline, then starting the process with the
// ETCD_INITIAL_CLUSTER the add implies), and waiting until a member serves.
// Method: writes and checks go over raw gRPC (harness.ts) so each write is sent exactly once to
// a chosen member and its outcome is what that member answered; membership changes go through
// the TypeScript client (src/client), the API an operator's tooling would use. Every wait has a
// deadline; nothing sleeps a fixed time to let something happen.
import assert from 'node:assert/strict';
import { NoLeaderError, startSettings, UnhealthyClusterError, type Client, type Member, type MemberAddResult } from '../../src/client/index.js';
import { call, get, prefixEnd, waitFor, type Cluster, type PutResponseJs, type RangeResponseJs, type StatusResponse } from './harness.js';

/** Deadline of one write of the {@link Writer}. */
const WRITE_TIMEOUT_MS = 3_000;
/** Pause after a failed write, so a member that refuses at once is not hammered. */
const WRITE_FAILURE_PAUSE_MS = 25;
/** Distinct failure reasons a {@link Writer} counts (more are counted under "other"). */
const FAILURE_REASONS_MAX = 32;

/** What a {@link Writer} did. */
export interface WriterReport {
  /** key → value of every write a member acknowledged. */
  readonly acked: ReadonlyMap<string, string>;
  readonly attempted: number;
  /** Failure reason (gRPC details) → count. */
  readonly failures: ReadonlyMap<string, number>;
}

/** Default pace of a {@link Writer}, over all its loops. */
const WRITES_PER_SECOND_DEFAULT = 150;

/**
 * Writes unique keys `<prefix><n>` in `loops` concurrent loops, each write to the next endpoint
 * in turn, until stopped, at most `writesPerSecond` writes started per second (default 150: a
 * steady load that leaves a shared 2-core machine room for members to catch up; in a 5-member
 * cluster a majority may otherwise outrun a new member for good). A write counts as
 * acknowledged only when a member answered it with success; failed writes may or may not have
 * been applied and are not checked.
 */
export class Writer {
  readonly #prefix: string;
  #endpoints: string[];
  #next = 0;
  /** When the next write may start (performance.now() ms). */
  #nextStartMs = 0;
  readonly #intervalMs: number;
  #stopping = false;
  readonly #acked = new Map<string, string>();
  readonly #failures = new Map<string, number>();
  readonly #loops: Promise<void>[] = [];

  constructor(options: { prefix: string; endpoints: readonly string[]; loops: number; writesPerSecond?: number }) {
    this.#prefix = options.prefix;
    this.#intervalMs = 1000 / (options.writesPerSecond ?? WRITES_PER_SECOND_DEFAULT);
    this.#endpoints = [...options.endpoints];
    for (let i = 0; i < options.loops; i++) this.#loops.push(this.#loop());
  }

  /** The members to write through from now on. */
  setEndpoints(endpoints: readonly string[]): void {
    assert.ok(endpoints.length > 0, 'a writer needs an endpoint');
    this.#endpoints = [...endpoints];
  }

  /** Acknowledged writes so far. */
  get ackedCount(): number {
    return this.#acked.size;
  }

  /** Waits until `count` more writes than now have been acknowledged (the cluster takes writes). */
  async waitForProgress(count: number, timeoutMs: number): Promise<void> {
    const target = this.#acked.size + count;
    await waitFor(`${count} more acknowledged writes (failures so far: ${this.#describeFailures()})`, () => (this.#acked.size >= target ? true : undefined), { timeoutMs, intervalMs: 20 });
  }

  /** Stops the loops (in-flight writes finish or time out) and reports. */
  async stop(): Promise<WriterReport> {
    this.#stopping = true;
    await Promise.all(this.#loops);
    return { acked: this.#acked, attempted: this.#next, failures: this.#failures };
  }

  #describeFailures(): string {
    return [...this.#failures].map(([reason, count]) => `${count}× ${reason}`).join('; ') || 'none';
  }

  async #loop(): Promise<void> {
    while (!this.#stopping) {
      const now = performance.now();
      const startMs = Math.max(now, this.#nextStartMs);
      this.#nextStartMs = startMs + this.#intervalMs;
      if (startMs > now) await new Promise((resolve) => setTimeout(resolve, startMs - now)); // pacing, not waiting for a condition
      if (this.#stopping) break;
      const n = this.#next++;
      const endpoint = this.#endpoints[n % this.#endpoints.length];
      const key = `${this.#prefix}${String(n).padStart(6, '0')}`;
      const value = `v${n}@${endpoint}`;
      try {
        await call<PutResponseJs>(endpoint, 'KV', 'Put', { key: Buffer.from(key), value: Buffer.from(value) }, { timeoutMs: WRITE_TIMEOUT_MS });
        this.#acked.set(key, value);
      } catch (error: unknown) {
        const details = (error as { details?: unknown }).details;
        const reason = typeof details === 'string' && details !== '' ? details : String(error);
        const counted = this.#failures.has(reason) || this.#failures.size < FAILURE_REASONS_MAX ? reason : 'other';
        this.#failures.set(counted, (this.#failures.get(counted) ?? 0) + 1);
        await new Promise((resolve) => setTimeout(resolve, WRITE_FAILURE_PAUSE_MS));
      }
    }
  }
}

/** Every acknowledged write reads back with its value through `endpoint` (one linearizable range). */
export async function assertAckedReadable(endpoint: string, prefix: string, report: WriterReport): Promise<void> {
  const range = await call<RangeResponseJs>(endpoint, 'KV', 'Range', { key: Buffer.from(prefix), range_end: prefixEnd(prefix) }, { timeoutMs: 10_000 });
  const stored = new Map(range.kvs.map((kv) => [kv.key.toString(), kv.value.toString()]));
  const lost = [...report.acked].filter(([key, value]) => stored.get(key) !== value);
  assert.deepEqual(lost.slice(0, 10), [], `${lost.length} of ${report.acked.size} acknowledged writes are missing or wrong through ${endpoint}`);
}

/** The revision a member has applied (a serializable read answers from its own state). */
export async function appliedRevision(endpoint: string): Promise<bigint> {
  return BigInt((await get(endpoint, 'any', { serializable: true })).header.revision);
}

/**
 * Waits until every named member has applied the leader's current revision, then asserts that
 * HashKV at that one revision is the same on all of them; returns the revision.
 */
export async function assertSameHashKv(cluster: Cluster, names: readonly string[]): Promise<bigint> {
  const leader = await cluster.waitForLeader({ timeoutMs: 20_000 });
  const revision = await appliedRevision(cluster.member(leader).endpoint);
  for (const name of names) {
    const { endpoint } = cluster.member(name);
    await waitFor(`${name} to apply revision ${revision}`, async () => ((await appliedRevision(endpoint)) >= revision ? true : undefined), { timeoutMs: 20_000 });
  }
  const hashes = await Promise.all(names.map(async (name) => {
    const response = await call<{ hash: number }>(cluster.member(name).endpoint, 'Maintenance', 'HashKV', { revision: String(revision) }, { timeoutMs: 10_000 });
    return `${name}:${response.hash}`;
  }));
  assert.equal(new Set(hashes.map((h) => h.split(':')[1])).size, 1, `HashKV at revision ${revision} differs: ${hashes.join(' ')}`);
  return revision;
}

/**
 * A membership change refused before it was proposed, so asking again is safe: "unhealthy
 * cluster" (a voter connected for less than 5 s), and "no leader" (the election a new voter's
 * start can cause while the cluster waits for it; the gateway refuses without a leader before
 * proposing anything).
 */
function retryable(error: unknown): boolean {
  return error instanceof UnhealthyClusterError || error instanceof NoLeaderError;
}

/**
 * Adds a member with the peer URL of `name` (planned with {@link Cluster.planJoining}), retrying
 * "unhealthy cluster" (etcd refuses reconfiguration for ~5 s after a start or a change) and "no leader" until
 * `timeoutMs`; returns the add's answer and the ETCD_INITIAL_CLUSTER to start the member with.
 */
export async function addMember(client: Client, cluster: Cluster, name: string, options: { isLearner?: boolean; autoPromote?: boolean; timeoutMs?: number } = {}): Promise<{ added: MemberAddResult; initialCluster: string }> {
  const peerUrls = [cluster.peerUrl(name)];
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    try {
      const added = await client.cluster.memberAdd({ peerUrls, isLearner: options.isLearner, autoPromote: options.autoPromote });
      const settings = startSettings(added.members, { id: added.member.id, name, peerUrls });
      return { added, initialCluster: settings.ETCD_INITIAL_CLUSTER };
    } catch (error: unknown) {
      if (!retryable(error) || Date.now() > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Removes member `id`, retrying "unhealthy cluster" and "no leader" until `timeoutMs`. */
export async function removeMember(client: Client, id: bigint, options: { timeoutMs?: number } = {}): Promise<readonly Member[]> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    try {
      return (await client.cluster.memberRemove(id)).members;
    } catch (error: unknown) {
      if (!retryable(error) || Date.now() > deadline) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The member named `name` in `client`'s member list (throws when there is none). */
export async function memberNamed(client: Client, name: string): Promise<Member> {
  const member = (await client.cluster.memberList()).members.find((m) => m.name === name);
  assert.ok(member !== undefined, `${name} is a member`);
  return member;
}

/**
 * Waits until `name` has started (published its name and client URLs: the member list shows it)
 * and has caught up: its applied index reaches the leader's last index as read just before, the
 * condition an operator checks before promoting. A voter must also answer a linearizable read.
 */
export async function waitServing(client: Client, cluster: Cluster, name: string, timeoutMs = 30_000): Promise<void> {
  const member = cluster.member(name);
  const deadline = Date.now() + timeoutMs;
  let last = 'not listed as started yet';
  for (;;) {
    if (member.process === undefined) throw new Error(`${name} exited with ${String(member.lastExit)}; log tail: ${cluster.log(name).slice(-1500)}`);
    try {
      const members = (await client.cluster.memberList()).members;
      const listed = members.find((m) => m.peerUrls.includes(cluster.peerUrl(name)));
      if (listed !== undefined && listed.name === name && listed.clientUrls.length > 0) {
        const own = await status(member.endpoint);
        const leader = members.find((m) => m.id === BigInt(own.leader));
        if (leader !== undefined) {
          const leaderIndex = BigInt((await status(leader.clientUrls[0].replace(/^https?:\/\//, ''))).raftIndex);
          const applied = BigInt((await status(member.endpoint)).raftAppliedIndex);
          last = `applied ${applied} of the leader's ${leaderIndex}`;
          if (applied >= leaderIndex) {
            if (!listed.isLearner) await get(member.endpoint, 'serving-probe');
            return;
          }
        } else {
          last = 'no leader known to it';
        }
      }
    } catch (error: unknown) {
      last = String(error);
    }
    if (Date.now() > deadline) throw new Error(`${name} did not start and catch up within ${timeoutMs} ms (${last}); log tail: ${cluster.log(name).slice(-1000)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Maintenance.Status of one member. */
export function status(endpoint: string): Promise<StatusResponse> {
  return call<StatusResponse>(endpoint, 'Maintenance', 'Status', {}, { timeoutMs: 2_000 });
}

/** Waits until `name` exits by itself; asserts exit 0 and etcd's log line for a removed member. */
export async function assertExitsRemoved(cluster: Cluster, name: string, timeoutMs = 15_000): Promise<void> {
  const code = await cluster.waitForExit(name, { timeoutMs });
  assert.equal(code, 0, `${name} (removed) exits 0; log tail: ${cluster.log(name).slice(-1500)}`);
  // 'exit' may come before the last output reached the log file: wait for it with a deadline.
  await waitFor(`${name} to log its removal`, () => (/the member has been permanently removed from the cluster/.test(cluster.log(name)) ? true : undefined), { timeoutMs: 5_000 });
}

/**
 * Starts `name` again on its data dir and asserts that it refuses: non-zero exit and a message
 * saying it was removed (the data dir of a removed member must not come back as that member).
 */
export async function assertRefusesRestart(cluster: Cluster, name: string, timeoutMs = 15_000): Promise<void> {
  const before = cluster.log(name).length;
  cluster.startMember(name);
  const code = await cluster.waitForExit(name, { timeoutMs });
  assert.notEqual(code, 0, `${name} restarted on a removed member's data dir must fail; output: ${cluster.log(name).slice(before).slice(-1500)}`);
  const refusal = /the member has been permanently removed from the cluster; its data dir .* cannot be used again/;
  await waitFor(`${name} to say why it refuses (output: ${cluster.log(name).slice(before).slice(-800)})`, () => (refusal.test(cluster.log(name).slice(before)) ? true : undefined), { timeoutMs: 5_000 });
}

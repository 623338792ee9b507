/**
 * The membership nemesis (issue 12): while the workloads run and the fault nemesis kills
 * processes and cuts links, it changes the cluster's membership through the Cluster API, as an
 * operator would, and starts and retires the processes to match:
 *
 *   grow-learner  add a learner (a new process: next index, own namespace/address or fresh
 *                 loopback ports, empty data dir, `--initial-cluster-state existing` with the
 *                 ETCD_INITIAL_CLUSTER `member add` implies), wait until it has started, promote
 *                 it (retried while the leader answers "learner not ready"), then remove a
 *                 victim: the leader or a random voter
 *   grow-voter    add a voter (MemberAdd without isLearner, refused while the cluster is
 *                 unhealthy: retried), start it, wait until it has started, remove a victim
 *   shrink-first  remove a victim first (the cluster runs one member short), then add a
 *                 learner, start it and promote it
 *   replace       src/client/membership.ts replaceMember(victim → new process): add learner,
 *                 start it on 'start-required', catch-up, promote, remove the old member
 *
 * Every cycle leaves the cluster at its configured size; a cycle that fails (its deadline,
 * a refusal it does not retry) is followed by {@link MembershipNemesis.reconcile}, which reads
 * the member list and removes members the harness does not run (an add whose answer was lost
 * and that applied after all), promotes learners, and adds or removes members until the size is
 * right. The run ends with a final reconcile after the faults healed (see chaos.ts).
 *
 * Invariants the harness keeps (cluster.ts MemberLifecycle): a process is started for a member
 * only after its add is known to have applied; a member whose removal is in flight is not
 * restarted by heals; a removed member is never started again (only its refusal to restart is
 * probed at the end, see chaos.ts). Membership writes are sent at most once (the client's
 * policy): an answer that was lost is resolved by reading the member list (linearizable), never
 * by resending blindly.
 *
 * The schedule of cycles (kind, victim kind, pause before it) is drawn from the seed up front and
 * printed; victims are resolved when the cycle starts and logged. Everything is bounded: at most
 * {@link CYCLES_MAX} cycles, each with a deadline of {@link CYCLE_MS_MAX}, no cycle starts in the
 * last {@link CYCLE_START_MARGIN_MS} of the run, a reconcile takes at most
 * {@link RECONCILE_STEPS_MAX} steps, and every wait polls with a deadline.
 */
import {
  connect,
  hexId,
  LearnerNotReadyError,
  MemberNotFoundError,
  MemberNotLearnerError,
  MembershipError,
  NotEnoughStartedMembersError,
  PeerUrlsExistError,
  ReplaceRefusedError,
  replaceMember,
  startSettings,
  TooManyLearnersError,
  UnhealthyClusterError,
  type Client,
  type Member,
  type ReplaceEvent,
} from '../../src/client/index.js';
import { readFileSync, existsSync } from 'node:fs';
import { call, type StatusResponse } from '../integration/harness.js';
import type { FaultCluster, FaultMember } from './cluster.js';
import { pause } from './workloads.js';

/** Cycle kinds (see the file comment). */
export const MEMBERSHIP_CYCLE_KINDS = ['grow-learner', 'grow-voter', 'shrink-first', 'replace'] as const;
export type MembershipCycleKind = (typeof MEMBERSHIP_CYCLE_KINDS)[number];

/** One planned cycle. */
export interface PlannedCycle {
  readonly kind: MembershipCycleKind;
  /** Which voter the cycle removes: the leader when the cycle starts, or a random one. */
  readonly victim: 'leader' | 'random';
  /** Pause before the cycle starts (after the previous one ended), ms. */
  readonly gapMs: number;
}

/** Upper bound of cycles in a run. */
export const CYCLES_MAX = 40;
/** Deadline of one cycle. */
export const CYCLE_MS_MAX = 45_000;
/** No cycle starts later than this before the end of the run's fault time. */
export const CYCLE_START_MARGIN_MS = 10_000;
/** Upper bound of steps (one membership change or one wait) of one reconcile. */
export const RECONCILE_STEPS_MAX = 30;
/** Pauses between cycles. */
const GAP_MS: readonly [number, number] = [2_000, 6_000];
/** A cycle is planned for every this many ms of the run (cycles take 5-20 s here). */
const PLANNED_EVERY_MS = 10_000;
/** Records kept (ops, notes per op, endpoint changes): beyond these, only counted. */
const OPS_MAX = 500;
const NOTES_MAX = 30;
const ENDPOINT_CHANGES_MAX = 200;
/** Per-call deadline of the membership calls (capped by the cycle's deadline). */
const CALL_TIMEOUT_MS = 5_000;
/** Deadline of one member-list read on one endpoint. */
const LIST_TIMEOUT_MS = 1_500;
/** Endpoints tried per member-list read. */
const LIST_ENDPOINTS_MAX = 4;
/** Poll interval while waiting for a member to start or a refusal to clear. */
const POLL_MS = 300;

/** Plans the cycles of a run of `durationMs` (pure; a seed names its schedule). */
export function planMembership(options: { random: () => number; durationMs: number }): PlannedCycle[] {
  const { random } = options;
  const count = Math.min(CYCLES_MAX, Math.max(1, Math.floor(options.durationMs / PLANNED_EVERY_MS)));
  const plan: PlannedCycle[] = [];
  let round: MembershipCycleKind[] = [];
  for (let i = 0; i < count; i++) {
    // Each group of four cycles is a permutation of the kinds, so a short run still mixes them.
    if (round.length === 0) round = shuffle(random, MEMBERSHIP_CYCLE_KINDS);
    const kind = round.pop() as MembershipCycleKind;
    const victim = random() < 0.5 ? 'leader' : 'random';
    const gapMs = Math.round(GAP_MS[0] + random() * (GAP_MS[1] - GAP_MS[0]));
    plan.push({ kind, victim, gapMs });
  }
  return plan;
}

/** A one-line description of a planned cycle. */
export function describeCycle(cycle: PlannedCycle): string {
  const victim = cycle.victim === 'leader' ? 'the leader' : 'a random voter';
  switch (cycle.kind) {
    case 'grow-learner': return `after ${(cycle.gapMs / 1000).toFixed(1)}s: add a learner, start it, promote it, remove ${victim}`;
    case 'grow-voter': return `after ${(cycle.gapMs / 1000).toFixed(1)}s: add a voter, start it, remove ${victim}`;
    case 'shrink-first': return `after ${(cycle.gapMs / 1000).toFixed(1)}s: remove ${victim}, then add a learner, start it, promote it`;
    case 'replace': return `after ${(cycle.gapMs / 1000).toFixed(1)}s: replace ${victim} with a new process (replaceMember)`;
  }
}

function shuffle<T>(random: () => number, items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

// ───────────────────────────── member list and endpoints ─────────────────────────────

interface RawMember { ID: string; name: string; peerURLs: string[]; clientURLs: string[]; isLearner: boolean }

/** `host:port` of a client URL. */
function endpointOf(url: string): string {
  return url.replace(/^https?:\/\//, '').replace(/\/+$/, '');
}

/**
 * The member list as the cluster has it now: a linearizable MemberList (kvd runs a ReadIndex
 * barrier first, so a member cut off from the quorum, or removed without knowing it, cannot
 * answer with a stale list), from the first of `endpoints` that answers. Undefined when none did.
 */
export async function listMembers(endpoints: readonly string[]): Promise<Member[] | undefined> {
  for (const endpoint of endpoints.slice(0, LIST_ENDPOINTS_MAX)) {
    try {
      const response = await call<{ members: RawMember[] }>(endpoint, 'Cluster', 'MemberList', { linearizable: true }, { timeoutMs: LIST_TIMEOUT_MS });
      return response.members.map((m) => ({ id: BigInt(m.ID), name: m.name, peerUrls: m.peerURLs, clientUrls: m.clientURLs, isLearner: m.isLearner, autoPromote: false }));
    } catch (error: unknown) {
      void error; // try the next endpoint; the caller decides what no answer means
    }
  }
  return undefined;
}

/** One change of the workloads' endpoints. */
export interface EndpointChange {
  readonly atMs: number;
  readonly endpoints: readonly string[];
  readonly why: string;
}

/**
 * The client endpoints the workloads use, kept current from the member list: the client URLs of
 * the started voters, as an etcd client learns them (learners are left out, as clientv3 does).
 * Without the membership nemesis it stays the initial list. Invariant: never empty.
 */
export class EndpointBook {
  #current: readonly string[];
  readonly #now: () => number;
  readonly #random: () => number;
  /** Changes, oldest first; at most {@link ENDPOINT_CHANGES_MAX} kept. */
  readonly changes: EndpointChange[] = [];
  changesDropped = 0;

  constructor(initial: readonly string[], options: { now: () => number; random: () => number }) {
    if (initial.length === 0) throw new Error('an endpoint book needs at least one endpoint');
    this.#current = [...initial];
    this.#now = options.now;
    this.#random = options.random;
  }

  /** The endpoints to use now. */
  current(): readonly string[] {
    return this.#current;
  }

  /**
   * Reads the member list from the known endpoints (and `extra` ones, e.g. members the harness
   * just started) and keeps the started voters' client URLs, in the order already known, new
   * ones appended. Keeps the list when nothing answered or it would be empty. Returns whether it
   * read a list.
   */
  async refresh(extra: readonly string[] = []): Promise<boolean> {
    const candidates = [...new Set([...this.#current, ...extra])];
    const members = await listMembers(shuffle(this.#random, candidates));
    if (members === undefined) return false;
    const fresh = members.filter((m) => !m.isLearner && m.name !== '' && m.clientUrls.length > 0).map((m) => endpointOf(m.clientUrls[0]));
    if (fresh.length === 0) return true;
    const next = [...this.#current.filter((e) => fresh.includes(e)), ...fresh.filter((e) => !this.#current.includes(e))];
    if (next.join(',') !== this.#current.join(',')) {
      this.#current = next;
      if (this.changes.length < ENDPOINT_CHANGES_MAX) this.changes.push({ atMs: this.#now(), endpoints: next, why: 'member list' });
      else this.changesDropped++;
    }
    return true;
  }
}

// ───────────────────────────── the nemesis ─────────────────────────────

/** One membership operation as it happened (kept in the history). */
export interface MembershipOp {
  /** The cycle it belongs to (index in the plan), or -1 for a reconcile after the run. */
  readonly cycle: number;
  readonly kind: 'add-learner' | 'add-voter' | 'promote' | 'remove' | 'replace';
  /** The member: the new one (add, promote), the victim (remove), `old->new` (replace). */
  readonly member: string;
  /** Member id(s) in hex, as etcdctl prints them, once known. */
  id?: string;
  /** For remove and replace: the victim was the leader the running members reported when it was chosen. */
  readonly chosenAsLeader: boolean;
  /**
   * For remove and replace: the servers logged a leader hand-over while the op ran, i.e. the
   * victim was the leader when its removal was served (the ground truth of "removed the leader").
   */
  leaderHandedOver: boolean;
  readonly startMs: number;
  endMs: number;
  outcome: 'running' | 'ok' | 'failed';
  /** What happened on the way (refusals retried, lost answers resolved), bounded. */
  readonly notes: string[];
}

/** One cycle as it happened. */
export interface CycleRecord {
  readonly index: number;
  readonly kind: MembershipCycleKind | 'reconcile';
  readonly startMs: number;
  endMs: number;
  outcome: 'running' | 'ok' | 'failed';
  detail: string;
}

/** What the nemesis did, counted (only operations that succeeded). */
export interface MembershipCounts {
  adds: number;
  addsLearner: number;
  addsVoter: number;
  removes: number;
  leaderRemovals: number;
  replaces: number;
  promotes: number;
  /** Changes made by reconciles (also counted above). */
  reconcileChanges: number;
  failedOps: number;
}

/** Options of {@link MembershipNemesis}. */
export interface MembershipNemesisOptions {
  readonly cluster: FaultCluster;
  readonly book: EndpointBook;
  /** The configured cluster size to restore. */
  readonly size: number;
  readonly random: () => number;
  readonly now: () => number;
  readonly print: (line: string) => void;
}

type Deadline = number;

/** Runs the membership cycles against a {@link FaultCluster} (see the file comment). */
export class MembershipNemesis {
  readonly #options: MembershipNemesisOptions;
  readonly ops: MembershipOp[] = [];
  opsDropped = 0;
  readonly cycles: CycleRecord[] = [];
  readonly counts: MembershipCounts = { adds: 0, addsLearner: 0, addsVoter: 0, removes: 0, leaderRemovals: 0, replaces: 0, promotes: 0, reconcileChanges: 0, failedOps: 0 };
  /** When each removed member's removal was known to have applied (run ms). */
  readonly removedAtMs = new Map<string, number>();
  #cycle = -1;

  constructor(options: MembershipNemesisOptions) {
    this.#options = options;
  }

  /**
   * Runs `plan` until `endMs` (run ms): no cycle starts after `endMs - CYCLE_START_MARGIN_MS`,
   * and `stop` ends the pauses between cycles early. A failed cycle is followed by a reconcile.
   */
  async run(plan: readonly PlannedCycle[], options: { endMs: number; stop: AbortSignal }): Promise<void> {
    const { now } = this.#options;
    await this.#learnIds(now() + 20_000);
    for (let index = 0; index < plan.length && index < CYCLES_MAX; index++) {
      const cycle = plan[index];
      await pause(cycle.gapMs, options.stop);
      if (options.stop.aborted || now() > options.endMs - CYCLE_START_MARGIN_MS) break;
      this.#cycle = index;
      const record: CycleRecord = { index, kind: cycle.kind, startMs: now(), endMs: Number.NaN, outcome: 'running', detail: '' };
      this.cycles.push(record);
      this.#print(`cycle ${index}: ${cycle.kind}, victim ${cycle.victim}`);
      const deadline = now() + CYCLE_MS_MAX;
      let ok: boolean;
      try {
        ok = await this.#runCycle(cycle, deadline);
      } catch (error: unknown) {
        ok = false;
        record.detail = `threw: ${error instanceof Error ? error.message : String(error)}`;
      }
      record.outcome = ok ? 'ok' : 'failed';
      record.endMs = now();
      this.#print(`cycle ${index}: ${record.outcome} in ${((record.endMs - record.startMs) / 1000).toFixed(1)} s${record.detail === '' ? '' : ` (${record.detail})`}`);
      if (!ok) await this.reconcile({ deadline: now() + CYCLE_MS_MAX, label: `after cycle ${index}` });
    }
    this.#cycle = -1;
  }

  async #runCycle(cycle: PlannedCycle, deadline: Deadline): Promise<boolean> {
    switch (cycle.kind) {
      case 'grow-learner': {
        const added = await this.#addAndStart({ learner: true, deadline });
        if (added === undefined) return false;
        if (!(await this.#promote(added, deadline))) return false;
        return this.#removeVictim(cycle.victim, { exclude: added.name, deadline });
      }
      case 'grow-voter': {
        const added = await this.#addAndStart({ learner: false, deadline });
        if (added === undefined) return false;
        return this.#removeVictim(cycle.victim, { exclude: added.name, deadline });
      }
      case 'shrink-first': {
        if (!(await this.#removeVictim(cycle.victim, { exclude: undefined, deadline }))) return false;
        const added = await this.#addAndStart({ learner: true, deadline });
        if (added === undefined) return false;
        return this.#promote(added, deadline);
      }
      case 'replace': {
        const victim = await this.#chooseVictim(cycle.victim, undefined);
        if (victim === undefined) return false;
        return this.#replace(victim.member, { wasLeader: victim.wasLeader, deadline });
      }
    }
  }

  /**
   * Brings the membership to `size` started voters that the harness runs: removes members it
   * does not run (adds that applied after their answer was lost), promotes learners, then adds
   * or removes members. Bounded by `deadline` and {@link RECONCILE_STEPS_MAX} steps. Returns
   * whether the membership is right at the end.
   */
  async reconcile(options: { deadline: Deadline; label: string }): Promise<boolean> {
    const { cluster, now, size } = this.#options;
    const record: CycleRecord = { index: this.#cycle, kind: 'reconcile', startMs: now(), endMs: Number.NaN, outcome: 'running', detail: options.label };
    this.cycles.push(record);
    let done = false;
    for (let step = 0; step < RECONCILE_STEPS_MAX && now() < options.deadline && !done; step++) {
      const members = await listMembers(this.#listEndpoints());
      if (members === undefined) {
        await pause(POLL_MS * 2);
        continue;
      }
      const byPeerUrl = new Map(cluster.members.map((m) => [m.peerUrl, m] as const));
      const ours = (m: Member): FaultMember | undefined => {
        const member = m.peerUrls.map((url) => byPeerUrl.get(url)).find((f) => f !== undefined);
        return member !== undefined && (member.lifecycle === 'joining' || member.lifecycle === 'active' || member.lifecycle === 'leaving') ? member : undefined;
      };
      // Harness members the list no longer has were removed (an answer lost on the way).
      for (const member of cluster.members) {
        if ((member.lifecycle === 'joining' || member.lifecycle === 'active' || member.lifecycle === 'leaving') && member.id !== undefined && !members.some((m) => m.id === member.id)) {
          this.#note(undefined, `${options.label}: ${member.name} (${hexId(member.id)}) is not in the member list: marking it removed`);
          this.#markRemoved(member);
        }
      }
      const stranger = members.find((m) => ours(m) === undefined);
      if (stranger !== undefined) {
        // A member no process of ours serves (an abandoned add): remove it.
        const ok = await this.#removeById(stranger.id, { label: `${stranger.name === '' ? 'unstarted' : stranger.name} ${stranger.peerUrls.join(',')} (not run by the harness)`, deadline: options.deadline });
        if (ok) this.counts.reconcileChanges++;
        continue;
      }
      for (const m of members) {
        const member = ours(m) as FaultMember;
        if (member.lifecycle === 'leaving') member.lifecycle = m.isLearner ? 'joining' : 'active'; // a removal that did not happen
        if (member.id === undefined) member.id = m.id;
      }
      const learner = members.find((m) => m.isLearner);
      if (learner !== undefined) {
        const member = ours(learner) as FaultMember;
        if (learner.name === '' && !(await this.#waitStarted(member, Math.min(options.deadline, now() + 15_000)))) continue;
        if (await this.#promote(member, options.deadline)) this.counts.reconcileChanges++;
        continue;
      }
      const voters = members;
      const unstarted = voters.find((m) => m.name === '');
      if (unstarted !== undefined) {
        await this.#waitStarted(ours(unstarted) as FaultMember, Math.min(options.deadline, now() + 15_000));
        continue;
      }
      for (const m of voters) {
        const member = ours(m) as FaultMember;
        if (member.lifecycle === 'joining') member.lifecycle = 'active';
      }
      if (voters.length > size) {
        const victim = await this.#chooseVictim(this.#options.random() < 0.5 ? 'leader' : 'random', undefined);
        if (victim !== undefined && (await this.#remove(victim.member, { wasLeader: victim.wasLeader, deadline: options.deadline }))) this.counts.reconcileChanges++;
        continue;
      }
      if (voters.length < size) {
        const added = await this.#addAndStart({ learner: true, deadline: options.deadline });
        if (added !== undefined) {
          this.counts.reconcileChanges++;
          if (await this.#promote(added, options.deadline)) this.counts.reconcileChanges++;
        }
        continue;
      }
      done = true;
    }
    await this.#options.book.refresh(this.#listEndpoints());
    record.outcome = done ? 'ok' : 'failed';
    record.endMs = now();
    this.#print(`reconcile ${options.label}: ${done ? `membership is ${size} started voters run by the harness` : 'did not finish'} (${((record.endMs - record.startMs) / 1000).toFixed(1)} s)`);
    return done;
  }

  // ───────────────────────────── steps ─────────────────────────────

  /** Where to read the member list and send changes: the book's endpoints, then the running voters'. */
  #listEndpoints(): string[] {
    const { cluster, book } = this.#options;
    const running = cluster.activeMembers().filter((m) => m.state === 'running').map((m) => m.endpoint);
    return [...new Set([...shuffle(this.#options.random, book.current()), ...shuffle(this.#options.random, running)])];
  }

  #client(): Client {
    return connect({ endpoints: this.#listEndpoints(), dialTimeout: 1_000, requestTimeout: CALL_TIMEOUT_MS });
  }

  /** Learns the ids of the initial members from the member list (by peer URL). */
  async #learnIds(deadline: Deadline): Promise<void> {
    const { cluster, now } = this.#options;
    while (now() < deadline && cluster.members.some((m) => m.lifecycle === 'active' && m.id === undefined)) {
      const members = await listMembers(this.#listEndpoints());
      for (const m of members ?? []) {
        const member = cluster.members.find((f) => m.peerUrls.includes(f.peerUrl));
        if (member !== undefined && member.id === undefined) member.id = m.id;
      }
      if (cluster.members.some((m) => m.lifecycle === 'active' && m.id === undefined)) await pause(POLL_MS);
    }
  }

  /** The member's id, from the member list if not known yet. */
  async #idOf(member: FaultMember): Promise<bigint | undefined> {
    if (member.id !== undefined) return member.id;
    const members = await listMembers(this.#listEndpoints());
    const found = members?.find((m) => m.peerUrls.includes(member.peerUrl));
    if (found !== undefined) member.id = found.id;
    return member.id;
  }

  /** The victim: the leader, or a random active member (never `exclude`). */
  async #chooseVictim(kind: 'leader' | 'random', exclude: string | undefined): Promise<{ member: FaultMember; wasLeader: boolean } | undefined> {
    const { random } = this.#options;
    const candidates = this.#options.cluster.activeMembers().filter((m) => m.name !== exclude);
    if (candidates.length === 0) return undefined;
    const leader = await this.#currentLeader();
    if (kind === 'leader') {
      const member = candidates.find((m) => m === leader);
      if (member !== undefined) return { member, wasLeader: true };
      this.#print(`the leader (${leader?.name ?? 'unknown'}) is not a candidate: removing a random voter instead`);
    }
    const member = candidates[Math.floor(random() * candidates.length)];
    return { member, wasLeader: member === leader };
  }

  /**
   * The leader as the running members report it: the one named at the highest term (members
   * need not agree during faults, unlike FaultCluster.leader). Undefined when none names one.
   */
  async #currentLeader(): Promise<FaultMember | undefined> {
    const { cluster } = this.#options;
    const running = cluster.faultTargets().filter((m) => m.state === 'running');
    const statuses = await Promise.all(running.map((m) => call<StatusResponse>(m.endpoint, 'Maintenance', 'Status', {}, { timeoutMs: 1_000 }).catch(() => undefined)));
    let best: { term: bigint; leader: bigint } | undefined;
    for (const status of statuses) {
      if (status === undefined || status.leader === '0') continue;
      const term = BigInt(status.raftTerm);
      if (best === undefined || term > best.term) best = { term, leader: BigInt(status.leader) };
    }
    return best === undefined ? undefined : cluster.members.find((m) => m.id === best.leader);
  }

  /** Leader hand-overs the servers logged so far (a leader being removed hands over first). */
  #handoversLogged(): number {
    let count = 0;
    for (const member of this.#options.cluster.members) {
      if (existsSync(member.logPath)) count += readFileSync(member.logPath, 'utf8').split('"event":"leader-handover"').length - 1;
    }
    return count;
  }

  async #removeVictim(kind: 'leader' | 'random', options: { exclude: string | undefined; deadline: Deadline }): Promise<boolean> {
    const victim = await this.#chooseVictim(kind, options.exclude);
    if (victim === undefined) return false;
    return this.#remove(victim.member, { wasLeader: victim.wasLeader, deadline: options.deadline });
  }

  /**
   * Adds a member (learner or voter) with a fresh slot and starts its process once the add is
   * known to have applied. Returns the member ('joining'), or undefined when the add did not
   * happen by the deadline (the slot is abandoned: 'removed'; a reconcile removes the member
   * should the add apply later).
   */
  async #addAndStart(options: { learner: boolean; deadline: Deadline }): Promise<FaultMember | undefined> {
    const { cluster, now } = this.#options;
    const slot = await cluster.prepareMember();
    const op = this.#begin(options.learner ? 'add-learner' : 'add-voter', slot.name, { chosenAsLeader: false });
    const client = this.#client();
    let added: { id: bigint; members: readonly Member[] } | undefined;
    try {
      while (added === undefined && now() < options.deadline) {
        try {
          const result = await client.cluster.memberAdd({ peerUrls: [slot.peerUrl], isLearner: options.learner }, { timeoutMs: this.#callTimeout(options.deadline) });
          added = { id: result.member.id, members: result.members };
        } catch (error: unknown) {
          if (error instanceof UnhealthyClusterError || error instanceof NotEnoughStartedMembersError || error instanceof TooManyLearnersError) {
            this.#note(op, `refused, retrying: ${messageOf(error)}`);
            await pause(POLL_MS * 2);
            continue;
          }
          if (error instanceof MembershipError && !(error instanceof PeerUrlsExistError)) {
            this.#note(op, `refused: ${messageOf(error)}`);
            break;
          }
          // Unknown outcome (or the URLs exist: an earlier attempt applied): read the list.
          const members = await listMembers(this.#listEndpoints());
          const found = members?.find((m) => m.peerUrls.includes(slot.peerUrl));
          this.#note(op, `${messageOf(error)}: the member list ${members === undefined ? 'could not be read' : found === undefined ? 'does not have it' : `has it as ${hexId(found.id)}`}`);
          if (found !== undefined && members !== undefined) added = { id: found.id, members };
          else await pause(POLL_MS);
        }
      }
    } finally {
      client.close();
    }
    if (added === undefined) {
      slot.lifecycle = 'removed';
      this.#end(op, 'failed', 'not added by the deadline: slot abandoned');
      return undefined;
    }
    slot.id = added.id;
    op.id = hexId(added.id);
    const members = added.members.some((m) => m.id === added.id) ? added.members : [...added.members, { id: added.id, name: '', peerUrls: [slot.peerUrl], clientUrls: [], isLearner: options.learner, autoPromote: false }];
    const settings = startSettings(members, { id: added.id, name: slot.name, peerUrls: [slot.peerUrl] });
    cluster.startJoining(slot.name, settings.ETCD_INITIAL_CLUSTER);
    this.counts.adds++;
    if (options.learner) this.counts.addsLearner++;
    else this.counts.addsVoter++;
    this.#end(op, 'ok', `started ${slot.name} at ${slot.endpoint} (${slot.namespace ?? 'loopback'}) joining ${settings.ETCD_INITIAL_CLUSTER}`);
    if (!options.learner) {
      // A voter counts for the quorum from its add on; the workloads use it once it started.
      if (await this.#waitStarted(slot, options.deadline)) slot.lifecycle = 'active';
      else return undefined;
      await this.#options.book.refresh(this.#listEndpoints());
    }
    return slot;
  }

  /** Waits until `member` has published its name (started); false at the deadline. */
  async #waitStarted(member: FaultMember, deadline: Deadline): Promise<boolean> {
    const { now } = this.#options;
    while (now() < deadline) {
      const members = await listMembers(this.#listEndpoints());
      const found = members?.find((m) => m.peerUrls.includes(member.peerUrl));
      if (found !== undefined && found.name !== '') return true;
      await pause(POLL_MS);
    }
    this.#print(`${member.name} did not start by the deadline`);
    return false;
  }

  /** Promotes learner `member` (retrying "not ready"); marks it 'active' and refreshes the endpoints. */
  async #promote(member: FaultMember, deadline: Deadline): Promise<boolean> {
    const { now } = this.#options;
    const op = this.#begin('promote', member.name, { chosenAsLeader: false });
    const id = await this.#idOf(member);
    if (id === undefined) {
      this.#end(op, 'failed', 'id unknown');
      return false;
    }
    op.id = hexId(id);
    const client = this.#client();
    let outcome: 'ok' | 'failed' | undefined;
    let notReady = 0;
    try {
      while (outcome === undefined && now() < deadline) {
        try {
          await client.cluster.memberPromote(id, { timeoutMs: this.#callTimeout(deadline) });
          outcome = 'ok';
        } catch (error: unknown) {
          if (error instanceof MemberNotLearnerError) {
            this.#note(op, 'already a voter (an earlier answer was lost)');
            outcome = 'ok';
          } else if (error instanceof LearnerNotReadyError || error instanceof NotEnoughStartedMembersError) {
            if (notReady++ % 10 === 0) this.#note(op, `refused (${notReady}x so far), retrying: ${messageOf(error)}`);
            await pause(POLL_MS);
          } else if (error instanceof MembershipError) {
            this.#note(op, `refused: ${messageOf(error)}`);
            outcome = 'failed';
          } else {
            const members = await listMembers(this.#listEndpoints());
            const found = members?.find((m) => m.id === id);
            this.#note(op, `${messageOf(error)}: the member list ${members === undefined ? 'could not be read' : found === undefined ? 'does not have it' : found.isLearner ? 'has it as a learner' : 'has it as a voter'}`);
            if (found !== undefined && !found.isLearner) outcome = 'ok';
            else if (members !== undefined && found === undefined) outcome = 'failed';
            else await pause(POLL_MS);
          }
        }
      }
    } finally {
      client.close();
    }
    if (outcome !== 'ok') {
      this.#end(op, 'failed', outcome === undefined ? 'not promoted by the deadline' : '');
      return false;
    }
    member.lifecycle = 'active';
    this.counts.promotes++;
    this.#end(op, 'ok', '');
    await this.#options.book.refresh(this.#listEndpoints());
    return true;
  }

  /**
   * Removes `victim` (kvd hands leadership over first when it is the leader). Its lifecycle is
   * 'leaving' while the outcome is open, 'removed' once the removal applied (its process then
   * stops by itself; it is never restarted), and back to 'active' (restarted if it was down)
   * when the removal did not happen by the deadline.
   */
  async #remove(victim: FaultMember, options: { wasLeader: boolean; deadline: Deadline }): Promise<boolean> {
    const id = await this.#idOf(victim);
    if (id === undefined) {
      this.#print(`cannot remove ${victim.name}: id unknown`);
      return false;
    }
    victim.lifecycle = 'leaving';
    const removed = await this.#removeById(id, { label: `${victim.name}${options.wasLeader ? ' (leader)' : ''}`, deadline: options.deadline, chosenAsLeader: options.wasLeader });
    if (removed) {
      this.#markRemoved(victim);
      await this.#options.book.refresh(this.#listEndpoints());
      return true;
    }
    victim.lifecycle = 'active';
    if (victim.state === 'stopped') {
      this.#print(`${victim.name} is still a member and was down: restarting it`);
      this.#options.cluster.startMember(victim.name);
    }
    return false;
  }

  /** Sends MemberRemove(id) until it is known to have applied or the deadline; records the op. */
  async #removeById(id: bigint, options: { label: string; deadline: Deadline; chosenAsLeader?: boolean }): Promise<boolean> {
    const { now } = this.#options;
    const op = this.#begin('remove', options.label, { chosenAsLeader: options.chosenAsLeader === true });
    const handovers = this.#handoversLogged();
    op.id = hexId(id);
    const client = this.#client();
    let outcome: 'ok' | 'failed' | undefined;
    try {
      while (outcome === undefined && now() < options.deadline) {
        try {
          await client.cluster.memberRemove(id, { timeoutMs: this.#callTimeout(options.deadline) });
          outcome = 'ok';
        } catch (error: unknown) {
          if (error instanceof MemberNotFoundError) {
            this.#note(op, 'member not found: an earlier attempt applied');
            outcome = 'ok';
          } else if (error instanceof UnhealthyClusterError || error instanceof NotEnoughStartedMembersError) {
            this.#note(op, `refused, retrying: ${messageOf(error)}`);
            await pause(POLL_MS * 2);
          } else if (error instanceof MembershipError) {
            this.#note(op, `refused: ${messageOf(error)}`);
            outcome = 'failed';
          } else {
            // Unknown outcome (lost answer, leader change, hand-over failed): read the list.
            const members = await listMembers(this.#listEndpoints());
            const present = members?.some((m) => m.id === id);
            this.#note(op, `${messageOf(error)}: the member list ${members === undefined ? 'could not be read' : present === true ? 'still has it' : 'no longer has it'}`);
            if (members !== undefined && present !== true) outcome = 'ok';
            else await pause(POLL_MS);
          }
        }
      }
    } finally {
      client.close();
    }
    op.leaderHandedOver = this.#handoversLogged() > handovers;
    this.#end(op, outcome === 'ok' ? 'ok' : 'failed', outcome === undefined ? 'not removed by the deadline' : '');
    if (outcome === 'ok') this.counts.removes++;
    if (outcome === 'ok' && op.leaderHandedOver) this.counts.leaderRemovals++;
    return outcome === 'ok';
  }

  /** replaceMember(victim → a new process), resumed once after a transient failure. */
  async #replace(victim: FaultMember, options: { wasLeader: boolean; deadline: Deadline }): Promise<boolean> {
    const { cluster, now } = this.#options;
    const slot = await cluster.prepareMember();
    const op = this.#begin('replace', `${victim.name}->${slot.name}${options.wasLeader ? ' (leader)' : ''}`, { chosenAsLeader: options.wasLeader });
    const handovers = this.#handoversLogged();
    const onEvent = (event: ReplaceEvent): void => {
      switch (event.type) {
        case 'added':
          slot.id = event.member.id;
          op.id = `${victim.id === undefined ? '?' : hexId(victim.id)}->${hexId(event.member.id)}`;
          this.counts.adds++;
          this.counts.addsLearner++;
          this.#note(op, `added ${slot.name} as learner ${hexId(event.member.id)}`);
          break;
        case 'start-required':
          if (slot.lifecycle === 'pending') {
            slot.id = event.member.id;
            cluster.startJoining(slot.name, event.settings.ETCD_INITIAL_CLUSTER);
            this.#note(op, `started ${slot.name} at ${slot.endpoint} joining ${event.settings.ETCD_INITIAL_CLUSTER}`);
          }
          break;
        case 'promoted':
          // replaceMember may report it twice (a stale read showed the voter as a learner again).
          if (slot.lifecycle !== 'active') this.counts.promotes++;
          slot.lifecycle = 'active';
          this.#note(op, `promoted ${slot.name}`);
          break;
        case 'step':
          if (event.step === 'remove-old') victim.lifecycle = 'leaving';
          this.#note(op, `step ${event.step}${event.resumed ? ' (resumed)' : ''}`);
          break;
        case 'removed':
          this.#markRemoved(victim);
          this.counts.removes++;
          this.#note(op, `removed ${victim.name}`);
          break;
        case 'retrying':
          if (event.attempt === 1 || event.attempt % 10 === 0) this.#note(op, `retrying ${event.step} (${event.attempt}): ${event.reason}`);
          break;
        case 'catching-up':
        case 'caught-up':
          this.#note(op, `${event.type} ${event.appliedIndex}/${event.leaderIndex}`);
          break;
        case 'started':
        case 'done':
          break;
      }
    };
    let ok = false;
    for (let attempt = 0; attempt < 3 && !ok && now() < options.deadline; attempt++) {
      const client = this.#client();
      try {
        await replaceMember(client.cluster, { old: victim.name, name: slot.name, peerUrls: [slot.peerUrl], timeoutMs: options.deadline - now(), pollIntervalMs: POLL_MS, onEvent });
        ok = true;
      } catch (error: unknown) {
        this.#note(op, `replaceMember failed: ${messageOf(error)}`);
        if (error instanceof ReplaceRefusedError) break;
        await pause(POLL_MS);
      } finally {
        client.close();
      }
    }
    op.leaderHandedOver = this.#handoversLogged() > handovers;
    if (!ok) {
      // Settle the lifecycles from the member list; a reconcile follows the failed cycle.
      const members = await listMembers(this.#listEndpoints());
      if (members !== undefined) {
        if (victim.id !== undefined && !members.some((m) => m.id === victim.id)) this.#markRemoved(victim);
        else if (victim.lifecycle === 'leaving') victim.lifecycle = 'active';
        const fresh = members.find((m) => m.peerUrls.includes(slot.peerUrl));
        if (slot.lifecycle === 'pending') slot.lifecycle = 'removed'; // never started: a reconcile removes it if it was added
        else if (fresh === undefined && slot.lifecycle !== 'removed') this.#markRemoved(slot);
      } else if (victim.lifecycle === 'leaving') victim.lifecycle = 'active';
      if (victim.lifecycle === 'active' && victim.state === 'stopped') cluster.startMember(victim.name);
      if (victim.lifecycle === 'removed' && op.leaderHandedOver) this.counts.leaderRemovals++;
      this.#end(op, 'failed', '');
      return false;
    }
    // Done means the old member is gone, also when its removal's answer was lost (no 'removed').
    if (victim.lifecycle !== 'removed') {
      this.#markRemoved(victim);
      this.counts.removes++;
      this.#note(op, `${victim.name} is no longer a member`);
    }
    if (op.leaderHandedOver) this.counts.leaderRemovals++;
    if (slot.lifecycle === 'joining') slot.lifecycle = 'active';
    this.counts.replaces++;
    this.#end(op, 'ok', '');
    await this.#options.book.refresh(this.#listEndpoints());
    return true;
  }

  #markRemoved(member: FaultMember): void {
    if (member.lifecycle === 'removed') return;
    member.lifecycle = 'removed';
    this.removedAtMs.set(member.name, this.#options.now());
  }

  #callTimeout(deadline: Deadline): number {
    return Math.max(1, Math.min(CALL_TIMEOUT_MS, deadline - this.#options.now()));
  }

  // ───────────────────────────── records ─────────────────────────────

  #begin(kind: MembershipOp['kind'], member: string, options: { chosenAsLeader: boolean }): MembershipOp {
    const op: MembershipOp = { cycle: this.#cycle, kind, member, chosenAsLeader: options.chosenAsLeader, leaderHandedOver: false, startMs: this.#options.now(), endMs: Number.NaN, outcome: 'running', notes: [] };
    if (this.ops.length < OPS_MAX) this.ops.push(op);
    else this.opsDropped++;
    this.#print(`${kind} ${member} ...`);
    return op;
  }

  #end(op: MembershipOp, outcome: 'ok' | 'failed', detail: string): void {
    op.outcome = outcome;
    op.endMs = this.#options.now();
    if (detail !== '') this.#note(op, detail);
    if (outcome === 'failed') this.counts.failedOps++;
    this.#print(`${op.kind} ${op.member}${op.id === undefined ? '' : ` [${op.id}]`}${op.leaderHandedOver ? ' (the servers logged a leader hand-over)' : ''}: ${outcome} in ${((op.endMs - op.startMs) / 1000).toFixed(1)} s${detail === '' ? '' : `: ${detail}`}`);
  }

  #note(op: MembershipOp | undefined, note: string): void {
    const line = `${(this.#options.now() / 1000).toFixed(1)}s ${note}`;
    if (op === undefined) this.#print(note);
    else if (op.notes.length < NOTES_MAX) op.notes.push(line);
  }

  #print(line: string): void {
    this.#options.print(`  ${(this.#options.now() / 1000).toFixed(1)}s  membership: ${line}`);
  }
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

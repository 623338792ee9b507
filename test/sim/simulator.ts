/**
 * A deterministic simulator of whole kvd Raft clusters (the VOPR model): real RawNodes driven by a
 * simulated clock, network, disk and clients, all drawing from streams of one root seed. After
 * every step it checks Raft's safety properties and the Ready contract; after the fault phase it
 * heals everything and asserts liveness within a tick bound.
 *
 * Membership is the member's own: the client (membership-client.ts) proposes conf changes carrying
 * a real ConfContext after the member's pre-proposal checks; applying one decides it with the
 * server's planConfChange against the member's replicated Membership (membership-model.ts), which
 * snapshots carry. Removed members stop once they learn of it (own removal applied, snapshot
 * without them, a peer refusing them) and never restart; a member that applied a removal drops
 * the removed member's messages, as kvd's transport refuses its streams. Membership checks: every
 * member decides the same at each index; the core's configuration is the applied one after every
 * step; commits and elections (and pre-votes) count only voters of that configuration (learners
 * and removed members never); at most one conf change of the leader's term above its applied
 * index; never fewer voters than the client's minimum; no message from a member whose removal
 * every running member applied.
 *
 * One run: `runSimulation({ seed, budget })` returns `{ ok: true, stats }` or `{ ok: false, ... }`
 * with the failure message and the last {@link TRACE_EVENTS_MAX} events. Same seed → same run.
 */
import { RawNode, decodeConfChange } from '../../src/raft/raw-node.js';
import { MemoryStorage } from '../../src/raft/storage.js';
import type { ConfChange, ConfState, Entry, HardState, Message, NodeId, Snapshot } from '../../src/raft/types.js';
import { NO_NODE } from '../../src/raft/types.js';
import { decodeConfContext } from '../../src/server/conf-context.js';
import { Prng, mix32 } from './prng.js';
import { type BudgetOptions, MICROTICKS_PER_TICK, type SimParams, deriveParams } from './params.js';
import { ReplicatedMembership } from './membership-model.js';
import { MembershipClient, type MemberView } from './membership-client.js';

/** How many recent events a failure report shows. */
export const TRACE_EVENTS_MAX = 40;
/** Bound on Ready rounds processed back to back for one member (a core that never quiesces is a bug). */
const READY_ROUNDS_MAX = 1000;
/** Pipelined apply: entries waiting in one member's apply queue before its Ready loop waits for them (back-pressure, as the member's bounded apply backlog). */
const APPLY_BACKLOG_MAX = 64;
/** Bound on outstanding (unacknowledged) client writes and on pending reads. */
const OUTSTANDING_WRITES_MAX = 32;
const PENDING_READS_MAX = 64;
/** Cap of a write's exponential retry back-off, in ticks (during faults / after healing). */
const RETRY_TICKS_MAX = 160;
const HEAL_RETRY_TICKS_MAX = 40;
/** Fresh writes the clients submit right after healing; all must commit within the liveness bound. */
const HEAL_WRITES = 3;

/** A failed safety or liveness check. Carries the message only; the trace is attached by the runner. */
export class SimFailure extends Error {
  override name = 'SimFailure';
}

function check(condition: unknown, why: string): asserts condition {
  if (!condition) throw new SimFailure(why);
}

/** Outcome of one seed. */
export type SimResult =
  | { ok: true; seed: number; params: SimParams; stats: SimStats }
  | { ok: false; seed: number; params: SimParams; stats: SimStats; message: string; trace: readonly string[] };

/** Counters reported per run. */
export interface SimStats {
  ticks: number;
  messagesDelivered: number;
  messagesDropped: number;
  crashes: number;
  partitions: number;
  writesAcked: number;
  readsAnswered: number;
  confChangesApplied: number;
  /** Conf changes applied as no-ops because planConfChange refused them (counted once per index). */
  confChangesRefused: number;
  /** Membership operations the client started, leader hand-overs it asked for, replacements it finished. */
  membershipOps: number;
  leaderHandovers: number;
  replacesCompleted: number;
  /** Messages a receiver dropped because it applied the sender's removal (kvd's transport refuses removed members). */
  removedMessagesDropped: number;
  /**
   * (Pre-)vote answers delivered to a (pre-)candidate from a member that is not a voter of its
   * configuration: the only way a tally could count a removed member or a learner. The core sends
   * vote requests to its voters only and cannot change configuration while campaigning (it refuses
   * to campaign with a committed conf change unapplied), so this stays rare (see MUTATIONS.md (c)).
   */
  votesFromOutsideConfiguration: number;
  snapshotsInstalled: number;
  leadersElected: number;
  healTicks: number;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function hashBytes(data: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < data.length; i++) {
    h ^= data[i];
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return mix32(h);
}

/** Identity of an entry for the safety checks: term, type and payload. */
function entryHash(entry: Entry): number {
  return mix32(hashBytes(entry.data) ^ Math.imul(entry.term, 0x27d4eb2d) ^ (entry.type === 'conf-change' ? 0x5bd1e995 : 0));
}

function chain(previous: number, entry: Entry): number {
  return mix32((previous ^ entryHash(entry)) + entry.index);
}

/** The simulated state machine's state: it is also what a snapshot carries. */
interface MachineState {
  applied: number;
  /** Rolling hash of every entry applied, in order: equal on two members iff they applied the same log prefix. */
  chainHash: number;
  /**
   * The configuration as the state machine models it (independently of the core): evolved by each
   * applied plan's raftChange with {@link nextConfState}. Invariant: equals what `membership`
   * describes, and the core's ConfState after every step.
   */
  confState: ConfState;
  /** The replicated membership (kvd's member records), decided by planConfChange; part of snapshots. */
  membership: ReplicatedMembership;
  /** Set when a conf change was applied: the machine snapshots at once so the snapshot a leader sends includes every member it replicates to. */
  snapshotDue: boolean;
}

interface MachineJson {
  applied: number;
  chainHash: number;
  members: Array<[string, string]>;
}

function encodeMachine(state: { applied: number; chainHash: number; membership: ReplicatedMembership }): Uint8Array {
  const json: MachineJson = { applied: state.applied, chainHash: state.chainHash, members: state.membership.toJson() };
  return encoder.encode(JSON.stringify(json));
}

function decodeMachine(data: Uint8Array): { applied: number; chainHash: number; membership: ReplicatedMembership } {
  if (data.length === 0) return { applied: 0, chainHash: 0, membership: new ReplicatedMembership() };
  const json = JSON.parse(decoder.decode(data)) as MachineJson;
  return { applied: json.applied, chainHash: json.chainHash, membership: ReplicatedMembership.fromJson(json.members) };
}

/** A member's durable state: what survives a crash. */
interface Durable {
  hardState: HardState;
  /** Latest snapshot (also the durable state machine state), or null for a member added by conf change that has none yet. */
  snapshot: Snapshot | null;
  /** Synced entries after the snapshot, contiguous. */
  entries: Entry[];
}

/** One process lifetime of a member. */
interface Incarnation {
  readonly number: number;
  readonly node: RawNode;
  readonly storage: MemoryStorage;
  readonly machine: MachineState;
  /** Latest hard state written but not yet synced (lost on crash), or null. */
  unsyncedHardState: HardState | null;
  lastCommit: number;
  lastTerm: number;
  lastRole: string;
  lastSnapshotIndex: number;
  /** The core's commit index when the commit quorum was last checked (see #checkCommitQuorum). */
  commitChecked: number;
  /** Read states waiting for the machine to apply through their index. */
  readsWaiting: Array<{ context: string; index: number }>;
  /** reportUnreachable / reportSnapshot calls raised while a Ready was being handled. */
  deferredReports: Array<() => void>;
  /** Pipelined apply: committed entries handed out by advance({ apply: 'pending' }) and not yet applied (lost on crash). */
  applyQueue: Entry[];
  /** Pipelined apply: the microtick of this member's next apply step. */
  nextApplyAt: number;
}

interface Member {
  readonly id: NodeId;
  periodMicroticks: number;
  nextTickAt: number;
  durable: Durable;
  state: 'up' | 'down' | 'removed';
  incarnation: Incarnation | null;
  /** Process lifetimes so far; 0: never started (a member added by conf change whose operator has not started it yet). */
  incarnations: number;
  /** When a 'down' member (re)starts, in microticks. */
  restartAt: number;
  /**
   * When set: the member learned it was removed (it applied its own removal, installed a snapshot
   * without itself, or a peer refused it) and stops at this microtick, never to restart (kvd
   * writes a removed marker and refuses to start again).
   */
  stopAt: number | null;
}

interface InFlight {
  readonly deliverAt: number;
  readonly seq: number;
  readonly message: Message;
  readonly senderIncarnation: number;
}

interface PendingRead {
  readonly member: NodeId;
  readonly incarnation: number;
  readonly issuedAt: number;
  /** Highest index of any write acknowledged before the read was issued. */
  readonly requiredIndex: number;
  state: 'issued' | 'indexed' | 'answered';
}

interface Write {
  readonly value: string;
  lastAttemptAt: number;
  /** Retry interval in ticks; doubles per attempt (bounded) so retries cannot outrun replication. */
  retryTicks: number;
  ackIndex: number | null;
}

type Phase = 'chaos' | 'heal';

function id(n: NodeId): string {
  return n.toString();
}

function describeMessage(m: Message): string {
  const base = `${m.type} ${m.from}→${m.to} t${m.term}`;
  switch (m.type) {
    case 'append':
      return `${base} prev=(${m.index},${m.logTerm}) n=${m.entries.length}${m.entries.length > 0 ? `[${m.entries[0].index}..${m.entries[m.entries.length - 1].index}]` : ''} commit=${m.commit}`;
    case 'append-response':
      return `${base} index=${m.index}${m.reject ? ` REJECT hint=${m.rejectHint} logTerm=${m.logTerm}` : ''}`;
    case 'vote':
    case 'pre-vote':
      return `${base} last=(${m.index},${m.logTerm}) ${m.campaign}`;
    case 'vote-response':
    case 'pre-vote-response':
      return `${base} ${m.reject ? 'REJECT' : 'grant'}`;
    case 'heartbeat':
      return `${base} commit=${m.commit}${m.context ? ` ctx=${decoder.decode(m.context)}` : ''}`;
    case 'heartbeat-response':
      return `${base}${m.context ? ` ctx=${decoder.decode(m.context)}` : ''}`;
    case 'snapshot':
      return `${base} snap=(${m.snapshot.metadata.index},${m.snapshot.metadata.term}) voters=[${m.snapshot.metadata.confState.voters.join(',')}] learners=[${m.snapshot.metadata.confState.learners.join(',')}]`;
    case 'read-index':
      return `${base} ctx=${decoder.decode(m.context)}`;
    case 'read-index-response':
      return `${base} index=${m.index} ctx=${decoder.decode(m.context)}`;
    case 'propose':
      return `${base} n=${m.entries.length}`;
    case 'propose-refused':
      return `${base} n=${m.entries.length} ${m.reason}`;
    case 'transfer-leader':
      return `${base} transferee=${m.transferee}`;
    case 'timeout-now':
      return base;
  }
}

function stringifyEvent(event: Record<string, unknown>): string {
  return JSON.stringify(event, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value));
}

/** Runs one seed to completion. Never throws for a failing seed (returns `ok: false`); see {@link SimResult}. */
export function runSimulation(options: { seed: number; budget: BudgetOptions; verbose?: (line: string) => void }): SimResult {
  const params = deriveParams(options.seed, options.budget);
  const sim = new Simulation(params, options.verbose);
  try {
    sim.run();
    return { ok: true, seed: options.seed, params, stats: sim.stats };
  } catch (error: unknown) {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    return { ok: false, seed: options.seed, params, stats: sim.stats, message: `${message} (at microtick ${sim.now})`, trace: sim.trace() };
  }
}

class Simulation {
  readonly params: SimParams;
  readonly stats: SimStats = {
    ticks: 0,
    messagesDelivered: 0,
    messagesDropped: 0,
    crashes: 0,
    partitions: 0,
    writesAcked: 0,
    readsAnswered: 0,
    confChangesApplied: 0,
    confChangesRefused: 0,
    membershipOps: 0,
    leaderHandovers: 0,
    replacesCompleted: 0,
    removedMessagesDropped: 0,
    votesFromOutsideConfiguration: 0,
    snapshotsInstalled: 0,
    leadersElected: 0,
    healTicks: 0,
  };
  now = 0;
  #phase: Phase = 'chaos';
  readonly #verbose: ((line: string) => void) | undefined;
  readonly #network: Prng;
  readonly #disk: Prng;
  readonly #clients: Prng;
  readonly #faults: Prng;
  readonly #members = new Map<NodeId, Member>();
  #nextMemberId = 1n;
  readonly #traceRing: string[] = [];
  #traceNext = 0;

  // Network.
  #inFlight: InFlight[] = [];
  #messageSeq = 0;
  readonly #pathLoad = new Map<string, number>();
  /** Directed pairs "a>b" currently cut. */
  #blocked = new Set<string>();
  #partitionEndsAt = 0;

  // Oracles.
  readonly #leaderOfTerm = new Map<number, NodeId>();
  /** Log matching: (index, term) → identity of the entry and the term of its predecessor. */
  readonly #entriesSeen = new Map<string, { hash: number; previousTerm: number }>();
  /** Every committed (applied somewhere) index → entry identity and the chain hash through it. */
  readonly #committed = new Map<number, { term: number; hash: number; chainHash: number }>();
  #maxCommitted = 0;
  readonly #writes = new Map<string, Write>();
  #outstandingWrites: Write[] = [];
  #writeSeq = 0;
  #maxAckedIndex = 0;
  readonly #reads = new Map<string, PendingRead>();
  #readSeq = 0;
  /** Reads accepted and not yet answered (approximate: reset when the client gives up on lost ones). */
  #activeReads = 0;
  readonly #client: MembershipClient;
  /** Name each member id runs under (kvd: --name; the client chooses it when it adds a member). */
  readonly #names = new Map<NodeId, string>();
  /** Index of each applied conf-change entry → the decision planConfChange made there (every member must agree). */
  readonly #decisionAt = new Map<number, string>();
  /** Index of each applied conf-change entry → the configuration members reached there. */
  readonly #configurationAt = new Map<number, string>();
  /** Index of each applied conf-change entry (and 0: bootstrap) → the member records (JSON) members reached there. */
  readonly #membershipAt = new Map<number, string>();
  /** Members whose removal was applied somewhere: never started again once stopped, never re-added. */
  readonly #removed = new Set<NodeId>();
  /** Every durable vote: "member@term" → the candidate (a vote never changes within a term, checked). */
  readonly #votesCast = new Map<string, NodeId>();
  /** Pre-vote grants delivered: "candidate@term" (the term the grant carries: the one the candidate would campaign in) → who granted. */
  readonly #preVoteGrants = new Map<string, Set<NodeId>>();
  /** 'conf-change-skipped' events seen (the core already reflected a change the application applied late). */
  #confChangesSkipped = 0;
  /** The member whose Ready is being handled, if any. */
  #inReady: Member | null = null;

  constructor(params: SimParams, verbose: ((line: string) => void) | undefined) {
    this.params = params;
    this.#verbose = verbose;
    this.#network = new Prng({ seed: params.seed, name: 'network' });
    this.#disk = new Prng({ seed: params.seed, name: 'disk' });
    this.#clients = new Prng({ seed: params.seed, name: 'clients' });
    this.#faults = new Prng({ seed: params.seed, name: 'faults' });
    this.#client = new MembershipClient({
      host: {
        nowTicks: () => Math.floor(this.now / MICROTICKS_PER_TICK),
        leader: () => {
          const leader = this.#currentLeader();
          return leader === null ? null : this.#view(leader);
        },
        upMembers: () => this.#upMembers().map((m) => this.#view(m)),
        isStarted: (memberId) => (this.#members.get(memberId)?.incarnations ?? 0) > 0,
        isConnected: (a, b) => this.#connected(a, b),
        allocateMemberId: (name) => {
          const memberId = this.#nextMemberId++;
          this.#names.set(memberId, name ?? `m${memberId}`);
          return memberId;
        },
        nameOf: (memberId) => this.#names.get(memberId) ?? `m${memberId}`,
        trace: (line) => this.#trace(line),
      },
      random: new Prng({ seed: params.seed, name: 'membership-client' }),
      params: {
        confChangeRate: params.confChangeRate,
        membersMax: params.membersMax,
        votersMin: params.votersMin,
        maxLearners: params.maxLearners,
        electionTicks: params.electionTicks,
      },
    });
  }

  /** The membership client's view of an up member. */
  #view(member: Member): MemberView {
    const inc = member.incarnation!;
    const status = inc.node.status();
    return {
      id: member.id,
      incarnation: member.incarnations,
      term: status.term,
      membership: inc.machine.membership,
      progress: status.progress,
      proposeConfChange: (change) => {
        const outcome = inc.node.proposeConfChange(change);
        this.#afterInput(member, 'conf-change');
        return outcome;
      },
      transferLeader: (transferee) => {
        inc.node.transferLeader(transferee);
        this.#afterInput(member, 'transfer');
      },
    };
  }

  /** Whether `a` and `b` are up and no partition separates them (what kvd's transport would call connected). */
  #connected(a: NodeId, b: NodeId): boolean {
    if (this.#members.get(a)?.state !== 'up' || this.#members.get(b)?.state !== 'up') return false;
    return !this.#blocked.has(`${a}>${b}`) && !this.#blocked.has(`${b}>${a}`);
  }

  // ---------------------------------------------------------------- trace

  #trace(line: string): void {
    const text = `[${this.now}] ${line}`;
    if (this.#traceRing.length < TRACE_EVENTS_MAX) this.#traceRing.push(text);
    else this.#traceRing[this.#traceNext] = text;
    this.#traceNext = (this.#traceNext + 1) % TRACE_EVENTS_MAX;
    this.#verbose?.(text);
  }

  trace(): string[] {
    if (this.#traceRing.length < TRACE_EVENTS_MAX) return [...this.#traceRing];
    return [...this.#traceRing.slice(this.#traceNext), ...this.#traceRing.slice(0, this.#traceNext)];
  }

  // ---------------------------------------------------------------- main loop

  run(): void {
    const voters: NodeId[] = [];
    for (let i = 0; i < this.params.initialVoters; i++) voters.push(this.#nextMemberId++);
    // The bootstrap snapshot marker carries the initial membership (kvd: bootstrap.json): a member
    // added later gets it with the index-0 membership snapshot.
    const initial = ReplicatedMembership.bootstrap(voters);
    this.#membershipAt.set(0, JSON.stringify(initial.toJson()));
    const bootstrap = encodeMachine({ applied: 0, chainHash: 0, membership: initial });
    for (const voter of voters) {
      this.#names.set(voter, `m${voter}`);
      const snapshot: Snapshot = { metadata: { index: 0, term: 0, confState: { voters, learners: [] } }, data: bootstrap };
      this.#addMember(voter, { hardState: { term: 0, vote: NO_NODE, commit: 0 }, snapshot, entries: [] }, this.now);
    }
    const chaosEnd = this.params.chaosTicks * MICROTICKS_PER_TICK;
    for (; this.now < chaosEnd; this.now++) this.#step();
    this.#heal();
    const healStart = this.now;
    const deadline = this.now + this.params.livenessBoundTicks * MICROTICKS_PER_TICK;
    for (; this.now < deadline; this.now++) {
      this.#step();
      if (this.now % MICROTICKS_PER_TICK === 0 && this.#converged()) {
        this.stats.healTicks = (this.now - healStart) / MICROTICKS_PER_TICK;
        this.#trace(`converged after ${this.stats.healTicks} ticks`);
        return;
      }
    }
    throw new SimFailure(`liveness: not converged within ${this.params.livenessBoundTicks} ticks after healing: ${this.#livenessReport()}`);
  }

  #step(): void {
    if (this.now % MICROTICKS_PER_TICK === 0) {
      this.stats.ticks++;
      this.#tickBoundary();
    }
    this.#deliverDue();
    if (this.params.apply === 'pipelined') this.#applySteps();
    for (const member of [...this.#members.values()]) {
      if (member.state !== 'up' || member.nextTickAt > this.now) continue;
      member.nextTickAt = this.now + member.periodMicroticks;
      const incarnation = member.incarnation!;
      incarnation.node.tick();
      this.#afterInput(member, 'tick');
    }
  }

  /** Once per nominal tick: faults, restarts, scheduled stops, client actions. */
  #tickBoundary(): void {
    for (const member of this.#members.values()) {
      if (member.stopAt !== null && member.state !== 'removed' && this.now >= member.stopAt) this.#stopRemoved(member);
      else if (member.state === 'down' && this.now >= member.restartAt) this.#maybeStart(member);
    }
    if (this.#phase === 'chaos') this.#injectFaults();
    this.#clientActions();
    const client = this.#client.stats;
    this.stats.membershipOps = client.membershipOps;
    this.stats.leaderHandovers = client.leaderHandovers;
    this.stats.replacesCompleted = client.replacesCompleted;
  }

  /**
   * Starts (or restarts) a down member, unless it is to stop for good: a member that learned of its
   * removal stays down, and one removed before its operator ever started it is never started.
   */
  #maybeStart(member: Member): void {
    if (member.stopAt !== null) return;
    if (member.incarnations === 0 && this.#removed.has(member.id)) {
      member.state = 'removed';
      this.#trace(`member ${member.id} was removed before it ever started: never started`);
      return;
    }
    this.#restart(member);
  }

  #injectFaults(): void {
    const p = this.params;
    const f = this.#faults;
    if (this.#blocked.size > 0 && this.now >= this.#partitionEndsAt) {
      this.#blocked = new Set();
      this.#trace('partition healed');
    }
    if (this.#blocked.size === 0 && f.chance(p.partitionRate)) this.#startPartition();
    const up = this.#upMembers();
    if (up.length > 0 && f.chance(p.crashRate * up.length)) {
      const victim = f.pick(up);
      this.#crash(victim, 'random crash');
    }
    // Crashing leaders specifically drives the interesting histories: uncommitted tails of
    // several terms on different members (Raft paper, figure 8).
    const leader = this.#currentLeader();
    if (leader !== null && leader.state === 'up' && f.chance(p.leaderCrashRate)) this.#crash(leader, 'leader crash');
    if (up.length > 0 && f.chance(p.rateChangeRate)) {
      const member = f.pick(up);
      const [lo, hi] = p.tickPeriodMicroticks;
      member.periodMicroticks = f.chance(0.3) ? hi * 3 : f.between(lo, hi);
      this.#trace(`member ${member.id} now ticks every ${member.periodMicroticks} microticks`);
    }
  }

  #startPartition(): void {
    const f = this.#faults;
    const ids = [...this.#members.values()].filter((m) => m.state !== 'removed').map((m) => m.id);
    if (ids.length < 2) return;
    const kind = f.pick(['symmetric', 'asymmetric', 'isolate-leader', 'minority-with-leader'] as const);
    const leader = this.#currentLeader();
    let side: NodeId[];
    if ((kind === 'isolate-leader' || kind === 'minority-with-leader') && leader !== null) {
      side = [leader.id];
      if (kind === 'minority-with-leader') {
        const others = f.shuffle(ids.filter((x) => x !== leader.id));
        const minority = Math.floor((ids.length - 1) / 2);
        side.push(...others.slice(0, Math.max(0, minority - 1)));
      }
    } else {
      side = f.shuffle([...ids]).slice(0, f.between(1, ids.length - 1));
    }
    const other = ids.filter((x) => !side.includes(x));
    const blocked = new Set<string>();
    for (const a of side) {
      for (const b of other) {
        blocked.add(`${a}>${b}`);
        if (kind !== 'asymmetric') blocked.add(`${b}>${a}`);
      }
    }
    this.#blocked = blocked;
    const [lo, hi] = this.params.partitionTicks;
    this.#partitionEndsAt = this.now + f.between(lo, hi) * MICROTICKS_PER_TICK;
    this.stats.partitions++;
    this.#trace(`partition ${kind}: {${side.join(',')}} ${kind === 'asymmetric' ? '-/->' : '|'} {${other.join(',')}} until ${this.#partitionEndsAt}`);
  }

  #heal(): void {
    this.#phase = 'heal';
    this.#blocked = new Set();
    this.#trace('HEAL: partitions cleared, loss/duplication off, no more crashes, clocks within 10%; restarting down members');
    for (const member of this.#members.values()) {
      // Clock drift heals too: Raft promises no liveness when a member with a stale log ticks
      // much faster than the rest (without pre-vote it disrupts every election), so after healing
      // members tick within 10% of the nominal rate.
      member.periodMicroticks = this.#faults.between(MICROTICKS_PER_TICK, MICROTICKS_PER_TICK + 1);
      if (member.stopAt !== null && member.state !== 'removed') this.#stopRemoved(member);
      if (member.state === 'down') this.#maybeStart(member);
    }
    for (let i = 0; i < HEAL_WRITES; i++) this.#newWrite();
  }

  // ---------------------------------------------------------------- members

  /** Creates a member process record; it starts at `startAt` (microticks; now or earlier: at once). */
  #addMember(memberId: NodeId, durable: Durable, startAt: number): Member {
    const [lo, hi] = this.params.tickPeriodMicroticks;
    const period = this.#faults.between(lo, hi);
    const member: Member = {
      id: memberId,
      periodMicroticks: period,
      nextTickAt: this.now + this.#faults.between(0, period - 1),
      durable,
      state: 'down',
      incarnation: null,
      incarnations: 0,
      restartAt: startAt,
      stopAt: null,
    };
    this.#members.set(memberId, member);
    this.#trace(`new member ${memberId} (tick period ${period}), starts at ${startAt}`);
    if (startAt <= this.now) this.#restart(member);
    return member;
  }

  #upMembers(): Member[] {
    return [...this.#members.values()].filter((m) => m.state === 'up');
  }

  /** Rebuilds the member from its durable state only. */
  #restart(member: Member): void {
    check(member.state === 'down' && member.stopAt === null, `member ${member.id} restarted although it ${member.state === 'removed' ? 'stopped for good (removed)' : 'learned of its removal'}`);
    const durable = member.durable;
    const storage = new MemoryStorage();
    const machine: MachineState = { applied: 0, chainHash: 0, confState: { voters: [], learners: [] }, membership: new ReplicatedMembership(), snapshotDue: false };
    if (durable.snapshot !== null) {
      storage.applySnapshot(durable.snapshot);
      const decoded = decodeMachine(durable.snapshot.data);
      check(decoded.applied === durable.snapshot.metadata.index, `snapshot data index ${decoded.applied} != metadata index ${durable.snapshot.metadata.index}`);
      machine.applied = decoded.applied;
      machine.chainHash = decoded.chainHash;
      machine.membership = decoded.membership;
      machine.confState = durable.snapshot.metadata.confState;
      this.#checkMembershipModel(member, machine, 'restart');
    }
    storage.setHardState(durable.hardState);
    storage.append(durable.entries);
    member.incarnations++;
    const number = member.incarnations;
    const node = new RawNode({
      id: member.id,
      storage,
      random: new Prng({ seed: this.params.seed, name: `member-${member.id}-${number}` }),
      electionTicks: this.params.electionTicks,
      heartbeatTicks: this.params.heartbeatTicks,
      applied: machine.applied,
      maxAppendBytes: this.params.maxAppendBytes,
      maxInflightAppends: this.params.maxInflightAppends,
      preVote: this.params.preVote,
      checkQuorum: this.params.checkQuorum,
      readOnly: 'safe',
      onEvent: (event) => {
        if (event.kind === 'conf-change-skipped') this.#confChangesSkipped++;
        this.#trace(`  event ${stringifyEvent(event as Record<string, unknown>)}`);
        if (event.kind === 'election-started' && event.campaign === 'election' && this.params.preVote === 'enabled') this.#checkPreVoteQuorum(member, event.term);
      },
    });
    const status = node.status();
    check(status.commit >= durable.hardState.commit, `member ${member.id} restarted with commit ${status.commit} below durable commit ${durable.hardState.commit}`);
    check(status.term >= durable.hardState.term, `member ${member.id} restarted with term ${status.term} below durable term ${durable.hardState.term}`);
    // No committed entry is lost across the crash: everything durable up to the durable commit is the committed entry.
    for (const entry of durable.entries) {
      if (entry.index > durable.hardState.commit) break;
      const committed = this.#committed.get(entry.index);
      if (committed !== undefined) {
        check(committed.term === entry.term && committed.hash === entryHash(entry), `member ${member.id} durable entry ${entry.index} (term ${entry.term}) differs from the committed one (term ${committed.term})`);
      }
    }
    member.incarnation = {
      number,
      node,
      storage,
      machine,
      unsyncedHardState: null,
      lastCommit: status.commit,
      lastTerm: status.term,
      lastRole: status.role,
      lastSnapshotIndex: machine.applied,
      commitChecked: status.commit,
      readsWaiting: [],
      deferredReports: [],
      applyQueue: [],
      nextApplyAt: 0,
    };
    member.state = 'up';
    member.nextTickAt = Math.max(member.nextTickAt, this.now + 1);
    this.#trace(`member ${member.id} up (incarnation ${number}, term ${status.term}, commit ${status.commit}, applied ${machine.applied}, last ${status.lastIndex})`);
    node.assertInvariants();
    this.#processReady(member);
  }

  #crash(member: Member, why: string): void {
    assert(member.state === 'up', 'crash of a member that is not up');
    const [lo, hi] = this.params.downTicks;
    member.state = 'down';
    member.incarnation = null;
    member.restartAt = this.now + this.#faults.between(lo, hi) * MICROTICKS_PER_TICK;
    this.stats.crashes++;
    this.#trace(`CRASH member ${member.id} (${why}); durable term=${member.durable.hardState.term} vote=${member.durable.hardState.vote} commit=${member.durable.hardState.commit} entries..${lastDurableIndex(member.durable)}; restart at ${member.restartAt}`);
  }

  #stopRemoved(member: Member): void {
    member.state = 'removed';
    member.incarnation = null;
    this.#trace(`member ${member.id} stopped for good (removed from the cluster)`);
  }

  /**
   * The member learned that it was removed (kvd's #removedFromCluster): it writes its removed
   * marker and stops shortly after, and never starts again.
   */
  #learnRemoved(member: Member, why: string): void {
    if (member.stopAt !== null || member.state === 'removed') return;
    member.stopAt = this.now + this.#faults.between(0, 5) * MICROTICKS_PER_TICK;
    this.#trace(`member ${member.id} learns it was removed (${why}); stops at ${member.stopAt}`);
  }

  // ---------------------------------------------------------------- network

  #send(from: Member, message: Message): void {
    const p = this.params;
    const n = this.#network;
    const path = `${message.from}>${message.to}`;
    if (this.#blocked.has(path)) {
      this.#drop(from, message, 'partition');
      return;
    }
    if (this.#phase === 'chaos' && n.chance(p.lossRate)) {
      this.#drop(from, message, 'loss');
      return;
    }
    const copies = this.#phase === 'chaos' && n.chance(p.duplicateRate) ? 2 : 1;
    for (let c = 0; c < copies; c++) {
      const load = this.#pathLoad.get(path) ?? 0;
      if (load >= p.pathCapacity) {
        this.#drop(from, message, 'path full');
        return;
      }
      this.#pathLoad.set(path, load + 1);
      let delay = n.between(p.delayMicroticks[0], p.delayMicroticks[1]);
      if (n.chance(p.delaySpikeRate)) delay *= 8;
      this.#inFlight.push({ deliverAt: this.now + delay, seq: this.#messageSeq++, message, senderIncarnation: from.incarnations });
    }
  }

  /** A dropped message: snapshots are reported failed and unreachable peers reported, as a transport would. */
  #drop(from: Member, message: Message, why: 'partition' | 'loss' | 'path full' | 'receiver down'): void {
    this.stats.messagesDropped++;
    if (message.type === 'snapshot' || message.type === 'append') this.#trace(`drop (${why}) ${describeMessage(message)}`);
    const sender = from.incarnation;
    if (sender === null) return;
    // Reports are steps: never between ready() and advance(), so they wait for the Ready's end.
    if (why !== 'loss') sender.deferredReports.push(() => sender.node.reportUnreachable(message.to));
    if (message.type === 'snapshot') sender.deferredReports.push(() => sender.node.reportSnapshot(message.to, 'failed'));
    if (this.#inReady !== from) this.#flushReports(from);
  }

  #flushReports(member: Member): void {
    const inc = member.incarnation;
    if (inc === null) return;
    const reports = inc.deferredReports;
    inc.deferredReports = [];
    for (const report of reports) report();
  }

  #deliverDue(): void {
    if (this.#inFlight.length === 0) return;
    const due: InFlight[] = [];
    const later: InFlight[] = [];
    for (const item of this.#inFlight) (item.deliverAt <= this.now ? due : later).push(item);
    if (due.length === 0) return;
    this.#inFlight = later;
    this.#network.shuffle(due);
    for (const item of due) {
      const message = item.message;
      const path = `${message.from}>${message.to}`;
      this.#pathLoad.set(path, (this.#pathLoad.get(path) ?? 1) - 1);
      const sender = this.#members.get(message.from);
      const senderAlive = sender !== undefined && sender.state === 'up' && sender.incarnations === item.senderIncarnation;
      const receiver = this.#members.get(message.to);
      if (receiver === undefined || receiver.state !== 'up' || this.#blocked.has(path)) {
        if (senderAlive) {
          this.#drop(sender, message, 'receiver down');
          this.#processReady(sender);
        } else {
          this.stats.messagesDropped++;
        }
        continue;
      }
      if (receiver.incarnation!.machine.membership.hasRemoved(message.from)) {
        // kvd's transport refuses a removed member's streams; the refusal tells it it was removed.
        this.stats.messagesDropped++;
        this.stats.removedMessagesDropped++;
        if (message.type !== 'heartbeat' && message.type !== 'heartbeat-response') this.#trace(`drop (sender removed) ${describeMessage(message)}`);
        if (senderAlive) this.#learnRemoved(sender, `member ${receiver.id} refused it`);
        continue;
      }
      this.#checkNotRemovedEverywhere(message);
      this.stats.messagesDelivered++;
      this.#trace(`deliver ${describeMessage(message)}`);
      if ((message.type === 'vote-response' || message.type === 'pre-vote-response') && !receiver.incarnation!.machine.confState.voters.includes(message.from)) {
        const role = receiver.incarnation!.node.status().role;
        if (role === 'candidate' || role === 'pre-candidate') this.stats.votesFromOutsideConfiguration++;
      }
      if (message.type === 'pre-vote-response' && !message.reject) {
        const key = `${message.to}@${message.term}`;
        const granted = this.#preVoteGrants.get(key) ?? new Set<NodeId>();
        granted.add(message.from);
        this.#preVoteGrants.set(key, granted);
      }
      receiver.incarnation!.node.step(message);
      this.#afterInput(receiver, 'step');
      if (message.type === 'snapshot' && senderAlive && sender.state === 'up') {
        sender.incarnation!.node.reportSnapshot(message.to, 'finished');
        this.#afterInput(sender, 'report-snapshot');
      }
    }
  }

  // ---------------------------------------------------------------- Ready processing

  /**
   * No message from a removed member is delivered once every running member applied its removal
   * (kvd's transport refuses a removed member's streams; modelled by the receiver's drop).
   */
  #checkNotRemovedEverywhere(message: Message): void {
    if (!this.#removed.has(message.from)) return;
    for (const other of this.#members.values()) {
      if (other.id === message.from || other.state !== 'up') continue;
      if (!other.incarnation!.machine.membership.hasRemoved(message.from)) return;
    }
    throw new SimFailure(`removed member ${message.from}'s ${message.type} delivered to ${message.to} after every running member applied its removal`);
  }

  #afterInput(member: Member, _what: string): void {
    if (member.state !== 'up') return;
    this.#processReady(member);
    if (member.state !== 'up') return;
    this.#checkMember(member);
  }

  #processReady(member: Member): void {
    for (let rounds = 0; member.state === 'up' && member.incarnation!.node.hasReady(); rounds++) {
      check(rounds < READY_ROUNDS_MAX, `member ${member.id}: hasReady() still true after ${READY_ROUNDS_MAX} rounds`);
      const outer = this.#inReady;
      this.#inReady = member;
      try {
        this.#handleReady(member);
      } finally {
        this.#inReady = outer;
      }
      this.#flushReports(member);
    }
  }

  #handleReady(member: Member): void {
    const inc = member.incarnation!;
    const node = inc.node;
    const durable = member.durable;
    const ready = node.ready();
    // A leader in 'before-persist' mode sends this Ready's messages before writing its entries
    // (as kvd's raft-node.ts does), and may crash in between.
    const sendsFirst = this.params.leaderSends === 'before-persist' && node.status().role === 'leader';
    const crashPoint =
      this.#phase === 'chaos' && this.#disk.chance(this.params.crashInReadyRate)
        ? sendsFirst
          ? this.#disk.pick(['before-persist', 'sent-before-persist', 'after-persist', 'after-send', 'after-apply'] as const)
          : this.#disk.pick(['before-persist', 'after-persist', 'after-send', 'after-apply'] as const)
        : null;
    if (ready.softState !== undefined) this.#trace(`member ${member.id} soft state: ${ready.softState.role}, leader ${ready.softState.leader}`);
    if (crashPoint === 'before-persist') return this.#crash(member, 'in Ready before persisting');
    if (sendsFirst) {
      check(ready.snapshot === undefined, `member ${member.id}: a leader's Ready carries a snapshot to install`);
      for (const message of ready.messages) this.#send(member, message);
      if (crashPoint === 'sent-before-persist') return this.#crash(member, 'in Ready after the leader sent, before it persisted');
    }

    // 1. Persist: snapshot, entries, hard state (one sync covers all when needed).
    if (ready.snapshot !== undefined) {
      const snapshot = ready.snapshot;
      const current = durable.snapshot?.metadata.index ?? 0;
      check(snapshot.metadata.index >= current, `member ${member.id}: Ready snapshot ${snapshot.metadata.index} older than durable snapshot ${current}`);
      durable.snapshot = snapshot;
      durable.entries = [];
      inc.storage.applySnapshot(snapshot);
      this.#trace(`member ${member.id} persists snapshot (${snapshot.metadata.index},${snapshot.metadata.term})`);
    }
    if (ready.entries.length > 0) {
      this.#persistEntries(member, ready.entries);
      inc.storage.append(ready.entries);
      this.#checkLogMatching(member, ready.entries);
    }
    if (ready.hardState !== undefined) {
      const hs = ready.hardState;
      const previous = inc.unsyncedHardState ?? durable.hardState;
      check(hs.term >= previous.term, `member ${member.id}: hard state term went back ${previous.term} → ${hs.term}`);
      check(hs.term > previous.term || previous.vote === NO_NODE || hs.vote === previous.vote, `member ${member.id}: vote changed within term ${hs.term}: ${previous.vote} → ${hs.vote}`);
      inc.storage.setHardState(hs);
      const termOrVoteChanged = hs.term !== previous.term || hs.vote !== previous.vote;
      check(!termOrVoteChanged || ready.mustSync, `member ${member.id}: term/vote changed but mustSync is false`);
      inc.unsyncedHardState = hs;
    }
    check(ready.entries.length === 0 || ready.mustSync, `member ${member.id}: entries to persist but mustSync is false`);
    if (ready.mustSync || ready.snapshot !== undefined) this.#sync(member);
    // Whatever the core committed so far, it counted under the configuration applied before this
    // Ready's entries (and its own new entries are durable now).
    this.#checkCommitQuorum(member);
    // Contract check: messages may only depend on durable state (a leader that sent first: the
    // state they depend on must be durable by now, before anything they cause comes back).
    for (const message of ready.messages) this.#checkSendable(member, message);
    if (crashPoint === 'after-persist') return this.#crash(member, 'in Ready after persisting, before sending');

    // 2. Install a snapshot into the state machine (a pipelined applier first finishes what it was handed).
    if (ready.snapshot !== undefined) {
      if (inc.applyQueue.length > 0) this.#applyQueued(member, inc.applyQueue.length);
      if (member.state !== 'up') return;
      this.#installSnapshot(member, ready.snapshot);
    }

    // 3. Send; forwarded proposals the leader refused answer their waiters at once.
    if (!sendsFirst) for (const message of ready.messages) this.#send(member, message);
    for (const refused of ready.refusedProposals) this.#client.onRefused({ member: member.id, incarnation: member.incarnations, data: refused.data, reason: refused.reason });
    if (crashPoint === 'after-send') return this.#crash(member, 'in Ready after sending, before applying');

    // 4. Apply committed entries (or hand them to the pipelined applier), collect read states.
    if (this.params.apply === 'pipelined') {
      inc.applyQueue.push(...ready.committedEntries);
      for (const readState of ready.readStates) this.#onReadState(member, readState.context, readState.index);
      if (crashPoint === 'after-apply') return this.#crash(member, 'in Ready after queueing for apply, before advance');
      node.advance({ apply: 'pending' });
      // Back-pressure, as the member's bounded apply backlog: the loop waits for the applier.
      if (inc.applyQueue.length > APPLY_BACKLOG_MAX) this.#applyQueued(member, inc.applyQueue.length);
    } else {
      for (const entry of ready.committedEntries) {
        this.#apply(member, entry);
        if (member.state !== 'up') return;
      }
      for (const readState of ready.readStates) this.#onReadState(member, readState.context, readState.index);
      if (crashPoint === 'after-apply') return this.#crash(member, 'in Ready after applying, before advance');
      node.advance();
    }
    if (member.state !== 'up') return;
    this.#answerReads(member);
    this.#maybeSnapshot(member);
  }

  /** Pipelined apply: every member with queued entries applies a random prefix when its next apply step is due. */
  #applySteps(): void {
    for (const member of [...this.#members.values()]) {
      if (member.state !== 'up') continue;
      const inc = member.incarnation!;
      if (inc.applyQueue.length === 0 || inc.nextApplyAt > this.now) continue;
      const [lo, hi] = this.params.applyDelayMicroticks;
      inc.nextApplyAt = this.now + this.#disk.between(lo, hi);
      this.#applyQueued(member, this.#disk.between(1, inc.applyQueue.length));
      if (member.state !== 'up') continue;
      this.#answerReads(member);
      this.#maybeSnapshot(member);
      this.#afterInput(member, 'applied');
    }
  }

  /** Applies the first `count` queued entries in order and reports them to the core. */
  #applyQueued(member: Member, count: number): void {
    const inc = member.incarnation!;
    const entries = inc.applyQueue.splice(0, count);
    if (entries.length === 0) return;
    for (const entry of entries) {
      this.#apply(member, entry);
      if (member.state !== 'up') return;
    }
    inc.node.appliedTo(entries[entries.length - 1].index);
    this.#trace(`member ${member.id} applied through ${entries[entries.length - 1].index}${inc.applyQueue.length > 0 ? ` (${inc.applyQueue.length} still queued)` : ''}`);
  }

  #sync(member: Member): void {
    const inc = member.incarnation!;
    if (inc.unsyncedHardState !== null) {
      const hardState = inc.unsyncedHardState;
      member.durable.hardState = hardState;
      inc.unsyncedHardState = null;
      if (hardState.vote !== NO_NODE) {
        const key = `${member.id}@${hardState.term}`;
        const earlier = this.#votesCast.get(key);
        check(earlier === undefined || earlier === hardState.vote, `member ${member.id} durably voted for ${earlier} and then ${hardState.vote} in term ${hardState.term}`);
        this.#votesCast.set(key, hardState.vote);
      }
    }
  }

  #persistEntries(member: Member, entries: readonly Entry[]): void {
    const durable = member.durable;
    for (let i = 1; i < entries.length; i++) check(entries[i].index === entries[i - 1].index + 1, `member ${member.id}: Ready entries not contiguous`);
    const first = entries[0].index;
    const snapIndex = durable.snapshot?.metadata.index ?? 0;
    check(first > snapIndex, `member ${member.id}: Ready entry ${first} at or below snapshot ${snapIndex}`);
    const base = snapIndex + 1;
    check(first <= base + durable.entries.length, `member ${member.id}: Ready entries start at ${first}, leaving a gap after ${base + durable.entries.length - 1}`);
    const keep = first - base;
    if (keep < durable.entries.length) {
      // Truncating a suffix: it must not contain a committed entry.
      const truncated = durable.entries[keep];
      check(truncated.index > durable.hardState.commit, `member ${member.id}: truncates entry ${truncated.index} at or below its durable commit ${durable.hardState.commit}`);
      for (const dropped of durable.entries.slice(keep)) {
        const committed = this.#committed.get(dropped.index);
        check(committed === undefined || committed.hash !== entryHash(dropped), `member ${member.id}: truncates committed entry ${dropped.index} (term ${dropped.term})`);
      }
      durable.entries.length = keep;
    }
    durable.entries.push(...entries);
  }

  /** Messages sent out must be justified by durable state (the Ready contract). */
  #checkSendable(member: Member, message: Message): void {
    const durable = member.durable;
    if (message.type === 'vote-response' && !message.reject) {
      check(
        durable.hardState.term === message.term && durable.hardState.vote === message.to,
        `member ${member.id} grants its vote to ${message.to} in term ${message.term} but durable hard state is term ${durable.hardState.term} vote ${durable.hardState.vote}`,
      );
    }
    if (message.type !== 'pre-vote' && message.type !== 'pre-vote-response' && message.term > 0) {
      check(durable.hardState.term >= message.term, `member ${member.id} sends ${message.type} in term ${message.term} before persisting the term (durable ${durable.hardState.term})`);
    }
    if (message.type === 'append-response' && !message.reject) {
      check(lastDurableIndex(durable) >= message.index, `member ${member.id} acknowledges index ${message.index} but has only ${lastDurableIndex(durable)} durable`);
    }
  }

  #installSnapshot(member: Member, snapshot: Snapshot): void {
    const inc = member.incarnation!;
    const decoded = decodeMachine(snapshot.data);
    const index = snapshot.metadata.index;
    check(decoded.applied === index, `snapshot data index ${decoded.applied} != metadata ${index}`);
    check(index >= inc.machine.applied, `member ${member.id}: snapshot ${index} below applied ${inc.machine.applied}`);
    const committed = this.#committed.get(index);
    check(committed !== undefined || index === 0, `member ${member.id}: installs snapshot at ${index}, which no member has applied`);
    if (committed !== undefined) {
      check(committed.chainHash === decoded.chainHash, `member ${member.id}: snapshot at ${index} does not match the committed state`);
      check(committed.term === snapshot.metadata.term, `member ${member.id}: snapshot term ${snapshot.metadata.term} at ${index} != committed term ${committed.term}`);
    }
    let configIndex = -1;
    let config: string | undefined = undefined;
    for (const [at, key] of this.#configurationAt) {
      if (at <= index && at > configIndex) {
        configIndex = at;
        config = key;
      }
    }
    if (config !== undefined) {
      check(config === confStateKey(snapshot.metadata.confState), `member ${member.id}: snapshot at ${index} carries ${confStateKey(snapshot.metadata.confState)} but the configuration there is ${config}`);
    }
    let recordsIndex = -1;
    for (const at of this.#membershipAt.keys()) if (at <= index && at > recordsIndex) recordsIndex = at;
    const records = JSON.stringify(decoded.membership.toJson());
    check(recordsIndex >= 0 && this.#membershipAt.get(recordsIndex) === records, `member ${member.id}: snapshot at ${index} carries member records ${records} but the membership there is ${this.#membershipAt.get(recordsIndex)}`);
    inc.machine.applied = index;
    inc.machine.chainHash = decoded.chainHash;
    inc.machine.membership = decoded.membership;
    inc.machine.confState = snapshot.metadata.confState;
    inc.lastSnapshotIndex = index;
    this.#checkMembershipModel(member, inc.machine, `snapshot ${index}`);
    this.stats.snapshotsInstalled++;
    // kvd's member stops when it installs a snapshot in which it was removed.
    if (index > 0 && decoded.membership.hasRemoved(member.id)) this.#learnRemoved(member, `installed snapshot ${index} in which it was removed`);
    this.#noteMembership(snapshot.metadata.confState);
  }

  #apply(member: Member, entry: Entry): void {
    const inc = member.incarnation!;
    const machine = inc.machine;
    check(entry.index === machine.applied + 1, `member ${member.id}: applies entry ${entry.index} after ${machine.applied}`);
    machine.chainHash = chain(machine.chainHash, entry);
    machine.applied = entry.index;
    const hash = entryHash(entry);
    const known = this.#committed.get(entry.index);
    if (known === undefined) {
      this.#committed.set(entry.index, { term: entry.term, hash, chainHash: machine.chainHash });
      if (entry.index > this.#maxCommitted) this.#maxCommitted = entry.index;
    } else {
      check(
        known.term === entry.term && known.hash === hash && known.chainHash === machine.chainHash,
        `state machine safety: member ${member.id} applies at ${entry.index} term ${entry.term} but another member applied term ${known.term}${known.hash === hash ? ' (same entry, different history)' : ''}`,
      );
    }
    if (entry.type === 'conf-change') {
      this.#applyConfChange(member, entry);
    } else if (entry.data.length > 0) {
      const value = decoder.decode(entry.data);
      const write = this.#writes.get(value);
      check(write !== undefined, `member ${member.id} applies unknown value ${value} at ${entry.index}`);
      if (write.ackIndex === null) {
        write.ackIndex = entry.index;
        this.stats.writesAcked++;
        this.#outstandingWrites = this.#outstandingWrites.filter((w) => w !== write);
        if (entry.index > this.#maxAckedIndex) this.#maxAckedIndex = entry.index;
      }
    }
  }

  /**
   * A committed conf change, applied as kvd's applier does: decided by the server's planConfChange
   * against this member's replicated membership; the plan's raftChange (if any) is handed to the
   * core, a refused change is a no-op (etcd applies it with no node). Checked: every member makes
   * the same decision at the same index and reaches the same membership records; the core's
   * configuration equals the state machine's model (nextConfState of the plan, independent of the
   * core) unless the core skipped an older change, and the model equals what the membership says.
   */
  #applyConfChange(member: Member, entry: Entry): void {
    const inc = member.incarnation!;
    const machine = inc.machine;
    const change = decodeConfChange(entry.data);
    const context = decodeConfContext(change.context);
    check(context !== undefined, `member ${member.id}: conf change ${entry.index} carries no valid ConfContext`);
    const plan = machine.membership.plan(change, context, { maxLearners: this.params.maxLearners });
    const raftChange = plan.raftChange;
    check((raftChange === undefined) !== (plan.error === undefined), `member ${member.id}: plan at ${entry.index} has both or neither a raft change and an error`);
    const decision = raftChange !== undefined ? `${context.action} ${change.nodeId} → ${raftChange.type}` : `${context.action} ${change.nodeId} refused: ${plan.error?.code}`;
    const agreedDecision = this.#decisionAt.get(entry.index);
    if (agreedDecision === undefined) {
      this.#decisionAt.set(entry.index, decision);
      this.stats.confChangesApplied++;
      if (raftChange === undefined) this.stats.confChangesRefused++;
    } else {
      check(agreedDecision === decision, `membership decision divergence: member ${member.id} decided "${decision}" at ${entry.index}, another member "${agreedDecision}"`);
    }
    machine.membership.record(plan.records);
    const confState = machine.confState;
    const next = raftChange === undefined ? confState : nextConfState(confState, raftChange);
    if (raftChange !== undefined) {
      // The core must agree with the model unless it already restored a newer configuration from a
      // snapshot while this entry waited in the apply queue (then it skips the change, and the
      // snapshot's configuration replaces the machine's when the snapshot is installed).
      const skippedBefore = this.#confChangesSkipped;
      const core = inc.node.applyConfChange(raftChange, { index: entry.index });
      // A leader whose configuration shrank may commit at once, counting the new configuration.
      this.#checkCommitQuorum(member, next);
      if (this.#confChangesSkipped === skippedBefore) {
        check(confStateKey(core) === confStateKey(next), `member ${member.id}: core configuration ${confStateKey(core)} after conf change ${entry.index} differs from the state machine's ${confStateKey(next)}`);
      } else {
        check(this.params.apply === 'pipelined', `member ${member.id}: core skipped conf change ${entry.index} although it applies in the Ready`);
      }
    }
    machine.confState = next;
    machine.snapshotDue = true;
    this.#checkMembershipModel(member, machine, `conf change ${entry.index}`);
    check(next.voters.length >= this.params.votersMin, `minimum of voters: member ${member.id} has ${confStateKey(next)} after conf change ${entry.index} (the client keeps at least ${this.params.votersMin})`);
    // Every member must reach the same configuration and the same member records at the same index.
    const key = confStateKey(next);
    const agreed = this.#configurationAt.get(entry.index);
    if (agreed === undefined) this.#configurationAt.set(entry.index, key);
    else check(agreed === key, `configuration divergence: member ${member.id} has ${key} after conf change ${entry.index}, another member had ${agreed}`);
    const records = JSON.stringify(machine.membership.toJson());
    const agreedRecords = this.#membershipAt.get(entry.index);
    if (agreedRecords === undefined) this.#membershipAt.set(entry.index, records);
    else check(agreedRecords === records, `membership divergence: member ${member.id} has records ${records} after conf change ${entry.index}, another member had ${agreedRecords}`);
    this.#trace(`member ${member.id} applies conf change ${entry.index} (request ${context.requestId}): ${decision} → voters [${next.voters.join(',')}] learners [${next.learners.join(',')}]`);
    this.#client.onApplied({ member: member.id, incarnation: member.incarnations, requestId: context.requestId, error: plan.error?.code });
    if (raftChange?.type === 'remove-node') {
      this.#removed.add(raftChange.nodeId);
      if (raftChange.nodeId === member.id) this.#learnRemoved(member, 'applied its own removal');
    }
    this.#noteMembership(next);
  }

  /** The state machine's configuration model equals what its replicated membership describes. */
  #checkMembershipModel(member: Member, machine: MachineState, where: string): void {
    const described = confStateKey(machine.membership.confState());
    const model = confStateKey(machine.confState);
    check(described === model, `member ${member.id}: membership records describe ${described} but the configuration model is ${model} (${where})`);
  }

  /** Creates members that a committed configuration names but that do not exist yet; each starts after an operator delay. */
  #noteMembership(confState: ConfState): void {
    for (const memberId of [...confState.voters, ...confState.learners]) {
      if (this.#members.has(memberId) || this.#removed.has(memberId)) continue;
      const [lo, hi] = this.params.newMemberStartTicks;
      const startAt = this.now + this.#faults.between(lo, hi) * MICROTICKS_PER_TICK;
      this.#addMember(memberId, { hardState: { term: 0, vote: NO_NODE, commit: 0 }, snapshot: null, entries: [] }, startAt);
    }
  }

  #maybeSnapshot(member: Member): void {
    const inc = member.incarnation!;
    const machine = inc.machine;
    // With firstSnapshot 'immediate' the first snapshot is taken at once and compacted fully, so
    // new members get a real snapshot; with 'periodic' they start from the index-0 bootstrap
    // marker (the membership snapshot) and replicate from index 1.
    const first = this.params.firstSnapshot === 'immediate' && inc.lastSnapshotIndex === 0 && machine.applied > 0;
    if (!first && !machine.snapshotDue && machine.applied - inc.lastSnapshotIndex < this.params.snapshotEvery) return;
    this.#sync(member);
    const durable = member.durable;
    check(durable.hardState.commit >= machine.applied, `member ${member.id}: applied ${machine.applied} beyond durable commit ${durable.hardState.commit}`);
    const snapshot = inc.storage.createSnapshot({ index: machine.applied, confState: machine.confState, data: encodeMachine(machine) });
    durable.snapshot = snapshot;
    durable.entries = durable.entries.filter((e) => e.index > snapshot.metadata.index);
    inc.lastSnapshotIndex = machine.applied;
    machine.snapshotDue = false;
    const compactTo = first ? machine.applied : machine.applied - this.params.compactKeep;
    if (compactTo >= inc.storage.firstIndex()) inc.storage.compact(compactTo);
  }

  // ---------------------------------------------------------------- reads and writes

  #onReadState(member: Member, contextBytes: Uint8Array, index: number): void {
    const context = decoder.decode(contextBytes);
    const read = this.#reads.get(context);
    check(read !== undefined, `member ${member.id} got a read state for unknown context ${context}`);
    check(read.member === member.id, `member ${member.id} got read state ${context} issued at member ${read.member}`);
    if (read.state !== 'issued' || read.incarnation !== member.incarnations) return;
    check(
      index >= read.requiredIndex,
      `linearizability: read ${context} issued at microtick ${read.issuedAt} on member ${member.id} got read index ${index}, but a write acknowledged before it is at index ${read.requiredIndex}`,
    );
    read.state = 'indexed';
    member.incarnation!.readsWaiting.push({ context, index });
    this.#trace(`member ${member.id} read state ${context} index ${index} (required ${read.requiredIndex})`);
  }

  #answerReads(member: Member): void {
    const inc = member.incarnation!;
    if (inc.readsWaiting.length === 0) return;
    const still: Array<{ context: string; index: number }> = [];
    for (const waiting of inc.readsWaiting) {
      if (inc.machine.applied < waiting.index) {
        still.push(waiting);
        continue;
      }
      const read = this.#reads.get(waiting.context)!;
      check(inc.machine.applied >= read.requiredIndex, `read ${waiting.context} answered at applied ${inc.machine.applied} < required ${read.requiredIndex}`);
      read.state = 'answered';
      this.#activeReads = Math.max(0, this.#activeReads - 1);
      this.stats.readsAnswered++;
    }
    inc.readsWaiting = still;
  }

  #newWrite(): void {
    const value = `w${this.#writeSeq++}`;
    const write: Write = { value, lastAttemptAt: -Infinity, retryTicks: this.params.retryTicks, ackIndex: null };
    this.#writes.set(value, write);
    this.#outstandingWrites.push(write);
    this.#attemptWrite(write);
  }

  #attemptWrite(write: Write): void {
    const up = this.#upMembers();
    if (up.length === 0) return;
    const leader = this.#currentLeader();
    const target = this.#phase === 'heal' && leader !== null ? leader : this.#clients.pick(up);
    write.lastAttemptAt = this.now;
    const outcome = target.incarnation!.node.propose(encoder.encode(write.value));
    this.#trace(`client propose ${write.value} at ${target.id}: ${outcome.ok ? 'ok' : outcome.reason}`);
    this.#afterInput(target, 'propose');
  }

  #clientActions(): void {
    const p = this.params;
    const c = this.#clients;
    if (this.#phase === 'chaos' && this.#outstandingWrites.length < OUTSTANDING_WRITES_MAX && c.chance(p.writeRate)) this.#newWrite();
    for (const write of [...this.#outstandingWrites]) {
      const retryTicks = this.#phase === 'heal' ? Math.min(write.retryTicks, HEAL_RETRY_TICKS_MAX) : write.retryTicks;
      if (write.ackIndex === null && this.now - write.lastAttemptAt >= retryTicks * MICROTICKS_PER_TICK) {
        write.retryTicks = Math.min(write.retryTicks * 2, RETRY_TICKS_MAX);
        this.#attemptWrite(write);
      }
    }
    // Reads whose request or answer was lost never come back: the client gives up after a while.
    if (this.#activeReads >= PENDING_READS_MAX) this.#activeReads = 0;
    if (this.#activeReads < PENDING_READS_MAX && c.chance(p.readRate)) this.#newRead();
    this.#client.tick(this.#phase);
    if (this.#phase === 'chaos' && c.chance(p.transferRate)) {
      const leader = this.#currentLeader();
      if (leader !== null) {
        const voters = leader.incarnation!.node.status().confState.voters.filter((v) => v !== leader.id);
        if (voters.length > 0) {
          const transferee = c.pick(voters);
          this.#trace(`client asks leader ${leader.id} to transfer leadership to ${transferee}`);
          leader.incarnation!.node.transferLeader(transferee);
          this.#afterInput(leader, 'transfer');
        }
      }
    }
  }

  #newRead(): void {
    const up = this.#upMembers();
    if (up.length === 0) return;
    const member = this.#clients.pick(up);
    const context = `r${this.#readSeq++}`;
    const outcome = member.incarnation!.node.readIndex(encoder.encode(context));
    // Recorded even when refused: a read state for it must still be correct.
    this.#reads.set(context, { member: member.id, incarnation: member.incarnations, issuedAt: this.now, requiredIndex: this.#maxAckedIndex, state: 'issued' });
    if (outcome.ok) this.#activeReads++;
    this.#trace(`client read ${context} at ${member.id}: ${outcome.ok ? 'ok' : outcome.reason} (required ${this.#maxAckedIndex})`);
    this.#afterInput(member, 'read-index');
  }

  // ---------------------------------------------------------------- checks

  /** The up member that believes it leads in the highest term, or null. */
  #currentLeader(): Member | null {
    let best: Member | null = null;
    let bestTerm = -1;
    for (const member of this.#members.values()) {
      if (member.state !== 'up') continue;
      const status = member.incarnation!.node.status();
      if (status.role === 'leader' && status.term > bestTerm) {
        best = member;
        bestTerm = status.term;
      }
    }
    return best;
  }

  #checkMember(member: Member): void {
    const inc = member.incarnation!;
    inc.node.assertInvariants();
    const status = inc.node.status();
    check(status.term >= inc.lastTerm, `member ${member.id}: term decreased ${inc.lastTerm} → ${status.term}`);
    check(status.commit >= inc.lastCommit, `member ${member.id}: commit decreased ${inc.lastCommit} → ${status.commit}`);
    check(status.commit <= status.lastIndex, `member ${member.id}: commit ${status.commit} beyond last index ${status.lastIndex}`);
    const commitAdvanced = status.commit > inc.lastCommit;
    inc.lastTerm = status.term;
    inc.lastCommit = status.commit;
    // Configurations take effect when applied (kvd, etcd): after every step the core's
    // configuration is exactly the one its state machine applied (a snapshot restored by the core
    // is installed within the same Ready).
    check(
      sameConfState(status.confState, inc.machine.confState),
      `configuration: member ${member.id}'s core uses ${confStateKey(status.confState)} but its state machine applied ${confStateKey(inc.machine.confState)} (applied ${inc.machine.applied})`,
    );
    if (status.role === 'leader') {
      const known = this.#leaderOfTerm.get(status.term);
      check(known === undefined || known === member.id, `election safety: members ${known} and ${member.id} both lead term ${status.term}`);
      if (known === undefined) {
        this.#leaderOfTerm.set(status.term, member.id);
        this.stats.leadersElected++;
        this.#trace(`member ${member.id} is leader of term ${status.term} (last index ${status.lastIndex})`);
      }
      if (inc.lastRole !== 'leader') {
        this.#checkElectionQuorum(member, status.term);
        this.#checkLeaderCompleteness(member, status.lastIndex, status.term);
      }
      this.#checkOneConfChangeInFlight(member);
    }
    inc.lastRole = status.role;
    // A leader dying right after its commit index moved is the moment that tests whether what it
    // counted as committed survives the next elections (Raft paper, figure 8).
    if (status.role === 'leader' && commitAdvanced && this.#phase === 'chaos' && this.#faults.chance(this.params.crashAfterCommitRate)) {
      this.#crash(member, 'leader crash right after its commit advanced');
    }
  }

  /**
   * A removed member or a learner is never counted for an election: a member that becomes leader
   * of `term` holds durable votes for it in that term from a majority of the voters of the
   * configuration its state machine applied (itself included), counting nobody outside it.
   */
  #checkElectionQuorum(member: Member, term: number): void {
    const { voters, learners } = member.incarnation!.machine.confState;
    const granted = voters.filter((voter) => voter === member.id || this.#votesCast.get(`${voter}@${term}`) === member.id);
    if (granted.length * 2 > voters.length) return;
    const outside = [...this.#votesCast].filter(([key, vote]) => vote === member.id && key.endsWith(`@${term}`)).map(([key]) => key.split('@')[0]).filter((voter) => !voters.some((v) => id(v) === voter));
    throw new SimFailure(
      `election quorum: member ${member.id} leads term ${term} with durable votes from [${granted.join(',')}] of the voters [${voters.join(',')}] (learners [${learners.join(',')}]); votes from outside the configuration: [${outside.join(',')}]`,
    );
  }

  /**
   * The same for pre-votes (thesis 9.6): with pre-vote on, a member starts a real election for
   * `term` only after a majority of the voters of its applied configuration (itself included)
   * granted it a pre-vote. Like etcd-io/raft, the core counts any grant it receives while a
   * pre-candidate in term-1: grants for `term` from any of its pre-vote rounds in term-1, and late
   * grants for term-1 itself (from rounds it ran in term-2, which carry its current term). So do
   * we; grants from members outside the configuration never count.
   */
  #checkPreVoteQuorum(member: Member, term: number): void {
    const inc = member.incarnation;
    if (inc === null) return;
    const { voters } = inc.machine.confState;
    const grants = new Set<NodeId>([...(this.#preVoteGrants.get(`${member.id}@${term}`) ?? []), ...(this.#preVoteGrants.get(`${member.id}@${term - 1}`) ?? [])]);
    const granted = voters.filter((voter) => voter === member.id || grants.has(voter));
    if (granted.length * 2 > voters.length) return;
    throw new SimFailure(
      `pre-vote quorum: member ${member.id} campaigns for term ${term} with pre-votes from [${granted.join(',')}] of the voters [${voters.join(',')}]; pre-votes from outside the configuration: [${[...grants].filter((g) => !voters.includes(g)).join(',')}]`,
    );
  }

  /**
   * Learners are never counted for commitment: an index a leader has just committed is durable (in
   * the WAL's entries, or under its snapshot) on a majority of the voters of the configuration its
   * state machine applied when the core counted (checked after each Ready's persist, before its
   * entries are applied, and right after each conf change the core applies: between those points
   * the configuration does not change). Learners and members outside that configuration (removed
   * ones) do not count, whatever they hold.
   */
  #checkCommitQuorum(member: Member, configuration?: ConfState): void {
    const inc = member.incarnation!;
    const status = inc.node.status();
    const commit = status.commit;
    if (commit <= inc.commitChecked) return;
    inc.commitChecked = commit;
    // A follower's commit index is the leader's word, not its own count.
    if (status.role !== 'leader') return;
    const term = inc.storage.term(commit);
    if (!term.ok) return; // at or below the leader's own compacted prefix: committed long ago
    const { voters, learners } = configuration ?? inc.machine.confState;
    const holds = (memberId: NodeId): boolean => {
      const other = this.#members.get(memberId);
      return other !== undefined && durableHolds(other.durable, commit, term.value);
    };
    const holders = voters.filter(holds);
    check(
      holders.length * 2 > voters.length,
      `commit quorum: leader ${member.id} committed ${commit} (term ${term.value}) but only [${holders.join(',')}] of its voters [${voters.join(',')}] hold it durably (learners holding it: [${learners.filter(holds).join(',')}])`,
    );
  }

  /**
   * Single-step membership changes are safe only one at a time (thesis 4.1): a leader may append a
   * conf change only once its state machine (and so its core's configuration) has applied every
   * earlier one. Checked against the application's applied index, not the core's belief: when the
   * newest conf change in the leader's log is its own (current term), no other conf change may sit
   * above the applied index. (Older terms' conf changes above it are legitimate: a new leader may
   * still be applying them, and the core refuses new ones until it has.)
   */
  #checkOneConfChangeInFlight(member: Member): void {
    const inc = member.incarnation!;
    const storage = inc.storage;
    const lo = Math.max(inc.machine.applied + 1, storage.firstIndex());
    const hi = storage.lastIndex();
    if (lo > hi) return;
    const entries = storage.entries(lo, hi + 1, Number.MAX_SAFE_INTEGER);
    if (!entries.ok) return;
    const pending = entries.value.filter((entry) => entry.type === 'conf-change');
    if (pending.length < 2) return;
    const newest = pending[pending.length - 1];
    check(
      newest.term !== inc.node.status().term,
      `membership safety: leader ${member.id} appended conf change ${newest.index} while conf change ${pending[pending.length - 2].index} was not applied (applied ${inc.machine.applied})`,
    );
  }

  #checkLeaderCompleteness(member: Member, lastIndex: number, term: number): void {
    const storage = member.incarnation!.storage;
    check(
      lastIndex >= this.#maxCommitted,
      `leader completeness: member ${member.id} leads term ${term} with last index ${lastIndex} < committed index ${this.#maxCommitted}`,
    );
    const hi = Math.min(storage.lastIndex(), this.#maxCommitted);
    for (let index = storage.firstIndex(); index <= hi; index++) {
      const committed = this.#committed.get(index);
      const local = storage.term(index);
      if (committed === undefined || !local.ok) continue;
      check(local.value === committed.term, `leader completeness: member ${member.id} leads term ${term} with entry ${index} of term ${local.value}, but the committed entry has term ${committed.term}`);
    }
  }

  #checkLogMatching(member: Member, entries: readonly Entry[]): void {
    const storage = member.incarnation!.storage;
    for (const entry of entries) {
      const previous = storage.term(entry.index - 1);
      const key = `${entry.index}:${entry.term}`;
      const hash = entryHash(entry);
      const seen = this.#entriesSeen.get(key);
      const previousTerm = previous.ok ? previous.value : -1;
      if (seen === undefined) {
        this.#entriesSeen.set(key, { hash, previousTerm });
        continue;
      }
      check(seen.hash === hash, `log matching: member ${member.id} has a different entry at (${entry.index}, term ${entry.term}) than another member`);
      check(
        previousTerm === -1 || seen.previousTerm === -1 || previousTerm === seen.previousTerm,
        `log matching: member ${member.id} has entry (${entry.index}, term ${entry.term}) after an entry of term ${previousTerm}; another member has it after term ${seen.previousTerm}`,
      );
      if (seen.previousTerm === -1 && previousTerm !== -1) seen.previousTerm = previousTerm;
    }
  }

  /**
   * Healed means: one leader, every client write committed, and its log fully committed and
   * applied by every member of its configuration. With both pre-vote and check-quorum disabled
   * only a quorum of voters must have caught up: like etcd-io/raft, a member then ignores a
   * leader of a lower term, so a member whose term ran ahead while partitioned and whose stale
   * configuration no longer names the current members can stay out forever (the cluster stays live).
   */
  #converged(): boolean {
    const leader = this.#currentLeader();
    if (leader === null) return false;
    const status = leader.incarnation!.node.status();
    if (this.#outstandingWrites.length > 0) return false;
    if (status.commit !== status.lastIndex) return false;
    if (leader.incarnation!.machine.applied !== status.commit) return false;
    const everyone = this.params.preVote === 'enabled' || this.params.checkQuorum === 'enabled';
    let votersCaughtUp = 0;
    for (const memberId of [...status.confState.voters, ...status.confState.learners]) {
      const member = this.#members.get(memberId);
      const other = member?.state === 'up' ? member.incarnation!.node.status() : null;
      const caughtUp =
        member !== undefined && other !== null && other.leader === leader.id && other.term === status.term && member.incarnation!.machine.applied === status.commit;
      if (!caughtUp && everyone) return false;
      if (caughtUp && status.confState.voters.includes(memberId)) votersCaughtUp++;
    }
    return votersCaughtUp * 2 > status.confState.voters.length;
  }

  #livenessReport(): string {
    const parts: string[] = [`outstanding writes ${this.#outstandingWrites.map((w) => w.value).join(',') || 'none'}`];
    for (const member of this.#members.values()) {
      if (member.state !== 'up') {
        parts.push(`${member.id}: ${member.state}`);
        continue;
      }
      const s = member.incarnation!.node.status();
      parts.push(`${member.id}: ${s.role} term ${s.term} leader ${s.leader} commit ${s.commit} applied ${member.incarnation!.machine.applied} last ${s.lastIndex} voters [${s.confState.voters.join(',')}] learners [${s.confState.learners.join(',')}]`);
    }
    return parts.join('; ');
  }
}

/** The configuration after a single-step change (the state machine's model, independent of the core). */
function nextConfState(confState: ConfState, change: ConfChange): ConfState {
  const without = (ids: readonly NodeId[]): NodeId[] => ids.filter((x) => x !== change.nodeId);
  switch (change.type) {
    case 'add-node':
      return { voters: [...without(confState.voters), change.nodeId], learners: without(confState.learners) };
    case 'add-learner-node':
      return confState.voters.includes(change.nodeId) ? confState : { voters: [...confState.voters], learners: [...without(confState.learners), change.nodeId] };
    case 'remove-node':
      return { voters: without(confState.voters), learners: without(confState.learners) };
    case 'update-node':
      return confState;
  }
}

/** Whether two configurations have the same voters and learners (order aside); allocation-free, as it runs after every step. */
function sameConfState(a: ConfState, b: ConfState): boolean {
  if (a.voters.length !== b.voters.length || a.learners.length !== b.learners.length) return false;
  for (const voter of a.voters) if (!b.voters.includes(voter)) return false;
  for (const learner of a.learners) if (!b.learners.includes(learner)) return false;
  return true;
}

function confStateKey(confState: ConfState): string {
  const sorted = (ids: readonly NodeId[]): string => [...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).join(',');
  return `voters [${sorted(confState.voters)}] learners [${sorted(confState.learners)}]`;
}

/** Whether `durable` holds the entry (index, term): in its synced entries, or under its snapshot (which only ever covers committed entries). */
function durableHolds(durable: Durable, index: number, term: number): boolean {
  if ((durable.snapshot?.metadata.index ?? 0) >= index) return true;
  const first = durable.entries.length > 0 ? durable.entries[0].index : 0;
  const entry = durable.entries[index - first];
  return entry !== undefined && entry.index === index && entry.term === term;
}

function lastDurableIndex(durable: Durable): number {
  if (durable.entries.length > 0) return durable.entries[durable.entries.length - 1].index;
  return durable.snapshot?.metadata.index ?? 0;
}

function assert(condition: unknown, why: string): asserts condition {
  if (!condition) throw new Error(`simulator bug: ${why}`);
}

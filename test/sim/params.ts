/**
 * The parameters of one simulation run, all derived from a single root seed through the `params`
 * stream, and their one-line-per-group rendering (printed before a run and with every failure).
 */
import { Prng } from './prng.js';

/** Microticks per nominal tick: the simulated clock runs in microticks; a member ticks every `tickPeriods` microticks. */
export const MICROTICKS_PER_TICK = 10;

/** Everything that varies between seeds. Times are in ticks unless the name says microticks. */
export interface SimParams {
  readonly seed: number;
  /** Voters of the bootstrapped cluster: 3 or 5. */
  readonly initialVoters: number;
  /** Whether the membership client changes the membership (membership-client.ts). */
  readonly membership: 'changing' | 'fixed';
  /** Upper bound on voters + learners the conf-change driver aims for. */
  readonly membersMax: number;
  /** Lower bound on voters the membership client keeps (it never proposes a removal below it; checked). */
  readonly votersMin: number;
  /** Learners allowed at once (the member's --max-learners, etcd's default is 1): drawn from 1..3. */
  readonly maxLearners: number;
  /** Delay between a member's addition being applied and its operator starting it, in ticks. */
  readonly newMemberStartTicks: readonly [number, number];
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly preVote: 'enabled' | 'disabled';
  readonly checkQuorum: 'enabled' | 'disabled';
  readonly maxAppendBytes: number;
  readonly maxInflightAppends: number;
  /** Tick period range of members, in microticks (members tick at different rates). */
  readonly tickPeriodMicroticks: readonly [number, number];
  /** Per-tick probability that one member's tick period is redrawn (including a "slow" member at 3x). */
  readonly rateChangeRate: number;
  /** Probability a message is lost. */
  readonly lossRate: number;
  /** Probability a message is delivered twice. */
  readonly duplicateRate: number;
  /** Message delay range in microticks; a delay spike multiplies by 8. */
  readonly delayMicroticks: readonly [number, number];
  readonly delaySpikeRate: number;
  /** Maximum messages in flight per directed path; further messages are dropped (and reported unreachable). */
  readonly pathCapacity: number;
  /** Per-tick probability that a partition starts (when none is active). */
  readonly partitionRate: number;
  readonly partitionTicks: readonly [number, number];
  /** Per-tick probability that one up member crashes. */
  readonly crashRate: number;
  /** Per-tick probability that the current leader crashes. */
  readonly leaderCrashRate: number;
  /** Probability that a leader crashes right after its commit index advances. */
  readonly crashAfterCommitRate: number;
  /** Probability that processing one Ready crashes the member at a random point in it. */
  readonly crashInReadyRate: number;
  readonly downTicks: readonly [number, number];
  /** The state machine snapshots after this many newly applied entries. */
  readonly snapshotEvery: number;
  /** 'immediate': snapshot and compact at the first applied entry; 'periodic': only every snapshotEvery. */
  readonly firstSnapshot: 'immediate' | 'periodic';
  /** Entries kept in memory below the snapshot index when compacting. */
  readonly compactKeep: number;
  /** Per-tick probability of a new client write / read / conf change / leadership transfer. */
  readonly writeRate: number;
  readonly readRate: number;
  readonly confChangeRate: number;
  readonly transferRate: number;
  /** Client retry interval for unacknowledged writes. */
  readonly retryTicks: number;
  /**
   * How members apply committed entries: 'in-ready' applies them inside the Ready before
   * advance(); 'pipelined' hands them to a queue applied later (as kvd's member does, overlapping
   * the next Ready's persist), advance({ apply: 'pending' }) then appliedTo() once applied.
   */
  readonly apply: 'in-ready' | 'pipelined';
  /** Pipelined apply: delay between apply steps of one member, in microticks. */
  readonly applyDelayMicroticks: readonly [number, number];
  /**
   * When a leader sends its Ready's messages: 'after-persist' (every member persists first) or
   * 'before-persist' (the leader sends its appends before writing them, as kvd's member does,
   * thesis §10.2.1; it may then crash between sending and persisting).
   */
  readonly leaderSends: 'after-persist' | 'before-persist';
  /** Length of the fault phase. */
  readonly chaosTicks: number;
  /** After healing, a leader must exist and every pending write must commit and be applied everywhere within this many ticks. */
  readonly livenessBoundTicks: number;
}

/** Options that shorten or lengthen runs (the test file uses smaller budgets than the CLI). */
export interface BudgetOptions {
  readonly chaosTicks: readonly [number, number];
}

/** Derives all parameters of `seed`. Deterministic. */
export function deriveParams(seed: number, budget: BudgetOptions): SimParams {
  const r = new Prng({ seed, name: 'params' });
  const initialVoters = r.chance(0.5) ? 3 : 5;
  const membership = r.chance(0.5) ? 'changing' : 'fixed';
  const electionTicks = r.between(5, 15);
  const heartbeatTicks = r.between(1, Math.min(3, electionTicks - 1));
  const periodLo = r.between(6, 10);
  const periodHi = periodLo + r.between(0, 6);
  const delayLo = r.between(1, 3);
  const delayHi = delayLo + r.between(0, 25);
  const lossRate = r.chance(0.2) ? 0 : Math.round(r.float() * 30) / 100;
  const partitionLo = r.between(5, 30);
  const downLo = r.between(2, 20);
  return {
    seed,
    initialVoters,
    membership,
    membersMax: initialVoters + 2,
    votersMin: 3,
    electionTicks,
    heartbeatTicks,
    preVote: r.chance(0.75) ? 'enabled' : 'disabled',
    checkQuorum: r.chance(0.75) ? 'enabled' : 'disabled',
    maxAppendBytes: r.pick([64, 256, 4096, 1 << 20]),
    maxInflightAppends: r.pick([1, 2, 4, 16, 256]),
    tickPeriodMicroticks: [periodLo, periodHi],
    rateChangeRate: r.pick([0, 0.01, 0.03]),
    lossRate,
    duplicateRate: r.pick([0, 0, 0.02, 0.1]),
    delayMicroticks: [delayLo, delayHi],
    delaySpikeRate: r.pick([0, 0.01, 0.05]),
    pathCapacity: r.pick([4, 16, 64]),
    partitionRate: r.pick([0, 0.01, 0.03, 0.06]),
    partitionTicks: [partitionLo, partitionLo + r.between(0, 60)],
    crashRate: r.pick([0, 0.002, 0.005, 0.01]),
    crashInReadyRate: r.pick([0, 0.001, 0.005]),
    leaderCrashRate: r.pick([0, 0.005, 0.02]),
    crashAfterCommitRate: r.pick([0, 0.01, 0.05]),
    downTicks: [downLo, downLo + r.between(0, 40)],
    snapshotEvery: r.pick([3, 10, 30, 100]),
    compactKeep: r.pick([0, 2, 10]),
    firstSnapshot: r.chance(0.5) ? 'immediate' : 'periodic',
    writeRate: r.pick([0.2, 0.5, 1]),
    readRate: r.pick([0.05, 0.2, 0.5]),
    confChangeRate: membership === 'changing' ? r.pick([0.02, 0.05, 0.1]) : 0,
    transferRate: r.pick([0, 0.002, 0.01]),
    retryTicks: r.between(5, 30),
    chaosTicks: r.between(budget.chaosTicks[0], budget.chaosTicks[1]),
    livenessBoundTicks: LIVENESS_BOUND_TICKS,
    // Drawn last so that the parameters above stay what they were for every seed.
    ...applyParams(r),
    ...membershipParams(r),
    leaderSends: r.chance(0.5) ? 'before-persist' : 'after-persist',
  };
}

function membershipParams(r: Prng): Pick<SimParams, 'maxLearners' | 'newMemberStartTicks'> {
  const maxLearners = r.between(1, 3);
  const lo = r.pick([0, 0, 5, 20]);
  return { maxLearners, newMemberStartTicks: [lo, lo + r.pick([0, 10, 40])] };
}

function applyParams(r: Prng): Pick<SimParams, 'apply' | 'applyDelayMicroticks'> {
  const apply = r.chance(0.3) ? 'in-ready' : 'pipelined';
  const lo = r.between(0, 8);
  return { apply, applyDelayMicroticks: [lo, lo + r.pick([0, 4, 20, 60])] };
}

/**
 * The liveness bound, in ticks after healing. Worst case per elected leader: a few election
 * timeouts (at most 2 × 15 ticks each, split votes, slow members at up to 3× period) plus catching
 * up lagging members through snapshots under bounded in-flight windows.
 */
export const LIVENESS_BOUND_TICKS = 400;

/** Renders the parameters for the log, one group per line. */
export function describeParams(p: SimParams): string {
  return [
    `seed=${p.seed}`,
    `  cluster: initialVoters=${p.initialVoters} membership=${p.membership} membersMax=${p.membersMax} votersMin=${p.votersMin} maxLearners=${p.maxLearners} newMemberStartTicks=[${p.newMemberStartTicks.join(',')}]`,
    `  raft: electionTicks=${p.electionTicks} heartbeatTicks=${p.heartbeatTicks} preVote=${p.preVote} checkQuorum=${p.checkQuorum} maxAppendBytes=${p.maxAppendBytes} maxInflightAppends=${p.maxInflightAppends}`,
    `  clocks: tickPeriodMicroticks=[${p.tickPeriodMicroticks.join(',')}] rateChangeRate=${p.rateChangeRate}`,
    `  network: loss=${p.lossRate} duplicate=${p.duplicateRate} delayMicroticks=[${p.delayMicroticks.join(',')}] spike=${p.delaySpikeRate} pathCapacity=${p.pathCapacity} partitionRate=${p.partitionRate} partitionTicks=[${p.partitionTicks.join(',')}]`,
    `  disk: crashRate=${p.crashRate} leaderCrashRate=${p.leaderCrashRate} crashAfterCommitRate=${p.crashAfterCommitRate} crashInReadyRate=${p.crashInReadyRate} downTicks=[${p.downTicks.join(',')}] snapshotEvery=${p.snapshotEvery} firstSnapshot=${p.firstSnapshot} compactKeep=${p.compactKeep}`,
    `  clients: writeRate=${p.writeRate} readRate=${p.readRate} confChangeRate=${p.confChangeRate} transferRate=${p.transferRate} retryTicks=${p.retryTicks}`,
    `  apply: ${p.apply} applyDelayMicroticks=[${p.applyDelayMicroticks.join(',')}] leaderSends=${p.leaderSends}`,
    `  budget: chaosTicks=${p.chaosTicks} livenessBoundTicks=${p.livenessBoundTicks}`,
  ].join('\n');
}

/**
 * Replacing a cluster member, safely and resumably: add the new member as a learner, let the
 * operator start it, wait until it has caught up with the leader, promote it, then remove the
 * old member. Voters never drop below the starting count, and at most one member is in flux.
 *
 * Resuming is the design, not an afterthought. Every round reads the membership, decides the
 * next step with a pure function of what it read ({@link planReplacement}), and takes that one
 * step. So a run interrupted anywhere (the process killed, a lost answer, a deadline) is
 * finished by running it again with the same arguments: it finds the new member by its peer
 * URLs and carries on from its state (unstarted, learner, voter), and it finds the old member
 * gone once it was removed.
 *
 * Membership writes are sent at most once (see cluster.ts). A write whose outcome is unknown
 * is never repeated blindly: the next round reads the membership and decides again. The only
 * refusals retried are those that mean "not applied, try later": "unhealthy cluster" (add,
 * remove), "not in sync" (promote), and a few times "Peer URLs already exists" when the
 * membership read does not show the URLs (it may be stale).
 *
 * The new member is added before the old one is removed, so the old one should still be
 * running: etcd 3.4 (strict reconfiguration check, the default) refuses to add a member while
 * any voter is down ("unhealthy cluster", retried here until the deadline). To replace a dead
 * member there, remove it first (`member remove`), then add the new one.
 *
 * Bounded: one deadline covers the whole run (default 10 min), every call's own deadline is
 * within it, and polling sleeps between {@link POLL_INTERVAL_MIN_MS} and
 * {@link POLL_INTERVAL_MAX_MS}.
 */
import { hexId, type Int64Like } from './codec.js';
import type { MemberAddRequest, MemberAddResult, MemberCallOptions, MemberListOptions, MemberListResult, Member, StatusResult } from './cluster.js';
import {
  CancelledError,
  GrpcCode,
  InvalidMemberUrlsError,
  KvError,
  LearnerNotReadyError,
  MemberNotFoundError,
  MemberNotLearnerError,
  MembershipError,
  NoLeaderError,
  PeerUrlsExistError,
  TimeoutError,
  UnavailableError,
  UnhealthyClusterError,
} from './errors.js';
import { peerUrlsProblem } from './peer-urls.js';
import { assert } from '../util/assert.js';

/** The cluster calls {@link replaceMember} makes: {@link ClusterApi} has them; tests fake them. */
export interface MembershipApi {
  memberList(options?: MemberListOptions): Promise<MemberListResult>;
  memberAdd(request: MemberAddRequest, options?: MemberCallOptions): Promise<MemberAddResult>;
  memberRemove(id: Int64Like, options?: MemberCallOptions): Promise<MemberListResult>;
  memberPromote(id: Int64Like, options?: MemberCallOptions): Promise<MemberListResult>;
  /** Maintenance.Status of the member at `endpoint` (a client URL), no failover. */
  status(endpoint: string, options?: MemberCallOptions): Promise<StatusResult>;
}

/** Time as {@link replaceMember} sees it (injected so tests need not wait). */
export interface Clock {
  /** Milliseconds on a monotonic scale. */
  now(): number;
  /** Resolves after `ms`, or early when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** The real clock: performance.now() and setTimeout. */
export const systemClock: Clock = {
  now: () => performance.now(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        resolve();
      }
      signal?.addEventListener('abort', done, { once: true });
    }),
};

/** Default deadline of a whole replacement. */
export const REPLACE_TIMEOUT_DEFAULT_MS = 10 * 60_000;
/** Default pause between two looks at the membership or the new member's progress. */
export const POLL_INTERVAL_DEFAULT_MS = 500;
/** Polling is never faster than this... */
export const POLL_INTERVAL_MIN_MS = 50;
/** ...nor slower than this. */
export const POLL_INTERVAL_MAX_MS = 5_000;
/** Deadline of each call within a replacement (capped by what is left of the run's deadline). */
const CALL_TIMEOUT_MS = 5_000;
/**
 * How many times in a row an add may be refused with "Peer URLs already exists" while the
 * membership read does not show the URLs (a member that read a stale membership, after an add
 * whose answer was lost) before the refusal is taken as final.
 */
const PEER_URLS_EXIST_REPEATS_MAX = 3;
/** How many distinct retry reasons are counted at once (see {@link retrying}). */
const RETRY_KEYS_MAX = 16;

/** What to replace with what. */
export interface ReplacementTarget {
  /** The member to replace: its name, or its id in hex as etcdctl prints it. */
  readonly old: string;
  /** Name of the new member (the name it will be started with). */
  readonly name: string;
  /** Peer URLs of the new member. They identify it when a run resumes. */
  readonly peerUrls: readonly string[];
}

/** The settings the new member must be started with (etcd's environment variable names). */
export interface MemberStartSettings {
  readonly ETCD_NAME: string;
  /** `name=peerURL` of every member, in membership order; unstarted members have no name. */
  readonly ETCD_INITIAL_CLUSTER: string;
  readonly ETCD_INITIAL_ADVERTISE_PEER_URLS: string;
  readonly ETCD_INITIAL_CLUSTER_STATE: 'existing';
}

/**
 * The settings member `id` must start with, given the membership, as etcdctl's `member add`
 * prints them: every peer URL of every member in membership order as `name=url`, with `name`
 * for member `id` and the (possibly empty) reported name for the others.
 */
export function startSettings(members: readonly Member[], member: { id: bigint; name: string; peerUrls: readonly string[] }): MemberStartSettings {
  const cluster = members.flatMap((other) => other.peerUrls.map((url) => `${other.id === member.id ? member.name : other.name}=${url}`));
  return {
    ETCD_NAME: member.name,
    ETCD_INITIAL_CLUSTER: cluster.join(','),
    ETCD_INITIAL_ADVERTISE_PEER_URLS: member.peerUrls.join(','),
    ETCD_INITIAL_CLUSTER_STATE: 'existing',
  };
}

/** The step a replacement is at, as {@link planReplacement} decides it. */
export type ReplaceStep = 'add' | 'wait-start' | 'promote' | 'remove-old' | 'done';

/** The decision of one round. */
export type ReplacePlan =
  | { readonly step: 'add'; readonly oldMember: Member }
  | { readonly step: 'wait-start'; readonly newMember: Member; readonly oldMember?: Member }
  | { readonly step: 'promote'; readonly newMember: Member; readonly oldMember?: Member }
  | { readonly step: 'remove-old'; readonly newMember: Member; readonly oldMember: Member }
  | { readonly step: 'done'; readonly newMember: Member }
  | { readonly step: 'refuse'; readonly reason: string };

/** A peer URL compared as etcd stores it: without surrounding space, scheme in lower case. */
function urlKey(url: string): string {
  const trimmed = url.trim();
  const colon = trimmed.indexOf(':');
  return colon < 0 ? trimmed : trimmed.slice(0, colon).toLowerCase() + trimmed.slice(colon);
}

/** A member has started once it reports its name and client URLs (etcd: once it published them). */
function hasStarted(member: Member): boolean {
  return member.name !== '' && member.clientUrls.length > 0;
}

function describe(member: Member): string {
  return member.name === '' ? hexId(member.id) : `${member.name} (${hexId(member.id)})`;
}

/** The members `old` names: by name, or by id when it is hex. */
function membersNamed(members: readonly Member[], old: string): Member[] {
  const id = /^[0-9a-fA-F]{1,16}$/.test(old) ? BigInt(`0x${old}`) : undefined;
  return members.filter((member) => member.name === old || member.id === id);
}

/**
 * Decides the next step of replacing `target.old` with the member that has `target.peerUrls`,
 * from the membership alone (pure). The new member is found by its peer URLs: absent → add;
 * not started (no name or client URLs yet) → wait for it to start; learner → catch up and promote; voter →
 * remove the old member if it is still there, else done. Refuses what it cannot safely go on
 * with: peer URLs shared with another member, a name clash, an ambiguous or missing old member.
 */
export function planReplacement(members: readonly Member[], target: ReplacementTarget): ReplacePlan {
  const wanted = new Set(target.peerUrls.map(urlKey));
  const holders = members.filter((member) => member.peerUrls.some((url) => wanted.has(urlKey(url))));
  if (holders.length > 1) return { step: 'refuse', reason: `the peer URLs ${target.peerUrls.join(',')} belong to several members: ${holders.map(describe).join(', ')}` };
  const newMember = holders[0];
  if (newMember !== undefined) {
    const has = new Set(newMember.peerUrls.map(urlKey));
    if (has.size !== wanted.size || [...wanted].some((url) => !has.has(url))) {
      return { step: 'refuse', reason: `member ${describe(newMember)} has the peer URLs ${newMember.peerUrls.join(',')}, not ${target.peerUrls.join(',')}` };
    }
    if (newMember.name !== '' && newMember.name !== target.name) {
      return { step: 'refuse', reason: `the peer URLs ${target.peerUrls.join(',')} belong to member ${describe(newMember)}, not to ${target.name}` };
    }
  }
  const named = membersNamed(members, target.old);
  if (named.length > 1) return { step: 'refuse', reason: `"${target.old}" names several members: ${named.map(describe).join(', ')}; give the id` };
  const oldMember = named[0];
  if (oldMember !== undefined && newMember !== undefined && oldMember.id === newMember.id) {
    return { step: 'refuse', reason: `${target.old} is the member with the new peer URLs: nothing to replace` };
  }
  if (newMember === undefined || !hasStarted(newMember)) {
    // The new member starts with ETCD_INITIAL_CLUSTER naming every member: names must differ.
    const clash = members.find((member) => member.name === target.name && member.id !== newMember?.id);
    if (clash !== undefined) return { step: 'refuse', reason: `member ${describe(clash)} already has the name ${target.name}; choose another name for the new member` };
  }
  if (newMember === undefined) {
    if (oldMember === undefined) return { step: 'refuse', reason: `no member ${target.old}` };
    return { step: 'add', oldMember };
  }
  if (!hasStarted(newMember)) return { step: 'wait-start', newMember, oldMember };
  if (newMember.isLearner) return { step: 'promote', newMember, oldMember };
  if (oldMember !== undefined) return { step: 'remove-old', newMember, oldMember };
  return { step: 'done', newMember };
}

/** Progress of a replacement, in the order it happens. `member` is always the new member. */
export type ReplaceEvent =
  /** A round decided a step other than the previous round's (the first round always reports). */
  | { readonly type: 'step'; readonly step: ReplaceStep; readonly resumed: boolean; readonly newMember?: Member; readonly oldMember?: Member }
  /** The new member was added as a learner. */
  | { readonly type: 'added'; readonly member: Member; readonly clusterId: bigint }
  /** The operator must now start the new member with these settings (once per run). */
  | { readonly type: 'start-required'; readonly member: Member; readonly settings: MemberStartSettings }
  /** The new member has started: it reports its name and client URLs. */
  | { readonly type: 'started'; readonly member: Member }
  /** The learner's applied index against the leader's last index (reported when either moves). */
  | { readonly type: 'catching-up'; readonly member: Member; readonly appliedIndex: bigint; readonly leaderIndex: bigint }
  /** The learner has applied everything the leader had when last asked. */
  | { readonly type: 'caught-up'; readonly member: Member; readonly appliedIndex: bigint; readonly leaderIndex: bigint }
  /** The new member is a voter. */
  | { readonly type: 'promoted'; readonly member: Member }
  /** The old member was removed. */
  | { readonly type: 'removed'; readonly member: Member; readonly clusterId: bigint }
  /**
   * A step (or reading the membership) did not complete and is tried again after a pause.
   * `attempt` counts the retries for the same step and reason since the last other event
   * (1 for the first).
   */
  | { readonly type: 'retrying'; readonly step: ReplaceStep | 'read-membership'; readonly reason: string; readonly attempt: number }
  /** Finished: the new member is a voter and the old one is not a member. */
  | { readonly type: 'done'; readonly member: Member };

/** Options of {@link replaceMember}. */
export interface ReplaceMemberOptions extends ReplacementTarget {
  /** Deadline of the whole run in ms (default {@link REPLACE_TIMEOUT_DEFAULT_MS}). */
  readonly timeoutMs?: number;
  /** Pause between polls in ms, clamped to [{@link POLL_INTERVAL_MIN_MS}, {@link POLL_INTERVAL_MAX_MS}]. Default 500. */
  readonly pollIntervalMs?: number;
  /** Receives progress; called synchronously, must not throw. */
  readonly onEvent?: (event: ReplaceEvent) => void;
  /** Stops the run (it throws CancelledError; run again to resume). */
  readonly signal?: AbortSignal;
  /** Default {@link systemClock}. */
  readonly clock?: Clock;
}

/** What a finished replacement did. */
export interface ReplaceResult {
  /** The new member, a voter. */
  readonly member: Member;
  /** The old member when this run removed it; undefined when it was already gone. */
  readonly removed?: Member;
}

/** A replacement that cannot go on safely as things are (see {@link planReplacement}). */
export class ReplaceRefusedError extends KvError {
  override name = 'ReplaceRefusedError';
  constructor(reason: string) {
    super('invalid-argument', { detail: reason });
  }
}

/** Mutable state of one run (the shell's; the plan stays a pure function of the membership). */
interface RunState {
  readonly api: MembershipApi;
  readonly target: ReplacementTarget;
  readonly clock: Clock;
  readonly deadline: number;
  readonly pollMs: number;
  readonly signal?: AbortSignal;
  readonly emit: (event: ReplaceEvent) => void;
  /** Members this run learnt are removed ("member not found") though a read still listed them. */
  readonly removedIds: Set<bigint>;
  /** Learners this run learnt are voters ("can only promote a learner member"). */
  readonly promotedIds: Set<bigint>;
  /** New members whose start settings were reported in this run. */
  readonly announcedIds: Set<bigint>;
  /** The membership the current round planned with (after the two sets above). */
  members: readonly Member[];
  /** What the run is doing, for the timeout message ("waiting for m4 to start"). */
  activity: string;
  removed?: Member;
  lastProgress?: string;
  /**
   * Retries reported since the last other event, by step and reason (so reasons that
   * alternate are each counted). Invariant: at most RETRY_KEYS_MAX entries.
   */
  readonly retries: Map<string, number>;
  peerUrlsExistRepeats: number;
}

/**
 * Replaces member `old` with a new member `name` at `peerUrls` (see the file comment), calling
 * `onEvent` with progress. The operator (or the caller) must start the new member when the
 * `start-required` event arrives. Safe to run again after any interruption: it resumes from the
 * membership it finds. Throws ReplaceRefusedError when it cannot go on safely, TimeoutError at
 * the deadline, CancelledError on abort, and refusals it does not retry (MembershipError).
 */
export async function replaceMember(api: MembershipApi, options: ReplaceMemberOptions): Promise<ReplaceResult> {
  if (options.name === '') throw new ReplaceRefusedError('the new member needs a name');
  const problem = peerUrlsProblem(options.peerUrls);
  if (problem !== undefined) throw new InvalidMemberUrlsError('member-bad-urls', { detail: problem });
  const clock = options.clock ?? systemClock;
  const pollMs = Math.min(POLL_INTERVAL_MAX_MS, Math.max(POLL_INTERVAL_MIN_MS, options.pollIntervalMs ?? POLL_INTERVAL_DEFAULT_MS));
  const state: RunState = {
    api,
    target: { old: options.old, name: options.name, peerUrls: options.peerUrls },
    clock,
    deadline: clock.now() + (options.timeoutMs ?? REPLACE_TIMEOUT_DEFAULT_MS),
    pollMs,
    signal: options.signal,
    emit: (event) => {
      if (event.type !== 'retrying') state.retries.clear();
      options.onEvent?.(event);
    },
    removedIds: new Set(),
    promotedIds: new Set(),
    announcedIds: new Set(),
    retries: new Map(),
    members: [],
    activity: 'reading the membership',
    peerUrlsExistRepeats: 0,
  };
  let previous: ReplaceStep | undefined;
  for (;;) {
    const plan = await planRound(state);
    if (plan.step === 'refuse') throw new ReplaceRefusedError(plan.reason);
    if (plan.step !== previous) {
      if (previous === 'wait-start' && 'newMember' in plan) state.emit({ type: 'started', member: plan.newMember });
      state.emit({ type: 'step', step: plan.step, resumed: previous === undefined && plan.step !== 'add', newMember: 'newMember' in plan ? plan.newMember : undefined, oldMember: 'oldMember' in plan ? plan.oldMember : undefined });
      previous = plan.step;
    }
    state.activity = activityOf(plan, state.target);
    switch (plan.step) {
      case 'done':
        state.emit({ type: 'done', member: plan.newMember });
        return { member: plan.newMember, removed: state.removed };
      case 'add':
        await addLearner(state);
        break;
      case 'wait-start':
        await waitForStart(state, plan.newMember);
        break;
      case 'promote':
        await catchUpAndPromote(state, plan.newMember);
        break;
      case 'remove-old':
        await removeOld(state, plan.oldMember);
        break;
    }
  }
}

/** What a step waits for, in words. */
function activityOf(plan: Exclude<ReplacePlan, { step: 'refuse' }>, target: ReplacementTarget): string {
  switch (plan.step) {
    case 'add':
      return `adding ${target.name}`;
    case 'wait-start':
      return `waiting for ${target.name} to be started with the settings printed`;
    case 'promote':
      return `waiting for ${target.name} to catch up and be promoted`;
    case 'remove-old':
      return `removing ${describe(plan.oldMember)}`;
    case 'done':
      return 'finishing';
  }
}

/** Checks the deadline and the signal; returns the time left in ms. */
function timeLeft(state: RunState): number {
  if (state.signal?.aborted === true) throw new CancelledError('internal', { detail: 'replace canceled: run it again to resume' });
  const left = state.deadline - state.clock.now();
  if (left <= 0) throw new TimeoutError('timeout', { detail: `replace timed out ${state.activity}: run it again to resume` });
  return left;
}

/** Per-call options within the run's deadline. */
function callOptions(state: RunState): MemberCallOptions {
  return { timeoutMs: Math.max(1, Math.min(CALL_TIMEOUT_MS, timeLeft(state))), signal: state.signal };
}

/** Sleeps one poll interval (or what is left of the deadline). */
async function pause(state: RunState): Promise<void> {
  await state.clock.sleep(Math.min(state.pollMs, timeLeft(state)), state.signal);
}

/** Reads the membership (retrying a failed read after a pause) and plans. */
async function planRound(state: RunState): Promise<ReplacePlan> {
  for (;;) {
    let list: MemberListResult;
    try {
      // Linearizable: a member's own applied list can lag a change this run just made (a stale
      // list planned the same step twice).
      list = await state.api.memberList({ ...callOptions(state), linearizable: true });
    } catch (error: unknown) {
      if (!transient(error, state)) throw error;
      timeLeft(state); // past the deadline: report that, not the failed read
      retrying(state, 'read-membership', `cannot read the membership: ${message(error)}`);
      await pause(state);
      continue;
    }
    state.members = list.members
      .filter((member) => !state.removedIds.has(member.id))
      .map((member) => (state.promotedIds.has(member.id) && member.isLearner ? { ...member, isLearner: false } : member));
    return planReplacement(state.members, state.target);
  }
}

/** Reports a retry, counting the ones for the same step and reason since the last other event. */
function retrying(state: RunState, step: ReplaceStep | 'read-membership', reason: string): void {
  const key = `${step}\n${reason}`;
  const attempt = (state.retries.get(key) ?? 0) + 1;
  // Reasons quote server errors; should they vary without end, counting starts over.
  if (!state.retries.has(key) && state.retries.size >= RETRY_KEYS_MAX) state.retries.clear();
  state.retries.set(key, attempt);
  assert(state.retries.size <= RETRY_KEYS_MAX, 'retry counts are bounded');
  state.emit({ type: 'retrying', step, reason, attempt });
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Whether a call failed in a way worth trying again: the connection, the deadline or the
 * leader, never a refusal (MembershipError), a permission or an unimplemented call. For a
 * write it means the outcome is unknown (it may have been applied): the next round reads the
 * membership to find out.
 */
function transient(error: unknown, state: RunState): boolean {
  if (error instanceof MembershipError) return false;
  // Cancelled by the server's side (the member answering went away, e.g. the member this run
  // just removed exiting mid-call) rather than by the caller: try again.
  if (error instanceof CancelledError) return state.signal?.aborted !== true;
  if (error instanceof UnavailableError || error instanceof TimeoutError || error instanceof NoLeaderError) return true;
  return error instanceof KvError && (error.code === 'leader-changed' || error.code === 'stopped' || error.grpcCode === GrpcCode.UNAVAILABLE || error.grpcCode === GrpcCode.DEADLINE_EXCEEDED);
}

async function addLearner(state: RunState): Promise<void> {
  try {
    const added = await state.api.memberAdd({ peerUrls: state.target.peerUrls, isLearner: true }, callOptions(state));
    state.peerUrlsExistRepeats = 0;
    state.emit({ type: 'added', member: added.member, clusterId: added.header.clusterId });
  } catch (error: unknown) {
    if (error instanceof UnhealthyClusterError) {
      retrying(state, 'add', error.message);
      await pause(state);
      return;
    }
    if (error instanceof PeerUrlsExistError && state.peerUrlsExistRepeats < PEER_URLS_EXIST_REPEATS_MAX) {
      // The membership read did not show the URLs: it may be stale (an earlier add applied).
      state.peerUrlsExistRepeats += 1;
      retrying(state, 'add', `${error.message}: reading the membership again`);
      await pause(state);
      return;
    }
    if (!transient(error, state)) throw error;
    retrying(state, 'add', `outcome unknown (${message(error)}): reading the membership again`);
    await pause(state);
  }
}

async function waitForStart(state: RunState, member: Member): Promise<void> {
  if (!state.announcedIds.has(member.id)) {
    state.announcedIds.add(member.id);
    const settings = startSettings(state.members, { id: member.id, name: state.target.name, peerUrls: member.peerUrls });
    state.emit({ type: 'start-required', member, settings });
  }
  await pause(state);
}

/** One look at the learner's progress, then a promote when it has caught up (or when progress cannot be read). */
async function catchUpAndPromote(state: RunState, member: Member): Promise<void> {
  const progress = await readProgress(state, member);
  if (progress !== undefined) {
    const caughtUp = progress.appliedIndex >= progress.leaderIndex;
    const key = `${progress.appliedIndex}/${progress.leaderIndex}`;
    if (caughtUp) {
      state.emit({ type: 'caught-up', member, ...progress });
    } else {
      if (key !== state.lastProgress) state.emit({ type: 'catching-up', member, ...progress });
      state.lastProgress = key;
      await pause(state);
      return;
    }
  }
  try {
    await state.api.memberPromote(member.id, callOptions(state));
    state.emit({ type: 'promoted', member: { ...member, isLearner: false } });
  } catch (error: unknown) {
    if (error instanceof MemberNotLearnerError) {
      // Promoted already: by an attempt whose answer was lost, or by kvd's auto-promotion.
      state.promotedIds.add(member.id);
      state.emit({ type: 'promoted', member: { ...member, isLearner: false } });
      return;
    }
    if (error instanceof LearnerNotReadyError) {
      retrying(state, 'promote', error.message);
      await pause(state);
      return;
    }
    if (!transient(error, state)) throw error;
    retrying(state, 'promote', `outcome unknown (${message(error)}): reading the membership again`);
    await pause(state);
  }
}

/**
 * The learner's applied index and the leader's last index, read leader first so that "applied
 * ≥ leader's index" means the learner has everything the leader had a moment before. Undefined
 * (reported as `retrying`) when a status cannot be read: the promote then lets the server judge.
 */
async function readProgress(state: RunState, member: Member): Promise<{ appliedIndex: bigint; leaderIndex: bigint } | undefined> {
  const endpoint = member.clientUrls[0];
  if (endpoint === undefined) return undefined;
  try {
    const first = await state.api.status(endpoint, callOptions(state));
    const leader = state.members.find((candidate) => candidate.id === first.leader);
    const leaderEndpoint = leader?.clientUrls[0];
    if (leaderEndpoint === undefined) throw new KvError('no-leader', { detail: `the leader ${hexId(first.leader)} has no client URL` });
    const leaderStatus = await state.api.status(leaderEndpoint, callOptions(state));
    const learner = await state.api.status(endpoint, callOptions(state));
    return { appliedIndex: learner.raftAppliedIndex, leaderIndex: leaderStatus.raftIndex };
  } catch (error: unknown) {
    if (error instanceof CancelledError) throw error;
    retrying(state, 'promote', `cannot read the progress of ${state.target.name} (${message(error)}): asking the cluster to promote it`);
    return undefined;
  }
}

async function removeOld(state: RunState, old: Member): Promise<void> {
  try {
    const result = await state.api.memberRemove(old.id, callOptions(state));
    state.removedIds.add(old.id);
    state.removed = old;
    state.emit({ type: 'removed', member: old, clusterId: result.header.clusterId });
  } catch (error: unknown) {
    if (error instanceof MemberNotFoundError) {
      state.removedIds.add(old.id); // removed already (an earlier attempt whose answer was lost)
      return;
    }
    if (error instanceof UnhealthyClusterError) {
      retrying(state, 'remove-old', error.message);
      await pause(state);
      return;
    }
    if (!transient(error, state)) throw error;
    retrying(state, 'remove-old', `outcome unknown (${message(error)}): reading the membership again`);
    await pause(state);
  }
}

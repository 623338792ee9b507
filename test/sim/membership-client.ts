/**
 * The simulated membership client: one operator changing the cluster's membership while the
 * simulator injects faults, one operation at a time and one conf change at a time, each change
 * carrying a real {@link ConfContext} (the member's codec) so the members decide it with the
 * server's planner when it applies.
 *
 * Operations, with the member's pre-proposal checks (src/server/membership-ops.ts) run against the
 * current leader's applied membership:
 * - add a voter (readyToAddVoter, connected to every voter) or a learner (the learner limit);
 * - promote a learner once the leader's progress shows it in sync (the 90% rule);
 * - remove a voter (readyToRemoveVoter, the connected-quorum check, a minimum of voters) or a learner;
 * - remove the leader: hand leadership to the most caught-up other voter first, wait until the
 *   leader changed, then propose the removal (kvd's hand-over); or without hand-over;
 * - update a member's peer URLs;
 * - replace a voter: add a learner, wait until it started and is in sync, promote it, remove the old
 *   member, each round planned from the membership by the client library's own pure planner
 *   (src/client/membership.ts planReplacement), so a client restart (modelled) resumes it;
 * - and, rarely, changes that skip the pre-checks so the apply-time refusals (planConfChange)
 *   run: a learner over the limit, clashing peer URLs, a removed id re-added or removed again,
 *   promoting a voter or a learner that is not in sync.
 * Non-removal changes are sometimes proposed at a follower, which forwards them to its leader.
 *
 * A proposal is answered when the member it was proposed at applies it (kvd's waiter), refused at
 * once when the leader refuses a forwarded one, and given up after {@link CONF_CHANGE_TIMEOUT_TICKS}.
 *
 * Deviation from kvd, on purpose: after a hand-over kvd forwards the removal from the old leader
 * with the checks it made before the hand-over; the simulated client re-runs them at the new leader
 * and proposes there, so that the minimum number of voters is an exact invariant the simulator can
 * check (a forwarded removal may race with a given-up earlier removal that still commits).
 */
import { encodeConfChange } from '../../src/raft/raw-node.js';
import type { ProposeOutcome } from '../../src/raft/raw-node.js';
import type { ConfChange, ConfChangeType, Index, NodeId } from '../../src/raft/types.js';
import { LEARNER_READY_FRACTION, readyToAddVoter, readyToPromote, readyToRemoveVoter } from '../../src/server/membership-ops.js';
import type { MemberRecord } from '../../src/server/membership.js';
import { encodeConfContext, type MembershipAction } from '../../src/server/conf-context.js';
import { planReplacement, type ReplacementTarget, type ReplaceStep } from '../../src/client/membership.js';
import type { Member as ClientMember } from '../../src/client/cluster.js';
import type { Prng } from './prng.js';
import { clientUrl, peerUrl, type ReplicatedMembership } from './membership-model.js';

/** A proposed conf change not answered within this many ticks is given up on. */
export const CONF_CHANGE_TIMEOUT_TICKS = 150;
/** Deadline of a whole replacement, in ticks. */
const REPLACE_TIMEOUT_TICKS = 600;
/** Deadline of any other operation, in ticks (retries of proposals the core refused included). */
const OPERATION_TIMEOUT_TICKS = 2 * CONF_CHANGE_TIMEOUT_TICKS;
/** Per-tick probability that the client running a replacement restarts (loses all but its target). */
const CLIENT_RESTART_RATE = 0.01;
/** Probability that a change other than a removal is proposed at a follower (forwarded). */
const FORWARD_RATE = 0.3;
/** Weight of an operation that skips the pre-checks, relative to 1 for the others. */
const UNCHECKED_WEIGHT = 0.25;

/** What the client sees of one up member. */
export interface MemberView {
  readonly id: NodeId;
  readonly incarnation: number;
  readonly term: number;
  readonly membership: ReplicatedMembership;
  /** The leader's replication progress (empty on followers). */
  readonly progress: ReadonlyMap<NodeId, { readonly match: Index }>;
  /** Proposes at this member (a follower forwards to its leader); the host processes the Ready. */
  proposeConfChange(change: ConfChange): ProposeOutcome;
  transferLeader(transferee: NodeId): void;
}

/** What the simulator provides. */
export interface ClientHost {
  nowTicks(): number;
  /** The up member leading the highest term, or null. */
  leader(): MemberView | null;
  upMembers(): MemberView[];
  /** Whether the member ever ran (it published its name: etcd's IsStarted). */
  isStarted(id: NodeId): boolean;
  /** Whether `a` and `b` are both up and can reach each other (the transport is connected). */
  isConnected(a: NodeId, b: NodeId): boolean;
  /** A fresh member id; the member will run under `name`. */
  allocateMemberId(name: string | undefined): NodeId;
  nameOf(id: NodeId): string;
  trace(line: string): void;
}

export interface ClientParams {
  readonly confChangeRate: number;
  readonly membersMax: number;
  readonly votersMin: number;
  readonly maxLearners: number;
  readonly electionTicks: number;
}

/** Counters for the run's stats. */
export interface ClientStats {
  membershipOps: number;
  confChangesRefused: number;
  leaderHandovers: number;
  replacesCompleted: number;
  clientRestarts: number;
}

interface Proposal {
  readonly type: ConfChangeType;
  readonly action: MembershipAction;
  readonly nodeId: NodeId;
  readonly peerUrls: readonly string[];
}

interface Pending {
  readonly requestId: bigint;
  readonly proposer: NodeId;
  readonly incarnation: number;
  readonly atTick: number;
  readonly data: Uint8Array;
}

/** A hand-over in progress: leadership is being moved off `from` before it is removed. */
interface Handover {
  readonly from: NodeId;
  requested: boolean;
  deadline: number;
}

interface OperationBase {
  readonly label: string;
  readonly deadline: number;
  pending: Pending | null;
}

type Operation =
  | (OperationBase & {
      readonly shape: 'simple';
      readonly proposal: Proposal;
      readonly via: 'leader' | 'follower';
      /** The pre-check (undefined: the operation skips it on purpose). Returns why not, or undefined. */
      readonly check: ((leader: MemberView) => string | undefined) | undefined;
    })
  | (OperationBase & { readonly shape: 'remove-leader'; handover: Handover })
  | (OperationBase & { readonly shape: 'replace'; readonly target: ReplacementTarget; lastStep: ReplaceStep | 'refuse' | undefined; handover: Handover | null });

export class MembershipClient {
  readonly stats: ClientStats = { membershipOps: 0, confChangesRefused: 0, leaderHandovers: 0, replacesCompleted: 0, clientRestarts: 0 };
  readonly #host: ClientHost;
  readonly #random: Prng;
  readonly #params: ClientParams;
  #op: Operation | null = null;
  #requestSeq = 1n;
  #replaceSeq = 0;
  #urlSeq = 0;

  constructor(options: { host: ClientHost; random: Prng; params: ClientParams }) {
    this.#host = options.host;
    this.#random = options.random;
    this.#params = options.params;
  }

  /** Once per tick. In the heal phase the client stops (an operation in progress is abandoned). */
  tick(phase: 'chaos' | 'heal'): void {
    const op = this.#op;
    if (phase === 'heal') {
      if (op !== null) this.#finish(op, 'abandoned: faults healed');
      return;
    }
    if (op === null) {
      if (this.#random.chance(this.#params.confChangeRate)) this.#start();
      return;
    }
    const now = this.#host.nowTicks();
    if (now >= op.deadline) {
      this.#finish(op, 'given up: deadline');
      return;
    }
    if (op.shape === 'replace' && this.#random.chance(CLIENT_RESTART_RATE)) {
      // The operator's process died and the command is run again with the same arguments.
      this.stats.clientRestarts++;
      this.#host.trace(`membership client: ${op.label}: client restarts (resumes from the membership)`);
      op.pending = null;
      op.handover = null;
      op.lastStep = undefined;
    }
    if (op.pending !== null) {
      if (now - op.pending.atTick < CONF_CHANGE_TIMEOUT_TICKS) return;
      this.#host.trace(`membership client: ${op.label}: request ${op.pending.requestId} given up (not answered)`);
      op.pending = null;
      if (op.shape !== 'replace') {
        this.#finish(op, 'given up');
        return;
      }
    }
    this.#advance(op);
  }

  /** A member applied a conf change: answers the waiting request if it was proposed there. */
  onApplied(event: { member: NodeId; incarnation: number; requestId: bigint; error: string | undefined }): void {
    const op = this.#op;
    const pending = op?.pending;
    if (op === null || pending === null || pending === undefined) return;
    if (pending.requestId !== event.requestId || pending.proposer !== event.member || pending.incarnation !== event.incarnation) return;
    op.pending = null;
    if (event.error !== undefined) this.stats.confChangesRefused++;
    this.#host.trace(`membership client: ${op.label}: request ${event.requestId} answered by ${event.member}: ${event.error ?? 'ok'}`);
    if (op.shape !== 'replace') this.#finish(op, event.error === undefined ? 'done' : `refused: ${event.error}`);
  }

  /** The leader refused a proposal forwarded by `member` (Ready.refusedProposals). */
  onRefused(event: { member: NodeId; incarnation: number; data: Uint8Array; reason: string }): void {
    const pending = this.#op?.pending;
    if (pending === null || pending === undefined || pending.proposer !== event.member || pending.incarnation !== event.incarnation) return;
    if (Buffer.compare(Buffer.from(pending.data), Buffer.from(event.data)) !== 0) return;
    this.#host.trace(`membership client: request ${pending.requestId} refused by the leader (${event.reason}); will retry`);
    this.#op!.pending = null;
  }

  // ---------------------------------------------------------------- choosing an operation

  #start(): void {
    const leader = this.#host.leader();
    if (leader === null) return;
    const p = this.#params;
    const membership = leader.membership.membership;
    const voters = membership.voters();
    const learners = membership.learners();
    const total = voters.length + learners.length;
    const removed = leader.membership.removedIds();
    const choices: Array<{ weight: number; make: () => Operation | null }> = [];
    const add = (weight: number, make: () => Operation | null): void => {
      choices.push({ weight, make });
    };
    if (total < p.membersMax) {
      if (this.#mayAddVoter(leader) === undefined) add(1, () => this.#simpleAdd('add'));
      if (learners.length < p.maxLearners) add(1, () => this.#simpleAdd('add-learner'));
      else add(UNCHECKED_WEIGHT, () => this.#simpleAdd('add-learner', { unchecked: 'over the learner limit' }));
      if (total > 0) add(UNCHECKED_WEIGHT, () => this.#simpleAdd(this.#random.chance(0.5) ? 'add' : 'add-learner', { unchecked: 'clashing peer URLs', peerUrls: this.#random.pick(membership.active()).peerUrls }));
      if (removed.length > 0) add(UNCHECKED_WEIGHT, () => this.#simpleAdd('add', { unchecked: 'a removed id', id: this.#random.pick(removed) }));
    }
    if (learners.length > 0) {
      const ready = learners.filter((m) => this.#learnerReady(leader, m.id));
      if (ready.length > 0) add(1, () => this.#simplePromote(leader, this.#random.pick(ready).id, 'checked'));
      add(UNCHECKED_WEIGHT, () => this.#simplePromote(leader, this.#random.pick(learners).id, 'unchecked'));
      add(1, () => this.#simpleRemove(leader, this.#random.pick(learners).id));
    }
    add(UNCHECKED_WEIGHT, () => this.#simplePromote(leader, this.#random.pick(voters).id, 'unchecked'));
    if (removed.length > 0) add(UNCHECKED_WEIGHT, () => this.#simpleRemove(leader, this.#random.pick(removed), { unchecked: 'already removed' }));
    const removable = voters.filter((m) => m.id !== leader.id && this.#mayRemoveVoter(leader, m.id) === undefined);
    if (removable.length > 0) add(1, () => this.#simpleRemove(leader, this.#random.pick(removable).id));
    if (this.#mayRemoveVoter(leader, leader.id) === undefined) {
      add(1, () => this.#removeLeader(leader));
      add(0.5, () => this.#simpleRemove(leader, leader.id, { label: 'remove-leader-without-hand-over' }));
    }
    if (total > 0) {
      add(1, () => this.#simpleUpdate(leader, this.#random.pick(membership.active()).id, 'fresh'));
      if (total > 1) add(UNCHECKED_WEIGHT, () => this.#simpleUpdate(leader, this.#random.pick(membership.active()).id, 'clashing'));
    }
    if (total <= p.membersMax && learners.length < p.maxLearners && voters.length > 0) add(1, () => this.#replace(this.#random.pick(voters).id));
    if (choices.length === 0) return;
    let draw = this.#random.float() * choices.reduce((sum, c) => sum + c.weight, 0);
    let chosen = choices[choices.length - 1];
    for (const choice of choices) {
      draw -= choice.weight;
      if (draw < 0) {
        chosen = choice;
        break;
      }
    }
    const op = chosen.make();
    if (op === null) return;
    this.#op = op;
    this.stats.membershipOps++;
    this.#host.trace(`membership client: start ${op.label} (leader ${leader.id}, voters [${voters.map((m) => m.id).join(',')}] learners [${learners.map((m) => m.id).join(',')}])`);
    this.#advance(op);
  }

  #deadline(ticks: number): number {
    return this.#host.nowTicks() + ticks;
  }

  #freshUrls(host: string): string[] {
    return [peerUrl(`${host}-${this.#urlSeq++}`)];
  }

  #simpleAdd(action: 'add' | 'add-learner', options: { unchecked?: string; peerUrls?: readonly string[]; id?: NodeId } = {}): Operation {
    const id = options.id ?? this.#host.allocateMemberId(undefined);
    const peerUrls = options.peerUrls ?? this.#freshUrls(`m${id}`);
    const unchecked = options.unchecked !== undefined;
    return {
      shape: 'simple',
      label: `${action} ${id}${unchecked ? ` (unchecked: ${options.unchecked})` : ''}`,
      deadline: this.#deadline(OPERATION_TIMEOUT_TICKS),
      pending: null,
      proposal: { type: action === 'add' ? 'add-node' : 'add-learner-node', action, nodeId: id, peerUrls },
      via: this.#random.chance(FORWARD_RATE) ? 'follower' : 'leader',
      check: unchecked
        ? undefined
        : (at) => {
            if (at.membership.membership.usingPeerUrls(peerUrls) !== undefined) return 'peer-url-exists';
            if (action === 'add') return this.#mayAddVoter(at);
            return at.membership.membership.learners().length + 1 > this.#params.maxLearners ? 'too-many-learners' : undefined;
          },
    };
  }

  #simplePromote(leader: MemberView, id: NodeId, mode: 'checked' | 'unchecked'): Operation {
    const record = leader.membership.membership.get(id);
    return {
      shape: 'simple',
      label: `promote ${id}${mode === 'unchecked' ? ' (unchecked)' : ''}`,
      deadline: this.#deadline(OPERATION_TIMEOUT_TICKS),
      pending: null,
      proposal: { type: 'add-node', action: 'promote', nodeId: id, peerUrls: record?.peerUrls ?? [] },
      // kvd forwards a promote to the leader (only it knows the learner's progress).
      via: 'leader',
      check: mode === 'unchecked' ? undefined : (at) => this.#mayPromote(at, id),
    };
  }

  #simpleRemove(leader: MemberView, id: NodeId, options: { unchecked?: string; label?: string } = {}): Operation {
    const record = leader.membership.membership.get(id);
    const isLearner = record?.isLearner === true;
    return {
      shape: 'simple',
      label: `${options.label ?? (isLearner ? 'remove-learner' : 'remove-voter')} ${id}${options.unchecked !== undefined ? ` (unchecked: ${options.unchecked})` : ''}`,
      deadline: this.#deadline(OPERATION_TIMEOUT_TICKS),
      pending: null,
      proposal: { type: 'remove-node', action: 'remove', nodeId: id, peerUrls: record?.peerUrls ?? [] },
      via: 'leader',
      check:
        options.unchecked !== undefined
          ? undefined
          : (at) => {
              const current = at.membership.membership.get(id);
              if (current === undefined) return 'member-not-found';
              return current.isLearner ? undefined : this.#mayRemoveVoter(at, id);
            },
    };
  }

  #simpleUpdate(leader: MemberView, id: NodeId, urls: 'fresh' | 'clashing'): Operation {
    const membership = leader.membership.membership;
    const others = membership.active().filter((m) => m.id !== id);
    const peerUrls = urls === 'clashing' && others.length > 0 ? this.#random.pick(others).peerUrls : this.#freshUrls(this.#host.nameOf(id));
    return {
      shape: 'simple',
      label: `update ${id} → ${peerUrls.join(',')}${urls === 'clashing' ? ' (unchecked: clashing peer URLs)' : ''}`,
      deadline: this.#deadline(OPERATION_TIMEOUT_TICKS),
      pending: null,
      proposal: { type: 'update-node', action: 'update', nodeId: id, peerUrls },
      via: this.#random.chance(FORWARD_RATE) ? 'follower' : 'leader',
      check:
        urls === 'clashing'
          ? undefined
          : (at) => {
              if (at.membership.membership.get(id) === undefined) return 'member-not-found';
              return at.membership.membership.usingPeerUrls(peerUrls, id) !== undefined ? 'peer-url-exists' : undefined;
            },
    };
  }

  #removeLeader(leader: MemberView): Operation {
    return {
      shape: 'remove-leader',
      label: `remove-leader ${leader.id} (hand-over first)`,
      deadline: this.#deadline(OPERATION_TIMEOUT_TICKS),
      pending: null,
      handover: { from: leader.id, requested: false, deadline: 0 },
    };
  }

  #replace(old: NodeId): Operation {
    const seq = this.#replaceSeq++;
    const name = `r${seq}`;
    return {
      shape: 'replace',
      label: `replace ${old} with ${name}`,
      deadline: this.#deadline(REPLACE_TIMEOUT_TICKS),
      pending: null,
      target: { old: old.toString(16), name, peerUrls: [peerUrl(name)] },
      lastStep: undefined,
      handover: null,
    };
  }

  // ---------------------------------------------------------------- running an operation

  #advance(op: Operation): void {
    if (op.pending !== null) return;
    switch (op.shape) {
      case 'simple':
        return this.#advanceSimple(op);
      case 'remove-leader':
        return this.#advanceRemoveLeader(op);
      case 'replace':
        return this.#advanceReplace(op);
    }
  }

  #advanceSimple(op: Extract<Operation, { shape: 'simple' }>): void {
    const leader = this.#host.leader();
    if (leader === null) return;
    const why = op.check?.(leader);
    if (why !== undefined) return this.#finish(op, `refused before proposing: ${why}`);
    let at = leader;
    if (op.via === 'follower') {
      const followers = this.#host.upMembers().filter((m) => m.id !== leader.id);
      if (followers.length > 0) at = this.#random.pick(followers);
    }
    this.#propose(op, at, op.proposal);
  }

  #advanceRemoveLeader(op: Extract<Operation, { shape: 'remove-leader' }>): void {
    const target = op.handover.from;
    const outcome = this.#handOver(op, op.handover);
    if (outcome === 'failed') return this.#finish(op, 'refused: leader-transfer-failed');
    if (outcome === 'waiting') return;
    const leader = this.#host.leader()!;
    const current = leader.membership.membership.get(target);
    if (current === undefined || current.isLearner) return this.#finish(op, 'no longer a voter');
    const why = this.#mayRemoveVoter(leader, target);
    if (why !== undefined) return this.#finish(op, `refused before proposing: ${why}`);
    this.#propose(op, leader, { type: 'remove-node', action: 'remove', nodeId: target, peerUrls: current.peerUrls });
  }

  /**
   * Moves leadership off `handover.from` (kvd's #handOverLeadership): asks the leader to transfer
   * to the most caught-up other voter and waits until another member leads. 'done' when the
   * current leader is someone else.
   */
  #handOver(op: Operation, handover: Handover): 'waiting' | 'done' | 'failed' {
    const leader = this.#host.leader();
    if (leader === null) return 'waiting';
    if (leader.id !== handover.from) return 'done';
    const now = this.#host.nowTicks();
    if (handover.requested && now >= handover.deadline) return 'failed';
    if (handover.requested) return 'waiting';
    const others = leader.membership.membership.voters().filter((m) => m.id !== handover.from);
    if (others.length === 0) return 'failed';
    let transferee = others[0].id;
    let best = -1;
    for (const member of others) {
      const match = leader.progress.get(member.id)?.match ?? -1;
      if (match > best) {
        best = match;
        transferee = member.id;
      }
    }
    handover.requested = true;
    // kvd waits up to two election timeouts (in ms); the randomized timeout is up to 2x electionTicks.
    handover.deadline = now + 4 * this.#params.electionTicks;
    this.stats.leaderHandovers++;
    this.#host.trace(`membership client: ${op.label}: hand leadership over from ${handover.from} to ${transferee} (match ${best})`);
    leader.transferLeader(transferee);
    return 'waiting';
  }

  #advanceReplace(op: Extract<Operation, { shape: 'replace' }>): void {
    if (op.handover !== null) {
      const outcome = this.#handOver(op, op.handover);
      if (outcome === 'failed') {
        this.#host.trace(`membership client: ${op.label}: hand-over failed; will retry`);
        op.handover = null;
        return;
      }
      if (outcome === 'waiting') return;
      op.handover = null;
    }
    const leader = this.#host.leader();
    if (leader === null) return;
    const plan = planReplacement(this.#clientMembers(leader), op.target);
    if (plan.step !== op.lastStep) this.#host.trace(`membership client: ${op.label}: step ${plan.step}${plan.step === 'refuse' ? ` (${plan.reason})` : ''}`);
    op.lastStep = plan.step;
    switch (plan.step) {
      case 'refuse':
        return this.#finish(op, `refused: ${plan.reason}`);
      case 'add': {
        const membership = leader.membership.membership;
        if (membership.learners().length + 1 > this.#params.maxLearners) return; // waits (kvd: too many learners)
        const id = this.#host.allocateMemberId(op.target.name);
        return this.#propose(op, leader, { type: 'add-learner-node', action: 'add-learner', nodeId: id, peerUrls: op.target.peerUrls });
      }
      case 'wait-start':
        return;
      case 'promote':
        if (this.#mayPromote(leader, plan.newMember.id) !== undefined) return; // not in sync yet: retried
        return this.#propose(op, leader, { type: 'add-node', action: 'promote', nodeId: plan.newMember.id, peerUrls: plan.newMember.peerUrls });
      case 'remove-old': {
        const old = plan.oldMember.id;
        if (old === leader.id) {
          op.handover = { from: old, requested: false, deadline: 0 };
          this.#handOver(op, op.handover);
          return;
        }
        if (this.#mayRemoveVoter(leader, old) !== undefined) return; // unhealthy: retried
        return this.#propose(op, leader, { type: 'remove-node', action: 'remove', nodeId: old, peerUrls: plan.oldMember.peerUrls });
      }
      case 'done':
        this.stats.replacesCompleted++;
        return this.#finish(op, 'done');
    }
  }

  #propose(op: Operation, at: MemberView, proposal: Proposal): void {
    const requestId = this.#requestSeq++;
    const context = encodeConfContext({ requestId, action: proposal.action, member: { id: proposal.nodeId, peerUrls: proposal.peerUrls, autoPromote: false } });
    const change: ConfChange = { type: proposal.type, nodeId: proposal.nodeId, context };
    const outcome = at.proposeConfChange(change);
    this.#host.trace(
      `membership client: ${op.label}: propose ${proposal.action} ${proposal.nodeId} (request ${requestId}) at ${at.id}: ${outcome.ok ? 'ok' : outcome.reason}`,
    );
    if (outcome.ok) op.pending = { requestId, proposer: at.id, incarnation: at.incarnation, atTick: this.#host.nowTicks(), data: encodeConfChange(change) };
  }

  #finish(op: Operation, outcome: string): void {
    this.#host.trace(`membership client: ${op.label}: ${outcome}`);
    if (this.#op === op) this.#op = null;
  }

  // ---------------------------------------------------------------- the member's pre-checks

  /** Records as membership-ops sees them: a member that never ran has no name (not started). */
  #started(records: readonly MemberRecord[]): MemberRecord[] {
    return records.map((m) => ({ ...m, name: this.#host.isStarted(m.id) ? this.#host.nameOf(m.id) : '' }));
  }

  /** The membership as the client library reads it (MemberList). */
  #clientMembers(leader: MemberView): ClientMember[] {
    return leader.membership.membership.active().map((m) => {
      const started = this.#host.isStarted(m.id);
      const name = started ? this.#host.nameOf(m.id) : '';
      return { id: m.id, name, peerUrls: m.peerUrls, clientUrls: started ? [clientUrl(name)] : [], isLearner: m.isLearner, autoPromote: m.autoPromote };
    });
  }

  /** MembershipOps.add for a voter: a started quorum after the add, and connected to every voter. */
  #mayAddVoter(leader: MemberView): string | undefined {
    const voters = leader.membership.membership.voters();
    if (!readyToAddVoter(this.#started(voters))) return 'member-not-enough-started';
    if (!voters.every((m) => m.id === leader.id || this.#host.isConnected(leader.id, m.id))) return 'unhealthy';
    return undefined;
  }

  /** MembershipOps.#mayRemoveVoter, plus the simulator's minimum of voters. */
  #mayRemoveVoter(leader: MemberView, id: NodeId): string | undefined {
    const voters = leader.membership.membership.voters();
    if (!voters.some((m) => m.id === id)) return 'member-not-found';
    if (voters.length - 1 < this.#params.votersMin) return 'minimum of voters';
    if (!readyToRemoveVoter(this.#started(voters), id)) return 'member-not-enough-started';
    // A member that is down is safe to remove: it is not part of the active quorum.
    if (id !== leader.id && !this.#host.isConnected(leader.id, id)) return undefined;
    const active = voters.filter((m) => m.id === leader.id || this.#host.isConnected(leader.id, m.id)).length;
    if (active - 1 < 1 + Math.floor((voters.length - 1) / 2)) return 'unhealthy';
    return undefined;
  }

  /** MembershipOps.#promoteAsLeader's checks. */
  #mayPromote(leader: MemberView, id: NodeId): string | undefined {
    const membership = leader.membership.membership;
    const target = membership.get(id);
    if (target === undefined) return 'member-not-found';
    if (!target.isLearner) return 'member-not-learner';
    if (!this.#learnerReady(leader, id)) return 'learner-not-ready';
    if (!readyToPromote(this.#started(membership.voters()))) return 'member-not-enough-started';
    return undefined;
  }

  /** etcd's isLearnerReady, as MembershipOps.#learnerReady: match >= 90% of the leader's. */
  #learnerReady(leader: MemberView, id: NodeId): boolean {
    const learner = leader.progress.get(id);
    const own = leader.progress.get(leader.id);
    if (learner === undefined || own === undefined) return false;
    return learner.match >= own.match * LEARNER_READY_FRACTION;
  }
}

/**
 * Membership operations of the Cluster service (etcd's server.go AddMember/RemoveMember/
 * UpdateMember/PromoteMember and their may* checks): checks made before proposing, the conf
 * change proposal carrying a ConfContext (conf-context.ts), the wait for its apply, and two kvd
 * additions: a leader being removed hands leadership over first, and learners added with
 * autoPromote are promoted by the leader as soon as they are in sync.
 *
 * Checks before proposing (etcd's --strict-reconfig-check, on by default):
 * - adding a voter needs a quorum of started voters after the add (not enough started members);
 * - adding a voter needs this member connected to every voter for HEALTH_INTERVAL_MS (unhealthy
 *   cluster). Unlike etcd, adding a learner does not: a learner never counts for the quorum, and
 *   this is what lets `member replace` replace a member whose machine is gone;
 * - removing a voter must leave a quorum of started and connected voters;
 * - promoting needs the learner's match index at >= 90% of the leader's (learner not ready) and a
 *   started quorum counting the learner.
 * The authoritative checks (ids, URLs, learner limits) run again when the change is applied
 * (membership.ts planConfChange), identically on every member.
 */
import { randomBytes } from 'node:crypto';
import type { ConfChange, NodeId } from '../raft/types.js';
import { encodeConfChange } from '../raft/raw-node.js';
import { KvdError, errorMessage } from '../util/errors.js';
import type { Logger } from './logger.js';
import type { RaftNode } from './raft-node.js';
import type { RequestGateway } from './gateway.js';
import type { MemberState } from './state.js';
import { decodeMember, encodeMember, type MemberRecord } from './membership.js';
import { encodeConfContext, type MembershipAction } from './conf-context.js';
import { computeMemberId, idToHex } from './ids.js';
import { onAbortOf } from '../api/backend.js';

/** etcd's HealthInterval: peers must have been connected this long before a reconfiguration. */
export const HEALTH_INTERVAL_MS = 5_000;
/** etcd's readyPercent: a learner may be promoted once its match index reaches 90% of the leader's. */
export const LEARNER_READY_FRACTION = 0.9;
/** Member-call kind of a promote forwarded to the leader (only it knows the learner's progress). */
export const MEMBER_PROMOTE_CALL = 'member-promote';
/** Pause before proposing again to a new leader that is still applying its predecessor's entries. */
/** Pause before proposing again a conf change the leader refused while its previous one was not applied. */
const PENDING_RETRY_PAUSE_MS = 20;
/** How often the leader looks for learners to promote automatically. */
const AUTO_PROMOTE_INTERVAL_MS = 500;

export interface MembershipOptions {
  readonly node: RaftNode;
  readonly gateway: RequestGateway;
  readonly state: MemberState;
  readonly logger: Logger;
  /** etcd --strict-reconfig-check (default true). */
  readonly strictReconfigCheck: boolean;
  /** Default of autoPromote for learners added without saying (kvd --auto-promote-learners). */
  readonly autoPromoteLearners: boolean;
  /** --max-learners: carried in each conf change's context, so every member decides with the proposer's limit. */
  readonly maxLearners: number;
  readonly requestTimeoutMs: number;
  readonly electionTimeoutMs: number;
  /** A member call to `to` over the peer transport. */
  readonly call: (to: NodeId, kind: string, payload: Uint8Array, options: { deadlineMs: number }) => Promise<Uint8Array>;
}

export interface CallLimits {
  readonly deadlineMs: number;
  readonly signal?: AbortSignal;
}

export class MembershipOps {
  readonly #options: MembershipOptions;
  #lastAutoPromoteMs = 0;
  #autoPromoting = false;

  constructor(options: MembershipOptions) {
    this.#options = options;
  }

  /** MemberAdd: resolves with the new member and the membership after the change applied here. */
  async add(request: { peerUrls: readonly string[]; isLearner: boolean; autoPromote: boolean }, limits: CallLimits): Promise<{ member: MemberRecord; members: MemberRecord[] }> {
    const peerUrls = validateUrls(request.peerUrls);
    const { membership } = this.#options.state;
    if (membership.usingPeerUrls(peerUrls) !== undefined) throw new KvdError('peer-url-exists');
    if (this.#options.strictReconfigCheck) {
      if (!request.isLearner && !readyToAddVoter(membership.voters())) throw new KvdError('member-not-enough-started');
      if (!request.isLearner && !this.#connectedToVotersSince(Date.now() - HEALTH_INTERVAL_MS)) throw new KvdError('unhealthy');
    }
    // etcd: a member added at run time gets an id from its peer URLs, the cluster and the time.
    const id = computeMemberId({ peerUrls, token: idToHex(membership.clusterId), salt: `${Date.now()}:${randomBytes(4).toString('hex')}` });
    const action: MembershipAction = request.isLearner ? 'add-learner' : 'add';
    const autoPromote = request.isLearner && (request.autoPromote || this.#options.autoPromoteLearners);
    await this.#propose({ type: request.isLearner ? 'add-learner-node' : 'add-node', nodeId: id }, { action, peerUrls, autoPromote }, limits);
    const member = membership.get(id);
    if (member === undefined) throw new KvdError('internal', { detail: 'etcdserver: added member is not in the membership after its change applied' });
    return { member, members: membership.active() };
  }

  /** MemberRemove. A leader being removed first hands leadership to another voter. */
  async remove(id: NodeId, limits: CallLimits): Promise<MemberRecord[]> {
    const { membership } = this.#options.state;
    const target = membership.get(id);
    if (target === undefined) throw new KvdError('member-not-found');
    if (this.#options.strictReconfigCheck && !target.isLearner) this.#mayRemoveVoter(id);
    const change = { type: 'remove-node', nodeId: id } as const;
    const member = { action: 'remove', peerUrls: target.peerUrls, autoPromote: false } as const;
    if (!target.isLearner && this.#options.node.leader === id) await this.#handOverLeadership(id, limits);
    await this.#propose(change, member, limits);
    return membership.active();
  }

  /** MemberUpdate: new peer URLs (the others reconnect when the change applies). */
  async update(id: NodeId, peerUrlsIn: readonly string[], limits: CallLimits): Promise<MemberRecord[]> {
    const peerUrls = validateUrls(peerUrlsIn);
    const { membership } = this.#options.state;
    const target = membership.get(id);
    if (target === undefined) throw new KvdError('member-not-found');
    if (membership.usingPeerUrls(peerUrls, id) !== undefined) throw new KvdError('peer-url-exists');
    await this.#propose({ type: 'update-node', nodeId: id }, { action: 'update', peerUrls, autoPromote: target.autoPromote }, limits);
    return membership.active();
  }

  /** MemberPromote: only the leader knows whether the learner is in sync, so followers forward it. */
  async promote(id: NodeId, limits: CallLimits): Promise<MemberRecord[]> {
    const node = this.#options.node;
    if (!node.isLeader) {
      const leader = node.leader;
      if (leader === 0n) throw new KvdError('no-leader');
      const answer = await this.#options.call(leader, MEMBER_PROMOTE_CALL, Buffer.from(idToHex(id)), { deadlineMs: limits.deadlineMs });
      // The leader answers with its membership once the promotion applied there (as etcd answers
      // a forwarded promote): this member may not have applied it yet. An empty answer comes
      // from a leader that does not send it; then this member's own view is the best there is.
      return answer.byteLength > 0 ? decodeMembers(answer) : this.#options.state.membership.active();
    }
    await this.#promoteAsLeader(id, limits);
    return this.#options.state.membership.active();
  }

  /** Serves a promote forwarded by another member (a member call). */
  async servePromoteCall(payload: Uint8Array, options: { deadlineMs: number }): Promise<Uint8Array> {
    const text = Buffer.from(payload).toString('utf8');
    if (!/^[0-9a-f]{1,16}$/.test(text)) throw new KvdError('invalid-argument', { detail: 'etcdserver: malformed promote call' });
    if (!this.#options.node.isLeader) throw new KvdError('not-leader');
    await this.#promoteAsLeader(BigInt(`0x${text}`), { deadlineMs: options.deadlineMs });
    return encodeMembers(this.#options.state.membership.active());
  }

  /** Leader duty, from the tick: promote in-sync learners that asked for it (one change at a time). */
  onTick(nowMs: number): void {
    const node = this.#options.node;
    if (!node.isLeader || this.#autoPromoting || nowMs - this.#lastAutoPromoteMs < AUTO_PROMOTE_INTERVAL_MS) return;
    this.#lastAutoPromoteMs = nowMs;
    const candidate = this.#options.state.membership.learners().find((m) => m.autoPromote && m.name !== '' && this.#learnerReady(m.id));
    if (candidate === undefined) return;
    this.#autoPromoting = true;
    this.#options.logger.info({ event: 'auto-promote', member: idToHex(candidate.id), term: node.term }, `learner ${idToHex(candidate.id)} is in sync: promoting it`);
    // Detached on purpose: the outcome is logged; a refused promote is retried on a later tick.
    this.#promoteAsLeader(candidate.id, { deadlineMs: nowMs + this.#options.requestTimeoutMs }).then(
      () => { this.#autoPromoting = false; },
      (error: unknown) => {
        this.#autoPromoting = false;
        this.#options.logger.warn({ event: 'auto-promote-failed', member: idToHex(candidate.id), error: errorMessage(error) }, 'automatic promotion failed; will retry');
      },
    );
  }

  async #promoteAsLeader(id: NodeId, limits: CallLimits): Promise<void> {
    const { membership } = this.#options.state;
    const target = membership.get(id);
    if (target === undefined) throw new KvdError('member-not-found');
    if (!target.isLearner) throw new KvdError('member-not-learner');
    if (!this.#learnerReady(id)) throw new KvdError('learner-not-ready');
    if (this.#options.strictReconfigCheck && !readyToPromote(membership.voters())) throw new KvdError('member-not-enough-started');
    await this.#propose({ type: 'add-node', nodeId: id }, { action: 'promote', peerUrls: target.peerUrls, autoPromote: false }, limits);
  }

  /** etcd's isLearnerReady: the learner's match index is at least 90% of the leader's. */
  #learnerReady(id: NodeId): boolean {
    const status = this.#options.node.status();
    const learner = status.progress.get(id);
    const leader = status.progress.get(status.id);
    if (learner === undefined || leader === undefined) return false;
    return learner.match >= leader.match * LEARNER_READY_FRACTION;
  }

  #mayRemoveVoter(id: NodeId): void {
    const voters = this.#options.state.membership.voters();
    if (!readyToRemoveVoter(voters, id)) throw new KvdError('member-not-enough-started');
    const node = this.#options.node;
    // A member that is down is safe to remove: it is not part of the active quorum.
    if (id !== node.id && node.transport?.peerStatus(id).connected !== true) return;
    const since = Date.now() - HEALTH_INTERVAL_MS;
    const active = voters.filter((m) => m.id === node.id || connectedSince(node, m.id, since)).length;
    if (active - 1 < 1 + Math.floor((voters.length - 1) / 2)) throw new KvdError('unhealthy');
  }

  #connectedToVotersSince(sinceMs: number): boolean {
    const node = this.#options.node;
    return this.#options.state.membership.voters().every((m) => m.id === node.id || connectedSince(node, m.id, sinceMs));
  }

  /** Moves leadership off `leader` (to the most caught-up other voter) before it is removed. */
  async #handOverLeadership(leader: NodeId, limits: CallLimits): Promise<void> {
    const node = this.#options.node;
    const others = this.#options.state.membership.voters().filter((m) => m.id !== leader);
    if (others.length === 0) return;
    let transferee = others[0].id;
    if (node.isLeader) {
      const progress = node.status().progress;
      let best = -1;
      for (const member of others) {
        const match = progress.get(member.id)?.match ?? -1;
        if (match > best) {
          best = match;
          transferee = member.id;
        }
      }
    }
    this.#options.logger.info({ event: 'leader-handover', from: idToHex(leader), to: idToHex(transferee), term: node.term }, 'the leader is being removed: handing leadership over first');
    node.transferLeadership(transferee);
    const deadline = Math.min(limits.deadlineMs, Date.now() + 2 * this.#options.electionTimeoutMs);
    while (Date.now() < deadline) {
      const current = node.leader;
      if (current !== 0n && current !== leader) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new KvdError('leader-transfer-failed');
  }

  /**
   * Proposes a conf change and waits until it applied here. The leader refuses a conf change while
   * its previous one is not applied yet (raft's pendingConfIndex): after a hand-over (the new
   * leader's applier catching up), and right after an earlier change answered, since the answer
   * goes out when the change is applied but before the leader's core hears of it (appliedTo after
   * the batch). Nothing was appended when that refusal comes, so it is ours to absorb: retried
   * after a short pause until the request's deadline, as a client of etcd never sees it.
   */
  async #propose(change: Omit<ConfChange, 'context'>, member: { action: MembershipAction; peerUrls: readonly string[]; autoPromote: boolean }, limits: CallLimits): Promise<void> {
    for (;;) {
      try {
        await this.#proposeOnce(change, member, limits);
        return;
      } catch (error: unknown) {
        if (!(error instanceof KvdError) || error.code !== 'conf-change-in-progress' || Date.now() + PENDING_RETRY_PAUSE_MS >= limits.deadlineMs || limits.signal?.aborted === true) throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, PENDING_RETRY_PAUSE_MS));
    }
  }

  async #proposeOnce(change: Omit<ConfChange, 'context'>, member: { action: MembershipAction; peerUrls: readonly string[]; autoPromote: boolean }, limits: CallLimits): Promise<void> {
    const { gateway, node } = this.#options;
    const requestId = gateway.nextRequestId();
    const context = encodeConfContext({ requestId, action: member.action, member: { id: change.nodeId, peerUrls: member.peerUrls, autoPromote: member.autoPromote }, maxLearners: this.#options.maxLearners });
    const full: ConfChange = { ...change, context };
    if (encodeConfChange(full).byteLength > 64 * 1024) throw new KvdError('request-too-large');
    const onCancel = limits.signal === undefined ? undefined : onAbortOf(limits.signal);
    const applied = await gateway.proposeWaiting(requestId, { deadlineMs: limits.deadlineMs, onCancel }, () => node.proposeConfChange(full));
    if (!applied.ok) throw applied.error;
  }
}

/** Members as the answer of a forwarded promote: a JSON array of encoded member records. */
function encodeMembers(members: readonly MemberRecord[]): Uint8Array {
  return Buffer.from(JSON.stringify(members.map((member) => Buffer.from(encodeMember(member)).toString('utf8'))));
}

function decodeMembers(bytes: Uint8Array): MemberRecord[] {
  const records: unknown = JSON.parse(Buffer.from(bytes).toString('utf8'));
  if (!Array.isArray(records) || !records.every((record) => typeof record === 'string')) {
    throw new KvdError('internal', { detail: 'etcdserver: malformed answer to a forwarded promote' });
  }
  return records.map((record: string) => decodeMember(Buffer.from(record, 'utf8')));
}

/** etcd's IsReadyToAddVotingMember: a quorum of the voters after the add has started. */
export function readyToAddVoter(voters: readonly MemberRecord[]): boolean {
  const started = voters.filter(isStarted).length;
  const members = voters.length + 1;
  if (started === 1 && members === 2) return true; // growing a 1-member cluster (restoring data)
  return started >= Math.floor(members / 2) + 1;
}

/** etcd's IsReadyToRemoveVotingMember: the voters left keep a started quorum. */
export function readyToRemoveVoter(voters: readonly MemberRecord[], id: NodeId): boolean {
  const left = voters.filter((m) => m.id !== id);
  return left.filter(isStarted).length >= Math.floor(left.length / 2) + 1;
}

/** etcd's IsReadyToPromoteMember: counting the learner as a started voter, a quorum has started. */
export function readyToPromote(voters: readonly MemberRecord[]): boolean {
  const members = voters.length + 1;
  const started = voters.filter(isStarted).length + 1;
  return started >= Math.floor(members / 2) + 1;
}

/** A member has started once it published its name (etcd: IsStarted). */
function isStarted(member: MemberRecord): boolean {
  return member.name !== '';
}

function connectedSince(node: RaftNode, id: NodeId, sinceMs: number): boolean {
  const status = node.transport?.peerStatus(id);
  return status !== undefined && status.connected && (status.connectedSinceMs ?? Infinity) <= sinceMs;
}

/** Checks member peer URLs as etcd does (types.NewURLs): http(s)://host:port, no path. */
function validateUrls(urls: readonly string[]): string[] {
  if (urls.length === 0) throw new KvdError('member-bad-urls');
  for (const url of urls) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch (error: unknown) {
      throw new KvdError('member-bad-urls', { cause: error });
    }
    if ((parsed.protocol !== 'http:' && parsed.protocol !== 'https:') || parsed.hostname === '' || parsed.port === '' || (parsed.pathname !== '/' && parsed.pathname !== '')) {
      throw new KvdError('member-bad-urls');
    }
  }
  return [...urls];
}

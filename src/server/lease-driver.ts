/**
 * The lease driver (etcd's lessor loop and leasehttp): everything about leases that depends on
 * time or on being leader. The lessor (src/store/lease) keeps the replicated lease state; this
 * decides when a lease expires (only the leader, by proposing a revoke through Raft), proposes
 * checkpoints, answers keep-alives and exact TTLs on the leader, and forwards them to the leader
 * from followers (lease-forward.ts).
 *
 * Lease duty on a new leader: renewals, expiries and exact TTLs wait until the member has applied
 * everything committed when it was elected (a lease granted just before the election may not be
 * applied yet: answering from the lessor before that would report a live lease missing). Then
 * the lessor is promoted (every lease extended by an election timeout, etcd's Promote).
 */
import type { NodeId, SoftState } from '../raft/types.js';
import type { LeaseId } from '../store/mvcc/types.js';
import type { LeaseTimeToLive } from '../api/backend.js';
import { KvdError, errorMessage, isKvdError } from '../util/errors.js';
import type { Logger } from './logger.js';
import type { MemberState } from './state.js';
import type { RequestGateway } from './gateway.js';
import {
  LEASE_KEEPALIVE_BATCH_CALL, LEASE_KEEPALIVE_CALL, LEASE_TTL_CALL, LeaseForwarder, decodeKeepAliveBatch, decodeKeepAliveRequest, decodeTimeToLiveRequest,
  encodeKeepAliveAnswer, encodeKeepAliveBatchAnswer, encodeTimeToLive,
} from './lease-forward.js';

/** Maximum lease revokes proposed per tick by the leader (etcd: 500 per second). */
const MAX_LEASE_REVOKES_PER_TICK = 50;

export interface LeaseDriverOptions {
  readonly id: NodeId;
  readonly state: MemberState;
  readonly gateway: RequestGateway;
  readonly logger: Logger;
  /** The current leader (0n when none) and whether this member leads. */
  readonly leader: () => NodeId;
  readonly isLeader: () => boolean;
  /** The committed index now (a new leader's lease duty waits for its apply to reach it). */
  readonly commitIndex: () => number;
  readonly appliedIndex: () => number;
  readonly term: () => number;
  /** A member call to `to` over the peer transport. */
  readonly call: (to: NodeId, kind: string, payload: Uint8Array, options: { deadlineMs: number }) => Promise<Uint8Array>;
  readonly electionTimeoutMs: number;
  readonly requestTimeoutMs: number;
  /** Bound on keep-alives waiting for the lease duty. */
  readonly maxWaiters: number;
}

type Duty = { readonly state: 'follower' } | { readonly state: 'catching-up'; readonly index: number } | { readonly state: 'ready' };

export class LeaseDriver {
  readonly #options: LeaseDriverOptions;
  readonly #forwarder: LeaseForwarder;
  #duty: Duty = { state: 'follower' };
  #waiters: Array<{ resolve: () => void; reject: (error: KvdError) => void; deadlineMs: number }> = [];
  #stopping = false;

  constructor(options: LeaseDriverOptions) {
    this.#options = options;
    this.#forwarder = new LeaseForwarder({ id: options.id, leader: options.leader, call: options.call });
  }

  /** Leader or role changed. */
  onSoftState(soft: SoftState, previous: SoftState): void {
    if (soft.role === 'leader' && previous.role !== 'leader') {
      this.#duty = { state: 'catching-up', index: this.#options.commitIndex() };
      this.onApplied();
    } else if (soft.role !== 'leader' && previous.role === 'leader') {
      if (this.#duty.state === 'ready') this.#options.state.lessor.demote();
      this.#duty = { state: 'follower' };
      for (const waiter of this.#waiters.splice(0)) waiter.reject(new KvdError('leader-changed'));
    }
  }

  /** After every applied batch (and after a snapshot install): a new leader may take over the leases. */
  onApplied(): void {
    const duty = this.#duty;
    if (duty.state !== 'catching-up' || this.#options.appliedIndex() < duty.index) return;
    this.#duty = { state: 'ready' };
    const lessor = this.#options.state.lessor;
    // A new leader extends every lease by an election timeout so a failover never expires them all at once.
    lessor.promote({ nowMs: Date.now(), extendMs: this.#options.electionTimeoutMs });
    this.#options.logger.info({ event: 'leases-promoted', term: this.#options.term(), applied: this.#options.appliedIndex(), leases: lessor.leases().length }, 'leader applied its election commit index; serving lease renewals');
    for (const waiter of this.#waiters.splice(0)) waiter.resolve();
  }

  /** After a snapshot install the lessor is new: a leader with duty promotes it again. */
  onLessorReplaced(): void {
    if (this.#duty.state === 'ready') this.#options.state.lessor.promote({ nowMs: Date.now(), extendMs: this.#options.electionTimeoutMs });
  }

  /** Once per tick: deadlines of waiting keep-alives; the leader's expiry and checkpoint duties. */
  onTick(nowMs: number): void {
    if (this.#waiters.length > 0) {
      this.#waiters = this.#waiters.filter((waiter) => {
        if (waiter.deadlineMs > nowMs) return true;
        waiter.reject(new KvdError('timeout'));
        return false;
      });
    }
    if (this.#duty.state === 'ready') this.#leaderDuties(nowMs);
  }

  /**
   * Resolves when this member, as leader, may answer lease renewals and exact TTLs from its
   * lessor. Rejects with 'not-leader' on a follower, 'leader-changed' if leadership is lost while
   * waiting, 'timeout' at the deadline, 'too-many-requests' beyond the bound.
   */
  ready(options: { deadlineMs: number }): Promise<void> {
    if (this.#stopping) return Promise.reject(new KvdError('stopped'));
    const duty = this.#duty;
    if (duty.state === 'ready') return Promise.resolve();
    if (duty.state === 'follower') return Promise.reject(new KvdError('not-leader'));
    if (this.#waiters.length >= this.#options.maxWaiters) return Promise.reject(new KvdError('too-many-requests'));
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject, deadlineMs: options.deadlineMs }));
  }

  /**
   * LeaseKeepAlive: renews `id` in the leader's lessor (here, once leases are ready, or at the
   * leader through a member call) and resolves with its TTL. Rejects 'lease-not-found',
   * 'timeout', 'too-many-requests', 'no-leader'.
   */
  renew(id: LeaseId, options: { deadlineMs: number }): Promise<number> {
    return this.#asLeaderOrForward(options, () => this.#renewHere(id), () => this.#forwarder.keepAlive(id, options));
  }

  /** LeaseTimeToLive, exact: from the leader's lessor (here or at the leader). */
  timeToLive(id: LeaseId, options: { keys: boolean; deadlineMs: number }): Promise<LeaseTimeToLive> {
    return this.#asLeaderOrForward(options, () => this.#timeToLiveHere(id, options.keys), () => this.#forwarder.timeToLive(id, options));
  }

  /** Serves another member's forwarded lease request (a member call); undefined for other kinds. */
  serveCall(kind: string, payload: Uint8Array, options: { deadlineMs: number }): Promise<Uint8Array> | undefined {
    switch (kind) {
      case LEASE_KEEPALIVE_CALL:
        return (async () => {
          const request = decodeKeepAliveRequest(payload);
          await this.ready(options);
          return encodeKeepAliveAnswer({ ttlSeconds: this.#renewHere(request.id) });
        })();
      case LEASE_KEEPALIVE_BATCH_CALL:
        return (async () => {
          const ids = decodeKeepAliveBatch(payload);
          await this.ready(options);
          return encodeKeepAliveBatchAnswer(ids.map((id) => this.#renewOrMissing(id)));
        })();
      case LEASE_TTL_CALL:
        return (async () => {
          const request = decodeTimeToLiveRequest(payload);
          await this.ready(options);
          return encodeTimeToLive(this.#timeToLiveHere(request.id, request.keys));
        })();
      default:
        return undefined;
    }
  }

  /**
   * After a keep-alive of a lease that carried a checkpointed remaining TTL, records "no
   * remainder" so a restart does not resurrect the old value (etcd does the same). Detached: a
   * failure only means the next checkpoint corrects it.
   */
  #resetCheckpoint(id: LeaseId): void {
    this.#options.gateway.propose({ type: 'lease-checkpoint', checkpoints: [{ id, remainingTtlSeconds: 0 }] }, { deadlineMs: Date.now() + this.#options.requestTimeoutMs }).catch((error: unknown) => {
      this.#options.logger.debug({ event: 'lease-checkpoint-reset-failed', lease: id.toString(16), error: errorMessage(error) }, 'could not reset a lease checkpoint');
    });
  }

  #leaderDuties(nowMs: number): void {
    const { gateway, logger, requestTimeoutMs, state } = this.#options;
    for (const id of state.lessor.expired({ nowMs, max: MAX_LEASE_REVOKES_PER_TICK })) {
      gateway.propose({ type: 'lease-revoke', id }, { deadlineMs: nowMs + requestTimeoutMs }).catch((error: unknown) => {
        logger.warn({ event: 'lease-revoke-failed', lease: id.toString(16), error: errorMessage(error) }, 'could not revoke an expired lease');
      });
    }
    const due = state.lessor.checkpointsDue({ nowMs });
    if (due.length > 0) {
      gateway.propose({ type: 'lease-checkpoint', checkpoints: due }, { deadlineMs: nowMs + requestTimeoutMs }).catch((error: unknown) => {
        logger.warn({ event: 'lease-checkpoint-failed', error: errorMessage(error) }, 'could not checkpoint leases');
      });
    }
  }

  async #asLeaderOrForward<T>(options: { deadlineMs: number }, here: () => T, forward: () => Promise<T>): Promise<T> {
    for (;;) {
      if (this.#stopping) throw new KvdError('stopped');
      if (Date.now() >= options.deadlineMs) throw new KvdError('timeout');
      if (this.#options.isLeader()) {
        try {
          await this.ready(options);
          return here();
        } catch (error: unknown) {
          // Lost leadership while waiting: ask the new leader.
          if (!isKvdError(error, 'not-leader') && !isKvdError(error, 'leader-changed')) throw error;
          continue;
        }
      }
      try {
        return await forward();
      } catch (error: unknown) {
        // The forwarder found that this member leads now: answer here.
        if (isKvdError(error, 'leader-changed') && this.#options.isLeader()) continue;
        throw error;
      }
    }
  }

  #renewHere(id: LeaseId): number {
    const ttlSeconds = this.#renewOrMissing(id);
    if (ttlSeconds < 0) throw new KvdError('lease-not-found');
    return ttlSeconds;
  }

  /** Renews `id` in the lessor: its TTL, or -1 for a lease this leader does not have (a batch's answer). */
  #renewOrMissing(id: LeaseId): number {
    const renewed = this.#options.state.lessor.renew(id, Date.now());
    if (!renewed.ok) {
      if (renewed.code === 'lease-not-found') return -1;
      throw new KvdError(renewed.code);
    }
    if (renewed.followUp === 'propose-checkpoint-reset') this.#resetCheckpoint(id);
    return renewed.ttlSeconds;
  }

  #timeToLiveHere(id: LeaseId, keys: boolean): LeaseTimeToLive {
    const { lessor, store } = this.#options.state;
    const found = lessor.timeToLive(id, { nowMs: Date.now() });
    if (!found.ok) throw new KvdError(found.code);
    return { id, ttlSeconds: found.ttlSeconds, grantedTtlSeconds: found.grantedTtlSeconds, keys: keys ? store.keysOfLease(id) : [] };
  }

  /** Fails everything waiting (shutdown). */
  stop(): void {
    this.#stopping = true;
    for (const waiter of this.#waiters.splice(0)) waiter.reject(new KvdError('stopped'));
  }
}

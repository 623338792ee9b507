/**
 * The request gateway: what the API backends call instead of reaching into the member's parts
 * (etcd's v3_server.go: processInternalRaftRequest, linearizableReadNotify). It turns a request
 * into a proposal with a unique id, waits for the applier to answer that id, and serves
 * linearizable read barriers through the batched ReadIndex.
 *
 * Bounds: at most `maxPendingProposals` proposals wait (beyond: 'too-many-requests'); reads are
 * bounded by the ReadIndexBatcher; every wait has a deadline; a client that cancels frees its
 * slot at once (the entry may still be applied: like etcd, a canceled write has an unknown outcome).
 */
import type { LeaseId, Revision, WriteResult } from '../store/mvcc/types.js';
import type { Ready } from '../raft/ready.js';
import type { NodeId } from '../raft/types.js';
import { KvdError } from '../util/errors.js';
import type { RaftNode } from './raft-node.js';
import type { RequestTrace } from '../api/instrument.js';
import type { OnCancel } from '../api/backend.js';
import type { ServerMetrics } from './metrics.js';
import type { Logger } from './logger.js';
import { decodeEnvelope, encodeEnvelope, RequestIdGenerator, type InternalRequest } from './requests.js';
import { Waiters } from './waiters.js';
import { ReadIndexBatcher } from './read-index.js';
import { decodeConfContext } from './conf-context.js';
import { decodeConfChange } from '../raft/raw-node.js';
import type { AlarmRecord } from './alarms.js';
import type { Principal } from '../store/auth/index.js';

/** What a waiting proposer receives when its entry is applied. */
export type ApplyResult =
  | { readonly ok: true; readonly revision: Revision; readonly result: WriteResult | LeaseApplyResult | MembershipApplyResult | AlarmApplyResult | { type: 'none' } }
  | { readonly ok: false; readonly error: KvdError };

export type LeaseApplyResult =
  | { readonly type: 'lease-grant'; readonly id: LeaseId; readonly ttlSeconds: number }
  | { readonly type: 'lease-revoke' };

/** A conf change applied: the membership afterwards. */
export interface MembershipApplyResult { readonly type: 'membership' }

/** An alarm request applied: the alarms raised or cleared (etcd's AlarmResponse). */
export interface AlarmApplyResult { readonly type: 'alarm'; readonly alarms: readonly AlarmRecord[] }

export interface GatewayOptions {
  readonly node: RaftNode;
  readonly metrics: ServerMetrics;
  readonly logger: Logger;
  readonly maxPendingProposals: number;
  readonly maxPendingReads: number;
  readonly maxRequestBytes: number;
  /** Linearizable reads not answered within this (a lost round) are asked again. */
  readonly readRetryMs: number;
  /** The member's applied index (for read barriers). */
  readonly appliedIndex: () => number;
  /**
   * Refuses a request before it is proposed (alarms, quota, a full disk): returns the error to
   * fail it with, or undefined to propose it. An early answer only: the applier decides again
   * from the replicated state when the entry is applied.
   */
  readonly admit?: (request: InternalRequest) => KvdError | Promise<KvdError> | undefined;
  /** Refuses a linearizable read barrier before it is asked for (a member whose WAL is stuck cannot ask). */
  readonly admitRead?: () => KvdError | undefined;
}

/** How long a proposal may wait and what cancels it (see onCancelOf in src/api/backend.ts). */
export interface ProposeOptions {
  readonly deadlineMs: number;
  readonly onCancel?: OnCancel;
  readonly trace?: RequestTrace;
}

export class RequestGateway {
  readonly #node: RaftNode;
  readonly #metrics: ServerMetrics;
  readonly #logger: Logger;
  readonly #maxRequestBytes: number;
  readonly #waiters: Waiters<ApplyResult>;
  readonly #reads: ReadIndexBatcher;
  readonly #ids: RequestIdGenerator;
  readonly #admit: (request: InternalRequest) => KvdError | Promise<KvdError> | undefined;
  readonly #admitRead: () => KvdError | undefined;
  #stopping = false;

  constructor(options: GatewayOptions) {
    this.#node = options.node;
    this.#metrics = options.metrics;
    this.#logger = options.logger;
    this.#maxRequestBytes = options.maxRequestBytes;
    this.#waiters = new Waiters({ maxPending: options.maxPendingProposals });
    this.#ids = new RequestIdGenerator({ memberId: options.node.id, nowMs: Date.now() });
    this.#admit = options.admit ?? (() => undefined);
    this.#admitRead = options.admitRead ?? (() => undefined);
    this.#reads = new ReadIndexBatcher(
      {
        issue: (context) => {
          if (this.#node.leader === 0n) return { ok: false, error: new KvdError('no-leader') };
          const outcome = this.#node.readIndex(context);
          if (!outcome.ok) return { ok: false, error: new KvdError('no-leader') };
          return { ok: true };
        },
        appliedIndex: options.appliedIndex,
        nowMs: () => Date.now(),
      },
      { memberId: options.node.id, maxPending: options.maxPendingReads, retryMs: options.readRetryMs },
    );
    // Read when metrics are collected: a gauge set on every proposal and answer allocated two
    // objects each time (prom-client keeps {value, labels} per set).
    this.#metrics.pendingProposals = () => this.#waiters.size;
  }

  /** A fresh request id (unique cluster-wide), for proposals made outside propose() (conf changes). */
  nextRequestId(): bigint {
    return this.#ids.next();
  }

  /**
   * Proposes `request` through Raft and resolves when it has been applied on this member, or
   * fails with no-leader, too-many-requests, request-too-large, timeout or canceled, or with what
   * `admit` refuses it for (no-space, corrupt, disk-full). Refuses early instead of queueing.
   */
  propose(request: InternalRequest, options: ProposeOptions & { auth?: Principal }): Promise<ApplyResult> {
    // Not an async function: the promise returned is the waiter's own (an async wrapper, and the
    // one of #proposeWith, each added a promise and two microtask turns to every write).
    try {
      const admitted = this.#admit(request);
      if (admitted !== undefined) {
        this.#metrics.requestsRefused.inc();
        return admitted instanceof Promise ? admitted.then((error) => Promise.reject(error)) : Promise.reject(admitted);
      }
      const id = this.#ids.next();
      const data = encodeEnvelope(options.auth === undefined ? { id, request } : { id, request, auth: options.auth });
      if (data.byteLength > this.#maxRequestBytes + 4096) return Promise.reject(new KvdError('request-too-large'));
      return this.#proposeWith(id, options, data);
    } catch (error: unknown) {
      return Promise.reject(error);
    }
  }

  /**
   * Registers a waiter for request `id`, runs `submit` (a proposal carrying that id) and resolves
   * with what the applier answers for it. Used by propose() and by membership changes.
   */
  proposeWaiting(id: bigint, options: ProposeOptions, submit: () => ReturnType<RaftNode['propose']>): Promise<ApplyResult> {
    try {
      return this.#proposeWith(id, options, submit);
    } catch (error: unknown) {
      return Promise.reject(error);
    }
  }

  /** `proposal`: the entry's data, or how to propose it (a conf change). */
  #proposeWith(id: bigint, options: ProposeOptions, proposal: Uint8Array | (() => ReturnType<RaftNode['propose']>)): Promise<ApplyResult> {
    const arrived = performance.now();
    if (this.#stopping) return Promise.reject(new KvdError('stopped'));
    if (this.#node.leader === 0n) {
      this.#metrics.requestsRefused.inc();
      return Promise.reject(new KvdError('no-leader'));
    }
    if (this.#waiters.full) {
      this.#metrics.requestsRefused.inc();
      this.#logger.warn({ event: 'request-refused', reason: 'too-many-requests', pending: this.#waiters.size }, 'refused a request: too many pending proposals');
      return Promise.reject(new KvdError('too-many-requests'));
    }
    const waiting = this.#waiters.wait(id, { deadlineMs: options.deadlineMs });
    // A client that went away frees its waiter slot at once (the entry may still be applied).
    const release = options.onCancel?.(() => this.#waiters.fail(id, new KvdError('canceled')));
    const outcome = proposal instanceof Uint8Array ? this.#node.propose(proposal) : proposal();
    // When the waiter settles, the cancel listener goes and the trace gets its apply time.
    const trace = options.trace;
    if (trace !== undefined) {
      const proposed = performance.now();
      trace.proposeMs = proposed - arrived;
      this.#waiters.onSettled(id, (settledMs) => {
        release?.();
        trace.applyMs = settledMs - proposed;
      });
    } else if (release !== undefined) this.#waiters.onSettled(id, release);
    if (!outcome.ok) {
      this.#waiters.fail(id, refusalError(outcome.reason));
      this.#metrics.proposalsFailed.inc();
    }
    return waiting;
  }

  /** The applier answers the waiter of `id` (if this member has one). */
  answer(id: bigint, result: ApplyResult): void {
    this.#waiters.trigger(id, result);
  }

  /** True when this member waits for request `id`. */
  waitsFor(id: bigint): boolean {
    return this.#waiters.has(id);
  }

  /** Fails the waiters of forwarded proposals the leader refused, at once, with etcd's errors. */
  failRefused(refused: Ready['refusedProposals']): void {
    for (const { data, reason } of refused) {
      if (data.byteLength === 0) continue;
      let id: bigint;
      try {
        id = decodeEnvelope(data).id;
      } catch (error: unknown) {
        // Not an envelope: a conf change carries its request id in its context.
        void error;
        const confId = confChangeRequestId(data);
        if (confId === undefined) continue;
        id = confId;
      }
      this.#metrics.proposalsFailed.inc();
      this.#waiters.fail(id, refusalError(reason));
    }
  }

  /** Resolves once a linearizable read arriving now may be served from the local store. */
  async linearizableBarrier(options: { deadlineMs: number }): Promise<void> {
    if (this.#stopping) throw new KvdError('stopped');
    const refused = this.#admitRead();
    if (refused !== undefined) throw refused;
    const started = Date.now();
    await this.#reads.wait(options);
    this.#metrics.readIndexSeconds.observe((Date.now() - started) / 1000);
  }

  onReadStates(states: Ready['readStates']): void {
    for (const state of states) this.#reads.onReadState(state);
  }

  /** After every applied batch: reads waiting for that index are answered. */
  onApplied(applied: number): void {
    this.#reads.onApplied(applied);
  }

  /** Once per tick: deadlines. */
  onTick(nowMs: number): void {
    this.#reads.onTick();
    this.#waiters.expire(nowMs);
  }

  /** Fails every waiting request (shutdown). */
  stop(): void {
    this.#stopping = true;
    this.#waiters.failAll(new KvdError('stopped'));
    this.#reads.failAll(new KvdError('stopped'));
  }

  /** The leader this member knows (0n when none). */
  get leader(): NodeId {
    return this.#node.leader;
  }
}

/** The client-visible error for a proposal Raft refused. */
export function refusalError(reason: string): KvdError {
  switch (reason) {
    case 'too-many-uncommitted':
      return new KvdError('too-many-requests');
    case 'conf-change-pending':
      return new KvdError('conf-change-in-progress');
    case 'no-leader':
      return new KvdError('no-leader');
    default:
      return new KvdError('leader-changed');
  }
}

/** The request id a conf change entry carries in its context, if `data` is one of ours. */
function confChangeRequestId(data: Uint8Array): bigint | undefined {
  try {
    return decodeConfContext(decodeConfChange(data).context)?.requestId;
  } catch (error: unknown) {
    void error; // neither an envelope nor a conf change of ours: nothing waits on it
    return undefined;
  }
}

/**
 * Linearizable reads by ReadIndex, batched: every read that arrives while no round is in flight
 * joins the next round; one `readIndex` request to Raft serves the whole batch (one heartbeat
 * round on the leader). A batch is answered once the member has applied up to the returned index.
 *
 * Correctness: a batch only contains reads that arrived *before* its round was issued, so the
 * index the leader returns covers every write committed before each read began.
 *
 * Bounds: at most `maxPending` reads wait (beyond: 'too-many-requests'); one round in flight; a
 * round unanswered after `retryMs` (lost in a leader change) is re-issued with a fresh context.
 */
import { KvdError } from '../util/errors.js';
import { assert } from '../util/assert.js';

interface ReadWaiter {
  readonly resolve: () => void;
  readonly reject: (error: KvdError) => void;
  readonly deadlineMs: number;
}

interface Round {
  readonly context: string;
  readonly waiters: ReadWaiter[];
  issuedAtMs: number;
}

/** What the batcher needs from the member. */
export interface ReadIndexHost {
  /** Asks Raft for a read index with `context`; returns false when it cannot (no leader). */
  issue(context: Uint8Array): { ok: true } | { ok: false; error: KvdError };
  /** The member's applied index. */
  appliedIndex(): number;
  nowMs(): number;
}

export class ReadIndexBatcher {
  readonly #host: ReadIndexHost;
  readonly #maxPending: number;
  readonly #retryMs: number;
  #queued: ReadWaiter[] = [];
  #inflight: Round | undefined;
  /** Batches with a known read index, waiting for apply; ascending by index. */
  #waitingApply: Array<{ index: number; waiters: ReadWaiter[] }> = [];
  #pending = 0;
  #nextContext = 1n;

  /** Every context starts with the member id: the leader keys pending reads by context alone, so contexts must be unique cluster-wide. */
  readonly #memberId: bigint;

  constructor(host: ReadIndexHost, options: { memberId: bigint; maxPending: number; retryMs: number }) {
    this.#host = host;
    this.#memberId = options.memberId;
    this.#maxPending = options.maxPending;
    this.#retryMs = options.retryMs;
  }

  /** Number of reads waiting. */
  get pending(): number { return this.#pending; }

  /** Resolves when a read arriving now may be served from the local store. */
  wait(options: { deadlineMs: number }): Promise<void> {
    if (this.#pending >= this.#maxPending) return Promise.reject(new KvdError('too-many-requests'));
    return new Promise<void>((resolve, reject) => {
      this.#pending += 1;
      this.#queued.push({
        resolve: () => { this.#pending -= 1; resolve(); },
        reject: (error) => { this.#pending -= 1; reject(error); },
        deadlineMs: options.deadlineMs,
      });
      this.#maybeIssue();
    });
  }

  /** Called by the Ready loop for each ReadState. */
  onReadState(readState: { index: number; context: Uint8Array }): void {
    const round = this.#inflight;
    if (round === undefined || Buffer.from(readState.context).toString('hex') !== round.context) return;
    this.#inflight = undefined;
    this.#waitingApply.push({ index: readState.index, waiters: round.waiters });
    this.#waitingApply.sort((a, b) => a.index - b.index);
    this.onApplied(this.#host.appliedIndex());
    this.#maybeIssue();
  }

  /** Called after every applied batch. */
  onApplied(appliedIndex: number): void {
    while (this.#waitingApply.length > 0 && this.#waitingApply[0].index <= appliedIndex) {
      const batch = this.#waitingApply.shift();
      assert(batch !== undefined, 'non-empty');
      for (const waiter of batch.waiters) waiter.resolve();
    }
  }

  /** Called on every tick: expires deadlines and re-issues lost rounds. */
  onTick(): void {
    const now = this.#host.nowMs();
    const expire = (waiters: ReadWaiter[]): ReadWaiter[] => waiters.filter((waiter) => {
      if (waiter.deadlineMs > now) return true;
      waiter.reject(new KvdError('timeout'));
      return false;
    });
    this.#queued = expire(this.#queued);
    for (const batch of this.#waitingApply) batch.waiters.splice(0, batch.waiters.length, ...expire(batch.waiters));
    this.#waitingApply = this.#waitingApply.filter((batch) => batch.waiters.length > 0);
    const round = this.#inflight;
    if (round !== undefined) {
      round.waiters.splice(0, round.waiters.length, ...expire(round.waiters));
      if (round.waiters.length === 0) {
        this.#inflight = undefined;
      } else if (now - round.issuedAtMs >= this.#retryMs) {
        // The request or its answer was lost (leader change, dropped message): ask again.
        this.#inflight = undefined;
        this.#queued = [...round.waiters, ...this.#queued];
      }
    }
    this.#maybeIssue();
  }

  /** Fails every waiting read (shutdown). */
  failAll(error: KvdError): void {
    const all = [...this.#queued, ...(this.#inflight?.waiters ?? []), ...this.#waitingApply.flatMap((b) => b.waiters)];
    this.#queued = [];
    this.#inflight = undefined;
    this.#waitingApply = [];
    for (const waiter of all) waiter.reject(error);
  }

  #maybeIssue(): void {
    if (this.#inflight !== undefined || this.#queued.length === 0) return;
    const context = Buffer.alloc(16);
    context.writeBigUInt64BE(this.#memberId, 0);
    context.writeBigUInt64BE(this.#nextContext, 8);
    this.#nextContext += 1n;
    const waiters = this.#queued;
    this.#queued = [];
    const outcome = this.#host.issue(context);
    if (!outcome.ok) {
      for (const waiter of waiters) waiter.reject(outcome.error);
      return;
    }
    this.#inflight = { context: context.toString('hex'), waiters, issuedAtMs: this.#host.nowMs() };
  }
}

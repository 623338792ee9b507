/**
 * The leader's view of one member's log (thesis 3.5 nextIndex/matchIndex) and the flow-control
 * state machine probe → replicate ⇄ snapshot of etcd-io/raft tracker/progress.go.
 */
import { assert } from '../util/assert.js';
import { Inflights } from './inflights.js';
import type { Index } from './types.js';

/**
 * - probe: the leader does not know where the follower's log matches; it sends at most one
 *   append per heartbeat interval and waits for the answer.
 * - replicate: the follower matches; appends are pipelined up to the inflight limit.
 * - snapshot: a snapshot was sent; nothing else is sent until it is reported.
 */
export type ProgressState = 'probe' | 'replicate' | 'snapshot';

/** Invariant: match < next; in 'snapshot' state pendingSnapshot > 0. */
export class Progress {
  /** Highest index known to match the leader's log. */
  match: Index;
  /** Next index to send. */
  next: Index;
  state: ProgressState = 'probe';
  /** Index of the snapshot in flight ('snapshot' state), else 0. */
  pendingSnapshot: Index = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** In probe state: an append was sent and is unanswered, so no more until a response/heartbeat. */
  probeSent = false;
  /**
   * The follower said it knows no configuration (a rejection at index 0: a member added with an
   * empty storage). If the leader's log starts at index 1 (nothing compacted), the follower gets
   * the index-0 "membership snapshot" first so it learns the bootstrap ConfState, which is in no
   * log entry. Cleared by the follower's next successful answer.
   */
  needsMembershipSnapshot = false;
  /** The commit index carried by the last append sent (tells the leader whether an empty append is useful). */
  commitSent: Index = 0;
  /** Heartbeat answers received while in 'snapshot' state (to detect a snapshot lost unreported). */
  heartbeatsWhileSnapshot = 0;
  readonly inflights: Inflights;
  role: 'voter' | 'learner';

  constructor(options: { match: Index; next: Index; maxInflightAppends: number; role: 'voter' | 'learner' }) {
    this.match = options.match;
    this.next = options.next;
    this.role = options.role;
    this.inflights = new Inflights(options.maxInflightAppends);
  }

  #resetState(state: ProgressState): void {
    this.probeSent = false;
    this.heartbeatsWhileSnapshot = 0;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const pending = this.pendingSnapshot;
      this.#resetState('probe');
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.#resetState('probe');
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.#resetState('replicate');
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: Index): void {
    this.#resetState('snapshot');
    this.pendingSnapshot = snapshotIndex;
  }

  /** The follower acknowledged `index`. Returns whether match advanced. */
  maybeUpdate(index: Index): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    if (this.next < index + 1) this.next = index + 1;
    return updated;
  }

  /** Records that an append with `count` entries ending at `lastIndex` was sent. */
  sentEntries(options: { count: number; lastIndex: Index }): void {
    if (this.state === 'replicate') {
      if (options.count > 0) {
        this.next = options.lastIndex + 1;
        this.inflights.add(options.lastIndex);
      }
    } else if (this.state === 'probe') {
      this.probeSent = true;
    } else {
      assert(false, 'sending entries in snapshot state');
    }
  }

  /**
   * The follower rejected the append at `rejected`; `matchHint` is the leader's guess of where
   * logs match. Returns false for a stale rejection.
   */
  maybeDecreaseTo(options: { rejected: Index; matchHint: Index }): boolean {
    const { rejected, matchHint } = options;
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  /** Whether sending appends is paused (flow control). */
  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflights.full();
      case 'snapshot':
        return true;
    }
  }
}

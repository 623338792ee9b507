/**
 * The Ready contract (etcd-io/raft node.go): everything the caller must do after the core's
 * state changed, in this order: persist hardState + entries + snapshot (fsync if mustSync), then
 * send messages, install the snapshot and apply committedEntries, answer readStates once their
 * index is applied, then call advance().
 */
import type { Entry, HardState, Message, ProposeRefusal, ReadState, Snapshot, SoftState } from './types.js';

/** One batch of work for the caller. Treat every field as immutable. */
export interface Ready {
  /** Present when the leader or role changed. Not persisted; for reporting only. */
  readonly softState?: SoftState;
  /** Present when changed: persist before sending messages. */
  readonly hardState?: HardState;
  /** Persist (append, truncating a conflicting suffix) before sending messages. */
  readonly entries: readonly Entry[];
  /** Persist and install into the state machine (replaces the log up to its index). */
  readonly snapshot?: Snapshot;
  /** Send only AFTER hardState/entries/snapshot of this Ready are durable. */
  readonly messages: readonly Message[];
  /** Apply in order (they may include entries of this Ready's `entries`: persist first), then advance(). */
  readonly committedEntries: readonly Entry[];
  /** Answer the reads for each context once the applied index >= readState.index. */
  readonly readStates: readonly ReadState[];
  /**
   * Proposals this member forwarded that the leader refused (or that reached a member that was no
   * longer leader): fail their waiters at once with an error for `reason`. Never durable state.
   */
  readonly refusedProposals: readonly { readonly data: Uint8Array; readonly reason: ProposeRefusal }[];
  /** True if hardState term/vote, entries or snapshot changed: fsync before sending. */
  readonly mustSync: boolean;
}

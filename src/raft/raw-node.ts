/**
 * The facade the server and the simulator drive (etcd-io/raft rawnode.go): local requests,
 * tick/step, and the Ready/advance cycle. Not thread-safe; every call is synchronous.
 *
 * The Ready cycle: `if (node.hasReady()) { const ready = node.ready(); persist hardState, entries
 * and snapshot (fsync if mustSync); send messages; install snapshot; apply committedEntries
 * (calling applyConfChange for 'conf-change' entries); answer readStates; node.advance(); }`.
 * tick/step/propose may be called between ready() and advance(); a second ready() may not.
 *
 * Bootstrap and joining: members of a new cluster start from a storage whose snapshot is index 0
 * with the initial voters in its ConfState. A member added later starts from an empty storage
 * (empty ConfState). Because the bootstrap ConfState is in no log entry, a leader whose log is not
 * compacted first sends such a member a "membership snapshot": Ready.snapshot with
 * metadata.index 0 carrying the bootstrap ConfState (and the leader's bootstrap snapshot data).
 * Persist it like any snapshot (MemoryStorage.applySnapshot, WAL snapshot marker); there is no
 * application state to install at index 0. Until it has a configuration, a joining member refuses
 * entries from index 1, so it never replays membership changes over an empty configuration.
 *
 * Snapshots in flight: call reportSnapshot(id, 'finished' | 'failed') when the transport knows.
 * If nobody reports and the follower keeps answering heartbeats without having installed it
 * (SNAPSHOT_STALL_ELECTION_TIMEOUTS election timeouts), the leader sends it again.
 */
import { assert } from '../util/assert.js';
import { resolveConfig, type RaftConfig, type RaftConfigInput } from './config.js';
import { encodeConfChange } from './conf-change.js';
import { Raft, type ProposeOutcome, type RaftStatus } from './raft.js';
import type { Ready } from './ready.js';
import type { ConfChange, ConfState, Entry, HardState, Index, Message, NodeId, SoftState, Term } from './types.js';

export type { ProposeOutcome, RaftStatus } from './raft.js';
export { encodeConfChange, decodeConfChange } from './conf-change.js';

const NO_ENTRIES: readonly Entry[] = Object.freeze([]) as readonly Entry[];
const NO_MESSAGES: readonly Message[] = Object.freeze([]) as readonly Message[];

/** What advance() must acknowledge of the outstanding Ready. */
interface Outstanding {
  readonly lastEntry: { index: Index; term: Term } | undefined;
  readonly snapshotIndex: Index | undefined;
  readonly committedEntries: readonly Entry[];
}

/** One Raft member. See the module comment for the calling protocol. */
export class RawNode {
  readonly #config: Readonly<RaftConfig>;
  readonly #raft: Raft;
  #previousSoftState: SoftState;
  #previousHardState: HardState;
  #outstanding: Outstanding | undefined = undefined;

  /**
   * Creates a member from `input.storage`: a fresh member of a new cluster gets its initial voters
   * from `storage.initialState().confState`; a member added later starts with an empty ConfState
   * and learns its configuration from the leader. Throws RangeError on a bad config.
   */
  constructor(input: RaftConfigInput) {
    this.#config = resolveConfig(input);
    this.#raft = new Raft(this.#config);
    this.#previousSoftState = this.#raft.softState();
    this.#previousHardState = this.#raft.hardState();
  }

  /** Advances logical time by one tick (elections, heartbeats, check-quorum, transfer timeout). */
  tick(): void {
    this.#raft.tick();
  }

  /** Starts an election now (pre-vote first if enabled); no-op for leaders, learners and non-members. */
  campaign(): void {
    this.#raft.hup('election');
  }

  /** Feeds a message from a peer. Messages for another member, from a stale term or unexpected ones are ignored. */
  step(message: Message): void {
    this.#raft.step(message);
  }

  /**
   * Proposes a normal entry. The leader appends it; a follower forwards it to the leader as a
   * 'propose' message (ok: true means forwarded, not committed); refused with a reason otherwise.
   */
  propose(data: Uint8Array): ProposeOutcome {
    return this.#raft.propose('normal', data);
  }

  /** Proposes a membership change (one pending at a time). Apply it with {@link applyConfChange} once committed. */
  proposeConfChange(change: ConfChange): ProposeOutcome {
    return this.#raft.propose('conf-change', encodeConfChange(change));
  }

  /**
   * Applies a committed conf change (the server calls this when it applies the 'conf-change' entry
   * at `index`) and returns the resulting ConfState. A leader that removed itself steps down. A
   * change at or below the index the configuration already reflects (a snapshot restored by the
   * core while the application was still applying older entries, or a replay after restart) is
   * skipped and the current ConfState returned.
   */
  applyConfChange(change: ConfChange, options: { index: Index }): ConfState {
    return this.#raft.applyConfChange(change, options.index);
  }

  /**
   * Requests a linearizable read point. The answer arrives as a ReadState with the same context
   * (unique per request) in a later Ready; followers forward the request to the leader. ok:false
   * 'no-leader' if no leader is known; 'too-many-uncommitted' if the leader's read queue is full.
   */
  readIndex(context: Uint8Array): ProposeOutcome {
    return this.#raft.readIndex(context);
  }

  /** Asks the leader (forwarded if we are a follower) to hand leadership to `transferee`. */
  transferLeader(transferee: NodeId): void {
    this.#raft.transferLeader(transferee);
  }

  /** The transport could not deliver to `id`: its progress goes back to probing. */
  reportUnreachable(id: NodeId): void {
    this.#raft.reportUnreachable(id);
  }

  /** The transport finished (or failed) sending a snapshot to `id`. */
  reportSnapshot(id: NodeId, status: 'finished' | 'failed'): void {
    this.#raft.reportSnapshot(id, status);
  }

  /**
   * Index of the snapshot the core accepted and will hand out in a Ready (not yet advanced past),
   * or undefined. Lets the server discard snapshot data the core ignored (stale or duplicate).
   */
  pendingSnapshotIndex(): Index | undefined {
    return this.#raft.log.unstable.snapshot?.metadata.index;
  }

  /** Whether ready() would return work. False while a Ready is outstanding (not yet advanced). */
  hasReady(): boolean {
    if (this.#outstanding !== undefined) return false;
    const raft = this.#raft;
    if (raft.needsFlush() || raft.messages.length > 0 || raft.readStates.length > 0 || raft.refusedProposals.length > 0) return true;
    const log = raft.log;
    if (log.unstable.entries.length > 0 || log.unstable.snapshot !== undefined) return true;
    if (log.hasNextCommittedEntries()) return true;
    const soft = this.#previousSoftState;
    if (soft.leader !== raft.leader || soft.role !== raft.role) return true;
    const hard = this.#previousHardState;
    return hard.term !== raft.term || hard.vote !== raft.vote || hard.commit !== log.committed;
  }

  /** Returns the pending work (see {@link Ready}). Must be followed by advance() before the next ready(). */
  ready(): Ready {
    assert(this.#outstanding === undefined, 'ready() called again before advance()');
    const raft = this.#raft;
    raft.flush();
    const log = raft.log;
    const unstable = log.unstable;
    const entries = unstable.entries.length === 0 ? NO_ENTRIES : unstable.entries.slice();
    const snapshot = unstable.snapshot;
    const committedEntries = log.nextCommittedEntries(this.#config.maxCommittedBytesPerReady);
    const messages = raft.messages.length === 0 ? NO_MESSAGES : raft.messages;
    raft.messages = [];
    const readStates = raft.readStates;
    raft.readStates = [];
    const refusedProposals = raft.refusedProposals;
    raft.refusedProposals = [];

    const previousHard = this.#previousHardState;
    const termOrVoteChanged = previousHard.term !== raft.term || previousHard.vote !== raft.vote;
    const hardChanged = termOrVoteChanged || previousHard.commit !== log.committed;
    const previousSoft = this.#previousSoftState;
    const softChanged = previousSoft.leader !== raft.leader || previousSoft.role !== raft.role;

    const ready: {
      -readonly [K in keyof Ready]: Ready[K];
    } = {
      entries,
      messages,
      committedEntries,
      readStates,
      refusedProposals,
      mustSync: termOrVoteChanged || entries.length > 0 || snapshot !== undefined,
    };
    if (softChanged) {
      ready.softState = raft.softState();
      this.#previousSoftState = ready.softState;
    }
    if (hardChanged) {
      ready.hardState = raft.hardState();
      this.#previousHardState = ready.hardState;
    }
    if (snapshot !== undefined) ready.snapshot = snapshot;
    const last = entries.length === 0 ? undefined : entries[entries.length - 1];
    this.#outstanding = {
      lastEntry: last === undefined ? undefined : { index: last.index, term: last.term },
      snapshotIndex: snapshot?.metadata.index,
      committedEntries,
    };
    return ready;
  }

  /**
   * Acknowledges the last ready(): its entries, hard state and snapshot were persisted, its
   * messages sent and its snapshot installed. `apply` says what happened to its committed entries:
   * 'done' (default) — applied, in order, before this call; 'pending' — handed to an application
   * that applies them later, in order, and reports each applied prefix with {@link appliedTo}. The
   * core's decisions that depend on the application's state (one pending conf change at a time, no
   * campaign with an unapplied conf change) wait for that report, so an application that applies
   * behind the Ready loop must use 'pending' (etcd's raft separates "applying" from "applied" the
   * same way).
   */
  advance(options: { apply: 'done' | 'pending' } = { apply: 'done' }): void {
    const outstanding = this.#outstanding;
    assert(outstanding !== undefined, 'advance() without ready()');
    this.#outstanding = undefined;
    const log = this.#raft.log;
    if (outstanding.lastEntry !== undefined) log.unstable.stableTo(outstanding.lastEntry.index, outstanding.lastEntry.term);
    if (outstanding.snapshotIndex !== undefined) {
      log.unstable.stableSnapshotTo(outstanding.snapshotIndex);
      // The snapshot was installed: the application's state is the snapshot's (anything handed out
      // before it must have been applied first, see the Ready contract).
      if (outstanding.snapshotIndex > log.applied) log.appliedTo(outstanding.snapshotIndex);
    }
    const committed = outstanding.committedEntries;
    if (committed.length > 0) {
      const last = committed[committed.length - 1].index;
      if (options.apply === 'done') log.appliedTo(last);
      else log.applyingTo(last);
      this.#raft.reduceUncommittedBytes(committed);
    }
  }

  /**
   * The application applied every committed entry up to `index` (after advance with apply
   * 'pending'). Calls must not go backwards or beyond what was handed out.
   */
  appliedTo(index: Index): void {
    const log = this.#raft.log;
    if (!(index >= log.applied && index <= log.applying)) assert(false, `appliedTo(${index}) outside [${log.applied}, ${log.applying}]`);
    log.appliedTo(index);
  }

  /** A snapshot of this member's state. `progress` is filled on the leader only. */
  status(): RaftStatus {
    return this.#raft.status();
  }

  /** Checks internal invariants (throws AssertionError); for tests and the simulator. */
  assertInvariants(): void {
    this.#raft.assertInvariants();
  }
}

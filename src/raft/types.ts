/**
 * Value types of the Raft core. Everything here is plain data: the core, the WAL, the transport
 * and the simulator all speak these types.
 *
 * Representation decisions (made once, here):
 * - Member ids are random 64-bit values: `bigint` ({@link NodeId}); `0n` means "none".
 * - Terms and indexes are `number`. They grow by one per election / per entry, so they stay far
 *   below 2^53; codecs at the edges check the range.
 * - Entry payloads are opaque `Uint8Array`s; the core never looks inside a normal entry.
 *
 * Treat every value as immutable once handed to the core or returned by it.
 */

/** A member id. Random 64-bit, never 0 for a real member. */
export type NodeId = bigint;
/** "No member": used for an absent vote or an unknown leader. */
export const NO_NODE: NodeId = 0n;

/** A Raft term. Invariant: non-negative integer, never decreases on a member. */
export type Term = number;
/** A Raft log index. Invariant: non-negative integer; index 0 is the empty log's sentinel. */
export type Index = number;

/** What an entry carries. */
export type EntryType = 'normal' | 'conf-change';

/** One log entry. An entry with `type: 'normal'` and empty `data` is the leader's no-op. */
export interface Entry {
  readonly term: Term;
  readonly index: Index;
  readonly type: EntryType;
  readonly data: Uint8Array;
}

/** The state that must be durable before any message that depends on it is sent. */
export interface HardState {
  readonly term: Term;
  /** The candidate voted for in `term`, or NO_NODE. */
  readonly vote: NodeId;
  /** The highest index known committed. Persisting it is an optimisation, not a safety need. */
  readonly commit: Index;
}

/** The membership of the cluster as of some index. */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
}

/** Identifies the log prefix a snapshot replaces. */
export interface SnapshotMetadata {
  readonly index: Index;
  readonly term: Term;
  readonly confState: ConfState;
}

/**
 * A snapshot: the application's state up to `metadata.index`. `data` is opaque to the core;
 * the server decides what goes into it (it may be a small descriptor of a larger backend file
 * streamed separately by the transport).
 */
export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  readonly data: Uint8Array;
}

/** A membership change, carried in a 'conf-change' entry. */
export type ConfChangeType = 'add-node' | 'add-learner-node' | 'remove-node' | 'update-node';

/**
 * A single-step membership change. `add-node` on an existing learner promotes it.
 * `update-node` changes nothing in the core (the server uses `context` for peer URLs).
 */
export interface ConfChange {
  readonly type: ConfChangeType;
  readonly nodeId: NodeId;
  /** Opaque to the core; the server stores member attributes (name, peer URLs) here. */
  readonly context: Uint8Array;
}

/** Why a vote is being requested: a normal election, or a leadership transfer (skips lease checks). */
export type CampaignKind = 'election' | 'transfer';

interface MessageBase {
  readonly from: NodeId;
  readonly to: NodeId;
  /** The sender's term. 0 only for locally forwarded messages whose term does not matter. */
  readonly term: Term;
}

/** Leader → follower: append `entries` after (`index`, `logTerm`); also carries the commit index. */
export interface AppendMessage extends MessageBase {
  readonly type: 'append';
  /** Term of the entry at `index` (the entry just before `entries`). */
  readonly logTerm: Term;
  readonly index: Index;
  readonly entries: readonly Entry[];
  readonly commit: Index;
}

/**
 * Follower → leader. On success `index` is the last index now matching the leader's log.
 * On rejection `index` echoes the rejected append's index and (`rejectHint`, `logTerm`) let the
 * leader skip back a whole term at once (fast conflict back-off).
 */
export interface AppendResponseMessage extends MessageBase {
  readonly type: 'append-response';
  readonly index: Index;
  readonly reject: boolean;
  readonly rejectHint: Index;
  readonly logTerm: Term;
}

/** Candidate → voter. For pre-votes, `term` is the term the candidate would campaign in. */
export interface VoteMessage extends MessageBase {
  readonly type: 'vote' | 'pre-vote';
  readonly logTerm: Term;
  readonly index: Index;
  readonly campaign: CampaignKind;
}

/** Voter → candidate. */
export interface VoteResponseMessage extends MessageBase {
  readonly type: 'vote-response' | 'pre-vote-response';
  readonly reject: boolean;
}

/**
 * Leader → follower heartbeat. `commit` is min(leader commit, follower match) so a follower never
 * commits past what it has. `context` is set when the heartbeat round serves ReadIndex requests.
 */
export interface HeartbeatMessage extends MessageBase {
  readonly type: 'heartbeat';
  readonly commit: Index;
  readonly context: Uint8Array | null;
}

/** Follower → leader heartbeat acknowledgement, echoing the heartbeat's context. */
export interface HeartbeatResponseMessage extends MessageBase {
  readonly type: 'heartbeat-response';
  readonly context: Uint8Array | null;
}

/** Leader → follower: install this snapshot (InstallSnapshot). */
export interface SnapshotMessage extends MessageBase {
  readonly type: 'snapshot';
  readonly snapshot: Snapshot;
}

/** Leader → transferee: campaign now, ignoring the election timeout (leadership transfer). */
export interface TimeoutNowMessage extends MessageBase {
  readonly type: 'timeout-now';
}

/** Follower → leader: a ReadIndex request forwarded on behalf of a local client read. */
export interface ReadIndexMessage extends MessageBase {
  readonly type: 'read-index';
  readonly context: Uint8Array;
}

/** Leader → follower: the read index for a forwarded ReadIndex request. */
export interface ReadIndexResponseMessage extends MessageBase {
  readonly type: 'read-index-response';
  readonly index: Index;
  readonly context: Uint8Array;
}

/** Follower → leader: proposals forwarded from the follower's clients. Entries carry no index/term yet. */
export interface ProposeMessage extends MessageBase {
  readonly type: 'propose';
  readonly entries: readonly Entry[];
}

/** Why a forwarded proposal was not appended (see {@link ProposeRefusedMessage}). */
export type ProposeRefusal = 'not-leader' | 'transfer-in-progress' | 'too-many-uncommitted' | 'conf-change-pending' | 'not-member';

/**
 * Leader (or a member that is no longer leader) → the follower that forwarded a proposal: these
 * entries were not appended, for `reason`. Lets the proposer answer its client at once instead of
 * at its deadline. `term` is 0 (like 'propose': not tied to a term).
 */
export interface ProposeRefusedMessage extends MessageBase {
  readonly type: 'propose-refused';
  readonly entries: readonly Entry[];
  readonly reason: ProposeRefusal;
}

/** Follower → leader: a leadership transfer request forwarded to the leader. */
export interface TransferLeaderMessage extends MessageBase {
  readonly type: 'transfer-leader';
  readonly transferee: NodeId;
}

/** Every message exchanged between members. Discriminated on `type`. */
export type Message =
  | AppendMessage
  | AppendResponseMessage
  | VoteMessage
  | VoteResponseMessage
  | HeartbeatMessage
  | HeartbeatResponseMessage
  | SnapshotMessage
  | TimeoutNowMessage
  | ReadIndexMessage
  | ReadIndexResponseMessage
  | ProposeMessage
  | ProposeRefusedMessage
  | TransferLeaderMessage;

export type MessageType = Message['type'];

/** A member's role. */
export type Role = 'follower' | 'pre-candidate' | 'candidate' | 'leader';

/** Volatile state worth reporting when it changes (not persisted). */
export interface SoftState {
  readonly leader: NodeId;
  readonly role: Role;
}

/** The answer to a ReadIndex request: reads for `context` may be served once `index` is applied. */
export interface ReadState {
  readonly index: Index;
  readonly context: Uint8Array;
}

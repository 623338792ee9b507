/**
 * Configuration of one Raft member: the caller's options ({@link RaftConfigInput}) and the
 * resolved, frozen form the core uses ({@link RaftConfig}), plus the structured events the core
 * reports through `onEvent` ({@link RaftEvent}).
 */
import type { Random } from './random.js';
import type { LogStorage } from './storage.js';
import type { CampaignKind, ConfChangeType, ConfState, Index, NodeId, Term } from './types.js';
import { NO_NODE } from './types.js';

/**
 * A structured event for logs and tests. Every variant carries the reporting member `id` and its
 * `term` at the time of the event; `kind` discriminates the rest.
 */
export type RaftEvent =
  | { kind: 'election-started'; id: NodeId; term: Term; campaign: 'pre-vote' | CampaignKind }
  | { kind: 'became-follower'; id: NodeId; term: Term; leader: NodeId }
  | { kind: 'became-pre-candidate'; id: NodeId; term: Term }
  | { kind: 'became-candidate'; id: NodeId; term: Term }
  | { kind: 'became-leader'; id: NodeId; term: Term }
  | { kind: 'vote-granted' | 'vote-rejected'; id: NodeId; term: Term; candidate: NodeId; voteType: 'vote' | 'pre-vote' }
  | { kind: 'step-down'; id: NodeId; term: Term; reason: 'higher-term' | 'check-quorum' | 'removed' }
  | { kind: 'snapshot-sent'; id: NodeId; term: Term; to: NodeId; index: Index }
  | { kind: 'snapshot-installed'; id: NodeId; term: Term; index: Index }
  | { kind: 'conf-change-applied'; id: NodeId; term: Term; change: ConfChangeType; nodeId: NodeId; confState: ConfState }
  | { kind: 'conf-change-skipped'; id: NodeId; term: Term; index: Index; configIndex: Index }
  | { kind: 'transfer-started' | 'transfer-aborted'; id: NodeId; term: Term; transferee: NodeId };

/** What the caller passes to create a member. Optional fields have the documented defaults. */
export interface RaftConfigInput {
  /** This member's id; never NO_NODE. */
  id: NodeId;
  /** Persisted log and hard state (the server's WAL mirror). */
  storage: LogStorage;
  /** Source of election jitter. */
  random: Random;
  /** Election timeout base in ticks, default 10; the randomized timeout is in [electionTicks, 2*electionTicks). */
  electionTicks?: number;
  /** Heartbeat interval in ticks, default 1; must be < electionTicks. */
  heartbeatTicks?: number;
  /** Restart: last index the application applied (default 0 = storage's snapshot index). */
  applied?: Index;
  /** Max bytes of entries per append message (at least one entry is always sent), default 1 MiB. */
  maxAppendBytes?: number;
  /** Max unacknowledged appends in flight per follower, default 256. */
  maxInflightAppends?: number;
  /** Bound on proposed-but-uncommitted entry bytes at the leader, default 64 MiB. */
  maxUncommittedBytes?: number;
  /** Bound on committedEntries bytes per Ready (at least one entry is returned), default 64 MiB. */
  maxCommittedBytesPerReady?: number;
  /** Pre-vote (thesis 9.6), default 'enabled'. */
  preVote?: 'enabled' | 'disabled';
  /** Leader steps down if it hears from no quorum within an election timeout; default 'enabled'. */
  checkQuorum?: 'enabled' | 'disabled';
  /** ReadIndex mode, default 'safe' (heartbeat round); 'lease-based' requires checkQuorum. */
  readOnly?: 'safe' | 'lease-based';
  /** Sink for structured events; called synchronously, must not call back into the node. */
  onEvent?: (event: RaftEvent) => void;
}

/** The resolved configuration: every field set. */
export interface RaftConfig {
  readonly id: NodeId;
  readonly storage: LogStorage;
  readonly random: Random;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly applied: Index;
  readonly maxAppendBytes: number;
  readonly maxInflightAppends: number;
  readonly maxUncommittedBytes: number;
  readonly maxCommittedBytesPerReady: number;
  readonly preVote: 'enabled' | 'disabled';
  readonly checkQuorum: 'enabled' | 'disabled';
  readonly readOnly: 'safe' | 'lease-based';
  readonly onEvent: (event: RaftEvent) => void;
}

const MIB = 1024 * 1024;

/** Fills defaults, rejects bad combinations (throws RangeError) and returns a frozen config. */
export function resolveConfig(input: RaftConfigInput): Readonly<RaftConfig> {
  const config: RaftConfig = {
    id: input.id,
    storage: input.storage,
    random: input.random,
    electionTicks: input.electionTicks ?? 10,
    heartbeatTicks: input.heartbeatTicks ?? 1,
    applied: input.applied ?? 0,
    maxAppendBytes: input.maxAppendBytes ?? MIB,
    maxInflightAppends: input.maxInflightAppends ?? 256,
    maxUncommittedBytes: input.maxUncommittedBytes ?? 64 * MIB,
    maxCommittedBytesPerReady: input.maxCommittedBytesPerReady ?? 64 * MIB,
    preVote: input.preVote ?? 'enabled',
    checkQuorum: input.checkQuorum ?? 'enabled',
    readOnly: input.readOnly ?? 'safe',
    onEvent: input.onEvent ?? (() => {}),
  };
  const positive = (name: string, value: number): void => {
    if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`raft config: ${name} must be a positive integer, got ${value}`);
  };
  if (config.id === NO_NODE) throw new RangeError('raft config: id must not be 0');
  positive('electionTicks', config.electionTicks);
  positive('heartbeatTicks', config.heartbeatTicks);
  positive('maxAppendBytes', config.maxAppendBytes);
  positive('maxInflightAppends', config.maxInflightAppends);
  positive('maxUncommittedBytes', config.maxUncommittedBytes);
  positive('maxCommittedBytesPerReady', config.maxCommittedBytesPerReady);
  if (!Number.isSafeInteger(config.applied) || config.applied < 0) throw new RangeError(`raft config: bad applied ${config.applied}`);
  if (config.heartbeatTicks >= config.electionTicks) {
    throw new RangeError(`raft config: heartbeatTicks (${config.heartbeatTicks}) must be < electionTicks (${config.electionTicks})`);
  }
  if (config.readOnly === 'lease-based' && config.checkQuorum !== 'enabled') {
    throw new RangeError("raft config: readOnly 'lease-based' requires checkQuorum 'enabled'");
  }
  return Object.freeze(config);
}

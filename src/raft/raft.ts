/**
 * The Raft state machine of one member (Raft dissertation ch. 3, 4, 6, 9; modelled on
 * etcd-io/raft raft.go). Pure and deterministic: inputs are tick(), step() and the local
 * requests; outputs accumulate in the log's unstable tail, `messages` and `readStates` and are
 * drained by the RawNode facade's Ready.
 *
 * Layout: `step` does the term checks every role shares, then switches on the role; each role's
 * step function switches on `message.type` and delegates to a short named handler.
 */
import { assert } from '../util/assert.js';
import type { RaftConfig, RaftEvent } from './config.js';
import { RaftLog } from './log.js';
import { Progress, type ProgressState } from './progress.js';
import { committedIndex, isQuorum, voteResult } from './quorum.js';
import { ReadOnlyQueue, MAX_PENDING_READ_REQUESTS } from './read-index.js';
import { decodeConfChange } from './conf-change.js';
import type {
  AppendMessage,
  AppendResponseMessage,
  CampaignKind,
  ConfChange,
  ConfState,
  Entry,
  EntryType,
  HardState,
  HeartbeatMessage,
  HeartbeatResponseMessage,
  Index,
  Message,
  NodeId,
  ProposeMessage,
  ProposeRefusal,
  ReadState,
  Role,
  SnapshotMessage,
  Snapshot,
  SoftState,
  Term,
  VoteMessage,
  VoteResponseMessage,
} from './types.js';
import { NO_NODE } from './types.js';

/** Result of a local request (propose, conf change, read index). */
export type ProposeOutcome =
  | { ok: true }
  | { ok: false; reason: 'no-leader' | 'transfer-in-progress' | 'too-many-uncommitted' | 'conf-change-pending' | 'not-member' };

/** A snapshot of a member's state for tests, the simulator and status APIs. */
export interface RaftStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly leader: NodeId;
  readonly term: Term;
  readonly vote: NodeId;
  readonly commit: Index;
  readonly applied: Index;
  readonly lastIndex: Index;
  readonly confState: ConfState;
  /** Per-member replication progress; filled on the leader only (empty elsewhere). */
  readonly progress: ReadonlyMap<NodeId, { readonly match: Index; readonly next: Index; readonly state: ProgressState }>;
}

type CampaignType = 'pre-vote' | CampaignKind;
type WhenEmpty = 'send' | 'skip';

const EMPTY_DATA = new Uint8Array(0);
const EMPTY_ENTRIES: readonly Entry[] = Object.freeze([]) as readonly Entry[];
const OK: ProposeOutcome = Object.freeze({ ok: true });

/**
 * A follower that answers this many election timeouts' worth of heartbeats (counted in
 * heartbeat answers, electionTicks each) while its snapshot is unreported is deemed to have lost
 * it, and the snapshot is sent again. The server normally reports via reportSnapshot() first.
 */
export const SNAPSHOT_STALL_ELECTION_TIMEOUTS = 4;

/** Named maximum of ReadIndex requests waiting for the leader's first commit in its term. */
export const MAX_READS_WAITING_FOR_COMMIT = MAX_PENDING_READ_REQUESTS;

/**
 * One member's Raft state. Used through {@link RawNode}; exported for the facade only.
 *
 * Invariants (checked by {@link assertInvariants}): term never decreases; commit never decreases
 * and is <= lastIndex; applied <= commit; a leader's own progress match === lastIndex and it
 * voted for itself; a candidate voted for itself.
 */
export class Raft {
  readonly id: NodeId;
  readonly #config: RaftConfig;
  readonly log: RaftLog;
  /** Current term. Invariant: never decreases. */
  term: Term = 0;
  /** Whom we voted for in `term`, or NO_NODE. */
  vote: NodeId = NO_NODE;
  role: Role = 'follower';
  /** Known leader of `term`, or NO_NODE. */
  leader: NodeId = NO_NODE;

  #voters: NodeId[] = [];
  #learners: NodeId[] = [];
  /** Progress of every member (voters and learners), meaningful on the leader. */
  #progress = new Map<NodeId, Progress>();
  /** This member's own progress, if it is a member. */
  #self: Progress | undefined = undefined;
  #votes = new Map<NodeId, boolean>();

  /** Outgoing messages since the last Ready. */
  messages: Message[] = [];
  /** ReadIndex answers since the last Ready. */
  readStates: ReadState[] = [];
  /** Forwarded proposals of this member that were refused (see Ready.refusedProposals); drained by ready(). */
  refusedProposals: Array<{ readonly data: Uint8Array; readonly reason: ProposeRefusal }> = [];

  #electionElapsed = 0;
  #heartbeatElapsed = 0;
  /** Invariant: in [electionTicks, 2*electionTicks). */
  #randomizedElectionTimeout = 0;
  /** Member a leadership transfer is in progress to, or NO_NODE. */
  leadTransferee: NodeId = NO_NODE;
  /** Index of the latest conf change proposed by this leader; a new one waits until it is applied. */
  #pendingConfIndex: Index = 0;
  /** Payload bytes proposed by this leader and not yet committed+applied. Invariant: >= 0. */
  #uncommittedBytes = 0;
  readonly #readOnly = new ReadOnlyQueue();
  /** ReadIndex requests waiting until this leader commits an entry of its term. Bounded by MAX_READS_WAITING_FOR_COMMIT. */
  #readsWaitingForCommit: Array<{ from: NodeId; context: Uint8Array }> = [];

  /** Deferred leader work done once per Ready (batching): send new entries, a commit update, a read round. */
  #entriesPending = false;
  #commitBroadcastPending = false;
  #readRoundPending = false;

  #highestTermSeen = 0;
  #highestCommitSeen = 0;
  /**
   * Log index up to which the configuration in the tracker reflects the log: the snapshot's index
   * after a restore, or the index of the last conf change applied. A conf change at or below it is
   * already part of the configuration (an application applying behind the core may still hand in
   * conf changes older than a snapshot the core has restored) and is skipped.
   * Invariant: never decreases except when a restart rebuilds the core.
   */
  #configIndex: Index = 0;

  readonly #matchOf = (id: NodeId): Index => this.#progress.get(id)?.match ?? 0;

  constructor(config: RaftConfig) {
    this.id = config.id;
    this.#config = config;
    this.log = new RaftLog(config.storage);
    const { hardState, confState } = config.storage.initialState();
    this.#setConfState(confState);
    this.#configIndex = Math.max(0, config.storage.firstIndex() - 1);
    this.#loadHardState(hardState);
    if (config.applied > 0) {
      if (!(config.applied <= this.log.lastIndex())) assert(false, `applied ${config.applied} beyond last index ${this.log.lastIndex()}`);
      // Entries the application applied were committed, even if the persisted commit lags.
      this.log.commitTo(config.applied);
      this.log.appliedTo(Math.max(config.applied, this.log.applied));
    }
    this.#replayAppliedConfChanges();
    this.#becomeFollowerQuiet(this.term, NO_NODE);
    this.#highestTermSeen = this.term;
    this.#highestCommitSeen = this.log.committed;
  }

  // ---------------------------------------------------------------------------------------------
  // Setup

  #loadHardState(hardState: HardState): void {
    if (hardState.term === 0 && hardState.vote === NO_NODE && hardState.commit === 0) return;
    if (!(hardState.commit <= this.log.lastIndex())) assert(false, `hard state commit ${hardState.commit} beyond last index ${this.log.lastIndex()}`);
    // A snapshot newer than the persisted commit index is itself committed.
    this.log.committed = Math.max(hardState.commit, this.log.committed);
    this.term = hardState.term;
    this.vote = hardState.vote;
  }

  /**
   * On restart with `applied` beyond the snapshot, the application will not re-apply entries up to
   * `applied`, so membership changes among them are replayed here from the log.
   */
  #replayAppliedConfChanges(): void {
    const first = this.log.firstIndex();
    if (this.log.applied < first) return;
    const result = this.log.slice(first, this.log.applied + 1, Number.MAX_SAFE_INTEGER);
    assert(result.ok, 'applied entries must be in storage on restart');
    for (const entry of result.value) {
      if (entry.type !== 'conf-change') continue;
      this.#changeMembership(decodeConfChange(entry.data));
      this.#configIndex = entry.index;
    }
  }

  #setConfState(confState: ConfState): void {
    this.#voters = [...confState.voters];
    this.#learners = confState.learners.filter((id) => !confState.voters.includes(id));
    this.#resetProgress();
  }

  #resetProgress(): void {
    const lastIndex = this.log.lastIndex();
    this.#progress = new Map();
    const add = (id: NodeId, role: 'voter' | 'learner'): void => {
      const progress = new Progress({
        match: id === this.id ? lastIndex : 0,
        next: lastIndex + 1,
        maxInflightAppends: this.#config.maxInflightAppends,
        role,
      });
      progress.recentActive = id === this.id;
      this.#progress.set(id, progress);
    };
    for (const id of this.#voters) add(id, 'voter');
    for (const id of this.#learners) add(id, 'learner');
    this.#self = this.#progress.get(this.id);
  }

  confState(): ConfState {
    return { voters: [...this.#voters], learners: [...this.#learners] };
  }

  softState(): SoftState {
    return { leader: this.leader, role: this.role };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  #emit(event: RaftEvent): void {
    this.#config.onEvent(event);
  }

  /** A voter of the current configuration with no pending snapshot may campaign (learners never do). */
  promotable(): boolean {
    return this.#self !== undefined && this.#self.role === 'voter' && !this.log.hasPendingSnapshot();
  }

  // ---------------------------------------------------------------------------------------------
  // Role transitions

  #reset(term: Term): void {
    if (term !== this.term) {
      this.term = term;
      this.vote = NO_NODE;
    }
    this.leader = NO_NODE;
    this.#electionElapsed = 0;
    this.#heartbeatElapsed = 0;
    this.#resetRandomizedElectionTimeout();
    this.leadTransferee = NO_NODE;
    this.#votes.clear();
    this.#resetProgress();
    this.#pendingConfIndex = 0;
    this.#uncommittedBytes = 0;
    this.#readOnly.clear();
    this.#readsWaitingForCommit = [];
    this.#entriesPending = false;
    this.#commitBroadcastPending = false;
    this.#readRoundPending = false;
  }

  #resetRandomizedElectionTimeout(): void {
    const base = this.#config.electionTicks;
    this.#randomizedElectionTimeout = base + this.#config.random.nextInt(base);
    assert(this.#randomizedElectionTimeout > this.#config.heartbeatTicks, 'election timeout must not fire every heartbeat');
  }

  #becomeFollowerQuiet(term: Term, leader: NodeId): void {
    this.#reset(term);
    this.leader = leader;
    this.role = 'follower';
  }

  becomeFollower(term: Term, leader: NodeId): void {
    this.#becomeFollowerQuiet(term, leader);
    this.#emit({ kind: 'became-follower', id: this.id, term, leader });
  }

  #becomePreCandidate(): void {
    assert(this.role !== 'leader', 'leader cannot become pre-candidate');
    // Pre-vote changes neither term nor vote (thesis 9.6).
    this.#votes.clear();
    this.leader = NO_NODE;
    this.role = 'pre-candidate';
    this.#electionElapsed = 0;
    this.#resetRandomizedElectionTimeout();
    this.#emit({ kind: 'became-pre-candidate', id: this.id, term: this.term });
  }

  #becomeCandidate(): void {
    assert(this.role !== 'leader', 'leader cannot become candidate');
    this.#reset(this.term + 1);
    this.vote = this.id;
    this.role = 'candidate';
    this.#emit({ kind: 'became-candidate', id: this.id, term: this.term });
  }

  #becomeLeader(): void {
    assert(this.role === 'candidate', 'only a candidate becomes leader');
    this.#reset(this.term);
    this.leader = this.id;
    this.role = 'leader';
    const self = this.#self;
    assert(self !== undefined, 'leader must be a member');
    self.becomeReplicate();
    self.recentActive = true;
    // Conservatively treat any entry in the log as a possibly unapplied conf change.
    this.#pendingConfIndex = this.log.lastIndex();
    this.#emit({ kind: 'became-leader', id: this.id, term: this.term });
    // The no-op of the new term: committing it commits every earlier entry (thesis 3.6.2).
    this.#appendEntry('normal', EMPTY_DATA);
  }

  // ---------------------------------------------------------------------------------------------
  // Ticks

  /** Advances logical time by one tick. */
  tick(): void {
    if (this.role === 'leader') this.#tickHeartbeat();
    else this.#tickElection();
  }

  #tickElection(): void {
    this.#electionElapsed++;
    if (this.promotable() && this.#electionElapsed >= this.#randomizedElectionTimeout) {
      this.#electionElapsed = 0;
      this.hup('election');
    }
  }

  #tickHeartbeat(): void {
    this.#heartbeatElapsed++;
    this.#electionElapsed++;
    if (this.#electionElapsed >= this.#config.electionTicks) {
      this.#electionElapsed = 0;
      if (this.#config.checkQuorum === 'enabled' && !this.#quorumActive()) {
        this.#emit({ kind: 'step-down', id: this.id, term: this.term, reason: 'check-quorum' });
        this.becomeFollower(this.term, NO_NODE);
        return;
      }
      if (this.leadTransferee !== NO_NODE) this.#abortLeaderTransfer();
    }
    if (this.#heartbeatElapsed >= this.#config.heartbeatTicks) {
      this.#heartbeatElapsed = 0;
      this.#broadcastHeartbeat();
    }
  }

  /** Whether a quorum was heard from since the last check; resets the activity marks. */
  #quorumActive(): boolean {
    const active = isQuorum(this.#voters, (id) => id === this.id || (this.#progress.get(id)?.recentActive ?? false));
    for (const [id, progress] of this.#progress) if (id !== this.id) progress.recentActive = false;
    return active;
  }

  // ---------------------------------------------------------------------------------------------
  // Elections

  /** Starts an election (with pre-vote first when enabled) if this member may campaign. */
  hup(kind: CampaignKind): void {
    if (this.role === 'leader') return;
    if (!this.promotable()) return;
    if (this.#hasUnappliedConfChanges()) return;
    if (kind === 'election' && this.#config.preVote === 'enabled') this.#campaign('pre-vote');
    else this.#campaign(kind);
  }

  #hasUnappliedConfChanges(): boolean {
    if (this.log.committed <= this.log.applied) return false;
    const lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    const result = this.log.slice(lo, this.log.committed + 1, Number.MAX_SAFE_INTEGER);
    if (!result.ok) return false;
    return result.value.some((entry) => entry.type === 'conf-change');
  }

  #campaign(type: CampaignType): void {
    let term: Term;
    if (type === 'pre-vote') {
      this.#becomePreCandidate();
      term = this.term + 1;
    } else {
      this.#becomeCandidate();
      term = this.term;
    }
    this.#emit({ kind: 'election-started', id: this.id, term, campaign: type });
    this.#votes.set(this.id, true);
    if (voteResult(this.#voters, this.#votes) === 'won') {
      if (type === 'pre-vote') this.#campaign('election');
      else this.#becomeLeader();
      return;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const to of this.#voters) {
      if (to === this.id) continue;
      this.messages.push({
        type: type === 'pre-vote' ? 'pre-vote' : 'vote',
        from: this.id,
        to,
        term,
        logTerm: lastTerm,
        index: lastIndex,
        campaign: type === 'transfer' ? 'transfer' : 'election',
      });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Step: term checks, then per-role dispatch

  /** Processes a message from a peer. Messages for other members or from stale terms are ignored safely. */
  step(message: Message): void {
    if (message.to !== this.id || message.from === this.id) return;
    if (message.term > this.term) {
      if (!this.#acceptHigherTerm(message)) return;
    } else if (message.term < this.term && !(message.term === 0 && isForwardedRequest(message))) {
      this.#answerLowerTerm(message);
      return;
    }
    if (message.type === 'vote' || message.type === 'pre-vote') {
      this.#handleVoteRequest(message);
      return;
    }
    if (message.type === 'propose-refused') {
      // Whatever our role now: the proposer's waiters fail at once and its clients may retry.
      for (const entry of message.entries) this.refusedProposals.push({ data: entry.data, reason: message.reason });
      return;
    }
    switch (this.role) {
      case 'leader':
        this.#stepLeader(message);
        return;
      case 'candidate':
      case 'pre-candidate':
        this.#stepCandidate(message);
        return;
      case 'follower':
        this.#stepFollower(message);
        return;
    }
  }

  /** A message from a higher term: maybe ignore it (lease), else adopt the term. Returns whether to continue. */
  #acceptHigherTerm(message: Message): boolean {
    if (message.type === 'vote' || message.type === 'pre-vote') {
      // Thesis 4.2.3: a member that heard from a leader within the minimum election timeout
      // ignores vote requests, so a removed or partitioned member cannot disrupt the cluster.
      const inLease =
        this.#config.checkQuorum === 'enabled' && this.leader !== NO_NODE && this.#electionElapsed < this.#config.electionTicks;
      if (message.campaign !== 'transfer' && inLease) return false;
      if (message.type === 'pre-vote') return true; // never change term for a pre-vote
    }
    if (message.type === 'pre-vote-response' && !message.reject) return true; // granted pre-votes carry the future term
    const leader = message.type === 'append' || message.type === 'heartbeat' || message.type === 'snapshot' ? message.from : NO_NODE;
    if (this.role === 'leader') this.#emit({ kind: 'step-down', id: this.id, term: this.term, reason: 'higher-term' });
    this.becomeFollower(message.term, leader);
    return true;
  }

  #answerLowerTerm(message: Message): void {
    const guarded = this.#config.checkQuorum === 'enabled' || this.#config.preVote === 'enabled';
    if (guarded && (message.type === 'heartbeat' || message.type === 'append')) {
      // A stale leader (e.g. after a partition) learns our term from this and steps down; without
      // it, pre-vote/check-quorum could leave it isolated forever.
      this.#sendAppendResponse({ to: message.from, index: 0, reject: false, rejectHint: 0, logTerm: 0 });
    } else if (message.type === 'pre-vote') {
      this.messages.push({ type: 'pre-vote-response', from: this.id, to: message.from, term: this.term, reject: true });
    }
  }

  #stepLeader(message: Message): void {
    switch (message.type) {
      case 'propose':
        this.#handleForwardedProposal(message);
        return;
      case 'read-index':
        this.#handleReadIndexAtLeader({ from: message.from, context: message.context });
        return;
      case 'append-response':
        this.#handleAppendResponse(message);
        return;
      case 'heartbeat-response':
        this.#handleHeartbeatResponse(message);
        return;
      case 'transfer-leader':
        this.#handleTransferLeader(message.transferee);
        return;
      case 'append':
      case 'heartbeat':
      case 'snapshot':
      case 'vote':
      case 'pre-vote':
      case 'vote-response':
      case 'pre-vote-response':
      case 'timeout-now':
      case 'read-index-response':
      case 'propose-refused':
        return; // not for a leader of this term
    }
  }

  #stepCandidate(message: Message): void {
    switch (message.type) {
      case 'append':
        this.becomeFollower(message.term, message.from);
        this.#handleAppend(message);
        return;
      case 'heartbeat':
        this.becomeFollower(message.term, message.from);
        this.#handleHeartbeat(message);
        return;
      case 'snapshot':
        this.becomeFollower(message.term, message.from);
        this.#handleSnapshot(message);
        return;
      case 'vote-response':
      case 'pre-vote-response':
        this.#handleVoteResponse(message);
        return;
      case 'propose':
        this.#refuseForwardedProposal(message, 'not-leader');
        return;
      case 'read-index':
      case 'read-index-response':
      case 'transfer-leader':
      case 'timeout-now':
      case 'append-response':
      case 'heartbeat-response':
      case 'vote':
      case 'pre-vote':
      case 'propose-refused':
        return; // no leader to act on it
    }
  }

  #stepFollower(message: Message): void {
    switch (message.type) {
      case 'append':
        this.#heardFromLeader(message.from);
        this.#handleAppend(message);
        return;
      case 'heartbeat':
        this.#heardFromLeader(message.from);
        this.#handleHeartbeat(message);
        return;
      case 'snapshot':
        this.#heardFromLeader(message.from);
        this.#handleSnapshot(message);
        return;
      case 'timeout-now':
        this.hup('transfer');
        return;
      case 'read-index-response':
        this.readStates.push({ index: message.index, context: message.context });
        return;
      case 'propose':
        // Only local requests are forwarded (by the RawNode facade); a peer's forwarded proposal
        // reaching a non-leader is refused (the proposer answers its client at once) rather than
        // bounced around.
        this.#refuseForwardedProposal(message, 'not-leader');
        return;
      case 'read-index':
      case 'transfer-leader':
        // A forwarded read or transfer reaching a non-leader is dropped; the requester retries.
        return;
      case 'append-response':
      case 'heartbeat-response':
      case 'vote':
      case 'pre-vote':
      case 'vote-response':
      case 'pre-vote-response':
      case 'propose-refused':
        return;
    }
  }

  #heardFromLeader(leader: NodeId): void {
    this.#electionElapsed = 0;
    this.leader = leader;
  }

  // ---------------------------------------------------------------------------------------------
  // Vote handlers

  #handleVoteRequest(message: VoteMessage): void {
    const canVote =
      this.vote === message.from ||
      (this.vote === NO_NODE && this.leader === NO_NODE) ||
      (message.type === 'pre-vote' && message.term > this.term);
    // A learner answers like a voter (etcd-io/raft TestLearnerCanVote): it may have been promoted
    // without having applied the promotion yet, and the candidate counts only members it knows as
    // voters. Refusing can leave a configuration unable to reach quorum (simulator seed 319).
    const responseType = message.type === 'vote' ? 'vote-response' : 'pre-vote-response';
    const voteType = message.type;
    if (canVote && this.log.isUpToDate({ lastIndex: message.index, lastTerm: message.logTerm })) {
      this.messages.push({ type: responseType, from: this.id, to: message.from, term: message.term, reject: false });
      if (message.type === 'vote') {
        this.#electionElapsed = 0;
        this.vote = message.from;
      }
      this.#emit({ kind: 'vote-granted', id: this.id, term: this.term, candidate: message.from, voteType });
    } else {
      this.messages.push({ type: responseType, from: this.id, to: message.from, term: this.term, reject: true });
      this.#emit({ kind: 'vote-rejected', id: this.id, term: this.term, candidate: message.from, voteType });
    }
  }

  #handleVoteResponse(message: VoteResponseMessage): void {
    const expected = this.role === 'pre-candidate' ? 'pre-vote-response' : 'vote-response';
    if (message.type !== expected) return;
    if (!this.#votes.has(message.from)) this.#votes.set(message.from, !message.reject);
    switch (voteResult(this.#voters, this.#votes)) {
      case 'won':
        if (this.role === 'pre-candidate') this.#campaign('election');
        else this.#becomeLeader();
        return;
      case 'lost':
        this.becomeFollower(this.term, NO_NODE);
        return;
      case 'pending':
        return;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Follower handlers

  #handleAppend(message: AppendMessage): void {
    if (message.index < this.log.committed) {
      this.#sendAppendResponse({ to: message.from, index: this.log.committed, reject: false, rejectHint: 0, logTerm: 0 });
      return;
    }
    if (this.#knowsNoConfiguration()) {
      // Entries from index 1 on describe membership changes relative to the bootstrap ConfState,
      // which is in no entry: ask for a snapshot first. A rejection at index 0 says so (no member
      // with a configuration ever rejects index 0, which every log matches).
      this.#sendAppendResponse({ to: message.from, index: 0, reject: true, rejectHint: 0, logTerm: 0 });
      return;
    }
    const last = this.log.maybeAppend(message);
    if (last !== undefined) {
      this.#sendAppendResponse({ to: message.from, index: last, reject: false, rejectHint: 0, logTerm: 0 });
      return;
    }
    // Fast back-off (etcd-io/raft #handleAppendEntries): hint the largest index whose term is <=
    // the leader's term at message.index, so the leader can skip a whole conflicting term.
    const hint = this.log.findConflictByTerm({ index: Math.min(message.index, this.log.lastIndex()), term: message.logTerm });
    this.#sendAppendResponse({ to: message.from, index: message.index, reject: true, rejectHint: hint.index, logTerm: hint.term });
  }

  #handleHeartbeat(message: HeartbeatMessage): void {
    this.log.commitTo(Math.min(message.commit, this.log.lastIndex()));
    this.messages.push({ type: 'heartbeat-response', from: this.id, to: message.from, term: this.term, context: message.context });
  }

  #handleSnapshot(message: SnapshotMessage): void {
    const index = message.snapshot.metadata.index;
    if (this.#restore(message.snapshot)) {
      this.#emit({ kind: 'snapshot-installed', id: this.id, term: this.term, index });
      this.#sendAppendResponse({ to: message.from, index: this.log.lastIndex(), reject: false, rejectHint: 0, logTerm: 0 });
    } else {
      this.#sendAppendResponse({ to: message.from, index: this.log.committed, reject: false, rejectHint: 0, logTerm: 0 });
    }
  }

  /** A member added later starts like this: no configuration and an empty log. */
  #knowsNoConfiguration(): boolean {
    return this.#voters.length === 0 && this.#learners.length === 0 && this.log.lastIndex() === 0;
  }

  /** Installs a snapshot unless it is stale or does not include us. Returns whether it was installed. */
  #restore(snapshot: Snapshot): boolean {
    const { index, term, confState } = snapshot.metadata;
    if (this.role !== 'follower') return false;
    if (index === 0) {
      // The membership snapshot: only a member that knows no configuration and has no log adopts
      // it (it need not include us: the conf change adding us follows in the log).
      if (!this.#knowsNoConfiguration() || this.log.hasPendingSnapshot()) return false;
      this.log.restore(snapshot);
      this.#setConfState(confState);
      this.#configIndex = 0;
      return true;
    }
    if (index <= this.log.committed) return false;
    // A member outside the snapshot's configuration was removed: ignore it. A fresh member (empty
    // log) accepts it anyway: the conf change adding it follows the snapshot in the log.
    const member = confState.voters.includes(this.id) || confState.learners.includes(this.id);
    if (!member && this.log.lastIndex() !== 0) return false;
    if (this.log.matchTerm(index, term)) {
      // We already have the snapshot's last entry: just fast-forward the commit index.
      this.log.commitTo(index);
      return false;
    }
    this.log.restore(snapshot);
    this.#setConfState(confState);
    this.#configIndex = index;
    return true;
  }

  // ---------------------------------------------------------------------------------------------
  // Leader: proposals

  /** Appends a local proposal (leader), forwards it (follower), or refuses it. */
  propose(type: EntryType, data: Uint8Array): ProposeOutcome {
    if (this.role === 'leader') return this.#proposeAtLeader(type, data);
    if (this.leader === NO_NODE || this.role !== 'follower') return { ok: false, reason: 'no-leader' };
    this.messages.push({
      type: 'propose',
      from: this.id,
      to: this.leader,
      term: 0,
      entries: [{ term: 0, index: 0, type, data }],
    });
    return OK;
  }

  #handleForwardedProposal(message: ProposeMessage): void {
    let refused: { entries: Entry[]; reason: ProposeRefusal } | undefined;
    for (const entry of message.entries) {
      const outcome = this.#proposeAtLeader(entry.type, entry.data);
      if (outcome.ok) continue;
      const reason: ProposeRefusal = outcome.reason === 'no-leader' ? 'not-leader' : outcome.reason;
      if (refused !== undefined && refused.reason !== reason) {
        this.#sendProposeRefused(message.from, refused);
        refused = undefined;
      }
      refused ??= { entries: [], reason };
      refused.entries.push(entry);
    }
    if (refused !== undefined) this.#sendProposeRefused(message.from, refused);
  }

  #refuseForwardedProposal(message: ProposeMessage, reason: ProposeRefusal): void {
    this.#sendProposeRefused(message.from, { entries: [...message.entries], reason });
  }

  #sendProposeRefused(to: NodeId, refused: { entries: readonly Entry[]; reason: ProposeRefusal }): void {
    this.messages.push({ type: 'propose-refused', from: this.id, to, term: 0, entries: refused.entries, reason: refused.reason });
  }

  #proposeAtLeader(type: EntryType, data: Uint8Array): ProposeOutcome {
    if (this.#self === undefined) return { ok: false, reason: 'not-member' };
    if (this.leadTransferee !== NO_NODE) return { ok: false, reason: 'transfer-in-progress' };
    if (type === 'conf-change' && this.#pendingConfIndex > this.log.applied) return { ok: false, reason: 'conf-change-pending' };
    const size = data.byteLength;
    if (this.#uncommittedBytes > 0 && size > 0 && this.#uncommittedBytes + size > this.#config.maxUncommittedBytes) {
      return { ok: false, reason: 'too-many-uncommitted' };
    }
    this.#uncommittedBytes += size;
    const index = this.#appendEntry(type, data);
    if (type === 'conf-change') this.#pendingConfIndex = index;
    return OK;
  }

  /** Appends one entry of the current term to the leader's log (hot path: no copying). */
  #appendEntry(type: EntryType, data: Uint8Array): Index {
    const unstable = this.log.unstable;
    const index = this.log.lastIndex() + 1;
    assert(index === unstable.offset + unstable.entries.length, 'leader append must extend the unstable tail');
    unstable.appendOne({ term: this.term, index, type, data });
    (this.#self as Progress).maybeUpdate(index);
    this.#entriesPending = true;
    return index;
  }

  /** The committed+applied entries leave the uncommitted budget. */
  reduceUncommittedBytes(entries: readonly Entry[]): void {
    if (this.role !== 'leader' || this.#uncommittedBytes === 0) return;
    let size = 0;
    for (let i = 0; i < entries.length; i++) size += entries[i].data.byteLength;
    this.#uncommittedBytes = Math.max(0, this.#uncommittedBytes - size);
  }

  // ---------------------------------------------------------------------------------------------
  // Leader: replication

  #maybeCommit(): boolean {
    const index = committedIndex(this.#voters, this.#matchOf);
    // Only entries of the current term are committed by counting replicas (thesis 3.6.2).
    if (index > this.log.committed && this.log.termOrZero(index) === this.term) {
      this.log.commitTo(index);
      return true;
    }
    return false;
  }

  #committedEntryInCurrentTerm(): boolean {
    return this.log.termOrZero(this.log.committed) === this.term;
  }

  /**
   * Sends one append to `to` if flow control allows: the entries from its next index (within
   * maxAppendBytes), or a snapshot if they are compacted. Returns whether something was sent.
   */
  #sendAppend(to: NodeId, options: { whenEmpty: WhenEmpty }): boolean {
    const progress = this.#progress.get(to);
    if (progress === undefined || progress.isPaused()) return false;
    const previousIndex = progress.next - 1;
    if (previousIndex === 0 && progress.needsMembershipSnapshot && this.log.firstIndex() === 1) {
      return this.#sendSnapshot(to, progress);
    }
    const previousTerm = this.log.term(previousIndex);
    if (!previousTerm.ok) return this.#sendSnapshot(to, progress);
    let entries = EMPTY_ENTRIES;
    if (progress.next <= this.log.lastIndex()) {
      const result = this.log.entriesFrom(progress.next, this.#config.maxAppendBytes);
      if (!result.ok) return this.#sendSnapshot(to, progress);
      entries = result.value;
    }
    if (entries.length === 0 && options.whenEmpty === 'skip') return false;
    this.messages.push({
      type: 'append',
      from: this.id,
      to,
      term: this.term,
      logTerm: previousTerm.value,
      index: previousIndex,
      entries,
      commit: this.log.committed,
    });
    progress.sentEntries({ count: entries.length, lastIndex: previousIndex + entries.length });
    progress.commitSent = this.log.committed;
    return true;
  }

  #sendSnapshot(to: NodeId, progress: Progress): boolean {
    if (!progress.recentActive) return false;
    const result = this.log.snapshot();
    if (!result.ok) return false;
    const snapshot = result.value;
    assert(snapshot.metadata.index > 0 || this.log.firstIndex() === 1, 'a compacted log must have a non-empty snapshot');
    progress.becomeSnapshot(snapshot.metadata.index);
    this.messages.push({ type: 'snapshot', from: this.id, to, term: this.term, snapshot });
    this.#emit({ kind: 'snapshot-sent', id: this.id, term: this.term, to, index: snapshot.metadata.index });
    return true;
  }

  #broadcastHeartbeat(): void {
    // Re-send the latest pending read round's context so a lost round does not stall reads.
    const context = this.#config.readOnly === 'safe' ? (this.#readOnly.lastContext() ?? null) : null;
    for (const [to, progress] of this.#progress) {
      if (to === this.id) continue;
      this.messages.push({
        type: 'heartbeat',
        from: this.id,
        to,
        term: this.term,
        commit: Math.min(progress.match, this.log.committed),
        context,
      });
    }
  }

  /** Whether deferred leader work is waiting for the next Ready. */
  needsFlush(): boolean {
    return this.#entriesPending || this.#commitBroadcastPending || this.#readRoundPending;
  }

  /**
   * Does the leader work deferred since the last Ready: one append per follower carrying every
   * entry proposed meanwhile (batching), a commit update, and one heartbeat round serving every
   * ReadIndex request queued meanwhile. Called by the facade before building a Ready.
   */
  flush(): void {
    if (this.role === 'leader') {
      if (this.#maybeCommit()) this.#onCommitAdvanced();
      if (this.#entriesPending || this.#commitBroadcastPending) {
        const committed = this.log.committed;
        for (const [to, progress] of this.#progress) {
          if (to === this.id) continue;
          // An empty append is worth sending only to tell the follower a newer commit index.
          const whenEmpty: WhenEmpty = progress.commitSent < committed ? 'send' : 'skip';
          if (this.#sendAppend(to, { whenEmpty })) while (this.#sendAppend(to, { whenEmpty: 'skip' }));
        }
      }
      if (this.#readRoundPending) this.#broadcastHeartbeat();
    }
    this.#entriesPending = false;
    this.#commitBroadcastPending = false;
    this.#readRoundPending = false;
  }

  #onCommitAdvanced(): void {
    this.#commitBroadcastPending = true;
    if (this.#readsWaitingForCommit.length > 0 && this.#committedEntryInCurrentTerm()) {
      const waiting = this.#readsWaitingForCommit;
      this.#readsWaitingForCommit = [];
      for (const request of waiting) this.#answerReadIndex(request);
    }
  }

  #handleAppendResponse(message: AppendResponseMessage): void {
    const progress = this.#progress.get(message.from);
    if (progress === undefined) return;
    progress.recentActive = true;
    if (message.reject) {
      this.#handleAppendRejection(message, progress);
      return;
    }
    const advanced = progress.maybeUpdate(message.index);
    // A probe (or snapshot) answer confirming the current match also moves the state machine on.
    if (!advanced && !(progress.match === message.index && progress.state !== 'replicate')) return;
    progress.needsMembershipSnapshot = false;
    if (progress.state === 'probe') {
      progress.becomeReplicate();
    } else if (progress.state === 'snapshot' && progress.match + 1 >= this.log.firstIndex()) {
      progress.becomeProbe();
      progress.becomeReplicate();
    } else if (progress.state === 'replicate') {
      progress.inflights.freeLE(message.index);
    }
    if (this.#maybeCommit()) this.#onCommitAdvanced();
    // Whatever the follower still lacks goes out with the next flush (one append per Ready).
    if (progress.match < this.log.lastIndex() || progress.commitSent < this.log.committed) this.#entriesPending = true;
    if (message.from === this.leadTransferee && progress.match === this.log.lastIndex()) this.#sendTimeoutNow(message.from);
  }

  #handleAppendRejection(message: AppendResponseMessage, progress: Progress): void {
    if (message.index === 0) {
      // The follower knows no configuration (added with an empty storage): restart from index 1,
      // where sendAppend sends the membership snapshot (or a real one if our log is compacted).
      if (progress.match !== 0 || progress.state === 'snapshot') return;
      progress.needsMembershipSnapshot = true;
      progress.becomeProbe();
      this.#sendAppend(message.from, { whenEmpty: 'send' });
      return;
    }
    let matchHint = message.rejectHint;
    if (message.logTerm > 0) matchHint = this.log.findConflictByTerm({ index: message.rejectHint, term: message.logTerm }).index;
    if (!progress.maybeDecreaseTo({ rejected: message.index, matchHint })) return;
    if (progress.state === 'replicate') progress.becomeProbe();
    this.#sendAppend(message.from, { whenEmpty: 'send' });
  }

  #handleHeartbeatResponse(message: HeartbeatResponseMessage): void {
    const progress = this.#progress.get(message.from);
    if (progress === undefined) return;
    progress.recentActive = true;
    progress.probeSent = false;
    if (progress.state === 'snapshot' && ++progress.heartbeatsWhileSnapshot >= SNAPSHOT_STALL_ELECTION_TIMEOUTS * this.#config.electionTicks) {
      // The follower is alive but the snapshot never arrived and nobody called reportSnapshot:
      // treat it as failed so it is sent again.
      progress.pendingSnapshot = 0;
      progress.becomeProbe();
    }
    // Acknowledgements may have been lost: free one slot so a full window cannot stall forever.
    if (progress.state === 'replicate' && progress.inflights.full()) progress.inflights.freeFirstOne();
    if (progress.match < this.log.lastIndex()) this.#sendAppend(message.from, { whenEmpty: 'send' });
    if (this.#config.readOnly !== 'safe' || message.context === null || message.context.length === 0) return;
    const acks = this.#readOnly.recordAck({ from: message.from, context: message.context });
    if (acks === undefined || !isQuorum(this.#voters, (id) => acks.has(id))) return;
    for (const request of this.#readOnly.release(message.context)) this.#respondToRead(request);
  }

  // ---------------------------------------------------------------------------------------------
  // ReadIndex (thesis 6.4)

  /** A local ReadIndex request: answered at the leader, forwarded by a follower. */
  readIndex(context: Uint8Array): ProposeOutcome {
    if (this.role === 'leader') {
      return this.#handleReadIndexAtLeader({ from: this.id, context })
        ? OK
        : { ok: false, reason: 'too-many-uncommitted' };
    }
    if (this.role !== 'follower' || this.leader === NO_NODE) return { ok: false, reason: 'no-leader' };
    this.messages.push({ type: 'read-index', from: this.id, to: this.leader, term: 0, context });
    return OK;
  }

  /** Returns false when the request had to be dropped (queues full). */
  #handleReadIndexAtLeader(request: { from: NodeId; context: Uint8Array }): boolean {
    if (this.#voters.length === 1 && this.#voters[0] === this.id) {
      this.#respondToRead({ index: this.log.committed, ...request });
      return true;
    }
    if (!this.#committedEntryInCurrentTerm()) {
      // Our commit index may be stale until an entry of our term commits (thesis 6.4 step 1).
      if (this.#readsWaitingForCommit.length >= MAX_READS_WAITING_FOR_COMMIT) return false;
      this.#readsWaitingForCommit.push(request);
      return true;
    }
    return this.#answerReadIndex(request);
  }

  #answerReadIndex(request: { from: NodeId; context: Uint8Array }): boolean {
    if (this.#config.readOnly === 'lease-based') {
      this.#respondToRead({ index: this.log.committed, ...request });
      return true;
    }
    if (!this.#readOnly.add({ index: this.log.committed, from: request.from, context: request.context })) return false;
    this.#readOnly.recordAck({ from: this.id, context: request.context });
    this.#readRoundPending = true;
    return true;
  }

  #respondToRead(request: { index: Index; from: NodeId; context: Uint8Array }): void {
    if (request.from === this.id || request.from === NO_NODE) {
      this.readStates.push({ index: request.index, context: request.context });
    } else {
      this.messages.push({ type: 'read-index-response', from: this.id, to: request.from, term: this.term, index: request.index, context: request.context });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Leadership transfer (thesis 3.10)

  /** A local transfer request: handled at the leader, forwarded by a follower, else ignored. */
  transferLeader(transferee: NodeId): void {
    if (this.role === 'leader') this.#handleTransferLeader(transferee);
    else if (this.role === 'follower' && this.leader !== NO_NODE) {
      this.messages.push({ type: 'transfer-leader', from: this.id, to: this.leader, term: 0, transferee });
    }
  }

  #handleTransferLeader(transferee: NodeId): void {
    const progress = this.#progress.get(transferee);
    if (progress === undefined || progress.role === 'learner') return;
    if (this.leadTransferee !== NO_NODE) {
      if (this.leadTransferee === transferee) return;
      this.#abortLeaderTransfer();
    }
    if (transferee === this.id) return;
    // The transfer must finish within an election timeout or is aborted (tickHeartbeat).
    this.#electionElapsed = 0;
    this.leadTransferee = transferee;
    this.#emit({ kind: 'transfer-started', id: this.id, term: this.term, transferee });
    if (progress.match === this.log.lastIndex()) this.#sendTimeoutNow(transferee);
    else this.#sendAppend(transferee, { whenEmpty: 'send' });
  }

  #sendTimeoutNow(to: NodeId): void {
    this.messages.push({ type: 'timeout-now', from: this.id, to, term: this.term });
  }

  #abortLeaderTransfer(): void {
    if (this.leadTransferee === NO_NODE) return;
    this.#emit({ kind: 'transfer-aborted', id: this.id, term: this.term, transferee: this.leadTransferee });
    this.leadTransferee = NO_NODE;
  }

  // ---------------------------------------------------------------------------------------------
  // Reports from the caller

  reportUnreachable(id: NodeId): void {
    if (this.role !== 'leader') return;
    const progress = this.#progress.get(id);
    if (progress !== undefined && progress.state === 'replicate') progress.becomeProbe();
  }

  reportSnapshot(id: NodeId, status: 'finished' | 'failed'): void {
    if (this.role !== 'leader') return;
    const progress = this.#progress.get(id);
    if (progress === undefined || progress.state !== 'snapshot') return;
    if (status === 'failed') progress.pendingSnapshot = 0;
    progress.becomeProbe();
    // Wait for the follower's answer (or a heartbeat response) before probing again.
    progress.probeSent = true;
  }

  // ---------------------------------------------------------------------------------------------
  // Membership

  /**
   * Applies the committed conf change at log index `index` to the configuration and returns the
   * new ConfState. A change at or below the configuration's index (see #configIndex) is already
   * reflected and is skipped.
   */
  applyConfChange(change: ConfChange, index: Index): ConfState {
    if (index <= this.#configIndex) {
      this.#emit({ kind: 'conf-change-skipped', id: this.id, term: this.term, index, configIndex: this.#configIndex });
      return this.confState();
    }
    this.#configIndex = index;
    this.#changeMembership(change);
    const confState = this.confState();
    this.#emit({ kind: 'conf-change-applied', id: this.id, term: this.term, change: change.type, nodeId: change.nodeId, confState });
    if (this.role === 'leader') {
      if (this.#self === undefined) {
        // A removed leader steps down; the rest elect a new leader after an election timeout.
        this.#emit({ kind: 'step-down', id: this.id, term: this.term, reason: 'removed' });
        this.becomeFollower(this.term, NO_NODE);
      } else {
        if (this.leadTransferee !== NO_NODE && !this.#progress.has(this.leadTransferee)) this.#abortLeaderTransfer();
        if (this.#maybeCommit()) this.#onCommitAdvanced();
        this.#entriesPending = true;
      }
    }
    return confState;
  }

  #changeMembership(change: ConfChange): void {
    const id = change.nodeId;
    const lastIndex = this.log.lastIndex();
    const addProgress = (role: 'voter' | 'learner'): void => {
      const existing = this.#progress.get(id);
      const progress = new Progress({
        match: existing?.match ?? (id === this.id ? lastIndex : 0),
        next: existing?.next ?? lastIndex + 1,
        maxInflightAppends: this.#config.maxInflightAppends,
        role,
      });
      // A new member counts as recently active so it gets a snapshot and is not held against check-quorum at once.
      progress.recentActive = true;
      this.#progress.set(id, progress);
    };
    switch (change.type) {
      case 'add-node':
        if (this.#voters.includes(id)) break;
        this.#learners = this.#learners.filter((other) => other !== id);
        this.#voters = [...this.#voters, id];
        addProgress('voter');
        break;
      case 'add-learner-node':
        // A voter cannot be demoted by a single-step change: ignored.
        if (this.#voters.includes(id) || this.#learners.includes(id)) break;
        this.#learners = [...this.#learners, id];
        addProgress('learner');
        break;
      case 'remove-node':
        this.#voters = this.#voters.filter((other) => other !== id);
        this.#learners = this.#learners.filter((other) => other !== id);
        this.#progress.delete(id);
        break;
      case 'update-node':
        break;
    }
    this.#self = this.#progress.get(this.id);
  }

  // ---------------------------------------------------------------------------------------------
  // Status and invariants

  status(): RaftStatus {
    const progress = new Map<NodeId, { match: Index; next: Index; state: ProgressState }>();
    if (this.role === 'leader') {
      for (const [id, entry] of this.#progress) progress.set(id, { match: entry.match, next: entry.next, state: entry.state });
    }
    return {
      id: this.id,
      role: this.role,
      leader: this.leader,
      term: this.term,
      vote: this.vote,
      commit: this.log.committed,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      confState: this.confState(),
      progress,
    };
  }

  /** Checks the invariants listed on the class; throws AssertionError on a violation. */
  assertInvariants(): void {
    const lastIndex = this.log.lastIndex();
    if (!(this.term >= this.#highestTermSeen)) assert(false, `term decreased from ${this.#highestTermSeen} to ${this.term}`);
    if (!(this.log.committed >= this.#highestCommitSeen)) assert(false, `commit decreased from ${this.#highestCommitSeen} to ${this.log.committed}`);
    this.#highestTermSeen = this.term;
    this.#highestCommitSeen = this.log.committed;
    if (!(this.log.committed <= lastIndex)) assert(false, `commit ${this.log.committed} > last index ${lastIndex}`);
    if (!(this.log.applied <= this.log.committed)) assert(false, `applied ${this.log.applied} > commit ${this.log.committed}`);
    if (!(this.log.committed >= this.log.firstIndex() - 1)) assert(false, `commit ${this.log.committed} below snapshot ${this.log.firstIndex() - 1}`);
    assert(this.#uncommittedBytes >= 0, 'uncommitted bytes negative');
    if (this.role === 'leader') {
      assert(this.leader === this.id, 'leader must know itself as leader');
      assert(this.vote === this.id, 'leader must have voted for itself');
      if (!(this.#self !== undefined && this.#self.match === lastIndex)) assert(false, `leader's own match ${this.#self?.match} != last index ${lastIndex}`);
      for (const [id, progress] of this.#progress) {
        if (!(progress.match < progress.next)) assert(false, `progress of ${id}: match ${progress.match} >= next ${progress.next}`);
        if (!(progress.match <= lastIndex)) assert(false, `progress of ${id}: match ${progress.match} > last index ${lastIndex}`);
      }
    }
    if (this.role === 'candidate') assert(this.vote === this.id, 'candidate must have voted for itself');
    if (this.role !== 'follower') assert(this.role === 'leader' || this.leader === NO_NODE, 'candidates know no leader');
  }

  /** Pushes an append-response of the current term (one literal shape: hot path). */
  #sendAppendResponse(response: { to: NodeId; index: Index; reject: boolean; rejectHint: Index; logTerm: Term }): void {
    this.messages.push({
      type: 'append-response',
      from: this.id,
      to: response.to,
      term: this.term,
      index: response.index,
      reject: response.reject,
      rejectHint: response.rejectHint,
      logTerm: response.logTerm,
    });
  }
}

/** Requests forwarded from a follower's local clients carry term 0: their term does not matter. */
function isForwardedRequest(message: Message): boolean {
  return message.type === 'propose' || message.type === 'read-index' || message.type === 'transfer-leader' || message.type === 'propose-refused';
}

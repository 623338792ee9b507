/**
 * The raft node of one member (etcd's server/etcdserver/raft.go): the Raft core, its in-memory
 * log mirror, the WAL, the peer transport, the tick timer and the Ready loop. The only code that
 * calls the Raft core; every call goes through {@link RaftNode.core}, so a broken core invariant
 * stops the member (fail-stop) instead of leaving a half-changed core running.
 *
 * The loop, per Ready (the Ready contract, src/raft/ready.ts):
 *   1. soft state and refused proposals are reported to the member;
 *   2. a snapshot is installed: the apply pipeline drains first (everything committed before it
 *      is applied), then the state machine swaps its backend around the WAL snapshot marker;
 *   3. hard state + entries are written to the WAL (one fdatasync when mustSync) and mirrored
 *      into the in-memory log;
 *   4. messages are sent (snapshot messages stream the state machine's backend);
 *   5. read states go to the ReadIndex batcher, committed entries to the apply pipeline, which
 *      applies them behind this loop (its batch overlaps the next Ready's fdatasync);
 *   6. advance({ apply: 'pending' }); the pipeline reports each applied prefix back through
 *      {@link RaftNode.reportApplied} (never beyond what advance() handed out).
 * Back-pressure: when the apply pipeline is full the loop waits for room before the next Ready.
 * A full disk (disk-space.ts): a WAL write or snapshot install that fails for lack of space is
 * retried, with growing pauses, before anything else of that Ready happens: none of its messages
 * leave and nothing is advanced until it is durable.
 */
import type { RawNode } from '../raft/raw-node.js';
import type { MemoryStorage } from '../raft/storage.js';
import type { ConfChange, ConfState, Entry, Message, NodeId, Snapshot, SnapshotMessage, SoftState } from '../raft/types.js';
import type { Ready } from '../raft/ready.js';
import type { RaftStatus, ProposeOutcome } from '../raft/raw-node.js';
import { Transport, type TransportOptions } from '../transport/index.js';
import type { SnapshotStore, Wal } from '../wal/index.js';
import { WalFatalError, WalNoSpaceError, isNoSpaceError } from '../wal/index.js';
import { AssertionError } from '../util/assert.js';
import { errorMessage } from '../util/errors.js';
import type { RaftTrace } from './raft-trace.js';
import type { Logger } from './logger.js';
import type { ServerMetrics } from './metrics.js';
import { fatal } from './fatal.js';
import { idToHex } from './ids.js';
import { retryPauseMs } from './disk-space.js';

/** What the node tells the rest of the member, and asks of it. */
export interface RaftNodeHooks {
  /** Leader or role changed (called from the loop, before anything else of that Ready). */
  onSoftState(soft: SoftState, previous: SoftState): void;
  /** Forwarded proposals of this member that the leader refused. */
  onRefusedProposals(refused: Ready['refusedProposals']): void;
  /** ReadIndex answers. */
  onReadStates(states: Ready['readStates']): void;
  /** Committed entries, in order, to apply behind the loop. */
  onCommitted(entries: readonly Entry[]): void;
  /** Resolves once every entry handed to onCommitted so far has been applied. */
  applyDrained(): Promise<void>;
  /** Resolves when the apply pipeline has room for another batch (back-pressure). */
  applyRoom(): Promise<void>;
  /**
   * Installs a snapshot Raft handed out: swaps the state machine's backend for the one received
   * with it. Must call `persistMarker()` once the new backend is durable and switched in, and
   * only then drop the old one (crash safety: the WAL never names state the backend lacks).
   */
  installSnapshot(snapshot: Snapshot, persistMarker: () => Promise<void>): Promise<void>;
  /** Streams this member's backend for a snapshot message to a lagging peer (fresh per call). */
  snapshotData(): AsyncIterable<Uint8Array>;
  /** Called once per tick, after the core ticked. */
  onTick(): void;
  /** A WAL write or a snapshot install failed for lack of space; the loop retries it (disk-space.ts). */
  onDiskFull(part: 'wal' | 'snapshot', detail: string): void;
  /** The write that failed for lack of space succeeded. */
  onDiskRecovered(part: 'wal' | 'snapshot'): void;
}

/** Construction parts (see bootstrap.ts). */
export interface RaftNodeParts {
  readonly id: NodeId;
  readonly clusterId: bigint;
  readonly raft: RawNode;
  readonly storage: MemoryStorage;
  readonly wal: Wal;
  readonly snapshots: SnapshotStore;
  readonly confState: ConfState;
  readonly snapshotIndex: number;
  readonly logger: Logger;
  readonly metrics: ServerMetrics;
  readonly heartbeatIntervalMs: number;
  /** --trace-raft-file: the pipeline trace to record (diagnostics; undefined: off). */
  readonly trace?: RaftTrace;
}

/** The transport callbacks the node does not handle itself. */
export type TransportCallbacks = Pick<TransportOptions, 'onSnapshot' | 'onCall' | 'onMembersRequest' | 'isRemoved'> & {
  /** A peer refused this member's stream handshake, for `reason` (e.g. this member was removed). */
  readonly onRefusedByPeer: (reason: string) => void;
};

/** Least time between two round-trip samples of one peer (see RaftNode#nextRoundTripSampleMs). */
const ROUND_TRIP_SAMPLE_INTERVAL_MS = 100;

export class RaftNode {
  readonly id: NodeId;
  readonly clusterId: bigint;
  readonly #raft: RawNode;
  readonly #storage: MemoryStorage;
  readonly #wal: Wal;
  readonly #snapshots: SnapshotStore;
  readonly #logger: Logger;
  readonly #metrics: ServerMetrics;
  readonly #heartbeatIntervalMs: number;
  readonly #trace: RaftTrace | undefined;
  #hooks: RaftNodeHooks | undefined;
  #transport: Transport | undefined;
  #ticker: NodeJS.Timeout | undefined;
  #loopScheduled = false;
  #loopRunning = false;
  #stopping = false;
  #soft: SoftState = { leader: 0n, role: 'follower' };
  #term = 0;
  #commit = 0;
  #confState: ConfState;
  #snapshotIndex: number;
  /**
   * Entries up to #handedOut were acknowledged with advance({ apply: 'pending' });
   * #reportedApplied is what appliedTo() last told the core.
   * Invariant: #reportedApplied <= #handedOut.
   */
  #handedOut: number;
  #reportedApplied: number;
  #sendingSnapshots = new Set<NodeId>();
  /** WAL writes (the loop's saves, snapshot markers from the apply side) must not overlap. */
  #walQueue: Promise<void> = Promise.resolve();

  constructor(parts: RaftNodeParts) {
    this.id = parts.id;
    this.clusterId = parts.clusterId;
    this.#raft = parts.raft;
    this.#storage = parts.storage;
    this.#wal = parts.wal;
    this.#snapshots = parts.snapshots;
    this.#logger = parts.logger;
    this.#metrics = parts.metrics;
    this.#heartbeatIntervalMs = parts.heartbeatIntervalMs;
    this.#trace = parts.trace;
    this.#confState = parts.confState;
    this.#snapshotIndex = parts.snapshotIndex;
    this.#handedOut = parts.snapshotIndex;
    this.#reportedApplied = parts.snapshotIndex;
  }

  /** Starts the peer transport (peers: the active members) and the tick timer. */
  async start(options: { hooks: RaftNodeHooks; listenPeerUrls: readonly string[]; advertisePeerUrls: readonly string[]; peers: ReadonlyArray<{ id: NodeId; peerUrls: readonly string[] }>; transport: TransportCallbacks; tls?: TransportOptions['tls']; http2?: TransportOptions['http2'] }): Promise<void> {
    this.#hooks = options.hooks;
    this.#transport = await Transport.start({
      clusterId: this.clusterId,
      memberId: this.id,
      listenUrls: [...options.listenPeerUrls],
      advertisePeerUrls: options.advertisePeerUrls,
      onMessage: (message) => this.#onPeerMessage(message),
      onSnapshot: options.transport.onSnapshot,
      onCall: options.transport.onCall,
      onMembersRequest: options.transport.onMembersRequest,
      isRemoved: options.transport.isRemoved,
      tls: options.tls,
      http2: options.http2,
      onUnreachable: (peer) => this.core('report-unreachable', () => this.#raft.reportUnreachable(peer)),
      onTraffic: (direction, peer, bytes) => this.#metrics.peerTraffic(direction, peer, bytes),
      onEvent: (event) => {
        this.#logger.info({ ...event, event: `transport-${String(event.kind ?? 'event')}` }, 'transport');
        if (event.kind === 'handshake-refused' && event.direction === 'outbound') options.transport.onRefusedByPeer(event.reason);
      },
    });
    this.setPeers(options.peers);
    this.#ticker = setInterval(() => this.#tick(), this.#heartbeatIntervalMs);
    this.schedule();
  }

  // ───────────────────────────── state ─────────────────────────────

  get soft(): SoftState { return this.#soft; }
  get leader(): NodeId { return this.#soft.leader; }
  get isLeader(): boolean { return this.#soft.role === 'leader'; }
  get term(): number { return this.#term; }
  get commitIndex(): number { return this.#commit; }
  get lastIndex(): number { return this.#storage.lastIndex(); }
  get confState(): ConfState { return this.#confState; }
  get snapshotIndex(): number { return this.#snapshotIndex; }
  get stopping(): boolean { return this.#stopping; }
  get transport(): Transport | undefined { return this.#transport; }

  /**
   * Persisted entries [from, to] from the in-memory log mirror (the member re-applies them after
   * reopening a store that failed); undefined when the log no longer holds them.
   */
  entries(from: number, to: number): readonly Entry[] | undefined {
    if (to < from) return [];
    const result = this.#storage.entries(from, to + 1, Number.POSITIVE_INFINITY);
    return result.ok ? result.value : undefined;
  }

  /** The core's status (progress of every member on the leader). */
  status(): RaftStatus {
    return this.core('status', () => this.#raft.status());
  }

  // ───────────────────────────── requests into the core ─────────────────────────────

  /**
   * Runs a call into the Raft core. An AssertionError there is a broken invariant: the member
   * stops at once (fail-stop, exit code of 'invariant', the invariant named in the log line)
   * rather than go on with a half-changed core. Other errors propagate to the caller.
   */
  core<T>(what: string, call: () => T): T {
    try {
      return call();
    } catch (error: unknown) {
      if (error instanceof AssertionError) fatal('invariant', `raft ${what}: ${error.message}`, error);
      throw error;
    }
  }

  propose(data: Uint8Array): ProposeOutcome {
    const outcome = this.core('propose', () => this.#raft.propose(data));
    this.schedule();
    return outcome;
  }

  proposeConfChange(change: ConfChange): ProposeOutcome {
    const outcome = this.core('propose-conf-change', () => this.#raft.proposeConfChange(change));
    this.schedule();
    return outcome;
  }

  readIndex(context: Uint8Array): ProposeOutcome {
    const outcome = this.core('read-index', () => this.#raft.readIndex(context));
    this.schedule();
    return outcome;
  }

  transferLeadership(transferee: NodeId): void {
    this.core('transfer-leader', () => this.#raft.transferLeader(transferee));
    this.schedule();
  }

  /** Applies a committed conf change to the core's configuration (called by the applier, in log order). */
  applyConfChange(change: ConfChange, index: number): ConfState {
    this.#confState = this.core('apply-conf-change', () => this.#raft.applyConfChange(change, { index }));
    this.schedule();
    return this.#confState;
  }

  /** The apply pipeline applied everything up to `applied`: tell the core, within what was handed out. */
  reportApplied(applied: number): void {
    const index = Math.min(applied, this.#handedOut);
    if (index <= this.#reportedApplied) return;
    this.#trace?.mark('applied', this.#reportedApplied + 1, index);
    this.#reportedApplied = index;
    this.core('applied-to', () => this.#raft.appliedTo(index));
    this.schedule();
  }

  // ───────────────────────────── peers and snapshots ─────────────────────────────

  /** Keeps the transport's peers equal to `members` (every active member but this one). */
  setPeers(members: ReadonlyArray<{ id: NodeId; peerUrls: readonly string[] }>): void {
    const transport = this.#transport;
    if (transport === undefined) return;
    const wanted = new Set<NodeId>();
    for (const member of members) {
      if (member.id === this.id) continue;
      wanted.add(member.id);
      transport.addPeer(member.id, [...member.peerUrls]);
    }
    for (const id of transport.peerIds()) if (!wanted.has(id)) transport.removePeer(id);
    transport.pruneProvisional();
  }

  /** Hands a received snapshot message to the core; returns whether the core will install it. */
  stepSnapshot(message: SnapshotMessage): boolean {
    this.core('step snapshot', () => this.#raft.step(message));
    this.schedule();
    return this.core('pending-snapshot', () => this.#raft.pendingSnapshotIndex()) === message.snapshot.metadata.index;
  }

  /**
   * Takes a Raft snapshot at `index` (already applied and durable in the backend): snapshot file,
   * WAL marker, log compaction keeping `catchUpEntries`, WAL segments released below it.
   */
  async snapshotAt(index: number, options: { data: Uint8Array; catchUpEntries: number }): Promise<{ compactedTo: number; term: number }> {
    const snapshot = this.#storage.createSnapshot({ index, confState: this.#confState, data: options.data });
    await this.#snapshots.save(snapshot);
    await this.#walExclusive(() => this.#wal.saveSnapshotMarker(snapshot.metadata));
    this.#snapshotIndex = index;
    const compactTo = index - options.catchUpEntries;
    if (compactTo > this.#storage.firstIndex()) this.#storage.compact(compactTo);
    // Segments below the snapshot index are covered by the snapshot and the synced backend.
    await this.#wal.releaseTo(index);
    return { compactedTo: compactTo, term: snapshot.metadata.term };
  }

  // ───────────────────────────── the loop ─────────────────────────────

  /** Runs the Ready loop soon (coalesced). */
  schedule(): void {
    if (this.#loopScheduled || this.#stopping) return;
    this.#loopScheduled = true;
    setImmediate(() => {
      this.#loopScheduled = false;
      void this.#runLoop(); // Detached on purpose: the loop reports its own failures through fatal().
    });
  }

  #tick(): void {
    if (this.#stopping) return;
    this.core('tick', () => this.#raft.tick());
    this.#hooks?.onTick();
    this.schedule();
  }

  #onPeerMessage(message: Message): void {
    if (this.#stopping) return;
    if (message.type === 'heartbeat-response') this.#observeRoundTrip(message.from);
    if (this.#trace !== undefined) this.#traceMessage('received', message);
    // As core() does, without a closure and a label built for every message.
    try {
      this.#failpointStep?.(message);
      this.#raft.step(message);
    } catch (error: unknown) {
      // step() throws nothing but assertions; anything else is a bug as well.
      fatal('invariant', `raft step ${message.type}: ${error instanceof AssertionError ? error.message : errorMessage(error)}`, error);
    }
    this.schedule();
  }

  #traceMessage(direction: 'sent' | 'received', message: Message): void {
    const trace = this.#trace;
    if (trace === undefined) return;
    const peer = idToHex(direction === 'sent' ? message.to : message.from);
    if (message.type === 'append' && message.entries.length > 0) {
      trace.mark(direction, message.entries[0].index, message.entries[message.entries.length - 1].index, peer);
    } else if (message.type === 'append' && direction === 'sent') {
      trace.mark('commit-sent', message.commit, message.commit, peer);
    } else if (message.type === 'append-response' && !message.reject) {
      trace.mark(direction === 'sent' ? 'ack-sent' : 'ack-received', message.index, message.index, peer);
    }
  }

  /**
   * Heartbeats sent, by peer (the first unanswered one's time): a heartbeat's response gives the
   * round-trip time (etcd_network_peer_round_trip_time_seconds; etcd measures it with a prober).
   * Bounded by the number of peers.
   */
  readonly #heartbeatSentMs = new Map<NodeId, number>();
  /**
   * When the next round trip to each peer may be sampled: at most one per 100 ms (the default
   * heartbeat interval) per peer. Linearizable reads send a heartbeat round per ReadIndex batch,
   * and observing each answer (a labelled histogram observe) was 1.4 % of a leader's CPU under
   * etcd's linearizable read benchmark. Bounded by the number of peers.
   */
  readonly #nextRoundTripSampleMs = new Map<NodeId, number>();

  #observeRoundTrip(peer: NodeId): void {
    const sentMs = this.#heartbeatSentMs.get(peer);
    if (sentMs === undefined) return;
    this.#heartbeatSentMs.delete(peer);
    const now = performance.now();
    this.#nextRoundTripSampleMs.set(peer, now + ROUND_TRIP_SAMPLE_INTERVAL_MS);
    this.#metrics.peerRoundTripSeconds.observe({ To: idToHex(peer) }, (now - sentMs) / 1000);
  }

  /** Whether a heartbeat sent to `peer` now starts a round-trip sample. */
  #samplesRoundTrip(peer: NodeId, now: number): boolean {
    if (this.#heartbeatSentMs.has(peer)) return false;
    const next = this.#nextRoundTripSampleMs.get(peer);
    return next === undefined || now >= next;
  }

  /** Test-only (failpoints.ts): a hook run before every step of a peer message. */
  #failpointStep: ((message: Message) => void) | undefined;
  setStepFailpoint(hook: (message: Message) => void): void {
    this.#failpointStep = hook;
  }

  async #runLoop(): Promise<void> {
    if (this.#loopRunning) return; // the running loop re-checks hasReady() before it exits
    this.#loopRunning = true;
    try {
      while (!this.#stopping && this.core('has-ready', () => this.#raft.hasReady())) {
        const ready = this.core('ready', () => this.#raft.ready());
        await this.#handleReady(ready);
        // Committed entries are applied by the pipeline behind this loop: the core hears that
        // they were applied only through appliedTo() (see reportApplied).
        this.core('advance', () => this.#raft.advance({ apply: 'pending' }));
        const lastCommitted = ready.committedEntries[ready.committedEntries.length - 1]?.index ?? 0;
        this.#handedOut = Math.max(this.#handedOut, lastCommitted, ready.snapshot?.metadata.index ?? 0);
        if (ready.snapshot !== undefined) this.#reportedApplied = Math.max(this.#reportedApplied, ready.snapshot.metadata.index);
      }
    } catch (error: unknown) {
      // Stopping while the disk is full: the Ready was never acknowledged; nothing to report.
      if (this.#stopping && isNoSpaceError(error)) return;
      if (error instanceof WalNoSpaceError) fatal('disk-full', errorMessage(error), error);
      if (error instanceof WalFatalError) fatal(error.reason, errorMessage(error), error);
      if (error instanceof AssertionError) fatal('invariant', `ready loop: ${error.message}`, error);
      fatal('loop-failed', errorMessage(error), error);
    } finally {
      this.#loopRunning = false;
    }
  }

  async #handleReady(ready: Ready): Promise<void> {
    const hooks = this.#hooks;
    if (hooks === undefined) return;
    if (ready.hardState !== undefined) this.#term = ready.hardState.term;
    if (ready.softState !== undefined) {
      const previous = this.#soft;
      this.#soft = ready.softState;
      hooks.onSoftState(ready.softState, previous);
    }
    if (ready.refusedProposals.length > 0) hooks.onRefusedProposals(ready.refusedProposals);
    if (ready.snapshot !== undefined) {
      await hooks.applyDrained(); // everything committed before the snapshot is applied first
      await this.#installSnapshot(ready.snapshot);
    }
    // The leader sends before its own fsync (thesis §10.2.1, as etcd's raftNode does): its
    // appends reach the followers while it writes, so one fsync leaves the critical path. Safe
    // because the loop handles the next Ready only after this one's write: a commit index the
    // followers' acknowledgements produce goes out in a later Ready, when this Ready's entries are
    // durable here too. Followers and candidates still persist first (their messages are votes and
    // acknowledgements of what they persisted).
    const leaderSendsFirst = this.#soft.role === 'leader';
    const trace = this.#trace;
    if (trace !== undefined && leaderSendsFirst && ready.entries.length > 0) trace.mark('appended', ready.entries[0].index, ready.entries[ready.entries.length - 1].index);
    // A leader's Ready that only commits (acknowledgements came in, nothing new to append) sends
    // the new commit index after the answers its apply produces have left: those answers are on
    // a client's critical path, the followers' commit notices are not (see #sendAfterAnswers).
    if (leaderSendsFirst && ready.entries.length === 0 && ready.committedEntries.length > 0) this.#sendAfterAnswers(ready.messages);
    else if (leaderSendsFirst) this.#send(ready.messages);
    // Committed entries already durable here (persisted by an earlier Ready) go to the applier
    // before this Ready's write, which then overlaps their apply (etcd hands them to its apply
    // goroutine before saving too). Entries committed in the Ready that also persists them (a
    // single member commits its own appends at once) wait for the write.
    const lastCommitted = ready.committedEntries.length === 0 ? 0 : ready.committedEntries[ready.committedEntries.length - 1].index;
    const applyFirst = lastCommitted > 0 && ready.snapshot === undefined && lastCommitted <= this.#storage.lastIndex();
    // The write is asked for before those entries go to the applier: both continue in microtasks,
    // in the order asked, so the WAL write reaches the disk before the apply's CPU work (a batch
    // of hundreds of puts) runs, instead of after it; the apply then overlaps the durable write.
    const persists = ready.hardState !== undefined || ready.entries.length > 0;
    const started = performance.now();
    // mustSync is false when only the commit index changed: write it, skip the fdatasync (etcd does the same).
    const written = persists
      ? this.#untilWritten('wal', () => this.#walExclusive(() => this.#wal.save({ hardState: ready.hardState, entries: ready.entries, durability: ready.mustSync ? 'fsync' : 'buffered' })))
      : undefined;
    if (applyFirst) {
      trace?.mark('handed-to-apply', ready.committedEntries[0].index, lastCommitted);
      hooks.onCommitted(ready.committedEntries);
    }
    if (written !== undefined) {
      await written;
      // Only a write that synced is an fsync (etcd observes its WAL's sync): a commit-only hard
      // state is held in memory by the WAL, and counting it doubled the count per sequential put
      // and timed only its wait behind the previous write.
      if (ready.mustSync) {
        const elapsedMs = performance.now() - started;
        this.#metrics.walFsyncSeconds.observe(elapsedMs / 1000);
        if (elapsedMs > 100) this.#logger.warn({ event: 'slow-fsync', tookMs: Math.round(elapsedMs), entries: ready.entries.length, term: this.#term }, 'slow fdatasync');
      }
      if (trace !== undefined && ready.entries.length > 0) trace.mark('persisted', ready.entries[0].index, ready.entries[ready.entries.length - 1].index);
    }
    if (ready.entries.length > 0) this.#storage.append(ready.entries);
    if (ready.hardState !== undefined) {
      this.#storage.setHardState(ready.hardState);
      if (trace !== undefined && ready.hardState.commit > this.#commit) trace.mark('committed', this.#commit + 1, ready.hardState.commit);
      this.#commit = ready.hardState.commit;
      // etcd sets this as a gauge of the committed raft index (its dashboards read it that way).
      this.#metrics.proposalsCommitted.set(this.#commit);
    }
    if (!leaderSendsFirst) this.#send(ready.messages);
    if (ready.readStates.length > 0) hooks.onReadStates(ready.readStates);
    if (ready.committedEntries.length > 0 && !applyFirst) {
      trace?.mark('handed-to-apply', ready.committedEntries[0].index, lastCommitted);
      hooks.onCommitted(ready.committedEntries);
    }
    await hooks.applyRoom();
  }

  async #installSnapshot(snapshot: Snapshot): Promise<void> {
    const hooks = this.#hooks;
    if (hooks === undefined) return;
    // The install is retried as a whole while the disk is full (the snapshotter keeps it
    // retryable); its marker write is retried on its own (the new backend is in place by then).
    await this.#untilWritten('snapshot', () => hooks.installSnapshot(snapshot, async () => {
      await this.#untilWritten('wal', () => this.#snapshots.save(snapshot));
      await this.#untilWritten('wal', () => this.#walExclusive(() => this.#wal.saveSnapshotMarker(snapshot.metadata)));
      // Durable from here: the member's view (whether it is a learner, its peers) follows the
      // snapshot's configuration before the install is announced to its subscribers.
      this.#confState = snapshot.metadata.confState;
    }));
    this.#storage.applySnapshot(snapshot);
    this.#snapshotIndex = snapshot.metadata.index;
  }

  /**
   * Runs `write` until it does not fail for lack of space: a failure is reported, then retried
   * after a growing pause, and its success reported. Throws what else it throws, and a
   * WalNoSpaceError once the node is stopping (the write was never acknowledged).
   */
  async #untilWritten<T>(part: 'wal' | 'snapshot', write: () => Promise<T>): Promise<T> {
    const hooks = this.#hooks;
    for (let attempt = 0; ; attempt++) {
      try {
        const result = await write();
        if (attempt > 0) hooks?.onDiskRecovered(part);
        return result;
      } catch (error: unknown) {
        if (!isNoSpaceError(error) || this.#stopping) throw error;
        if (attempt === 0) hooks?.onDiskFull(part, errorMessage(error));
        await new Promise((resolve) => setTimeout(resolve, retryPauseMs(attempt)));
      }
    }
  }

  /** Runs `write` after every earlier WAL write has finished. */
  #walExclusive(write: () => Promise<void>): Promise<void> {
    const run = this.#walQueue.then(write);
    this.#walQueue = run.catch(() => undefined); // the failure reaches this caller; the queue goes on
    return run;
  }

  /** Messages held back by #sendAfterAnswers: the commit-only Readies of two loop passes at most (see there). */
  #deferred: Message[] = [];
  #deferredScheduled = false;

  /**
   * Sends `messages` two passes of the event loop's check phase later instead of now. The answers
   * of the entries this Ready hands to the applier are written in microtasks that follow, and a
   * connection flushes its frames from an immediate queued when the first one is framed: sent now,
   * the commit notices' two loopback writes (tens of µs each on this VM) came before the client's
   * answer. Order per peer is kept: any later send first sends what is held back.
   */
  #sendAfterAnswers(messages: readonly Message[]): void {
    if (messages.length === 0) return;
    for (const message of messages) this.#deferred.push(message);
    if (this.#deferredScheduled) return;
    this.#deferredScheduled = true;
    // Two immediates: the answers' flush is queued (in this pass's microtasks) after the first,
    // and a peer's write leaves at the end of the callback that makes it.
    setImmediate(() => setImmediate(() => {
      this.#deferredScheduled = false;
      this.#sendDeferred();
    }));
  }

  #sendDeferred(): void {
    if (this.#deferred.length === 0) return;
    const held = this.#deferred;
    this.#deferred = [];
    this.#sendNow(held);
  }

  #send(messages: readonly Message[]): void {
    this.#sendDeferred();
    this.#sendNow(messages);
  }

  #sendNow(messages: readonly Message[]): void {
    const transport = this.#transport;
    if (messages.length === 0 || transport === undefined) return;
    const regular: Message[] = [];
    for (const message of messages) {
      if (message.type === 'snapshot') this.#sendSnapshot(message);
      else regular.push(message);
      if (message.type === 'heartbeat') {
        const now = performance.now();
        if (this.#samplesRoundTrip(message.to, now)) this.#heartbeatSentMs.set(message.to, now);
      }
      if (this.#trace !== undefined) this.#traceMessage('sent', message);
    }
    if (regular.length > 0) transport.send(regular);
  }

  #sendSnapshot(message: SnapshotMessage): void {
    const transport = this.#transport;
    const hooks = this.#hooks;
    if (transport === undefined || hooks === undefined || this.#sendingSnapshots.has(message.to)) return;
    this.#sendingSnapshots.add(message.to);
    this.#metrics.snapshotsSent.inc();
    this.#logger.info({ event: 'snapshot-send', to: idToHex(message.to), index: message.snapshot.metadata.index, term: this.#term }, 'sending a snapshot to a lagging member');
    transport.sendSnapshot(message, () => hooks.snapshotData()).then(
      (status) => {
        this.#sendingSnapshots.delete(message.to);
        this.#logger.info({ event: 'snapshot-sent', to: idToHex(message.to), status, index: message.snapshot.metadata.index }, `snapshot send ${status}`);
        this.core('report-snapshot', () => this.#raft.reportSnapshot(message.to, status));
        this.schedule();
      },
      (error: unknown) => {
        this.#sendingSnapshots.delete(message.to);
        this.#logger.warn({ event: 'snapshot-send-failed', to: idToHex(message.to), error: errorMessage(error) }, 'snapshot send failed');
        this.core('report-snapshot', () => this.#raft.reportSnapshot(message.to, 'failed'));
        this.schedule();
      },
    );
  }

  // ───────────────────────────── shutdown ─────────────────────────────

  /** Stops ticking and the loop (after its current Ready), then the transport. The WAL is closed by close(). */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#ticker !== undefined) clearInterval(this.#ticker);
    // Let the running loop iteration finish its persist/apply hand-off.
    const deadline = Date.now() + 5_000;
    while (this.#loopRunning && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    await this.#transport?.stop();
    await this.#trace?.flush().catch((error: unknown) => this.#logger.warn({ event: 'trace-write-failed', error: errorMessage(error) }, 'could not write the raft trace'));
  }

  /** Closes the WAL (after stop()). */
  async close(): Promise<void> {
    await this.#walQueue;
    await this.#wal.close();
  }
}

/**
 * One kvd member: the Ready loop wiring the Raft core, the WAL, the peer transport and the store
 * (DESIGN.md "One member"). It owns the only interval timer (ticks), the request waiters and the
 * ReadIndex batcher. The client-facing gRPC services sit on top (see backends.ts).
 *
 * The loop, per Ready: install an incoming snapshot → persist hard state + entries (one fsync) →
 * mirror them into the in-memory log → send messages → apply committed entries in batches and
 * resolve waiters → answer read states → advance. Messages leave only after what they depend on
 * is durable, and a client hears success only after its entry is committed and applied.
 */
import { mkdir, open as openFile, readdir, rm } from 'node:fs/promises';
import { createReadStream, createWriteStream } from 'node:fs';
import { join } from 'node:path';
import { once } from 'node:events';
import { RawNode } from '../raft/raw-node.js';
import { MemoryStorage } from '../raft/storage.js';
import { seededRandom } from '../raft/random.js';
import { decodeConfChange } from '../raft/raw-node.js';
import type { ConfChange, ConfState, Entry, Message, NodeId, Snapshot, SnapshotMessage, SoftState } from '../raft/types.js';
import type { Ready } from '../raft/ready.js';
import type { RaftEvent } from '../raft/config.js';
import { Wal, SnapshotStore, WalFatalError } from '../wal/index.js';
import { MvccStore } from '../store/mvcc/index.js';
import type { StoreEvent } from '../store/mvcc/store.js';
import type { LeaseId, Revision, WriteRequest, WriteResult } from '../store/mvcc/types.js';
import { Transport } from '../transport/index.js';
import { Lessor, minTtlSecondsFor } from '../store/lease/lessor.js';
import { WatchHub, type HistorySource } from '../store/watch/watch-hub.js';
import { KvdError, errorMessage, isKvdError } from '../util/errors.js';
import { AssertionError, assert } from '../util/assert.js';
import type { ServerConfig } from './config.js';
import type { Logger } from './logger.js';
import { ServerMetrics } from './metrics.js';
import { computeClusterId, computeMemberId, idToHex } from './ids.js';
import { Membership, readBootstrap, writeBootstrap, type MemberRecord } from './membership.js';
import { decodeEnvelope, encodeEnvelope, RequestIdGenerator, type InternalRequest } from './requests.js';
import { Waiters } from './waiters.js';
import {
  LEASE_KEEPALIVE_CALL, LEASE_TTL_CALL, LeaseForwarder, decodeKeepAliveRequest, decodeTimeToLiveRequest, encodeKeepAliveAnswer, encodeTimeToLive,
} from './lease-forward.js';
import type { LeaseTimeToLive } from '../api/backend.js';
import { ReadIndexBatcher } from './read-index.js';
import { fatal } from './fatal.js';
import { readFailpoints, type Failpoints } from './failpoints.js';

/** What a waiting proposer receives when its entry is applied. */
export type ApplyResult =
  | { readonly ok: true; readonly revision: Revision; readonly result: WriteResult | LeaseApplyResult | { type: 'none' } }
  | { readonly ok: false; readonly error: KvdError };

export type LeaseApplyResult =
  | { readonly type: 'lease-grant'; readonly id: LeaseId; readonly ttlSeconds: number }
  | { readonly type: 'lease-revoke' };

/** The response header every API answer carries. */
export interface HeaderInfo {
  readonly clusterId: bigint;
  readonly memberId: bigint;
  readonly revision: Revision;
  readonly raftTerm: number;
}

/** Version reported by Maintenance.Status: the etcd API version kvd implements. */
export const SERVER_VERSION = '3.4.0';

/** Committed batches that may wait for apply before the Ready loop waits for them. */
const MAX_APPLY_BACKLOG = 8;

/** Maximum lease revokes proposed per tick by the leader (etcd: 500 per second). */
const MAX_LEASE_REVOKES_PER_TICK = 50;

export class KvdMember {
  readonly config: ServerConfig;
  readonly logger: Logger;
  readonly metrics = new ServerMetrics();
  readonly id: NodeId;
  readonly membership: Membership;
  readonly watchHub: WatchHub;

  #raft: RawNode;
  #storage: MemoryStorage;
  #wal: Wal;
  #snapshots: SnapshotStore;
  #store: MvccStore;
  #lessor: Lessor;
  #transport: Transport | undefined;
  #waiters: Waiters<ApplyResult>;
  #reads: ReadIndexBatcher;
  #ids: RequestIdGenerator;
  #ticker: NodeJS.Timeout | undefined;
  #loopScheduled = false;
  #loopRunning = false;
  #stopping = false;
  #stopped: Promise<void> | undefined;
  #soft: SoftState = { leader: 0n, role: 'follower' };
  #term = 0;
  #commit = 0;
  #applied = 0;
  #snapshotIndex = 0;
  #confState: ConfState;
  #sendingSnapshots = new Set<NodeId>();
  #incomingSnapshots = new Map<number, string>();
  /** Whether this member's name and client URLs are in the replicated membership yet. */
  #attributes: 'unpublished' | 'publishing' | 'published' = 'unpublished';
  /** WAL writes (the loop's saves, the apply chain's snapshot markers) must not overlap. */
  #walQueue: Promise<void> = Promise.resolve();
  /** The serial apply chain (see #enqueueApply) and how many batches wait on it. */
  #applyChain: Promise<void> = Promise.resolve();
  #applyBacklog = 0;
  /**
   * Raft's view of the apply pipeline: entries up to #handedOut were acknowledged with
   * advance({ apply: 'pending' }); #reportedApplied is what appliedTo() last told the core.
   * Invariant: #reportedApplied <= min(#applied, #handedOut).
   */
  #handedOut = 0;
  #reportedApplied = 0;
  /**
   * Leases on a new leader: renewals, expiries and exact TTLs wait until this member has applied
   * everything committed when it was elected (a lease granted just before the election may not be
   * applied yet: answering from the lessor before that would report it missing).
   */
  #leaseDuty: { readonly state: 'follower' } | { readonly state: 'catching-up'; readonly index: number } | { readonly state: 'ready' } = { state: 'follower' };
  /** Keep-alives and TTL queries waiting for #leaseDuty to become ready. Bounded by maxPendingProposals. */
  #leaseWaiters: Array<{ resolve: () => void; reject: (error: KvdError) => void; deadlineMs: number }> = [];
  /** Forwards lease keep-alives and TTL queries of this member's clients to the leader. */
  readonly #leaseForwarder: LeaseForwarder;
  /** Test-only fault injection (see failpoints.ts); no faults in production. */
  readonly #failpoints: Failpoints = readFailpoints(process.env);

  private constructor(parts: {
    config: ServerConfig; logger: Logger; id: NodeId; membership: Membership; raft: RawNode; storage: MemoryStorage;
    wal: Wal; snapshots: SnapshotStore; store: MvccStore; lessor: Lessor; watchHub: WatchHub; confState: ConfState; snapshotIndex: number;
  }) {
    this.config = parts.config;
    this.logger = parts.logger;
    this.id = parts.id;
    this.membership = parts.membership;
    this.#raft = parts.raft;
    this.#storage = parts.storage;
    this.#wal = parts.wal;
    this.#snapshots = parts.snapshots;
    this.#store = parts.store;
    this.#lessor = parts.lessor;
    this.watchHub = parts.watchHub;
    this.#confState = parts.confState;
    this.#snapshotIndex = parts.snapshotIndex;
    this.#applied = parts.snapshotIndex;
    this.#handedOut = parts.snapshotIndex;
    this.#reportedApplied = parts.snapshotIndex;
    this.#waiters = new Waiters({ maxPending: parts.config.maxPendingProposals });
    this.#leaseForwarder = new LeaseForwarder({
      id: parts.id,
      leader: () => this.#soft.leader,
      call: (to, kind, payload, options) => {
        const transport = this.#transport;
        if (transport === undefined) return Promise.reject(new KvdError('stopped'));
        return transport.call(to, kind, payload, options);
      },
    });
    this.#ids = new RequestIdGenerator({ memberId: parts.id, nowMs: Date.now() });
    this.#reads = new ReadIndexBatcher(
      {
        issue: (context) => {
          if (this.#soft.leader === 0n) return { ok: false, error: new KvdError('no-leader') };
          const outcome = this.#core('read-index', () => this.#raft.readIndex(context));
          if (!outcome.ok) return { ok: false, error: new KvdError('no-leader') };
          this.#schedule();
          return { ok: true };
        },
        appliedIndex: () => this.#applied,
        nowMs: () => Date.now(),
      },
      { memberId: parts.id, maxPending: parts.config.maxPendingReads, retryMs: parts.config.electionTimeoutMs },
    );
    this.metrics.proposalsPending.set(0);
  }

  // ───────────────────────────── start-up ─────────────────────────────

  /**
   * Opens (or bootstraps) the member in `config.dataDir`, starts the peer transport and the tick
   * timer. The client-facing gRPC server is started by the caller (see run.ts).
   */
  static async start(config: ServerConfig, logger: Logger): Promise<KvdMember> {
    const memberDir = join(config.dataDir, 'member');
    await mkdir(memberDir, { recursive: true });
    let bootstrap = readBootstrap(config.dataDir);
    const walDir = join(memberDir, 'wal');
    if (bootstrap === undefined) {
      if (config.initialClusterState === 'existing') {
        throw new KvdError('invalid-argument', {
          detail: `--initial-cluster-state=existing with an empty data dir (${config.dataDir}): joining a running cluster needs 'member add', which kvd does not implement yet; start with --initial-cluster-state=new or reuse the member's data dir`,
        });
      }
      const members: MemberRecord[] = [...config.initialCluster].map(([name, peerUrls]) => ({
        id: computeMemberId({ peerUrls, token: config.initialClusterToken }),
        name,
        peerUrls,
        clientUrls: name === config.name ? [...config.advertiseClientUrls] : [],
        isLearner: false,
        removed: false,
      }));
      const memberId = computeMemberId({ peerUrls: config.initialAdvertisePeerUrls, token: config.initialClusterToken });
      bootstrap = { clusterId: computeClusterId(members.map((m) => m.id)), memberId, members };
      await writeBootstrap(config.dataDir, bootstrap);
    }
    const id = bootstrap.memberId;
    const log = logger.child({ id: idToHex(id) });
    const membership = new Membership({ clusterId: bootstrap.clusterId, initial: bootstrap.members });

    const { wal, state } = await Wal.open({ dir: walDir, logger: (event) => log.info({ event: `wal-${event.kind ?? 'event'}`, ...event }, 'wal') });
    const snapshots = await SnapshotStore.open({ dir: join(memberDir, 'snap') });
    await removeIncomingSnapshots(join(memberDir, 'snap'));
    const storage = new MemoryStorage();
    let snapshotIndex = 0;
    let confState: ConfState;
    // Nothing durable yet (new member, or a process that died before its first marker): bootstrap.
    if (state.snapshot === undefined && state.entries.length === 0 && state.hardState.term === 0) {
      confState = { voters: bootstrap.members.filter((m) => !m.isLearner).map((m) => m.id), learners: [] };
      await wal.saveSnapshotMarker({ index: 0, term: 0, confState });
      storage.applySnapshot({ metadata: { index: 0, term: 0, confState }, data: new Uint8Array(0) });
      log.info({ event: 'bootstrap', clusterId: idToHex(bootstrap.clusterId), members: bootstrap.members.map((m) => `${m.name}=${idToHex(m.id)}`) }, 'bootstrapped a new cluster member');
    } else {
      const marker = state.snapshot;
      if (marker !== undefined && marker.index > 0) {
        // A snapshot file newer than the marker may exist if we died between writing the two.
        const snapshot = await snapshots.loadNewest({ maxIndex: marker.index });
        if (snapshot === undefined || snapshot.metadata.index !== marker.index) {
          fatal('corrupt', `WAL names a snapshot at index ${marker.index} but the newest snapshot file is at ${snapshot?.metadata.index ?? 'none'}`);
        }
        storage.applySnapshot(snapshot);
        snapshotIndex = snapshot.metadata.index;
        confState = snapshot.metadata.confState;
      } else {
        confState = marker?.confState ?? { voters: bootstrap.members.map((m) => m.id), learners: [] };
        storage.applySnapshot({ metadata: { index: 0, term: 0, confState }, data: new Uint8Array(0) });
      }
      storage.setHardState(state.hardState);
      if (state.entries.length > 0) storage.append(state.entries);
      log.info({ event: 'restart', term: state.hardState.term, commit: state.hardState.commit, snapshotIndex, lastIndex: storage.lastIndex() }, 'restarting member from its data dir');
    }

    const store = await MvccStore.open({ path: join(memberDir, 'db'), maxTxnOps: config.maxTxnOps, logger: storeLogger(log) });
    membership.load(store.listMeta('member/'));
    const lessor = Lessor.restore(store.listMeta('lease/'), store.listLeasedKeys(), { minTtlSeconds: minLeaseTtlSeconds(config) });
    // The hub reads history through the member, whose store object is replaced when a snapshot
    // is installed; until the member exists, from the store just opened.
    let self: KvdMember | undefined;
    const current = (): MvccStore => self?.store ?? store;
    const history: HistorySource = {
      get currentRevision() { return current().currentRevision; },
      get compactedRevision() { return current().compactedRevision; },
      changes: (options) => current().changes(options),
    };
    const watchHub = new WatchHub({ history, progressIntervalMs: config.watchProgressNotifyIntervalMs });

    const electionTicks = electionTicksOf(config);
    const raft = new RawNode({
      id,
      storage,
      random: seededRandom(Number(id & 0x7fffffffn) ^ Date.now()),
      electionTicks,
      heartbeatTicks: 1,
      applied: snapshotIndex,
      preVote: 'enabled',
      checkQuorum: 'enabled',
      onEvent: (event) => log.info(raftEventFields(event), event.kind),
    });
    const member = new KvdMember({ config, logger: log, id, membership, raft, storage, wal, snapshots, store, lessor, watchHub, confState, snapshotIndex });
    self = member;
    member.#listenToStore(store);
    await member.#startTransport();
    member.#ticker = setInterval(() => member.#tick(), config.heartbeatIntervalMs);
    member.#schedule();
    return member;
  }

  /**
   * Every committed revision reaches the watch hub. A throw there means watchers would silently
   * miss events (a watch gap), so it stops the member (fail-stop) instead of being logged away.
   */
  #listenToStore(store: MvccStore): void {
    store.onApply((batch) => {
      try {
        this.watchHub.notify(batch);
      } catch (error: unknown) {
        fatal('invariant', `watch hub failed to take revisions ${batch[0]?.revision}..${batch[batch.length - 1]?.revision}: ${errorMessage(error)}`, error);
      }
    });
  }

  async #startTransport(): Promise<void> {
    this.#transport = await Transport.start({
      clusterId: this.membership.clusterId,
      memberId: this.id,
      listenUrls: [...this.config.listenPeerUrls],
      onMessage: (message) => this.#onPeerMessage(message),
      onSnapshot: (message, data) => this.#receiveSnapshot(message, data),
      onUnreachable: (peer) => this.#core('report-unreachable', () => this.#raft.reportUnreachable(peer)),
      onCall: (from, kind, payload, options) => this.#serveMemberCall(from, kind, payload, options),
      onEvent: (event) => this.logger.info({ ...event, event: `transport-${String(event.kind ?? 'event')}` }, 'transport'),
    });
    for (const member of this.membership.active()) {
      if (member.id !== this.id) this.#transport.addPeer(member.id, [...member.peerUrls]);
    }
  }

  // ───────────────────────────── public surface ─────────────────────────────

  /** The store, for reads. */
  get store(): MvccStore { return this.#store; }
  get lessor(): Lessor { return this.#lessor; }
  get leader(): NodeId { return this.#soft.leader; }
  get isLeader(): boolean { return this.#soft.role === 'leader'; }
  get term(): number { return this.#term; }
  get appliedIndex(): number { return this.#applied; }
  get commitIndex(): number { return this.#commit; }
  get raftIndex(): number { return this.#storage.lastIndex(); }
  get isLearner(): boolean { return this.#confState.learners.includes(this.id); }

  /** The header for a response produced at `revision` (default: the store's current revision). */
  header(revision?: Revision): HeaderInfo {
    return { clusterId: this.membership.clusterId, memberId: this.id, revision: revision ?? this.#store.currentRevision, raftTerm: this.#term };
  }

  /**
   * Proposes `request` through Raft and resolves when it has been applied on this member, or
   * fails with no-leader, too-many-requests or timeout. Refuses early instead of queueing.
   */
  async propose(request: InternalRequest, options: { deadlineMs: number; signal?: AbortSignal }): Promise<ApplyResult> {
    if (this.#stopping) throw new KvdError('stopped');
    if (this.#soft.leader === 0n) {
      this.metrics.requestsRefused.inc();
      throw new KvdError('no-leader');
    }
    if (this.#waiters.full) {
      this.metrics.requestsRefused.inc();
      this.logger.warn({ event: 'request-refused', reason: 'too-many-requests', pending: this.#waiters.size }, 'refused a request: too many pending proposals');
      throw new KvdError('too-many-requests');
    }
    const id = this.#ids.next();
    const data = encodeEnvelope({ id, request });
    if (data.byteLength > this.config.maxRequestBytes + 4096) throw new KvdError('request-too-large');
    const waiting = this.#waiters.wait(id, { deadlineMs: options.deadlineMs });
    const signal = options.signal;
    if (signal !== undefined) {
      // A client that went away frees its waiter slot at once (the entry may still be applied).
      const onAbort = (): void => this.#waiters.fail(id, new KvdError('canceled'));
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        const release = (): void => signal.removeEventListener('abort', onAbort);
        waiting.then(release, release);
      }
    }
    const outcome = this.#core('propose', () => this.#raft.propose(data));
    if (!outcome.ok) {
      this.#waiters.fail(id, new KvdError(outcome.reason === 'too-many-uncommitted' ? 'too-many-requests' : 'no-leader'));
      this.metrics.proposalsFailed.inc();
    }
    this.metrics.proposalsPending.set(this.#waiters.size);
    this.#schedule();
    return waiting;
  }

  /** Resolves once a linearizable read arriving now may be served from the local store. */
  async linearizableBarrier(options: { deadlineMs: number }): Promise<void> {
    if (this.#stopping) throw new KvdError('stopped');
    const started = Date.now();
    await this.#reads.wait(options);
    this.metrics.readIndexSeconds.observe((Date.now() - started) / 1000);
  }

  /** Asks Raft to transfer leadership to `transferee` (Maintenance.MoveLeader). */
  transferLeadership(transferee: NodeId): void {
    this.#core('transfer-leader', () => this.#raft.transferLeader(transferee));
    this.#schedule();
  }

  /** Stops accepting requests, finishes in-flight applies, closes the WAL, store and transport. */
  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    this.#stopping = true;
    if (this.#ticker !== undefined) clearInterval(this.#ticker);
    // Let the running loop iteration finish its persist/apply.
    const deadline = Date.now() + 5_000;
    while (this.#loopRunning && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    await this.#applyChain;
    this.#waiters.failAll(new KvdError('stopped'));
    this.#reads.failAll(new KvdError('stopped'));
    for (const waiter of this.#leaseWaiters.splice(0)) waiter.reject(new KvdError('stopped'));
    this.watchHub.close();
    await this.#transport?.stop();
    await this.#wal.close();
    await this.#store.close();
    this.logger.info({ event: 'stopped', term: this.#term, applied: this.#applied }, 'member stopped');
  }

  // ───────────────────────────── the Ready loop ─────────────────────────────

  #tick(): void {
    if (this.#stopping) return;
    this.#core('tick', () => this.#raft.tick());
    this.#reads.onTick();
    this.#waiters.expire(Date.now());
    this.#expireLeaseWaiters(Date.now());
    this.metrics.proposalsPending.set(this.#waiters.size);
    if (this.#leaseDuty.state === 'ready') this.#leaderDuties();
    if (this.#attributes === 'unpublished' && this.#soft.leader !== 0n) this.#publishAttributes();
    this.#schedule();
  }

  #onPeerMessage(message: Message): void {
    if (this.#stopping) return;
    try {
      this.#core(`step ${message.type}`, () => {
        const failAt = this.#failpoints.raftAssertOnTerm;
        if (failAt > 0 && message.term >= failAt) throw new AssertionError(`assertion failed: failpoint raftAssertOnTerm (${message.type} of term ${message.term})`);
        this.#raft.step(message);
      });
    } catch (error: unknown) {
      // step() throws nothing but assertions (handled by #core); anything else is a bug as well.
      fatal('invariant', `raft step ${message.type}: ${errorMessage(error)}`, error);
    }
    this.#schedule();
  }

  /**
   * Runs a call into the Raft core. An AssertionError there is a broken invariant: the member
   * stops at once (fail-stop, exit code of 'invariant', the invariant named in the log line)
   * rather than go on with a half-changed core. Other errors propagate to the caller.
   */
  #core<T>(what: string, call: () => T): T {
    try {
      return call();
    } catch (error: unknown) {
      if (error instanceof AssertionError) fatal('invariant', `raft ${what}: ${error.message}`, error);
      throw error;
    }
  }

  #schedule(): void {
    if (this.#loopScheduled || this.#stopping) return;
    this.#loopScheduled = true;
    setImmediate(() => {
      this.#loopScheduled = false;
      void this.#runLoop(); // Detached on purpose: the loop reports its own failures through fatal().
    });
  }

  async #runLoop(): Promise<void> {
    if (this.#loopRunning) return; // the running loop re-checks hasReady() before it exits
    this.#loopRunning = true;
    try {
      while (!this.#stopping && this.#raft.hasReady()) {
        const ready = this.#core('ready', () => this.#raft.ready());
        await this.#handleReady(ready);
        // Committed entries are applied on the apply chain, behind this loop: Raft hears that
        // they were applied only through appliedTo() (see #reportApplied).
        this.#core('advance', () => this.#raft.advance({ apply: 'pending' }));
        const lastCommitted = ready.committedEntries[ready.committedEntries.length - 1]?.index ?? 0;
        this.#handedOut = Math.max(this.#handedOut, lastCommitted, ready.snapshot?.metadata.index ?? 0);
        if (ready.snapshot !== undefined) this.#reportedApplied = Math.max(this.#reportedApplied, ready.snapshot.metadata.index);
        this.#reportApplied();
      }
    } catch (error: unknown) {
      if (error instanceof WalFatalError) fatal(error.reason, errorMessage(error), error);
      if (error instanceof AssertionError) fatal('invariant', `ready loop: ${error.message}`, error);
      fatal('loop-failed', errorMessage(error), error);
    } finally {
      this.#loopRunning = false;
    }
  }

  async #handleReady(ready: Ready): Promise<void> {
    if (ready.hardState !== undefined) this.#term = ready.hardState.term;
    if (ready.refusedProposals.length > 0) this.#failRefused(ready.refusedProposals);
    if (ready.softState !== undefined) this.#onSoftState(ready.softState);
    if (ready.snapshot !== undefined) {
      await this.#applyChain; // everything committed before the snapshot is applied first
      await this.#installSnapshot(ready.snapshot);
    }
    if (ready.hardState !== undefined || ready.entries.length > 0) {
      const started = performance.now();
      // mustSync is false when only the commit index changed: write it, skip the fdatasync (etcd does the same).
      await this.#walExclusive(() => this.#wal.save({ hardState: ready.hardState, entries: ready.entries, durability: ready.mustSync ? 'fsync' : 'buffered' }));
      const elapsedMs = performance.now() - started;
      this.metrics.walFsyncSeconds.observe(elapsedMs / 1000);
      if (elapsedMs > 100) this.logger.warn({ event: 'slow-fsync', tookMs: Math.round(elapsedMs), entries: ready.entries.length, term: this.#term }, 'slow fdatasync');
    }
    if (ready.entries.length > 0) this.#storage.append(ready.entries);
    if (ready.hardState !== undefined) {
      this.#storage.setHardState(ready.hardState);
      this.#commit = ready.hardState.commit;
      // etcd sets these two as gauges of the raft indexes (its dashboards read them that way).
      this.metrics.proposalsCommitted.set(this.#commit);
    }
    this.#send(ready.messages);
    for (const readState of ready.readStates) this.#reads.onReadState(readState);
    if (ready.committedEntries.length > 0) this.#enqueueApply(ready.committedEntries);
    // Back-pressure: at most MAX_APPLY_BACKLOG batches wait to be applied.
    if (this.#applyBacklog >= MAX_APPLY_BACKLOG) await this.#applyChain;
  }

  /** Tells Raft how far the apply chain got, never beyond what advance() handed out. */
  #reportApplied(): void {
    const index = Math.min(this.#applied, this.#handedOut);
    if (index <= this.#reportedApplied) return;
    this.#reportedApplied = index;
    this.#core('applied-to', () => this.#raft.appliedTo(index));
  }

  /** Fails the waiters of forwarded proposals the leader refused, at once, with etcd's errors. */
  #failRefused(refused: Ready['refusedProposals']): void {
    for (const { data, reason } of refused) {
      if (data.byteLength === 0) continue;
      let id: bigint;
      try {
        id = decodeEnvelope(data).id;
      } catch (error: unknown) {
        // Not one of our envelopes (a conf change): nothing waits on it by request id.
        void error;
        continue;
      }
      this.metrics.proposalsFailed.inc();
      this.#waiters.fail(id, new KvdError(reason === 'too-many-uncommitted' ? 'too-many-requests' : 'leader-changed'));
    }
    this.metrics.proposalsPending.set(this.#waiters.size);
  }

  /** Runs `write` after every earlier WAL write has finished. */
  #walExclusive(write: () => Promise<void>): Promise<void> {
    const run = this.#walQueue.then(write);
    this.#walQueue = run.catch(() => undefined); // the failure reaches this caller; the queue goes on
    return run;
  }

  /**
   * Applies committed entries on a serial chain that runs alongside the next Ready's persist, so a
   * batch's fdatasync overlaps the previous batch's backend write (etcd applies in its own
   * goroutine the same way). Order is kept: one chain, batches in commit order.
   */
  #enqueueApply(entries: readonly Entry[]): void {
    this.#applyBacklog += 1;
    this.#applyChain = this.#applyChain.then(async () => {
      try {
        if (this.#failpoints.applyDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.#failpoints.applyDelayMs));
        await this.#apply(entries);
        this.#reportApplied();
        this.#maybeLeaseReady();
        this.#schedule(); // applied conf changes and appliedTo may leave Raft work
        await this.#maybeSnapshot();
      } catch (error: unknown) {
        if (error instanceof WalFatalError) fatal(error.reason, errorMessage(error), error);
        if (error instanceof AssertionError) fatal('invariant', `apply: ${error.message}`, error);
        fatal('loop-failed', `apply failed: ${errorMessage(error)}`, error);
      } finally {
        this.#applyBacklog -= 1;
      }
    });
  }

  #onSoftState(soft: SoftState): void {
    const previous = this.#soft;
    this.#soft = soft;
    this.metrics.hasLeader.set(soft.leader === 0n ? 0 : 1);
    this.metrics.isLeader.set(soft.role === 'leader' ? 1 : 0);
    if (previous.leader !== soft.leader) {
      if (soft.leader !== 0n) this.metrics.leaderChanges.inc();
      this.logger.info({ event: 'leader-changed', term: this.#term, leader: idToHex(soft.leader), previous: idToHex(previous.leader), role: soft.role }, soft.leader === 0n ? 'lost the leader' : `leader is ${idToHex(soft.leader)}`);
    }
    if (soft.role === 'leader' && previous.role !== 'leader') {
      // Leases wait until everything committed at the election is applied (see #leaseDuty).
      this.#leaseDuty = { state: 'catching-up', index: this.#core('status', () => this.#raft.status().commit) };
      this.#maybeLeaseReady();
    } else if (soft.role !== 'leader' && previous.role === 'leader') {
      if (this.#leaseDuty.state === 'ready') this.#lessor.demote();
      this.#leaseDuty = { state: 'follower' };
      for (const waiter of this.#leaseWaiters.splice(0)) waiter.reject(new KvdError('leader-changed'));
    }
    if (soft.leader !== 0n && this.#attributes === 'unpublished') this.#publishAttributes();
  }

  /** A new leader whose apply caught up with its election's commit index takes over the leases. */
  #maybeLeaseReady(): void {
    const duty = this.#leaseDuty;
    if (duty.state !== 'catching-up' || this.#applied < duty.index) return;
    this.#leaseDuty = { state: 'ready' };
    // A new leader extends every lease by an election timeout so a failover never expires them all at once.
    this.#lessor.promote({ nowMs: Date.now(), extendMs: this.config.electionTimeoutMs });
    this.logger.info({ event: 'leases-promoted', term: this.#term, applied: this.#applied, leases: this.#lessor.leases().length }, 'leader applied its election commit index; serving lease renewals');
    for (const waiter of this.#leaseWaiters.splice(0)) waiter.resolve();
  }

  /**
   * Resolves when this member, as leader, may answer lease renewals and exact TTLs from its
   * lessor. Rejects with 'not-leader' on a follower, 'leader-changed' if leadership is lost while
   * waiting, 'timeout' at the deadline, 'too-many-requests' beyond the bound.
   */
  leaseReady(options: { deadlineMs: number }): Promise<void> {
    if (this.#stopping) return Promise.reject(new KvdError('stopped'));
    const duty = this.#leaseDuty;
    if (duty.state === 'ready') return Promise.resolve();
    if (duty.state === 'follower') return Promise.reject(new KvdError('not-leader'));
    if (this.#leaseWaiters.length >= this.config.maxPendingProposals) return Promise.reject(new KvdError('too-many-requests'));
    return new Promise((resolve, reject) => this.#leaseWaiters.push({ resolve, reject, deadlineMs: options.deadlineMs }));
  }

  /**
   * LeaseKeepAlive: renews `id` in the leader's lessor (here, once leases are ready, or at the
   * leader through a member call) and resolves with its TTL. Rejects 'lease-not-found',
   * 'timeout', 'too-many-requests', 'no-leader'.
   */
  async renewLease(id: LeaseId, options: { deadlineMs: number }): Promise<number> {
    return this.#asLeaderOrForward(options, () => this.#renewHere(id), () => this.#leaseForwarder.keepAlive(id, options));
  }

  /** LeaseTimeToLive, exact: from the leader's lessor (here or at the leader). */
  async leaseTimeToLive(id: LeaseId, options: { keys: boolean; deadlineMs: number }): Promise<LeaseTimeToLive> {
    return this.#asLeaderOrForward(options, () => this.#timeToLiveHere(id, options.keys), () => this.#leaseForwarder.timeToLive(id, options));
  }

  async #asLeaderOrForward<T>(options: { deadlineMs: number }, here: () => T, forward: () => Promise<T>): Promise<T> {
    for (;;) {
      if (this.#stopping) throw new KvdError('stopped');
      if (Date.now() >= options.deadlineMs) throw new KvdError('timeout');
      if (this.#soft.role === 'leader') {
        try {
          await this.leaseReady(options);
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
        if (isKvdError(error, 'leader-changed') && this.isLeader) continue;
        throw error;
      }
    }
  }

  #renewHere(id: LeaseId): number {
    const renewed = this.#lessor.renew(id, Date.now());
    if (!renewed.ok) throw new KvdError(renewed.code);
    if (renewed.followUp === 'propose-checkpoint-reset') this.resetCheckpoint(id);
    return renewed.ttlSeconds;
  }

  #timeToLiveHere(id: LeaseId, keys: boolean): LeaseTimeToLive {
    const found = this.#lessor.timeToLive(id, { nowMs: Date.now(), keys: keys ? 'include' : 'omit' });
    if (!found.ok) throw new KvdError(found.code);
    return { id, ttlSeconds: found.ttlSeconds, grantedTtlSeconds: found.grantedTtlSeconds, keys: found.keys };
  }

  /** Serves another member's call (peer transport): lease requests forwarded to this leader. */
  async #serveMemberCall(from: NodeId, kind: string, payload: Uint8Array, options: { deadlineMs: number }): Promise<Uint8Array> {
    switch (kind) {
      case LEASE_KEEPALIVE_CALL: {
        const request = decodeKeepAliveRequest(payload);
        await this.leaseReady(options);
        return encodeKeepAliveAnswer({ ttlSeconds: this.#renewHere(request.id) });
      }
      case LEASE_TTL_CALL: {
        const request = decodeTimeToLiveRequest(payload);
        await this.leaseReady(options);
        return encodeTimeToLive(this.#timeToLiveHere(request.id, request.keys));
      }
      default:
        throw new KvdError('unimplemented', { detail: `etcdserver: not implemented: member call ${kind} from ${idToHex(from)}` });
    }
  }

  #expireLeaseWaiters(nowMs: number): void {
    if (this.#leaseWaiters.length === 0) return;
    this.#leaseWaiters = this.#leaseWaiters.filter((waiter) => {
      if (waiter.deadlineMs > nowMs) return true;
      waiter.reject(new KvdError('timeout'));
      return false;
    });
  }

  #publishAttributes(): void {
    this.#attributes = 'publishing';
    const request: InternalRequest = { type: 'member-attributes', memberId: this.id, name: this.config.name, clientUrls: [...this.config.advertiseClientUrls] };
    this.propose(request, { deadlineMs: Date.now() + this.config.requestTimeoutMs }).then(
      () => {
        this.#attributes = 'published';
        this.logger.info({ event: 'published-attributes', term: this.#term }, 'published member attributes');
      },
      (error: unknown) => {
        this.#attributes = 'unpublished'; // retried on a later tick
        this.logger.warn({ event: 'publish-attributes-failed', error: errorMessage(error) }, 'could not publish member attributes');
      },
    );
  }

  #send(messages: readonly Message[]): void {
    if (messages.length === 0 || this.#transport === undefined) return;
    const regular: Message[] = [];
    for (const message of messages) {
      if (message.type === 'snapshot') this.#sendSnapshot(message);
      else regular.push(message);
    }
    if (regular.length > 0) this.#transport.send(regular);
  }

  #sendSnapshot(message: SnapshotMessage): void {
    const transport = this.#transport;
    if (transport === undefined || this.#sendingSnapshots.has(message.to)) return;
    this.#sendingSnapshots.add(message.to);
    this.metrics.snapshotsSent.inc();
    this.logger.info({ event: 'snapshot-send', to: idToHex(message.to), index: message.snapshot.metadata.index, term: this.#term }, 'sending a snapshot to a lagging member');
    transport.sendSnapshot(message, () => this.#store.exportSnapshot()).then(
      (status) => {
        this.#sendingSnapshots.delete(message.to);
        this.logger.info({ event: 'snapshot-sent', to: idToHex(message.to), status, index: message.snapshot.metadata.index }, `snapshot send ${status}`);
        this.#core('report-snapshot', () => this.#raft.reportSnapshot(message.to, status));
        this.#schedule();
      },
      (error: unknown) => {
        this.#sendingSnapshots.delete(message.to);
        this.logger.warn({ event: 'snapshot-send-failed', to: idToHex(message.to), error: errorMessage(error) }, 'snapshot send failed');
        this.#core('report-snapshot', () => this.#raft.reportSnapshot(message.to, 'failed'));
        this.#schedule();
      },
    );
  }

  /** Transport callback: stores the streamed backend next to the snapshots, then hands the message to Raft. */
  async #receiveSnapshot(message: SnapshotMessage, data: AsyncIterable<Uint8Array>): Promise<void> {
    const index = message.snapshot.metadata.index;
    const path = join(this.config.dataDir, 'member', 'snap', `incoming-${index}.db`);
    const out = createWriteStream(path);
    try {
      for await (const chunk of data) {
        if (!out.write(chunk)) await once(out, 'drain');
      }
      out.end();
      await once(out, 'finish');
      const handle = await openFile(path, 'r');
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch (error: unknown) {
      // A broken or truncated stream: release the descriptor and the partial file.
      out.destroy();
      await rm(path, { force: true });
      throw error;
    }
    if (this.#stopping) {
      await rm(path, { force: true });
      return;
    }
    this.#incomingSnapshots.set(index, path);
    this.logger.info({ event: 'snapshot-received', index, from: idToHex(message.from), term: message.term }, 'received a snapshot');
    this.#core('step snapshot', () => this.#raft.step(message));
    if (this.#core('pending-snapshot', () => this.#raft.pendingSnapshotIndex()) !== index) {
      // Raft ignored it (stale, duplicate, or we moved on meanwhile): nothing will install it.
      this.#incomingSnapshots.delete(index);
      await rm(path, { force: true });
      this.logger.info({ event: 'snapshot-ignored', index, term: this.#term }, 'raft ignored the received snapshot; discarded its data');
    }
    this.#schedule();
  }

  /** Installs a snapshot Raft handed us in a Ready: the backend is replaced by the received dump. */
  async #installSnapshot(snapshot: Snapshot): Promise<void> {
    const index = snapshot.metadata.index;
    const path = this.#incomingSnapshots.get(index);
    if (path === undefined) fatal('corrupt', `raft asked to install snapshot ${index} but no backend dump was received for it`);
    this.#incomingSnapshots.delete(index);
    // Older received snapshots can never be installed any more.
    for (const [older, olderPath] of [...this.#incomingSnapshots]) {
      if (older >= index) continue;
      this.#incomingSnapshots.delete(older);
      await rm(olderPath, { force: true });
    }
    const dbPath = join(this.config.dataDir, 'member', 'db');
    await this.#store.close();
    await MvccStore.restoreSnapshot({ path: dbPath, chunks: createReadStream(path) });
    this.#store = await MvccStore.open({ path: dbPath, maxTxnOps: this.config.maxTxnOps, logger: storeLogger(this.logger) });
    this.#listenToStore(this.#store);
    // Watchers synced before the install would miss the revisions the snapshot skipped: make
    // them catch up from the new backend (or cancel them if their position was compacted).
    this.watchHub.storeReplaced();
    this.membership.load(this.#store.listMeta('member/'));
    this.#lessor = Lessor.restore(this.#store.listMeta('lease/'), this.#store.listLeasedKeys(), { minTtlSeconds: minLeaseTtlSeconds(this.config) });
    await this.#snapshots.save(snapshot);
    await this.#walExclusive(() => this.#wal.saveSnapshotMarker(snapshot.metadata));
    this.#storage.applySnapshot(snapshot);
    this.#confState = snapshot.metadata.confState;
    this.#snapshotIndex = index;
    this.#applied = Math.max(index, this.#applied);
    await rm(path, { force: true });
    this.#syncPeers();
    this.metrics.snapshotsInstalled.inc();
    this.logger.info({ event: 'snapshot-installed', index, term: snapshot.metadata.term, revision: this.#store.currentRevision }, 'installed a snapshot from the leader');
  }

  // ───────────────────────────── apply ─────────────────────────────

  async #apply(entries: readonly Entry[]): Promise<void> {
    const started = performance.now();
    let run: Array<{ index: number; request: WriteRequest | null; id?: bigint }> = [];
    const flush = async (): Promise<void> => {
      if (run.length === 0) return;
      const batch = run;
      run = [];
      await this.#applyWrites(batch, new Map());
    };
    for (const entry of entries) {
      if (entry.type === 'conf-change') {
        await flush();
        await this.#applyConfChange(entry);
        continue;
      }
      if (entry.data.byteLength === 0) {
        run.push({ index: entry.index, request: null }); // the leader's no-op of a new term
        continue;
      }
      const envelope = decodeEnvelope(entry.data);
      const request = envelope.request;
      switch (request.type) {
        case 'put':
        case 'delete-range':
        case 'txn':
        case 'compact':
          run.push({ index: entry.index, request, id: envelope.id });
          break;
        default:
          await flush();
          await this.#applySpecial(entry.index, envelope.id, request);
      }
    }
    await flush();
    this.metrics.applySeconds.observe((performance.now() - started) / 1000);
    this.#applied = entries[entries.length - 1].index;
    this.metrics.proposalsApplied.set(this.#applied);
    this.#reads.onApplied(this.#applied);
  }

  async #applyWrites(batch: ReadonlyArray<{ index: number; request: WriteRequest | null; id?: bigint }>, meta: ReadonlyMap<string, Uint8Array | null>): Promise<void> {
    const outcomes = await this.#store.applyBatch(
      batch.map(({ index, request }) => ({ index, request })),
      { leaseExists: (id) => this.#lessor.has(id), meta },
    );
    assert(outcomes.length === batch.length, 'one outcome per applied entry');
    for (let i = 0; i < batch.length; i++) {
      const outcome = outcomes[i];
      const entry = batch[i];
      if (outcome.ok) this.#lessor.applyEvents(outcome.events);
      if (entry.id === undefined || !this.#waiters.has(entry.id)) continue;
      if (outcome.ok) this.#waiters.trigger(entry.id, { ok: true, revision: outcome.revision, result: outcome.result });
      else this.#waiters.trigger(entry.id, { ok: false, error: outcome.error });
    }
    this.metrics.proposalsPending.set(this.#waiters.size);
  }

  async #applySpecial(index: number, id: bigint, request: Exclude<InternalRequest, WriteRequest>): Promise<void> {
    if (index <= this.#store.consistentIndex) return; // already applied before a restart
    const meta = new Map<string, Uint8Array | null>();
    let result: ApplyResult = { ok: true, revision: this.#store.currentRevision, result: { type: 'none' } };
    switch (request.type) {
      case 'lease-grant': {
        const granted = this.#lessor.grant({ id: request.id, ttlSeconds: request.ttlSeconds, nowMs: Date.now() });
        if (granted.ok) {
          for (const [key, value] of granted.meta) meta.set(key, value);
          result = { ok: true, revision: this.#store.currentRevision, result: { type: 'lease-grant', id: request.id, ttlSeconds: granted.ttlSeconds } };
        } else {
          result = { ok: false, error: new KvdError(granted.code) };
        }
        await this.#applyWrites([{ index, request: null }], meta);
        break;
      }
      case 'lease-revoke': {
        const revoked = this.#lessor.revoke(request.id);
        if (!revoked.ok) {
          result = { ok: false, error: new KvdError(revoked.code) };
          await this.#applyWrites([{ index, request: null }], meta);
          break;
        }
        for (const [key, value] of revoked.meta) meta.set(key, value);
        // Every attached key goes in one revision: one txn of deletes.
        const deletes: WriteRequest = {
          type: 'txn',
          request: { compare: [], success: revoked.keys.map((key) => ({ type: 'delete-range' as const, request: { key, rangeEnd: new Uint8Array(0), prevKv: false } })), failure: [] },
        };
        // 'internal': a lease may hold more keys than a client txn may touch (--max-txn-ops).
        const outcomes = await this.#store.applyBatch([{ index, request: revoked.keys.length > 0 ? deletes : null, limits: 'internal' }], { leaseExists: (lease) => this.#lessor.has(lease), meta });
        const outcome = outcomes[0];
        if (outcome.ok) this.#lessor.applyEvents(outcome.events);
        result = { ok: true, revision: outcome.ok ? outcome.revision : this.#store.currentRevision, result: { type: 'lease-revoke' } };
        break;
      }
      case 'lease-checkpoint': {
        for (const checkpoint of request.checkpoints) {
          const checkpointed = this.#lessor.checkpoint(checkpoint.id, checkpoint.remainingTtlSeconds);
          if (checkpointed.ok) for (const [key, value] of checkpointed.meta) meta.set(key, value);
        }
        await this.#applyWrites([{ index, request: null }], meta);
        break;
      }
      case 'member-attributes': {
        const current = this.membership.get(request.memberId);
        if (current !== undefined) {
          const [key, value] = this.membership.set({ ...current, name: request.name, clientUrls: [...request.clientUrls] });
          meta.set(key, value);
        }
        await this.#applyWrites([{ index, request: null }], meta);
        break;
      }
    }
    this.#waiters.trigger(id, result);
  }

  async #applyConfChange(entry: Entry): Promise<void> {
    const change = decodeConfChange(entry.data);
    // Always hand conf changes to Raft, even below the store's applied index: after a restart the
    // core only knows the snapshot's configuration and relearns later changes from the log.
    this.#confState = this.#core('apply-conf-change', () => this.#raft.applyConfChange(change, { index: entry.index }));
    const meta = new Map<string, Uint8Array | null>();
    const attributes = decodeMemberContext(change);
    const current = this.membership.known(change.nodeId) ? this.membership.get(change.nodeId) : undefined;
    switch (change.type) {
      case 'add-node':
      case 'add-learner-node': {
        const base: MemberRecord = current ?? { id: change.nodeId, name: attributes?.name ?? '', peerUrls: attributes?.peerUrls ?? [], clientUrls: [], isLearner: false, removed: false };
        const [key, value] = this.membership.set({ ...base, peerUrls: attributes?.peerUrls ?? base.peerUrls, isLearner: change.type === 'add-learner-node' });
        meta.set(key, value);
        break;
      }
      case 'remove-node': {
        if (current !== undefined) {
          const [key, value] = this.membership.set({ ...current, removed: true });
          meta.set(key, value);
        }
        break;
      }
      case 'update-node': {
        if (current !== undefined && attributes !== undefined) {
          const [key, value] = this.membership.set({ ...current, peerUrls: attributes.peerUrls });
          meta.set(key, value);
        }
        break;
      }
    }
    if (entry.index > this.#store.consistentIndex) await this.#applyWrites([{ index: entry.index, request: null }], meta);
    this.#syncPeers();
    this.logger.info({ event: 'conf-change-applied', index: entry.index, term: this.#term, change: change.type, node: idToHex(change.nodeId) }, 'applied a membership change');
    if (change.type === 'remove-node' && change.nodeId === this.id) {
      this.logger.warn({ event: 'removed', term: this.#term }, 'this member was removed from the cluster; stopping');
      setImmediate(() => void this.stop()); // Detached: stopping awaits the loop this runs in.
    }
  }

  /** Keeps the transport's peer set equal to the active membership. */
  #syncPeers(): void {
    const transport = this.#transport;
    if (transport === undefined) return;
    for (const member of this.membership.active()) {
      if (member.id !== this.id) transport.addPeer(member.id, [...member.peerUrls]);
    }
  }

  // ───────────────────────────── snapshots ─────────────────────────────

  async #maybeSnapshot(): Promise<void> {
    if (this.#applied - this.#snapshotIndex < this.config.snapshotCount) return;
    const index = this.#applied;
    const snapshot = this.#storage.createSnapshot({ index, confState: this.#confState, data: Buffer.from(JSON.stringify({ clusterId: idToHex(this.membership.clusterId), revision: this.#store.currentRevision })) });
    await this.#store.sync();
    await this.#snapshots.save(snapshot);
    await this.#walExclusive(() => this.#wal.saveSnapshotMarker(snapshot.metadata));
    this.#snapshotIndex = index;
    const compactTo = index - this.config.snapshotCatchUpEntries;
    if (compactTo > this.#storage.firstIndex()) this.#storage.compact(compactTo);
    // Segments below the snapshot index are covered by the snapshot and the synced backend.
    await this.#wal.releaseTo(index);
    this.metrics.snapshotsSaved.inc();
    this.logger.info({ event: 'snapshot-saved', index, term: snapshot.metadata.term, compactedTo: compactTo }, 'saved a snapshot and released the WAL below it');
  }

  // ───────────────────────────── leader duties ─────────────────────────────

  #leaderDuties(): void {
    const now = Date.now();
    for (const id of this.#lessor.expired({ nowMs: now, max: MAX_LEASE_REVOKES_PER_TICK })) {
      this.propose({ type: 'lease-revoke', id }, { deadlineMs: now + this.config.requestTimeoutMs }).catch((error: unknown) => {
        this.logger.warn({ event: 'lease-revoke-failed', lease: id.toString(16), error: errorMessage(error) }, 'could not revoke an expired lease');
      });
    }
    const due = this.#lessor.checkpointsDue({ nowMs: now });
    if (due.length > 0) {
      this.propose({ type: 'lease-checkpoint', checkpoints: due }, { deadlineMs: now + this.config.requestTimeoutMs }).catch((error: unknown) => {
        this.logger.warn({ event: 'lease-checkpoint-failed', error: errorMessage(error) }, 'could not checkpoint leases');
      });
    }
  }

  /**
   * After a keep-alive of a lease that carried a checkpointed remaining TTL, records "no
   * remainder" so a restart does not resurrect the old value (etcd does the same). Detached: a
   * failure only means the next checkpoint corrects it.
   */
  resetCheckpoint(id: LeaseId): void {
    this.propose({ type: 'lease-checkpoint', checkpoints: [{ id, remainingTtlSeconds: 0 }] }, { deadlineMs: Date.now() + this.config.requestTimeoutMs }).catch((error: unknown) => {
      this.logger.debug({ event: 'lease-checkpoint-reset-failed', lease: id.toString(16), error: errorMessage(error) }, 'could not reset a lease checkpoint');
    });
  }


}

/** etcd's minimum lease TTL for this member's timing (2 s with etcd's defaults). */
export function minLeaseTtlSeconds(config: ServerConfig): number {
  return minTtlSecondsFor({ electionTicks: electionTicksOf(config), heartbeatMs: config.heartbeatIntervalMs });
}

/** Election timeout in ticks (one tick per heartbeat interval). */
export function electionTicksOf(config: ServerConfig): number {
  return Math.max(2, Math.round(config.electionTimeoutMs / config.heartbeatIntervalMs));
}

/** A Raft event as log fields: `event` names it, member ids print as hex like etcd's. */
function raftEventFields(event: RaftEvent): Record<string, unknown> {
  const fields: Record<string, unknown> = { event: event.kind };
  for (const [key, value] of Object.entries(event)) {
    if (key === 'kind' || key === 'id') continue;
    fields[key] = typeof value === 'bigint' ? idToHex(value) : value;
  }
  return fields;
}

/** Snapshot data received but never installed before a restart cannot be installed any more. */
async function removeIncomingSnapshots(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    if (/^incoming-\d+\.db$/.test(name)) await rm(join(dir, name), { force: true });
  }
}

/** The store's structured events as log lines; its failures at error level. */
function storeLogger(log: Logger): (event: StoreEvent) => void {
  return (event) => {
    if (event.type === 'failed' || event.type === 'listener-failed') log.error({ event: `store-${event.type}`, ...event }, 'store failure');
    else log.info({ ...event, event: `store-${event.type}` }, 'store');
  };
}

function decodeMemberContext(change: ConfChange): { name: string; peerUrls: string[] } | undefined {
  if (change.context.byteLength === 0) return undefined;
  try {
    return JSON.parse(Buffer.from(change.context).toString('utf8')) as { name: string; peerUrls: string[] };
  } catch (error: unknown) {
    // A context we cannot read carries no attributes; the change itself still applies.
    void error;
    return undefined;
  }
}


/**
 * One kvd member, composed of its roles (etcd's EtcdServer, split the same way):
 *
 * - bootstrap.ts      who this member is and its durable state (new, joining, restart);
 * - raft-node.ts      the Raft core, WAL, peer transport, ticks and the Ready loop;
 * - apply-pipeline.ts committed entries applied in order behind the Ready loop, bounded;
 * - applier.ts        entries → store, lessor, membership (deterministic);
 * - snapshotter.ts    Raft snapshots, backend streaming, crash-safe install;
 * - lease-driver.ts   lease expiry, renewals and forwarding (time and leadership);
 * - membership-ops.ts the Cluster service's operations and their checks;
 * - gateway.ts        proposals, waiters and linearizable read barriers: what the API calls.
 *
 * This file wires them and owns start and stop. The state they share (store, lessor,
 * membership, watch hub) lives in state.ts; each fact has one owner.
 */
import { RawNode } from '../raft/raw-node.js';
import { seededRandom } from '../raft/random.js';
import type { ConfChange, Entry, NodeId, Snapshot, SoftState } from '../raft/types.js';
import type { RaftEvent } from '../raft/config.js';
import type { MvccStore } from '../store/mvcc/index.js';
import type { RevisionChanges } from '../store/mvcc/store.js';
import type { Lessor } from '../store/lease/lessor.js';
import type { Revision } from '../store/mvcc/types.js';
import type { DefragResult } from '../store/mvcc/store.js';
import { WatchHub, type HistorySource } from '../store/watch/watch-hub.js';
import { AssertionError } from '../util/assert.js';
import { KvdError, errorMessage } from '../util/errors.js';
import { MEMBER_REMOVED_REASON } from '../transport/index.js';
import type { ServerConfig } from './config.js';
import type { Logger } from './logger.js';
import { ServerMetrics } from './metrics.js';
import { idToHex } from './ids.js';
import type { Membership } from './membership.js';
import { electionTicksOf, markRemoved, openStore, recover, restoreLessor } from './bootstrap.js';
import { RaftTrace } from './raft-trace.js';
import { RaftNode } from './raft-node.js';
import { ApplyPipeline } from './apply-pipeline.js';
import { Applier } from './applier.js';
import { Snapshotter } from './snapshotter.js';
import { LeaseDriver } from './lease-driver.js';
import { MembershipOps, MEMBER_PROMOTE_CALL } from './membership-ops.js';
import { RequestGateway } from './gateway.js';
import { MemberState } from './state.js';
import { fatal } from './fatal.js';
import { readFailpoints, type Failpoints } from './failpoints.js';
import type { InternalRequest } from './requests.js';
import { Quota } from './quota.js';
import { Compactor } from './compactor.js';
import { CorruptionChecker, HASHKV_CALL } from './corruption.js';
import { DiskSpace, retryPauseMs } from './disk-space.js';
import { isNoSpaceFailure } from '../store/mvcc/index.js';
import { join } from 'node:path';
import { alarmText, type AlarmChangeRequest, type AlarmRecord } from './alarms.js';
import { AuthGate } from './auth/auth-gate.js';
import * as grpc from '@grpc/grpc-js';
import { PEER_ALPN, TlsMaterial, hostsOf, secureAccept, tlsWanted } from './tls.js';
import { JwtTokens, SimpleTokens } from './auth/tokens.js';

export type { ApplyResult, LeaseApplyResult } from './gateway.js';
export { minLeaseTtlSeconds, electionTicksOf } from './bootstrap.js';

/** The response header every API answer carries. */
export interface HeaderInfo {
  readonly clusterId: bigint;
  readonly memberId: bigint;
  readonly revision: Revision;
  readonly raftTerm: number;
}

/** What follows a member's progress (see KvdMember.subscribe). */
export interface MemberSubscriber {
  revisions(batch: readonly RevisionChanges[]): void;
  storeReplaced(): void;
  stateChanged(): void;
}

export { SERVER_VERSION, VERSION_INFO } from './versions.js';

/** Committed batches that may wait for apply before the Ready loop waits for them. */
const MAX_APPLY_BACKLOG = 8;

export class KvdMember {
  readonly config: ServerConfig;
  readonly logger: Logger;
  readonly metrics: ServerMetrics;
  readonly id: NodeId;
  readonly state: MemberState;
  readonly node: RaftNode;
  readonly gateway: RequestGateway;
  readonly leases: LeaseDriver;
  readonly membershipOps: MembershipOps;
  readonly quota: Quota;
  /** Auto-compaction (leader-driven), when --auto-compaction-retention is set. */
  readonly #compactor: Compactor | undefined;
  readonly #corruption: CorruptionChecker;
  /** Which parts of this member cannot write for lack of space (disk-space.ts). */
  readonly #disk: DiskSpace;
  readonly #applier: Applier;
  /** Who calls and what they may do (auth tokens, permission checks for the backends). */
  readonly authGate: AuthGate;
  readonly #pipeline: ApplyPipeline;
  readonly #snapshotter: Snapshotter;
  readonly #failpoints: Failpoints;
  /** Whether this member's name and client URLs are in the replicated membership yet. */
  #attributes: 'unpublished' | 'publishing' | 'published' = 'unpublished';
  #stopped: Promise<void> | undefined;
  /** Resolves when this member learns that it was removed from the cluster (run.ts then exits). */
  readonly removed: Promise<void>;
  #onRemoved!: () => void;
  /** Who follows committed revisions, snapshot installs and state changes (the front-end host). */
  readonly #subscribers = new Set<MemberSubscriber>();
  #removal: 'member' | 'removed' = 'member';
  /** The peer port's TLS material (reloaded on file changes), when peer URLs are https. */
  #peerTls: TlsMaterial | undefined;

  private constructor(config: ServerConfig, recovered: Awaited<ReturnType<typeof recover>>) {
    this.config = config;
    this.logger = recovered.logger;
    this.id = recovered.id;
    this.metrics = new ServerMetrics();
    this.#failpoints = readFailpoints(process.env);
    this.removed = new Promise((resolve) => { this.#onRemoved = resolve; });
    const logger = recovered.logger;
    this.#disk = new DiskSpace({ logger, gauge: this.metrics.diskFull });

    // The hub reads history through the state holder, whose store is replaced by snapshot installs.
    let state: MemberState | undefined;
    const current = (): MvccStore => state?.store ?? recovered.store;
    const history: HistorySource = {
      get currentRevision() { return current().currentRevision; },
      get compactedRevision() { return current().compactedRevision; },
      changes: (options) => current().changes(options),
    };
    const watchHub = new WatchHub({ history, progressIntervalMs: config.watchProgressNotifyIntervalMs });
    state = new MemberState({ store: recovered.store, lessor: recovered.lessor, membership: recovered.membership, watchHub });
    this.state = state;
    this.#listenToStore(recovered.store);
    const authState = state;
    const tokens = config.authToken.kind === 'simple'
      ? new SimpleTokens({ tokenKey: () => authState.auth.tokenKey, ttlMs: config.authTokenTtlMs })
      : new JwtTokens(config.authToken);
    this.authGate = new AuthGate({ store: () => authState.auth, tokens, logger });
    state.auth.subscribe(() => {
      for (const subscriber of this.#subscribers) subscriber.stateChanged();
    });
    this.metrics.setGauges({
      dbSizeBytes: () => this.state.store.dbSizeBytes(),
      dbSizeInUseBytes: async () => Math.min(this.state.store.liveBytes, await this.state.store.dbSizeBytes()),
      keys: () => this.state.store.indexedKeys,
      watchers: () => this.state.watchHub.stats().watchers,
    });

    const trace = config.traceRaftFile === '' ? undefined : new RaftTrace(config.traceRaftFile, config.name);
    const raft = new RawNode({
      id: recovered.id,
      storage: recovered.storage,
      random: seededRandom(Number(recovered.id & 0x7fffffffn) ^ Date.now()),
      electionTicks: electionTicksOf(config),
      heartbeatTicks: 1,
      applied: recovered.snapshotIndex,
      preVote: 'enabled',
      checkQuorum: 'enabled',
      onEvent: (event) => logger.info(raftEventFields(event), event.kind),
    });
    this.node = new RaftNode({
      id: recovered.id,
      clusterId: recovered.clusterId,
      raft,
      storage: recovered.storage,
      wal: recovered.wal,
      snapshots: recovered.snapshots,
      confState: recovered.confState,
      snapshotIndex: recovered.snapshotIndex,
      logger,
      metrics: this.metrics,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      ...(trace === undefined ? {} : { trace }),
    });
    if (this.#failpoints.raftAssertOnTerm > 0) {
      const failAt = this.#failpoints.raftAssertOnTerm;
      this.node.setStepFailpoint((message) => {
        if (message.term >= failAt) throw new AssertionError(`assertion failed: failpoint raftAssertOnTerm (${message.type} of term ${message.term})`);
      });
    }
    this.gateway = new RequestGateway({
      node: this.node,
      metrics: this.metrics,
      logger,
      maxPendingProposals: config.maxPendingProposals,
      maxPendingReads: config.maxPendingReads,
      maxRequestBytes: config.maxRequestBytes,
      readRetryMs: config.electionTimeoutMs,
      appliedIndex: () => this.#pipeline.applied,
      admit: (request) => this.#admit(request),
      admitRead: () => this.#disk.refusal(),
    });
    this.quota = new Quota({
      quotaBytes: config.quotaBackendBytes,
      lowWaterPercent: config.quotaLowWaterPercent,
      host: {
        memberId: recovered.id,
        store: () => state.store,
        alarms: () => state.alarms,
        propose: (request) => this.gateway.propose(request, { deadlineMs: Date.now() + config.requestTimeoutMs }),
        logger,
      },
    });
    this.#refreshAlarmGauges();
    const autoCompaction = config.autoCompaction;
    this.#compactor = autoCompaction.mode === 'off' ? undefined : new Compactor({
      config: autoCompaction,
      nowMs: Date.now(),
      revisionIntervalMs: this.#failpoints.compactorRevisionIntervalMs > 0 ? this.#failpoints.compactorRevisionIntervalMs : undefined,
      host: {
        isLeader: () => this.node.isLeader,
        currentRevision: () => state.store.currentRevision,
        compactedRevision: () => state.store.compactedRevision,
        compact: async (revision) => {
          const applied = await this.gateway.propose({ type: 'compact', request: { revision, physical: false } }, { deadlineMs: Date.now() + config.requestTimeoutMs });
          if (!applied.ok) throw applied.error;
        },
        onCompacted: () => this.metrics.autoCompactions.inc(),
        logger,
      },
    });
    const call = (to: NodeId, kind: string, payload: Uint8Array, options: { deadlineMs: number }): Promise<Uint8Array> => {
      const transport = this.node.transport;
      if (transport === undefined) return Promise.reject(new KvdError('stopped'));
      return transport.call(to, kind, payload, options);
    };
    this.leases = new LeaseDriver({
      id: recovered.id,
      state,
      gateway: this.gateway,
      logger,
      leader: () => this.node.leader,
      // A member whose WAL is stuck cannot tell that it was replaced: it stops serving as leader
      // (and gives up lease duty, see #onDiskFull).
      isLeader: () => this.node.isLeader && !this.#disk.isFull('wal'),
      commitIndex: () => this.node.status().commit,
      appliedIndex: () => this.#pipeline.applied,
      term: () => this.node.term,
      call,
      electionTimeoutMs: config.electionTimeoutMs,
      requestTimeoutMs: config.requestTimeoutMs,
      maxWaiters: config.maxPendingProposals,
    });
    this.membershipOps = new MembershipOps({
      node: this.node,
      gateway: this.gateway,
      state,
      logger,
      strictReconfigCheck: config.strictReconfigCheck,
      autoPromoteLearners: config.autoPromoteLearners,
      maxLearners: config.maxLearners,
      requestTimeoutMs: config.requestTimeoutMs,
      electionTimeoutMs: config.electionTimeoutMs,
      call,
    });
    this.#corruption = new CorruptionChecker({
      initialCheck: config.initialCorruptCheck,
      periodicMs: config.corruptCheckIntervalMs,
      nowMs: Date.now(),
      host: {
        memberId: recovered.id,
        store: () => state.store,
        alarms: () => state.alarms,
        leader: () => this.node.leader,
        isLeader: () => this.node.isLeader,
        peers: () => state.membership.active().map((m) => m.id).filter((id) => id !== recovered.id),
        call,
        raise: (memberId) => this.gateway.propose({ type: 'alarm', action: 'activate', memberId, alarm: 'corrupt', origin: 'corruption-check' }, { deadlineMs: Date.now() + config.requestTimeoutMs }),
        logger,
        onChecked: (outcome) => {
          this.metrics.corruptionChecks.inc();
          if (outcome === 'mismatch') this.metrics.corruptionMismatches.inc();
        },
      },
    });
    this.#snapshotter = new Snapshotter({
      dataDir: config.dataDir,
      state,
      node: this.node,
      logger,
      metrics: this.metrics,
      snapshotCount: config.snapshotCount,
      catchUpEntries: config.snapshotCatchUpEntries,
      openStore: async (path) => {
        const store = await openStore(path, config, logger);
        this.#listenToStore(store);
        return store;
      },
      restoreLessor: (store) => restoreLessor(store, config),
      onInstalled: (snapshot) => this.#onSnapshotInstalled(snapshot),
    });
    const applier = new Applier({
      state,
      logger,
      metrics: this.metrics,
      maxLearners: config.maxLearners,
      ...(trace === undefined ? {} : { trace }),
      host: {
        answer: (id, result) => this.gateway.answer(id, result),
        applyConfChange: (change, index) => this.node.applyConfChange(change, index),
        onConfChangeApplied: ({ plan, change }) => this.#onConfChangeApplied(plan.error === undefined, change),
        term: () => this.node.term,
        snapshotIndex: () => this.node.snapshotIndex,
        onAlarmChanged: (event) => this.#onAlarmChanged(event),
      },
    });
    this.#applier = applier;
    this.#pipeline = new ApplyPipeline({
      appliedIndex: recovered.snapshotIndex,
      maxBacklogBatches: MAX_APPLY_BACKLOG,
      apply: async (entries) => {
        if (this.#failpoints.applyDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.#failpoints.applyDelayMs));
        await this.#applyUntilWritten(entries);
      },
      afterBatch: async (applied) => {
        this.node.reportApplied(applied);
        this.gateway.onApplied(applied);
        this.leases.onApplied();
        await this.#snapshotter.maybeSnapshot(applied);
      },
      onFailure: (error) => {
        // Stopping while the backend is full: the batch is abandoned (it was never acknowledged).
        if (this.node.stopping && isNoSpaceFailure(error)) return;
        if (error instanceof AssertionError) fatal('invariant', `apply: ${error.message}`, error);
        fatal('loop-failed', `apply failed: ${errorMessage(error)}`, error);
      },
    });
  }

  /**
   * Opens (or bootstraps, or joins) the member in `config.dataDir`, starts the peer transport and
   * the tick timer. The client-facing gRPC server is started by the caller (see run.ts).
   */
  static async start(config: ServerConfig, logger: Logger): Promise<KvdMember> {
    const peerTls = tlsWanted(config.peerTls)
      ? await TlsMaterial.open(config.peerTls, { scope: 'peer', dataDir: config.dataDir, hosts: hostsOf([...config.listenPeerUrls, ...config.initialAdvertisePeerUrls]), logger })
      : undefined;
    const transportTls = peerTls === undefined ? undefined : {
      accept: secureAccept({ material: peerTls, alpn: PEER_ALPN, allowedCn: config.peerTls?.allowedCn, logger, scope: 'peer' }),
      credentials: () => grpc.credentials.createFromSecureContext(peerTls.clientContext, { rejectUnauthorized: peerTls.verifiesServers }),
      connectOptions: () => ({ secureContext: peerTls.clientContext, rejectUnauthorized: peerTls.verifiesServers }),
    };
    let recovered: Awaited<ReturnType<typeof recover>>;
    try {
      recovered = await recover(config, logger, { peerCredentials: transportTls?.credentials });
    } catch (error: unknown) {
      peerTls?.close();
      throw error;
    }
    const member = new KvdMember(config, recovered);
    member.#peerTls = peerTls;
    await member.node.start({
      tls: transportTls,
      http2: config.peerHttp2,
      listenPeerUrls: config.listenPeerUrls,
      advertisePeerUrls: config.initialAdvertisePeerUrls,
      peers: member.state.membership.active(),
      transport: {
        onSnapshot: (message, data) => member.#snapshotter.receive(message, data),
        onCall: (from, kind, payload, options) => member.#serveMemberCall(from, kind, payload, options),
        onMembersRequest: () => ({ clusterId: member.state.membership.clusterId, members: member.state.membership.active() }),
        isRemoved: (id) => member.state.membership.known(id) && member.state.membership.get(id) === undefined,
        onRefusedByPeer: (reason) => member.#onRefusedByPeer(reason),
      },
      hooks: {
        onSoftState: (soft, previous) => member.#onSoftState(soft, previous),
        onRefusedProposals: (refused) => member.gateway.failRefused(refused),
        onReadStates: (states) => member.gateway.onReadStates(states),
        onCommitted: (entries) => member.#pipeline.enqueue(entries),
        applyDrained: () => member.#pipeline.drained(),
        applyRoom: () => member.#pipeline.room(),
        onDiskFull: (part, detail) => member.#onDiskFull(part, detail),
        onDiskRecovered: (part) => member.#onDiskRecovered(part),
        installSnapshot: (snapshot, persistMarker) => member.#snapshotter.install(snapshot, persistMarker),
        snapshotData: () => member.#snapshotter.snapshotData(),
        onTick: () => member.#onTick(),
      },
    });
    return member;
  }

  // ───────────────────────────── what the API reads ─────────────────────────────

  get store(): MvccStore { return this.state.store; }
  get lessor(): Lessor { return this.state.lessor; }
  get membership(): Membership { return this.state.membership; }
  get watchHub(): WatchHub { return this.state.watchHub; }
  get leader(): NodeId { return this.node.leader; }
  get isLeader(): boolean { return this.node.isLeader; }
  get term(): number { return this.node.term; }
  get appliedIndex(): number { return this.#pipeline.applied; }
  get commitIndex(): number { return this.node.commitIndex; }
  get raftIndex(): number { return this.node.lastIndex; }
  get isLearner(): boolean { return this.node.confState.learners.includes(this.id); }

  /** The header for a response produced at `revision` (default: the store's current revision). */
  header(revision?: Revision): HeaderInfo {
    return { clusterId: this.membership.clusterId, memberId: this.id, revision: revision ?? this.store.currentRevision, raftTerm: this.node.term };
  }

  /**
   * Follows the member: every committed revision batch (after the watch hub got it), snapshot
   * installs that replace the store, and leader/term changes. Listeners must not throw (a throw
   * stops the member: it would mean a watch gap). Returns an unsubscribe.
   */
  subscribe(subscriber: MemberSubscriber): () => void {
    this.#subscribers.add(subscriber);
    return () => this.#subscribers.delete(subscriber);
  }

  /**
   * Defragments this member's backend in slices (MvccStore.defragment) and measures it again at
   * the next tick, so a NOSPACE alarm the quota raised clears as soon as it may (not meanwhile:
   * a measurement taken while both layouts are on disk could raise the alarm again).
   */
  async defragment(): Promise<DefragResult> {
    this.quota.defragmentStarted();
    try {
      return await this.store.defragment();
    } finally {
      this.quota.defragmentEnded();
    }
  }

  /** Asks Raft to transfer leadership to `transferee` (Maintenance.MoveLeader). */
  transferLeadership(transferee: NodeId): void {
    this.node.transferLeadership(transferee);
  }

  // ───────────────────────────── events from the parts ─────────────────────────────

  #onTick(): void {
    const now = Date.now();
    this.gateway.onTick(now);
    this.quota.onTick(now);
    this.#compactor?.onTick(now);
    this.#corruption.onTick(now);
    this.leases.onTick(now);
    this.membershipOps.onTick(now);
    if (this.#attributes === 'unpublished' && this.node.leader !== 0n) this.#publishAttributes();
  }

  /** The gateway's early refusals: a full disk, alarms and the quota (the applier decides again on apply). */
  #admit(request: InternalRequest): KvdError | Promise<KvdError> | undefined {
    return this.#disk.refusal() ?? this.quota.admit(request);
  }

  /**
   * The WAL cannot write: the Ready loop is stuck, so the role this member last processed may be
   * stale (a stuck leader is replaced without hearing of it). It gives up lease duty at once (no
   * renewals answered, no expiries proposed from a lessor that is no longer the leader's).
   */
  #onDiskFull(part: 'wal' | 'snapshot', detail: string): void {
    this.#disk.reportFull(part, detail);
    if (part === 'wal' && this.node.isLeader) this.leases.onSoftState({ leader: 0n, role: 'follower' }, this.node.soft);
  }

  /** The WAL writes again: a member that still leads takes lease duty back (after catching up, as a new leader does). */
  #onDiskRecovered(part: 'wal' | 'snapshot'): void {
    this.#disk.reportRecovered(part);
    if (part === 'wal' && this.node.isLeader) this.leases.onSoftState(this.node.soft, { leader: 0n, role: 'follower' });
  }

  /** True while a part of this member cannot write for lack of space. */
  get diskFull(): boolean {
    return this.#disk.full;
  }

  /**
   * Applies a batch; when the backend's write fails for lack of space, reopens the store (waiting
   * for room) and applies the batch again: entries the reopened store already holds are skipped.
   */
  async #applyUntilWritten(entries: readonly Entry[]): Promise<void> {
    for (;;) {
      try {
        await this.#applier.apply(entries);
        return;
      } catch (error: unknown) {
        if (!isNoSpaceFailure(error) || this.node.stopping) throw error;
        await this.#recoverStore();
      }
    }
  }

  /**
   * Reopens a store that failed for lack of space (disk-space.ts): closes it, opens it again from
   * disk once LevelDB has room to recover its log, swaps it in as a snapshot install does, and
   * re-applies from the Raft log what the pipeline applied but the reopened store lacks. Runs on
   * the apply chain. Returns quietly when the member stops meanwhile (the store stays closed).
   */
  async #recoverStore(): Promise<void> {
    const failed = this.state.store;
    if (failed.failure !== 'disk-full') return;
    this.#disk.reportFull('store', 'backend write failed: no space left on device');
    try {
      await failed.close();
    } catch (error: unknown) {
      this.logger.warn({ event: 'store-close-failed', error: errorMessage(error) }, 'closing the failed store failed');
    }
    let store: MvccStore | undefined;
    for (let attempt = 0; store === undefined; attempt++) {
      if (this.node.stopping) return;
      try {
        store = await openStore(join(this.config.dataDir, 'member', 'db'), this.config, this.logger);
      } catch (error: unknown) {
        if (!isNoSpaceFailure(error)) throw error;
        await new Promise((resolve) => setTimeout(resolve, retryPauseMs(attempt)));
      }
    }
    this.#listenToStore(store);
    this.state.replace({ store, lessor: restoreLessor(store, this.config) });
    this.membership.reload(store.listMeta('member/'));
    this.watchHub.storeReplaced();
    this.leases.onLessorReplaced();
    this.#refreshAlarmGauges();
    const behind = this.node.entries(store.consistentIndex + 1, this.#pipeline.applied);
    if (behind === undefined) fatal('corrupt', `the reopened backend is at index ${store.consistentIndex}, behind what the log still holds`);
    if (behind.length > 0) {
      this.logger.warn({ event: 'store-reapply', from: store.consistentIndex + 1, to: this.#pipeline.applied }, 're-applying entries the reopened backend lacks');
      await this.#applyUntilWritten(behind);
    }
    this.#disk.reportRecovered('store');
    this.logger.info({ event: 'store-reopened', revision: store.currentRevision, consistentIndex: store.consistentIndex }, 'reopened the backend after the disk was full');
  }

  /** Active alarms as etcd prints them (`memberID:<decimal> alarm:NOSPACE `), for Status `errors`. */
  alarmTexts(): string[] {
    return this.state.alarms.list().map(alarmText);
  }

  #onAlarmChanged(event: { readonly index: number; readonly request: AlarmChangeRequest; readonly alarms: readonly AlarmRecord[] }): void {
    const { request } = event;
    const raised = request.action === 'activate';
    if (raised) this.metrics.alarmsRaised.inc();
    else this.metrics.alarmsCleared.inc();
    if (!raised && request.origin === 'low-water') this.metrics.nospaceClearedLowWater.inc();
    this.#refreshAlarmGauges();
    const fields = { event: raised ? 'alarm-raised' : 'alarm-cleared', alarm: request.alarm.toUpperCase(), member: idToHex(request.memberId), origin: request.origin, index: event.index, term: this.node.term };
    const what = `${request.alarm.toUpperCase()} alarm of member ${idToHex(request.memberId)}`;
    if (raised) this.logger.warn(fields, `raised the ${what} (${request.origin})`);
    else this.logger.warn(fields, `cleared the ${what} (${request.origin === 'low-water' ? 'backend below the low-water mark' : request.origin})`);
  }

  #refreshAlarmGauges(): void {
    this.metrics.alarmsNospace.set(this.state.alarms.list('nospace').length);
    this.metrics.alarmsCorrupt.set(this.state.alarms.list('corrupt').length);
  }

  #onSoftState(soft: SoftState, previous: SoftState): void {
    this.metrics.hasLeader.set(soft.leader === 0n ? 0 : 1);
    this.metrics.isLeader.set(soft.role === 'leader' ? 1 : 0);
    if (previous.leader !== soft.leader) {
      if (soft.leader !== 0n) this.metrics.leaderChanges.inc();
      this.logger.info({ event: 'leader-changed', term: this.node.term, leader: idToHex(soft.leader), previous: idToHex(previous.leader), role: soft.role }, soft.leader === 0n ? 'lost the leader' : `leader is ${idToHex(soft.leader)}`);
    }
    this.leases.onSoftState(soft, previous);
    for (const subscriber of this.#subscribers) subscriber.stateChanged();
    if (soft.leader !== 0n && this.#attributes === 'unpublished') this.#publishAttributes();
  }

  #onConfChangeApplied(valid: boolean, change: ConfChange): void {
    if (!valid) return;
    this.node.setPeers(this.membership.active());
    // Front-ends mirror whether this member is a learner (what it may serve): tell them now.
    for (const subscriber of this.#subscribers) subscriber.stateChanged();
    // A snapshot right after every conf change: the snapshot a leader sends then always names
    // the members it replicates to (the simulator found the need, test/sim/MUTATIONS.md).
    this.#snapshotter.requestSnapshot();
    if (change.type === 'remove-node' && change.nodeId === this.id) this.#removedFromCluster('applied its own removal');
  }

  #onSnapshotInstalled(snapshot: Snapshot): void {
    // Watchers synced before the install would miss the revisions the snapshot skipped: make
    // them catch up from the new backend (or cancel them if their position was compacted).
    this.membership.load(this.store.listMeta('member/'));
    this.#refreshAlarmGauges();
    this.#pipeline.jumpTo(snapshot.metadata.index);
    this.leases.onLessorReplaced();
    this.node.setPeers(this.membership.active());
    // Subscribers (front-ends mirror the state) are told once the membership is the snapshot's.
    this.watchHub.storeReplaced();
    for (const subscriber of this.#subscribers) subscriber.storeReplaced();
    if (snapshot.metadata.index > 0 && this.membership.known(this.id) && this.membership.get(this.id) === undefined) {
      this.#removedFromCluster('installed a snapshot in which it was removed');
    }
  }

  #onRefusedByPeer(reason: string): void {
    if (reason.includes(MEMBER_REMOVED_REASON)) this.#removedFromCluster(`a peer refused it: ${reason}`);
  }

  /** This member is no longer part of the cluster: leave the marker, stop serving (etcd exits 0). */
  #removedFromCluster(why: string): void {
    if (this.#removal === 'removed') return;
    this.#removal = 'removed';
    this.logger.warn({ event: 'removed', term: this.node.term, why }, 'the member has been permanently removed from the cluster');
    markRemoved(this.config.dataDir).then(
      () => this.#onRemoved(),
      (error: unknown) => {
        this.logger.error({ event: 'removed-marker-failed', error: errorMessage(error) }, 'could not write the removed marker');
        this.#onRemoved();
      },
    );
  }

  #publishAttributes(): void {
    this.#attributes = 'publishing';
    const request: InternalRequest = { type: 'member-attributes', memberId: this.id, name: this.config.name, clientUrls: [...this.config.advertiseClientUrls] };
    this.gateway.propose(request, { deadlineMs: Date.now() + this.config.requestTimeoutMs }).then(
      () => {
        this.#attributes = 'published';
        this.logger.info({ event: 'published-attributes', term: this.node.term }, 'published member attributes');
      },
      (error: unknown) => {
        this.#attributes = 'unpublished'; // retried on a later tick
        this.logger.warn({ event: 'publish-attributes-failed', error: errorMessage(error) }, 'could not publish member attributes');
      },
    );
  }

  /** Serves another member's call (peer transport). */
  async #serveMemberCall(from: NodeId, kind: string, payload: Uint8Array, options: { deadlineMs: number }): Promise<Uint8Array> {
    const lease = this.leases.serveCall(kind, payload, options);
    if (lease !== undefined) return lease;
    if (kind === MEMBER_PROMOTE_CALL) return this.membershipOps.servePromoteCall(payload, options);
    if (kind === HASHKV_CALL) return this.#corruption.serveCall(payload);
    throw new KvdError('unimplemented', { detail: `etcdserver: not implemented: member call ${kind} from ${idToHex(from)}` });
  }

  /**
   * Every committed revision reaches the watch hub. A throw there means watchers would silently
   * miss events (a watch gap), so it stops the member (fail-stop) instead of being logged away.
   */
  #listenToStore(store: MvccStore): void {
    store.onFailure((failure) => {
      if (failure !== 'disk-full') return;
      this.#disk.reportFull('store', 'backend write failed: no space left on device');
      // Reopened on the apply chain, between batches (a batch that hits it reopens it itself).
      this.#pipeline.runExclusive(() => this.#recoverStore());
    });
    store.onApply((batch) => {
      try {
        this.watchHub.notify(batch);
        for (const subscriber of this.#subscribers) subscriber.revisions(batch);
      } catch (error: unknown) {
        fatal('invariant', `watch hub failed to take revisions ${batch[0]?.revision}..${batch[batch.length - 1]?.revision}: ${errorMessage(error)}`, error);
      }
    });
  }

  // ───────────────────────────── shutdown ─────────────────────────────

  /** Stops accepting requests, finishes in-flight applies, closes the WAL, store and transport. */
  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  async #stop(): Promise<void> {
    this.#corruption.stop();
    await this.node.stop();
    await this.#pipeline.drained();
    this.gateway.stop();
    this.leases.stop();
    this.watchHub.close();
    await this.#snapshotter.close();
    await this.node.close();
    await this.store.close();
    this.#peerTls?.close();
    this.logger.info({ event: 'stopped', term: this.node.term, applied: this.#pipeline.applied }, 'member stopped');
  }
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

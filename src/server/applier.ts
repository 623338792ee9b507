/**
 * The applier (etcd's server/etcdserver/apply.go and applyConfChange): turns committed entries
 * into state, deterministically, in log order: KV writes into the MVCC store, lease requests into
 * the lessor, conf changes into the membership and the Raft core's configuration, member
 * attributes into the membership, alarm requests into the alarms. While an alarm is active, the
 * writes it refuses (alarms.ts: etcd's capped and corrupt appliers) are applied as empty entries
 * and their proposers get the alarm's error. It answers the waiting proposer of each entry through the
 * gateway. Driven by the apply pipeline (apply-pipeline.ts).
 *
 * Determinism: only replicated inputs decide an outcome (the entry, the state). Time enters only
 * through lease grants' local expiry bookkeeping on the leader, which is not replicated state.
 * Entries at or below the store's consistent index were applied before a restart: their KV effect
 * is skipped, but conf changes are always handed to Raft (after a restart the core only knows the
 * snapshot's configuration and relearns later changes from the log; it skips ones it reflects).
 */
import { decodeConfChange } from '../raft/raw-node.js';
import type { ConfChange, ConfState, Entry } from '../raft/types.js';
import type { LeaseId, WriteRequest } from '../store/mvcc/types.js';
import type { ApplyOutcome } from '../store/mvcc/store.js';
import { assert } from '../util/assert.js';
import { KvdError } from '../util/errors.js';
import type { Logger } from './logger.js';
import type { ServerMetrics } from './metrics.js';
import type { ApplyResult } from './gateway.js';
import { decodeEnvelope, type InternalRequest } from './requests.js';
import { planConfChange, type ConfChangePlan } from './membership.js';
import { decodeConfContext } from './conf-context.js';
import type { MemberState } from './state.js';
import { idToHex } from './ids.js';
import type { AlarmChangeRequest, AlarmRecord } from './alarms.js';
import type { RaftTrace } from './raft-trace.js';
import { authorize, dependsOnLeaseKeys, leaseRevokeChecks, writeChecks, type AuthMutation, type AuthNeed, type Principal } from '../store/auth/index.js';

/** What the applier needs from the rest of the member. */
export interface ApplierHost {
  /** Answers the waiter of request `id` on this member, if any. */
  answer(id: bigint, result: ApplyResult): void;
  /** Hands an applied conf change to the Raft core; returns the core's configuration. */
  applyConfChange(change: ConfChange, index: number): ConfState;
  /** A conf change was applied (or refused as a no-op): peers, self-removal, snapshots follow. */
  onConfChangeApplied(event: { readonly index: number; readonly plan: ConfChangePlan; readonly change: ConfChange }): void;
  /** The current Raft term (for log lines). */
  term(): number;
  /** The Raft core's latest snapshot index (conf-change records at or below it are obsolete). */
  snapshotIndex(): number;
  /** An alarm was raised or cleared by the entry at `index` (logging, metrics, quota bookkeeping). */
  onAlarmChanged(event: { readonly index: number; readonly request: AlarmChangeRequest; readonly alarms: readonly AlarmRecord[] }): void;
}

export interface ApplierOptions {
  readonly state: MemberState;
  readonly host: ApplierHost;
  readonly logger: Logger;
  readonly metrics: ServerMetrics;
  /** Learners allowed at once (etcd: 1). */
  readonly maxLearners: number;
  /** --trace-raft-file: the pipeline trace (diagnostics; undefined: off). */
  readonly trace?: RaftTrace;
}

/**
 * Consecutive KV writes applied in one backend batch. `refused`: an alarm or auth refused the request
 * (it is applied as an empty entry, so the index still advances, and its proposer gets the error).
 */
type WriteRun = Array<{ index: number; request: WriteRequest | null; id?: bigint; refused?: KvdError }>;

/** An apply batch slower than this counts in etcd_server_slow_apply_total (etcd's default warning-apply-duration). */
const SLOW_APPLY_SECONDS = 0.1;

export class Applier {
  readonly #state: MemberState;
  readonly #host: ApplierHost;
  readonly #logger: Logger;
  readonly #metrics: ServerMetrics;
  readonly #maxLearners: number;
  readonly #trace: RaftTrace | undefined;

  constructor(options: ApplierOptions) {
    this.#state = options.state;
    this.#host = options.host;
    this.#logger = options.logger;
    this.#metrics = options.metrics;
    this.#maxLearners = options.maxLearners;
    this.#trace = options.trace;
  }

  /** Applies one batch of committed entries, in order. Consecutive KV writes share one backend batch. */
  async apply(entries: readonly Entry[]): Promise<void> {
    const started = performance.now();
    let run: WriteRun = [];
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
        case 'compact': {
          // etcd's capped and corrupt appliers (decided from the replicated alarms, in log order)
          // wrap its auth applier: an alarm refuses first.
          let refused = this.#state.alarms.refusal(request);
          if (refused === undefined) {
            // Auth changes flush the run before they apply, so the auth state here is the one
            // this entry follows; lease attachments may change inside the run, so a check that
            // reads them waits for what precedes to be applied (batches differ between members).
            if (this.#state.auth.enabled && envelope.auth !== undefined && dependsOnLeaseKeys(request)) await flush();
            refused = this.#refusal(envelope.auth, request);
          }
          run.push(refused === undefined ? { index: entry.index, request, id: envelope.id } : { index: entry.index, request: null, id: envelope.id, refused });
          break;
        }
        default:
          await flush();
          await this.#applySpecial(entry.index, envelope.id, request, envelope.auth);
      }
    }
    await flush();
    const seconds = (performance.now() - started) / 1000;
    this.#metrics.applySeconds.observe(seconds);
    // etcd counts an apply over --warning-apply-duration (100 ms) as slow.
    if (seconds > SLOW_APPLY_SECONDS) this.#metrics.slowApplies.inc();
    this.#metrics.proposalsApplied.set(entries[entries.length - 1].index);
  }

  async #applyWrites(batch: WriteRun, meta: ReadonlyMap<string, Uint8Array | null>): Promise<void> {
    const { store, lessor } = this.#state;
    const committing = performance.now();
    // The writers are answered once their revisions are readable, before the backend write has
    // ended (its records are read from the batch meanwhile): the entries are durable in the WAL
    // and committed, and a member that dies before the write re-applies them from there.
    await store.applyBatch(
      batch.map(({ index, request }) => ({ index, request })),
      { leaseExists: (id) => lessor.has(id), meta, onVisible: (outcomes) => this.#answerWrites(batch, outcomes) },
    );
    this.#metrics.backendCommitSeconds.observe((performance.now() - committing) / 1000);
  }

  #answerWrites(batch: WriteRun, outcomes: readonly ApplyOutcome[]): void {
    assert(outcomes.length === batch.length, 'one outcome per applied entry');
    for (let i = 0; i < batch.length; i++) {
      const outcome = outcomes[i];
      const entry = batch[i];
      if (entry.id === undefined) continue;
      if (entry.refused !== undefined) this.#host.answer(entry.id, { ok: false, error: entry.refused });
      else if (outcome.ok) this.#host.answer(entry.id, { ok: true, revision: outcome.revision, result: outcome.result });
      else this.#host.answer(entry.id, { ok: false, error: outcome.error });
    }
    if (this.#trace !== undefined && batch.length > 0) this.#trace.mark('answered', batch[0].index, batch[batch.length - 1].index);
  }

  /** Whether auth refuses a KV write (etcd's authApplierV3), decided from replicated state only. */
  #refusal(principal: Principal | undefined, request: WriteRequest): KvdError | undefined {
    const auth = this.#state.auth;
    if (!auth.enabled || principal === undefined) return undefined;
    const checks = writeChecks(request, (lease) => this.#state.store.keysOfLease(lease));
    const refused = authorize(auth, principal, checks === 'admin' ? { kind: 'admin' } : { kind: 'access', checks });
    return refused === undefined ? undefined : new KvdError(refused);
  }

  async #applySpecial(index: number, id: bigint, request: Exclude<InternalRequest, WriteRequest>, principal: Principal | undefined): Promise<void> {
    const { store } = this.#state;
    if (index <= store.consistentIndex) return; // already applied before a restart
    const lessor = this.#state.lessor;
    const meta = new Map<string, Uint8Array | null>();
    let result: ApplyResult = { ok: true, revision: store.currentRevision, result: { type: 'none' } };
    const alarmRefusal = this.#state.alarms.refusal(request);
    // authorize() refuses nothing without auth or a principal: the need (a revoke's checks list
    // every key of the lease) is not worked out then.
    const checked = alarmRefusal === undefined && this.#state.auth.enabled && principal !== undefined;
    const need = checked ? authNeedOf(request, (lease) => store.keysOfLease(lease)) : undefined;
    const authRefusal = need === undefined ? undefined : authorize(this.#state.auth, principal, need);
    const refused = alarmRefusal ?? (authRefusal === undefined ? undefined : new KvdError(authRefusal));
    if (refused !== undefined) {
      await this.#applyWrites([{ index, request: null }], meta);
      this.#host.answer(id, { ok: false, error: refused });
      return;
    }
    switch (request.type) {
      case 'lease-grant': {
        const granted = lessor.grant({ id: request.id, ttlSeconds: request.ttlSeconds, nowMs: Date.now() });
        if (granted.ok) {
          for (const [key, value] of granted.meta) meta.set(key, value);
          result = { ok: true, revision: store.currentRevision, result: { type: 'lease-grant', id: request.id, ttlSeconds: granted.ttlSeconds } };
        } else {
          result = { ok: false, error: new KvdError(granted.code) };
        }
        await this.#applyWrites([{ index, request: null }], meta);
        break;
      }
      case 'lease-revoke': {
        result = await this.#revoke(index, request.id, meta);
        break;
      }
      case 'lease-checkpoint': {
        for (const checkpoint of request.checkpoints) {
          const checkpointed = lessor.checkpoint(checkpoint.id, checkpoint.remainingTtlSeconds);
          if (checkpointed.ok) for (const [key, value] of checkpointed.meta) meta.set(key, value);
        }
        await this.#applyWrites([{ index, request: null }], meta);
        break;
      }
      case 'auth-enable':
      case 'auth-disable':
      case 'auth-user-add':
      case 'auth-user-delete':
      case 'auth-user-change-password':
      case 'auth-user-grant-role':
      case 'auth-user-revoke-role':
      case 'auth-role-add':
      case 'auth-role-delete':
      case 'auth-role-grant-permission':
      case 'auth-role-revoke-permission': {
        const outcome = this.#state.auth.apply(request);
        if (outcome.ok) for (const [key, value] of outcome.writes) meta.set(key, value);
        else result = { ok: false, error: new KvdError(outcome.code) };
        await this.#applyWrites([{ index, request: null }], meta);
        if (outcome.ok) this.#logger.info({ event: request.type, term: this.#host.term(), authRevision: this.#state.auth.revision, ...authLogFields(request) }, `applied ${request.type}`);
        break;
      }
      case 'member-attributes': {
        const membership = this.#state.membership;
        const current = membership.get(request.memberId);
        if (current !== undefined) {
          const [key, value] = membership.set({ ...current, name: request.name, clientUrls: [...request.clientUrls] });
          meta.set(key, value);
        }
        await this.#applyWrites([{ index, request: null }], meta);
        break;
      }
      case 'alarm': {
        const change = this.#state.alarms.change(request);
        if (change.meta !== undefined) meta.set(change.meta[0], change.meta[1]);
        await this.#applyWrites([{ index, request: null }], meta);
        result = { ok: true, revision: store.currentRevision, result: { type: 'alarm', alarms: change.alarms } };
        if (change.meta !== undefined) this.#host.onAlarmChanged({ index, request, alarms: change.alarms });
        break;
      }
    }
    this.#host.answer(id, result);
  }

  /** A revoke deletes every attached key in one revision (as one txn of deletes would). */
  async #revoke(index: number, lease: LeaseId, meta: Map<string, Uint8Array | null>): Promise<ApplyResult> {
    const { store, lessor } = this.#state;
    const revoked = lessor.revoke(lease);
    if (!revoked.ok) {
      await this.#applyWrites([{ index, request: null }], meta);
      return { ok: false, error: new KvdError(revoked.code) };
    }
    for (const [key, value] of revoked.meta) meta.set(key, value);
    // The store owns which keys a lease holds (including writes of this batch already applied).
    const outcomes = await store.applyBatch([{ index, request: { type: 'delete-lease-keys', lease } }], { leaseExists: (id) => lessor.has(id), meta });
    const outcome = outcomes[0];
    return { ok: true, revision: outcome.ok ? outcome.revision : store.currentRevision, result: { type: 'lease-revoke' } };
  }

  /**
   * A conf change: decided against the membership (planConfChange), handed to Raft, recorded.
   * The Raft-side outcome (which change the core applied, or none when refused) is recorded with
   * the entry under `confchange/<index>`: after a restart, entries above the Raft snapshot are
   * handed out again while the backend is already past them, and the core must redo exactly what
   * it did then (re-deciding against today's membership could differ). Records at or below the
   * core's snapshot index are never needed again and are dropped with the next conf change.
   */
  async #applyConfChange(entry: Entry): Promise<void> {
    const { store, membership } = this.#state;
    const change = decodeConfChange(entry.data);
    const context = decodeConfContext(change.context);
    if (entry.index <= store.consistentIndex) {
      const recorded = store.getMeta(confChangeRecordKey(entry.index));
      assert(recorded !== undefined, `conf change ${entry.index} below the consistent index has its outcome recorded`);
      const raftChange = decodeRecordedChange(recorded, change);
      if (raftChange !== undefined) this.#host.applyConfChange(raftChange, entry.index);
      this.#logger.info({ event: 'conf-change-replayed', index: entry.index, term: this.#host.term(), change: raftChange?.type ?? 'none', node: idToHex(change.nodeId) }, 'replayed a membership change into raft after restart');
      return;
    }
    const plan = planConfChange(membership, change, context, { maxLearners: context?.maxLearners ?? this.#maxLearners });
    if (plan.raftChange !== undefined) this.#host.applyConfChange(plan.raftChange, entry.index);
    const meta = new Map<string, Uint8Array | null>();
    for (const record of plan.records) {
      const [key, value] = membership.set(record);
      meta.set(key, value);
    }
    meta.set(confChangeRecordKey(entry.index), Buffer.from(plan.raftChange?.type ?? 'none', 'utf8'));
    const obsolete = this.#host.snapshotIndex();
    for (const key of store.listMeta(CONF_CHANGE_RECORD_PREFIX).keys()) {
      if (Number(key.slice(CONF_CHANGE_RECORD_PREFIX.length)) <= obsolete) meta.set(key, null);
    }
    await this.#applyWrites([{ index: entry.index, request: null }], meta);
    this.#logger.info(
      { event: plan.error === undefined ? 'conf-change-applied' : 'conf-change-refused', index: entry.index, term: this.#host.term(), action: context?.action, change: change.type, node: idToHex(change.nodeId), error: plan.error?.message },
      plan.error === undefined ? `applied a membership change (${context?.action ?? change.type} ${idToHex(change.nodeId)})` : `refused a membership change: ${plan.error.message}`,
    );
    this.#host.onConfChangeApplied({ index: entry.index, plan, change });
    if (context !== undefined) {
      this.#host.answer(context.requestId, plan.error === undefined ? { ok: true, revision: store.currentRevision, result: { type: 'membership' } } : { ok: false, error: plan.error });
    }
  }
}

/**
 * What auth requires of a request other than a KV write (etcd's needAdminPermission and
 * authApplierV3.LeaseRevoke): auth changes need root, a client's lease revoke needs write
 * access to the lease's keys, a lease grant an existing user (kvd; etcd 3.4 lets anyone grant).
 * The member's own requests carry no principal and are never refused.
 */
function authNeedOf(request: Exclude<InternalRequest, WriteRequest>, keysOfLease: (lease: LeaseId) => Uint8Array[]): AuthNeed | undefined {
  switch (request.type) {
    case 'lease-grant':
      return { kind: 'authenticated' };
    case 'lease-revoke':
      return { kind: 'access', checks: leaseRevokeChecks(keysOfLease(request.id)) };
    case 'lease-checkpoint':
    case 'member-attributes':
      return undefined;
    default:
      return { kind: 'admin' };
  }
}

/** Log fields of an auth change: names only (never password hashes or token keys). */
function authLogFields(request: AuthMutation): Record<string, string> {
  switch (request.type) {
    case 'auth-enable':
    case 'auth-disable':
      return {};
    case 'auth-user-add':
    case 'auth-user-delete':
    case 'auth-user-change-password':
      return { user: request.name };
    case 'auth-user-grant-role':
      return { user: request.user, role: request.role };
    case 'auth-user-revoke-role':
      return { user: request.name, role: request.role };
    case 'auth-role-add':
      return { role: request.name };
    case 'auth-role-delete':
    case 'auth-role-revoke-permission':
      return { role: request.role };
    case 'auth-role-grant-permission':
      return { role: request.name, permission: request.permission.type };
  }
}

/** Meta namespace of recorded conf-change outcomes (`confchange/<index>`). */
export const CONF_CHANGE_RECORD_PREFIX = 'confchange/';

function confChangeRecordKey(index: number): string {
  return `${CONF_CHANGE_RECORD_PREFIX}${index}`;
}

function decodeRecordedChange(recorded: Uint8Array, change: ConfChange): ConfChange | undefined {
  const type = Buffer.from(recorded).toString('utf8');
  switch (type) {
    case 'none':
      return undefined;
    case 'add-node':
    case 'add-learner-node':
    case 'remove-node':
    case 'update-node':
      return { type, nodeId: change.nodeId, context: change.context };
    default:
      assert(false, `recorded conf change outcome "${type}" is known`);
  }
}

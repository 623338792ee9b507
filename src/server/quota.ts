/**
 * The backend quota (etcd's server/storage/quota.go and v3rpc/quota.go), with an automatic clear
 * that etcd lacks.
 *
 * - Raise: a member whose backend would pass --quota-backend-bytes with a request that grows
 *   the store (size + cost >= quota, etcd's `Available`) raises NOSPACE for itself through Raft
 *   and refuses the request with `etcdserver: mvcc: database space exceeded`. The member also
 *   checks its own size every {@link QUOTA_CHECK_INTERVAL_MS}, so a member that only applies
 *   writes (received by another member) raises the alarm too; etcd only checks on the member a
 *   client writes to.
 * - Refuse: while any NOSPACE alarm is active every member refuses writes that grow the store
 *   (alarms.ts; decided again by the applier from the replicated alarms).
 * - Clear: beyond etcd, a member whose own NOSPACE alarm was raised by the quota clears it through
 *   Raft once its backend is below the low-water mark, `--quota-low-water-percent` of the quota
 *   (default {@link LOW_WATER_PERCENT_DEFAULT} %; 0 leaves the clearing to `alarm disarm`, as etcd),
 *   so compaction plus defragmentation end the alarm without `alarm disarm`. The gap between the
 *   two marks keeps the alarm from flapping. An alarm a client raised is left alone.
 * - Like etcd, the request that finds the quota passed waits until the alarm is applied (at most
 *   its deadline) before it is refused, so an `alarm list` right after sees the alarm.
 *
 * "The backend's size" is its bytes on disk (MvccStore.dbSizeBytes, as etcd uses the bbolt file
 * size), measured every {@link QUOTA_CHECK_INTERVAL_MS} and, between measurements, raised by the
 * bytes written since (an upper estimate that the next measurement corrects).
 */
import type { NodeId } from '../raft/types.js';
import type { MvccStore } from '../store/mvcc/index.js';
import { KvdError, errorMessage } from '../util/errors.js';
import type { AlarmChangeRequest, AlarmSet } from './alarms.js';
import { growsStore } from './alarms.js';
import type { Logger } from './logger.js';
import type { InternalRequest } from './requests.js';

/** Default low-water mark, in percent of the quota: below it a quota-raised NOSPACE alarm clears itself. */
export const LOW_WATER_PERCENT_DEFAULT = 80;
/** How often a member measures its backend and checks both marks. */
export const QUOTA_CHECK_INTERVAL_MS = 1_000;
/** etcd's estimate of a key's metadata cost (quota.go kvOverhead). */
const KV_OVERHEAD_BYTES = 256;
/** etcd's estimate of a lease's cost (quota.go leaseOverhead). */
const LEASE_OVERHEAD_BYTES = 64;

/** etcd's request cost: what a request may add to the backend, 0 for requests that do not grow it. */
export function requestCost(request: InternalRequest): number {
  if (!growsStore(request)) return 0;
  switch (request.type) {
    case 'put':
      return KV_OVERHEAD_BYTES + request.request.key.byteLength + request.request.value.byteLength;
    case 'lease-grant':
      return LEASE_OVERHEAD_BYTES;
    case 'txn': {
      // The larger branch, as etcd's costTxn (nested txns counted too: growsStore does).
      const branch = (ops: typeof request.request.success): number => ops.reduce((sum, op) => sum + (op.type === 'put' ? KV_OVERHEAD_BYTES + op.request.key.byteLength + op.request.value.byteLength : op.type === 'txn' ? requestCost({ type: 'txn', request: op.request }) : 0), 0);
      return Math.max(KV_OVERHEAD_BYTES, branch(request.request.success), branch(request.request.failure));
    }
    default:
      return 0;
  }
}

/** What the quota needs from the member. */
export interface QuotaHost {
  readonly memberId: NodeId;
  /** The current store (replaced by snapshot installs and reopens). */
  store(): MvccStore;
  alarms(): AlarmSet;
  /** Proposes an alarm change through Raft; resolves once applied here. */
  propose(request: AlarmChangeRequest): Promise<unknown>;
  readonly logger: Logger;
}

/**
 * One member's quota: its backend size (measured every QUOTA_CHECK_INTERVAL_MS, estimated in
 * between), the early refusal of writes (admit), and the NOSPACE alarm changes it proposes for
 * this member (raise at the quota, clear below the low-water mark). Driven by the member's ticks.
 */
export class Quota {
  readonly #host: QuotaHost;
  /** --quota-backend-bytes. */
  readonly quotaBytes: number;
  /** 0 when the automatic clear is off. */
  readonly lowWaterBytes: number;
  #measured: { bytes: number; writtenAt: number; store: MvccStore } | undefined;
  #measuring = false;
  #lastCheckMs = 0;
  /**
   * Defragmentations running: no measurement begins meanwhile (the files of the old and the new
   * layout may both be on disk), and one begun before a defragmentation began or ended is
   * dropped (#generation counts both) rather than taken for the size after it.
   */
  #defragmenting = 0;
  #generation = 0;
  /** One alarm proposal of ours in flight at a time. */
  #proposing: Promise<void> | undefined;

  constructor(options: { quotaBytes: number; lowWaterPercent: number; host: QuotaHost }) {
    this.#host = options.host;
    this.quotaBytes = options.quotaBytes;
    this.lowWaterBytes = Math.floor((options.quotaBytes * options.lowWaterPercent) / 100);
  }

  /**
   * This member's backend size: the last measurement plus what was written since (0 before the
   * first measurement completes, and after the store was replaced until it is measured again).
   */
  sizeBytes(): number {
    const measured = this.#measured;
    const store = this.#host.store();
    if (measured === undefined || measured.store !== store) return 0;
    return measured.bytes + Math.max(0, store.bytesWritten - measured.writtenAt);
  }

  /**
   * The gateway's early check of a request: refused while the alarms refuse it, or when it would
   * take this member's backend to the quota; then NOSPACE is raised for this member and the
   * refusal comes once the alarm is applied (or its proposal failed).
   */
  admit(request: InternalRequest): KvdError | Promise<KvdError> | undefined {
    const refused = this.#host.alarms().refusal(request);
    if (refused !== undefined) return refused;
    const cost = requestCost(request);
    if (cost === 0) return undefined;
    const size = this.sizeBytes();
    if (size + cost < this.quotaBytes) return undefined;
    return this.#raise(size).then(() => new KvdError('no-space'));
  }

  /** A defragmentation begins: the size is not measured until it ends. */
  defragmentStarted(): void {
    this.#defragmenting += 1;
    this.#generation += 1;
  }

  /** A defragmentation ended (or failed): measured again at the next tick. */
  defragmentEnded(): void {
    this.#defragmenting -= 1;
    this.#generation += 1;
    this.#lastCheckMs = 0;
  }

  /** Called every tick: measures the backend and checks both marks, every QUOTA_CHECK_INTERVAL_MS. */
  onTick(nowMs: number): void {
    if (this.#measuring || this.#defragmenting > 0 || nowMs - this.#lastCheckMs < QUOTA_CHECK_INTERVAL_MS) return;
    this.#lastCheckMs = nowMs;
    this.#measuring = true;
    const store = this.#host.store();
    const writtenAt = store.bytesWritten;
    const generation = this.#generation;
    store.dbSizeBytes().then(
      (bytes) => {
        this.#measuring = false;
        // A defragmentation began or ended meanwhile: measured again once it is over.
        if (generation !== this.#generation) return;
        this.#measured = { bytes, writtenAt, store };
        this.#check(bytes);
      },
      (error: unknown) => {
        this.#measuring = false;
        this.#host.logger.warn({ event: 'quota-measure-failed', error: errorMessage(error) }, 'could not measure the backend size');
      },
    );
  }

  #check(bytes: number): void {
    const own = this.#host.alarms().get('nospace', this.#host.memberId);
    // Detached on purpose: the outcome is logged by #proposeOnce and applied through Raft.
    if (own === undefined && bytes >= this.quotaBytes) void this.#raise(bytes);
    else if (own?.raisedBy === 'quota' && bytes < this.lowWaterBytes) this.#clear(bytes);
  }

  /** Raises NOSPACE for this member (once); resolves when applied or when the proposal failed. */
  #raise(bytes: number): Promise<void> {
    if (this.#host.alarms().get('nospace', this.#host.memberId) !== undefined) return Promise.resolve();
    return this.#proposeOnce({ type: 'alarm', action: 'activate', memberId: this.#host.memberId, alarm: 'nospace', origin: 'quota' }, () => {
      this.#host.logger.warn({ event: 'quota-exceeded', dbSizeBytes: bytes, quotaBytes: this.quotaBytes }, 'backend reached --quota-backend-bytes: raising the NOSPACE alarm');
    });
  }

  #clear(bytes: number): void {
    void this.#proposeOnce({ type: 'alarm', action: 'deactivate', memberId: this.#host.memberId, alarm: 'nospace', origin: 'low-water' }, () => {
      this.#host.logger.info({ event: 'quota-low-water', dbSizeBytes: bytes, lowWaterBytes: this.lowWaterBytes, quotaBytes: this.quotaBytes }, 'backend is below the low-water mark: clearing this member\'s NOSPACE alarm');
    });
  }

  #proposeOnce(request: AlarmChangeRequest, announce: () => void): Promise<void> {
    if (this.#proposing !== undefined) return this.#proposing;
    announce();
    this.#proposing = this.#host.propose(request).then(
      () => {
        this.#proposing = undefined;
      },
      (error: unknown) => {
        this.#proposing = undefined;
        this.#host.logger.warn({ event: 'quota-alarm-proposal-failed', action: request.action, error: errorMessage(error) }, 'could not propose the NOSPACE alarm change; retrying at the next check');
      },
    );
    return this.#proposing;
  }
}

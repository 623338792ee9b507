/**
 * The lessor: leases with TTLs and (on the leader only) their expiry. Which keys a lease holds is
 * the MVCC store's fact alone (each key's `lease` field; MvccStore.keysOfLease): one owner.
 *
 * Two halves, after etcd's server/lease/lessor.go:
 * - Apply side (every member, in Raft apply order, deterministic, reads no clock): grant, revoke,
 *   checkpoint. Each persistent mutation returns the meta writes (`lease/<id hex>` → msgpackr
 *   record, or null to delete) that the server hands to the MVCC store's applyBatch so they
 *   commit atomically with the data.
 * - Leader side (the "primary" lessor, time passed in): promote/demote, renew, expired,
 *   checkpointsDue. Expiries are leader-local and never persisted; the server proposes the
 *   revokes and checkpoints these return through Raft.
 *
 * All members must be configured with the same `minTtlSeconds` and `maxLeases`, since both
 * decide apply outcomes.
 */
import { Packr } from 'msgpackr';
import type { LeaseId } from '../mvcc/types.js';
import { assert } from '../../util/assert.js';
import { DeadlineHeap } from './deadline-heap.js';

/** etcd's MaxLeaseTTL: grants above this fail with 'lease-ttl-too-large'. */
export const MAX_LEASE_TTL_SECONDS = 9_000_000_000;
/** Prefix of the lessor's meta records (`lease/` + 16 lowercase hex digits of the id). */
export const LEASE_RECORD_PREFIX = 'lease/';

/** Meta writes for the store's applyBatch: key → record, or null to delete. */
export type MetaWrites = Map<string, Uint8Array | null>;

/** Expected failures of lessor operations, as catalog codes (src/util/errors.ts). */
export type LessorFailureCode = 'lease-exists' | 'lease-not-found' | 'lease-ttl-too-large' | 'no-space' | 'not-leader';
/** The failure arm of every lessor result: nothing changed, nothing to persist. */
export interface LessorFailure {
  readonly ok: false;
  readonly code: LessorFailureCode;
}

/** Construction options; the ones marked "must match" decide apply outcomes. */
export interface LessorOptions {
  /** Grants below this are raised to it; see {@link minTtlSecondsFor}. Must match on all members. */
  readonly minTtlSeconds: number;
  /** Grants beyond this many leases fail with 'no-space'. Default 1,000,000. Must match on all members. */
  readonly maxLeases?: number;
  /** Revokes per second the server performs; promote() spreads expiries to 3/4 of it. Default 1,000. */
  readonly revokeRatePerSecond?: number;
  /** Leases longer than this get their remaining TTL checkpointed this often. Default 5 min. */
  readonly checkpointIntervalMs?: number;
  /** An expired lease reported by expired() is reported again after this if still not revoked. Default 3 s. */
  readonly expiredRetryMs?: number;
}

/** One lease as listed by {@link Lessor.leases}. */
export interface LeaseSummary {
  readonly id: LeaseId;
  readonly ttlSeconds: number;
}

/** A remaining-TTL checkpoint the leader should propose. */
export interface LeaseCheckpoint {
  readonly id: LeaseId;
  readonly remainingTtlSeconds: number;
}

/**
 * etcd's minimum lease TTL: ceil(floor(3 × electionTicks / 2) × heartbeat), in seconds
 * (2 s with the defaults of 10 ticks × 100 ms).
 */
export function minTtlSecondsFor(options: { electionTicks: number; heartbeatMs: number }): number {
  return Math.ceil((Math.floor((3 * options.electionTicks) / 2) * options.heartbeatMs) / 1000);
}

/** The meta key of a lease's record. */
export function leaseRecordKey(id: LeaseId): string {
  return LEASE_RECORD_PREFIX + BigInt.asUintN(64, id).toString(16).padStart(16, '0');
}

interface LeaseState {
  readonly id: LeaseId;
  /** Granted TTL after clamping. Invariant: minTtl <= ttlSeconds <= MAX_LEASE_TTL_SECONDS (or restored). */
  readonly ttlSeconds: number;
  /** Last checkpointed remaining TTL; 0 = none (use ttlSeconds). */
  remainingTtlSeconds: number;
  /** Leader only: when it expires; Infinity on followers. */
  expiryMs: number;
  /** The expiry-heap entry that is current for this lease (lazy deletion). */
  checkAtMs: number;
  /** The checkpoint-heap entry that is current; Infinity = none scheduled. */
  checkpointAtMs: number;
}

interface LeaseRecord {
  readonly id: string;
  readonly ttl: number;
  readonly remainingTtl: number;
}

const packr = new Packr({ useRecords: false });
const DEFAULTS = {
  maxLeases: 1_000_000,
  revokeRatePerSecond: 1000,
  checkpointIntervalMs: 5 * 60 * 1000,
  expiredRetryMs: 3000,
} as const;
/** Stale heap entries tolerated beyond the live ones before a rebuild. */
const HEAP_SLACK = 1024;

/** The lessor of one member. See the module doc for which methods run where. */
export class Lessor {
  readonly #minTtlSeconds: number;
  readonly #maxLeases: number;
  readonly #revokeRate: number;
  readonly #checkpointIntervalMs: number;
  readonly #expiredRetryMs: number;
  readonly #leases = new Map<LeaseId, LeaseState>();
  #role: 'primary' | 'secondary' = 'secondary';
  readonly #expiries = new DeadlineHeap();
  readonly #checkpoints = new DeadlineHeap();

  constructor(options: LessorOptions) {
    assert(Number.isInteger(options.minTtlSeconds) && options.minTtlSeconds >= 1, 'minTtlSeconds is a positive integer');
    this.#minTtlSeconds = options.minTtlSeconds;
    this.#maxLeases = options.maxLeases ?? DEFAULTS.maxLeases;
    this.#revokeRate = options.revokeRatePerSecond ?? DEFAULTS.revokeRatePerSecond;
    this.#checkpointIntervalMs = options.checkpointIntervalMs ?? DEFAULTS.checkpointIntervalMs;
    this.#expiredRetryMs = options.expiredRetryMs ?? DEFAULTS.expiredRetryMs;
    assert(this.#maxLeases >= 1 && this.#revokeRate >= 1 && this.#checkpointIntervalMs > 0, 'lessor bounds must be positive');
  }

  /**
   * Rebuilds a lessor after restart from the records written through the meta writes (keys not
   * starting with {@link LEASE_RECORD_PREFIX} are ignored). The result is a secondary; call
   * promote() if this member leads.
   */
  static restore(records: Map<string, Uint8Array>, options: LessorOptions): Lessor {
    const lessor = new Lessor(options);
    for (const [key, value] of records) {
      if (!key.startsWith(LEASE_RECORD_PREFIX)) continue;
      const record = packr.unpack(value) as LeaseRecord;
      if (!(typeof record.id === 'string' && typeof record.ttl === 'number' && typeof record.remainingTtl === 'number')) assert(false, `lease record ${key} is well formed`);
      const id = BigInt(record.id);
      if (!(leaseRecordKey(id) === key)) assert(false, `lease record ${key} names its own id`);
      lessor.#leases.set(id, lessor.#newLease({ id, ttlSeconds: record.ttl, remainingTtlSeconds: record.remainingTtl }));
    }
    return lessor;
  }

  /** 'primary' after promote() (this member leads), 'secondary' otherwise. */
  get role(): 'primary' | 'secondary' {
    return this.#role;
  }

  get size(): number {
    return this.#leases.size;
  }

  has(id: LeaseId): boolean {
    return this.#leases.has(id);
  }

  // --- apply side (deterministic) -------------------------------------------------------

  /**
   * Applies LeaseGrant. `id` is non-zero (the server picks random ids before proposing). The TTL
   * is raised to minTtlSeconds; `nowMs` only sets the leader-local expiry.
   */
  grant(request: { id: LeaseId; ttlSeconds: number; nowMs: number }): { ok: true; ttlSeconds: number; meta: MetaWrites } | LessorFailure {
    assert(request.id !== 0n, 'lease id 0 means "none" and is never granted');
    if (request.ttlSeconds > MAX_LEASE_TTL_SECONDS) return { ok: false, code: 'lease-ttl-too-large' };
    if (this.#leases.has(request.id)) return { ok: false, code: 'lease-exists' };
    if (this.#leases.size >= this.#maxLeases) return { ok: false, code: 'no-space' };
    const ttlSeconds = Math.max(Math.ceil(request.ttlSeconds), this.#minTtlSeconds);
    const lease = this.#newLease({ id: request.id, ttlSeconds, remainingTtlSeconds: 0 });
    this.#leases.set(lease.id, lease);
    if (this.#role === 'primary') {
      this.#refresh(lease, { nowMs: request.nowMs, extendMs: 0 });
      this.#scheduleCheckpoint(lease, request.nowMs);
    }
    return { ok: true, ttlSeconds, meta: this.#recordWrite(lease) };
  }

  /**
   * Applies LeaseRevoke: forgets the lease. The server deletes the lease's keys (the store's
   * keysOfLease) in the same revision.
   */
  revoke(id: LeaseId): { ok: true; meta: MetaWrites } | LessorFailure {
    if (!this.#leases.has(id)) return { ok: false, code: 'lease-not-found' };
    this.#leases.delete(id);
    this.#maybeCompactHeaps();
    return { ok: true, meta: new Map([[leaseRecordKey(id), null]]) };
  }

  /** Applies a LeaseCheckpoint: records the remaining TTL (0 clears it) so restarts resume from it. */
  checkpoint(id: LeaseId, remainingTtlSeconds: number): { ok: true; meta: MetaWrites } | LessorFailure {
    const lease = this.#leases.get(id);
    if (lease === undefined) return { ok: false, code: 'lease-not-found' };
    assert(remainingTtlSeconds >= 0, 'remaining TTL is not negative');
    lease.remainingTtlSeconds = remainingTtlSeconds;
    return { ok: true, meta: this.#recordWrite(lease) };
  }

  /**
   * Remaining and granted TTL in seconds. On the primary the remaining TTL is counted from the
   * expiry (truncated, as etcd) and an expired lease is 'lease-not-found'; elsewhere it is the
   * last checkpoint or the granted TTL (the server asks the leader for exact answers).
   */
  timeToLive(id: LeaseId, options: { nowMs: number }): { ok: true; ttlSeconds: number; grantedTtlSeconds: number } | LessorFailure {
    const lease = this.#leases.get(id);
    if (lease === undefined) return { ok: false, code: 'lease-not-found' };
    let ttlSeconds = lease.remainingTtlSeconds > 0 ? lease.remainingTtlSeconds : lease.ttlSeconds;
    if (Number.isFinite(lease.expiryMs)) {
      if (lease.expiryMs <= options.nowMs) return { ok: false, code: 'lease-not-found' };
      ttlSeconds = Math.floor((lease.expiryMs - options.nowMs) / 1000);
    }
    return { ok: true, ttlSeconds, grantedTtlSeconds: lease.ttlSeconds };
  }

  /** Every lease, ordered by id. */
  leases(): LeaseSummary[] {
    return [...this.#leases.values()]
      .map((lease) => ({ id: lease.id, ttlSeconds: lease.ttlSeconds }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Every lease's record, for a store snapshot (same format as the meta writes). */
  snapshotRecords(): Map<string, Uint8Array> {
    const records = new Map<string, Uint8Array>();
    for (const lease of this.#leases.values()) records.set(leaseRecordKey(lease.id), encodeRecord(lease));
    return records;
  }

  // --- leader side (time passed in) -----------------------------------------------------

  /**
   * This member became leader: every lease expires at now + extendMs + its remaining TTL
   * (checkpointed or granted), so a failover never expires leases early, and when there are at
   * least revokeRatePerSecond leases, expiries piling up in one second are spread to at most
   * 3/4 of the revoke rate per second (etcd Promote).
   */
  promote(options: { nowMs: number; extendMs: number }): void {
    this.#role = 'primary';
    for (const lease of this.#leases.values()) lease.expiryMs = expiryAfterRefresh(lease, options);
    if (this.#leases.size >= this.#revokeRate) this.#spreadExpiries(options.nowMs);
    this.#expiries.rebuild([...this.#leases.values()].map((lease) => ({ id: lease.id, atMs: (lease.checkAtMs = lease.expiryMs) })));
    this.#checkpoints.clear();
    for (const lease of this.#leases.values()) this.#scheduleCheckpoint(lease, options.nowMs);
  }

  /** This member stopped leading: no expiries, nothing due. */
  demote(): void {
    this.#role = 'secondary';
    for (const lease of this.#leases.values()) {
      lease.expiryMs = Infinity;
      lease.checkAtMs = Infinity;
      lease.checkpointAtMs = Infinity;
    }
    this.#expiries.clear();
    this.#checkpoints.clear();
  }

  /**
   * Leader only (LeaseKeepAlive): extends the lease to now + granted TTL and returns that TTL.
   * 'not-leader' on a secondary; 'lease-not-found' when unknown or already expired. When the
   * lease carries a checkpointed remaining TTL, `followUp` asks the server to propose
   * checkpoint(id, 0) so a restart does not resurrect the old remainder (etcd does the same).
   */
  renew(id: LeaseId, nowMs: number): { ok: true; ttlSeconds: number; followUp: 'none' | 'propose-checkpoint-reset' } | LessorFailure {
    if (this.#role !== 'primary') return { ok: false, code: 'not-leader' };
    const lease = this.#leases.get(id);
    if (lease === undefined || lease.expiryMs <= nowMs) return { ok: false, code: 'lease-not-found' };
    lease.expiryMs = nowMs + lease.ttlSeconds * 1000;
    this.#pushExpiry(lease, lease.expiryMs);
    return { ok: true, ttlSeconds: lease.ttlSeconds, followUp: lease.remainingTtlSeconds > 0 ? 'propose-checkpoint-reset' : 'none' };
  }

  /**
   * Leader only: up to `max` expired lease ids, earliest first, for the server to revoke through
   * Raft (rate-limit with `max`, e.g. revokeRate/2 per 500 ms pass as etcd). A returned lease is
   * returned again after expiredRetryMs if it is still not revoked.
   */
  expired(options: { nowMs: number; max: number }): LeaseId[] {
    const out: LeaseId[] = [];
    if (this.#role !== 'primary') return out;
    while (out.length < options.max) {
      const top = this.#expiries.peek();
      if (top === undefined || top.atMs > options.nowMs) break;
      this.#expiries.pop();
      const lease = this.#leases.get(top.id);
      if (lease === undefined || lease.checkAtMs !== top.atMs) continue;
      if (lease.expiryMs > options.nowMs) {
        this.#pushExpiry(lease, lease.expiryMs);
        continue;
      }
      out.push(lease.id);
      this.#pushExpiry(lease, options.nowMs + this.#expiredRetryMs);
    }
    return out;
  }

  /**
   * Leader only: up to `max` (default 1,000) checkpoints that are due: leases longer than the
   * checkpoint interval get their remaining TTL (rounded up) proposed every interval. Leases
   * whose remaining TTL is not below the granted TTL are skipped (nothing to save).
   */
  checkpointsDue(options: { nowMs: number; max?: number }): LeaseCheckpoint[] {
    const out: LeaseCheckpoint[] = [];
    if (this.#role !== 'primary') return out;
    const max = options.max ?? 1000;
    while (out.length < max) {
      const top = this.#checkpoints.peek();
      if (top === undefined || top.atMs > options.nowMs) break;
      this.#checkpoints.pop();
      const lease = this.#leases.get(top.id);
      if (lease === undefined || lease.checkpointAtMs !== top.atMs) continue;
      lease.checkpointAtMs = Infinity;
      if (lease.expiryMs <= options.nowMs) continue;
      const remainingTtlSeconds = Math.ceil((lease.expiryMs - options.nowMs) / 1000);
      this.#scheduleCheckpoint(lease, options.nowMs);
      if (remainingTtlSeconds >= lease.ttlSeconds) continue;
      out.push({ id: lease.id, remainingTtlSeconds });
    }
    return out;
  }

  /** Counters for metrics. */
  stats(): { leases: number; role: 'primary' | 'secondary' } {
    return { leases: this.#leases.size, role: this.#role };
  }

  /** Test hook: expiries only on the primary; heaps bounded. */
  assertInvariants(): void {
    for (const lease of this.#leases.values()) {
      assert(this.#role === 'primary' || lease.expiryMs === Infinity, 'only the primary has expiries');
    }
    assert(this.#expiries.size <= 2 * this.#leases.size + HEAP_SLACK + 1, 'expiry heap is bounded');
  }

  // --- helpers ----------------------------------------------------------------------------

  #newLease(init: { id: LeaseId; ttlSeconds: number; remainingTtlSeconds: number }): LeaseState {
    return { ...init, expiryMs: Infinity, checkAtMs: Infinity, checkpointAtMs: Infinity };
  }

  #recordWrite(lease: LeaseState): MetaWrites {
    return new Map([[leaseRecordKey(lease.id), encodeRecord(lease)]]);
  }

  /** Sets the expiry to now + extend + remaining TTL (checkpointed, else granted). */
  #refresh(lease: LeaseState, options: { nowMs: number; extendMs: number }): void {
    lease.expiryMs = expiryAfterRefresh(lease, options);
    this.#pushExpiry(lease, lease.expiryMs);
  }

  #pushExpiry(lease: LeaseState, atMs: number): void {
    lease.checkAtMs = atMs;
    this.#expiries.push({ id: lease.id, atMs });
    this.#maybeCompactHeaps();
  }

  #scheduleCheckpoint(lease: LeaseState, nowMs: number): void {
    if (!Number.isFinite(lease.expiryMs) || lease.expiryMs - nowMs <= this.#checkpointIntervalMs) return;
    lease.checkpointAtMs = nowMs + this.#checkpointIntervalMs;
    this.#checkpoints.push({ id: lease.id, atMs: lease.checkpointAtMs });
  }

  /** etcd Promote's pile-up spreading: at most 3/4 of the revoke rate expire per second. */
  #spreadExpiries(nowMs: number): void {
    const sorted = [...this.#leases.values()].sort((a, b) => a.expiryMs - b.expiryMs);
    const target = Math.max(1, Math.floor((3 * this.#revokeRate) / 4));
    let baseWindow = sorted[0].expiryMs - nowMs;
    let nextWindow = baseWindow + 1000;
    let expires = 0;
    for (const lease of sorted) {
      const remaining = lease.expiryMs - nowMs;
      if (remaining > nextWindow) {
        baseWindow = remaining;
        nextWindow = baseWindow + 1000;
        expires = 1;
        continue;
      }
      expires++;
      if (expires <= target) continue;
      lease.expiryMs = nowMs + baseWindow + Math.floor((1000 * expires) / target);
    }
  }

  /** Drops stale heap entries when they outnumber the live ones (bounds heap memory). */
  #maybeCompactHeaps(): void {
    if (this.#expiries.size > 2 * this.#leases.size + HEAP_SLACK) {
      const live = [...this.#leases.values()].filter((lease) => Number.isFinite(lease.checkAtMs));
      this.#expiries.rebuild(live.map((lease) => ({ id: lease.id, atMs: lease.checkAtMs })));
    }
    if (this.#checkpoints.size > 2 * this.#leases.size + HEAP_SLACK) {
      const live = [...this.#leases.values()].filter((lease) => Number.isFinite(lease.checkpointAtMs));
      this.#checkpoints.rebuild(live.map((lease) => ({ id: lease.id, atMs: lease.checkpointAtMs })));
    }
  }
}

function encodeRecord(lease: LeaseState): Uint8Array {
  const record: LeaseRecord = { id: lease.id.toString(), ttl: lease.ttlSeconds, remainingTtl: lease.remainingTtlSeconds };
  return new Uint8Array(packr.pack(record));
}

/** now + extend + remaining TTL (checkpointed, else granted), as etcd's Lease.refresh. */
function expiryAfterRefresh(lease: LeaseState, options: { nowMs: number; extendMs: number }): number {
  const remaining = lease.remainingTtlSeconds > 0 ? lease.remainingTtlSeconds : lease.ttlSeconds;
  return options.nowMs + options.extendMs + remaining * 1000;
}

/**
 * Alarms (etcd's server/etcdserver/api/v3alarm, and its capped and corrupt appliers): a
 * replicated set of (member, alarm) pairs that every member applies from the log, in order, so
 * every member agrees on it and refuses the same writes.
 *
 * - NOSPACE: raised when a member's backend passes --quota-backend-bytes (quota.ts) or by a
 *   client. While any NOSPACE alarm is active, writes that grow the store are refused with
 *   `etcdserver: mvcc: database space exceeded` (RESOURCE_EXHAUSTED): Put, Txn with a put in any
 *   branch (kvd also counts nested txns, etcd only the top level), LeaseGrant. Reads, deletes,
 *   compaction, defragmentation and alarm requests keep working.
 * - CORRUPT: raised by the corruption check (corruption.ts) or by a client. While active, every
 *   write is refused with `etcdserver: corrupt cluster` (DATA_LOSS): Put, DeleteRange, Txn with a
 *   write, Compact, LeaseGrant, LeaseRevoke; reads and read-only txns are served. When both
 *   alarms are active CORRUPT wins (etcd after a restart; before one, etcd 3.4 lets the alarm
 *   raised last replace the other's applier).
 *
 * Where it lives: one meta record per alarm, `alarm/<type>/<member id hex>`, written in the same
 * LevelDB batch as the entry's consistent index, so alarms survive restarts and travel with
 * snapshots. {@link AlarmSet} is the in-memory picture of those records, rebuilt from the meta
 * namespace on open, after a snapshot install and after the store is reopened.
 *
 * Every alarm records its origin. An alarm the quota raised is cleared by the member itself once
 * its backend is back under the low-water mark (quota.ts): that clear is an ordinary DEACTIVATE
 * entry whose origin is 'low-water', and applying it removes the alarm only if the quota raised
 * it. An alarm raised by a client or by the corruption check is only ever cleared by a client
 * (`etcdctl alarm disarm`).
 */
import type { NodeId } from '../raft/types.js';
import type { RequestOp, TxnRequest, WriteRequest } from '../store/mvcc/types.js';
import { KvdError } from '../util/errors.js';
import { idToHex } from './ids.js';

/** etcd's AlarmType (NONE may be activated too: etcd stores it; it refuses nothing). */
export type AlarmType = 'none' | 'nospace' | 'corrupt';

/** Who raised an alarm. */
export type AlarmRaiser = 'client' | 'quota' | 'corruption-check';

/** Who asks to change the alarms: a raiser, or the quota's automatic clear below the low-water mark. */
export type AlarmOrigin = AlarmRaiser | 'low-water';

/** One active alarm. */
export interface AlarmRecord {
  readonly memberId: NodeId;
  readonly alarm: AlarmType;
  readonly raisedBy: AlarmRaiser;
}

/**
 * The replicated alarm request (InternalRequest `alarm`): raise or clear `alarm` for `memberId`.
 * GET is not replicated: it is served from the local set after a linearizable read barrier.
 */
export interface AlarmChangeRequest {
  readonly type: 'alarm';
  readonly action: 'activate' | 'deactivate';
  readonly memberId: NodeId;
  readonly alarm: AlarmType;
  readonly origin: AlarmOrigin;
}

/** Meta namespace of alarm records. */
export const ALARM_META_PREFIX = 'alarm/';

const ALARM_TYPES: readonly AlarmType[] = ['none', 'nospace', 'corrupt'];
const RAISERS: readonly AlarmRaiser[] = ['client', 'quota', 'corruption-check'];

/** Meta key of the record of `alarm` for `memberId`. */
export function alarmMetaKey(alarm: AlarmType, memberId: NodeId): string {
  return `${ALARM_META_PREFIX}${alarm}/${idToHex(memberId)}`;
}

function encodeAlarm(record: AlarmRecord): Uint8Array {
  return Buffer.from(JSON.stringify({ memberId: idToHex(record.memberId), alarm: record.alarm, raisedBy: record.raisedBy }));
}

function decodeAlarm(bytes: Uint8Array): AlarmRecord {
  const json = JSON.parse(Buffer.from(bytes).toString('utf8')) as { memberId?: unknown; alarm?: unknown; raisedBy?: unknown };
  if (typeof json.memberId !== 'string' || !ALARM_TYPES.includes(json.alarm as AlarmType) || !RAISERS.includes(json.raisedBy as AlarmRaiser)) {
    throw new KvdError('corrupt', { detail: `etcdserver: corrupt alarm record ${Buffer.from(bytes).toString('utf8')}` });
  }
  return { memberId: BigInt(`0x${json.memberId}`), alarm: json.alarm as AlarmType, raisedBy: json.raisedBy as AlarmRaiser };
}

/** What applying an alarm change did: the alarms to answer with, and the meta write (if any). */
export interface AlarmChange {
  /** etcd's answer: the alarm raised (also when it already was), or the alarm cleared; empty when nothing matched. */
  readonly alarms: readonly AlarmRecord[];
  /** The meta write to commit with the entry (null value = delete), or undefined when nothing changed. */
  readonly meta: readonly [string, Uint8Array | null] | undefined;
}

/** Sorted by member id, then type: one order on every member (etcd answers in map order). */
function compareAlarms(a: AlarmRecord, b: AlarmRecord): number {
  if (a.memberId !== b.memberId) return a.memberId < b.memberId ? -1 : 1;
  return ALARM_TYPES.indexOf(a.alarm) - ALARM_TYPES.indexOf(b.alarm);
}

/**
 * The active alarms: a cache of the `alarm/` meta records. Mutated only by the applier (through
 * {@link AlarmSet.change}, whose meta write it commits with the entry) and by {@link AlarmSet.load}.
 */
export class AlarmSet {
  /** Invariant: equals the decoded `alarm/` meta records of the store as of the last applied entry. */
  readonly #alarms = new Map<string, AlarmRecord>();

  /** Replaces the set with the records of the store's meta namespace (open, snapshot install, reopen). */
  load(records: ReadonlyMap<string, Uint8Array>): void {
    this.#alarms.clear();
    for (const [key, value] of records) {
      if (!key.startsWith(ALARM_META_PREFIX)) continue;
      const record = decodeAlarm(value);
      this.#alarms.set(alarmMetaKey(record.alarm, record.memberId), record);
    }
  }

  /** Active alarms of `alarm` ('none' = every alarm, as etcd's GET), sorted. */
  list(alarm: AlarmType = 'none'): AlarmRecord[] {
    return [...this.#alarms.values()].filter((record) => alarm === 'none' || record.alarm === alarm).sort(compareAlarms);
  }

  /** Whether any member has `alarm` active. */
  has(alarm: AlarmType): boolean {
    for (const record of this.#alarms.values()) if (record.alarm === alarm) return true;
    return false;
  }

  /** The alarm of `alarm` for `memberId`, if active. */
  get(alarm: AlarmType, memberId: NodeId): AlarmRecord | undefined {
    return this.#alarms.get(alarmMetaKey(alarm, memberId));
  }

  /**
   * Applies an alarm request (the applier calls it for each `alarm` entry, in log order, and
   * commits the returned meta write with the entry). Deterministic: depends only on the set and
   * the request.
   */
  change(request: AlarmChangeRequest): AlarmChange {
    const key = alarmMetaKey(request.alarm, request.memberId);
    const existing = this.#alarms.get(key);
    if (request.action === 'activate') {
      if (existing !== undefined) return { alarms: [existing], meta: undefined };
      const raisedBy: AlarmRaiser = request.origin === 'low-water' ? 'quota' : request.origin;
      const record: AlarmRecord = { memberId: request.memberId, alarm: request.alarm, raisedBy };
      this.#alarms.set(key, record);
      return { alarms: [record], meta: [key, encodeAlarm(record)] };
    }
    if (existing === undefined) return { alarms: [], meta: undefined };
    // The quota's own clear removes only what the quota raised: an operator's alarm stays.
    if (request.origin === 'low-water' && existing.raisedBy !== 'quota') return { alarms: [], meta: undefined };
    this.#alarms.delete(key);
    return { alarms: [existing], meta: [key, null] };
  }

  /**
   * Why the alarms refuse `request`, or undefined when they let it through (etcd's capped and
   * corrupt appliers). Pure: the applier calls it before applying a request, the gateway before
   * proposing one (an early answer; the applier's decision is the one that counts).
   */
  refusal(request: AlarmGuardedRequest): KvdError | undefined {
    if (this.#alarms.size === 0) return undefined;
    if (this.has('corrupt') && writesAnything(request)) return new KvdError('corrupt');
    if (this.has('nospace') && growsStore(request)) return new KvdError('no-space');
    return undefined;
  }
}

/** Any request that travels through Raft; alarms look at KV writes and lease grants/revokes only. */
export type AlarmGuardedRequest = WriteRequest | { readonly type: string };

function isTxn(request: AlarmGuardedRequest): request is Extract<WriteRequest, { type: 'txn' }> {
  return request.type === 'txn';
}

/** Whether `request` changes the key space or the leases (etcd's corrupt applier refuses it). */
export function writesAnything(request: AlarmGuardedRequest): boolean {
  if (isTxn(request)) return txnHas(request.request, (op) => op.type === 'put' || op.type === 'delete-range');
  return ['put', 'delete-range', 'compact', 'lease-grant', 'lease-revoke'].includes(request.type);
}

/** Whether `request` may make the store bigger (etcd's capped applier refuses it). */
export function growsStore(request: AlarmGuardedRequest): boolean {
  if (isTxn(request)) return txnHas(request.request, (op) => op.type === 'put');
  return request.type === 'put' || request.type === 'lease-grant';
}

/** Whether any op of either branch, nested txns included, matches. */
function txnHas(request: TxnRequest, match: (op: RequestOp) => boolean): boolean {
  for (const op of [...request.success, ...request.failure]) {
    if (match(op)) return true;
    if (op.type === 'txn' && txnHas(op.request, match)) return true;
  }
  return false;
}

/**
 * etcd's text for an alarm (gogoproto's String() of AlarmMember), as `alarm list` and the
 * `errors` of Maintenance.Status show it: `memberID:<decimal> alarm:NOSPACE ` (trailing space;
 * the zero-valued NONE type is left out, as protobuf text does).
 */
export function alarmText(record: { readonly memberId: NodeId; readonly alarm: AlarmType }): string {
  const member = record.memberId === 0n ? '' : `memberID:${BigInt.asUintN(64, record.memberId)} `;
  const alarm = record.alarm === 'none' ? '' : `alarm:${record.alarm.toUpperCase()} `;
  return `${member}${alarm}`;
}

/**
 * Key-range permissions, decided as etcd's auth/range_perm_cache.go does (pure functions).
 *
 * A role grants READ, WRITE or READWRITE on a single key (`rangeEnd` empty), on a range
 * `[key, rangeEnd)`, or on every key from `key` on (`rangeEnd = [0]`, etcdctl `--from-key`).
 * A user's permissions are the union of its roles'. A request is permitted when:
 * - it names one key (`rangeEnd` empty): some granted interval contains that key;
 * - it names a range: the granted intervals that intersect it, taken in order of their start,
 *   cover it without a gap (etcd's IntervalTree.Contains). `rangeEnd = [0]` is open-ended.
 *
 * The merged intervals of a user are built once per auth revision ({@link UserPermissions}).
 */

/** etcd's authpb.Permission.Type. */
export type PermissionType = 'read' | 'write' | 'readwrite';

/** One granted permission of a role, as stored. */
export interface KeyPermission {
  readonly type: PermissionType;
  readonly key: Uint8Array;
  /** Empty: the single key; [0]: every key >= key; otherwise the exclusive end. */
  readonly rangeEnd: Uint8Array;
}

/** An interval of keys: `end` undefined means unbounded (to the end of the key space). */
interface Interval {
  readonly begin: Uint8Array;
  readonly end: Uint8Array | undefined;
}

const ZERO = new Uint8Array([0]);

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

/** `end` of a single key's interval: the key followed by a zero byte (the next possible key). */
function pointEnd(key: Uint8Array): Uint8Array {
  const end = new Uint8Array(key.length + 1);
  end.set(key);
  return end;
}

function isOpenEnd(rangeEnd: Uint8Array): boolean {
  return rangeEnd.length === 1 && rangeEnd[0] === 0;
}

/** The interval a permission grants. */
export function permissionInterval(permission: Pick<KeyPermission, 'key' | 'rangeEnd'>): Interval {
  if (permission.rangeEnd.length === 0) return { begin: permission.key, end: pointEnd(permission.key) };
  if (isOpenEnd(permission.rangeEnd)) return { begin: permission.key, end: undefined };
  return { begin: permission.key, end: permission.rangeEnd };
}

/** end(a) < end(b), with undefined as +infinity. */
function endBefore(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  if (a === undefined) return false;
  if (b === undefined) return true;
  return compareBytes(a, b) < 0;
}

function intersects(a: Interval, b: Interval): boolean {
  // [a.begin, a.end) ∩ [b.begin, b.end) ≠ ∅ ⇔ a.begin < b.end ∧ b.begin < a.end
  const aBeforeBEnd = b.end === undefined || compareBytes(a.begin, b.end) < 0;
  const bBeforeAEnd = a.end === undefined || compareBytes(b.begin, a.end) < 0;
  return aBeforeBEnd && bBeforeAEnd;
}

/** A user's merged permissions: the intervals it may read and those it may write, sorted by start. */
export class UserPermissions {
  readonly #read: Interval[];
  readonly #write: Interval[];

  constructor(permissions: Iterable<KeyPermission>) {
    const read: Interval[] = [];
    const write: Interval[] = [];
    for (const permission of permissions) {
      const interval = permissionInterval(permission);
      if (permission.type !== 'write') read.push(interval);
      if (permission.type !== 'read') write.push(interval);
    }
    const byBegin = (a: Interval, b: Interval): number => compareBytes(a.begin, b.begin);
    this.#read = read.sort(byBegin);
    this.#write = write.sort(byBegin);
  }

  /** Whether the user may `access` the key or range (`rangeEnd` as in a request). */
  permits(access: 'read' | 'write', key: Uint8Array, rangeEnd: Uint8Array): boolean {
    const intervals = access === 'read' ? this.#read : this.#write;
    if (rangeEnd.length === 0) {
      const point: Interval = { begin: key, end: pointEnd(key) };
      return intervals.some((interval) => intersects(interval, point));
    }
    return covers(intervals, { begin: key, end: isOpenEnd(rangeEnd) ? undefined : rangeEnd });
  }
}

/**
 * etcd's IntervalTree.Contains: the intervals intersecting `wanted`, in order of their start,
 * must be contiguous, start at or before `wanted.begin` and reach `wanted.end`.
 */
function covers(sorted: readonly Interval[], wanted: Interval): boolean {
  let minBegin: Uint8Array | undefined;
  let maxEnd: Uint8Array | undefined;
  let seen = false;
  for (const interval of sorted) {
    if (!intersects(interval, wanted)) continue;
    if (!seen) {
      seen = true;
      minBegin = interval.begin;
      maxEnd = interval.end;
      continue;
    }
    if (maxEnd !== undefined && compareBytes(maxEnd, interval.begin) < 0) return false;
    if (endBefore(maxEnd, interval.end)) maxEnd = interval.end;
  }
  if (!seen || minBegin === undefined) return false;
  return compareBytes(minBegin, wanted.begin) <= 0 && !endBefore(maxEnd, wanted.end);
}

/** Whether two permissions name the same key range (etcd's revoke matches key and range_end bytes). */
export function sameRange(a: Pick<KeyPermission, 'key' | 'rangeEnd'>, b: Pick<KeyPermission, 'key' | 'rangeEnd'>): boolean {
  return compareBytes(a.key, b.key) === 0 && compareBytes(a.rangeEnd, b.rangeEnd) === 0;
}

/** Sorts by key as etcd keeps a role's permissions (stable for equal keys). */
export function sortPermissions(permissions: readonly KeyPermission[]): KeyPermission[] {
  return [...permissions].sort((a, b) => compareBytes(a.key, b.key));
}

export { ZERO as OPEN_RANGE_END };

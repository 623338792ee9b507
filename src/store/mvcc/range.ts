/**
 * Pure parts of Range: key-range resolution, the etcd pre-fetch limit, filters, sorting and the
 * final limit, after etcd's server/etcdserver/txn/range.go and mvcc kvstore_txn.go `rangeKeys`.
 */
import type { KeyValue, RangeRequest, RangeResponse } from './types.js';
import { keyString } from './codec.js';

/** A resolved key range over latin1 key strings. */
export type KeyRange =
  | { readonly kind: 'single'; readonly key: string }
  /** `end` undefined = no upper bound (range end "\0"). */
  | { readonly kind: 'range'; readonly start: string; readonly end: string | undefined };

/** etcd's range conventions: empty end = one key; end "\0" = every key >= key. */
export function resolveKeyRange(key: Uint8Array, rangeEnd: Uint8Array): KeyRange {
  if (rangeEnd.length === 0) return { kind: 'single', key: keyString(key) };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { kind: 'range', start: keyString(key), end: undefined };
  return { kind: 'range', start: keyString(key), end: keyString(rangeEnd) };
}

/** Whether the latin1 key string lies in the range. */
export function inKeyRange(range: KeyRange, key: string): boolean {
  if (range.kind === 'single') return key === range.key;
  return key >= range.start && (range.end === undefined || key < range.end);
}

function hasFilters(request: RangeRequest): boolean {
  return request.minModRevision !== 0 || request.maxModRevision !== 0 || request.minCreateRevision !== 0 || request.maxCreateRevision !== 0;
}

/**
 * How many keys the backend fetch needs (0 = all): etcd fetches everything when sorting or
 * filtering, else limit + 1 to learn `more`.
 */
export function fetchLimit(request: RangeRequest): number {
  if (request.sortOrder !== 'none' || hasFilters(request)) return 0;
  return request.limit > 0 ? request.limit + 1 : 0;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

/**
 * Applies filters, sort, limit and keys_only to the fetched key-values (in key order), exactly in
 * etcd's order. `count` is the number of keys in the range at the revision.
 */
export function finishRange(request: RangeRequest, fetched: KeyValue[], count: number): RangeResponse {
  let kvs = fetched;
  if (request.maxModRevision !== 0) kvs = kvs.filter((kv) => !(kv.modRevision > request.maxModRevision));
  if (request.minModRevision !== 0) kvs = kvs.filter((kv) => !(kv.modRevision < request.minModRevision));
  if (request.maxCreateRevision !== 0) kvs = kvs.filter((kv) => !(kv.createRevision > request.maxCreateRevision));
  if (request.minCreateRevision !== 0) kvs = kvs.filter((kv) => !(kv.createRevision < request.minCreateRevision));
  let order = request.sortOrder;
  // etcd: results come in key order; sort ascending by default only when the target is not KEY,
  // and do not re-sort KEY ascending.
  if (request.sortTarget !== 'key' && order === 'none') order = 'ascend';
  else if (request.sortTarget === 'key' && order === 'ascend') order = 'none';
  if (order !== 'none') {
    const by = comparator(request.sortTarget);
    const sign = order === 'ascend' ? 1 : -1;
    kvs = kvs.slice().sort((a, b) => sign * by(a, b));
  }
  let more = false;
  if (request.limit > 0 && kvs.length > request.limit) {
    kvs = kvs.slice(0, request.limit);
    more = true;
  }
  if (request.keysOnly) kvs = kvs.map((kv) => ({ ...kv, value: new Uint8Array(0) }));
  return { kvs, more, count };
}

function comparator(target: RangeRequest['sortTarget']): (a: KeyValue, b: KeyValue) => number {
  switch (target) {
    case 'key':
      return (a, b) => compareBytes(a.key, b.key);
    case 'version':
      return (a, b) => a.version - b.version;
    case 'create':
      return (a, b) => a.createRevision - b.createRevision;
    case 'mod':
      return (a, b) => a.modRevision - b.modRevision;
    case 'value':
      return (a, b) => compareBytes(a.value, b.value);
  }
}

/**
 * Domain types of the MVCC key space, shared by the store, the server (which carries them
 * through Raft) and the API edge (which decodes protobuf into them once).
 *
 * Representation decisions:
 * - Keys and values are `Uint8Array` (byte strings, as in etcd).
 * - Revisions and versions are `number`: one revision per write transaction keeps them far below
 *   2^53. The API codec rejects or clamps wire values outside that range.
 * - Lease ids are random 64-bit: `bigint`, `0n` = no lease.
 * - An empty `rangeEnd` means "the single key `key`"; `rangeEnd = [0]` means "every key >= key";
 *   `key = rangeEnd = [0]` means every key (etcd's conventions).
 */

/** A store revision. Invariant: >= 1; the empty store is at revision 1. */
export type Revision = number;
/** A lease id; 0n means none. */
export type LeaseId = bigint;

/** One key at one revision, as etcd's mvccpb.KeyValue. */
export interface KeyValue {
  readonly key: Uint8Array;
  readonly createRevision: Revision;
  readonly modRevision: Revision;
  /** Number of modifications since creation (1 on create); 0 for a deleted key. */
  readonly version: number;
  readonly value: Uint8Array;
  readonly lease: LeaseId;
}

/** A change to one key at one revision, as etcd's mvccpb.Event. */
export interface Event {
  readonly type: 'put' | 'delete';
  /** For deletes: key, modRevision = the deletion revision, everything else zero/empty. */
  readonly kv: KeyValue;
  readonly prevKv?: KeyValue;
}

export type SortOrder = 'none' | 'ascend' | 'descend';
export type SortTarget = 'key' | 'version' | 'create' | 'mod' | 'value';

export interface RangeRequest {
  readonly key: Uint8Array;
  readonly rangeEnd: Uint8Array;
  /** 0 = no limit. */
  readonly limit: number;
  /** <= 0 = the current revision. */
  readonly revision: Revision;
  readonly sortOrder: SortOrder;
  readonly sortTarget: SortTarget;
  readonly serializable: boolean;
  readonly keysOnly: boolean;
  readonly countOnly: boolean;
  /** 0 = no filter, for all four. */
  readonly minModRevision: Revision;
  readonly maxModRevision: Revision;
  readonly minCreateRevision: Revision;
  readonly maxCreateRevision: Revision;
}

export interface RangeResponse {
  readonly kvs: readonly KeyValue[];
  /** True when `limit` cut the result short. */
  readonly more: boolean;
  /** Number of keys in the range at the revision (before limit and filters, as etcd). */
  readonly count: number;
}

export interface PutRequest {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly lease: LeaseId;
  readonly prevKv: boolean;
  readonly ignoreValue: boolean;
  readonly ignoreLease: boolean;
}

export interface PutResponse {
  readonly prevKv?: KeyValue;
}

export interface DeleteRangeRequest {
  readonly key: Uint8Array;
  readonly rangeEnd: Uint8Array;
  readonly prevKv: boolean;
}

export interface DeleteRangeResponse {
  readonly deleted: number;
  readonly prevKvs: readonly KeyValue[];
}

export type CompareResult = 'equal' | 'greater' | 'less' | 'not-equal';

/** One guard of a transaction; `rangeEnd` non-empty compares every key in the range. */
export type Compare =
  | { readonly result: CompareResult; readonly target: 'version' | 'create' | 'mod'; readonly key: Uint8Array; readonly rangeEnd: Uint8Array; readonly value: bigint }
  | { readonly result: CompareResult; readonly target: 'lease'; readonly key: Uint8Array; readonly rangeEnd: Uint8Array; readonly value: bigint }
  | { readonly result: CompareResult; readonly target: 'value'; readonly key: Uint8Array; readonly rangeEnd: Uint8Array; readonly value: Uint8Array };

export type RequestOp =
  | { readonly type: 'range'; readonly request: RangeRequest }
  | { readonly type: 'put'; readonly request: PutRequest }
  | { readonly type: 'delete-range'; readonly request: DeleteRangeRequest }
  | { readonly type: 'txn'; readonly request: TxnRequest };

export type ResponseOp =
  | { readonly type: 'range'; readonly response: RangeResponse }
  | { readonly type: 'put'; readonly response: PutResponse }
  | { readonly type: 'delete-range'; readonly response: DeleteRangeResponse }
  | { readonly type: 'txn'; readonly response: TxnResponse };

export interface TxnRequest {
  readonly compare: readonly Compare[];
  readonly success: readonly RequestOp[];
  readonly failure: readonly RequestOp[];
}

export interface TxnResponse {
  readonly succeeded: boolean;
  readonly responses: readonly ResponseOp[];
}

export interface CompactRequest {
  readonly revision: Revision;
  readonly physical: boolean;
}

/** A write request the store applies (what travels through Raft for the KV service). */
export type WriteRequest =
  | { readonly type: 'put'; readonly request: PutRequest }
  | { readonly type: 'delete-range'; readonly request: DeleteRangeRequest }
  | { readonly type: 'txn'; readonly request: TxnRequest }
  | { readonly type: 'compact'; readonly request: CompactRequest };

/** The result of applying one write request. */
export type WriteResult =
  | { readonly type: 'put'; readonly response: PutResponse }
  | { readonly type: 'delete-range'; readonly response: DeleteRangeResponse }
  | { readonly type: 'txn'; readonly response: TxnResponse }
  | { readonly type: 'compact'; readonly response: Record<string, never> };

/**
 * A Range being read in pages at one revision, without building the whole response (see
 * MvccStore.openRange). Iterating yields the response's key-values in response order (key order,
 * or the requested sort), filters, limit and keys_only applied, a bounded page at a time;
 * `summary()` gives count and more once iteration has ended. Refuses concurrent `next()` calls.
 *
 * While a cursor is open its revision stays readable: physical compaction does not go past it.
 * So close it (`return()`, e.g. in a `finally`) as soon as it is no longer read.
 */
export interface RangeCursor extends AsyncIterableIterator<readonly KeyValue[]> {
  /** The store revision when the cursor was opened (etcd puts it in the response header). */
  readonly revision: Revision;
  /** The revision whose data is read: the request's, or `revision` when the request asked for <= 0. */
  readonly readRevision: Revision;
  /** count (keys in the range at readRevision, before filters and limit) and more (etcd semantics). Only after the last page. */
  summary(): { readonly count: number; readonly more: boolean };
  /** Releases the revision; idempotent. */
  return(): Promise<IteratorResult<readonly KeyValue[], undefined>>;
}

/**
 * Shared helpers for the MVCC store tests: request builders with etcd's defaults, temp dirs, and
 * printable views of results (strings instead of bytes) for deep comparisons.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MvccStore, type ApplyOutcome, type MvccStoreOptions } from '../../../../src/store/mvcc/index.js';
import type {
  Compare, DeleteRangeRequest, KeyValue, PutRequest, RangeRequest, RequestOp, TxnRequest, WriteRequest,
} from '../../../../src/store/mvcc/types.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function bytes(text: string): Uint8Array {
  return encoder.encode(text);
}

export function text(data: Uint8Array): string {
  return decoder.decode(data);
}

export const ALL_FROM = new Uint8Array([0]);

export function putRequest(key: string, value: string, extra: Partial<PutRequest> = {}): PutRequest {
  return { key: bytes(key), value: bytes(value), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false, ...extra };
}

export function put(key: string, value: string, extra: Partial<PutRequest> = {}): WriteRequest {
  return { type: 'put', request: putRequest(key, value, extra) };
}

export function deleteRequest(key: string, rangeEnd: string | Uint8Array = '', extra: Partial<DeleteRangeRequest> = {}): DeleteRangeRequest {
  return { key: bytes(key), rangeEnd: typeof rangeEnd === 'string' ? bytes(rangeEnd) : rangeEnd, prevKv: false, ...extra };
}

export function del(key: string, rangeEnd: string | Uint8Array = '', extra: Partial<DeleteRangeRequest> = {}): WriteRequest {
  return { type: 'delete-range', request: deleteRequest(key, rangeEnd, extra) };
}

export function rangeRequest(key: string | Uint8Array, rangeEnd: string | Uint8Array = '', extra: Partial<RangeRequest> = {}): RangeRequest {
  return {
    key: typeof key === 'string' ? bytes(key) : key,
    rangeEnd: typeof rangeEnd === 'string' ? bytes(rangeEnd) : rangeEnd,
    limit: 0, revision: 0, sortOrder: 'none', sortTarget: 'key', serializable: false, keysOnly: false, countOnly: false,
    minModRevision: 0, maxModRevision: 0, minCreateRevision: 0, maxCreateRevision: 0, ...extra,
  };
}

export function txn(compare: Compare[], success: RequestOp[], failure: RequestOp[] = []): WriteRequest {
  return { type: 'txn', request: { compare, success, failure } };
}

export function txnRequest(compare: Compare[], success: RequestOp[], failure: RequestOp[] = []): TxnRequest {
  return { compare, success, failure };
}

export function compact(revision: number): WriteRequest {
  return { type: 'compact', request: { revision, physical: false } };
}

export function cmp(key: string, target: 'version' | 'create' | 'mod' | 'lease', result: Compare['result'], value: number | bigint, rangeEnd = ''): Compare {
  return { key: bytes(key), rangeEnd: bytes(rangeEnd), target, result, value: BigInt(value) };
}

export function cmpValue(key: string, result: Compare['result'], value: string, rangeEnd = ''): Compare {
  return { key: bytes(key), rangeEnd: bytes(rangeEnd), target: 'value', result, value: bytes(value) };
}

/** A key-value with strings, for assertions. */
export interface PlainKv {
  key: string;
  value: string;
  create: number;
  mod: number;
  version: number;
  lease: bigint;
}

export function plain(kv: KeyValue): PlainKv {
  return { key: text(kv.key), value: text(kv.value), create: kv.createRevision, mod: kv.modRevision, version: kv.version, lease: kv.lease };
}

/** Deep-printable form of anything with bytes (bytes → strings). */
export function printable(value: unknown): unknown {
  if (value instanceof Uint8Array) return text(value);
  if (Array.isArray(value)) return value.map(printable);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = printable(v);
    return out;
  }
  return value;
}

/** A fresh temp dir; remove with `cleanup`. */
export async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'kvd-mvcc-'));
}

export async function cleanup(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Opens a store in a fresh temp dir. */
export async function openTemp(options: Partial<MvccStoreOptions> = {}): Promise<{ store: MvccStore; dir: string; path: string }> {
  const dir = await tempDir();
  const path = join(dir, 'db');
  const store = await MvccStore.open({ path, ...options });
  return { store, dir, path };
}

/** Applies requests as consecutive entries after the store's consistent index. */
export async function apply(store: MvccStore, ...requests: WriteRequest[]): Promise<ApplyOutcome[]> {
  const base = store.consistentIndex;
  return store.applyBatch(requests.map((request, i) => ({ index: base + i + 1, request })));
}

/** Applies one request and returns its outcome. */
export async function applyOne(store: MvccStore, request: WriteRequest, options: { leaseExists?: (id: bigint) => boolean } = {}): Promise<ApplyOutcome> {
  const [outcome] = await store.applyBatch([{ index: store.consistentIndex + 1, request }], options);
  return outcome;
}

/** Waits until `condition()` holds, polling on the event loop, failing after `timeoutMs`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met before the deadline');
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/**
 * Key-value operations (Range, Put, DeleteRange, Txn, Compact): request builders shared by
 * direct calls and transactions, response decoders into exact domain types, and the typed
 * transaction builder with its compare helpers.
 */
import { bytesFromWire, decodeHeader, fromWire, prefixEnd, toBuffer, toWire, type Bytes, type Int64Like, type ResponseHeader } from './codec.js';
import type { Connection } from './connection.js';

/** One key's state at a revision. */
export interface KeyValue {
  /** The key bytes. */
  readonly key: Buffer;
  /** The value bytes (empty with `keysOnly`). */
  readonly value: Buffer;
  /** Revision of the key's creation (of its current generation). */
  readonly createRevision: bigint;
  /** Revision of the last modification. */
  readonly modRevision: bigint;
  /** Number of modifications since creation (1 after the first put). */
  readonly version: bigint;
  /** Attached lease id, 0n when none. */
  readonly lease: bigint;
}

/** Decodes a mvccpb.KeyValue. */
export function decodeKeyValue(raw: unknown): KeyValue {
  const kv = (raw ?? {}) as Record<string, unknown>;
  return {
    key: bytesFromWire(kv.key),
    value: bytesFromWire(kv.value),
    createRevision: fromWire(kv.create_revision),
    modRevision: fromWire(kv.mod_revision),
    version: fromWire(kv.version),
    lease: fromWire(kv.lease),
  };
}

/** Which keys a range, delete or watch covers, beyond the single key. Choose at most one. */
export interface KeyRangeOptions {
  /** All keys starting with the key. */
  readonly prefix?: boolean;
  /** All keys greater than or equal to the key. */
  readonly fromKey?: boolean;
  /** Keys in `[key, rangeEnd)`. */
  readonly rangeEnd?: Bytes;
}

/** The `range_end` for `key` under {@link KeyRangeOptions}; empty = the single key. */
export function rangeEndFor(key: Buffer, options: KeyRangeOptions): Buffer {
  if (options.rangeEnd !== undefined) return toBuffer(options.rangeEnd);
  if (options.prefix === true) return prefixEnd(key);
  if (options.fromKey === true) return Buffer.from([0]);
  return Buffer.alloc(0);
}

/**
 * `{ range_end }` for a request, or nothing for a single key. An empty range_end must not be
 * sent at all: protobufjs would encode it as a present empty field, which etcd decodes as a
 * non-nil empty slice and treats as "every key from `key` on".
 */
export function rangeEndField(key: Buffer, options: KeyRangeOptions): { range_end?: Buffer } {
  const end = rangeEndFor(key, options);
  return end.length === 0 ? {} : { range_end: end };
}

/**
 * `{ key, range_end? }` for a request, as clientv3 builds them: an empty key with `prefix` or
 * `fromKey` means every key (`key = range_end = "\0"`).
 */
export function keyFields(key: Bytes, options: KeyRangeOptions): { key: Buffer; range_end?: Buffer } {
  const keyBytes = toBuffer(key);
  if (keyBytes.length === 0 && options.rangeEnd === undefined && (options.prefix === true || options.fromKey === true)) {
    return { key: Buffer.from([0]), range_end: Buffer.from([0]) };
  }
  return { key: keyBytes, ...rangeEndField(keyBytes, options) };
}

/** Sort field of a range. */
export type SortTarget = 'key' | 'version' | 'create' | 'mod' | 'value';
/** Sort order of a range. */
export type SortOrder = 'none' | 'ascend' | 'descend';

/** Options of {@link KvApi.range}. */
export interface RangeOptions extends KeyRangeOptions {
  /** Read at this revision (default: latest). Compacted → CompactedError; future → FutureRevisionError. */
  readonly revision?: Int64Like;
  /** Maximum number of keys returned (0 = no limit); `more` tells whether keys were left out. */
  readonly limit?: number;
  /** Sort of the result (default: by key ascending). */
  readonly sort?: { readonly target: SortTarget; readonly order: SortOrder };
  /** Return keys without values. */
  readonly keysOnly?: boolean;
  /** Return only the count. */
  readonly countOnly?: boolean;
  /** Serve from the member's local state (possibly stale) instead of a linearizable read. */
  readonly serializable?: boolean;
  /** Filters on mod/create revision (inclusive; 0 = none). */
  readonly minModRevision?: Int64Like;
  readonly maxModRevision?: Int64Like;
  readonly minCreateRevision?: Int64Like;
  readonly maxCreateRevision?: Int64Like;
  /** Per-call deadline in ms. */
  readonly timeoutMs?: number;
  /** Cancels the call. */
  readonly signal?: AbortSignal;
}

/** Result of a range. */
export interface RangeResult {
  readonly header: ResponseHeader;
  readonly kvs: readonly KeyValue[];
  /** Whether the limit left keys out. */
  readonly more: boolean;
  /** Number of keys in the range (ignoring limit). */
  readonly count: bigint;
}

/** Options of {@link KvApi.put}. */
export interface PutOptions {
  /** Attach the key to this lease (0 / absent: none). */
  readonly lease?: Int64Like;
  /** Return the previous key-value. */
  readonly prevKv?: boolean;
  /** Keep the current value (the value argument must be empty). */
  readonly ignoreValue?: boolean;
  /** Keep the current lease. */
  readonly ignoreLease?: boolean;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** Result of a put. */
export interface PutResult {
  readonly header: ResponseHeader;
  /** The previous key-value, when requested and the key existed. */
  readonly prevKv: KeyValue | undefined;
}

/** Options of {@link KvApi.delete}. */
export interface DeleteOptions extends KeyRangeOptions {
  /** Return the deleted key-values. */
  readonly prevKv?: boolean;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** Result of a delete. */
export interface DeleteResult {
  readonly header: ResponseHeader;
  /** Number of keys deleted. */
  readonly deleted: bigint;
  /** The deleted key-values, when requested. */
  readonly prevKvs: readonly KeyValue[];
}

const SORT_TARGET: Record<SortTarget, string> = { key: 'KEY', version: 'VERSION', create: 'CREATE', mod: 'MOD', value: 'VALUE' };
const SORT_ORDER: Record<SortOrder, string> = { none: 'NONE', ascend: 'ASCEND', descend: 'DESCEND' };

function optionalInt(value: Int64Like | undefined): string {
  return value === undefined ? '0' : toWire(value);
}

/** Builds an etcdserverpb.RangeRequest. */
export function rangeRequest(key: Bytes, options: RangeOptions = {}): Record<string, unknown> {
  return {
    ...keyFields(key, options),
    limit: String(options.limit ?? 0),
    revision: optionalInt(options.revision),
    sort_order: SORT_ORDER[options.sort?.order ?? 'none'],
    sort_target: SORT_TARGET[options.sort?.target ?? 'key'],
    serializable: options.serializable === true,
    keys_only: options.keysOnly === true,
    count_only: options.countOnly === true,
    min_mod_revision: optionalInt(options.minModRevision),
    max_mod_revision: optionalInt(options.maxModRevision),
    min_create_revision: optionalInt(options.minCreateRevision),
    max_create_revision: optionalInt(options.maxCreateRevision),
  };
}

/** Builds an etcdserverpb.PutRequest. */
export function putRequest(key: Bytes, value: Bytes, options: PutOptions = {}): Record<string, unknown> {
  return {
    key: toBuffer(key),
    value: toBuffer(value),
    lease: optionalInt(options.lease),
    prev_kv: options.prevKv === true,
    ignore_value: options.ignoreValue === true,
    ignore_lease: options.ignoreLease === true,
  };
}

/** Builds an etcdserverpb.DeleteRangeRequest. */
export function deleteRequest(key: Bytes, options: DeleteOptions = {}): Record<string, unknown> {
  return { ...keyFields(key, options), prev_kv: options.prevKv === true };
}

/** Decodes a RangeResponse. */
export function decodeRange(raw: Record<string, unknown>): RangeResult {
  return {
    header: decodeHeader(raw.header),
    kvs: ((raw.kvs ?? []) as unknown[]).map(decodeKeyValue),
    more: raw.more === true,
    count: fromWire(raw.count),
  };
}

/** Decodes a PutResponse. */
export function decodePut(raw: Record<string, unknown>): PutResult {
  return { header: decodeHeader(raw.header), prevKv: raw.prev_kv == null ? undefined : decodeKeyValue(raw.prev_kv) };
}

/** Decodes a DeleteRangeResponse. */
export function decodeDelete(raw: Record<string, unknown>): DeleteResult {
  return { header: decodeHeader(raw.header), deleted: fromWire(raw.deleted), prevKvs: ((raw.prev_kvs ?? []) as unknown[]).map(decodeKeyValue) };
}

// ---------------------------------------------------------------------------------------------
// Transactions

/** Comparison operator of a transaction guard. */
export type CompareOperator = '=' | '!=' | '<' | '>';

/** One guard of a transaction (build with {@link compare}). */
export interface Compare {
  /** The etcdserverpb.Compare message. */
  readonly wire: Record<string, unknown>;
}

const RESULT: Record<CompareOperator, string> = { '=': 'EQUAL', '!=': 'NOT_EQUAL', '<': 'LESS', '>': 'GREATER' };

function makeCompare(key: Bytes, target: 'VERSION' | 'CREATE' | 'MOD' | 'VALUE' | 'LEASE', field: string, operator: CompareOperator, value: unknown, range: KeyRangeOptions): Compare {
  if (!(operator in RESULT)) throw new TypeError(`unknown compare operator ${operator}`);
  return { wire: { result: RESULT[operator], target, ...keyFields(key, range), [field]: value } };
}

/**
 * Builders of transaction guards. A missing key compares as a zero-valued key-value (so
 * `createRevision(k, '=', 0)` means "k does not exist"); value compares on a missing key fail.
 * The optional last argument compares every key of a range/prefix.
 */
export const compare = {
  /** Compares the key's value bytes. */
  value(key: Bytes, operator: CompareOperator, value: Bytes, range: KeyRangeOptions = {}): Compare {
    return makeCompare(key, 'VALUE', 'value', operator, toBuffer(value), range);
  },
  /** Compares the key's version (0 when absent). */
  version(key: Bytes, operator: CompareOperator, version: Int64Like, range: KeyRangeOptions = {}): Compare {
    return makeCompare(key, 'VERSION', 'version', operator, toWire(version), range);
  },
  /** Compares the key's create revision (0 when absent). */
  createRevision(key: Bytes, operator: CompareOperator, revision: Int64Like, range: KeyRangeOptions = {}): Compare {
    return makeCompare(key, 'CREATE', 'create_revision', operator, toWire(revision), range);
  },
  /** Compares the key's mod revision (0 when absent). */
  modRevision(key: Bytes, operator: CompareOperator, revision: Int64Like, range: KeyRangeOptions = {}): Compare {
    return makeCompare(key, 'MOD', 'mod_revision', operator, toWire(revision), range);
  },
  /** Compares the key's lease id (0 when none). */
  lease(key: Bytes, operator: CompareOperator, lease: Int64Like, range: KeyRangeOptions = {}): Compare {
    return makeCompare(key, 'LEASE', 'lease', operator, toWire(lease), range);
  },
} as const;

/** One operation of a transaction branch (build with {@link op}). */
export interface Operation {
  /** The etcdserverpb.RequestOp message. */
  readonly wire: Record<string, unknown>;
}

/** Builders of transaction operations. */
export const op = {
  /** A range read (see {@link RangeOptions}; deadline/signal are ignored inside a txn). */
  get(key: Bytes, options: RangeOptions = {}): Operation {
    return { wire: { request_range: rangeRequest(key, options) } };
  },
  /** A put. */
  put(key: Bytes, value: Bytes, options: PutOptions = {}): Operation {
    return { wire: { request_put: putRequest(key, value, options) } };
  },
  /** A delete. */
  delete(key: Bytes, options: DeleteOptions = {}): Operation {
    return { wire: { request_delete_range: deleteRequest(key, options) } };
  },
  /** A nested transaction. */
  txn(compares: readonly Compare[], success: readonly Operation[], failure: readonly Operation[] = []): Operation {
    return { wire: { request_txn: txnRequest(compares, success, failure) } };
  },
} as const;

/** Builds an etcdserverpb.TxnRequest. */
export function txnRequest(compares: readonly Compare[], success: readonly Operation[], failure: readonly Operation[]): Record<string, unknown> {
  return { compare: compares.map((c) => c.wire), success: success.map((o) => o.wire), failure: failure.map((o) => o.wire) };
}

/** The response of one transaction operation, tagged by kind. */
export type OperationResult =
  | ({ readonly type: 'range' } & RangeResult)
  | ({ readonly type: 'put' } & PutResult)
  | ({ readonly type: 'delete' } & DeleteResult)
  | ({ readonly type: 'txn' } & TxnResult);

/** Result of a transaction. */
export interface TxnResult {
  readonly header: ResponseHeader;
  /** Whether every compare held (the `then` branch ran). */
  readonly succeeded: boolean;
  /** One result per operation of the branch that ran, in order. */
  readonly responses: readonly OperationResult[];
}

/** Decodes a TxnResponse. */
export function decodeTxn(raw: Record<string, unknown>): TxnResult {
  const responses = ((raw.responses ?? []) as Array<Record<string, unknown>>).map((response): OperationResult => {
    if (response.response_range != null) return { type: 'range', ...decodeRange(response.response_range as Record<string, unknown>) };
    if (response.response_put != null) return { type: 'put', ...decodePut(response.response_put as Record<string, unknown>) };
    if (response.response_delete_range != null) return { type: 'delete', ...decodeDelete(response.response_delete_range as Record<string, unknown>) };
    return { type: 'txn', ...decodeTxn((response.response_txn ?? {}) as Record<string, unknown>) };
  });
  return { header: decodeHeader(raw.header), succeeded: raw.succeeded === true, responses };
}

/** Options of a commit. */
export interface CommitOptions {
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * A transaction under construction: `if(...compares).then(...ops).else(...ops).commit()`.
 * Each step may be called at most once and in that order; `commit()` sends it (at most once:
 * a transaction is never retried after it may have reached a server).
 */
export class TxnBuilder {
  readonly #connection: Connection;
  #compares: readonly Compare[] = [];
  #success: readonly Operation[] = [];
  #failure: readonly Operation[] = [];
  #stage: 'if' | 'then' | 'else' | 'committed' = 'if';

  /** Created by {@link KvApi.txn}. */
  constructor(connection: Connection) {
    this.#connection = connection;
  }

  /** Sets the guards (all must hold). */
  if(...compares: Compare[]): this {
    this.#advance('if', 'then');
    this.#compares = compares;
    return this;
  }

  /** Sets the operations run when every guard holds. */
  then(...operations: Operation[]): this {
    this.#advance('then', 'else');
    this.#success = operations;
    return this;
  }

  /** Sets the operations run otherwise. */
  else(...operations: Operation[]): this {
    this.#advance('else', 'else');
    this.#failure = operations;
    this.#stage = 'committed';
    return this;
  }

  #advance(allowedUpTo: 'if' | 'then' | 'else', next: 'then' | 'else'): void {
    const order = ['if', 'then', 'else', 'committed'];
    if (order.indexOf(this.#stage) > order.indexOf(allowedUpTo)) throw new TypeError(`txn: ${allowedUpTo}() called out of order`);
    this.#stage = next;
  }

  /** The request message this builder would send. */
  toRequest(): Record<string, unknown> {
    return txnRequest(this.#compares, this.#success, this.#failure);
  }

  /** Sends the transaction. */
  async commit(options: CommitOptions = {}): Promise<TxnResult> {
    const readOnly = [...this.#success, ...this.#failure].every((operation) => operation.wire.request_range !== undefined);
    const { response } = await this.#connection.unary('KV', 'Txn', this.toRequest(), { retry: readOnly ? 'idempotent' : 'at-most-once', ...options });
    return decodeTxn(response);
  }
}

/** Options of a compaction. */
export interface CompactOptions {
  /** Wait until the compaction is physically applied in the backend. */
  readonly physical?: boolean;
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** Key-value calls of a {@link Client} (it implements this interface). */
export interface KvApi {
  /** Reads one key; undefined when absent. */
  get(key: Bytes, options?: Omit<RangeOptions, keyof KeyRangeOptions | 'limit' | 'countOnly'>): Promise<KeyValue | undefined>;
  /** Reads a key range (see {@link RangeOptions}). Retried across endpoints (idempotent). */
  range(key: Bytes, options?: RangeOptions): Promise<RangeResult>;
  /** Reads every key under a prefix as a map from key (UTF-8) to value (UTF-8). */
  getAll(prefix: Bytes, options?: Omit<RangeOptions, keyof KeyRangeOptions>): Promise<Map<string, string>>;
  /** Writes a key. Sent at most once. */
  put(key: Bytes, value: Bytes, options?: PutOptions): Promise<PutResult>;
  /** Deletes a key or range. Sent at most once. */
  delete(key: Bytes, options?: DeleteOptions): Promise<DeleteResult>;
  /** Starts a transaction. */
  txn(): TxnBuilder;
  /**
   * Compacts history below `revision`. Sent at most once: a repeated compaction would fail with
   * CompactedError although the first one succeeded (etcd's clientv3 does not repeat it either).
   */
  compact(revision: Int64Like, options?: CompactOptions): Promise<{ header: ResponseHeader }>;
}

/** Implements {@link KvApi} over a connection. */
export class Kv implements KvApi {
  readonly #connection: Connection;

  /** Wraps `connection` (not owned). */
  constructor(connection: Connection) {
    this.#connection = connection;
  }

  async get(key: Bytes, options: Omit<RangeOptions, keyof KeyRangeOptions | 'limit' | 'countOnly'> = {}): Promise<KeyValue | undefined> {
    const result = await this.range(key, options);
    return result.kvs[0];
  }

  async range(key: Bytes, options: RangeOptions = {}): Promise<RangeResult> {
    const { response } = await this.#connection.unary('KV', 'Range', rangeRequest(key, options), { retry: 'idempotent', timeoutMs: options.timeoutMs, signal: options.signal });
    return decodeRange(response);
  }

  async getAll(prefix: Bytes, options: Omit<RangeOptions, keyof KeyRangeOptions> = {}): Promise<Map<string, string>> {
    const result = await this.range(prefix, { ...options, prefix: true });
    return new Map(result.kvs.map((kv) => [kv.key.toString('utf8'), kv.value.toString('utf8')]));
  }

  async put(key: Bytes, value: Bytes, options: PutOptions = {}): Promise<PutResult> {
    const { response } = await this.#connection.unary('KV', 'Put', putRequest(key, value, options), { retry: 'at-most-once', timeoutMs: options.timeoutMs, signal: options.signal });
    return decodePut(response);
  }

  async delete(key: Bytes, options: DeleteOptions = {}): Promise<DeleteResult> {
    const { response } = await this.#connection.unary('KV', 'DeleteRange', deleteRequest(key, options), { retry: 'at-most-once', timeoutMs: options.timeoutMs, signal: options.signal });
    return decodeDelete(response);
  }

  txn(): TxnBuilder {
    return new TxnBuilder(this.#connection);
  }

  async compact(revision: Int64Like, options: CompactOptions = {}): Promise<{ header: ResponseHeader }> {
    const { response } = await this.#connection.unary('KV', 'Compact', { revision: toWire(revision), physical: options.physical === true }, { retry: 'at-most-once', timeoutMs: options.timeoutMs, signal: options.signal });
    return { header: decodeHeader(response.header) };
  }
}

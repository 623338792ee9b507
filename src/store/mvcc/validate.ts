/**
 * Static checks of write requests, as etcd's API layer does them before proposing
 * (server/etcdserver/api/v3rpc/key.go: checkPutRequest, checkTxnRequest, checkIntervals). The
 * store runs them again at apply time, so a request that slipped past the edge fails
 * deterministically on every member; the API layer may call them to reject early.
 */
import { KvdError } from '../../util/errors.js';
import type { RequestOp, TxnRequest, WriteRequest, RangeRequest, PutRequest, DeleteRangeRequest } from './types.js';

/** etcd's default `--max-txn-ops`. */
export const DEFAULT_MAX_TXN_OPS = 128;

/** Returns the error etcd would give for `request`, or undefined when it is well-formed. */
export function validateWriteRequest(request: WriteRequest, options: { maxTxnOps: number }): KvdError | undefined {
  switch (request.type) {
    case 'put':
      return validatePut(request.request);
    case 'delete-range':
      return validateDeleteRange(request.request);
    case 'txn': {
      const error = validateTxn(request.request, options.maxTxnOps);
      if (error !== undefined) return error;
      return checkIntervals(request.request.success).error ?? checkIntervals(request.request.failure).error;
    }
    case 'compact':
      return undefined;
  }
}

/** etcd's checkRangeRequest (sort enums are typed here, so only the key is checked). */
export function validateRange(request: RangeRequest): KvdError | undefined {
  return request.key.length === 0 ? new KvdError('empty-key') : undefined;
}

function validatePut(request: PutRequest): KvdError | undefined {
  if (request.key.length === 0) return new KvdError('empty-key');
  if (request.ignoreValue && request.value.length !== 0) return new KvdError('value-provided');
  if (request.ignoreLease && request.lease !== 0n) return new KvdError('lease-provided');
  return undefined;
}

function validateDeleteRange(request: DeleteRangeRequest): KvdError | undefined {
  return request.key.length === 0 ? new KvdError('empty-key') : undefined;
}

function validateTxn(request: TxnRequest, maxTxnOps: number): KvdError | undefined {
  const ops = Math.max(request.compare.length, request.success.length, request.failure.length);
  if (ops > maxTxnOps) return new KvdError('too-many-ops');
  for (const compare of request.compare) if (compare.key.length === 0) return new KvdError('empty-key');
  for (const op of [...request.success, ...request.failure]) {
    const error = validateOp(op, maxTxnOps);
    if (error !== undefined) return error;
  }
  return undefined;
}

function validateOp(op: RequestOp, maxTxnOps: number): KvdError | undefined {
  switch (op.type) {
    case 'range':
      return validateRange(op.request);
    case 'put':
      return validatePut(op.request);
    case 'delete-range':
      return validateDeleteRange(op.request);
    case 'txn':
      return validateTxn(op.request, maxTxnOps);
  }
}

/** A half-open byte-string interval as latin1 strings; `end` undefined = a single point. */
interface Interval {
  readonly start: string;
  /** Exclusive; '' means unbounded (etcd's "\0" range end). */
  readonly end: string | undefined;
}

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

function intersectsPoint(intervals: readonly Interval[], point: string): boolean {
  for (const interval of intervals) {
    if (interval.end === undefined) {
      if (interval.start === point) return true;
    } else if (point >= interval.start && (interval.end === '' || point < interval.end)) return true;
  }
  return false;
}

/**
 * etcd's checkIntervals: a key may be put at most once across a txn and its nested txns, and
 * never inside a range deleted at the same or an enclosing level (then/else branches of one nested
 * txn may put the same key, as they are exclusive).
 *
 * One deliberate difference: etcd's interval tree reads a delete's range end "\0" literally
 * (an empty interval), so etcd accepts `txn{delete [a, "\0"), put b}` and writes b twice in one
 * revision. Here "\0" means "no upper bound", so that txn is refused with duplicate-key: the
 * backend keys records by (revision, key) and a key is changed at most once per revision.
 */
function checkIntervals(ops: readonly RequestOp[]): { puts: Set<string>; dels: Interval[]; error?: KvdError } {
  const dels: Interval[] = [];
  for (const op of ops) {
    if (op.type !== 'delete-range') continue;
    const { key, rangeEnd } = op.request;
    if (rangeEnd.length === 0) dels.push({ start: latin1(key), end: undefined });
    else if (rangeEnd.length === 1 && rangeEnd[0] === 0) dels.push({ start: latin1(key), end: '' });
    else dels.push({ start: latin1(key), end: latin1(rangeEnd) });
  }
  const puts = new Set<string>();
  const duplicate = (): { puts: Set<string>; dels: Interval[]; error: KvdError } => ({ puts, dels, error: new KvdError('duplicate-key') });
  for (const op of ops) {
    if (op.type !== 'txn') continue;
    const then = checkIntervals(op.request.success);
    if (then.error !== undefined) return { puts, dels, error: then.error };
    const otherwise = checkIntervals(op.request.failure);
    if (otherwise.error !== undefined) return { puts, dels, error: otherwise.error };
    for (const key of then.puts) {
      if (puts.has(key) || intersectsPoint(dels, key)) return duplicate();
      puts.add(key);
    }
    for (const key of otherwise.puts) {
      if (puts.has(key) && !then.puts.has(key)) return duplicate();
      if (intersectsPoint(dels, key)) return duplicate();
      puts.add(key);
    }
    dels.push(...then.dels, ...otherwise.dels);
  }
  for (const op of ops) {
    if (op.type !== 'put') continue;
    const key = latin1(op.request.key);
    if (puts.has(key) || intersectsPoint(dels, key)) return duplicate();
    puts.add(key);
  }
  return { puts, dels };
}

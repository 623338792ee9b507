/**
 * Conversions between the client's public value types and protobuf message fields: bytes,
 * 64-bit integers (bigint outside, decimal strings on the wire; never a lossy number), key
 * ranges and response headers.
 */

/** A key or value: a string (encoded as UTF-8) or raw bytes. */
export type Bytes = string | Uint8Array;

/**
 * A revision, lease id or other 64-bit integer as callers may pass it: a bigint, a decimal
 * string, or a number only when it is a safe integer (anything lossy is refused).
 */
export type Int64Like = bigint | string | number;

/** Encodes a key or value for the wire. */
export function toBuffer(value: Bytes): Buffer {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** Parses an int64 from a caller (bigint or decimal string), refusing anything inexact. */
export function toBigInt(value: Int64Like): bigint {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value);
  if (typeof value === 'string' && /^-?[0-9]+$/.test(value.trim())) return BigInt(value.trim());
  throw new TypeError(`not an exact 64-bit integer: ${String(value)}`);
}

/** Formats an int64 for a protobuf field (decimal string, as proto-loader accepts). */
export function toWire(value: Int64Like): string {
  return toBigInt(value).toString();
}

/** Reads an int64 field as proto-loader delivers it (decimal string with `longs: String`). */
export function fromWire(value: unknown): bigint {
  if (typeof value === 'string' && value !== '') return BigInt(value);
  if (typeof value === 'number') return BigInt(value);
  if (typeof value === 'bigint') return value;
  return 0n;
}

/** Reads a uint32/int32 field. */
export function fromWireNumber(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && value !== '') return Number(value);
  return 0;
}

/** Reads a bytes field (Buffer with `bytes: Buffer`; empty when unset). */
export function bytesFromWire(value: unknown): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (typeof value === 'string') return Buffer.from(value, 'base64');
  return Buffer.alloc(0);
}

/**
 * The range end that selects every key starting with `prefix` (etcd's GetPrefixRangeEnd):
 * the prefix with its last byte below 0xff incremented, trailing 0xff bytes dropped; for an
 * empty or all-0xff prefix, `\0` (all keys from `prefix` on).
 */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix);
  for (let index = end.length - 1; index >= 0; index -= 1) {
    if (end[index] < 0xff) {
      end[index] += 1;
      return end.subarray(0, index + 1);
    }
  }
  return Buffer.from([0]);
}

/** The header every response carries, with exact 64-bit ids. */
export interface ResponseHeader {
  /** Cluster id. */
  readonly clusterId: bigint;
  /** Id of the member that answered. */
  readonly memberId: bigint;
  /** Store revision when the request was served (0 for non-KV calls). */
  readonly revision: bigint;
  /** Raft term of the member that answered. */
  readonly raftTerm: bigint;
}

/** Decodes a ResponseHeader message (zeroes when absent). */
export function decodeHeader(raw: unknown): ResponseHeader {
  const header = (raw ?? {}) as Record<string, unknown>;
  return {
    clusterId: fromWire(header.cluster_id),
    memberId: fromWire(header.member_id),
    revision: fromWire(header.revision),
    raftTerm: fromWire(header.raft_term),
  };
}

/** Formats a 64-bit id as etcd prints it: lowercase hex without leading zeros (Go `%x`). */
export function hexId(id: bigint): string {
  return BigInt.asUintN(64, id).toString(16);
}

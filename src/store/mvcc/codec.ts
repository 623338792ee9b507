/**
 * Backend (LevelDB) layout and record encoding of the MVCC store.
 *
 * Key namespaces (first byte):
 * - `r` + main revision (8 bytes big-endian) + user key → one record: the key's value at that
 *   revision, or a tombstone. A key is modified at most once per main revision, so this is unique;
 *   big-endian revisions make LevelDB order = revision order.
 * - `m` + UTF-8 name → opaque meta value written by the server through `applyBatch({meta})`.
 * - `s` + name → the store's own state (consistent index, revision, compaction progress).
 *
 * Record value: byte 0 kind (0 put, 1 tombstone), bytes 1..4 sub revision (u32 BE: the position
 * of the change within its revision, etcd's `sub`); for puts then create revision (u48 BE),
 * version (u48 BE), lease (u64 BE) and the value bytes. The encoding is deterministic, which
 * HashKV relies on.
 */
import { assert } from '../../util/assert.js';
import type { KeyValue, LeaseId } from './types.js';

/** First byte of revision records ('r'). */
export const PREFIX_REVISION = 0x72;
/** First byte of meta entries ('m'). */
export const PREFIX_META = 0x6d;
/** First byte of the store's own state ('s'). */
export const PREFIX_SYSTEM = 0x73;

const KIND_PUT = 0;
const KIND_TOMBSTONE = 1;
const PUT_HEADER_BYTES = 1 + 4 + 6 + 6 + 8;
const TOMBSTONE_BYTES = 1 + 4;
const MAX_U48 = 2 ** 48 - 1;

/** System keys. */
export const SYSTEM_KEYS = {
  consistentIndex: systemKey('consistent-index'),
  revision: systemKey('revision'),
  compactScheduled: systemKey('compact-scheduled'),
  compactFinished: systemKey('compact-finished'),
  format: systemKey('format'),
} as const;

/** Layout version written at `s:format`. */
export const FORMAT_VERSION = 1;

function systemKey(name: string): Buffer {
  return Buffer.concat([Buffer.from([PREFIX_SYSTEM]), Buffer.from(name, 'utf8')]);
}

/** `r` + revision + key (key as a latin1 string). */
export function revisionKey(revision: number, key: string): Buffer {
  const out = Buffer.allocUnsafe(9 + key.length);
  out[0] = PREFIX_REVISION;
  writeU64(out, 1, revision);
  out.write(key, 9, 'latin1');
  return out;
}

/** First backend key of revision `revision` (inclusive bound for scans). */
export function revisionBound(revision: number): Buffer {
  const out = Buffer.alloc(9);
  out[0] = PREFIX_REVISION;
  writeU64(out, 1, revision);
  return out;
}

/** Splits an `r` key into its revision and user key (latin1 string). */
export function parseRevisionKey(levelKey: Uint8Array): { revision: number; key: string } {
  const buffer = asBuffer(levelKey);
  assert(buffer[0] === PREFIX_REVISION && buffer.length > 9, 'revision key shape');
  return { revision: readU64(buffer, 1), key: buffer.toString('latin1', 9) };
}

/** Backend key of meta entry `name`. */
export function metaKey(name: string): Buffer {
  return Buffer.concat([Buffer.from([PREFIX_META]), Buffer.from(name, 'utf8')]);
}

/** Meta entry name from its backend key. */
export function parseMetaKey(levelKey: Uint8Array): string {
  return asBuffer(levelKey).toString('utf8', 1);
}

/** An 8-byte big-endian unsigned number value (for system keys). */
export function encodeNumber(value: number): Buffer {
  const out = Buffer.alloc(8);
  writeU64(out, 0, value);
  return out;
}

/** Inverse of {@link encodeNumber}. */
export function decodeNumber(value: Uint8Array): number {
  assert(value.length === 8, 'number value is 8 bytes');
  return readU64(asBuffer(value), 0);
}

/** A revision record's value, decoded (`value` is a view into the raw bytes). */
export type DecodedRecord =
  | { readonly kind: 'put'; readonly sub: number; readonly created: number; readonly version: number; readonly lease: LeaseId; readonly value: Uint8Array }
  | { readonly kind: 'tombstone'; readonly sub: number };

/** Encodes a put record (deterministic). */
export function encodePut(options: { sub: number; created: number; version: number; lease: LeaseId; value: Uint8Array }): Buffer {
  const out = Buffer.allocUnsafe(PUT_HEADER_BYTES + options.value.length);
  out[0] = KIND_PUT;
  out.writeUInt32BE(options.sub, 1);
  assert(options.created <= MAX_U48 && options.version <= MAX_U48, 'revision fits 48 bits');
  out.writeUIntBE(options.created, 5, 6);
  out.writeUIntBE(options.version, 11, 6);
  out.writeBigUInt64BE(BigInt.asUintN(64, options.lease), 17);
  out.set(options.value, PUT_HEADER_BYTES);
  return out;
}

/** Encodes a tombstone record. */
export function encodeTombstone(sub: number): Buffer {
  const out = Buffer.allocUnsafe(TOMBSTONE_BYTES);
  out[0] = KIND_TOMBSTONE;
  out.writeUInt32BE(sub, 1);
  return out;
}

/** Decodes a revision record; asserts its shape. */
export function decodeRecord(raw: Uint8Array): DecodedRecord {
  const buffer = asBuffer(raw);
  const kind = buffer[0];
  if (kind === KIND_TOMBSTONE) {
    assert(buffer.length === TOMBSTONE_BYTES, 'tombstone record size');
    return { kind: 'tombstone', sub: buffer.readUInt32BE(1) };
  }
  assert(kind === KIND_PUT && buffer.length >= PUT_HEADER_BYTES, 'put record shape');
  return {
    kind: 'put',
    sub: buffer.readUInt32BE(1),
    created: buffer.readUIntBE(5, 6),
    version: buffer.readUIntBE(11, 6),
    lease: buffer.readBigUInt64BE(17),
    value: new Uint8Array(buffer.buffer, buffer.byteOffset + PUT_HEADER_BYTES, buffer.length - PUT_HEADER_BYTES),
  };
}

/** Only the fields the index needs (no value copy), for the rebuild scan. */
export function decodeRecordHeader(raw: Uint8Array):
  | { readonly kind: 'put'; readonly created: number; readonly version: number; readonly lease: LeaseId }
  | { readonly kind: 'tombstone' } {
  const buffer = asBuffer(raw);
  if (buffer[0] === KIND_TOMBSTONE) return { kind: 'tombstone' };
  assert(buffer[0] === KIND_PUT && buffer.length >= PUT_HEADER_BYTES, 'put record shape');
  const leaseHigh = buffer.readUInt32BE(17);
  const leaseLow = buffer.readUInt32BE(21);
  const lease = leaseHigh === 0 && leaseLow === 0 ? 0n : buffer.readBigUInt64BE(17);
  return { kind: 'put', created: buffer.readUIntBE(5, 6), version: buffer.readUIntBE(11, 6), lease };
}

/**
 * The key-value of a live key from its put record at `revision` (its mod revision). The value is
 * a view into `raw`; `value: 'omit'` (keys_only) leaves it empty so `raw` is not retained.
 */
export function toKeyValue(key: string, revision: number, raw: Uint8Array, value: 'include' | 'omit' = 'include'): KeyValue {
  const record = decodeRecord(raw);
  assert(record.kind === 'put', 'a live key resolves to a put record');
  return {
    key: keyBytes(key), createRevision: record.created, modRevision: revision, version: record.version,
    value: value === 'include' ? record.value : EMPTY_VALUE, lease: record.lease,
  };
}

const EMPTY_VALUE = new Uint8Array(0);

/** Key bytes from a latin1 key string (a fresh plain Uint8Array). */
export function keyBytes(key: string): Uint8Array {
  const buffer = Buffer.from(key, 'latin1');
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.length);
}

/** Latin1 key string from key bytes (string order = byte order). */
export function keyString(bytes: Uint8Array): string {
  return asBuffer(bytes).toString('latin1');
}

/** A Buffer view of the same bytes (no copy). */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function writeU64(out: Buffer, offset: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, 'u64 value is a safe non-negative integer');
  out.writeUInt32BE(Math.floor(value / 2 ** 32), offset);
  out.writeUInt32BE(value >>> 0, offset + 4);
}

function readU64(buffer: Buffer, offset: number): number {
  return buffer.readUInt32BE(offset) * 2 ** 32 + buffer.readUInt32BE(offset + 4);
}

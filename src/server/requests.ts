/**
 * What travels through Raft: the envelope of a normal entry's data. Every member decodes and
 * applies the same bytes, so the codec must be deterministic and exact (bigint ids survive).
 *
 * An envelope carries the request id (unique per proposing member, so the member that received
 * the client request can find its waiter when the entry is applied) and the request itself.
 */
import { Packr } from 'msgpackr';
import type { WriteRequest, LeaseId } from '../store/mvcc/types.js';
import type { AuthMutation, Principal } from '../store/auth/index.js';
import type { NodeId } from '../raft/types.js';
import { assert } from '../util/assert.js';
import type { AlarmChangeRequest } from './alarms.js';
import { Slab } from '../util/slab.js';

/** A lease granted with `ttlSeconds`; `id` chosen by the client or by the proposing member. */
export interface LeaseGrantRequest { readonly type: 'lease-grant'; readonly id: LeaseId; readonly ttlSeconds: number }
/** Revoke a lease and delete its keys in one revision. */
export interface LeaseRevokeRequest { readonly type: 'lease-revoke'; readonly id: LeaseId }
/** Record remaining TTLs so long leases survive restarts and leader changes (etcd checkpoints). */
export interface LeaseCheckpointRequest { readonly type: 'lease-checkpoint'; readonly checkpoints: readonly { readonly id: LeaseId; readonly remainingTtlSeconds: number }[] }
/** A member publishes its name and client URLs after start (etcd's attribute publish). */
export interface MemberAttributesRequest { readonly type: 'member-attributes'; readonly memberId: NodeId; readonly name: string; readonly clientUrls: readonly string[] }

/** Every request that is applied through the log. */
export type InternalRequest =
  | WriteRequest
  | LeaseGrantRequest
  | LeaseRevokeRequest
  | LeaseCheckpointRequest
  | MemberAttributesRequest
  | AlarmChangeRequest
  | AuthMutation;

/** The data of a normal entry. */
export interface Envelope {
  /** Unique per proposer: high 16 bits from the member id, low 48 a counter (as etcd's idutil). */
  readonly id: bigint;
  readonly request: InternalRequest;
  /**
   * Who the request acts for (etcd's RequestHeader username and auth revision): present on
   * every client request (user '' when anonymous), absent on the member's own requests (lease
   * expiry, checkpoints, attributes), which auth never refuses. The applier decides with it.
   */
  readonly auth?: Principal;
}

// int64AsType: 'bigint' decodes every 64-bit integer as bigint, so ids never lose precision;
// records off keeps the encoding self-describing (no shared structure state between members).
const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true });
/** Slabs for put envelopes: 8 KiB, as Node's Buffer pool, about 24 envelopes of a 256-byte value. */
const ENVELOPE_SLAB = new Slab(8 * 1024);

/**
 * Encodes an envelope as entry data, in a buffer shared only with other entries. msgpackr packs
 * the output of every Packr in the process into one module-wide buffer that only grows (the peer
 * transport's frames take it past 1 MB), and entry data lives as long as its entry stays in the
 * in-memory Raft log: a view into that buffer kept it whole for a few entries, while the frames
 * that filled the rest were long gone (a leader that had loaded 1M keys held three times its log
 * in such buffers). A put's envelope is cut from ENVELOPE_SLAB, whose slabs hold consecutive
 * entries only (as a follower's entries are views into the frame that brought them); others are
 * copied out of msgpackr's buffer.
 */
export function encodeEnvelope(envelope: Envelope): Uint8Array {
  return encodePutEnvelope(envelope) ?? new Uint8Array(packr.pack(envelope));
}

/** Decodes entry data produced by {@link encodeEnvelope}. Throws on bytes that are not one. */
export function decodeEnvelope(data: Uint8Array): Envelope {
  const put = decodePutEnvelope(data);
  if (put !== undefined) return put;
  const value = packr.unpack(data) as Envelope;
  assert(typeof value === 'object' && value !== null && typeof value.id === 'bigint' && typeof value.request?.type === 'string', 'entry data is an envelope');
  return value;
}

/**
 * Generates request ids unique across members and restarts: 16 bits of the member id, then a
 * 48-bit counter seeded from the clock at start (etcd's idutil.Generator).
 */
export class RequestIdGenerator {
  readonly #prefix: bigint;
  #counter: bigint;

  constructor(options: { memberId: NodeId; nowMs: number }) {
    this.#prefix = (options.memberId & 0xffffn) << 48n;
    this.#counter = (BigInt(Math.floor(options.nowMs)) << 8n) & 0xffff_ffff_ffffn;
  }

  /** The next id. */
  next(): bigint {
    this.#counter = (this.#counter + 1n) & 0xffff_ffff_ffffn;
    return this.#prefix | this.#counter;
  }
}

// ─── puts, written and read without msgpackr's general code ───
//
// A put is most of what travels through the log, and msgpackr's general encoder and decoder were
// about 5 % of a leader's CPU under etcd's put benchmark (and as much of a follower's, decoding).
// These two write and read exactly the bytes msgpackr writes for a put's envelope: a map16 of
// id, request (a map16 of type and request, the PutRequest a map16 of its six fields in the order
// decodePutRequest builds them) and auth when present (user, and tokenRevision when set). The
// format of the log is unchanged: any member, of this build or an older one, reads these entries
// as it always did, and anything else (other requests, a longer user name, a tokenRevision beyond
// 32 bits) still goes through msgpackr. test/unit/server/requests.test.ts compares the bytes with
// msgpackr's, and the decoded envelopes with msgpackr's decoding.

const MAP16 = 0xde;
const BIN8 = 0xc4;
const BIN16 = 0xc5;
const BIN32 = 0xc6;
const INT64 = 0xd3;
const UINT64 = 0xcf;
const UINT8 = 0xcc;
const UINT16 = 0xcd;
const UINT32 = 0xce;
const FALSE = 0xc2;
const TRUE = 0xc3;
const INT64_MIN = -(2n ** 63n);
const INT64_END = 2n ** 63n;
const UINT64_END = 2n ** 64n;

/** The fixstr bytes of a key (msgpackr writes keys shorter than 32 characters as fixstr). */
function fixstr(text: string): Buffer {
  const bytes = Buffer.from(text, 'latin1');
  return Buffer.concat([Buffer.from([0xa0 | bytes.length]), bytes]);
}

const KEY_ID = fixstr('id');
const KEY_REQUEST = fixstr('request');
const KEY_TYPE = fixstr('type');
const VALUE_PUT = fixstr('put');
const KEY_KEY = fixstr('key');
const KEY_VALUE = fixstr('value');
const KEY_LEASE = fixstr('lease');
const KEY_PREV_KV = fixstr('prevKv');
const KEY_IGNORE_VALUE = fixstr('ignoreValue');
const KEY_IGNORE_LEASE = fixstr('ignoreLease');
const KEY_AUTH = fixstr('auth');
/** "type", "put", "request": the inner request map's first entry and its second key. */
const TYPE_PUT_REQUEST = Buffer.concat([KEY_TYPE, VALUE_PUT, KEY_REQUEST]);
const KEY_USER = fixstr('user');
const KEY_TOKEN_REVISION = fixstr('tokenRevision');

/** Whether msgpackr writes `value` as a 64-bit integer (int64, else uint64): 9 bytes. */
function fits64(value: bigint): boolean {
  return value >= INT64_MIN && value < UINT64_END;
}

function binBytes(length: number): number {
  return (length < 0x100 ? 2 : length < 0x10000 ? 3 : 5) + length;
}

/** A user name msgpackr writes as fixstr: under 32 characters, all ASCII. */
function isShortAscii(text: string): boolean {
  if (text.length >= 32) return false;
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) >= 0x80) return false;
  return true;
}

function uintBytes(value: number): number {
  return value < 0x80 ? 1 : value < 0x100 ? 2 : value < 0x10000 ? 3 : 5;
}

/** A put's envelope in msgpackr's bytes, or undefined when it is not a put of the usual shape. */
function encodePutEnvelope(envelope: Envelope): Uint8Array | undefined {
  const { id, request, auth } = envelope;
  if (request.type !== 'put') return undefined;
  const put = request.request;
  const { key, value, lease } = put;
  if (!(key instanceof Uint8Array) || !(value instanceof Uint8Array) || typeof lease !== 'bigint' || typeof id !== 'bigint') return undefined;
  if (typeof put.prevKv !== 'boolean' || typeof put.ignoreValue !== 'boolean' || typeof put.ignoreLease !== 'boolean') return undefined;
  if (!fits64(id) || !fits64(lease)) return undefined;
  let authBytes = 0;
  if (auth !== undefined) {
    const { user, tokenRevision } = auth;
    if (typeof user !== 'string' || !isShortAscii(user)) return undefined;
    if (tokenRevision !== undefined && (typeof tokenRevision !== 'number' || tokenRevision >>> 0 !== tokenRevision)) return undefined;
    // No other field (msgpackr would write it), and no tokenRevision key holding undefined (a nil).
    if (Object.keys(auth).length !== (tokenRevision === undefined ? 1 : 2)) return undefined;
    authBytes = KEY_AUTH.length + 3 + KEY_USER.length + 1 + user.length + (tokenRevision === undefined ? 0 : KEY_TOKEN_REVISION.length + uintBytes(tokenRevision));
  }
  if ('auth' in envelope && auth === undefined) return undefined; // msgpackr would write a nil
  const size = 3 + KEY_ID.length + 9 + KEY_REQUEST.length + 3 + KEY_TYPE.length + VALUE_PUT.length + KEY_REQUEST.length + 3
    + KEY_KEY.length + binBytes(key.length) + KEY_VALUE.length + binBytes(value.length) + KEY_LEASE.length + 9
    + KEY_PREV_KV.length + 1 + KEY_IGNORE_VALUE.length + 1 + KEY_IGNORE_LEASE.length + 1 + authBytes;
  // Cut from a slab of envelopes only (see encodeEnvelope): a leader's entries sit side by side
  // in its log and are compacted together.
  const out = ENVELOPE_SLAB.alloc(size);
  const view = new DataView(out.buffer, out.byteOffset, size);
  let at = writeMap16(out, view, 0, auth === undefined ? 2 : 3);
  out.set(KEY_ID, at);
  at = writeBigint(out, view, at + KEY_ID.length, id);
  out.set(KEY_REQUEST, at);
  at = writeMap16(out, view, at + KEY_REQUEST.length, 2);
  out.set(TYPE_PUT_REQUEST, at);
  at = writeMap16(out, view, at + TYPE_PUT_REQUEST.length, 6);
  out.set(KEY_KEY, at);
  at = writeBin(out, view, at + KEY_KEY.length, key);
  out.set(KEY_VALUE, at);
  at = writeBin(out, view, at + KEY_VALUE.length, value);
  out.set(KEY_LEASE, at);
  at = writeBigint(out, view, at + KEY_LEASE.length, lease);
  out.set(KEY_PREV_KV, at);
  at += KEY_PREV_KV.length;
  out[at++] = put.prevKv ? TRUE : FALSE;
  out.set(KEY_IGNORE_VALUE, at);
  at += KEY_IGNORE_VALUE.length;
  out[at++] = put.ignoreValue ? TRUE : FALSE;
  out.set(KEY_IGNORE_LEASE, at);
  at += KEY_IGNORE_LEASE.length;
  out[at++] = put.ignoreLease ? TRUE : FALSE;
  if (auth !== undefined) {
    out.set(KEY_AUTH, at);
    at = writeMap16(out, view, at + KEY_AUTH.length, auth.tokenRevision === undefined ? 1 : 2);
    out.set(KEY_USER, at);
    at += KEY_USER.length;
    const user = auth.user;
    out[at++] = 0xa0 | user.length;
    for (let i = 0; i < user.length; i++) out[at++] = user.charCodeAt(i);
    if (auth.tokenRevision !== undefined) {
      out.set(KEY_TOKEN_REVISION, at);
      at = writeUint(out, view, at + KEY_TOKEN_REVISION.length, auth.tokenRevision);
    }
  }
  assert(at === size, 'a put envelope fills its buffer');
  return out;
}

function writeMap16(out: Uint8Array, view: DataView, at: number, entries: number): number {
  out[at] = MAP16;
  view.setUint16(at + 1, entries);
  return at + 3;
}

function writeBigint(out: Uint8Array, view: DataView, at: number, value: bigint): number {
  if (value < INT64_END) {
    out[at] = INT64;
    view.setBigInt64(at + 1, value);
  } else {
    out[at] = UINT64;
    view.setBigUint64(at + 1, value);
  }
  return at + 9;
}

function writeBin(out: Uint8Array, view: DataView, at: number, bytes: Uint8Array): number {
  const length = bytes.length;
  let start: number;
  if (length < 0x100) {
    out[at] = BIN8;
    out[at + 1] = length;
    start = at + 2;
  } else if (length < 0x10000) {
    out[at] = BIN16;
    view.setUint16(at + 1, length);
    start = at + 3;
  } else {
    out[at] = BIN32;
    view.setUint32(at + 1, length);
    start = at + 5;
  }
  out.set(bytes, start);
  return start + length;
}

function writeUint(out: Uint8Array, view: DataView, at: number, value: number): number {
  if (value < 0x80) {
    out[at] = value;
    return at + 1;
  }
  if (value < 0x100) {
    out[at] = UINT8;
    out[at + 1] = value;
    return at + 2;
  }
  if (value < 0x10000) {
    out[at] = UINT16;
    view.setUint16(at + 1, value);
    return at + 3;
  }
  out[at] = UINT32;
  view.setUint32(at + 1, value);
  return at + 5;
}

/** Reads what {@link encodePutEnvelope} writes; undefined for anything else (msgpackr then reads it). */
function decodePutEnvelope(data: Uint8Array): Envelope | undefined {
  const reader = new PutReader(data);
  const entries = reader.map16();
  if ((entries !== 2 && entries !== 3) || !reader.match(KEY_ID)) return undefined;
  const id = reader.bigint();
  if (id === undefined || !reader.match(KEY_REQUEST) || reader.map16() !== 2 || !reader.match(KEY_TYPE) || !reader.match(VALUE_PUT) || !reader.match(KEY_REQUEST) || reader.map16() !== 6) return undefined;
  if (!reader.match(KEY_KEY)) return undefined;
  const key = reader.bin();
  if (key === undefined || !reader.match(KEY_VALUE)) return undefined;
  const value = reader.bin();
  if (value === undefined || !reader.match(KEY_LEASE)) return undefined;
  const lease = reader.bigint();
  if (lease === undefined || !reader.match(KEY_PREV_KV)) return undefined;
  const prevKv = reader.bool();
  if (prevKv === undefined || !reader.match(KEY_IGNORE_VALUE)) return undefined;
  const ignoreValue = reader.bool();
  if (ignoreValue === undefined || !reader.match(KEY_IGNORE_LEASE)) return undefined;
  const ignoreLease = reader.bool();
  if (ignoreLease === undefined) return undefined;
  const request: InternalRequest = { type: 'put', request: { key, value, lease, prevKv, ignoreValue, ignoreLease } };
  if (entries === 2) return reader.done() ? { id, request } : undefined;
  if (!reader.match(KEY_AUTH)) return undefined;
  const fields = reader.map16();
  if ((fields !== 1 && fields !== 2) || !reader.match(KEY_USER)) return undefined;
  const user = reader.shortAscii();
  if (user === undefined) return undefined;
  if (fields === 1) return reader.done() ? { id, request, auth: { user } } : undefined;
  if (!reader.match(KEY_TOKEN_REVISION)) return undefined;
  const tokenRevision = reader.uint();
  if (tokenRevision === undefined || !reader.done()) return undefined;
  return { id, request, auth: { user, tokenRevision } };
}

/** A cursor over entry data for {@link decodePutEnvelope}: each read returns undefined on anything unexpected. */
class PutReader {
  readonly #data: Uint8Array;
  readonly #view: DataView;
  #at = 0;

  constructor(data: Uint8Array) {
    this.#data = data;
    this.#view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  done(): boolean {
    return this.#at === this.#data.length;
  }

  map16(): number | undefined {
    const at = this.#at;
    if (at + 3 > this.#data.length || this.#data[at] !== MAP16) return undefined;
    this.#at = at + 3;
    return this.#view.getUint16(at + 1);
  }

  /** Moves past `expected` when the data has exactly those bytes next; false (and stays) otherwise. */
  match(expected: Buffer): boolean {
    const at = this.#at;
    if (at + expected.length > this.#data.length) return false;
    for (let i = 0; i < expected.length; i++) if (this.#data[at + i] !== expected[i]) return false;
    this.#at = at + expected.length;
    return true;
  }

  bigint(): bigint | undefined {
    const at = this.#at;
    if (at + 9 > this.#data.length) return undefined;
    const tag = this.#data[at];
    if (tag !== INT64 && tag !== UINT64) return undefined;
    this.#at = at + 9;
    return tag === INT64 ? this.#view.getBigInt64(at + 1) : this.#view.getBigUint64(at + 1);
  }

  bin(): Uint8Array | undefined {
    const at = this.#at;
    const data = this.#data;
    if (at + 2 > data.length) return undefined;
    let length: number;
    let start: number;
    if (data[at] === BIN8) {
      length = data[at + 1];
      start = at + 2;
    } else if (data[at] === BIN16 && at + 3 <= data.length) {
      length = this.#view.getUint16(at + 1);
      start = at + 3;
    } else if (data[at] === BIN32 && at + 5 <= data.length) {
      length = this.#view.getUint32(at + 1);
      start = at + 5;
    } else {
      return undefined;
    }
    if (start + length > data.length) return undefined;
    this.#at = start + length;
    // A view, as msgpackr answers binary values.
    return data.subarray(start, start + length);
  }

  bool(): boolean | undefined {
    const tag = this.#data[this.#at];
    if (tag !== TRUE && tag !== FALSE) return undefined;
    this.#at += 1;
    return tag === TRUE;
  }

  shortAscii(): string | undefined {
    const at = this.#at;
    const data = this.#data;
    if (at >= data.length || (data[at] & 0xe0) !== 0xa0) return undefined;
    const length = data[at] & 0x1f;
    if (at + 1 + length > data.length) return undefined;
    let text = '';
    for (let i = at + 1; i < at + 1 + length; i++) {
      if (data[i] >= 0x80) return undefined;
      text += String.fromCharCode(data[i]);
    }
    this.#at = at + 1 + length;
    return text;
  }

  uint(): number | undefined {
    const at = this.#at;
    const data = this.#data;
    if (at >= data.length) return undefined;
    const tag = data[at];
    if (tag < 0x80) {
      this.#at = at + 1;
      return tag;
    }
    const size = tag === UINT8 ? 1 : tag === UINT16 ? 2 : tag === UINT32 ? 4 : 0;
    if (size === 0 || at + 1 + size > data.length) return undefined;
    this.#at = at + 1 + size;
    return size === 1 ? data[at + 1] : size === 2 ? this.#view.getUint16(at + 1) : this.#view.getUint32(at + 1);
  }
}

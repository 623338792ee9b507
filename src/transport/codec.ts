/**
 * Wire formats of the peer transport. Everything that crosses a peer connection is encoded and
 * validated here, and nowhere else.
 *
 * A *frame* is one gRPC message on a peer stream: a msgpack array
 * `[FRAME_VERSION, tuple, tuple, ...]` with one positional tuple per Raft message (no keys on
 * the wire). Member ids travel as msgpack 64-bit integers and decode as exact `bigint`s; terms
 * and indexes travel as msgpack numbers and are range-checked on decode. Byte payloads travel as
 * msgpack `bin` (never base64).
 *
 * Entries (which dominate traffic) are not msgpack objects: the entries of one message are one
 * `bin` holding a length-prefixed concatenation (see {@link encodeEntries}). Decoded entry data and
 * contexts are `Uint8Array` views into the received frame (zero copy): consumers must honour
 * `byteOffset`/`byteLength` and never use `.buffer` alone.
 *
 * Decoding never throws on bad input: it returns `{ ok: false, reason }` for garbage, truncated
 * or malformed frames, wrong types, out-of-range numbers and unknown message kinds.
 */
import { Packr, Unpackr } from 'msgpackr';
import { assert, unreachable } from '../util/assert.js';
import { TWO_POW_32, joinU64 } from '../util/u64.js';
import type {
  CampaignKind,
  ConfState,
  Entry,
  EntryType,
  Message,
  MessageType,
  NodeId,
  ProposeRefusal,
  SnapshotMessage,
} from '../raft/types.js';

/** Version tag leading every frame; a frame with another version is refused. */
export const FRAME_VERSION = 1;
/** Version of the stream handshake. */
export const HANDSHAKE_VERSION = 1;

/** The outcome of decoding untrusted bytes. */
export type DecodeResult<T> = { ok: true; value: T } | { ok: false; reason: string };

/** What a stream's first frame says: who is calling whom, in which cluster. */
export interface Handshake {
  readonly clusterId: bigint;
  readonly from: NodeId;
  readonly to: NodeId;
  /**
   * The sender's advertised peer URLs (stream handshakes only; optional on the wire). A receiver
   * that does not know the sender yet may answer it there (see Transport: provisional routes).
   */
  readonly urls?: readonly string[];
}

/** Bounds of the URL list a handshake may carry. */
export const HANDSHAKE_MAX_URLS = 16;
export const HANDSHAKE_MAX_URL_LENGTH = 512;

const MAX_UINT64 = (1n << 64n) - 1n;
/** Bytes of fixed header per encoded entry: term (8) + index (8) + type (1) + data length (4). */
const ENTRY_HEADER_BYTES = 21;
const HANDSHAKE_TAG = 'kvd-peer-hello';
const HANDSHAKE_ACK_TAG = 'kvd-peer-ack';

/** Shared msgpack encoder: no records, no structured clone, so output is plain msgpack. */
const packr = new Packr({ useRecords: false, structuredClone: false, moreTypes: false, bundleStrings: false });
/** Shared decoder: 64-bit integers decode as bigint so member ids stay exact. */
const unpackr = new Unpackr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true, moreTypes: false });

/** Numeric codes of message kinds on the wire. Never renumber: peers of one version must agree. */
const TYPE_CODES = {
  append: 1,
  'append-response': 2,
  vote: 3,
  'pre-vote': 4,
  'vote-response': 5,
  'pre-vote-response': 6,
  heartbeat: 7,
  'heartbeat-response': 8,
  snapshot: 9,
  'timeout-now': 10,
  'read-index': 11,
  'read-index-response': 12,
  propose: 13,
  'transfer-leader': 14,
  'propose-refused': 15,
} as const satisfies Record<MessageType, number>;

const CAMPAIGN_CODES: Record<CampaignKind, number> = { election: 0, transfer: 1 };

/** Numeric codes of proposal refusals on the wire. Never renumber. */
const REFUSAL_CODES: Record<ProposeRefusal, number> = {
  'not-leader': 0,
  'transfer-in-progress': 1,
  'too-many-uncommitted': 2,
  'conf-change-pending': 3,
  'not-member': 4,
};
const REFUSALS_BY_CODE = new Map<unknown, ProposeRefusal>(Object.entries(REFUSAL_CODES).map(([reason, code]) => [code, reason as ProposeRefusal]));

// ---------------------------------------------------------------------------------------------
// Encoding

/** Asserts a term/index is representable (a bug in the caller otherwise). */
function checkCounter(value: number, what: string): number {
  if (!(Number.isSafeInteger(value) && value >= 0)) assert(false, `${what} must be a non-negative safe integer, got ${value}`);
  return value;
}

function checkId(value: NodeId, what: string): bigint {
  if (!(typeof value === 'bigint' && value >= 0n && value <= MAX_UINT64)) assert(false, `${what} must be a 64-bit member id`);
  return value;
}

/**
 * Encodes entries as one buffer: `count:u32` then per entry `term:u64 index:u64 type:u8
 * length:u32 data`. Big-endian; u64 counters are written as two u32 halves (they are < 2^53).
 */
export function encodeEntries(entries: readonly Entry[]): Uint8Array {
  // Indexed loops: the array iterator's results were an allocation per entry here.
  let size = 4;
  for (let i = 0; i < entries.length; i++) size += ENTRY_HEADER_BYTES + entries[i].data.byteLength;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(0, entries.length);
  let position = 4;
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    const term = checkCounter(entry.term, 'entry term');
    const index = checkCounter(entry.index, 'entry index');
    view.setUint32(position, Math.floor(term / TWO_POW_32));
    view.setUint32(position + 4, term >>> 0);
    view.setUint32(position + 8, Math.floor(index / TWO_POW_32));
    view.setUint32(position + 12, index >>> 0);
    out[position + 16] = entry.type === 'normal' ? 0 : 1;
    view.setUint32(position + 17, entry.data.byteLength);
    out.set(entry.data, position + ENTRY_HEADER_BYTES);
    position += ENTRY_HEADER_BYTES + entry.data.byteLength;
  }
  assert(position === size, 'entries encoding filled its buffer exactly');
  return out;
}

function confStateTuple(confState: ConfState): [bigint[], bigint[]] {
  return [
    confState.voters.map((id) => checkId(id, 'voter id')),
    confState.learners.map((id) => checkId(id, 'learner id')),
  ];
}

function messageTuple(message: Message): unknown[] {
  const head = [
    TYPE_CODES[message.type],
    checkId(message.from, 'from'),
    checkId(message.to, 'to'),
    checkCounter(message.term, 'term'),
  ];
  switch (message.type) {
    case 'append':
      return [
        ...head,
        checkCounter(message.logTerm, 'logTerm'),
        checkCounter(message.index, 'index'),
        checkCounter(message.commit, 'commit'),
        encodeEntries(message.entries),
      ];
    case 'append-response':
      return [
        ...head,
        checkCounter(message.index, 'index'),
        message.reject,
        checkCounter(message.rejectHint, 'rejectHint'),
        checkCounter(message.logTerm, 'logTerm'),
      ];
    case 'vote':
    case 'pre-vote':
      return [
        ...head,
        checkCounter(message.logTerm, 'logTerm'),
        checkCounter(message.index, 'index'),
        CAMPAIGN_CODES[message.campaign],
      ];
    case 'vote-response':
    case 'pre-vote-response':
      return [...head, message.reject];
    case 'heartbeat':
      return [...head, checkCounter(message.commit, 'commit'), message.context];
    case 'heartbeat-response':
      return [...head, message.context];
    case 'snapshot': {
      const metadata = message.snapshot.metadata;
      return [
        ...head,
        checkCounter(metadata.index, 'snapshot index'),
        checkCounter(metadata.term, 'snapshot term'),
        ...confStateTuple(metadata.confState),
        message.snapshot.data,
      ];
    }
    case 'timeout-now':
      return head;
    case 'read-index':
      return [...head, message.context];
    case 'read-index-response':
      return [...head, checkCounter(message.index, 'index'), message.context];
    case 'propose':
      return [...head, encodeEntries(message.entries)];
    case 'propose-refused':
      return [...head, encodeEntries(message.entries), REFUSAL_CODES[message.reason]];
    case 'transfer-leader':
      return [...head, checkId(message.transferee, 'transferee')];
    default:
      return unreachable(message, 'message type');
  }
}

/**
 * Encodes messages (any kinds, any destinations) into one frame. The result may be a view into
 * a larger buffer shared with earlier results; it is never overwritten.
 */
export function encodeFrame(messages: readonly Message[]): Uint8Array {
  const frame: unknown[] = [FRAME_VERSION];
  for (const message of messages) frame.push(messageTuple(message));
  return packr.pack(frame);
}

/** Encodes a stream handshake. */
export function encodeHandshake(handshake: Handshake): Uint8Array {
  const fields: unknown[] = [
    HANDSHAKE_TAG,
    HANDSHAKE_VERSION,
    checkId(handshake.clusterId, 'clusterId'),
    checkId(handshake.from, 'from'),
    checkId(handshake.to, 'to'),
  ];
  const urls = handshake.urls ?? [];
  if (urls.length > 0) {
    if (urls.length > HANDSHAKE_MAX_URLS || urls.some((url) => url.length > HANDSHAKE_MAX_URL_LENGTH)) throw new RangeError('handshake: too many or too long URLs');
    fields.push([...urls]);
  }
  return packr.pack(fields);
}

/** Encodes the receiver's acceptance of a handshake, naming itself. */
export function encodeHandshakeAck(memberId: NodeId): Uint8Array {
  return packr.pack([HANDSHAKE_ACK_TAG, HANDSHAKE_VERSION, checkId(memberId, 'memberId')]);
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** Thrown only inside this module while validating; converted to a DecodeResult at the edge. */
class FrameError extends Error {
  override name = 'FrameError';
}

function fail(reason: string): never {
  throw new FrameError(reason);
}

function asId(value: unknown, what: string): bigint {
  if (typeof value !== 'bigint') fail(`${what}: expected a 64-bit id, got ${typeof value}`);
  if (value < 0n || value > MAX_UINT64) fail(`${what}: id out of range`);
  return value;
}

function asMemberId(value: unknown, what: string): bigint {
  const id = asId(value, what);
  if (id === 0n) fail(`${what}: member id 0 is not a member`);
  return id;
}

function asCounter(value: unknown, what: string): number {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) fail(`${what}: not a non-negative safe integer`);
    return value;
  }
  if (typeof value === 'bigint') {
    if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) fail(`${what}: out of range`);
    return Number(value);
  }
  return fail(`${what}: expected an integer, got ${typeof value}`);
}

function asBoolean(value: unknown, what: string): boolean {
  if (typeof value !== 'boolean') fail(`${what}: expected a boolean, got ${typeof value}`);
  return value;
}

/** A plain Uint8Array view of decoded bytes (msgpackr yields Buffer views into the frame). */
function asBytes(value: unknown, what: string): Uint8Array {
  if (!(value instanceof Uint8Array)) fail(`${what}: expected bytes, got ${typeof value}`);
  return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
}

function asBytesOrNull(value: unknown, what: string): Uint8Array | null {
  return value === null ? null : asBytes(value, what);
}

function asIdList(value: unknown, what: string): NodeId[] {
  if (!Array.isArray(value)) fail(`${what}: expected an array`);
  return value.map((item, i) => asMemberId(item, `${what}[${i}]`));
}

function asCampaign(value: unknown): CampaignKind {
  if (value === CAMPAIGN_CODES.election) return 'election';
  if (value === CAMPAIGN_CODES.transfer) return 'transfer';
  return fail('campaign: unknown kind');
}

function asRefusal(value: unknown): ProposeRefusal {
  const reason = REFUSALS_BY_CODE.get(value);
  return reason ?? fail('propose-refused: unknown reason');
}

/** Decodes the entries encoding of {@link encodeEntries}; data are views into `bytes`. */
export function decodeEntries(bytes: Uint8Array): DecodeResult<Entry[]> {
  try {
    return { ok: true, value: readEntries(bytes) };
  } catch (error: unknown) {
    if (error instanceof FrameError) return { ok: false, reason: error.message };
    throw error;
  }
}

function readEntries(bytes: Uint8Array): Entry[] {
  if (bytes.byteLength < 4) fail('entries: truncated count');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const count = view.getUint32(0);
  // Each entry needs at least its header: a cheap bound before allocating anything.
  if (count > (bytes.byteLength - 4) / ENTRY_HEADER_BYTES) fail('entries: count exceeds the bytes present');
  const entries: Entry[] = new Array(count);
  let position = 4;
  for (let i = 0; i < count; i++) {
    if (position + ENTRY_HEADER_BYTES > bytes.byteLength) fail('entries: truncated entry header');
    const termHigh = view.getUint32(position);
    const indexHigh = view.getUint32(position + 8);
    if (termHigh >= 0x20_0000 || indexHigh >= 0x20_0000) fail('entries: term or index beyond 2^53');
    const term = joinU64(termHigh, view.getUint32(position + 4));
    const index = joinU64(indexHigh, view.getUint32(position + 12));
    const typeCode = bytes[position + 16];
    let type: EntryType;
    if (typeCode === 0) type = 'normal';
    else if (typeCode === 1) type = 'conf-change';
    else fail(`entries: unknown entry type ${typeCode}`);
    const length = view.getUint32(position + 17);
    const start = position + ENTRY_HEADER_BYTES;
    if (start + length > bytes.byteLength) fail('entries: truncated entry data');
    entries[i] = { term, index, type, data: new Uint8Array(bytes.buffer, bytes.byteOffset + start, length) };
    position = start + length;
  }
  if (position !== bytes.byteLength) fail('entries: trailing bytes');
  return entries;
}

function expectLength(tuple: unknown[], length: number, type: MessageType): void {
  if (tuple.length !== length) fail(`${type}: expected ${length} fields, got ${tuple.length}`);
}

function readMessage(raw: unknown): Message {
  if (!Array.isArray(raw) || raw.length < 4) fail('message: expected a tuple of at least 4 fields');
  const tuple: unknown[] = raw;
  const code = tuple[0];
  const from = asMemberId(tuple[1], 'from');
  const to = asMemberId(tuple[2], 'to');
  const term = asCounter(tuple[3], 'term');
  switch (code) {
    case TYPE_CODES.append:
      expectLength(tuple, 8, 'append');
      return {
        type: 'append',
        from,
        to,
        term,
        logTerm: asCounter(tuple[4], 'logTerm'),
        index: asCounter(tuple[5], 'index'),
        commit: asCounter(tuple[6], 'commit'),
        entries: readEntries(asBytes(tuple[7], 'entries')),
      };
    case TYPE_CODES['append-response']:
      expectLength(tuple, 8, 'append-response');
      return {
        type: 'append-response',
        from,
        to,
        term,
        index: asCounter(tuple[4], 'index'),
        reject: asBoolean(tuple[5], 'reject'),
        rejectHint: asCounter(tuple[6], 'rejectHint'),
        logTerm: asCounter(tuple[7], 'logTerm'),
      };
    case TYPE_CODES.vote:
    case TYPE_CODES['pre-vote']:
      expectLength(tuple, 7, 'vote');
      return {
        type: code === TYPE_CODES.vote ? 'vote' : 'pre-vote',
        from,
        to,
        term,
        logTerm: asCounter(tuple[4], 'logTerm'),
        index: asCounter(tuple[5], 'index'),
        campaign: asCampaign(tuple[6]),
      };
    case TYPE_CODES['vote-response']:
    case TYPE_CODES['pre-vote-response']:
      expectLength(tuple, 5, 'vote-response');
      return {
        type: code === TYPE_CODES['vote-response'] ? 'vote-response' : 'pre-vote-response',
        from,
        to,
        term,
        reject: asBoolean(tuple[4], 'reject'),
      };
    case TYPE_CODES.heartbeat:
      expectLength(tuple, 6, 'heartbeat');
      return {
        type: 'heartbeat',
        from,
        to,
        term,
        commit: asCounter(tuple[4], 'commit'),
        context: asBytesOrNull(tuple[5], 'context'),
      };
    case TYPE_CODES['heartbeat-response']:
      expectLength(tuple, 5, 'heartbeat-response');
      return { type: 'heartbeat-response', from, to, term, context: asBytesOrNull(tuple[4], 'context') };
    case TYPE_CODES.snapshot:
      expectLength(tuple, 9, 'snapshot');
      return {
        type: 'snapshot',
        from,
        to,
        term,
        snapshot: {
          metadata: {
            index: asCounter(tuple[4], 'snapshot index'),
            term: asCounter(tuple[5], 'snapshot term'),
            confState: { voters: asIdList(tuple[6], 'voters'), learners: asIdList(tuple[7], 'learners') },
          },
          data: asBytes(tuple[8], 'snapshot data'),
        },
      };
    case TYPE_CODES['timeout-now']:
      expectLength(tuple, 4, 'timeout-now');
      return { type: 'timeout-now', from, to, term };
    case TYPE_CODES['read-index']:
      expectLength(tuple, 5, 'read-index');
      return { type: 'read-index', from, to, term, context: asBytes(tuple[4], 'context') };
    case TYPE_CODES['read-index-response']:
      expectLength(tuple, 6, 'read-index-response');
      return {
        type: 'read-index-response',
        from,
        to,
        term,
        index: asCounter(tuple[4], 'index'),
        context: asBytes(tuple[5], 'context'),
      };
    case TYPE_CODES.propose:
      expectLength(tuple, 5, 'propose');
      return { type: 'propose', from, to, term, entries: readEntries(asBytes(tuple[4], 'entries')) };
    case TYPE_CODES['propose-refused']:
      expectLength(tuple, 6, 'propose-refused');
      return { type: 'propose-refused', from, to, term, entries: readEntries(asBytes(tuple[4], 'entries')), reason: asRefusal(tuple[5]) };
    case TYPE_CODES['transfer-leader']:
      expectLength(tuple, 5, 'transfer-leader');
      return { type: 'transfer-leader', from, to, term, transferee: asMemberId(tuple[4], 'transferee') };
    default:
      return fail(`message: unknown type code ${String(code)}`);
  }
}

/** Runs msgpack decoding of untrusted bytes; every failure becomes a FrameError. */
function unpackUntrusted(bytes: Uint8Array): unknown {
  try {
    return unpackr.unpack(bytes);
  } catch (error: unknown) {
    return fail(`not msgpack: ${error instanceof Error ? error.message.slice(0, 120) : String(error)}`);
  }
}

function guard<T>(read: () => T): DecodeResult<T> {
  try {
    return { ok: true, value: read() };
  } catch (error: unknown) {
    // Failures of the msgpack decoder itself are wrapped into FrameErrors by unpackUntrusted;
    // anything else escaping here is a bug of ours.
    if (error instanceof FrameError) return { ok: false, reason: error.message };
    throw error;
  }
}

/**
 * Decodes and validates a frame. Every message is fully checked (field count and types, id and
 * counter ranges, entry layout). An empty frame (no messages) is valid.
 */
export function decodeFrame(bytes: Uint8Array): DecodeResult<Message[]> {
  return guard(() => {
    const raw = unpackUntrusted(bytes);
    if (!Array.isArray(raw) || raw.length < 1) fail('frame: expected a non-empty array');
    if (raw[0] !== FRAME_VERSION) fail(`frame: unsupported version ${String(raw[0])}`);
    const messages: Message[] = new Array(raw.length - 1);
    for (let i = 1; i < raw.length; i++) messages[i - 1] = readMessage(raw[i]);
    return messages;
  });
}

/** Decodes a stream handshake. */
export function decodeHandshake(bytes: Uint8Array): DecodeResult<Handshake> {
  return guard(() => {
    const raw = unpackUntrusted(bytes);
    if (!Array.isArray(raw) || (raw.length !== 5 && raw.length !== 6) || raw[0] !== HANDSHAKE_TAG) fail('handshake: not a kvd peer handshake');
    if (raw[1] !== HANDSHAKE_VERSION) fail(`handshake: unsupported version ${String(raw[1])}`);
    const handshake = { clusterId: asId(raw[2], 'clusterId'), from: asMemberId(raw[3], 'from'), to: asMemberId(raw[4], 'to') };
    if (raw.length === 5) return handshake;
    const urls: unknown = raw[5];
    if (!Array.isArray(urls) || urls.length > HANDSHAKE_MAX_URLS || !urls.every((url) => typeof url === 'string' && url.length > 0 && url.length <= HANDSHAKE_MAX_URL_LENGTH)) {
      fail('handshake: malformed URL list');
    }
    return { ...handshake, urls: urls as string[] };
  });
}

/** Decodes a handshake acknowledgement, returning the acknowledging member's id. */
export function decodeHandshakeAck(bytes: Uint8Array): DecodeResult<NodeId> {
  return guard(() => {
    const raw = unpackUntrusted(bytes);
    if (!Array.isArray(raw) || raw.length !== 3 || raw[0] !== HANDSHAKE_ACK_TAG) fail('handshake ack: malformed');
    if (raw[1] !== HANDSHAKE_VERSION) fail(`handshake ack: unsupported version ${String(raw[1])}`);
    return asMemberId(raw[2], 'memberId');
  });
}

// ---------------------------------------------------------------------------------------------
// Member calls (`Call`): one request and one response per unary gRPC call between members, for
// the server's own peer-to-peer requests (lease keep-alive forwarding, ...). The transport checks
// the identity fields; `kind` and `payload` belong to the server.

const CALL_TAG = 'kvd-peer-call';
const CALL_VERSION = 1;
/** Longest call kind accepted. */
const CALL_KIND_MAX = 64;

/** A call from one member to another. */
export interface CallRequest extends Handshake {
  readonly kind: string;
  readonly payload: Uint8Array;
}

/** The answer to a {@link CallRequest}: a payload, or an error with a stable code and its text. */
export type CallResponse = { readonly ok: true; readonly payload: Uint8Array } | { readonly ok: false; readonly code: string; readonly message: string };

export function encodeCallRequest(request: CallRequest): Uint8Array {
  assert(request.kind.length > 0 && request.kind.length <= CALL_KIND_MAX, 'call kind length');
  return packr.pack([CALL_TAG, CALL_VERSION, checkId(request.clusterId, 'clusterId'), checkId(request.from, 'from'), checkId(request.to, 'to'), request.kind, request.payload]);
}

export function decodeCallRequest(bytes: Uint8Array): DecodeResult<CallRequest> {
  return guard(() => {
    const raw = unpackUntrusted(bytes);
    if (!Array.isArray(raw) || raw.length !== 7 || raw[0] !== CALL_TAG) fail('call: not a kvd peer call');
    if (raw[1] !== CALL_VERSION) fail(`call: unsupported version ${String(raw[1])}`);
    const kind = raw[5];
    if (typeof kind !== 'string' || kind.length === 0 || kind.length > CALL_KIND_MAX) fail('call: bad kind');
    return { clusterId: asId(raw[2], 'clusterId'), from: asMemberId(raw[3], 'from'), to: asMemberId(raw[4], 'to'), kind, payload: asBytes(raw[6], 'payload') };
  });
}

export function encodeCallResponse(response: CallResponse): Uint8Array {
  return packr.pack(response.ok ? [CALL_TAG, true, response.payload] : [CALL_TAG, false, response.code, response.message]);
}

export function decodeCallResponse(bytes: Uint8Array): DecodeResult<CallResponse> {
  return guard(() => {
    const raw = unpackUntrusted(bytes);
    if (!Array.isArray(raw) || raw[0] !== CALL_TAG) fail('call response: malformed');
    if (raw[1] === true && raw.length === 3) return { ok: true, payload: asBytes(raw[2], 'payload') };
    if (raw[1] === false && raw.length === 4 && typeof raw[2] === 'string' && typeof raw[3] === 'string') return { ok: false, code: raw[2], message: raw[3] };
    return fail('call response: malformed');
  });
}

/**
 * Member calls on a `Calls` stream (one long-lived bidirectional stream per caller and callee
 * instead of a unary gRPC call each): every request travels as a call frame, its number and the
 * milliseconds left before its deadline in front of an ordinary {@link CallRequest}; every answer
 * as an answer frame, the same number in front of a {@link CallResponse}. Numbers are the caller's
 * (unique among its calls in flight on that stream); the callee only echoes them.
 */
const CALL_FRAME_VERSION = 1;
const CALL_FRAME_HEADER_BYTES = 9;
/** The longest wait a call frame can carry (ms, a u32). */
export const CALL_FRAME_MAX_WAIT_MS = 0xffff_ffff;

export interface CallFrame {
  readonly callId: number;
  /** Milliseconds left before the caller's deadline when it sent the call. */
  readonly waitMs: number;
  readonly request: CallRequest;
}

export function encodeCallFrame(callId: number, waitMs: number, request: CallRequest): Uint8Array {
  assert(Number.isInteger(callId) && callId >= 0 && callId <= 0xffff_ffff, 'call number is a u32');
  const body = encodeCallRequest(request);
  const frame = Buffer.allocUnsafe(CALL_FRAME_HEADER_BYTES + body.byteLength);
  frame[0] = CALL_FRAME_VERSION;
  frame.writeUInt32BE(callId, 1);
  frame.writeUInt32BE(Math.min(CALL_FRAME_MAX_WAIT_MS, Math.max(0, Math.ceil(waitMs))), 5);
  frame.set(body, CALL_FRAME_HEADER_BYTES);
  return frame;
}

export function decodeCallFrame(bytes: Uint8Array): DecodeResult<CallFrame> {
  if (bytes.byteLength < CALL_FRAME_HEADER_BYTES) return { ok: false, reason: 'call frame: too short' };
  if (bytes[0] !== CALL_FRAME_VERSION) return { ok: false, reason: `call frame: unsupported version ${bytes[0]}` };
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const request = decodeCallRequest(view.subarray(CALL_FRAME_HEADER_BYTES));
  if (!request.ok) return request;
  return { ok: true, value: { callId: view.readUInt32BE(1), waitMs: view.readUInt32BE(5), request: request.value } };
}

export function encodeCallAnswerFrame(callId: number, response: CallResponse): Uint8Array {
  const body = encodeCallResponse(response);
  const frame = Buffer.allocUnsafe(5 + body.byteLength);
  frame[0] = CALL_FRAME_VERSION;
  frame.writeUInt32BE(callId, 1);
  frame.set(body, 5);
  return frame;
}

export function decodeCallAnswerFrame(bytes: Uint8Array): DecodeResult<{ callId: number; response: CallResponse }> {
  if (bytes.byteLength < 5) return { ok: false, reason: 'call answer: too short' };
  if (bytes[0] !== CALL_FRAME_VERSION) return { ok: false, reason: `call answer: unsupported version ${bytes[0]}` };
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const response = decodeCallResponse(view.subarray(5));
  if (!response.ok) return response;
  return { ok: true, value: { callId: view.readUInt32BE(1), response: response.value } };
}

// ---------------------------------------------------------------------------------------------
// Membership answer (`Members`): what a running member tells a member that is joining and does
// not know its own id or the cluster id yet (etcd's peer /members endpoint).

const MEMBERS_TAG = 'kvd-peer-members';

/** One member as the cluster knows it. */
export interface MemberInfo {
  readonly id: NodeId;
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  readonly isLearner: boolean;
  readonly autoPromote: boolean;
}

/** The cluster id and its active members. */
export interface MembersAnswer {
  readonly clusterId: bigint;
  readonly members: readonly MemberInfo[];
}

export function encodeMembersAnswer(answer: MembersAnswer): Uint8Array {
  return packr.pack([MEMBERS_TAG, checkId(answer.clusterId, 'clusterId'), answer.members.map((m) => [checkId(m.id, 'id'), m.name, [...m.peerUrls], [...m.clientUrls], m.isLearner, m.autoPromote])]);
}

export function decodeMembersAnswer(bytes: Uint8Array): DecodeResult<MembersAnswer> {
  return guard(() => {
    const raw = unpackUntrusted(bytes);
    if (!Array.isArray(raw) || raw.length !== 3 || raw[0] !== MEMBERS_TAG || !Array.isArray(raw[2])) fail('members: malformed');
    const strings = (value: unknown, what: string): string[] => {
      if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) fail(`members: ${what}`);
      return value as string[];
    };
    const members = (raw[2] as unknown[]).map((item): MemberInfo => {
      if (!Array.isArray(item) || item.length !== 6 || typeof item[1] !== 'string') fail('members: malformed member');
      return { id: asMemberId(item[0], 'id'), name: item[1] as string, peerUrls: strings(item[2], 'peerUrls'), clientUrls: strings(item[3], 'clientUrls'), isLearner: asBoolean(item[4], 'isLearner'), autoPromote: asBoolean(item[5], 'autoPromote') };
    });
    return { clusterId: asId(raw[1], 'clusterId'), members };
  });
}

// ---------------------------------------------------------------------------------------------
// Snapshot stream records: after the handshake, a snapshot stream carries one header record
// (a frame holding exactly one 'snapshot' message), data chunk records, and one end record
// carrying the total byte count so truncation is detected.

const SNAPSHOT_HEADER_TAG = 1;
const SNAPSHOT_CHUNK_TAG = 2;
const SNAPSHOT_END_TAG = 3;

/** One record of a snapshot stream after the handshake. */
export type SnapshotRecord =
  | { kind: 'header'; message: SnapshotMessage }
  | { kind: 'chunk'; data: Uint8Array }
  | { kind: 'end'; totalBytes: number };

/** Encodes a snapshot stream record. */
export function encodeSnapshotRecord(record: SnapshotRecord): Uint8Array {
  let body: Uint8Array;
  let tag: number;
  switch (record.kind) {
    case 'header':
      tag = SNAPSHOT_HEADER_TAG;
      body = encodeFrame([record.message]);
      break;
    case 'chunk':
      tag = SNAPSHOT_CHUNK_TAG;
      body = record.data;
      break;
    case 'end':
      tag = SNAPSHOT_END_TAG;
      body = packr.pack(checkCounter(record.totalBytes, 'totalBytes'));
      break;
    default:
      return unreachable(record, 'snapshot record');
  }
  const out = new Uint8Array(1 + body.byteLength);
  out[0] = tag;
  out.set(body, 1);
  return out;
}

/** Decodes a snapshot stream record; chunk data is a view into `bytes`. */
export function decodeSnapshotRecord(bytes: Uint8Array): DecodeResult<SnapshotRecord> {
  return guard((): SnapshotRecord => {
    if (bytes.byteLength < 1) fail('snapshot record: empty');
    const body = new Uint8Array(bytes.buffer, bytes.byteOffset + 1, bytes.byteLength - 1);
    switch (bytes[0]) {
      case SNAPSHOT_HEADER_TAG: {
        const frame = decodeFrame(body);
        if (!frame.ok) fail(`snapshot header: ${frame.reason}`);
        const message = frame.value[0];
        if (frame.value.length !== 1 || message.type !== 'snapshot') fail('snapshot header: expected one snapshot message');
        return { kind: 'header', message };
      }
      case SNAPSHOT_CHUNK_TAG:
        return { kind: 'chunk', data: body };
      case SNAPSHOT_END_TAG:
        return { kind: 'end', totalBytes: asCounter(unpackUntrusted(body), 'totalBytes') };
      default:
        return fail(`snapshot record: unknown tag ${bytes[0]}`);
    }
  });
}

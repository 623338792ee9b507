// Goal: the api codec decodes protobuf objects into domain requests exactly (64-bit values beyond
// 2^53 included), validates them with etcd's error codes in etcd's order, and encodes domain
// results into objects that survive real protobuf serialization. Method: feed hand-made and
// really serialized/deserialized messages (through the service definitions loaded from proto/)
// to the decoders and encoders, and compare with expected values and KvdError codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as grpc from '@grpc/grpc-js';
import {
  decodeCompare,
  decodeCompactRequest,
  decodeInt64,
  decodeLeaseKeepAliveRequestWire,
  decodeDeleteRangeRequest,
  decodePutRequest,
  decodePutRequestWire,
  decodeRangeRequest,
  decodeRangeRequestWire,
  decodeTxnRequest,
  decodeWatchCreateRequest,
  encodeEvent,
  encodeHeader,
  encodeLeaseKeepAliveResponseWire,
  encodeRangeResponse,
  encodeTxnResponse,
  WATCH_EMPTY_RANGE_REASON,
  type PbMessage,
} from '../../../src/api/codec.js';
import { fragmentEvents } from '../../../src/api/watch-service.js';
import { splitRangeResponse } from '../../../src/api/kv-service.js';
import { loadServices } from '../../../src/api/proto.js';
import { isKvdError, type ErrorCode } from '../../../src/util/errors.js';
import type { Event, KeyValue } from '../../../src/store/mvcc/types.js';

const services = loadServices();
const kvMethods = services.KV.service;

/** Serializes `message` as the request of `method` and deserializes it again (a wire round trip). */
function requestRoundTrip(method: string, message: PbMessage): PbMessage {
  const definition = kvMethods[method] as grpc.MethodDefinition<PbMessage, PbMessage>;
  return definition.requestDeserialize(definition.requestSerialize(message));
}

function responseRoundTrip(method: string, message: PbMessage): PbMessage {
  const definition = kvMethods[method] as grpc.MethodDefinition<PbMessage, PbMessage>;
  return definition.responseDeserialize(definition.responseSerialize(message));
}

function throwsCode(code: ErrorCode, body: () => unknown): void {
  assert.throws(body, (error: unknown) => isKvdError(error, code), `expected KvdError ${code}`);
}

const key = (text: string): Buffer => Buffer.from(text);

test('range request decodes from the wire with etcd defaults and normalisation', () => {
  const wire = requestRoundTrip('Range', { key: key('a'), range_end: key('b'), limit: '-5', revision: '7', sort_target: 'MOD' });
  const decoded = decodeRangeRequest(wire);
  assert.deepEqual(Buffer.from(decoded.key), key('a'));
  assert.deepEqual(Buffer.from(decoded.rangeEnd), key('b'));
  assert.equal(decoded.limit, 0, 'negative limit means no limit');
  assert.equal(decoded.revision, 7);
  assert.equal(decoded.sortOrder, 'ascend', 'a non-key sort target without order sorts ascending');
  assert.equal(decoded.sortTarget, 'mod');
  assert.equal(decoded.serializable, false);
  assert.equal(decoded.minModRevision, 0);
});

test('range request validation follows etcd: empty key, sort options, future revision', () => {
  throwsCode('empty-key', () => decodeRangeRequest(requestRoundTrip('Range', {})));
  throwsCode('invalid-sort-option', () => decodeRangeRequest({ key: key('a'), sort_order: 7 }));
  throwsCode('invalid-sort-option', () => decodeRangeRequest({ key: key('a'), sort_target: 99 }));
  throwsCode('future-revision', () => decodeRangeRequest({ key: key('a'), revision: '9007199254740993' }));
  assert.equal(decodeRangeRequest({ key: key('a'), revision: '-3' }).revision, -3, 'negative = latest, passed through');
  assert.equal(decodeRangeRequest({ key: key('a'), max_mod_revision: '99999999999999999' }).maxModRevision, Number.MAX_SAFE_INTEGER);
});

test('put request keeps 64-bit lease ids exact, including beyond 2^53 and negative', () => {
  const big = '9223372036854775807';
  const decoded = decodePutRequest(requestRoundTrip('Put', { key: key('k'), value: key('v'), lease: big, prev_kv: true }));
  assert.equal(decoded.lease, 9223372036854775807n);
  assert.equal(decoded.prevKv, true);
  assert.equal(decodePutRequest(requestRoundTrip('Put', { key: key('k'), lease: '9007199254740993' })).lease, 9007199254740993n);
  assert.equal(decodePutRequest(requestRoundTrip('Put', { key: key('k'), lease: '-2' })).lease, -2n);
});

test('put request validation: empty key, value-provided, lease-provided', () => {
  throwsCode('empty-key', () => decodePutRequest({ value: key('v') }));
  throwsCode('value-provided', () => decodePutRequest({ key: key('k'), value: key('v'), ignore_value: true }));
  throwsCode('lease-provided', () => decodePutRequest({ key: key('k'), lease: '5', ignore_lease: true }));
  assert.equal(decodePutRequest({ key: key('k'), ignore_value: true, ignore_lease: true }).ignoreValue, true);
});

test('delete and compact requests decode; compact beyond 2^53 is a future revision', () => {
  const deleted = decodeDeleteRangeRequest(requestRoundTrip('DeleteRange', { key: key('a'), range_end: Buffer.from([0]), prev_kv: true }));
  assert.deepEqual([...deleted.rangeEnd], [0]);
  assert.equal(deleted.prevKv, true);
  throwsCode('empty-key', () => decodeDeleteRangeRequest({}));
  assert.deepEqual(decodeCompactRequest(requestRoundTrip('Compact', { revision: '12', physical: true })), { revision: 12, physical: true });
  throwsCode('future-revision', () => decodeCompactRequest({ revision: '18014398509481984' }));
});

test('compare decodes the operand matching its target, exactly', () => {
  const txn = requestRoundTrip('Txn', {
    compare: [
      { result: 'EQUAL', target: 'MOD', key: key('a'), mod_revision: '9007199254740993' },
      { result: 'NOT_EQUAL', target: 'VALUE', key: key('b'), value: key('x') },
      { result: 'LESS', target: 'LEASE', key: key('c'), lease: '-9223372036854775808', range_end: key('d') },
      { result: 'GREATER', target: 'VERSION', key: key('e') },
    ],
  });
  const compares = (txn.compare as PbMessage[]).map(decodeCompare);
  assert.deepEqual(compares[0], { result: 'equal', target: 'mod', key: key('a'), rangeEnd: Buffer.alloc(0), value: 9007199254740993n });
  assert.equal(compares[1].target, 'value');
  assert.deepEqual(Buffer.from(compares[1].value as Uint8Array), key('x'));
  assert.equal(compares[2].value, -9223372036854775808n);
  assert.deepEqual(Buffer.from(compares[2].rangeEnd), key('d'));
  assert.equal(compares[3].value, 0n, 'unset operand compares with zero');
  throwsCode('empty-key', () => decodeCompare({ result: 'EQUAL', target: 'MOD' }));
});

function putOp(name: string): PbMessage {
  return { request_put: { key: key(name), value: key('v') } };
}
function deleteOp(name: string, rangeEnd?: string): PbMessage {
  return { request_delete_range: { key: key(name), ...(rangeEnd === undefined ? {} : { range_end: key(rangeEnd) }) } };
}
function rangeOp(name: string): PbMessage {
  return { request_range: { key: key(name) } };
}
function txnOp(body: PbMessage): PbMessage {
  return { request_txn: body };
}

test('txn decodes nested ops through the wire', () => {
  const wire = requestRoundTrip('Txn', {
    compare: [{ result: 'EQUAL', target: 'CREATE', key: key('a'), create_revision: '0' }],
    success: [putOp('a'), rangeOp('b'), txnOp({ success: [deleteOp('c')], failure: [putOp('d')] })],
    failure: [rangeOp('a')],
  });
  const txn = decodeTxnRequest(wire);
  assert.deepEqual(txn.success.map((op) => op.type), ['put', 'range', 'txn']);
  const nested = txn.success[2];
  assert.ok(nested.type === 'txn');
  assert.equal(nested.request.success[0].type, 'delete-range');
  assert.equal(txn.failure[0].type, 'range');
});

test('txn validation: op limits (nested share the budget), empty op, empty keys', () => {
  const many = (count: number): PbMessage[] => Array.from({ length: count }, (_, index) => rangeOp(`k${index}`));
  decodeTxnRequest({ success: many(128) });
  throwsCode('too-many-ops', () => decodeTxnRequest({ success: many(129) }));
  throwsCode('too-many-ops', () => decodeTxnRequest({ compare: Array.from({ length: 129 }, () => ({ key: key('a') })) }));
  throwsCode('too-many-ops', () => decodeTxnRequest({ success: [...many(100), txnOp({ success: many(29) })] }));
  decodeTxnRequest({ success: [...many(100), txnOp({ success: many(27) })] });
  throwsCode('too-many-ops', () => decodeTxnRequest({ success: many(5) }, { maxTxnOps: 4 }));
  throwsCode('key-not-found', () => decodeTxnRequest({ success: [{}] }));
  throwsCode('empty-key', () => decodeTxnRequest({ failure: [{ request_put: { value: key('v') } }] }));
  throwsCode('value-provided', () => decodeTxnRequest({ success: [{ request_put: { key: key('k'), value: key('v'), ignore_value: true } }] }));
  throwsCode('invalid-sort-option', () => decodeTxnRequest({ success: [{ request_range: { key: key('k'), sort_order: 9 } }] }));
});

test('txn validation: duplicate writes within a branch are refused as etcd does', () => {
  throwsCode('duplicate-key', () => decodeTxnRequest({ success: [putOp('a'), putOp('a')] }));
  throwsCode('duplicate-key', () => decodeTxnRequest({ success: [putOp('b'), deleteOp('a', 'c')] }));
  throwsCode('duplicate-key', () => decodeTxnRequest({ success: [putOp('a'), deleteOp('a')] }));
  throwsCode('duplicate-key', () => decodeTxnRequest({ failure: [putOp('a'), txnOp({ success: [putOp('a')] })] }));
  throwsCode('duplicate-key', () => decodeTxnRequest({ success: [deleteOp('a', 'z'), txnOp({ failure: [putOp('m')] })] }));
  throwsCode('duplicate-key', () => decodeTxnRequest({ success: [putOp('m'), txnOp({ success: [deleteOp('a', 'z')] })] }));
  // Allowed: the two branches of one txn, the same key in success and failure, deletes overlapping
  // deletes, reads of written keys, a put outside a deleted range, and etcd's "\0" end quirk.
  decodeTxnRequest({ success: [putOp('a')], failure: [putOp('a')] });
  decodeTxnRequest({ success: [txnOp({ success: [putOp('a')], failure: [putOp('a')] })] });
  decodeTxnRequest({ success: [deleteOp('a', 'c'), deleteOp('b', 'd'), rangeOp('a'), putOp('d')] });
  decodeTxnRequest({ success: [deleteOp('a', '\0'), putOp('b')] });
});

test('watch create decodes etcd-style: empty key, negative start, empty range, filters, id', () => {
  const negative = decodeWatchCreateRequest({ key: key('a'), start_revision: '-1' });
  assert.deepEqual(negative, { ok: false, cancelReason: 'etcdserver: mvcc: required revision has been compacted' });
  assert.deepEqual(decodeWatchCreateRequest({ key: key('b'), range_end: key('a') }), { ok: false, cancelReason: WATCH_EMPTY_RANGE_REASON });
  const all = decodeWatchCreateRequest({ range_end: Buffer.from([0]), filters: ['NOPUT', 'NODELETE'], watch_id: '9007199254740993', start_revision: '5', prev_kv: true, fragment: true });
  assert.ok(all.ok);
  assert.deepEqual([...all.options.key], [0]);
  assert.deepEqual(all.options.filters, ['no-put', 'no-delete']);
  assert.equal(all.requestedId, 9007199254740993n);
  assert.equal(all.options.startRevision, 5);
  assert.equal(all.options.prevKv, true);
  assert.equal(all.fragment, true);
});

const bigLease = 0x7fff_ffff_ffff_fff1n;
const kv = (name: string, revision: number): KeyValue => ({ key: key(name), value: key(`value-${name}`), createRevision: revision, modRevision: revision, version: 1, lease: bigLease });

test('responses survive protobuf serialization with exact 64-bit values', () => {
  const header = { clusterId: 0xffff_ffff_ffff_fffen, memberId: 0x8000_0000_0000_0001n, revision: 9, raftTerm: 4 };
  const range = responseRoundTrip('Range', encodeRangeResponse(header, { kvs: [kv('a', 3), kv('b', 4)], more: true, count: 5 }));
  assert.deepEqual(range.header, { cluster_id: '18446744073709551614', member_id: '9223372036854775809', revision: '9', raft_term: '4' });
  const kvs = range.kvs as PbMessage[];
  assert.equal(kvs[1].lease, bigLease.toString());
  assert.equal(kvs[1].mod_revision, '4');
  assert.deepEqual(kvs[0].value, key('value-a'));
  assert.equal(range.more, true);
  assert.equal(range.count, '5');

  const txn = responseRoundTrip('Txn', encodeTxnResponse(header, {
    succeeded: true,
    responses: [
      { type: 'put', response: { prevKv: kv('p', 2) } },
      { type: 'delete-range', response: { deleted: 2, prevKvs: [] } },
      { type: 'txn', response: { succeeded: false, responses: [{ type: 'range', response: { kvs: [], more: false, count: 0 } }] } },
    ],
  }));
  const responses = txn.responses as PbMessage[];
  assert.equal(responses[0].response, 'response_put');
  assert.equal(((responses[0].response_put as PbMessage).prev_kv as PbMessage).lease, bigLease.toString());
  assert.equal((responses[1].response_delete_range as PbMessage).deleted, '2');
  assert.equal(((responses[2].response_txn as PbMessage).responses as PbMessage[])[0].response, 'response_range');
  const maxIds = responseRoundTrip('Put', { header: encodeHeader({ ...header, clusterId: 1n, memberId: -1n }) });
  assert.deepEqual(maxIds.header, { cluster_id: '1', member_id: '18446744073709551615', revision: '9', raft_term: '4' });
  const again = responseRoundTrip('Put', { header: encodeHeader({ ...header, clusterId: 0x1_0000_0000n, memberId: 0xffff_ffffn }) });
  assert.deepEqual(again.header, { cluster_id: '4294967296', member_id: '4294967295', revision: '9', raft_term: '4' }, 'ids converted again when they change');
});

test('events encode with type names and optional prev_kv', () => {
  const put: Event = { type: 'put', kv: kv('a', 5), prevKv: kv('a', 3) };
  const encoded = encodeEvent(put);
  assert.equal(encoded.type, 'PUT');
  assert.equal((encoded.prev_kv as PbMessage).mod_revision, 3);
  assert.equal(encodeEvent(put), encoded, 'one encoding per event object, shared by every watcher');
  const deleted = encodeEvent({ type: 'delete', kv: { ...kv('a', 6), version: 0, lease: 0n } });
  assert.equal(deleted.type, 'DELETE');
  assert.equal(deleted.prev_kv, null);
});

test('large watch responses fragment into parts of at least one event; range streams split', () => {
  const bigValue = Buffer.alloc(1000, 1);
  const events: Event[] = Array.from({ length: 10 }, (_, index) => ({ type: 'put', kv: { ...kv(`k${index}`, 2), value: bigValue } }));
  assert.equal(fragmentEvents(events, 1_000_000).length, 1);
  const parts = fragmentEvents(events, 2500);
  assert.ok(parts.length >= 4);
  assert.deepEqual(parts.flat(), events);
  assert.equal(fragmentEvents([events[0]], 10).length, 1, 'one event is never split');
  const chunks = splitRangeResponse({ kvs: events.map((event) => event.kv), more: true, count: 12 }, 2500);
  assert.ok(chunks.length >= 4);
  assert.deepEqual(chunks.flatMap((chunk) => chunk.kvs), events.map((event) => event.kv));
  assert.equal(chunks[chunks.length - 1].count, 12);
  assert.equal(chunks[0].count, 0);
});

test('a LeaseKeepAliveRequest read from its wire bytes gives the ID protobufjs and decodeInt64 give, past unknown fields and repeats; malformed bytes throw for both', () => {
  const method = loadServices().Lease.service.LeaseKeepAlive;
  const ids = [0n, 1n, -1n, 0x7fn, 0x80n, 0x0fff_ffffn, 0x1000_0000n, 0xffff_ffffn, 0x1_0000_0000n, 2n ** 53n + 1n, 9_223_372_036_854_775_807n, -9_223_372_036_854_775_808n];
  let seed = 0x2545f491;
  for (let i = 0; i < 200; i++) {
    seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
    const high = BigInt(seed);
    seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
    ids.push(BigInt.asIntN(64, (high << 32n) | BigInt(seed)));
  }
  // Fields this message does not have: 15 varint, 16 bytes, 17 fixed64, 18 fixed32.
  const unknown = Buffer.from([0x78, 0x96, 0x01, 0x82, 0x01, 0x03, 0x61, 0x62, 0x63, 0x89, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0x95, 0x01, 1, 2, 3, 4]);
  const expected = (bytes: Buffer): bigint => decodeInt64((method.requestDeserialize(bytes) as PbMessage).ID);
  for (const id of ids) {
    const bytes = method.requestSerialize({ ID: id.toString() });
    for (const variant of [bytes, Buffer.concat([unknown, bytes]), Buffer.concat([bytes, unknown]), Buffer.concat([method.requestSerialize({ ID: '42' }), bytes])]) {
      assert.equal(decodeLeaseKeepAliveRequestWire(variant).ID, id, `id ${id}`);
      assert.equal(decodeLeaseKeepAliveRequestWire(variant).ID, expected(variant), `id ${id}: as protobufjs`);
    }
  }
  assert.equal(decodeLeaseKeepAliveRequestWire(Buffer.alloc(0)).ID, 0n, 'an empty message is ID 0');
  const malformed = [
    Buffer.from([0x08]), // the ID's varint missing
    Buffer.from([0x08, 0xff, 0xff]), // cut inside it
    Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // longer than 10 bytes
    Buffer.from([0x82, 0x01, 0x05, 0x61]), // a length past the end
    Buffer.from([0x89, 0x01, 1, 2, 3]), // a fixed64 cut short
    Buffer.from([0x0b]), // wire type 3 (a group)
  ];
  for (const bytes of malformed) {
    assert.throws(() => decodeLeaseKeepAliveRequestWire(bytes), Error, bytes.toString('hex'));
    assert.throws(() => method.requestDeserialize(bytes), Error, `protobufjs refuses ${bytes.toString('hex')} too`);
  }
});

test('a LeaseKeepAliveResponse encoded as wire bytes decodes as protobufjs encodes the object (ids of any sign, TTL 0)', () => {
  const method = loadServices().Lease.service.LeaseKeepAlive;
  const header = { clusterId: 0xabcdef0123456789n, memberId: 0xfedcba9876543210n, revision: 2 ** 40, raftTerm: 3 };
  for (const id of [1n, 0n, -1n, 9_223_372_036_854_775_807n, -9_223_372_036_854_775_808n, 0x7fn, 0x80n]) {
    for (const ttl of [0, 1, 30, 2 ** 31, Number.MAX_SAFE_INTEGER]) {
      const fromWire = method.responseDeserialize(encodeLeaseKeepAliveResponseWire(header, id, ttl).take());
      const fromObject = method.responseDeserialize(method.responseSerialize({ header: encodeHeader(header), ID: id.toString(), TTL: String(ttl) }));
      assert.deepEqual(fromWire, fromObject, `id ${id} ttl ${ttl}`);
    }
  }
});

/** What decoding does with `bytes`: the domain request, or the error code (or 'malformed' when decoding the bytes throws). */
function outcomeOf(read: () => PbMessage, decode: (pb: PbMessage) => unknown): unknown {
  let pb: PbMessage;
  try {
    pb = read();
  } catch {
    return 'malformed';
  }
  try {
    return decode(pb);
  } catch (error: unknown) {
    return isKvdError(error) ? `error ${error.code}` : `unexpected ${String(error)}`;
  }
}

test('Range and Put requests read from wire bytes decode as through protobufjs (random fields, unknown and repeated fields, bad values)', () => {
  let seed = 99;
  const next = (n: number): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const int64s = ['0', '1', '-1', '5', '9007199254740991', '9007199254740993', '-9007199254740993', '9223372036854775807', '-9223372036854775808', '300'];
  const bytesOf = (): Buffer => (next(4) === 0 ? Buffer.alloc(0) : Buffer.from(Array.from({ length: 1 + next(40) }, () => next(256))));
  // Unknown fields of each wire type (numbers no RangeRequest or PutRequest has), to put in front or behind.
  const unknown = Buffer.from([0xa0, 0x06, 0x01, 0xa9, 0x06, 1, 2, 3, 4, 5, 6, 7, 8, 0xb2, 0x06, 0x02, 0x61, 0x62, 0xbd, 0x06, 1, 2, 3, 4]);
  const cases: Array<{ method: 'Range' | 'Put'; message: PbMessage }> = [];
  for (let i = 0; i < 400; i++) {
    const range: PbMessage = {};
    if (next(5) > 0) range.key = bytesOf();
    if (next(2) === 0) range.range_end = bytesOf();
    for (const name of ['limit', 'revision', 'min_mod_revision', 'max_mod_revision', 'min_create_revision', 'max_create_revision']) if (next(3) === 0) range[name] = int64s[next(int64s.length)];
    if (next(2) === 0) range.sort_order = [0, 1, 2, 3, 7][next(5)];
    if (next(2) === 0) range.sort_target = [0, 1, 2, 3, 4, 5, 9][next(7)];
    for (const name of ['serializable', 'keys_only', 'count_only']) if (next(2) === 0) range[name] = true;
    cases.push({ method: 'Range', message: range });
    const put: PbMessage = {};
    if (next(5) > 0) put.key = bytesOf();
    if (next(2) === 0) put.value = bytesOf();
    if (next(3) === 0) put.lease = int64s[next(int64s.length)];
    for (const name of ['prev_kv', 'ignore_value', 'ignore_lease']) if (next(3) === 0) put[name] = true;
    cases.push({ method: 'Put', message: put });
  }
  for (const { method, message } of cases) {
    const definition = kvMethods[method] as grpc.MethodDefinition<PbMessage, PbMessage>;
    const readWire = method === 'Range' ? decodeRangeRequestWire : decodePutRequestWire;
    const decode = method === 'Range' ? decodeRangeRequest : decodePutRequest;
    const bytes = definition.requestSerialize(message);
    const other = definition.requestSerialize(cases[next(cases.length)].message.key === undefined ? {} : { key: Buffer.from('first') });
    // Booleans sent as false explicitly (proto3 encoders leave them out; others may not), in front and behind.
    const explicitFalse = Buffer.from(method === 'Range' ? [0x38, 0x00, 0x40, 0x00, 0x48, 0x00] : [0x20, 0x00, 0x28, 0x00, 0x30, 0x00]);
    for (const variant of [bytes, Buffer.concat([unknown, bytes]), Buffer.concat([bytes, unknown]), Buffer.concat([other, bytes]), Buffer.concat([explicitFalse, bytes]), Buffer.concat([bytes, explicitFalse])]) {
      const expected = outcomeOf(() => definition.requestDeserialize(variant), decode);
      assert.deepEqual(outcomeOf(() => readWire(variant), decode), expected, `${method} ${JSON.stringify(message)} (${variant.toString('hex')})`);
    }
  }
  for (const bytes of [Buffer.from([0x0a, 0x05, 0x61]), Buffer.from([0x18]), Buffer.from([0x18, 0xff]), Buffer.from([0x0b])]) {
    assert.throws(() => decodeRangeRequestWire(bytes), Error, bytes.toString('hex'));
    assert.throws(() => decodePutRequestWire(bytes), Error, bytes.toString('hex'));
  }
});

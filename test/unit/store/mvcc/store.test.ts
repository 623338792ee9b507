// Goal: MvccStore follows etcd's MVCC semantics exactly (revisions, versions, tombstones, Range
// options, Put/DeleteRange flags, Txn compares and nesting, request checks, compaction, history
// for watches, restart idempotence, meta, leased keys). Method: small scripted scenarios against a
// real LevelDB in a temp dir, each asserting the exact values etcd documents or computes
// (server/storage/mvcc, server/etcdserver/txn, api/v3rpc/key.go).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KvdError } from '../../../../src/util/errors.js';
import { MvccStore, type ApplyOutcome } from '../../../../src/store/mvcc/index.js';
import type { TxnResponse, WriteResult } from '../../../../src/store/mvcc/types.js';
import {
  ALL_FROM, apply, applyOne, bytes, cleanup, cmp, cmpValue, compact, del, deleteRequest, openTemp, plain, printable, put,
  putRequest, rangeRequest, text, txn, txnRequest, waitFor,
} from './helpers.js';

function ok(outcome: ApplyOutcome): Extract<ApplyOutcome, { ok: true }> {
  if (!outcome.ok) assert.fail(`expected success, got ${outcome.reason}: ${outcome.error.code}`);
  return outcome;
}

function errorCode(outcome: ApplyOutcome): string {
  assert.equal(outcome.ok, false, 'expected a failure');
  return outcome.ok ? '' : outcome.error.code;
}

function txnResponse(result: WriteResult): TxnResponse {
  assert.equal(result.type, 'txn');
  return result.type === 'txn' ? result.response : assert.fail();
}

async function withStore(fn: (store: MvccStore, path: string) => Promise<void>): Promise<void> {
  const { store, dir, path } = await openTemp();
  try {
    await fn(store, path);
  } finally {
    await store.close();
    await cleanup(dir);
  }
}

test('empty store is at revision 1; each write makes one revision; versions restart after delete', () =>
  withStore(async (store) => {
    assert.equal(store.currentRevision, 1);
    assert.equal(store.compactedRevision, 0);
    assert.equal(ok(await applyOne(store, put('foo', 'a'))).revision, 2);
    assert.equal(ok(await applyOne(store, put('foo', 'b'))).revision, 3);
    let kv = (await store.range(rangeRequest('foo'))).kvs.map(plain);
    assert.deepEqual(kv, [{ key: 'foo', value: 'b', create: 2, mod: 3, version: 2, lease: 0n }]);
    const deleted = ok(await applyOne(store, del('foo')));
    assert.equal(deleted.revision, 4);
    assert.deepEqual(printable(deleted.events), [{ type: 'delete', kv: { key: 'foo', createRevision: 0, modRevision: 4, version: 0, value: '', lease: 0n } }]);
    assert.equal((await store.range(rangeRequest('foo'))).count, 0);
    ok(await applyOne(store, put('foo', 'c')));
    kv = (await store.range(rangeRequest('foo'))).kvs.map(plain);
    assert.deepEqual(kv, [{ key: 'foo', value: 'c', create: 5, mod: 5, version: 1, lease: 0n }]);
    // Past revisions.
    assert.deepEqual((await store.range(rangeRequest('foo', '', { revision: 2 }))).kvs.map(plain), [{ key: 'foo', value: 'a', create: 2, mod: 2, version: 1, lease: 0n }]);
    assert.equal((await store.range(rangeRequest('foo', '', { revision: 4 }))).count, 0);
    assert.equal((await store.range(rangeRequest('foo', '', { revision: 1 }))).count, 0);
    assert.equal((await store.range(rangeRequest('foo', '', { revision: 2 }))).revision, 5, 'answer carries the current revision');
  }));

test('delete of nothing and a read-only txn make no revision', () =>
  withStore(async (store) => {
    ok(await applyOne(store, put('a', '1')));
    const nothing = ok(await applyOne(store, del('zzz')));
    assert.equal(nothing.revision, 2);
    assert.deepEqual(nothing.result, { type: 'delete-range', response: { deleted: 0, prevKvs: [] } });
    assert.deepEqual(nothing.events, []);
    const readOnly = ok(await applyOne(store, txn([cmp('a', 'version', 'equal', 1)], [{ type: 'range', request: rangeRequest('a') }])));
    assert.equal(readOnly.revision, 2);
    assert.equal(txnResponse(readOnly.result).succeeded, true);
    const emptyTxn = ok(await applyOne(store, txn([], [])));
    assert.equal(emptyTxn.revision, 2);
    assert.equal(store.currentRevision, 2);
  }));

test('range: single key, [key, end), prefix, from-key, all keys, and an inverted range', () =>
  withStore(async (store) => {
    await apply(store, put('a', '1'), put('ab', '2'), put('abc', '3'), put('b', '4'), put('c', '5'), put('\xff', '6'));
    const keys = async (key: string | Uint8Array, end: string | Uint8Array) => (await store.range(rangeRequest(key, end))).kvs.map((kv) => text(kv.key));
    assert.deepEqual(await keys('ab', ''), ['ab']);
    assert.deepEqual(await keys('a', 'b'), ['a', 'ab', 'abc']);
    assert.deepEqual(await keys('ab', 'ac'), ['ab', 'abc']);
    assert.deepEqual(await keys('b', ALL_FROM), ['b', 'c', '\xff']);
    assert.deepEqual(await keys(ALL_FROM, ALL_FROM), ['a', 'ab', 'abc', 'b', 'c', '\xff']);
    assert.deepEqual(await keys('c', 'a'), []);
    assert.deepEqual(await keys('nothing', ''), []);
  }));

test('range: limit sets more; count ignores limit and filters; count_only; keys_only', () =>
  withStore(async (store) => {
    await apply(store, put('k1', 'x'), put('k2', 'yy'), put('k3', 'z'), put('k2', 'w'));
    const all = await store.range(rangeRequest('k', 'l', { limit: 2 }));
    assert.deepEqual(all.kvs.map((kv) => text(kv.key)), ['k1', 'k2']);
    assert.equal(all.more, true);
    assert.equal(all.count, 3);
    const exact = await store.range(rangeRequest('k', 'l', { limit: 3 }));
    assert.equal(exact.more, false);
    const filtered = await store.range(rangeRequest('k', 'l', { minModRevision: 5 }));
    assert.deepEqual(filtered.kvs.map((kv) => text(kv.key)), ['k2']);
    assert.equal(filtered.count, 3, 'count is before filters');
    const filteredLimited = await store.range(rangeRequest('k', 'l', { minModRevision: 3, limit: 1 }));
    assert.deepEqual(filteredLimited.kvs.map((kv) => text(kv.key)), ['k2']);
    assert.equal(filteredLimited.more, true);
    assert.equal(filteredLimited.count, 3);
    const countOnly = await store.range(rangeRequest('k', 'l', { countOnly: true, limit: 1 }));
    assert.deepEqual([countOnly.kvs.length, countOnly.count, countOnly.more], [0, 3, false]);
    const keysOnly = await store.range(rangeRequest('k', 'l', { keysOnly: true }));
    assert.deepEqual(keysOnly.kvs.map(plain), [
      { key: 'k1', value: '', create: 2, mod: 2, version: 1, lease: 0n },
      { key: 'k2', value: '', create: 3, mod: 5, version: 2, lease: 0n },
      { key: 'k3', value: '', create: 4, mod: 4, version: 1, lease: 0n },
    ]);
    const maxCreate = await store.range(rangeRequest('k', 'l', { maxCreateRevision: 3, minCreateRevision: 3 }));
    assert.deepEqual(maxCreate.kvs.map((kv) => text(kv.key)), ['k2']);
    const maxMod = await store.range(rangeRequest('k', 'l', { maxModRevision: 4 }));
    assert.deepEqual(maxMod.kvs.map((kv) => text(kv.key)), ['k1', 'k3']);
  }));

test('range: sort targets and orders (NONE with a non-key target sorts ascending)', () =>
  withStore(async (store) => {
    await apply(store, put('b', '3'), put('a', '1'), put('c', '2'), put('b', '4'));
    const order = async (extra: Parameters<typeof rangeRequest>[2]) => (await store.range(rangeRequest('a', 'z', extra))).kvs.map((kv) => text(kv.key));
    assert.deepEqual(await order({ sortOrder: 'none', sortTarget: 'key' }), ['a', 'b', 'c']);
    assert.deepEqual(await order({ sortOrder: 'descend', sortTarget: 'key' }), ['c', 'b', 'a']);
    assert.deepEqual(await order({ sortOrder: 'ascend', sortTarget: 'create' }), ['b', 'a', 'c']);
    assert.deepEqual(await order({ sortOrder: 'none', sortTarget: 'create' }), ['b', 'a', 'c']);
    assert.deepEqual(await order({ sortOrder: 'descend', sortTarget: 'mod' }), ['b', 'c', 'a']);
    assert.deepEqual(await order({ sortOrder: 'descend', sortTarget: 'version' }), ['b', 'a', 'c']);
    assert.deepEqual(await order({ sortOrder: 'ascend', sortTarget: 'value' }), ['a', 'c', 'b']);
    assert.deepEqual(await order({ sortOrder: 'descend', sortTarget: 'value', limit: 2 }), ['b', 'c']);
    const limited = await store.range(rangeRequest('a', 'z', { sortOrder: 'descend', sortTarget: 'key', limit: 1 }));
    assert.deepEqual([limited.kvs.map((kv) => text(kv.key)), limited.more, limited.count], [['c'], true, 3]);
  }));

test('range errors: empty key, future revision, compacted revision', () =>
  withStore(async (store) => {
    await apply(store, put('a', '1'), put('a', '2'), put('a', '3'));
    await assert.rejects(store.range(rangeRequest('')), (error: unknown) => error instanceof KvdError && error.code === 'empty-key');
    await assert.rejects(store.range(rangeRequest('a', '', { revision: 5 })), (error: unknown) => error instanceof KvdError && error.code === 'future-revision');
    ok(await applyOne(store, compact(3)));
    await assert.rejects(store.range(rangeRequest('a', '', { revision: 2 })), (error: unknown) => error instanceof KvdError && error.code === 'compacted');
    assert.deepEqual((await store.range(rangeRequest('a', '', { revision: 3 }))).kvs.map(plain), [{ key: 'a', value: '2', create: 2, mod: 3, version: 2, lease: 0n }], 'reading at the compacted revision itself works');
  }));

test('put: prev_kv, ignore_value, ignore_lease and their errors', () =>
  withStore(async (store) => {
    const first = ok(await applyOne(store, put('k', 'v1', { prevKv: true })));
    assert.deepEqual(first.result, { type: 'put', response: {} });
    ok(await applyOne(store, put('k', 'v2', { lease: 7n })));
    const withPrev = ok(await applyOne(store, put('k', 'v3', { prevKv: true, lease: 7n })));
    assert.deepEqual(printable(withPrev.result), { type: 'put', response: { prevKv: { key: 'k', value: 'v2', createRevision: 2, modRevision: 3, version: 2, lease: 7n } } });
    const ignoreValue = ok(await applyOne(store, put('k', '', { ignoreValue: true })));
    assert.deepEqual(printable(ignoreValue.events[0].kv), { key: 'k', value: 'v3', createRevision: 2, modRevision: 5, version: 4, lease: 0n });
    ok(await applyOne(store, put('k', 'v4', { lease: 9n })));
    const ignoreLease = ok(await applyOne(store, put('k', 'v5', { ignoreLease: true })));
    assert.deepEqual(printable(ignoreLease.events[0].kv), { key: 'k', value: 'v5', createRevision: 2, modRevision: 7, version: 6, lease: 9n });
    assert.equal(errorCode(await applyOne(store, put('missing', '', { ignoreValue: true }))), 'key-not-found');
    assert.equal(errorCode(await applyOne(store, put('missing', 'x', { ignoreLease: true }))), 'key-not-found');
    assert.equal(errorCode(await applyOne(store, put('k', 'x', { ignoreValue: true }))), 'value-provided');
    assert.equal(errorCode(await applyOne(store, put('k', 'x', { ignoreLease: true, lease: 3n }))), 'lease-provided');
    assert.equal(errorCode(await applyOne(store, put('', 'x'))), 'empty-key');
    assert.equal(errorCode(await applyOne(store, put('k', 'x', { lease: 5n }), { leaseExists: (id) => id === 9n })), 'lease-not-found');
    assert.equal(store.currentRevision, 7, 'failed requests change nothing');
    ok(await applyOne(store, put('k', 'x', { lease: 9n }), { leaseExists: (id) => id === 9n }));
  }));

test('delete range: prev_kvs, deleted count, one revision for all keys', () =>
  withStore(async (store) => {
    await apply(store, put('a', '1'), put('b', '2'), put('c', '3'));
    const outcome = ok(await applyOne(store, del('a', 'c', { prevKv: true })));
    assert.equal(outcome.revision, 5);
    assert.deepEqual(printable(outcome.result), {
      type: 'delete-range',
      response: { deleted: 2, prevKvs: [
        { key: 'a', value: '1', createRevision: 2, modRevision: 2, version: 1, lease: 0n },
        { key: 'b', value: '2', createRevision: 3, modRevision: 3, version: 1, lease: 0n },
      ] },
    });
    assert.deepEqual(outcome.events.map((event) => [event.type, text(event.kv.key), event.kv.modRevision]), [['delete', 'a', 5], ['delete', 'b', 5]]);
    const withoutPrev = ok(await applyOne(store, del('c', '', {})));
    assert.deepEqual(withoutPrev.result, { type: 'delete-range', response: { deleted: 1, prevKvs: [] } });
  }));

test('txn: compares on value/version/create/mod/lease with all four results; missing keys compare as zero', () =>
  withStore(async (store) => {
    await apply(store, put('k', 'm', { lease: 5n }));
    const holds = async (compare: Parameters<typeof txn>[0][number]) => txnResponse(ok(await applyOne(store, txn([compare], []))).result).succeeded;
    assert.equal(await holds(cmpValue('k', 'equal', 'm')), true);
    assert.equal(await holds(cmpValue('k', 'greater', 'a')), true);
    assert.equal(await holds(cmpValue('k', 'less', 'z')), true);
    assert.equal(await holds(cmpValue('k', 'not-equal', 'm')), false);
    assert.equal(await holds(cmp('k', 'version', 'equal', 1)), true);
    assert.equal(await holds(cmp('k', 'create', 'equal', 2)), true);
    assert.equal(await holds(cmp('k', 'mod', 'less', 3)), true);
    assert.equal(await holds(cmp('k', 'mod', 'greater', 2)), false);
    assert.equal(await holds(cmp('k', 'lease', 'equal', 5)), true);
    assert.equal(await holds(cmp('k', 'lease', 'not-equal', 5)), false);
    // Missing key: zero-valued KV, except value compares always fail.
    assert.equal(await holds(cmp('nope', 'create', 'equal', 0)), true);
    assert.equal(await holds(cmp('nope', 'version', 'less', 1)), true);
    assert.equal(await holds(cmp('nope', 'lease', 'equal', 0)), true);
    assert.equal(await holds(cmpValue('nope', 'equal', '')), false);
    assert.equal(await holds(cmpValue('nope', 'not-equal', 'x')), false);
    assert.equal(store.currentRevision, 2);
  }));

test('txn: compare with range_end checks every key in the range', () =>
  withStore(async (store) => {
    await apply(store, put('p/a', '1'), put('p/b', '1'), put('p/c', '2'));
    const holds = async (compare: Parameters<typeof txn>[0][number]) => txnResponse(ok(await applyOne(store, txn([compare], []))).result).succeeded;
    assert.equal(await holds(cmpValue('p/', 'equal', '1', 'p0')), false);
    assert.equal(await holds(cmpValue('p/', 'equal', '1', 'p/c')), true);
    assert.equal(await holds(cmp('p/', 'version', 'equal', 1, 'p0')), true);
    assert.equal(await holds(cmp('p/', 'create', 'greater', 2, 'p0')), false);
    assert.equal(await holds(cmp('q/', 'create', 'equal', 0, 'q0')), true, 'empty range compares a zero KV');
    assert.equal(await holds(cmp('p/', 'mod', 'less', 10, ALL_FROM as unknown as string)), true);
  }));

test('txn: success/failure branches, one revision, ranges see earlier writes of the txn', () =>
  withStore(async (store) => {
    await apply(store, put('a', '1'));
    const outcome = ok(await applyOne(store, txn(
      [cmp('a', 'version', 'equal', 1)],
      [
        { type: 'put', request: putRequest('b', '2') },
        { type: 'range', request: rangeRequest('a', 'z') },
        { type: 'delete-range', request: deleteRequest('a', '', { prevKv: true }) },
        { type: 'range', request: rangeRequest('a', 'z', { revision: 2 }) },
      ],
      [{ type: 'put', request: putRequest('never', 'x') }],
    )));
    assert.equal(outcome.revision, 3);
    const response = txnResponse(outcome.result);
    assert.equal(response.succeeded, true);
    assert.deepEqual(printable(response.responses), [
      { type: 'put', response: {} },
      { type: 'range', response: { kvs: [
        { key: 'a', value: '1', createRevision: 2, modRevision: 2, version: 1, lease: 0n },
        { key: 'b', value: '2', createRevision: 3, modRevision: 3, version: 1, lease: 0n },
      ], more: false, count: 2 } },
      { type: 'delete-range', response: { deleted: 1, prevKvs: [{ key: 'a', value: '1', createRevision: 2, modRevision: 2, version: 1, lease: 0n }] } },
      { type: 'range', response: { kvs: [{ key: 'a', value: '1', createRevision: 2, modRevision: 2, version: 1, lease: 0n }], more: false, count: 1 } },
    ]);
    assert.deepEqual(outcome.events.map((event) => `${event.type}:${text(event.kv.key)}@${event.kv.modRevision}`), ['put:b@3', 'delete:a@3']);
    const failed = ok(await applyOne(store, txn([cmp('a', 'version', 'equal', 1)], [{ type: 'put', request: putRequest('x', '1') }], [{ type: 'put', request: putRequest('y', '1') }])));
    assert.equal(txnResponse(failed.result).succeeded, false);
    assert.deepEqual((await store.range(rangeRequest('x', 'z'))).kvs.map((kv) => text(kv.key)), ['y']);
    // The history keeps the op order within the revision.
    const history = await store.changes({ key: ALL_FROM, rangeEnd: ALL_FROM, fromRevision: 3, toRevision: 3, limit: 10 });
    assert.deepEqual(history.events.map((event) => `${event.type}:${text(event.kv.key)}`), ['put:b', 'delete:a']);
  }));

test('txn: nested txns choose their own branch on the pre-txn state; compares are evaluated before any write', () =>
  withStore(async (store) => {
    await apply(store, put('a', '1'));
    const outcome = ok(await applyOne(store, txn([], [
      { type: 'put', request: putRequest('b', '1') },
      { type: 'txn', request: txnRequest([cmp('b', 'version', 'equal', 0)], [{ type: 'put', request: putRequest('c', 'then') }], [{ type: 'put', request: putRequest('c', 'else') }]) },
      { type: 'txn', request: txnRequest([cmp('a', 'version', 'equal', 2)], [], [{ type: 'txn', request: txnRequest([], [{ type: 'put', request: putRequest('d', 'deep') }]) }]) },
    ])));
    const response = txnResponse(outcome.result);
    assert.equal(response.succeeded, true);
    assert.equal(response.responses[1].type === 'txn' && response.responses[1].response.succeeded, true, 'b was absent before the txn');
    assert.equal(response.responses[2].type === 'txn' && response.responses[2].response.succeeded, false);
    assert.deepEqual((await store.range(rangeRequest('a', 'z'))).kvs.map((kv) => `${text(kv.key)}=${text(kv.value)}@${kv.modRevision}`), ['a=1@2', 'b=1@3', 'c=then@3', 'd=deep@3']);
  }));

test('txn checks: duplicate keys (incl. nested and put-in-deleted-range), too many ops, key-not-found, lease-not-found, future range', () =>
  withStore(async (store) => {
    await apply(store, put('a', '1'));
    const p = (key: string) => ({ type: 'put' as const, request: putRequest(key, 'v') });
    assert.equal(errorCode(await applyOne(store, txn([], [p('x'), p('x')]))), 'duplicate-key');
    assert.equal(errorCode(await applyOne(store, txn([], [p('x'), { type: 'txn', request: txnRequest([], [p('x')]) }]))), 'duplicate-key');
    assert.equal(errorCode(await applyOne(store, txn([], [{ type: 'delete-range', request: deleteRequest('w', 'y') }, p('x')]))), 'duplicate-key');
    assert.equal(errorCode(await applyOne(store, txn([], [p('x'), { type: 'txn', request: txnRequest([], [{ type: 'delete-range', request: deleteRequest('x') }]) }]))), 'duplicate-key');
    assert.equal(errorCode(await applyOne(store, txn([], [{ type: 'delete-range', request: deleteRequest('a', ALL_FROM) }, p('b')]))), 'duplicate-key');
    // then/else of one nested txn may put the same key; deletes may overlap.
    ok(await applyOne(store, txn([], [{ type: 'txn', request: txnRequest([], [p('x')], [p('x')]) }, { type: 'delete-range', request: deleteRequest('m') }, { type: 'delete-range', request: deleteRequest('m') }])));
    // Sibling nested txns: a put, then a delete of the same key (etcd's static check misses it).
    assert.equal(errorCode(await applyOne(store, txn([], [{ type: 'txn', request: txnRequest([], [p('s')]) }, { type: 'txn', request: txnRequest([], [{ type: 'delete-range', request: deleteRequest('r', 't') }]) }]))), 'duplicate-key');
    // ...but exclusive branches may: then puts s, else deletes it.
    ok(await applyOne(store, txn([], [{ type: 'txn', request: txnRequest([cmp('a', 'version', 'equal', 1)], [p('s')], [{ type: 'delete-range', request: deleteRequest('s') }]) }])));
    const many = Array.from({ length: 129 }, (_, i) => p(`k${i}`));
    assert.equal(errorCode(await applyOne(store, txn([], many))), 'too-many-ops');
    ok(await applyOne(store, txn([], many.slice(0, 128))));
    assert.equal(errorCode(await applyOne(store, txn([], [p('z'), { type: 'put', request: putRequest('missing', '', { ignoreValue: true }) }]))), 'key-not-found');
    assert.equal(errorCode(await applyOne(store, txn([], [p('z'), { type: 'put', request: putRequest('y', 'v', { lease: 4n }) }]), { leaseExists: () => false })), 'lease-not-found');
    assert.equal(errorCode(await applyOne(store, txn([], [p('z'), { type: 'range', request: rangeRequest('a', '', { revision: 1000 }) }]))), 'future-revision');
    assert.equal(errorCode(await applyOne(store, txn([], [{ type: 'range', request: rangeRequest('') }]))), 'empty-key');
    assert.equal((await store.range(rangeRequest('z'))).count, 0, 'failed txns wrote nothing');
    // A failing check in the branch not taken does not matter.
    ok(await applyOne(store, txn([cmp('a', 'version', 'equal', 1)], [p('z')], [{ type: 'put', request: putRequest('missing', '', { ignoreValue: true }) }])));
  }));

test('maxTxnOps is configurable', async () => {
  const { store, dir } = await openTemp({ maxTxnOps: 2 });
  try {
    const p = (key: string) => ({ type: 'put' as const, request: putRequest(key, 'v') });
    assert.equal(errorCode(await applyOne(store, txn([], [p('a'), p('b'), p('c')]))), 'too-many-ops');
    assert.equal(errorCode(await applyOne(store, txn([cmp('a', 'version', 'equal', 0), cmp('b', 'version', 'equal', 0), cmp('c', 'version', 'equal', 0)], []))), 'too-many-ops');
    ok(await applyOne(store, txn([], [p('a'), p('b')])));
  } finally {
    await store.close();
    await cleanup(dir);
  }
});

test('compaction: errors, reads, physical removal, tombstones dropped, history kept for live keys', () =>
  withStore(async (store, path) => {
    await apply(store, put('a', '1'), put('a', '2'), put('b', '1'), del('b'), put('c', '1'), put('a', '3'));
    // revisions: a@2 a@3 b@4 b-del@5 c@6 a@7
    assert.equal(errorCode(await applyOne(store, compact(8))), 'future-revision');
    assert.equal(errorCode(await applyOne(store, compact(0))), 'compacted');
    const outcome = ok(await applyOne(store, compact(5)));
    assert.equal(outcome.revision, 7, 'compaction makes no revision');
    assert.equal(store.compactedRevision, 5);
    assert.equal(errorCode(await applyOne(store, compact(5))), 'compacted');
    assert.equal(errorCode(await applyOne(store, compact(4))), 'compacted');
    await store.waitCompacted(5);
    await assert.rejects(store.range(rangeRequest('a', '', { revision: 4 })), (error: unknown) => error instanceof KvdError && error.code === 'compacted');
    assert.deepEqual((await store.range(rangeRequest('a', 'z', { revision: 5 }))).kvs.map((kv) => `${text(kv.key)}@${kv.modRevision}`), ['a@3']);
    assert.deepEqual((await store.range(rangeRequest('a', 'z', { revision: 6 }))).kvs.map((kv) => `${text(kv.key)}@${kv.modRevision}`), ['a@3', 'c@6']);
    await assert.rejects(store.changes({ key: ALL_FROM, rangeEnd: ALL_FROM, fromRevision: 4, limit: 10 }), (error: unknown) => error instanceof KvdError && error.code === 'compacted');
    // The compaction revision itself stays readable, as for Range (etcd delivers a watch from it);
    // its tombstone (b@5) was dropped by the compaction, as etcd drops it.
    const atCompaction = await store.changes({ key: ALL_FROM, rangeEnd: ALL_FROM, fromRevision: 5, limit: 10 });
    assert.deepEqual(atCompaction.events.map((event) => `${event.type}:${text(event.kv.key)}@${event.kv.modRevision}`), ['put:c@6', 'put:a@7']);
    const history = await store.changes({ key: ALL_FROM, rangeEnd: ALL_FROM, fromRevision: 6, limit: 10 });
    assert.deepEqual(history.events.map((event) => `${event.type}:${text(event.kv.key)}@${event.kv.modRevision}`), ['put:c@6', 'put:a@7']);
    // Records left: a@3, c@6, a@7 (a@2 superseded; b@4 and its tombstone @5 dropped).
    const hashBefore = await store.hashKV(0);
    await store.close();
    const reopened = await MvccStore.open({ path });
    try {
      assert.equal(reopened.indexedKeys, 2);
      assert.equal(reopened.compactedRevision, 5);
      assert.deepEqual(await reopened.hashKV(0), hashBefore);
      assert.deepEqual((await reopened.range(rangeRequest('a', '', { revision: 5 }))).kvs.map(plain), [{ key: 'a', value: '2', create: 2, mod: 3, version: 2, lease: 0n }]);
    } finally {
      await reopened.close();
    }
    // withStore closes the original store again: close is idempotent.
  }));

test('compaction runs in bounded steps and keeps applies going; it resumes after reopen', async () => {
  const { store, dir, path } = await openTemp();
  try {
    const keys = 2500;
    for (let round = 0; round < 2; round += 1) {
      const requests = Array.from({ length: keys }, (_, i) => put(`key/${String(i).padStart(5, '0')}`, `v${round}`));
      for (let i = 0; i < requests.length; i += 500) await apply(store, ...requests.slice(i, i + 500));
    }
    const events: string[] = [];
    const target = store.currentRevision;
    ok(await applyOne(store, compact(target)));
    // Applies keep working while compaction runs.
    const during = ok(await applyOne(store, put('during', 'x')));
    assert.equal(during.revision, target + 1);
    await store.waitCompacted(target);
    const hash = await store.hashKV(0);
    await store.close();
    const reopened = await MvccStore.open({ path, logger: (event) => events.push(event.type) });
    try {
      assert.equal(reopened.indexedKeys, keys + 1);
      assert.deepEqual(await reopened.hashKV(0), hash);
      assert.ok(!events.includes('compaction-started'), 'nothing left to resume');
    } finally {
      await reopened.close();
    }
  } finally {
    await cleanup(dir);
  }
});

test('an interrupted compaction resumes on open and ends with the same state', async () => {
  const { store, dir, path } = await openTemp();
  try {
    const requests = Array.from({ length: 3000 }, (_, i) => put(`k${i % 1500}`, `v${i}`));
    for (let i = 0; i < requests.length; i += 1000) await apply(store, ...requests.slice(i, i + 1000));
    ok(await applyOne(store, compact(store.currentRevision - 10)));
    const expected = await store.hashKV(0);
    await store.close(); // stops the compaction between steps (or after it finished)
    const events: string[] = [];
    const reopened = await MvccStore.open({ path, logger: (event) => events.push(event.type) });
    try {
      assert.ok(events.includes('compaction-started'), 'the unfinished compaction resumed');
      await reopened.waitCompacted(reopened.compactedRevision);
      assert.deepEqual(await reopened.hashKV(0), expected);
      const all = await reopened.range(rangeRequest(ALL_FROM, ALL_FROM, { countOnly: true }));
      assert.equal(all.count, 1500);
    } finally {
      await reopened.close();
    }
  } finally {
    await cleanup(dir);
  }
});

test('changes: revision order, limit never splits a revision, lastRevision, prevKv, key filter', () =>
  withStore(async (store) => {
    await apply(store, put('a', '1'), put('b', '1'), txn([], [{ type: 'put', request: putRequest('c', '1') }, { type: 'put', request: putRequest('a', '2') }, { type: 'put', request: putRequest('x', '1') }]), del('a'), put('b', '2'));
    // 2: a, 3: b, 4: c a x, 5: del a, 6: b
    const all = await store.changes({ key: ALL_FROM, rangeEnd: ALL_FROM, fromRevision: 1, limit: 100 });
    assert.deepEqual(all.events.map((event) => `${event.kv.modRevision}:${event.type}:${text(event.kv.key)}`), ['2:put:a', '3:put:b', '4:put:c', '4:put:a', '4:put:x', '5:delete:a', '6:put:b']);
    assert.equal(all.lastRevision, 6);
    const first = await store.changes({ key: ALL_FROM, rangeEnd: ALL_FROM, fromRevision: 2, limit: 3 });
    assert.deepEqual(first.events.map((event) => event.kv.modRevision), [2, 3]);
    assert.equal(first.lastRevision, 3);
    const big = await store.changes({ key: ALL_FROM, rangeEnd: ALL_FROM, fromRevision: 4, limit: 1 });
    assert.deepEqual(big.events.map((event) => event.kv.modRevision), [4, 4, 4], 'a single revision is never split');
    assert.equal(big.lastRevision, 4);
    const bounded = await store.changes({ key: ALL_FROM, rangeEnd: ALL_FROM, fromRevision: 2, toRevision: 4, limit: 100 });
    assert.equal(bounded.lastRevision, 4);
    assert.equal(bounded.events.length, 5);
    const onlyA = await store.changes({ key: bytes('a'), rangeEnd: new Uint8Array(), fromRevision: 1, limit: 100, prevKv: true });
    assert.deepEqual(printable(onlyA.events), [
      { type: 'put', kv: { key: 'a', createRevision: 2, modRevision: 2, version: 1, value: '1', lease: 0n } },
      { type: 'put', kv: { key: 'a', createRevision: 2, modRevision: 4, version: 2, value: '2', lease: 0n }, prevKv: { key: 'a', createRevision: 2, modRevision: 2, version: 1, value: '1', lease: 0n } },
      { type: 'delete', kv: { key: 'a', createRevision: 0, modRevision: 5, version: 0, value: '', lease: 0n }, prevKv: { key: 'a', createRevision: 2, modRevision: 4, version: 2, value: '2', lease: 0n } },
    ]);
    const future = await store.changes({ key: ALL_FROM, rangeEnd: ALL_FROM, fromRevision: 7, limit: 10 });
    assert.deepEqual(future, { events: [], lastRevision: 6 });
  }));

test('onApply: one item per new revision after commit, in order; nothing for no-op batches', () =>
  withStore(async (store) => {
    const seen: Array<{ revision: number; keys: string[]; committed: number }> = [];
    const stop = store.onApply((batch) => {
      for (const item of batch) seen.push({ revision: item.revision, keys: item.events.map((event) => text(event.kv.key)), committed: store.currentRevision });
    });
    await apply(store, put('a', '1'), del('none'), put('b', '1'), txn([], []), del('a'));
    await apply(store, del('none'));
    assert.deepEqual(seen, [
      { revision: 2, keys: ['a'], committed: 4 },
      { revision: 3, keys: ['b'], committed: 4 },
      { revision: 4, keys: ['a'], committed: 4 },
    ]);
    stop();
    await apply(store, put('c', '1'));
    assert.equal(seen.length, 3);
  }));

test('restart idempotence: entries at or below the consistent index are skipped; meta is committed with the batch', async () => {
  const { store, dir, path } = await openTemp();
  try {
    const outcomes = await store.applyBatch([{ index: 10, request: put('a', '1') }, { index: 11, request: null }, { index: 12, request: put('b', '1') }], { meta: new Map([['member/1', bytes('m1')], ['lease/5', bytes('l5')]]) });
    assert.deepEqual(outcomes.map((outcome) => (outcome.ok ? 'ok' : outcome.reason)), ['ok', 'empty-entry', 'ok']);
    assert.equal(store.consistentIndex, 12);
    assert.equal(text(store.getMeta('member/1') ?? new Uint8Array()), 'm1');
    await store.close();
    const reopened = await MvccStore.open({ path });
    try {
      assert.equal(reopened.consistentIndex, 12);
      assert.equal(reopened.currentRevision, 3);
      assert.deepEqual([...reopened.listMeta('lease/').keys()], ['lease/5']);
      const replay = await reopened.applyBatch([{ index: 11, request: put('a', 'again') }, { index: 12, request: put('b', 'again') }, { index: 13, request: put('c', '1') }], { meta: new Map([['lease/5', null]]) });
      assert.deepEqual(replay.map((outcome) => (outcome.ok ? 'ok' : outcome.reason)), ['already-applied', 'already-applied', 'ok']);
      assert.equal(reopened.currentRevision, 4);
      assert.equal(reopened.getMeta('lease/5'), undefined);
      assert.equal(text((await reopened.range(rangeRequest('a'))).kvs[0].value), '1');
      const allSkipped = await reopened.applyBatch([{ index: 13, request: put('d', '1') }], { meta: new Map([['x', bytes('y')]]) });
      assert.equal(allSkipped[0].ok, false);
      assert.equal(reopened.getMeta('x'), undefined, 'meta of an already-applied batch is ignored');
    } finally {
      await reopened.close();
    }
  } finally {
    await cleanup(dir);
  }
});

test('the store owns which keys a lease holds: keysOfLease follows puts, overwrites, moves and deletes, also after reopen', async () => {
  const { store, dir, path } = await openTemp();
  try {
    await apply(store, put('a', '1', { lease: 1n }), put('b', '1', { lease: 1n }), put('c', '1', { lease: 2n }), put('b', '2'), del('c'), put('d', '1', { lease: 0xffffffffffffffffn }));
    const expected = [['1', ['a']], ['18446744073709551615', ['d']]];
    const view = (map: Map<bigint, Uint8Array[]>) => [...map].map(([lease, keys]) => [lease.toString(), keys.map(text).sort()]).sort();
    assert.deepEqual(view(store.listLeasedKeys()), expected);
    // Sorted bytewise; a key moves between leases; -1 and 2^64-1 are the same u64 lease id.
    await apply(store, put('c\u00ff', '1', { lease: 1n }), put('0', '1', { lease: 1n }), put('a', '3', { lease: 2n }));
    assert.deepEqual(store.keysOfLease(1n).map(text), ['0', 'c\u00ff']);
    assert.deepEqual(store.keysOfLease(2n).map(text), ['a']);
    assert.deepEqual(store.keysOfLease(-1n).map(text), ['d']);
    assert.deepEqual(store.keysOfLease(3n), []);
    store.assertInvariants();
    await store.close();
    const reopened = await MvccStore.open({ path });
    try {
      assert.deepEqual(reopened.keysOfLease(1n).map(text), ['0', 'c\u00ff']);
      assert.deepEqual(reopened.keysOfLease(2n).map(text), ['a']);
      reopened.assertInvariants();
    } finally {
      await reopened.close();
    }
  } finally {
    await cleanup(dir);
  }
});

test('export/restore roundtrip reproduces data, meta, consistent index and hash', async () => {
  const source = await openTemp();
  const target = await openTemp();
  try {
    await source.store.applyBatch([{ index: 1, request: put('a', 'x'.repeat(300_000)) }, { index: 2, request: put('b', 'y'.repeat(900_000)) }], { meta: new Map([['member/1', bytes('m')]]) });
    await apply(source.store, del('a'), put('c', '1'), compact(3));
    const hash = await source.store.hashKV(0);
    const chunks: Uint8Array[] = [];
    for await (const chunk of source.store.exportSnapshot()) chunks.push(chunk);
    assert.ok(chunks.length >= 2, 'large dumps come in several chunks');
    await target.store.close();
    async function* replay(): AsyncIterable<Uint8Array> {
      // Re-chunk at odd boundaries to exercise the parser.
      const all = Buffer.concat(chunks);
      for (let i = 0; i < all.length; i += 777_777) yield all.subarray(i, i + 777_777);
    }
    await MvccStore.restoreSnapshot({ path: target.path, chunks: replay() });
    const restored = await MvccStore.open({ path: target.path });
    try {
      assert.deepEqual(await restored.hashKV(0), hash);
      assert.equal(restored.consistentIndex, source.store.consistentIndex);
      assert.equal(restored.currentRevision, source.store.currentRevision);
      assert.equal(restored.compactedRevision, 3);
      assert.equal(text(restored.getMeta('member/1') ?? new Uint8Array()), 'm');
      assert.equal((await restored.range(rangeRequest('b'))).kvs[0].value.length, 900_000);
    } finally {
      await restored.close();
    }
    // A truncated dump is refused and leaves the old database in place.
    async function* truncated(): AsyncIterable<Uint8Array> {
      const all = Buffer.concat(chunks);
      yield all.subarray(0, all.length - 5);
    }
    await assert.rejects(MvccStore.restoreSnapshot({ path: target.path, chunks: truncated() }), (error: unknown) => error instanceof KvdError && error.code === 'corrupt');
    const still = await MvccStore.open({ path: target.path });
    try {
      assert.deepEqual(await still.hashKV(0), hash);
    } finally {
      await still.close();
    }
  } finally {
    await source.store.close();
    await cleanup(source.dir);
    await cleanup(target.dir);
  }
});

test('hashKV: errors, past revisions, sensitivity to content', () =>
  withStore(async (store) => {
    await apply(store, put('a', '1'), put('b', '2'));
    const atTwo = await store.hashKV(2);
    assert.equal(atTwo.hashRevision, 2);
    await apply(store, put('c', '3'));
    assert.deepEqual(await store.hashKV(2), atTwo, 'a past hash does not change with later writes');
    assert.notEqual((await store.hashKV(0)).hash, atTwo.hash);
    await assert.rejects(store.hashKV(10), (error: unknown) => error instanceof KvdError && error.code === 'future-revision');
    ok(await applyOne(store, compact(3)));
    await assert.rejects(store.hashKV(2), (error: unknown) => error instanceof KvdError && error.code === 'compacted');
  }));

test('live bytes follow applies, meta writes and compaction, and match a reopen; defragment gives the space back', async () => {
  const { store: first, dir, path } = await openTemp();
  let store = first;
  try {
    const value = 'v'.repeat(4000);
    for (let round = 0; round < 3; round += 1) {
      await apply(store, ...Array.from({ length: 300 }, (_, i) => put(`k${String(i).padStart(4, '0')}`, `${round}${value}`)));
    }
    await store.applyBatch([{ index: store.consistentIndex + 1, request: null }], { meta: new Map([['a/meta', bytes('x'.repeat(100))]]) });
    const grown = store.liveBytes;
    // 900 records of about 4 kB, plus the meta entry.
    assert.ok(grown > 900 * 4000 && grown < 900 * 4200, `live bytes ${grown}`);
    await store.applyBatch([{ index: store.consistentIndex + 1, request: null }], { meta: new Map([['a/meta', null]]) });
    assert.equal(store.liveBytes, grown - (1 + 'a/meta'.length + 100));
    // Compacting away the first two rounds drops two thirds of the records.
    ok(await applyOne(store, compact(store.currentRevision)));
    await store.waitCompacted(store.currentRevision);
    const live = store.liveBytes;
    assert.ok(live > 300 * 4000 && live < 300 * 4200, `live bytes after compaction ${live}`);
    await store.sync();
    const before = await store.dbSizeBytes();
    const result = await store.defragment();
    assert.ok(result.slices >= 3, 'meta, revisions and system keys are separate slices');
    const after = await store.dbSizeBytes();
    assert.ok(after < before, `defragment shrinks the backend (${before} -> ${after})`);
    assert.ok(after < live * 1.5, `the defragmented backend (${after}) is close to the live bytes (${live})`);
    await store.close();
    store = await MvccStore.open({ path });
    assert.equal(store.liveBytes, live, 'reopening recounts the same live bytes');
  } finally {
    await store.close();
    await cleanup(dir);
  }
});

test('defragment calls made while one runs share the next run; a call on a closed store fails', async () => {
  const { store, dir } = await openTemp();
  try {
    await apply(store, ...Array.from({ length: 200 }, (_, i) => put(`k${i}`, 'v'.repeat(100))));
    const first = store.defragment();
    const second = store.defragment();
    const third = store.defragment();
    assert.equal(second, third, 'callers that arrive while one runs share the queued run');
    assert.notEqual(first, second);
    await Promise.all([first, second]);
    await store.close();
    assert.throws(() => store.defragment(), (error: unknown) => error instanceof KvdError && error.code === 'stopped');
  } finally {
    await store.close();
    await cleanup(dir);
  }
});

test('reads, history and applies stay correct while a compaction is in progress', async () => {
  const { store, dir } = await openTemp();
  try {
    const keys = 3000;
    for (let round = 0; round < 3; round += 1) {
      const requests = Array.from({ length: keys }, (_, i) => put(`k/${String(i).padStart(5, '0')}`, `r${round}`));
      for (let i = 0; i < requests.length; i += 1000) await apply(store, ...requests.slice(i, i + 1000));
    }
    const target = store.currentRevision - 500;
    const expected = (await store.range(rangeRequest('k/', 'k0', { revision: target }))).kvs.map(plain);
    const latest = (await store.range(rangeRequest('k/', 'k0'))).kvs.map(plain);
    const loaded = store.currentRevision;
    ok(await applyOne(store, compact(target)));
    let finished = false;
    const done = store.waitCompacted(target).then(
      () => {
        finished = true;
      },
      (error: unknown) => error,
    );
    let rounds = 0;
    let overlapped = false;
    while (!finished || rounds < 3) {
      rounds += 1;
      overlapped ||= !finished;
      const [atTarget, now, point, history] = await Promise.all([
        store.range(rangeRequest('k/', 'k0', { revision: target })),
        store.range(rangeRequest('k/', 'k0', { revision: loaded })),
        store.range(rangeRequest('k/02999', '', { revision: target + 1 })),
        store.changes({ key: ALL_FROM, rangeEnd: ALL_FROM, fromRevision: target + 1, toRevision: target + 100, limit: 1000 }),
        apply(store, put(`other/${rounds}`, 'x')),
      ]);
      assert.deepEqual(atTarget.kvs.map(plain), expected);
      assert.deepEqual(now.kvs.map(plain), latest);
      assert.equal(point.kvs.length, 1);
      assert.equal(history.events.length, 100);
    }
    assert.equal(await done, undefined);
    assert.ok(overlapped, 'some reads ran while the compaction was in progress');
    assert.equal(store.indexedKeys, keys + rounds);
  } finally {
    await store.close();
    await cleanup(dir);
  }
});

test('a throwing onApply listener is logged and does not disturb apply or other listeners', async () => {
  const logged: string[] = [];
  const { store, dir } = await openTemp({ logger: (event) => logged.push(event.type) });
  try {
    store.onApply(() => {
      throw new Error('listener bug');
    });
    let calls = 0;
    store.onApply(() => {
      calls += 1;
    });
    ok(await applyOne(store, put('a', '1')));
    assert.equal(calls, 1);
    assert.ok(logged.includes('listener-failed'));
    assert.equal(store.currentRevision, 2);
  } finally {
    await store.close();
    await cleanup(dir);
  }
});

test('onVisible: a batch is readable and answered while its LevelDB write is in flight; history scans and hashes wait for the write', () =>
  withStore(async (store) => {
    ok(await applyOne(store, put('k0', 'before')));
    const hashBefore = await store.hashKV(0);
    // 2,000 puts of 2 KiB in one batch: a write of 4 MiB, long in flight after onVisible returns.
    const requests = Array.from({ length: 2000 }, (_, i) => put(`k${i}`, `v${i}-`.padEnd(2048, 'x')));
    const base = store.consistentIndex;
    const seen: { revision: number; one: string; range: Promise<string[]>; changes: Promise<number>; hash: Promise<{ hash: number; hashRevision: number }> } | undefined = await new Promise((resolve, reject) => {
      let during: typeof seen;
      store.applyBatch(requests.map((request, i) => ({ index: base + i + 1, request })), {
        onVisible: (outcomes) => {
          // Synchronously inside the callback: the write cannot have ended (its completion runs on this thread).
          const revision = store.currentRevision;
          const one = store.rangeKeyNow(rangeRequest('k1999'));
          during = {
            revision,
            one: one === undefined ? '' : text(one.kvs[0].value),
            range: store.range(rangeRequest('k1', 'k2', { limit: 5 })).then((response) => response.kvs.map((kv) => text(kv.value).slice(0, 6))),
            changes: store.changes({ key: bytes('k'), rangeEnd: bytes('l'), fromRevision: 3, limit: 10 }).then((result) => result.lastRevision),
            hash: store.hashKV(revision),
          };
          assert.equal(outcomes.length, 2000);
        },
      }).then(() => resolve(during), reject);
    });
    assert.ok(seen !== undefined, 'onVisible was called');
    assert.equal(seen.revision, 2002, 'the batch\'s revisions were readable in onVisible');
    assert.equal(seen.one.slice(0, 8), 'v1999-xx', 'a one-key read found the record of the batch in flight');
    assert.deepEqual(await seen.range, ['v1-xxx', 'v10-xx', 'v100-x', 'v1000-', 'v1001-']);
    assert.equal(await seen.changes, 2, 'history read from LevelDB stops at the written revision');
    const hashDuring = await seen.hash;
    assert.equal(hashDuring.hashRevision, 2002);
    assert.deepEqual(hashDuring, await store.hashKV(2002), 'the hash at the new revision waited for the write');
    assert.notEqual(hashDuring.hash, hashBefore.hash);
    assert.equal((await store.changes({ key: bytes('k'), rangeEnd: bytes('l'), fromRevision: 3, limit: 10_000 })).lastRevision, 2002);
    store.assertInvariants();
  }));

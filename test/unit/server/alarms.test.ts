// Goal: the replicated alarm set decides like etcd's alarm store and its capped and corrupt
// appliers (raise, clear, refuse), keeps an operator's alarm out of reach of the quota's own
// clear, survives a reload from its meta records, and prints alarms in etcd's text; the quota's
// request cost is etcd's.
// Method: drive AlarmSet with requests as the applier would, replaying its meta writes into a
// map that stands for the store's meta namespace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AlarmSet, alarmText, type AlarmChangeRequest } from '../../../src/server/alarms.js';
import { requestCost } from '../../../src/server/quota.js';
import type { RequestOp, WriteRequest } from '../../../src/store/mvcc/types.js';
import { put, del, txn, compact } from '../store/mvcc/helpers.js';

const A = 0xa1n;
const B = 0xb2n;

function applyAll(set: AlarmSet, meta: Map<string, Uint8Array>, requests: AlarmChangeRequest[]): void {
  for (const request of requests) {
    const change = set.change(request);
    if (change.meta === undefined) continue;
    const [key, value] = change.meta;
    if (value === null) meta.delete(key);
    else meta.set(key, value);
  }
}

const activate = (memberId: bigint, alarm: 'nospace' | 'corrupt', origin: AlarmChangeRequest['origin'] = 'client'): AlarmChangeRequest => ({ type: 'alarm', action: 'activate', memberId, alarm, origin });
const deactivate = (memberId: bigint, alarm: 'nospace' | 'corrupt', origin: AlarmChangeRequest['origin'] = 'client'): AlarmChangeRequest => ({ type: 'alarm', action: 'deactivate', memberId, alarm, origin });

test('activate answers the alarm (also when already active), deactivate the cleared one or nothing', () => {
  const set = new AlarmSet();
  assert.deepEqual(set.change(activate(A, 'nospace')).alarms, [{ memberId: A, alarm: 'nospace', raisedBy: 'client' }]);
  const again = set.change(activate(A, 'nospace', 'quota'));
  assert.deepEqual(again.alarms, [{ memberId: A, alarm: 'nospace', raisedBy: 'client' }], 'the first raiser is kept');
  assert.equal(again.meta, undefined, 'nothing to write');
  assert.deepEqual(set.change(deactivate(B, 'nospace')).alarms, [], 'another member has no alarm');
  assert.deepEqual(set.change(deactivate(A, 'corrupt')).alarms, [], 'another type');
  assert.deepEqual(set.change(deactivate(A, 'nospace')).alarms, [{ memberId: A, alarm: 'nospace', raisedBy: 'client' }]);
  assert.equal(set.has('nospace'), false);
});

test('the low-water clear removes only what the quota raised', () => {
  const set = new AlarmSet();
  set.change(activate(A, 'nospace', 'quota'));
  set.change(activate(B, 'nospace', 'client'));
  assert.deepEqual(set.change(deactivate(B, 'nospace', 'low-water')).alarms, [], 'an operator\'s alarm stays');
  assert.deepEqual(set.change(deactivate(A, 'nospace', 'low-water')).alarms, [{ memberId: A, alarm: 'nospace', raisedBy: 'quota' }]);
  assert.deepEqual(set.list(), [{ memberId: B, alarm: 'nospace', raisedBy: 'client' }]);
});

test('GET lists by type, sorted by member; a reload from the meta records gives the same set', () => {
  const set = new AlarmSet();
  const meta = new Map<string, Uint8Array>();
  applyAll(set, meta, [activate(B, 'corrupt', 'corruption-check'), activate(A, 'nospace', 'quota'), activate(B, 'nospace'), activate(A, 'corrupt'), deactivate(A, 'corrupt')]);
  assert.deepEqual(set.list().map(alarmText), ['memberID:161 alarm:NOSPACE ', 'memberID:178 alarm:NOSPACE ', 'memberID:178 alarm:CORRUPT ']);
  assert.deepEqual(set.list('corrupt'), [{ memberId: B, alarm: 'corrupt', raisedBy: 'corruption-check' }]);
  const reloaded = new AlarmSet();
  reloaded.load(new Map([...meta, ['member/1', new Uint8Array([1])]]));
  assert.deepEqual(reloaded.list(), set.list());
  reloaded.load(new Map());
  assert.deepEqual(reloaded.list(), [], 'load replaces, never merges');
});

test('NOSPACE refuses what grows the store; CORRUPT refuses every write and wins over NOSPACE', () => {
  const set = new AlarmSet();
  const readOnlyTxn = txn([], [{ type: 'range', request: { key: new Uint8Array([1]), rangeEnd: new Uint8Array(0), limit: 0, revision: 0, sortOrder: 'none', sortTarget: 'key', serializable: false, keysOnly: false, countOnly: false, minModRevision: 0, maxModRevision: 0, minCreateRevision: 0, maxCreateRevision: 0 } }]);
  const nestedPut: WriteRequest = txn([], [], [{ type: 'txn', request: { compare: [], success: [{ type: 'put', request: (put('k', 'v') as Extract<WriteRequest, { type: 'put' }>).request }], failure: [] } }]);
  const deleteTxn = txn([], [{ type: 'delete-range', request: (del('k') as Extract<WriteRequest, { type: 'delete-range' }>).request }]);
  const all = { put: put('k', 'v'), nestedPut, deleteTxn, readOnlyTxn, del: del('k'), compact: compact(2), grant: { type: 'lease-grant' }, revoke: { type: 'lease-revoke' }, attributes: { type: 'member-attributes' } };
  const refusals = (): Record<string, string | undefined> => Object.fromEntries(Object.entries(all).map(([name, request]) => [name, set.refusal(request)?.code]));
  assert.deepEqual(Object.values(refusals()).filter((code) => code !== undefined), [], 'no alarm, no refusal');
  set.change(activate(A, 'nospace', 'quota'));
  assert.deepEqual(refusals(), { put: 'no-space', nestedPut: 'no-space', deleteTxn: undefined, readOnlyTxn: undefined, del: undefined, compact: undefined, grant: 'no-space', revoke: undefined, attributes: undefined });
  set.change(activate(B, 'corrupt'));
  assert.deepEqual(refusals(), { put: 'corrupt', nestedPut: 'corrupt', deleteTxn: 'corrupt', readOnlyTxn: undefined, del: 'corrupt', compact: 'corrupt', grant: 'corrupt', revoke: 'corrupt', attributes: undefined });
  assert.equal(set.refusal(all.put)?.message, 'etcdserver: corrupt cluster');
  set.change(deactivate(B, 'corrupt'));
  assert.equal(set.refusal(all.put)?.message, 'etcdserver: mvcc: database space exceeded');
});

test('alarm texts are etcd\'s (decimal member id, trailing space, NONE left out)', () => {
  assert.equal(alarmText({ memberId: 13668033151171901709n, alarm: 'nospace' }), 'memberID:13668033151171901709 alarm:NOSPACE ');
  assert.equal(alarmText({ memberId: 5n, alarm: 'none' }), 'memberID:5 ');
  assert.equal(alarmText({ memberId: 0n, alarm: 'corrupt' }), 'alarm:CORRUPT ');
});

test('request cost is etcd\'s: key + value + 256 per put, the larger txn branch, 64 per lease, 0 for the rest', () => {
  assert.equal(requestCost(put('key', 'value')), 256 + 3 + 5);
  assert.equal(requestCost({ type: 'lease-grant', id: 1n, ttlSeconds: 5 }), 64);
  assert.equal(requestCost(del('k')), 0);
  assert.equal(requestCost(compact(3)), 0);
  const putOp = (key: string, value: string): RequestOp => ({ type: 'put', request: (put(key, value) as Extract<WriteRequest, { type: 'put' }>).request });
  assert.equal(requestCost(txn([], [putOp('a', 'xx'), putOp('b', 'yy')], [putOp('c', 'z')])), 2 * (256 + 1 + 2));
  assert.equal(requestCost(txn([], [putOp('a', 'x')], [putOp('c', 'z'.repeat(100))])), 256 + 1 + 100);
});

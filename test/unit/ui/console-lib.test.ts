// Goal: the web console's pure pieces compute what the pages show and send: base64 and prefix
// ends as etcd's gateway wants them, one level of keys with directory counts, line and map
// diffs, value kinds, and the config rollback transaction (puts, deletes and its guards).
// Method: plain inputs and exact expected outputs; the rollback txn is also checked against the
// old and new maps it must turn into each other.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromBase64, fromHex, prefixEnd, toBase64, toHex, utf8, keySuccessor, indexOfBytes } from '../../../ui/src/lib/bytes.js';
import { childOf, groupInto, type LevelChild } from '../../../ui/src/lib/tree.js';
import { diffLines, diffMaps, DIFF_LINES_MAX } from '../../../ui/src/lib/diff.js';
import { detectKind, formatSeconds, formatSize, hexId, renderValue } from '../../../ui/src/lib/format.js';
import { isNoop, planRollback, rollbackTxn } from '../../../ui/src/lib/rollback.js';

const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString('utf8');
const b64 = (value: string): string => Buffer.from(value).toString('base64');

test('base64 and hex round-trip any bytes as the gateway reads them', () => {
  const bytes = new Uint8Array([0, 1, 0x7f, 0x80, 0xfe, 0xff]);
  assert.equal(toBase64(bytes), Buffer.from(bytes).toString('base64'));
  assert.deepEqual(fromBase64(toBase64(bytes)), bytes);
  assert.deepEqual(fromBase64(undefined), new Uint8Array(0), 'an omitted bytes field is empty');
  assert.equal(toHex(bytes), '00017f80feff');
  assert.deepEqual(fromHex('00 01 7f\n80 fe ff'), bytes);
  assert.throws(() => fromHex('abc'), /pairs/);
  const large = new Uint8Array(100_000).map((_, index) => index % 251);
  assert.deepEqual(fromBase64(toBase64(large)), large, 'large values are encoded in chunks');
});

test('prefix ends follow etcd: last byte below 0xff incremented, trailing 0xff dropped, empty means every key', () => {
  assert.equal(text(prefixEnd(utf8('/app/'))), '/app0');
  assert.deepEqual(prefixEnd(new Uint8Array([0x61, 0xff, 0xff])), new Uint8Array([0x62]));
  assert.deepEqual(prefixEnd(new Uint8Array(0)), new Uint8Array([0]));
  assert.deepEqual(keySuccessor(utf8('a')), new Uint8Array([0x61, 0]));
  assert.equal(indexOfBytes(utf8('/a//b'), utf8('//')), 2);
});

test('one level under a prefix: leaves, directories up to the first separator, counts across batches', () => {
  const prefix = utf8('/app/');
  const separator = utf8('/');
  assert.deepEqual(childOf(utf8('/app/x'), prefix, separator), { kind: 'key', key: utf8('/app/x') });
  assert.equal(text(childOf(utf8('/app/a/b/c'), prefix, separator).key), '/app/a/');
  const children: LevelChild[] = [];
  assert.equal(groupInto(children, ['/app/a/1', '/app/a/2', '/app/b', '/app/c/x/y'].map(utf8), prefix, separator), 3);
  // The next batch continues directory c/ and adds d.
  assert.equal(groupInto(children, ['/app/c/z', '/app/d'].map(utf8), prefix, separator), 1);
  assert.deepEqual(children.map((child) => [child.kind, text(child.key), child.count]), [
    ['dir', '/app/a/', 2], ['key', '/app/b', 1], ['dir', '/app/c/', 2], ['key', '/app/d', 1],
  ]);
  const flat: LevelChild[] = [];
  groupInto(flat, ['/app/a/1', '/app/b'].map(utf8), prefix, new Uint8Array(0));
  assert.deepEqual(flat.map((child) => child.kind), ['key', 'key'], 'no separator: every key is a leaf');
  const prefixSearch: LevelChild[] = [];
  groupInto(prefixSearch, ['/app/config/x', '/app/counter'].map(utf8), utf8('/app/co'), separator);
  assert.deepEqual(prefixSearch.map((child) => text(child.key)), ['/app/config/', '/app/counter'], 'a search prefix need not end at a separator');
});

test('line diff keeps common lines and marks the rest; map diff names added, removed and changed keys', () => {
  assert.deepEqual(diffLines('a\nb\nc', 'a\nc\nd'), [
    { op: 'same', text: 'a' }, { op: 'del', text: 'b' }, { op: 'same', text: 'c' }, { op: 'add', text: 'd' },
  ]);
  assert.deepEqual(diffLines('', 'x'), [{ op: 'add', text: 'x' }]);
  const long = Array.from({ length: DIFF_LINES_MAX + 1 }, (_, index) => String(index)).join('\n');
  assert.equal(diffLines(long, 'x').length, DIFF_LINES_MAX + 2, 'beyond the bound: all removed, all added');
  assert.deepEqual(diffMaps(new Map([['a', '1'], ['b', '2'], ['c', '3']]), new Map([['a', '1'], ['b', '20'], ['d', '4']])).map((row) => [row.key, row.op]), [
    ['a', 'same'], ['b', 'change'], ['c', 'del'], ['d', 'add'],
  ]);
});

test('values are shown as JSON, text or hex by what they hold', () => {
  assert.equal(detectKind(utf8('{"a":1}')), 'json');
  assert.equal(renderValue(utf8('{"a":1}'), 'json'), '{\n  "a": 1\n}');
  assert.equal(detectKind(utf8('hello\nworld')), 'text');
  assert.equal(detectKind(utf8('{not json')), 'text');
  assert.equal(detectKind(new Uint8Array([0xff, 0xfe])), 'binary');
  assert.equal(detectKind(new Uint8Array([0x61, 0x00])), 'binary', 'control characters are binary');
  assert.match(renderValue(new Uint8Array([0x61, 0x00]), 'binary'), /^00000000 {2}61 00 +a\.$/);
  assert.equal(formatSize(1536), '1.5 KiB');
  assert.equal(formatSeconds(3725), '1h 02m 05s');
  assert.equal(hexId('13668033151171901709'), 'bdae9bbc11dd390d');
});

test('rollback: one txn that writes the old values, deletes newer keys, guarded by every key\'s mod_revision and the prefix', () => {
  const current = [
    { key: b64('/c/a'), value: b64('10'), modRevision: '7' },
    { key: b64('/c/b'), value: b64('2'), modRevision: '3' },
    { key: b64('/c/new'), value: b64('x'), modRevision: '8' },
  ];
  const target = [{ key: b64('/c/a'), value: b64('1') }, { key: b64('/c/b'), value: b64('2') }, { key: b64('/c/gone'), value: b64('g') }];
  const plan = planRollback(current, target, 9);
  assert.deepEqual(plan.puts.map((kv) => Buffer.from(kv.key, 'base64').toString()), ['/c/a', '/c/gone'], 'unchanged keys are not written');
  assert.deepEqual(plan.deletes.map((key) => Buffer.from(key, 'base64').toString()), ['/c/new']);
  const body = rollbackTxn(plan, { prefix: b64('/c/'), prefixEnd: b64('/c0') }) as { compare: Array<Record<string, string>>; success: Array<Record<string, unknown>> };
  assert.deepEqual(body.compare, [
    { target: 'MOD', result: 'EQUAL', key: b64('/c/a'), mod_revision: '7' },
    { target: 'MOD', result: 'EQUAL', key: b64('/c/b'), mod_revision: '3' },
    { target: 'MOD', result: 'EQUAL', key: b64('/c/new'), mod_revision: '8' },
    { target: 'MOD', result: 'LESS', key: b64('/c/'), range_end: b64('/c0'), mod_revision: '10' },
  ]);
  // Applying the ops to the current map gives exactly the target map.
  const map = new Map(current.map((kv) => [kv.key, kv.value]));
  for (const op of body.success) {
    const putOp = op.request_put as { key: string; value: string } | undefined;
    const deleteOp = op.request_delete_range as { key: string } | undefined;
    if (putOp !== undefined) map.set(putOp.key, putOp.value);
    if (deleteOp !== undefined) map.delete(deleteOp.key);
  }
  assert.deepEqual([...map].sort(), target.map((kv) => [kv.key, kv.value]).sort());
  assert.equal(isNoop(planRollback(target.map((kv) => ({ ...kv, modRevision: '1' })), target, 5)), true);
});

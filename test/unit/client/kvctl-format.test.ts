// Goal: kvctl's formatters print what etcdctl 3.4 prints: Go-JSON (exact 64-bit numbers,
// omitted zero values, base64 bytes, HTML-safe escapes), tablewriter tables, go-humanize
// sizes, Go durations, and etcdctl's txn input syntax. Method: golden strings captured from
// etcdctl 3.4.23 output.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatGet, formatMemberList, formatPut, goDuration, goJson, humanizeBytes, table, formatLeaseTimeToLive } from '../../../cli/kvctl/format.js';
import { argify, parseCompare, parseRequest, parseTxn, TxnParseError } from '../../../cli/kvctl/txn.js';

const header = { clusterId: 324952591200643719n, memberId: 3319814642761637952n, revision: 5n, raftTerm: 2n };

test('get -w json matches etcdctl byte for byte', () => {
  const kv = { key: Buffer.from('foo'), value: Buffer.from('bar3'), createRevision: 2n, modRevision: 4n, version: 3n, lease: 0n };
  assert.equal(
    formatGet({ header, kvs: [kv], more: false, count: 1n }, 'json'),
    '{"header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":5,"raft_term":2},"kvs":[{"key":"Zm9v","create_revision":2,"mod_revision":4,"version":3,"value":"YmFyMw=="}],"count":1}\n',
  );
  assert.equal(formatGet({ header, kvs: [], more: false, count: 0n }, 'json'), '{"header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":5,"raft_term":2}}\n');
  assert.equal(formatGet({ header, kvs: [kv], more: false, count: 1n }, 'simple', { hex: true }), '\\x66\\x6f\\x6f\n\\x62\\x61\\x72\\x33\n');
  assert.equal(formatGet({ header, kvs: [kv], more: false, count: 1n }, 'table'), undefined);
  assert.equal(formatPut({ header, prevKv: kv }, 'simple'), 'OK\nfoo\nbar3\n');
});

test('Go JSON escapes like encoding/json and keeps uint64 exact', () => {
  assert.equal(goJson({ a: '<&>', b: 18446744073709551615n, c: undefined, d: null, e: [] }), '{"a":"\\u003c\\u0026\\u003e","b":18446744073709551615,"d":null,"e":[]}');
});

test('member list table and simple lines', () => {
  const members = { header, members: [{ id: 0x2e1259d415f2a040n, name: 't', peerUrls: ['http://127.0.0.1:23800'], clientUrls: ['http://127.0.0.1:23790'], isLearner: false, autoPromote: false }] };
  assert.equal(formatMemberList(members, 'simple'), '2e1259d415f2a040, started, t, http://127.0.0.1:23800, http://127.0.0.1:23790, false\n');
  assert.equal(
    formatMemberList(members, 'table'),
    [
      '+------------------+---------+------+------------------------+------------------------+------------+',
      '|        ID        | STATUS  | NAME |       PEER ADDRS       |      CLIENT ADDRS      | IS LEARNER |',
      '+------------------+---------+------+------------------------+------------------------+------------+',
      '| 2e1259d415f2a040 | started |    t | http://127.0.0.1:23800 | http://127.0.0.1:23790 |      false |',
      '+------------------+---------+------+------------------------+------------------------+------------+',
      '',
    ].join('\n'),
  );
  assert.equal(table(['A'], []), '+---+\n| A |\n+---+\n+---+\n');
});

test('humanize sizes and Go durations', () => {
  assert.equal(humanizeBytes(20480n), '20 kB');
  assert.equal(humanizeBytes(24576n), '25 kB');
  assert.equal(humanizeBytes(5n), '5 B');
  assert.equal(humanizeBytes(1_500_000n), '1.5 MB');
  assert.equal(goDuration(1.173839), '1.173839ms');
  assert.equal(goDuration(0.0005), '500ns');
  assert.equal(goDuration(0.25), '250µs');
  assert.equal(goDuration(1500), '1.5s');
});

test('lease timetolive simple lines', () => {
  const expired = { header, id: 0x1234n, ttl: -1, grantedTtl: 0, keys: [] };
  assert.equal(formatLeaseTimeToLive(expired, 'simple', { keys: false }), 'lease 0000000000001234 already expired\n');
  const live = { header, id: 0x2040a207fc9b5d22n, ttl: 99, grantedTtl: 100, keys: [Buffer.from('lk'), Buffer.from('k2')] };
  assert.equal(formatLeaseTimeToLive(live, 'simple', { keys: true }), 'lease 2040a207fc9b5d22 granted with TTL(100s), remaining(99s), attached keys([lk k2])\n');
});

test('txn input parses like etcdctl', () => {
  assert.deepEqual(argify('put k1 "new v" --prev-kv'), ['put', 'k1', 'new v', '--prev-kv']);
  assert.equal(parseCompare('mod("k1") > "0"').wire.target, 'MOD');
  assert.equal(parseCompare('val("k1") != "x"').wire.result, 'NOT_EQUAL');
  assert.throws(() => parseCompare('bogus'), TxnParseError);
  assert.throws(() => parseCompare('mod("k1") > "x"'), /invalid txn compare request/);
  assert.ok('request_range' in parseRequest('get k --prefix').wire);
  assert.throws(() => parseRequest('put onlykey'), /put command needs/);
  const parsed = parseTxn(['ver("a") = "1"', '', 'put a b', 'del c', '', 'get a', '']);
  assert.deepEqual([parsed.compares.length, parsed.success.length, parsed.failure.length], [1, 2, 1]);
});

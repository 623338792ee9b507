// Goal: kvctl's member verbs print what etcdctl 3.4 prints, and refuse what it refuses with the
// same words: `member add` (simple line with %16x ids, the ETCD_* block, json), `member
// remove|update|promote` (simple and json), member id parsing, and the client's peer URL
// check (etcd's Go client messages). Also the progress lines of `member replace`.
// Method: golden strings captured from etcdctl 3.4.23 against a 3-member etcd 3.4.23 cluster.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatMemberAdd, formatMemberChange, formatReplaceEvent, formatReplaceEventJson, formatStartSettings, paddedHexId } from '../../../cli/kvctl/format.js';
import { parseMemberId } from '../../../cli/kvctl/commands.js';
import { CliError } from '../../../cli/kvctl/context.js';
import { peerUrlProblem, peerUrlsProblem, startSettings, type Member } from '../../../src/client/index.js';

const header = { clusterId: 2386978959654086716n, memberId: 3923179483587023788n, revision: 0n, raftTerm: 2n };

function started(id: bigint, name: string, peer: number, client: number): Member {
  return { id, name, peerUrls: [`http://127.0.0.1:${peer}`], clientUrls: [`http://127.0.0.1:${client}`], isLearner: false, autoPromote: false };
}

const m3 = started(2362666380587604425n, 'm3', 24623, 24613);
const m1 = started(3923179483587023788n, 'm1', 24621, 24611);
const m2 = started(4162904838995662604n, 'm2', 24622, 24612);
const learner: Member = { id: 3607548509966104346n, name: '', peerUrls: ['http://127.0.0.1:24624'], clientUrls: [], isLearner: true, autoPromote: true };

test('member add: the simple line pads ids to 16 characters like %16x; json is the response; table is unsupported', () => {
  const result = { header, member: learner, members: [m3, learner, m1, m2] };
  assert.equal(formatMemberAdd(result, 'simple'), 'Member 321096419684f71a added to cluster 212040b79083683c\n');
  assert.equal(formatMemberAdd({ ...result, header: { ...header, clusterId: 0xe67a3eb94da1e394n }, member: { ...learner, id: 0x8c339fbbdddba35n } }, 'simple'), 'Member  8c339fbbdddba35 added to cluster e67a3eb94da1e394\n');
  assert.equal(
    formatMemberAdd(result, 'json'),
    '{"header":{"cluster_id":2386978959654086716,"member_id":3923179483587023788,"raft_term":2},"member":{"ID":3607548509966104346,"peerURLs":["http://127.0.0.1:24624"],"isLearner":true},"members":[{"ID":2362666380587604425,"name":"m3","peerURLs":["http://127.0.0.1:24623"],"clientURLs":["http://127.0.0.1:24613"]},{"ID":3607548509966104346,"peerURLs":["http://127.0.0.1:24624"],"isLearner":true},{"ID":3923179483587023788,"name":"m1","peerURLs":["http://127.0.0.1:24621"],"clientURLs":["http://127.0.0.1:24611"]},{"ID":4162904838995662604,"name":"m2","peerURLs":["http://127.0.0.1:24622"],"clientURLs":["http://127.0.0.1:24612"]}]}\n',
  );
  assert.equal(formatMemberAdd(result, 'table'), undefined);
  assert.equal(paddedHexId(0n), '               0');
});

test('member add: the ETCD_* block names the new member and lists unstarted ones without a name, in membership order', () => {
  const other: Member = { id: 0x733209f85dbbc288n, name: '', peerUrls: ['http://127.0.0.1:24625'], clientUrls: [], isLearner: false, autoPromote: false };
  const settings = startSettings([m3, learner, m1, other, m2], { id: learner.id, name: 'm4', peerUrls: learner.peerUrls });
  assert.equal(
    formatStartSettings(settings),
    [
      '',
      'ETCD_NAME="m4"',
      'ETCD_INITIAL_CLUSTER="m3=http://127.0.0.1:24623,m4=http://127.0.0.1:24624,m1=http://127.0.0.1:24621,=http://127.0.0.1:24625,m2=http://127.0.0.1:24622"',
      'ETCD_INITIAL_ADVERTISE_PEER_URLS="http://127.0.0.1:24624"',
      'ETCD_INITIAL_CLUSTER_STATE="existing"',
      '',
    ].join('\n'),
  );
});

test('member remove, update, promote: simple lines and json responses; table unsupported', () => {
  const after = { header, members: [m3, m1, m2] };
  assert.equal(formatMemberChange('removed', 0x8a47e889fe922005n, after, 'simple'), 'Member 8a47e889fe922005 removed from cluster 212040b79083683c\n');
  assert.equal(formatMemberChange('updated', 0x613020063b6ba9c6n, after, 'simple'), 'Member 613020063b6ba9c6 updated in cluster 212040b79083683c\n');
  assert.equal(formatMemberChange('promoted', 0x4d499da47cd78575n, after, 'simple'), 'Member 4d499da47cd78575 promoted in cluster 212040b79083683c\n');
  assert.equal(
    formatMemberChange('removed', 0x8a47e889fe922005n, after, 'json'),
    '{"header":{"cluster_id":2386978959654086716,"member_id":3923179483587023788,"raft_term":2},"members":[{"ID":2362666380587604425,"name":"m3","peerURLs":["http://127.0.0.1:24623"],"clientURLs":["http://127.0.0.1:24613"]},{"ID":3923179483587023788,"name":"m1","peerURLs":["http://127.0.0.1:24621"],"clientURLs":["http://127.0.0.1:24611"]},{"ID":4162904838995662604,"name":"m2","peerURLs":["http://127.0.0.1:24622"],"clientURLs":["http://127.0.0.1:24612"]}]}\n',
  );
  for (const change of ['removed', 'updated', 'promoted'] as const) assert.equal(formatMemberChange(change, 1n, after, 'table'), undefined);
});

test('member ids parse as strconv.ParseUint(arg, 16, 64) with etcdctl\'s error text', () => {
  assert.equal(parseMemberId('3671eef4554e13ac'), 0x3671eef4554e13acn);
  assert.equal(parseMemberId('FFFFFFFFFFFFFFFF'), 0xffffffffffffffffn);
  const refused = (text: string): string => {
    try {
      parseMemberId(text);
    } catch (error: unknown) {
      assert.ok(error instanceof CliError);
      assert.equal(error.exitCode, 128);
      return error.message;
    }
    return assert.fail(`${text} was accepted`);
  };
  assert.equal(refused('zz'), 'bad member ID arg (strconv.ParseUint: parsing "zz": invalid syntax), expecting ID in Hex');
  assert.equal(refused('0x12'), 'bad member ID arg (strconv.ParseUint: parsing "0x12": invalid syntax), expecting ID in Hex');
  assert.equal(refused(''), 'bad member ID arg (strconv.ParseUint: parsing "": invalid syntax), expecting ID in Hex');
  assert.equal(refused('10000000000000000'), 'bad member ID arg (strconv.ParseUint: parsing "10000000000000000": value out of range), expecting ID in Hex');
});

test('peer URLs are checked as etcd\'s Go client checks them (messages seen from etcdctl 3.4.23)', () => {
  const cases: Array<[string, string | undefined]> = [
    ['http://127.0.0.1:2380', undefined],
    [' http://127.0.0.1:2380', undefined],
    ['HTTP://127.0.0.1:2380', undefined],
    ['http://127.0.0.1:1?x=1', undefined],
    ['http://127.0.0.1:1#f', undefined],
    ['http://u@127.0.0.1:2', undefined],
    ['unix://foo:1', undefined],
    ['http://:1', undefined],
    ['http://a:', undefined],
    ['http://[::1]:5', undefined],
    ['foo', 'URL scheme must be http, https, unix, or unixs: foo'],
    ['', 'URL scheme must be http, https, unix, or unixs: '],
    ['localhost:2380', 'URL scheme must be http, https, unix, or unixs: localhost:2380'],
    ['http://127.0.0.1', 'URL address does not have the form "host:port": http://127.0.0.1'],
    ['http://a:b:1', 'URL address does not have the form "host:port": http://a:b:1'],
    ['http:foo', 'URL address does not have the form "host:port": http:foo'],
    ['http://127.0.0.1:1/x', 'URL must not contain a path: http://127.0.0.1:1/x'],
    ['http://127.0.0.1:1/', 'URL must not contain a path: http://127.0.0.1:1/'],
    ['http://[::1', 'parse "http://[::1": missing \']\' in host'],
    ['foo://[::1', 'parse "foo://[::1": missing \']\' in host'],
    ['http://127.0.0.1:1%zz', 'parse "http://127.0.0.1:1%zz": invalid port ":1%zz" after host'],
    ['127.0.0.1:2380', 'parse "127.0.0.1:2380": first path segment in URL cannot contain colon'],
    [':foo', 'parse ":foo": missing protocol scheme'],
    ['http://x y:1', 'parse "http://x y:1": invalid character " " in host name'],
  ];
  for (const [url, problem] of cases) assert.equal(peerUrlProblem(url), problem, JSON.stringify(url));
  assert.equal(peerUrlsProblem(['http://127.0.0.1:24629', '', 'http://127.0.0.1:24630']), 'URL scheme must be http, https, unix, or unixs: ');
});

test('member replace prints one line per progress event, and the start settings as member add does', () => {
  const labels = { old: 'm3', name: 'm4' };
  const added = { ...learner, autoPromote: false };
  const running = { ...added, name: 'm4', clientUrls: ['http://127.0.0.1:24614'] };
  const settings = startSettings([m3, added, m1, m2], { id: added.id, name: 'm4', peerUrls: added.peerUrls });
  const lines = [
    formatReplaceEvent({ type: 'step', step: 'add', resumed: false, oldMember: m3 }, labels),
    formatReplaceEvent({ type: 'added', member: added, clusterId: header.clusterId }, labels),
    formatReplaceEvent({ type: 'start-required', member: added, settings }, labels),
    formatReplaceEvent({ type: 'started', member: running }, labels),
    formatReplaceEvent({ type: 'catching-up', member: running, appliedIndex: 40n, leaderIndex: 100n }, labels),
    formatReplaceEvent({ type: 'retrying', step: 'promote', reason: 'etcdserver: can only promote a learner member which is in sync with leader', attempt: 1 }, labels),
    formatReplaceEvent({ type: 'retrying', step: 'promote', reason: 'etcdserver: can only promote a learner member which is in sync with leader', attempt: 2 }, labels),
    formatReplaceEvent({ type: 'retrying', step: 'promote', reason: 'etcdserver: can only promote a learner member which is in sync with leader', attempt: 10 }, labels),
    formatReplaceEvent({ type: 'promoted', member: { ...running, isLearner: false } }, labels),
    formatReplaceEvent({ type: 'removed', member: m3, clusterId: header.clusterId }, labels),
    formatReplaceEvent({ type: 'done', member: { ...running, isLearner: false } }, labels),
    formatReplaceEvent({ type: 'step', step: 'promote', resumed: true, newMember: running }, labels),
  ].join('');
  assert.equal(
    lines,
    [
      'Replacing 20c9e08e21ae99c9 (m3) with m4: adding it as a learner',
      'Member 321096419684f71a (m4) added to cluster 212040b79083683c as a learner',
      'Start m4 now, with these settings (kvd takes the same as flags: --name, --initial-cluster, --initial-advertise-peer-urls, --initial-cluster-state):',
      '',
      'ETCD_NAME="m4"',
      'ETCD_INITIAL_CLUSTER="m3=http://127.0.0.1:24623,m4=http://127.0.0.1:24624,m1=http://127.0.0.1:24621,m2=http://127.0.0.1:24622"',
      'ETCD_INITIAL_ADVERTISE_PEER_URLS="http://127.0.0.1:24624"',
      'ETCD_INITIAL_CLUSTER_STATE="existing"',
      '',
      'Member 321096419684f71a (m4) started, client URLs http://127.0.0.1:24614',
      "Catching up: m4 applied index 40, leader's index 100",
      'Retrying promote: etcdserver: can only promote a learner member which is in sync with leader',
      'Retrying promote (attempt 10): etcdserver: can only promote a learner member which is in sync with leader',
      'Member 321096419684f71a (m4) promoted to voter',
      'Member 20c9e08e21ae99c9 (m3) removed from cluster 212040b79083683c',
      'Done: 321096419684f71a (m4) is a voter and m3 is not a member',
      'Resuming: 321096419684f71a (m4) has started and is a learner',
      '',
    ].join('\n'),
  );
  assert.equal(
    formatReplaceEventJson({ type: 'catching-up', member: running, appliedIndex: 40n, leaderIndex: 100n }),
    '{"type":"catching-up","member":{"ID":3607548509966104346,"name":"m4","peerURLs":["http://127.0.0.1:24624"],"clientURLs":["http://127.0.0.1:24614"],"isLearner":true},"appliedIndex":40,"leaderIndex":100}\n',
  );
});

// Goal: the real etcdctl 3.4 behaves against kvd exactly as against real etcd for the KV
// commands (put, get with every flag, del, txn, compaction) and the cluster/maintenance commands
// (member list, endpoint status, endpoint hashkv): same exit codes, same output after
// normalising ids, terms, raft indexes, sizes and URLs; revisions must match exactly.
// Method: start a fresh 3-member kvd cluster and (when /usr/bin/etcd exists) a fresh 3-member
// etcd cluster, run the same etcdctl script against both, compare command by command. Without
// etcd, the script still runs against kvd with the expected outputs written here.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster } from '../integration/harness.js';
import { etcdctl, haveEtcd, haveEtcdctl, startEtcdCluster } from './etcd-cluster.js';

const TXN_INPUT = 'value("foo") = "bar-v2"\n\nput foo txn-ok\nget foo2\n\nput foo txn-fail\n\n';
const TXN_FAIL_INPUT = 'mod("foo") > "1000"\n\nput never here\n\nget foo\n\n';

/** The script: each step is etcdctl arguments plus optional stdin. */
const SCRIPT: ReadonlyArray<{ args: string[]; input?: string }> = [
  { args: ['put', 'foo', 'bar'] },
  { args: ['put', 'foo2', 'bar2'] },
  { args: ['put', 'foo', 'bar-v2'] },
  { args: ['put', 'zoo', 'z'] },
  { args: ['put', 'foo3', 'bar3', '--prev-kv'] },
  { args: ['put', 'foo3', 'bar3b', '--prev-kv'] },
  { args: ['get', 'foo'] },
  { args: ['get', 'foo', '--prefix'] },
  { args: ['get', '--from-key', 'foo2'] },
  { args: ['get', 'foo', '--rev=2'] },
  { args: ['get', 'foo', '--prefix', '--limit=1'] },
  { args: ['get', 'foo', '--prefix', '--sort-by=MODIFY', '--order=DESCEND'] },
  { args: ['get', 'foo', '--prefix', '--sort-by=VALUE', '--order=ASCEND'] },
  { args: ['get', 'foo', '--prefix', '--sort-by=CREATE', '--order=DESCEND'] },
  { args: ['get', 'foo', '--prefix', '--sort-by=VERSION', '--order=DESCEND'] },
  { args: ['get', 'foo', '--prefix', '--keys-only'] },
  { args: ['get', 'foo', '--prefix', '--count-only', '-w', 'json'] },
  { args: ['get', 'foo', '--print-value-only'] },
  { args: ['get', 'foo', '--consistency=s'] },
  { args: ['get', 'foo', '-w', 'json'] },
  { args: ['get', 'foo', '--prefix', '-w', 'json'] },
  { args: ['get', 'nothing-here'] },
  { args: ['get', 'foo', '--rev=1000000'] },
  { args: ['del', 'foo2', '--prev-kv'] },
  { args: ['del', 'nothing-here'] },
  { args: ['txn'], input: TXN_INPUT },
  { args: ['txn', '-w', 'json'], input: TXN_FAIL_INPUT },
  { args: ['get', 'foo'] },
  { args: ['compaction', '3'] },
  { args: ['get', 'foo', '--rev=2'] },
  { args: ['compaction', '2'] },
  { args: ['del', 'foo', '--prefix'] },
  { args: ['get', '', '--from-key'] },
  { args: ['put', 'after', 'compaction', '-w', 'json'] },
  { args: ['member', 'list', '-w', 'json'] },
  { args: ['endpoint', 'status', '-w', 'json'] },
  { args: ['endpoint', 'hashkv', '-w', 'json'] },
  { args: ['endpoint', 'health'] },
];

const VOLATILE = new Set(['cluster_id', 'member_id', 'raft_term', 'ID', 'leader', 'raftIndex', 'raftTerm', 'raftAppliedIndex', 'dbSize', 'dbSizeInUse', 'version', 'hash', 'clientURLs', 'peerURLs', 'name', 'Endpoint', 'compact_revision']);

function normaliseJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(normaliseJson);
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) out[key] = VOLATILE.has(key) ? '<volatile>' : normaliseJson(inner);
    return out;
  }
  return value;
}

function normalise(text: string, endpoints: readonly string[]): string {
  let out = text;
  for (const endpoint of endpoints) out = out.split(endpoint).join('<endpoint>');
  out = out.replace(/took = [0-9.]+[a-zµ]+/g, 'took = <t>');
  out = out.replace(/"ts":"[^"]*"/g, '"ts":"<t>"').replace(/client-[0-9a-f-]{36}/g, 'client-<uuid>');
  const trimmed = out.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      return JSON.stringify(normaliseJson(JSON.parse(trimmed)));
    } catch {
      return out;
    }
  }
  return out;
}

function runScript(endpoints: readonly string[]): Array<{ status: number; stdout: string; stderr: string }> {
  return SCRIPT.map((step) => {
    const result = etcdctl(endpoints, step.args, { input: step.input });
    return { status: result.status, stdout: normalise(result.stdout, endpoints), stderr: normalise(result.stderr, endpoints) };
  });
}

test('etcdctl gives the same answers from kvd as from etcd', { skip: haveEtcdctl() ? false : 'etcdctl is not installed' }, async () => {
  const kvd = await Cluster.start({ size: 3 });
  after(() => kvd.stop());
  await kvd.waitForLeader();
  // etcdctl talks to the first endpoint; give it one endpoint so outputs are per-member.
  const kvdResults = runScript([kvd.endpoints[0]]);

  // Expectations that hold without etcd too.
  const at = (args: string): { status: number; stdout: string; stderr: string } => kvdResults[SCRIPT.findIndex((s) => s.args.join(' ') === args)];
  assert.equal(at('put foo bar').stdout, 'OK\n');
  assert.equal(at('get foo').stdout, 'foo\nbar-v2\n');
  assert.equal(at('get foo --prefix --keys-only').stdout, 'foo\n\nfoo2\n\nfoo3\n\n');
  assert.equal(at('get foo --print-value-only').stdout, 'bar-v2\n');
  assert.equal(at('get foo --rev=2').stdout, 'foo\nbar\n');
  assert.equal(at('get foo --rev=1000000').status, 1);
  assert.match(at('get foo --rev=1000000').stderr, /required revision is a future revision/);
  assert.equal(at('del foo2 --prev-kv').stdout, '1\nfoo2\nbar2\n');
  assert.match(at('txn').stdout, /^SUCCESS\n/);

  if (!haveEtcd()) return;
  const etcd = await startEtcdCluster({ size: 3 });
  after(() => etcd.stop());
  const etcdResults = runScript([etcd.endpoints[0]]);
  const differences: string[] = [];
  SCRIPT.forEach((step, i) => {
    const a = kvdResults[i];
    const b = etcdResults[i];
    if (a.status !== b.status || a.stdout !== b.stdout || a.stderr !== b.stderr) {
      differences.push(`etcdctl ${step.args.join(' ')}\n  kvd : [${a.status}] ${JSON.stringify(a.stdout)} ${JSON.stringify(a.stderr)}\n  etcd: [${b.status}] ${JSON.stringify(b.stdout)} ${JSON.stringify(b.stderr)}`);
    }
  });
  assert.deepEqual(differences, [], differences.join('\n'));
});

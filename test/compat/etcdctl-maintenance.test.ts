// Goal: the real etcdctl 3.4 sees the same from kvd as from etcd through a NOSPACE episode and
// its recovery: `alarm list`, `endpoint status` (simple and json, errors column included), the
// refused put, `compaction --physical`, `defrag` of every member, `alarm disarm`, and writes
// again afterwards. Same exit codes; same output once member ids, sizes, raft indexes, terms,
// versions, endpoints and which member leads are normalised (and repeated alarm lines folded:
// kvd raises NOSPACE for every member whose own backend passes the quota, etcd only for the
// member written to; and etcd 3.4's AlarmResponse has no header, kvd's has one, as etcd 3.5+).
// Method: a fresh 3-member kvd cluster and a fresh 3-member etcd cluster, both with a 2 MiB quota
// (kvd with --quota-low-water-percent 0, so that, like etcd, only `alarm disarm` clears the
// alarm), filled through one endpoint with incompressible 100 kB values until the quota refuses;
// then the same etcdctl script against both.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Cluster } from '../integration/harness.js';
import { startEtcdCluster as startEtcdProcesses } from './client/etcd-process.js';
import { etcdctl, haveEtcd, haveEtcdctl } from './etcd-cluster.js';

const QUOTA = String(2 * 1024 * 1024);

interface Outcome { status: number; stdout: string; stderr: string }

/** Replaces what differs between two clusters, keeping what etcdctl's user reads. */
function normalise(text: string, endpoints: readonly string[]): string {
  let out = text;
  for (const endpoint of endpoints) out = out.split(endpoint).join('<endpoint>');
  out = out
    .replace(/http:\/\/127\.0\.0\.1:\d+/g, '<url>')
    .replace(/memberID:\d+/g, 'memberID:<id>')
    .replace(/"(cluster_id|member_id|leader|memberID|revision|raft_term|raftIndex|raftTerm|raftAppliedIndex|dbSize|dbSizeInUse)":\d+/g, '"$1":<n>')
    .replace(/"version":"[^"]*"/g, '"version":"<v>"')
    .replace(/compacted revision \d+/g, 'compacted revision <rev>');
  // endpoint status, simple: "<endpoint>, <hex id>, <version>, <size>, <leader?>, <learner?>, <term>, <index>, <applied>, <errors>"
  // (which member leads depends on the election).
  out = out.replace(/^(<endpoint>), [0-9a-f]+, [^,]+, [^,]+, (true|false), (true|false), \d+, \d+, \d+, /gm, '$1, <id>, <v>, <size>, <leader?>, $3, <t>, <i>, <i>, ');
  // etcd 3.4 sends AlarmResponse without a header; kvd fills it, as etcd 3.5+ does.
  out = out.replace(/^\{"header":\{[^}]*\},"alarms":/gm, '{"alarms":');
  // Fold repeated lines (alarm lines of several members) and repeated alarm texts in `errors`.
  const lines = out.split('\n');
  out = lines.filter((line, i) => line === '' || lines.indexOf(line) === i).join('\n');
  out = out.replace(/(memberID:<id> alarm:[A-Z]+ )(, \1)+/g, '$1').replace(/("memberID:<id> alarm:[A-Z]+ ")(,\1)+/g, '$1');
  out = out.replace(/(\{"memberID":<n>,"alarm":\d+\})(,\1)+/g, '$1');
  return out;
}

/** etcdctl's error lines only (its JSON log lines carry times and client ids). */
function errorLines(stderr: string): string {
  return stderr.split('\n').filter((line) => line.startsWith('Error:') || line.startsWith('Failed')).join('\n');
}

/** Puts 100 kB values through `endpoint` until the quota refuses one; returns that refusal. */
function fill(endpoint: string): Outcome {
  for (let i = 0; i < 80; i++) {
    const result = etcdctl([endpoint], ['put', `big/${i}`], { input: randomBytes(75_000).toString('base64') });
    if (result.status !== 0) return result;
  }
  throw new Error(`the quota never refused a put through ${endpoint}`);
}

function script(endpoints: readonly string[]): Array<{ step: string; outcome: Outcome }> {
  const one = [endpoints[0]];
  const steps: Array<{ step: string; outcome: Outcome }> = [];
  const run = (step: string, targets: readonly string[], args: string[], input?: string): Outcome => {
    const raw = etcdctl(targets, args, { input });
    const outcome = { status: raw.status, stdout: normalise(raw.stdout, endpoints), stderr: normalise(errorLines(raw.stderr), endpoints) };
    steps.push({ step, outcome });
    return raw;
  };
  const refused = fill(endpoints[0]);
  steps.push({ step: 'the put the quota refuses', outcome: { status: refused.status, stdout: '', stderr: normalise(errorLines(refused.stderr), endpoints) } });
  run('alarm list', one, ['alarm', 'list']);
  run('alarm list -w json', one, ['alarm', 'list', '-w', 'json']);
  run('endpoint status', one, ['endpoint', 'status']);
  run('endpoint status -w json', one, ['endpoint', 'status', '-w', 'json']);
  run('put while NOSPACE', one, ['put', 'small', 'value']);
  run('lease grant while NOSPACE', one, ['lease', 'grant', '60']);
  run('get while NOSPACE', one, ['get', 'big/0', '--keys-only']);
  run('del while NOSPACE', one, ['del', 'big/', '--prefix']);
  // How many values fit under the quota differs (LevelDB is not bbolt): not the count deleted.
  steps[steps.length - 1].outcome.stdout = steps[steps.length - 1].outcome.stdout.replace(/^\d+\n$/, '<count>\n');
  const revision = JSON.parse(etcdctl(one, ['get', 'x', '-w', 'json']).stdout) as { header: { revision: number } };
  run('compaction --physical', one, ['compaction', String(revision.header.revision), '--physical']);
  run('defrag every member', endpoints, ['defrag']);
  run('alarm list after defrag', one, ['alarm', 'list']);
  run('alarm disarm', one, ['alarm', 'disarm']);
  run('alarm list after disarm', one, ['alarm', 'list']);
  run('put after disarm', one, ['put', 'small', 'value']);
  run('endpoint status after disarm', one, ['endpoint', 'status', '-w', 'json']);
  return steps;
}

test('etcdctl alarm list/disarm, defrag and endpoint status through a NOSPACE episode: kvd answers as etcd', { skip: haveEtcdctl() ? false : 'etcdctl is not installed', timeout: 240_000 }, async () => {
  const kvd = await Cluster.start({ size: 3, extraArgs: ['--quota-backend-bytes', QUOTA, '--quota-low-water-percent', '0'] });
  after(() => kvd.stop());
  await kvd.waitForLeader();
  const ours = script(kvd.endpoints);
  const at = (step: string): Outcome => (ours.find((s) => s.step === step) as { outcome: Outcome }).outcome;
  // What holds without etcd too.
  assert.equal(at('the put the quota refuses').status, 1);
  assert.equal(at('the put the quota refuses').stderr, 'Error: etcdserver: mvcc: database space exceeded');
  assert.equal(at('alarm list').stdout, 'memberID:<id> alarm:NOSPACE \n');
  assert.equal(at('endpoint status').stdout, '<endpoint>, <id>, <v>, <size>, <leader?>, false, <t>, <i>, <i>, memberID:<id> alarm:NOSPACE \n');
  assert.equal(at('put while NOSPACE').stderr, 'Error: etcdserver: mvcc: database space exceeded');
  assert.equal(at('lease grant while NOSPACE').stderr, 'Error: failed to grant lease (etcdserver: mvcc: database space exceeded)');
  assert.equal(at('defrag every member').stdout, 'Finished defragmenting etcd member[<endpoint>]\n');
  assert.equal(at('alarm disarm').stdout, 'memberID:<id> alarm:NOSPACE \n');
  assert.equal(at('alarm list after disarm').stdout, '');
  assert.equal(at('put after disarm').stdout, 'OK\n');

  if (!haveEtcd()) return;
  const etcd = await startEtcdProcesses(3, { extraArgs: ['--quota-backend-bytes', QUOTA] });
  after(() => etcd.stop());
  const theirs = script(etcd.endpoints);
  const differences = ours.flatMap(({ step, outcome }, i) => {
    const other = theirs[i].outcome;
    if (outcome.status === other.status && outcome.stdout === other.stdout && outcome.stderr === other.stderr) return [];
    return [`${step}\n  kvd : [${outcome.status}] ${JSON.stringify(outcome.stdout)} ${JSON.stringify(outcome.stderr)}\n  etcd: [${other.status}] ${JSON.stringify(other.stdout)} ${JSON.stringify(other.stderr)}`];
  });
  assert.deepEqual(differences, [], differences.join('\n'));
});

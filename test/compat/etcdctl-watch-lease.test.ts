// Goal: etcdctl 3.4's watch, lease, lock and elect commands behave against kvd as against real
// etcd (lock and elect are client recipes over txn + lease + watch, so they exercise all three).
// Method: the same etcdctl invocations against a fresh 3-member kvd cluster and, when installed,
// a fresh 3-member etcd; lease ids are normalised; lock holders are checked for mutual exclusion
// from the timestamps their commands print.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Cluster } from '../integration/harness.js';
import { ETCDCTL_BIN, etcdctl, haveEtcd, haveEtcdctl, startEtcdCluster } from './etcd-cluster.js';

interface Target { readonly name: string; readonly endpoints: string[] }

/** Runs etcdctl in the background; resolves with its stdout when it exits (or is killed at `killAfterMs`). */
function background(endpoints: readonly string[], args: readonly string[], options: { killAfterMs: number }): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn(ETCDCTL_BIN, [`--endpoints=${endpoints.join(',')}`, ...args], { env: { ...process.env, ETCDCTL_API: '3' } });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => { out += chunk.toString(); });
    const timer = setTimeout(() => child.kill('SIGINT'), options.killAfterMs);
    child.on('exit', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

const normaliseLease = (text: string): string => text.replace(/\b[0-9a-f]{14,16}\b/g, '<lease>').replace(/remaining\(\d+s\)/g, 'remaining(<n>s)');

async function script(target: Target): Promise<string[]> {
  const e = target.endpoints;
  const out: string[] = [];
  const run = (args: string[], input?: string): string => {
    const result = etcdctl(e, args, { input });
    return `[${result.status}] ${normaliseLease(result.stdout)}${result.status === 0 ? '' : normaliseLease(result.stderr.split('\n').filter((l) => l.startsWith('Error')).join('\n'))}`;
  };
  // Watch: history from a revision, with prev-kv, as JSON-free simple output.
  out.push(run(['put', 'wk', 'v1']));
  out.push(run(['put', 'wk', 'v2']));
  out.push(run(['del', 'wk']));
  const watched = await background(e, ['watch', 'wk', '--rev=2', '--prev-kv'], { killAfterMs: 1500 });
  out.push(`watch: ${watched}`);
  const watchedPrefix = await background(e, ['watch', '--prefix', 'w', '--rev=1'], { killAfterMs: 1500 });
  out.push(`watch --prefix: ${watchedPrefix}`);
  // A watch starting exactly at the compaction revision is served from it (etcd 3.4); one below
  // it is canceled with the compact revision.
  const base = Number(JSON.parse(etcdctl(e, ['put', 'ck', 'c1', '-w', 'json']).stdout).header.revision);
  out.push(run(['put', 'ck', 'c2']));
  out.push(run(['put', 'ck', 'c3']));
  out.push(run(['compaction', String(base + 1)]));
  const fromCompaction = await background(e, ['watch', 'ck', `--rev=${base + 1}`], { killAfterMs: 1500 });
  out.push(`watch at the compaction revision: ${fromCompaction}`);
  const belowCompaction = await background(e, ['watch', 'ck', `--rev=${base}`], { killAfterMs: 1500 });
  out.push(`watch below it: ${belowCompaction}`);
  // Leases.
  const granted = etcdctl(e, ['lease', 'grant', '60']);
  out.push(`[${granted.status}] ${normaliseLease(granted.stdout)}`);
  const id = /lease ([0-9a-f]+) granted/.exec(granted.stdout)?.[1] ?? 'missing';
  out.push(run(['put', 'leased', 'x', `--lease=${id}`]));
  out.push(run(['lease', 'timetolive', id, '--keys']));
  out.push(run(['lease', 'list']));
  out.push(run(['lease', 'keep-alive', '--once', id]));
  out.push(run(['lease', 'revoke', id]));
  out.push(run(['get', 'leased']));
  out.push(run(['lease', 'timetolive', id]));
  out.push(run(['put', 'k', 'v', '--lease=1234abcd']));
  // Lock: two holders of the same lock never overlap.
  const holder = (tag: string): Promise<string> => background(e, ['lock', 'L', '--', 'sh', '-c', `echo ${tag}-start $(date +%s%N); sleep 0.7; echo ${tag}-end $(date +%s%N)`], { killAfterMs: 15_000 });
  const [a, b] = await Promise.all([holder('A'), holder('B')]);
  const times = (text: string, tag: string): [bigint, bigint] => {
    const start = new RegExp(`${tag}-start (\\d+)`).exec(text)?.[1];
    const end = new RegExp(`${tag}-end (\\d+)`).exec(text)?.[1];
    assert.ok(start !== undefined && end !== undefined, `${target.name}: lock holder ${tag} ran (${text})`);
    return [BigInt(start), BigInt(end)];
  };
  const [aStart, aEnd] = times(a, 'A');
  const [bStart, bEnd] = times(b, 'B');
  assert.ok(aEnd <= bStart || bEnd <= aStart, `${target.name}: lock holders overlapped`);
  out.push('lock: exclusive');
  // Elect: a campaigner becomes leader; an observer (-l) prints the proposal.
  const campaign = background(e, ['elect', 'E', 'p1'], { killAfterMs: 2500 });
  const observed = await background(e, ['elect', '-l', 'E'], { killAfterMs: 1800 });
  const campaigned = await campaign;
  out.push(`elect: ${campaigned.split('\n').filter((l) => l.length > 0 && !l.startsWith('E/')).join('|')}`);
  out.push(`elect -l: ${observed.split('\n').filter((l) => l.length > 0 && !l.startsWith('E/')).join('|')}`);
  return out;
}

test('etcdctl watch, lease, lock and elect behave against kvd as against etcd', { skip: haveEtcdctl() ? false : 'etcdctl is not installed' }, async () => {
  const kvd = await Cluster.start({ size: 3 });
  after(() => kvd.stop());
  await kvd.waitForLeader();
  const kvdOut = await script({ name: 'kvd', endpoints: [kvd.endpoints[0]] });
  // Revision 2 is the first put; with --prev-kv etcdctl prints the previous key-value first.
  assert.equal(kvdOut[3], 'watch: PUT\nwk\nv1\nPUT\nwk\nv1\nwk\nv2\nDELETE\nwk\nv2\nwk\n\n', 'watch from revision 2 with prev-kv');
  assert.equal(kvdOut.find((line) => line.startsWith('watch at the compaction revision')), 'watch at the compaction revision: PUT\nck\nc2\nPUT\nck\nc3\n');
  assert.equal(kvdOut.find((line) => line.startsWith('watch below it')), 'watch below it: ', 'a watch below the compaction prints no event (etcdctl reports the cancel on stderr)');
  assert.match(kvdOut.join('\n'), /lease <lease> granted with TTL\(60s\)/);
  assert.match(kvdOut.join('\n'), /requested lease not found/);
  if (!haveEtcd()) return;
  const etcd = await startEtcdCluster({ size: 3 });
  after(() => etcd.stop());
  const etcdOut = await script({ name: 'etcd', endpoints: [etcd.endpoints[0]] });
  assert.deepEqual(kvdOut, etcdOut);
});

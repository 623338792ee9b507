// Goal: `etcdctl snapshot save` (3.4) works against kvd as against etcd: exit code 0, the
// "Snapshot saved at <file>" line, etcdctl's own size check passed (size % 512 == 32) and the
// size it logs equal to the file's; its one-endpoint refusal is the same. kvctl saves from both
// (checking the SHA-256); `snapshot status` differs by design: etcdctl reads only bbolt files
// ("Error: invalid database" on kvd's), kvctl only kvd's.
// Method: a 1-member kvd and (when /usr/bin/etcd exists) a 1-member etcd; the same etcdctl and
// kvctl commands against both; outputs compared after replacing the file path.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { humanizeBytes } from '../../cli/kvctl/format.js';
import { Cluster } from '../integration/harness.js';
import { etcdctl, haveEtcd, haveEtcdctl, startEtcdCluster, type EtcdCluster } from './etcd-cluster.js';

const KVCTL_BIN = fileURLToPath(new URL('../../bin/kvctl.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'kvd-compat-snapshot-'));
const stops: Array<() => Promise<void>> = [];
after(async () => {
  for (const stop of stops) await stop();
  rmSync(dir, { recursive: true, force: true });
});

function kvctl(args: readonly string[]): { status: number; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [KVCTL_BIN, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: result.status ?? -1, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
}

interface Target {
  readonly name: 'kvd' | 'etcd';
  readonly endpoint: string;
}

async function targets(): Promise<Target[]> {
  const kvd = await Cluster.start({ size: 1 });
  stops.push(() => kvd.stop());
  await kvd.waitForLeader({ timeoutMs: 30_000 });
  const out: Target[] = [{ name: 'kvd', endpoint: kvd.endpoints[0] }];
  if (haveEtcd()) {
    const etcd: EtcdCluster = await startEtcdCluster({ size: 1 });
    stops.push(() => etcd.stop());
    out.push({ name: 'etcd', endpoint: etcd.endpoints[0] });
  }
  return out;
}

/** The "size" etcdctl logs in its "fetched snapshot" line. */
function loggedSize(stderr: string): string | undefined {
  for (const line of stderr.split('\n')) {
    if (!line.includes('"msg":"fetched snapshot"')) continue;
    return (JSON.parse(line) as { size?: string }).size;
  }
  return undefined;
}

test('etcdctl snapshot save succeeds against kvd as against etcd; kvctl saves from both', { skip: !haveEtcdctl() && 'etcdctl is not installed' }, async () => {
  const results = new Map<string, { save: string; status: number; refused: string; refusedStatus: number }>();
  for (const target of await targets()) {
    for (let i = 0; i < 20; i++) assert.equal(etcdctl([target.endpoint], ['put', `key-${i}`, `value-${i}`]).status, 0);
    const file = join(dir, `${target.name}.db`);
    const saved = etcdctl([target.endpoint], ['snapshot', 'save', file]);
    assert.equal(saved.status, 0, `${target.name}: ${saved.stderr}`);
    const bytes = readFileSync(file);
    assert.equal(bytes.length % 512, 32, `${target.name}: etcd's framing`);
    assert.deepEqual(createHash('sha256').update(bytes.subarray(0, -32)).digest(), bytes.subarray(-32), `${target.name}: SHA-256 trailer`);
    assert.equal(loggedSize(saved.stderr), humanizeBytes(BigInt(bytes.length)), `${target.name}: the size etcdctl read`);
    const refused = etcdctl([target.endpoint, '127.0.0.1:1'], ['snapshot', 'save', join(dir, 'never.db')]);
    results.set(target.name, { save: saved.stdout.replace(file, '<file>'), status: saved.status, refused: refused.stderr.replace(target.endpoint, '<endpoint>'), refusedStatus: refused.status });

    const kvctlFile = join(dir, `${target.name}-kvctl.db`);
    const kvctlSaved = kvctl(['--endpoints', target.endpoint, 'snapshot', 'save', kvctlFile]);
    assert.equal(kvctlSaved.status, 0, `${target.name}: ${kvctlSaved.stderr}`);
    assert.equal(kvctlSaved.stdout, `Snapshot saved at ${kvctlFile}\n`);
    assert.match(kvctlSaved.stderr, /sha256 verified/);

    const etcdctlStatus = etcdctl([], ['snapshot', 'status', file]);
    const kvctlStatus = kvctl(['snapshot', 'status', file]);
    if (target.name === 'kvd') {
      assert.deepEqual({ status: etcdctlStatus.status, stderr: etcdctlStatus.stderr }, { status: 1, stderr: 'Error: invalid database\n' }, 'etcdctl status reads bbolt files only');
      assert.equal(kvctlStatus.status, 0, kvctlStatus.stderr);
      assert.match(kvctlStatus.stdout, /^[0-9a-f]+, 21, \d+, [0-9.]+ (B|kB)\n$/);
    } else {
      assert.equal(etcdctlStatus.status, 0, etcdctlStatus.stderr);
      assert.match(etcdctlStatus.stdout, /^[0-9a-f]+, 21, \d+, [0-9.]+ kB\n$/);
      assert.equal(kvctlStatus.status, 1);
      assert.match(kvctlStatus.stderr, /^Error: etcdserver: corrupt snapshot: bad magic\n$/);
    }
  }
  const kvd = results.get('kvd');
  assert.deepEqual(kvd, { save: 'Snapshot saved at <file>\n', status: 0, refused: 'Error: snapshot must be requested to one selected node, not multiple [<endpoint> 127.0.0.1:1]\n', refusedStatus: 5 });
  if (results.has('etcd')) assert.deepEqual(results.get('etcd'), kvd, 'kvd and etcd answer etcdctl alike');
});

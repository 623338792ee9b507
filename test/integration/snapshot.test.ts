// Goal: snapshots, restore and incremental backup work end to end on real kvd processes:
// (1) a snapshot taken while clients write holds exactly the writes acknowledged at or below its
//     revision, and writes are acknowledged while it streams;
// (2) `kvctl snapshot save|status|restore` round-trip: status reports the source's revision and
//     HashKV, the file restored into each member of a fresh 3-member cluster gives equal HashKV on
//     all three (equal to the source's) and every read at every revision equals the source's,
//     leases come back with their granted TTL; a corrupt file is refused, and --skip-hash-check
//     accepts a dump without its SHA-256 trailer;
// (3) `kvctl backup` survives kill -9 at several points (during its first snapshot, while
//     following writes, right after resuming while it catches up), takes a new full snapshot when the cluster compacted
//     what it had to resume from, and `kvctl snapshot restore DIR --to-revision R` rebuilds the
//     store at three revisions R exactly as a Range of the whole key space at R answered before.
// Method: spawn kvd clusters (harness.ts) and the real kvctl binary; drive writes through the
// TypeScript client; wait for conditions (manifest progress, log lines) with deadlines; read
// restored data dirs through a started kvd or by opening their store offline.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createReadStream, existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, op, type Client, type KeyValue } from '../../src/client/index.js';
import { MvccStore, readDump } from '../../src/store/mvcc/index.js';
import { snapshotStatus } from '../../src/server/restore.js';
import { humanizeBytes } from '../../cli/kvctl/format.js';
import { Cluster, KVD_BIN, freePort, waitFor } from './harness.js';

const KVCTL_BIN = fileURLToPath(new URL('../../bin/kvctl.js', import.meta.url));

const cleanups: Array<() => Promise<void>> = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function startCluster(size: number): Promise<{ cluster: Cluster; client: Client }> {
  const cluster = await Cluster.start({ size });
  const client = connect({ endpoints: cluster.endpoints, requestTimeout: 15_000 });
  cleanups.push(async () => {
    client.close();
    await cluster.stop();
  });
  await cluster.waitForLeader({ timeoutMs: 30_000 });
  return { cluster, client };
}

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs kvctl to completion. */
function kvctl(args: readonly string[], options: { timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [KVCTL_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`kvctl ${args.join(' ')} timed out; stderr: ${stderr}`));
    }, options.timeoutMs ?? 60_000);
    child.once('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** A Range answer reduced to what must be equal: every field of every key, in order. */
type Plain = Array<{ key: string; value: string; create: string; mod: string; version: string; lease: string }>;

function plainKvs(kvs: readonly KeyValue[]): Plain {
  return kvs.map((kv) => ({ key: kv.key.toString('latin1'), value: kv.value.toString('latin1'), create: kv.createRevision.toString(), mod: kv.modRevision.toString(), version: kv.version.toString(), lease: BigInt.asUintN(64, kv.lease).toString() }));
}

async function everything(client: Client, revision: bigint, endpoint?: string): Promise<Plain> {
  const options = { fromKey: true, revision, serializable: endpoint !== undefined };
  const result = await client.range('', options);
  return plainKvs(result.kvs);
}

/** Reads a restored data dir's whole key space at its current revision, offline. */
async function everythingOffline(dataDir: string): Promise<{ revision: number; kvs: Plain; hash: number }> {
  const store = await MvccStore.open({ path: join(dataDir, 'member', 'db') });
  try {
    const all = new Uint8Array([0]);
    const result = await store.range({ key: all, rangeEnd: all, limit: 0, revision: 0, sortOrder: 'none', sortTarget: 'key', serializable: true, keysOnly: false, countOnly: false, minModRevision: 0, maxModRevision: 0, minCreateRevision: 0, maxCreateRevision: 0 });
    const kvs = result.kvs.map((kv) => ({ key: Buffer.from(kv.key).toString('latin1'), value: Buffer.from(kv.value).toString('latin1'), create: String(kv.createRevision), mod: String(kv.modRevision), version: String(kv.version), lease: kv.lease.toString() }));
    return { revision: store.currentRevision, kvs, hash: (await store.hashKV(0)).hash };
  } finally {
    await store.close();
  }
}

async function revisionOf(client: Client): Promise<bigint> {
  return (await client.range('any-key')).header.revision;
}

test('a snapshot taken while clients write holds exactly the writes acknowledged at or below its revision', async () => {
  const { cluster, client } = await startCluster(1);
  const endpoint = cluster.endpoints[0];
  // About 2.5 MiB, so the dump streams in several chunks.
  const big = 'x'.repeat(64 * 1024);
  for (let i = 0; i < 40; i++) await client.put(`preload/${String(i).padStart(2, '0')}`, big);

  const acknowledged = new Map<string, bigint>();
  let writing = true;
  const writers = [0, 1, 2].map(async (writer) => {
    for (let n = 0; writing; n++) {
      const key = `w/${writer}/${String(n).padStart(5, '0')}`;
      const { header } = await client.put(key, `v${n}`);
      acknowledged.set(key, header.revision);
    }
  });
  await waitFor('writers to get going', () => (acknowledged.size >= 10 ? true : undefined), { timeoutMs: 30_000 });

  const reader = client.snapshot(endpoint);
  const chunks: Buffer[] = [];
  let paused = false;
  for await (const chunk of reader) {
    chunks.push(chunk);
    if (!paused) {
      paused = true;
      // The stream is open and not being read: writes must still be acknowledged.
      const before = acknowledged.size;
      await waitFor('writes acknowledged while the snapshot stream is open', () => (acknowledged.size >= before + 10 ? true : undefined), { timeoutMs: 30_000 });
    }
  }
  const extra = acknowledged.size;
  await waitFor('more writes after the snapshot', () => (acknowledged.size >= extra + 5 ? true : undefined), { timeoutMs: 30_000 });
  writing = false;
  await Promise.all(writers);

  const revision = reader.header?.revision;
  assert.ok(revision !== undefined && revision > 41n, 'the first header names the snapshot revision');
  assert.equal(reader.totalBytes, reader.receivedBytes, 'remaining_bytes announced the exact size');
  const path = join(cluster.root, 'while-writing.snap');
  await writeFile(path, Buffer.concat(chunks));

  const status = await snapshotStatus(path);
  assert.equal(BigInt(status.revision), revision);
  assert.equal(status.hash, (await client.cluster.hashKv(endpoint, revision)).hash, 'status hash = HashKV at the snapshot revision');

  const restoredPath = join(cluster.root, 'while-writing-db');
  await MvccStore.restoreSnapshot({ path: restoredPath, chunks: createReadStream(path), tail: 'snapshot-file' });
  const store = await MvccStore.open({ path: restoredPath });
  try {
    assert.equal(BigInt(store.currentRevision), revision);
    const inSnapshot = new Map<string, bigint>();
    const result = await store.range({ key: Buffer.from('w/'), rangeEnd: Buffer.from('w0'), limit: 0, revision: 0, sortOrder: 'none', sortTarget: 'key', serializable: true, keysOnly: true, countOnly: false, minModRevision: 0, maxModRevision: 0, minCreateRevision: 0, maxCreateRevision: 0 });
    for (const kv of result.kvs) inSnapshot.set(Buffer.from(kv.key).toString(), BigInt(kv.modRevision));
    const expected = new Map([...acknowledged].filter(([, acked]) => acked <= revision));
    assert.ok(expected.size < acknowledged.size, 'some acknowledged writes came after the snapshot');
    assert.deepEqual(new Map([...inSnapshot].sort()), new Map([...expected].sort()), 'exactly the writes acknowledged at or below the snapshot revision, each at its revision');
    assert.equal((await store.range({ key: Buffer.from('preload/'), rangeEnd: Buffer.from('preload0'), limit: 0, revision: 0, sortOrder: 'none', sortTarget: 'key', serializable: true, keysOnly: false, countOnly: true, minModRevision: 0, maxModRevision: 0, minCreateRevision: 0, maxCreateRevision: 0 })).count, 40);
  } finally {
    await store.close();
  }
});

test('kvctl snapshot save, status and restore: a fresh 3-member cluster serves the source key space at every revision', async () => {
  const { cluster: source, client } = await startCluster(1);
  const endpoint = source.endpoints[0];
  for (let i = 0; i < 5; i++) await client.put(`k${i}`, `v${i}`);
  await client.put('k1', 'v1-b');
  await client.delete('k2');
  await client.txn().then(op.put('t1', 'one'), op.put('k3', 'v3-b'), op.delete('k4')).commit();
  const lease = await client.leases.grant(600);
  await client.put('leased', 'x', { lease: lease.id });
  await client.compact(4n);
  await client.put('k0', 'v0-b');
  const revision = await revisionOf(client);
  const sourceHash = (await client.cluster.hashKv(endpoint, revision)).hash;

  const file = join(source.root, 'saved.snap');
  const saved = await kvctl(['--endpoints', endpoint, 'snapshot', 'save', file]);
  assert.equal(saved.status, 0, saved.stderr);
  assert.equal(saved.stdout, `Snapshot saved at ${file}\n`);
  assert.match(saved.stderr, /sha256 verified/);
  const twoEndpoints = await kvctl(['--endpoints', `${endpoint},127.0.0.1:1`, 'snapshot', 'save', join(source.root, 'never.snap')]);
  assert.equal(twoEndpoints.status, 5);
  assert.equal(twoEndpoints.stderr, `Error: snapshot must be requested to one selected node, not multiple [${endpoint} 127.0.0.1:1]\n`);

  const statusJson = await kvctl(['snapshot', 'status', file, '-w', 'json']);
  assert.equal(statusJson.status, 0, statusJson.stderr);
  const status = JSON.parse(statusJson.stdout) as { hash: number; revision: number; totalKey: number; totalSize: number };
  const size = (await readFile(file)).length;
  assert.deepEqual({ hash: status.hash, revision: BigInt(status.revision), totalSize: status.totalSize }, { hash: sourceHash, revision, totalSize: size - 32 });
  const statusSimple = await kvctl(['snapshot', 'status', file]);
  assert.equal(statusSimple.stdout, `${sourceHash.toString(16)}, ${revision}, ${status.totalKey}, ${humanizeBytes(BigInt(status.totalSize))}\n`);
  const statusTable = await kvctl(['snapshot', 'status', file, '-w', 'table']);
  assert.match(statusTable.stdout, /^\+-+\+-+\+-+\+-+\+\n\|\s+HASH\s+\|\s+REVISION\s+\|\s+TOTAL KEYS\s+\|\s+TOTAL SIZE\s+\|\n/);

  // A corrupt copy is refused, and nothing is left behind.
  const bytes = await readFile(file);
  const corrupt = Buffer.from(bytes);
  corrupt[64] ^= 0xff;
  const corruptFile = join(source.root, 'corrupt.snap');
  await writeFile(corruptFile, corrupt);
  const target = await Cluster.prepare({ size: 3 });
  cleanups.push(() => target.stop());
  const restoreArgs = (member: (typeof target.members)[number], snapshot: string, extra: string[] = []): string[] => [
    'snapshot', 'restore', snapshot, '--name', member.name, '--initial-cluster', target.initialCluster, '--initial-cluster-token', 'kvd-test',
    '--initial-advertise-peer-urls', `http://127.0.0.1:${member.peerPort}`, '--data-dir', member.dataDir, ...extra,
  ];
  const refused = await kvctl(restoreArgs(target.members[0], corruptFile));
  assert.equal(refused.status, 1);
  assert.match(refused.stderr, /Error: expected sha256 \[[0-9 ]+\], got \[[0-9 ]+\]\n$/);
  assert.equal(existsSync(target.members[0].dataDir), false);

  // A dump without padding and SHA-256 ("a file without a trailer") needs --skip-hash-check.
  const { dumpBytes } = await readDump((async function* () { yield bytes; })(), async () => {}, { tail: 'snapshot-file' });
  const bareFile = join(source.root, 'bare.snap');
  await writeFile(bareFile, bytes.subarray(0, dumpBytes));
  const bareDir = join(source.root, 'bare-restore');
  const bareRefused = await kvctl(['snapshot', 'restore', bareFile, '--data-dir', bareDir]);
  assert.equal(bareRefused.status, 1);
  if (dumpBytes % 512 !== 32) assert.equal(bareRefused.stderr.split('\n').filter((line) => line.startsWith('Error:')).join(''), 'Error: snapshot missing hash but --skip-hash-check=false');
  const bareAccepted = await kvctl(['snapshot', 'restore', bareFile, '--data-dir', bareDir, '--skip-hash-check']);
  assert.equal(bareAccepted.status, 0, bareAccepted.stderr);
  assert.equal((await everythingOffline(bareDir)).hash, sourceHash);

  // The real file into each member of a new 3-member cluster.
  for (const member of target.members) {
    const restored = await kvctl(restoreArgs(member, file));
    assert.equal(restored.status, 0, restored.stderr);
    assert.match(restored.stderr, /"msg":"restored snapshot"/);
  }
  for (const member of target.members) target.startMember(member.name);
  await target.waitForLeader({ timeoutMs: 30_000 });
  const restoredClient = connect({ endpoints: target.endpoints, requestTimeout: 15_000 });
  cleanups.push(async () => restoredClient.close());
  const hashes = await Promise.all(target.endpoints.map(async (member) => (await restoredClient.cluster.hashKv(member, revision)).hash));
  assert.deepEqual(hashes, [sourceHash, sourceHash, sourceHash], 'HashKV equal on all three and to the source');
  for (let at = 4n; at <= revision; at++) {
    const expected = await everything(client, at);
    for (const member of target.endpoints) {
      const single = connect({ endpoints: [member] });
      try {
        assert.deepEqual(await everything(single, at, member), expected, `${member} at revision ${at}`);
      } finally {
        single.close();
      }
    }
  }
  const ttl = await restoredClient.leases.timeToLive(lease.id);
  assert.equal(ttl.grantedTtl, 600);
  assert.ok(ttl.ttl > 500 && ttl.ttl <= 600, `the lease's TTL is reset to its granted TTL (${ttl.ttl})`);
  const members = await restoredClient.cluster.memberList();
  assert.deepEqual(members.members.map((m) => m.name).sort(), ['m1', 'm2', 'm3']);
  assert.notEqual(members.header.clusterId, (await client.cluster.memberList()).header.clusterId, 'a new cluster id');
  const written = await restoredClient.put('after-restore', 'yes');
  assert.equal(written.header.revision, revision + 1n);
});

// ───────────────────────────── backup ─────────────────────────────

interface BackupProcess {
  readonly child: ChildProcess;
  stderr(): string;
  stdout(): string;
  exited(): Promise<number | null>;
}

function startBackup(endpoint: string, dir: string): BackupProcess {
  const child = spawn(process.execPath, [KVCTL_BIN, '--endpoints', endpoint, 'backup', '--to', dir, '--flush-interval', '50ms'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let stdout = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exit;
    }
  });
  return { child, stderr: () => stderr, stdout: () => stdout, exited: () => exit };
}

async function kill9(backup: BackupProcess): Promise<void> {
  backup.child.kill('SIGKILL');
  await backup.exited();
}

/** The newest revision the backup's manifest acknowledges as durable (0 before its first snapshot). */
async function durable(dir: string): Promise<bigint> {
  let manifest: { chains: Array<{ snapshot: { revision: string }; segments: Array<{ lastRevision: string }> }> };
  try {
    manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as typeof manifest;
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0n;
    throw error;
  }
  const chain = manifest.chains[manifest.chains.length - 1];
  const segment = chain.segments[chain.segments.length - 1];
  return BigInt(segment === undefined ? chain.snapshot.revision : segment.lastRevision);
}

async function waitDurable(dir: string, revision: bigint, backup: BackupProcess): Promise<void> {
  await waitFor(`the backup to make revision ${revision} durable`, async () => {
    if (backup.child.exitCode !== null) throw new Error(`backup exited: ${backup.stderr()}`);
    return (await durable(dir)) >= revision ? true : undefined;
  }, { timeoutMs: 60_000, intervalMs: 50 });
}

async function waitLine(backup: BackupProcess, pattern: RegExp): Promise<void> {
  await waitFor(`backup output ${pattern}`, () => {
    if (pattern.test(backup.stderr())) return true;
    if (backup.child.exitCode !== null) throw new Error(`backup exited: ${backup.stderr()}`);
    return undefined;
  }, { timeoutMs: 60_000, intervalMs: 10 });
}

/** A deterministic mixed workload: overwrites, deletes, multi-key txns, leased keys, lease revokes. */
class Workload {
  #step = 0;
  readonly #leases: bigint[] = [];
  constructor(readonly client: Client) {}

  async run(steps: number): Promise<bigint> {
    let revision = 0n;
    for (let i = 0; i < steps; i++) revision = await this.#one(this.#step++);
    return revision;
  }

  async #one(step: number): Promise<bigint> {
    const key = (n: number): string => `key/${String(n % 25).padStart(2, '0')}`;
    if (step % 13 === 12 && this.#leases.length > 0) {
      const id = this.#leases.shift() ?? 0n;
      return (await this.client.leases.revoke(id)).header.revision;
    }
    if (step % 11 === 10) {
      const lease = await this.client.leases.grant(600);
      this.#leases.push(lease.id);
      return (await this.client.put(`leased/${step}`, `l${step}`, { lease: lease.id })).header.revision;
    }
    if (step % 7 === 6) {
      const deleted = await this.client.delete(key(step - 3));
      if (deleted.deleted > 0n) return deleted.header.revision;
    }
    if (step % 5 === 4) {
      const result = await this.client.txn().then(op.put(key(step), `t${step}`), op.put(key(step + 1), `u${step}`), op.delete(key(step + 2))).commit();
      return result.header.revision;
    }
    return (await this.client.put(key(step), `v${step}`)).header.revision;
  }
}

test('kvctl backup survives kill -9, starts over after a compaction, and restores three points in time exactly', async () => {
  const { cluster, client } = await startCluster(1);
  const endpoint = cluster.endpoints[0];
  const dir = join(cluster.root, 'backup');
  const workload = new Workload(client);
  const references = new Map<bigint, { kvs: Plain; hash: number }>();
  const reference = async (revision: bigint): Promise<void> => {
    references.set(revision, { kvs: await everything(client, revision), hash: (await client.cluster.hashKv(endpoint, revision)).hash });
  };
  await workload.run(30);

  // Kill point 1: during the first full snapshot (whatever it had written is discarded on restart).
  const first = startBackup(endpoint, dir);
  await waitLine(first, /taking full snapshot 1/);
  await kill9(first);

  // Kill point 2: while following writes (a flush may be torn).
  const second = startBackup(endpoint, dir);
  await waitDurable(dir, await revisionOf(client), second);
  const r1 = await workload.run(20);
  await reference(r1);
  let writing = true;
  const writer = (async () => {
    while (writing) await workload.run(1);
  })();
  await waitDurable(dir, r1 + 10n, second);
  await kill9(second);
  writing = false;
  await writer;

  // Kill point 3: right after resuming, while it catches up.
  const third = startBackup(endpoint, dir);
  await waitLine(third, /resuming chain 1 from revision/);
  await kill9(third);

  const fourth = startBackup(endpoint, dir);
  await waitLine(fourth, /resuming chain 1 from revision/);
  const r2 = await workload.run(20);
  await reference(r2);
  await waitDurable(dir, r2, fourth);
  await kill9(fourth);

  // While the backup is down the cluster compacts past where it stopped.
  const gap = await workload.run(10);
  await client.compact(gap);
  await workload.run(5);

  const fifth = startBackup(endpoint, dir);
  await waitLine(fifth, /has been compacted/);
  await waitLine(fifth, /full snapshot 2 saved: revision (\d+)/);
  const lateLease = await client.leases.grant(321);
  await client.put('late/leased', 'l', { lease: lateLease.id });
  const r3 = await workload.run(15);
  await reference(r3);
  await workload.run(5);
  await waitDurable(dir, await revisionOf(client), fifth);
  fifth.child.kill('SIGINT');
  assert.equal(await fifth.exited(), 0, fifth.stderr());
  assert.match(fifth.stdout(), /^chain 1: revisions \d+\.\.\d+ restorable\nchain 2: revisions \d+\.\.\d+ restorable\n$/);

  const restoreTo = async (revision: bigint, name: string): Promise<{ dataDir: string; peerPort: number; run: Run }> => {
    const peerPort = await freePort();
    const dataDir = join(cluster.root, name);
    const run = await kvctl(['snapshot', 'restore', dir, '--to-revision', String(revision), '--name', name, '--initial-cluster', `${name}=http://127.0.0.1:${peerPort}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`, '--data-dir', dataDir]);
    return { dataDir, peerPort, run };
  };

  for (const [revision, expected] of references) {
    const { dataDir, run } = await restoreTo(revision, `pit-${revision}`);
    assert.equal(run.status, 0, run.stderr);
    const restored = await everythingOffline(dataDir);
    assert.equal(BigInt(restored.revision), revision);
    assert.deepEqual(restored.kvs, expected.kvs, `the whole key space at revision ${revision}`);
    assert.equal(restored.hash, expected.hash, `HashKV at revision ${revision}`);
  }

  // A revision compacted away while the backup was down is not restorable one by one.
  const unrestorable = await restoreTo(gap, 'pit-gap');
  assert.equal(unrestorable.run.status, 1);
  assert.match(unrestorable.run.stderr, /is not restorable from .* \(restorable revisions: \d+\.\.\d+, \d+\.\.\d+\)/);

  // The newest point in time served by a real member: the late lease exists with its granted TTL.
  const { dataDir, peerPort } = await restoreTo(r3, 'pit-served');
  const clientPort = await freePort();
  const served = spawn(process.execPath, [KVD_BIN, '--name', 'pit-served', '--data-dir', dataDir,
    '--listen-client-urls', `http://127.0.0.1:${clientPort}`, '--advertise-client-urls', `http://127.0.0.1:${clientPort}`,
    '--listen-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
    '--initial-cluster', `pit-served=http://127.0.0.1:${peerPort}`, '--heartbeat-interval', '50', '--election-timeout', '500'], { stdio: 'ignore' });
  cleanups.push(async () => {
    if (served.exitCode === null) {
      const exited = new Promise((resolve) => served.once('exit', resolve));
      served.kill('SIGKILL');
      await exited;
    }
  });
  const servedClient = connect({ endpoints: [`127.0.0.1:${clientPort}`], requestTimeout: 15_000 });
  cleanups.push(async () => servedClient.close());
  await waitFor('the restored member to serve', async () => ((await servedClient.range('any')).header.revision > 0n ? true : undefined), { timeoutMs: 30_000 });
  assert.deepEqual(await everything(servedClient, r3), references.get(r3)?.kvs);
  const ttl = await servedClient.leases.timeToLive(lateLease.id);
  assert.equal(ttl.grantedTtl, 321, 'a lease granted after the snapshot is restored with the TTL the backup recorded');
});

// Goal: `restoreMember` turns a snapshot file into a data dir that `recover()` accepts as a
// member of a NEW cluster: ids derived from --initial-cluster and the token as bootstrapNew does,
// Raft snapshot and WAL marker at the restored index with the new voters, backend with the same
// key space (same HashKV), its consistent index lowered to that index, old membership records and
// conf-change outcomes replaced, lease TTLs reset to the granted TTL; members restored alike agree
// on everything; refusals use etcdctl's messages and leave nothing behind. `snapshotStatus`
// reports the source's HashKV, revision, entry count and size, also when the dump was taken in
// the middle of a compaction. Method: a real MvccStore and Lessor in a temp dir, dumped to a file,
// restored, then inspected with the real Wal, SnapshotStore, MvccStore and recover().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { MvccStore } from '../../../src/store/mvcc/index.js';
import { Lessor } from '../../../src/store/lease/lessor.js';
import { SnapshotStore, Wal } from '../../../src/wal/index.js';
import { restoreMember, snapshotStatus, restoredIndex } from '../../../src/server/restore.js';
import { recover } from '../../../src/server/bootstrap.js';
import { computeClusterId, computeMemberId } from '../../../src/server/ids.js';
import { readBootstrap, encodeMember } from '../../../src/server/membership.js';
import { DEFAULT_CONFIG, type ServerConfig } from '../../../src/server/config.js';
import { createLogger } from '../../../src/server/logger.js';
import { compact, put, rangeRequest, plain } from '../store/mvcc/helpers.js';
import { withTempDir } from '../temp-dir.js';

const TOKEN = 'restore-token';
const CLUSTER = new Map([
  ['m1', ['http://127.0.0.1:7001']],
  ['m2', ['http://127.0.0.1:7002']],
  ['m3', ['http://127.0.0.1:7003']],
]);

const withDir = (body: (dir: string) => Promise<void>): Promise<void> => withTempDir('kvd-restore-', body);

/** A source backend as a serving member leaves it: history, a leased key with a checkpoint, membership and conf-change records, a high consistent index. */
async function sourceSnapshot(dir: string, options: { compactPending?: boolean } = {}): Promise<{ path: string; revision: number; hash: number; entries: number; size: number; leaseId: bigint }> {
  const store = await MvccStore.open({ path: join(dir, 'source') });
  const lessor = new Lessor({ minTtlSeconds: 1 });
  const leaseId = 0x1234n;
  const granted = lessor.grant({ id: leaseId, ttlSeconds: 90, nowMs: 0 });
  assert.ok(granted.ok);
  const checkpointed = lessor.checkpoint(leaseId, 17);
  assert.ok(checkpointed.ok);
  const meta = new Map<string, Uint8Array | null>([...granted.meta, ...checkpointed.meta]);
  meta.set('member/aaaa', encodeMember({ id: 0xaaaan, name: 'old', peerUrls: ['http://old:1'], clientUrls: [], isLearner: false, removed: false, autoPromote: false }));
  meta.set('confchange/900', Buffer.from('add-node'));
  let index = 1000;
  await store.applyBatch([{ index: ++index, request: put('a', '1') }, { index: ++index, request: put('b', '1') }, { index: ++index, request: put('a', '2') }], { meta });
  await store.applyBatch([{ index: ++index, request: put('leased', 'x', { lease: leaseId }) }], { leaseExists: () => true });
  await store.applyBatch([{ index: ++index, request: compact(3) }]);
  if (options.compactPending === true) {
    // More history, then a compaction whose physical part cannot have finished when the dump is taken.
    for (let i = 0; i < 5; i++) await store.applyBatch([{ index: ++index, request: put('a', `again-${i}`) }]);
    await store.applyBatch([{ index: ++index, request: compact(store.currentRevision - 1) }]);
  } else {
    await store.waitCompacted(3);
  }
  const dump = await store.openDump();
  const chunks: Buffer[] = [];
  for await (const chunk of dump.framedChunks()) chunks.push(Buffer.from(chunk));
  const path = join(dir, 'source.snap');
  await writeFile(path, Buffer.concat(chunks));
  const { hash } = await store.hashKV(dump.revision);
  const result = { path, revision: dump.revision, hash, entries: dump.entries, size: dump.framedSizeBytes, leaseId };
  await store.close();
  return result;
}

function restoreOptions(snapshotPath: string, dataDir: string, name: string) {
  const peerUrls = CLUSTER.get(name);
  assert.ok(peerUrls !== undefined);
  return { snapshotPath, hashCheck: 'verify' as const, name, initialCluster: CLUSTER, initialClusterToken: TOKEN, initialAdvertisePeerUrls: peerUrls, dataDir };
}

test('a restored data dir is a member of a new cluster that recover() accepts', () => withDir(async (dir) => {
  const source = await sourceSnapshot(dir);
  const dataDir = join(dir, 'm2');
  const result = await restoreMember(restoreOptions(source.path, dataDir, 'm2'));
  const ids = [...CLUSTER.values()].map((peerUrls) => computeMemberId({ peerUrls, token: TOKEN }));
  const index = restoredIndex(3);
  assert.equal(result.clusterId, computeClusterId(ids));
  assert.equal(result.memberId, ids[1]);
  assert.equal(result.revision, source.revision);
  assert.equal(result.hash, source.hash);
  assert.deepEqual(await readdir(dir).then((names) => names.filter((name) => name.includes('restoring'))), [], 'no staging dir left');

  const bootstrap = readBootstrap(dataDir);
  assert.ok(bootstrap !== undefined);
  assert.equal(bootstrap.clusterId, result.clusterId);
  assert.equal(bootstrap.memberId, ids[1]);
  assert.equal(bootstrap.joined, false);
  assert.deepEqual(bootstrap.members.map((m) => m.name), ['m1', 'm2', 'm3']);

  const { wal, state } = await Wal.open({ dir: join(dataDir, 'member', 'wal') });
  await wal.close();
  assert.equal(state.snapshot?.index, index);
  assert.deepEqual(state.hardState, { term: 1, vote: 0n, commit: index });
  assert.deepEqual(state.entries, []);
  const snapshot = await (await SnapshotStore.open({ dir: join(dataDir, 'member', 'snap') })).loadNewest();
  assert.equal(snapshot?.metadata.index, index);
  assert.deepEqual(new Set(snapshot?.metadata.confState.voters), new Set(ids));

  const store = await MvccStore.open({ path: join(dataDir, 'member', 'db') });
  try {
    assert.equal(store.consistentIndex, index);
    assert.deepEqual([...store.listMeta('member/').keys()].sort(), ids.map((id) => `member/${id.toString(16)}`).sort());
    assert.equal(store.listMeta('confchange/').size, 0);
    const lessor = Lessor.restore(store.listMeta('lease/'), { minTtlSeconds: 1 });
    const ttl = lessor.timeToLive(source.leaseId, { nowMs: 0 });
    assert.deepEqual(ttl, { ok: true, ttlSeconds: 90, grantedTtlSeconds: 90 }, 'the checkpointed remaining TTL (17 s) is reset to the granted TTL');
    assert.deepEqual((await store.range(rangeRequest('leased'))).kvs.map(plain), [{ key: 'leased', value: 'x', create: 5, mod: 5, version: 1, lease: source.leaseId }]);
    assert.equal((await store.hashKV(0)).hash, source.hash);
  } finally {
    await store.close();
  }

  const config: ServerConfig = { ...DEFAULT_CONFIG, name: 'm2', dataDir, initialCluster: CLUSTER, initialClusterToken: TOKEN, initialAdvertisePeerUrls: CLUSTER.get('m2') ?? [] };
  const sink = new Writable({ write: (_chunk, _encoding, done) => done() });
  const recovered = await recover(config, createLogger({ name: 'm2', level: 'error', destination: sink }));
  try {
    assert.equal(recovered.id, ids[1]);
    assert.equal(recovered.snapshotIndex, index);
    assert.equal(recovered.store.consistentIndex, index);
    assert.deepEqual(new Set(recovered.confState.voters), new Set(ids));
    assert.deepEqual(recovered.membership.active().map((m) => m.name).sort(), ['m1', 'm2', 'm3']);
    assert.equal(recovered.lessor.has(source.leaseId), true);
  } finally {
    await recovered.wal.close();
    await recovered.store.close();
  }
}));

test('members restored from one file agree on ids and state; refusals use etcdctl messages and leave nothing', () => withDir(async (dir) => {
  const source = await sourceSnapshot(dir);
  const results = [];
  for (const name of ['m1', 'm2', 'm3']) results.push(await restoreMember(restoreOptions(source.path, join(dir, name), name)));
  assert.equal(new Set(results.map((r) => r.clusterId)).size, 1);
  assert.equal(new Set(results.map((r) => r.hash)).size, 1);
  assert.equal(new Set(results.map((r) => r.memberId)).size, 3);

  await assert.rejects(restoreMember(restoreOptions(source.path, join(dir, 'm1'), 'm1')), { message: `data-dir "${join(dir, 'm1')}" exists` });
  await assert.rejects(restoreMember({ ...restoreOptions(source.path, join(dir, 'x'), 'm1'), name: 'nobody' }), { message: 'couldn\'t find local name "nobody" in the initial cluster configuration' });
  await assert.rejects(restoreMember({ ...restoreOptions(source.path, join(dir, 'x'), 'm1'), initialAdvertisePeerUrls: ['http://127.0.0.1:9'] }), { message: /^--initial-cluster has m1=http:\/\/127.0.0.1:7001 but missing from --initial-advertise-peer-urls=http:\/\/127.0.0.1:9 / });
  const corrupt = join(dir, 'corrupt.snap');
  const bytes = await readFile(source.path);
  bytes[40] ^= 0xff;
  await writeFile(corrupt, bytes);
  await assert.rejects(restoreMember(restoreOptions(corrupt, join(dir, 'x'), 'm1')), { message: /^expected sha256 \[/ });
  await assert.rejects(restoreMember({ ...restoreOptions(corrupt, join(dir, 'x'), 'm1'), hashCheck: 'skip' }), /corrupt snapshot/, 'the dump CRC still refuses it');
  assert.equal(existsSync(join(dir, 'x')), false);
  assert.equal(existsSync(join(dir, 'x.restoring')), false);
}));

test('snapshot status: the source HashKV at the snapshot revision, entries and size, with or without a compaction in progress', () => withDir(async (dir) => {
  for (const compactPending of [false, true]) {
    const source = await sourceSnapshot(await mkdtemp(join(dir, 'source-')), { compactPending });
    const status = await snapshotStatus(source.path);
    assert.deepEqual(status, { hash: source.hash, revision: source.revision, totalKey: source.entries, totalSize: source.size - 32 }, `compaction pending: ${compactPending}`);
  }
}));

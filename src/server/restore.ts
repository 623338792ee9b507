/**
 * Offline restore of a member's data dir from a snapshot file (etcdctl 3.4's `snapshot restore`),
 * optionally rolled forward to a later revision with the revisions a backup recorded
 * (point-in-time restore), and `snapshot status`.
 *
 * A restore makes a member of a NEW cluster, as etcd does: ids from --initial-cluster and
 * --initial-cluster-token (the same derivation as `bootstrapNew`, so every member restored with
 * the same flags agrees on them), the key space with its history exactly as in the snapshot
 * (same revisions, same backend records, hence the same HashKV), leases with their remaining
 * TTL reset to the granted TTL, and membership replaced by the new one. The data dir it writes
 * is the one `recover()` (bootstrap.ts) reads after a restart:
 *
 * - `member/bootstrap.json`: cluster id, this member's id, the members (not joined);
 * - `member/db`: the backend, its consistent index set to {@link restoredIndex} (the new log
 *   starts after it), `member/<id>` records of the new members replacing the old ones, the old
 *   cluster's `confchange/<index>` outcomes dropped (they name the old log's indexes), lease
 *   records with no checkpointed remaining TTL;
 * - `member/snap/<term>-<index>.snap`: a Raft snapshot at (index, term 1) whose ConfState names
 *   the new members as voters;
 * - `member/wal`: a snapshot marker at that index and a hard state {term 1, commit index}.
 *
 * Every member of the new cluster then starts from the same Raft snapshot with nothing to
 * apply, elects a leader at term 2 and serves every key at its revision. As with etcd, each
 * member of the new cluster is restored from the same file with its own --name and
 * --initial-advertise-peer-urls.
 *
 * The data dir is built next to its final place (`<data-dir>.restoring`), made durable, and then
 * renamed into place: a crash never leaves a half-written data dir that kvd would start from.
 */
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { ConfState, SnapshotMetadata } from '../raft/types.js';
import { Wal, SnapshotStore } from '../wal/index.js';
import { MvccStore, checkSnapshotFile, readDump, type HashCheck } from '../store/mvcc/index.js';
import { PREFIX_REVISION, PREFIX_SYSTEM, SYSTEM_KEYS, decodeNumber, parseRevisionKey } from '../store/mvcc/codec.js';
import type { Event, RevisionChanges } from '../store/mvcc/index.js';
import { Lessor, LEASE_RECORD_PREFIX } from '../store/lease/lessor.js';
import { assert } from '../util/assert.js';
import { syncPath, syncTree } from '../util/fsync.js';
import { KvdError } from '../util/errors.js';
import { newClusterBootstrap } from './bootstrap.js';
import { idToHex } from './ids.js';
import { encodeMember, memberMetaKey, writeBootstrap, type BootstrapInfo } from './membership.js';
import { CONF_CHANGE_RECORD_PREFIX } from './applier.js';

/** Term of the restored Raft snapshot and hard state (etcd's restore uses 1 as well). */
export const RESTORED_TERM = 1;
/** Revisions applied per LevelDB batch while rolling a restore forward. */
const REPLAY_BATCH_REVISIONS = 1000;
/** Bytes (keys and values) applied per LevelDB batch while rolling forward, whichever comes first. */
const REPLAY_BATCH_BYTES = 4 << 20;
/**
 * TTL given to a lease that a key holds at the restored revision when neither the snapshot nor
 * the backup knows its granted TTL (a lease granted after the snapshot and gone before the
 * backup could ask for it).
 */
export const UNKNOWN_LEASE_TTL_SECONDS = 60;

/**
 * The Raft index a restored cluster starts at (its snapshot index and the backend's consistent
 * index): one per member, as etcd's restore writes one conf-change entry per member.
 */
export function restoredIndex(memberCount: number): number {
  return memberCount;
}

/** One change of a revision as a backup recorded it (the client's backup records have this shape). */
export interface RecordedEvent {
  readonly type: 'put' | 'delete';
  readonly key: Uint8Array;
  /** Puts only; empty for deletes. */
  readonly value: Uint8Array;
  /** Puts only; 0 for deletes. */
  readonly createRevision: bigint;
  readonly version: bigint;
  readonly lease: bigint;
}

/** Every change of one revision, in the order the source made them. */
export interface RecordedRevision {
  readonly revision: bigint;
  readonly events: readonly RecordedEvent[];
}

/** What a point-in-time restore rolls the snapshot forward with. */
export interface PointInTime {
  /** The revision to restore to (>= the snapshot's revision). */
  readonly toRevision: number;
  /**
   * Revisions recorded after the snapshot, in order from its revision + 1, at least up to
   * `toRevision` (later ones are not read).
   */
  readonly revisions: AsyncIterable<RecordedRevision>;
  /** Granted TTLs (seconds) the backup learned for leases granted after the snapshot. */
  readonly leaseTtls?: ReadonlyMap<bigint, number>;
}

/** Options of {@link restoreMember}: etcdctl 3.4's restore flags. */
export interface RestoreOptions {
  /** The snapshot file (`kvctl snapshot save`, `etcdctl snapshot save` against kvd, a backup's full snapshot). */
  readonly snapshotPath: string;
  /** 'skip' = --skip-hash-check: accept a file without (or with an unchecked) SHA-256 trailer. */
  readonly hashCheck: HashCheck;
  readonly name: string;
  readonly initialCluster: ReadonlyMap<string, readonly string[]>;
  readonly initialClusterToken: string;
  readonly initialAdvertisePeerUrls: readonly string[];
  /** Must not exist. */
  readonly dataDir: string;
  readonly pointInTime?: PointInTime;
  readonly logger?: (event: RestoreEvent) => void;
}

/** Progress of a restore, for the CLI's log lines. */
export type RestoreEvent =
  | { readonly type: 'restoring'; readonly path: string; readonly dataDir: string }
  | { readonly type: 'member-added'; readonly clusterId: string; readonly memberId: string; readonly name: string; readonly peerUrls: readonly string[] }
  | { readonly type: 'rolled-forward'; readonly fromRevision: number; readonly toRevision: number; readonly revisions: number }
  | { readonly type: 'restored'; readonly path: string; readonly dataDir: string; readonly revision: number; readonly hash: number };

/** What {@link restoreMember} made. */
export interface RestoreResult {
  readonly clusterId: bigint;
  readonly memberId: bigint;
  /** The snapshot's revision. */
  readonly snapshotRevision: number;
  /** The restored store's revision (the point in time, or the snapshot's). */
  readonly revision: number;
  /** HashKV of the restored key space at `revision` (equal on every member restored alike). */
  readonly hash: number;
  /** The new cluster's first Raft index (snapshot and consistent index). */
  readonly index: number;
}

/**
 * Checks the restore flags as etcd's VerifyBootstrap does (same messages) and derives the new
 * cluster's ids.
 */
export function restoreBootstrap(options: Pick<RestoreOptions, 'name' | 'initialCluster' | 'initialClusterToken' | 'initialAdvertisePeerUrls'>): BootstrapInfo {
  const mine = options.initialCluster.get(options.name);
  if (mine === undefined) throw new KvdError('invalid-argument', { detail: `couldn't find local name "${options.name}" in the initial cluster configuration` });
  const advertised = [...options.initialAdvertisePeerUrls].sort();
  if ([...mine].sort().join(',') !== advertised.join(',')) {
    throw new KvdError('invalid-argument', {
      detail: `--initial-cluster has ${options.name}=${mine.join(',')} but missing from --initial-advertise-peer-urls=${options.initialAdvertisePeerUrls.join(',')} (resolved urls: "${advertised.join(',')}" != "${[...mine].sort().join(',')}")`,
    });
  }
  return newClusterBootstrap({
    name: options.name, initialCluster: options.initialCluster, token: options.initialClusterToken,
    advertisePeerUrls: options.initialAdvertisePeerUrls, advertiseClientUrls: [],
  });
}

/** Restores one member's data dir (see the module comment). */
export async function restoreMember(options: RestoreOptions): Promise<RestoreResult> {
  const log = options.logger ?? (() => {});
  const info = restoreBootstrap(options);
  if (await exists(options.dataDir)) throw new KvdError('invalid-argument', { detail: `data-dir "${options.dataDir}" exists` });
  log({ type: 'restoring', path: options.snapshotPath, dataDir: options.dataDir });
  await checkSnapshotFile(options.snapshotPath, options.hashCheck);
  const staging = `${options.dataDir}.restoring`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(join(staging, 'member'), { recursive: true });
  try {
    const index = restoredIndex(info.members.length);
    const restored = await restoreBackend({ ...options, dbPath: join(staging, 'member', 'db'), info, index, log });
    await writeRaftState(staging, info, index, restored.revision);
    await writeBootstrap(staging, info);
    await syncTree(staging);
    await rename(staging, options.dataDir);
    await syncPath(dirname(options.dataDir));
    for (const member of info.members) {
      log({ type: 'member-added', clusterId: idToHex(info.clusterId), memberId: idToHex(member.id), name: member.name, peerUrls: member.peerUrls });
    }
    log({ type: 'restored', path: options.snapshotPath, dataDir: options.dataDir, revision: restored.revision, hash: restored.hash });
    return { clusterId: info.clusterId, memberId: info.memberId, snapshotRevision: restored.snapshotRevision, revision: restored.revision, hash: restored.hash, index };
  } catch (error: unknown) {
    await rm(staging, { recursive: true, force: true });
    throw error;
  }
}

/** Writes the backend: the dump, the roll-forward, then the new cluster's meta and index. */
async function restoreBackend(options: RestoreOptions & { dbPath: string; info: BootstrapInfo; index: number; log: (event: RestoreEvent) => void }): Promise<{ snapshotRevision: number; revision: number; hash: number }> {
  await MvccStore.restoreSnapshot({ path: options.dbPath, chunks: createReadStream(options.snapshotPath), tail: 'snapshot-file' });
  const store = await MvccStore.open({ path: options.dbPath });
  try {
    const snapshotRevision = store.currentRevision;
    if (options.pointInTime !== undefined) {
      const applied = await rollForward(store, options.pointInTime);
      options.log({ type: 'rolled-forward', fromRevision: snapshotRevision, toRevision: store.currentRevision, revisions: applied });
    }
    await store.rebaseForRestore({ consistentIndex: options.index, meta: newClusterMeta(store, options.info, options.pointInTime?.leaseTtls) });
    const { hash } = await store.hashKV(0);
    return { snapshotRevision, revision: store.currentRevision, hash };
  } finally {
    await store.close();
  }
}

/**
 * Applies recorded revisions from the store's revision + 1 up to `toRevision`, in bounded
 * batches. Throws KvdError('invalid-argument') when the point in time is before the snapshot,
 * and 'corrupt' when the recording skips a revision, does not reach `toRevision`, or does not
 * fit the snapshot (see MvccStore.applyRecorded).
 */
async function rollForward(store: MvccStore, pointInTime: PointInTime): Promise<number> {
  const from = store.currentRevision;
  const to = pointInTime.toRevision;
  if (to < from) throw new KvdError('invalid-argument', { detail: `revision ${to} is before the snapshot's revision ${from}` });
  let batch: RevisionChanges[] = [];
  let batchBytes = 0;
  let applied = 0;
  let next = from + 1;
  const flush = async (): Promise<void> => {
    if (batch.length === 0) return;
    await store.applyRecorded(batch);
    applied += batch.length;
    batch = [];
    batchBytes = 0;
  };
  if (to > from) {
    for await (const recorded of pointInTime.revisions) {
      const revision = Number(recorded.revision);
      if (revision <= from) continue; // recorded before the snapshot's point in time
      if (revision !== next) throw new KvdError('corrupt', { detail: `etcdserver: corrupt backup: revision ${revision} follows ${next - 1}` });
      const changes = toRevisionChanges(revision, recorded);
      batch.push(changes);
      batchBytes += changes.events.reduce((sum, event) => sum + event.kv.key.length + event.kv.value.length, 0);
      next += 1;
      if (batch.length >= REPLAY_BATCH_REVISIONS || batchBytes >= REPLAY_BATCH_BYTES) await flush();
      if (revision === to) break;
    }
  }
  await flush();
  if (store.currentRevision !== to) throw new KvdError('corrupt', { detail: `etcdserver: corrupt backup: it records revisions only up to ${store.currentRevision}, not ${to}` });
  return applied;
}

function toRevisionChanges(revision: number, recorded: RecordedRevision): RevisionChanges {
  const events: Event[] = recorded.events.map((event) => {
    const kv = {
      key: event.key,
      createRevision: event.type === 'put' ? toSafeNumber(event.createRevision, 'create revision') : 0,
      modRevision: revision,
      version: event.type === 'put' ? toSafeNumber(event.version, 'version') : 0,
      value: event.type === 'put' ? event.value : new Uint8Array(0),
      lease: event.type === 'put' ? BigInt.asUintN(64, event.lease) : 0n,
    };
    return { type: event.type, kv };
  });
  return { revision, events };
}

function toSafeNumber(value: bigint, what: string): number {
  if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) throw new KvdError('corrupt', { detail: `etcdserver: corrupt backup: ${what} ${value} out of range` });
  return Number(value);
}

/**
 * The meta writes that make the backend a new cluster's: old member records and conf-change
 * outcomes out, the new members in, every lease's remaining TTL reset to its granted TTL (etcd
 * does the same on restore), and a lease record for every lease a live key holds that the
 * snapshot did not have (granted after it, seen by a point-in-time roll-forward).
 */
function newClusterMeta(store: MvccStore, info: BootstrapInfo, leaseTtls: ReadonlyMap<bigint, number> | undefined): Map<string, Uint8Array | null> {
  const meta = new Map<string, Uint8Array | null>();
  for (const name of store.listMeta('member/').keys()) meta.set(name, null);
  for (const name of store.listMeta(CONF_CHANGE_RECORD_PREFIX).keys()) meta.set(name, null);
  for (const member of info.members) meta.set(memberMetaKey(member.id), encodeMember(member));
  // minTtlSeconds 1: a restore keeps granted TTLs as they are (the member applies its own minimum to new grants).
  const lessor = Lessor.restore(store.listMeta(LEASE_RECORD_PREFIX), { minTtlSeconds: 1 });
  for (const lease of store.listLeasedKeys().keys()) {
    if (lessor.has(lease)) continue;
    const ttlSeconds = leaseTtls?.get(lease) ?? UNKNOWN_LEASE_TTL_SECONDS;
    const granted = lessor.grant({ id: lease, ttlSeconds: ttlSeconds > 0 ? ttlSeconds : UNKNOWN_LEASE_TTL_SECONDS, nowMs: 0 });
    assert(granted.ok, 'a lease missing from the lessor can be granted');
    for (const [key, value] of granted.meta) meta.set(key, value);
  }
  for (const { id } of lessor.leases()) {
    const reset = lessor.checkpoint(id, 0);
    assert(reset.ok, 'a restored lease exists');
    for (const [key, value] of reset.meta) meta.set(key, value);
  }
  return meta;
}

/** The Raft snapshot file and the WAL of the new cluster (see the module comment). */
async function writeRaftState(dataDir: string, info: BootstrapInfo, index: number, revision: number): Promise<void> {
  const confState: ConfState = { voters: info.members.map((member) => member.id), learners: [] };
  const metadata: SnapshotMetadata = { index, term: RESTORED_TERM, confState };
  // The same metadata the snapshotter writes into its snapshots' data.
  const data = Buffer.from(JSON.stringify({ clusterId: idToHex(info.clusterId), revision }));
  const snapshots = await SnapshotStore.open({ dir: join(dataDir, 'member', 'snap') });
  await snapshots.save({ metadata, data });
  const { wal } = await Wal.open({ dir: join(dataDir, 'member', 'wal') });
  try {
    // Snapshot file first, then its marker (the order recover() relies on).
    await wal.saveSnapshotMarker(metadata);
    await wal.save({ hardState: { term: RESTORED_TERM, vote: 0n, commit: index }, entries: [] });
  } finally {
    await wal.close();
  }
}

// ---------------------------------------------------------------------------------------------
// snapshot status

/** `snapshot status`: etcdctl's four fields, kvd's meanings. */
export interface SnapshotStatus {
  /**
   * HashKV of the snapshot's key space at its revision: CRC-32 (IEEE) over the revision records
   * a member would hash for `HashKV{revision}` (MvccStore.hashKV). So it equals what
   * `endpoint hashkv` answers at that revision on the member it was taken from (while that
   * revision is not compacted) and on every member restored from it.
   */
  readonly hash: number;
  /** The store revision the snapshot holds. */
  readonly revision: number;
  /** Backend entries in the snapshot: revision records, meta and the store's own state (etcd counts every bbolt key alike). */
  readonly totalKey: number;
  /** Bytes of the snapshot without its 32-byte SHA-256 trailer (etcd: the bbolt file's size). */
  readonly totalSize: number;
}

/**
 * Reads a snapshot file (checking its SHA-256 when it has one, and the dump's own CRC) and
 * computes {@link SnapshotStatus}. In the usual case (the dump's compaction, if any, had
 * physically finished) the hash is computed while parsing, in one pass; otherwise the dump is
 * loaded into a temporary store under the OS temp dir whose hashKV answers it.
 */
export async function snapshotStatus(path: string): Promise<SnapshotStatus> {
  const { sizeBytes } = await checkSnapshotFile(path, 'skip');
  let hash = crc32(Buffer.from('key', 'latin1'));
  const system = new Map<string, number>();
  let newestRecord = 1;
  const read = await readDump(createReadStream(path), async (entries) => {
    for (const entry of entries) {
      if (entry.key[0] === PREFIX_REVISION) {
        hash = crc32(entry.key, hash);
        hash = crc32(entry.value, hash);
        newestRecord = parseRevisionKey(entry.key).revision;
      } else if (entry.value.length === 8 && entry.key[0] === PREFIX_SYSTEM) {
        system.set(entry.key.toString('latin1'), decodeNumber(entry.value));
      }
    }
  }, { tail: 'snapshot-file' });
  if (read.form === 'snapshot-file') await checkSnapshotFile(path, 'verify');
  const systemValue = (key: Buffer): number => system.get(key.toString('latin1')) ?? 0;
  const revision = Math.max(systemValue(SYSTEM_KEYS.revision), newestRecord, 1);
  const totalSize = read.form === 'snapshot-file' ? sizeBytes - 32 : sizeBytes;
  if (systemValue(SYSTEM_KEYS.compactScheduled) > systemValue(SYSTEM_KEYS.compactFinished)) {
    // Records compaction would drop are still in the dump: only the key index knows which.
    hash = await hashThroughStore(path);
  }
  return { hash: hash >>> 0, revision, totalKey: read.entries, totalSize };
}

async function hashThroughStore(path: string): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'kvd-snapshot-status-'));
  try {
    const dbPath = join(dir, 'db');
    await MvccStore.restoreSnapshot({ path: dbPath, chunks: createReadStream(path), tail: 'snapshot-file' });
    const store = await MvccStore.open({ path: dbPath });
    try {
      return (await store.hashKV(0)).hash;
    } finally {
      await store.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// files

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}


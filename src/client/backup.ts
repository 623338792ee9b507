/**
 * Incremental backup of a cluster into a directory, and reading it back for a point-in-time
 * restore (kvd's addition to etcd's snapshot/restore; works against kvd, which names a
 * snapshot's revision in its first header, as etcd 3.4 does not).
 *
 * ## What a backup directory holds
 *
 * - `manifest.json`: the chains (below) and, per segment, the last revision acknowledged as
 *   durable. Replaced atomically (temporary file, fsync, rename, directory fsync).
 * - `snap-<chain>.snap`: a chain's full snapshot (Maintenance.Snapshot, saved as
 *   `kvctl snapshot save` saves it: checksummed, fsynced, renamed into place).
 * - `seg-<chain>-<seq>.kvseg`: the chain's increments: every revision after the snapshot's, as
 *   the cluster's watch delivered them (backup-format.ts).
 *
 * A chain is a full snapshot at revision S and segments holding S+1, S+2, … without a gap. A
 * new chain starts when the backup starts on an empty directory, and when the cluster has
 * compacted the revision the backup must resume from (it was stopped for longer than the
 * cluster keeps history): revisions between the old chain's end and the new snapshot are then
 * not restorable one by one (the new snapshot holds their result).
 *
 * ## Durability and resumption
 *
 * Revisions are buffered for at most `flushIntervalMs` (or `flushBytes`), then appended to the
 * open segment as one record with one write, fdatasynced, and only then acknowledged in the
 * manifest. Killing the backup at any point (kill -9 included) leaves a restorable directory:
 * on restart with the same directory it removes files the manifest does not name (an
 * interrupted snapshot or segment creation), reads the open segment, drops a torn last record
 * (refusing to go on if an acknowledged revision is missing), and watches again from the last
 * durable revision + 1. A clean stop (abort signal) flushes and seals the open segment (unless
 * it is still empty).
 *
 * RPO. Crash of the backup process: nothing is lost while the cluster still has the history
 * from the last durable revision on (its compaction retention); otherwise the backup restarts
 * with a new full snapshot and the revisions in between stay restorable only as their result.
 * Loss of the whole cluster: the backup holds every revision up to about `flushIntervalMs`
 * (default 200 ms) plus the watch's delivery delay before the loss; revisions committed in
 * that window are lost.
 */
import { mkdir, open, readdir, readFile, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Client } from './index.js';
import { hexId } from './codec.js';
import { CancelledError, KvError, WatchCompactedError } from './errors.js';
import type { SnapshotProgress } from './snapshot.js';
import type { WatchBatch } from './watch.js';
import { SegmentReader, encodeRecord, encodeSegmentHeader, type BackupEvent, type BackupRevision, type LeaseTtl, type SegmentRecord } from './backup-format.js';

export type { BackupEvent, BackupRevision, LeaseTtl } from './backup-format.js';

/** Name of the manifest in a backup directory. */
export const MANIFEST_FILE = 'manifest.json';
const MANIFEST_FORMAT = 'kvd-backup/1';
/** Defaults of {@link BackupOptions}. */
export const BACKUP_DEFAULTS = { flushIntervalMs: 200, flushBytes: 1 << 20, segmentBytes: 16 << 20 } as const;
/** Lease ids remembered per chain as already recorded; beyond it the set starts over (costs only repeated lookups). */
const KNOWN_LEASES_MAX = 100_000;
/** Backoff between failed snapshot attempts (all endpoints failed), doubling up to the max. */
const SNAPSHOT_RETRY_MIN_MS = 200;
const SNAPSHOT_RETRY_MAX_MS = 5_000;

const OWN_FILE = /^(manifest\.json\.tmp|snap-\d{4,}\.snap(\.part)?|seg-\d{4,}-\d{6,}\.kvseg)$/;

interface SegmentJson {
  file: string;
  firstRevision: string;
  /** Last revision acknowledged as durable (firstRevision - 1 when none). */
  lastRevision: string;
  state: 'open' | 'sealed';
}

interface ChainJson {
  chain: number;
  reason: 'start' | 'compacted';
  snapshot: { file: string; revision: string; sizeBytes: number; memberId: string; takenAt: string };
  segments: SegmentJson[];
}

interface ManifestJson {
  format: typeof MANIFEST_FORMAT;
  clusterId: string;
  chains: ChainJson[];
}

/** What {@link runBackup} reports as it goes (kvctl prints these). */
export type BackupEventReport =
  | { readonly type: 'resumed'; readonly chain: number; readonly fromRevision: bigint; readonly truncated?: { readonly file: string; readonly droppedBytes: number; readonly why: string } }
  | { readonly type: 'snapshot-started'; readonly chain: number; readonly endpoint: string; readonly reason: 'start' | 'compacted' }
  | { readonly type: 'snapshot-progress'; readonly progress: SnapshotProgress }
  | { readonly type: 'snapshot-failed'; readonly endpoint: string; readonly error: string }
  | { readonly type: 'snapshot-saved'; readonly chain: number; readonly revision: bigint; readonly sizeBytes: number; readonly durationMs: number; readonly file: string }
  | { readonly type: 'compacted'; readonly fromRevision: bigint; readonly compactRevision: bigint }
  | { readonly type: 'flushed'; readonly revision: bigint; readonly revisions: number; readonly bytes: number; readonly file: string }
  | { readonly type: 'segment-sealed'; readonly file: string; readonly lastRevision: bigint }
  | { readonly type: 'stopped'; readonly revision: bigint };

/** Options of {@link runBackup}. */
export interface BackupOptions {
  /** The backup directory (created if missing; must be empty or a kvd backup). */
  readonly dir: string;
  /** Stops the backup cleanly (flush, seal). */
  readonly signal: AbortSignal;
  readonly onEvent?: (event: BackupEventReport) => void;
  /** Longest time a received revision waits before it is made durable. Default 200 ms. */
  readonly flushIntervalMs?: number;
  /** Buffered bytes that trigger a flush at once. Default 1 MiB. */
  readonly flushBytes?: number;
  /** A segment is sealed and the next one started once it holds this much. Default 16 MiB. */
  readonly segmentBytes?: number;
}

/**
 * Runs a backup until `options.signal` aborts (see the module comment); resolves with the last
 * durable revision. Throws on anything it cannot go on from: a directory that is not a backup,
 * a backup of another cluster, an acknowledged revision missing from its segment, a gap in the
 * watch (a bug), or a file system error.
 */
export async function runBackup(client: Client, options: BackupOptions): Promise<{ revision: bigint }> {
  const run = new BackupRun(client, options);
  return run.run();
}

/** The open segment being appended to. */
interface OpenSegment {
  readonly json: SegmentJson;
  readonly path: string;
  readonly handle: FileHandle;
  size: number;
  /** Running CRC-32 of the file (what its seal will carry). */
  crc: number;
  records: number;
  lastRevision: bigint;
}

class BackupRun {
  readonly #client: Client;
  readonly #dir: string;
  readonly #signal: AbortSignal;
  readonly #emit: (event: BackupEventReport) => void;
  readonly #flushIntervalMs: number;
  readonly #flushBytes: number;
  readonly #segmentBytes: number;
  #manifest: ManifestJson | undefined;
  #segment: OpenSegment | undefined;
  #knownLeases = new Set<bigint>();

  constructor(client: Client, options: BackupOptions) {
    this.#client = client;
    this.#dir = options.dir;
    this.#signal = options.signal;
    this.#emit = options.onEvent ?? (() => {});
    this.#flushIntervalMs = options.flushIntervalMs ?? BACKUP_DEFAULTS.flushIntervalMs;
    this.#flushBytes = options.flushBytes ?? BACKUP_DEFAULTS.flushBytes;
    this.#segmentBytes = options.segmentBytes ?? BACKUP_DEFAULTS.segmentBytes;
  }

  get #chain(): ChainJson {
    const chains = this.#manifest?.chains ?? [];
    const chain = chains[chains.length - 1];
    if (chain === undefined) throw new Error('backup: no chain yet');
    return chain;
  }

  async run(): Promise<{ revision: bigint }> {
    await mkdir(this.#dir, { recursive: true });
    this.#manifest = await readManifest(this.#dir);
    await this.#removeStrayFiles();
    try {
      if (this.#manifest === undefined) await this.#newChain('start');
      else await this.#resume();
      while (!this.#signal.aborted) {
        const next = (this.#segment?.lastRevision ?? 0n) + 1n;
        try {
          await this.#follow(next);
        } catch (error: unknown) {
          if (!(error instanceof WatchCompactedError)) throw error;
          this.#emit({ type: 'compacted', fromRevision: next, compactRevision: error.compactRevision });
          await this.#seal();
          await this.#newChain('compacted');
        }
      }
      // A clean stop seals what it wrote (an empty segment stays open for the next run).
      if ((this.#segment?.records ?? 0) > 0) await this.#seal();
    } catch (error: unknown) {
      // Stopped while taking a snapshot: what is durable stays as it is (a clean stop).
      if (!(error instanceof CancelledError && this.#signal.aborted)) throw error;
    } finally {
      await this.#segment?.handle.close();
      this.#segment = undefined;
    }
    const revision = this.#lastDurable();
    this.#emit({ type: 'stopped', revision });
    return { revision };
  }

  /** The newest durable revision; 0n before the first snapshot. */
  #lastDurable(): bigint {
    if ((this.#manifest?.chains.length ?? 0) === 0) return 0n;
    const chain = this.#chain;
    const last = chain.segments[chain.segments.length - 1];
    return last === undefined ? BigInt(chain.snapshot.revision) : BigInt(last.lastRevision);
  }

  // ─────────────────────────── start, resume ───────────────────────────

  /** Removes our files the manifest does not name (an interrupted snapshot or segment creation). */
  async #removeStrayFiles(): Promise<void> {
    const named = new Set<string>([MANIFEST_FILE]);
    for (const chain of this.#manifest?.chains ?? []) {
      named.add(chain.snapshot.file);
      for (const segment of chain.segments) named.add(segment.file);
    }
    const entries = await readdir(this.#dir);
    if (this.#manifest === undefined) {
      const foreign = entries.filter((name) => !OWN_FILE.test(name));
      if (foreign.length > 0) throw new KvError('invalid-argument', { detail: `backup: ${this.#dir} is neither empty nor a kvd backup directory (found ${foreign.slice(0, 3).join(', ')})` });
    }
    let removed = false;
    for (const name of entries) {
      if (named.has(name) || !OWN_FILE.test(name)) continue;
      await rm(join(this.#dir, name), { force: true });
      removed = true;
    }
    if (removed) await syncPath(this.#dir);
  }

  /** Reopens the last chain's open segment (dropping a torn tail), or starts the next segment. */
  async #resume(): Promise<void> {
    const chain = this.#chain;
    const last = chain.segments[chain.segments.length - 1];
    if (last === undefined || last.state === 'sealed') {
      const from = last === undefined ? BigInt(chain.snapshot.revision) + 1n : BigInt(last.lastRevision) + 1n;
      await this.#startSegment(chain, from);
      this.#emit({ type: 'resumed', chain: chain.chain, fromRevision: from });
      return;
    }
    const path = join(this.#dir, last.file);
    const reader = await SegmentReader.open(path);
    let truncated: { file: string; droppedBytes: number; why: string } | undefined;
    try {
      while ((await reader.next()) !== undefined) { /* read to the end of the valid part */ }
      if (reader.header.chain !== chain.chain || reader.header.firstRevision !== BigInt(last.firstRevision)) {
        throw new KvError('corrupt', { detail: `backup: ${last.file} does not start where the manifest says` });
      }
      if (reader.lastRevision < BigInt(last.lastRevision)) {
        throw new KvError('corrupt', { detail: `backup: ${last.file} ends at revision ${reader.lastRevision} but revision ${last.lastRevision} was acknowledged (${reader.problem?.why ?? 'file too short'} at offset ${reader.problem?.offset ?? reader.validBytes})` });
      }
      if (reader.problem !== undefined) truncated = { file: last.file, droppedBytes: reader.sizeBytes - reader.validBytes, why: reader.problem.why };
    } finally {
      await reader.close();
    }
    if (reader.sealed && reader.problem === undefined) {
      // Sealed, and the crash came before the manifest said so: record it and go on in a new segment.
      last.lastRevision = reader.lastRevision.toString();
      last.state = 'sealed';
      await this.#saveManifest();
      await this.#startSegment(chain, reader.lastRevision + 1n);
      this.#emit({ type: 'resumed', chain: chain.chain, fromRevision: reader.lastRevision + 1n });
      return;
    }
    if (reader.sealed) throw new KvError('corrupt', { detail: `backup: ${last.file} has ${reader.problem?.why ?? 'bytes'} after its seal` });
    const handle = await open(path, 'r+');
    if (truncated !== undefined) {
      await handle.truncate(reader.validBytes);
      await handle.datasync();
    }
    this.#segment = { json: last, path, handle, size: reader.validBytes, crc: reader.crc, records: reader.records, lastRevision: reader.lastRevision };
    // Revisions durable in the segment but not yet acknowledged (a crash between the two) are acknowledged now.
    last.lastRevision = reader.lastRevision.toString();
    await this.#saveManifest();
    this.#emit({ type: 'resumed', chain: chain.chain, fromRevision: reader.lastRevision + 1n, truncated });
  }

  /** Takes a full snapshot and starts a chain after it. Retries (all endpoints, with backoff) until it succeeds or the backup is stopped. */
  async #newChain(reason: 'start' | 'compacted'): Promise<void> {
    const number = (this.#manifest?.chains.length ?? 0) === 0 ? 1 : this.#chain.chain + 1;
    const file = `snap-${String(number).padStart(4, '0')}.snap`;
    const path = join(this.#dir, file);
    let waitMs = SNAPSHOT_RETRY_MIN_MS;
    for (;;) {
      for (const endpoint of this.#client.endpoints) {
        if (this.#signal.aborted) throw new CancelledError('internal', { detail: 'backup stopped before its first snapshot' });
        this.#emit({ type: 'snapshot-started', chain: number, endpoint, reason });
        let saved;
        try {
          saved = await this.#client.saveSnapshot(endpoint, path, { signal: this.#signal, onProgress: (progress) => this.#emit({ type: 'snapshot-progress', progress }) });
        } catch (error: unknown) {
          if (this.#signal.aborted) throw error;
          this.#emit({ type: 'snapshot-failed', endpoint, error: error instanceof Error ? error.message : String(error) });
          continue;
        }
        const header = saved.header;
        if (header === undefined || header.revision <= 0n) {
          await rm(path, { force: true });
          throw new KvError('invalid-argument', { detail: `backup: ${endpoint} did not say which revision its snapshot holds (etcd does not; kvctl backup needs kvd)` });
        }
        const clusterId = hexId(header.clusterId);
        if (this.#manifest !== undefined && this.#manifest.clusterId !== clusterId) {
          await rm(path, { force: true });
          throw new KvError('invalid-argument', { detail: `backup: ${endpoint} belongs to cluster ${clusterId}, the backup in ${this.#dir} follows cluster ${this.#manifest.clusterId}` });
        }
        const chain: ChainJson = {
          chain: number, reason, segments: [],
          snapshot: { file, revision: header.revision.toString(), sizeBytes: saved.sizeBytes, memberId: hexId(header.memberId), takenAt: new Date().toISOString() },
        };
        this.#emit({ type: 'snapshot-saved', chain: number, revision: header.revision, sizeBytes: saved.sizeBytes, durationMs: saved.durationMs, file });
        this.#manifest ??= { format: MANIFEST_FORMAT, clusterId, chains: [] };
        this.#manifest.chains.push(chain);
        this.#knownLeases = new Set();
        await this.#startSegment(chain, header.revision + 1n);
        return;
      }
      await delay(waitMs, this.#signal);
      waitMs = Math.min(SNAPSHOT_RETRY_MAX_MS, waitMs * 2);
    }
  }

  /** Creates the chain's next segment (header fsynced, directory fsynced), then names it in the manifest. */
  async #startSegment(chain: ChainJson, firstRevision: bigint): Promise<void> {
    const seq = chain.segments.length + 1;
    const file = `seg-${String(chain.chain).padStart(4, '0')}-${String(seq).padStart(6, '0')}.kvseg`;
    const path = join(this.#dir, file);
    const header = encodeSegmentHeader({ chain: chain.chain, firstRevision });
    const handle = await open(path, 'w+');
    try {
      await handle.write(header, 0, header.length, 0);
      await handle.datasync();
      await syncPath(this.#dir);
    } catch (error: unknown) {
      await handle.close();
      throw error;
    }
    const json: SegmentJson = { file, firstRevision: firstRevision.toString(), lastRevision: (firstRevision - 1n).toString(), state: 'open' };
    chain.segments.push(json);
    this.#segment = { json, path, handle, size: header.length, crc: crc32Of(header), records: 0, lastRevision: firstRevision - 1n };
    await this.#saveManifest();
  }

  // ─────────────────────────── following ───────────────────────────

  /**
   * Watches every key from `from` and appends what arrives until stopped; throws
   * WatchCompactedError (after making what it has durable) when `from` is compacted.
   */
  async #follow(from: bigint): Promise<void> {
    const watcher = this.#client.watch('', { fromKey: true, startRevision: from, signal: this.#signal });
    let pending: BackupRevision[] = [];
    let pendingBytes = 0;
    let oldestPendingAt = 0;
    let expected = from;
    let next: Promise<WatchBatch | undefined> = watcher.nextBatch();
    try {
      for (;;) {
        const waitMs = pending.length === 0 ? undefined : Math.max(0, oldestPendingAt + this.#flushIntervalMs - Date.now());
        let outcome: { batch: WatchBatch | undefined } | 'flush';
        try {
          outcome = await raceTimeout(next, waitMs);
        } catch (error: unknown) {
          await this.#flush(pending);
          pending = [];
          if (error instanceof CancelledError && this.#signal.aborted) return;
          throw error;
        }
        if (outcome === 'flush') {
          await this.#flush(pending);
          pending = [];
          pendingBytes = 0;
          continue;
        }
        const batch = outcome.batch;
        if (batch === undefined) break; // closed
        next = watcher.nextBatch();
        this.#checkCluster(batch);
        for (const revision of groupByRevision(batch)) {
          if (revision.revision !== expected) {
            throw new KvError('internal', { detail: `backup: the watch delivered revision ${revision.revision} where ${expected} was expected` });
          }
          expected += 1n;
          if (pending.length === 0) oldestPendingAt = Date.now();
          pending.push(revision);
          pendingBytes += revisionBytes(revision);
        }
        if (pendingBytes >= this.#flushBytes) {
          await this.#flush(pending);
          pending = [];
          pendingBytes = 0;
        }
      }
      await this.#flush(pending);
    } finally {
      next.catch(() => undefined); // the watch is being closed: its last answer is not needed
      watcher.close();
    }
  }

  #checkCluster(batch: WatchBatch): void {
    const manifest = this.#manifest;
    if (manifest === undefined || batch.header.clusterId === 0n) return;
    const clusterId = hexId(batch.header.clusterId);
    if (clusterId !== manifest.clusterId) throw new KvError('invalid-argument', { detail: `backup: the watch is served by cluster ${clusterId}, the backup follows cluster ${manifest.clusterId}` });
  }

  /** Appends `revisions` (with the lease TTLs first seen in them) as one write, fdatasyncs, then acknowledges them. */
  async #flush(revisions: readonly BackupRevision[]): Promise<void> {
    const segment = this.#segment;
    if (revisions.length === 0 || segment === undefined) return;
    const leases = await this.#newLeases(revisions);
    const records: SegmentRecord[] = leases.length > 0 ? [{ type: 'leases', leases }, { type: 'revisions', revisions }] : [{ type: 'revisions', revisions }];
    const frames = records.map(encodeRecord);
    const bytes = Buffer.concat(frames);
    await segment.handle.write(bytes, 0, bytes.length, segment.size);
    await segment.handle.datasync();
    segment.size += bytes.length;
    for (const frame of frames) segment.crc = crc32Of(frame, segment.crc);
    segment.records += frames.length;
    segment.lastRevision = revisions[revisions.length - 1].revision;
    segment.json.lastRevision = segment.lastRevision.toString();
    await this.#saveManifest();
    this.#emit({ type: 'flushed', revision: segment.lastRevision, revisions: revisions.length, bytes: bytes.length, file: segment.json.file });
    if (segment.size >= this.#segmentBytes) {
      await this.#seal();
      await this.#startSegment(this.#chain, segment.lastRevision + 1n);
    }
  }

  /** Granted TTLs of leases this chain has not recorded yet (0 when the lease is already gone). */
  async #newLeases(revisions: readonly BackupRevision[]): Promise<LeaseTtl[]> {
    const fresh = new Set<bigint>();
    for (const revision of revisions) {
      for (const event of revision.events) if (event.lease !== 0n && !this.#knownLeases.has(event.lease)) fresh.add(event.lease);
    }
    const leases: LeaseTtl[] = [];
    for (const id of fresh) {
      let grantedTtlSeconds = 0;
      try {
        grantedTtlSeconds = Math.max(0, (await this.#client.leases.timeToLive(id)).grantedTtl);
      } catch (error: unknown) {
        void error; // unknown TTL (0): the restore then uses its default for this lease
      }
      leases.push({ id, grantedTtlSeconds });
      if (this.#knownLeases.size >= KNOWN_LEASES_MAX) this.#knownLeases = new Set();
      this.#knownLeases.add(id);
    }
    return leases;
  }

  /** Seals the open segment (seal record, fdatasync) and marks it sealed in the manifest. */
  async #seal(): Promise<void> {
    const segment = this.#segment;
    if (segment === undefined) return;
    const frame = encodeRecord({ type: 'seal', lastRevision: segment.lastRevision, records: segment.records, crc: segment.crc });
    await segment.handle.write(frame, 0, frame.length, segment.size);
    await segment.handle.datasync();
    await segment.handle.close();
    this.#segment = undefined;
    segment.json.state = 'sealed';
    await this.#saveManifest();
    this.#emit({ type: 'segment-sealed', file: segment.json.file, lastRevision: segment.lastRevision });
  }

  async #saveManifest(): Promise<void> {
    const manifest = this.#manifest;
    if (manifest === undefined) return;
    const path = join(this.#dir, MANIFEST_FILE);
    const temporary = `${path}.tmp`;
    const handle = await open(temporary, 'w');
    try {
      await handle.writeFile(`${JSON.stringify(manifest, null, 2)}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporary, path);
    await syncPath(this.#dir);
  }
}

/** Splits a watch response into revisions (a revision is never split across responses). */
function groupByRevision(batch: WatchBatch): BackupRevision[] {
  const out: Array<{ revision: bigint; events: BackupEvent[] }> = [];
  for (const event of batch.events) {
    let last = out[out.length - 1];
    if (last === undefined || last.revision !== event.revision) {
      last = { revision: event.revision, events: [] };
      out.push(last);
    }
    last.events.push(event.type === 'put'
      ? { type: 'put', key: event.kv.key, value: event.kv.value, createRevision: event.kv.createRevision, version: event.kv.version, lease: event.kv.lease }
      : { type: 'delete', key: event.kv.key, value: Buffer.alloc(0), createRevision: 0n, version: 0n, lease: 0n });
  }
  return out;
}

function revisionBytes(revision: BackupRevision): number {
  let bytes = 12;
  for (const event of revision.events) bytes += 33 + event.key.length + event.value.length;
  return bytes;
}

/** Resolves with the promise's value, or 'flush' after `ms` (never when `ms` is undefined). */
async function raceTimeout<T>(promise: Promise<T>, ms: number | undefined): Promise<{ batch: T } | 'flush'> {
  if (ms === undefined) return { batch: await promise };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'flush'>((resolve) => {
    timer = setTimeout(() => resolve('flush'), ms);
  });
  try {
    return await Promise.race([promise.then((batch) => ({ batch })), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function delay(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

// ─────────────────────────── reading a backup ───────────────────────────

/** One chain of a backup, as {@link describeBackup} finds it. */
export interface BackupChain {
  readonly chain: number;
  readonly reason: 'start' | 'compacted';
  readonly snapshotPath: string;
  readonly snapshotRevision: bigint;
  /** Last durable revision of the chain (= snapshotRevision when it has no increments). */
  readonly lastRevision: bigint;
}

/** A backup directory's chains: revisions restorable one by one are [snapshotRevision, lastRevision] of each. */
export interface BackupDescription {
  readonly clusterId: string;
  readonly chains: readonly BackupChain[];
}

/**
 * Reads a backup directory's manifest and finds each chain's last durable revision (reading the
 * open segment of the newest chain, which may hold more than the manifest acknowledges).
 * Throws KvError('invalid-argument') when `dir` holds no backup.
 */
export async function describeBackup(dir: string): Promise<BackupDescription> {
  const manifest = await readManifest(dir);
  if (manifest === undefined) throw new KvError('invalid-argument', { detail: `backup: ${dir} holds no ${MANIFEST_FILE}` });
  const chains: BackupChain[] = [];
  for (const chain of manifest.chains) {
    let lastRevision = BigInt(chain.snapshot.revision);
    const last = chain.segments[chain.segments.length - 1];
    if (last !== undefined) {
      lastRevision = BigInt(last.lastRevision);
      if (last.state === 'open') {
        const reader = await SegmentReader.open(join(dir, last.file));
        try {
          while ((await reader.next()) !== undefined) { /* to the end of the valid part */ }
          if (reader.lastRevision > lastRevision) lastRevision = reader.lastRevision;
        } finally {
          await reader.close();
        }
      }
    }
    chains.push({ chain: chain.chain, reason: chain.reason, snapshotPath: join(dir, chain.snapshot.file), snapshotRevision: BigInt(chain.snapshot.revision), lastRevision });
  }
  return { clusterId: manifest.clusterId, chains };
}

/** What a point-in-time restore needs from a backup. */
export interface BackupRestorePlan {
  readonly chain: number;
  readonly snapshotPath: string;
  readonly snapshotRevision: bigint;
  readonly toRevision: bigint;
  /**
   * The chain's revisions from snapshotRevision + 1 on, in order, checked as they are read
   * (frame CRCs, continuity, seals; an acknowledged revision missing throws KvError('corrupt')).
   * The consumer stops at toRevision.
   */
  readonly revisions: AsyncIterable<BackupRevision>;
  /** Granted TTLs of the leases the chain recorded, filled in as `revisions` is read. */
  readonly leaseTtls: Map<bigint, number>;
}

/**
 * Chooses the chain that can restore `toRevision` (default: the newest durable revision): the
 * newest chain whose snapshot is at or before it and whose increments reach it. Throws
 * KvError('invalid-argument') naming the restorable ranges when none can.
 */
export async function planRestore(dir: string, toRevision?: bigint): Promise<BackupRestorePlan> {
  const description = await describeBackup(dir);
  const manifest = await readManifest(dir);
  if (manifest === undefined || description.chains.length === 0) throw new KvError('invalid-argument', { detail: `backup: ${dir} holds no snapshot yet` });
  const newest = description.chains[description.chains.length - 1];
  const target = toRevision ?? newest.lastRevision;
  const chain = [...description.chains].reverse().find((candidate) => candidate.snapshotRevision <= target && target <= candidate.lastRevision);
  if (chain === undefined) {
    const ranges = description.chains.map((candidate) => `${candidate.snapshotRevision}..${candidate.lastRevision}`).join(', ');
    throw new KvError('invalid-argument', { detail: `backup: revision ${target} is not restorable from ${dir} (restorable revisions: ${ranges})` });
  }
  const chainJson = manifest.chains.find((candidate) => candidate.chain === chain.chain);
  if (chainJson === undefined) throw new KvError('corrupt', { detail: `backup: chain ${chain.chain} vanished from the manifest` });
  const leaseTtls = new Map<bigint, number>();
  return {
    chain: chain.chain, snapshotPath: chain.snapshotPath, snapshotRevision: chain.snapshotRevision, toRevision: target,
    revisions: readChain(dir, chainJson, leaseTtls), leaseTtls,
  };
}

/** Yields a chain's revisions in order, checking every segment (see {@link BackupRestorePlan.revisions}). */
async function* readChain(dir: string, chain: ChainJson, leaseTtls: Map<bigint, number>): AsyncGenerator<BackupRevision, void, undefined> {
  let expected = BigInt(chain.snapshot.revision) + 1n;
  for (const [position, segment] of chain.segments.entries()) {
    const newest = position === chain.segments.length - 1;
    const reader = await SegmentReader.open(join(dir, segment.file));
    try {
      if (reader.header.chain !== chain.chain || reader.header.firstRevision !== expected) {
        throw new KvError('corrupt', { detail: `backup: ${segment.file} starts at revision ${reader.header.firstRevision} of chain ${reader.header.chain}; expected ${expected} of chain ${chain.chain}` });
      }
      for (;;) {
        const record = await reader.next();
        if (record === undefined) break;
        if (record.type === 'leases') {
          for (const lease of record.leases) if (lease.grantedTtlSeconds > 0 || !leaseTtls.has(lease.id)) leaseTtls.set(lease.id, lease.grantedTtlSeconds);
        } else if (record.type === 'revisions') {
          for (const revision of record.revisions) yield revision;
        }
      }
      if (reader.lastRevision < BigInt(segment.lastRevision)) {
        throw new KvError('corrupt', { detail: `backup: ${segment.file} ends at revision ${reader.lastRevision} but revision ${segment.lastRevision} was acknowledged (${reader.problem?.why ?? 'file too short'})` });
      }
      // Only the newest segment may still be open (being written, or torn by a crash).
      if (!newest && (!reader.sealed || reader.problem !== undefined)) {
        throw new KvError('corrupt', { detail: `backup: ${segment.file} is not properly sealed (${reader.problem?.why ?? 'no seal'})` });
      }
      expected = reader.lastRevision + 1n;
    } finally {
      await reader.close();
    }
  }
}

/** Reads and checks the manifest; undefined when there is none. */
async function readManifest(dir: string): Promise<ManifestJson | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST_FILE), 'utf8');
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const manifest = JSON.parse(text) as ManifestJson;
  if (manifest.format !== MANIFEST_FORMAT || !Array.isArray(manifest.chains) || typeof manifest.clusterId !== 'string') {
    throw new KvError('invalid-argument', { detail: `backup: ${join(dir, MANIFEST_FILE)} is not a ${MANIFEST_FORMAT} manifest` });
  }
  return manifest;
}

async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function crc32Of(bytes: Buffer, seed = 0): number {
  return crc32(bytes, seed) >>> 0;
}

/** Whether `path` exists (for callers deciding between a snapshot file and a backup directory). */
export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (error: unknown) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

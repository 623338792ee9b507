/**
 * The MVCC key space (etcd's server/storage/mvcc) on LevelDB.
 *
 * - Backend: see codec.ts. Each `applyBatch` is ONE atomic LevelDB batch holding the records, the
 *   consistent index, the revision, compaction bookkeeping and the server's meta writes.
 * - Key index: every key's generations of revisions in memory (key-index.ts, history.ts); values
 *   stay in LevelDB. Leases of live keys are kept in a map (only keys with a lease cost memory).
 * - Apply is synchronous up to the final batch write (reads during apply use `getSync` through an
 *   overlay of the batch's own writes), so it is deterministic and cannot interleave with itself;
 *   batches are serialized.
 * - "head" state (index, head revision) runs ahead of the readable state while a batch is being
 *   applied; readers use the readable revision, and the index can answer for any revision. A
 *   batch's revisions become readable, and its writers are answered (ApplyOptions.onVisible), as
 *   soon as its records are encoded, while its LevelDB write is still in flight: reads of its
 *   records take them from the in-flight batch, so the write's trip through the thread pool (120-
 *   190 µs per batch here) is not in a write's answer. Batches are still written one at a time;
 *   the consistent index, watchers (listeners) and history scans (changes, hashes) follow the
 *   written revision (#writtenRevision).
 *   Invariant: every (key, revision) the index returns for a revision <= the readable revision has
 *   its record in LevelDB or in the batch in flight (compaction removes from the index before
 *   deleting records, apply writes records for revisions above the readable one), so a read that
 *   consults the index and then the in-flight batch and LevelDB in the same tick finds every
 *   record.
 * - Compaction: applying a compact request records the scheduled revision (reads below fail at
 *   once); a background task then prunes the index and deletes superseded records in steps of
 *   {@link COMPACTION_STEP_KEYS} keys, yielding between steps, and finally records completion.
 *   It resumes on open. It never goes past a revision pinned by an open range cursor: it
 *   compacts up to the oldest pin, then waits for the pin to go.
 * - Ranges are read in pages through a cursor (range-cursor.ts) that pins its revision, so a read
 *   spanning many ticks (a large Range, a RangeStream waiting for its client) sees one revision
 *   and never holds the whole result.
 * - Size accounting: {@link MvccStore.dbSizeBytes} is what the LevelDB files take on disk (the
 *   quota is checked against it, as etcd checks its bbolt file); {@link MvccStore.liveBytes}
 *   counts the key and value bytes of every record the store still holds (records, meta), kept
 *   up to date by apply and compaction: the difference is what defragmentation can give back.
 *   LevelDB's Snappy compression is off so that bytes on disk follow the bytes stored (etcd's
 *   bbolt does not compress either: the same --quota-backend-bytes holds the same data).
 * - Defragmentation ({@link MvccStore.defragment}) is LevelDB compaction of the backend's key
 *   space in slices of about {@link DEFRAG_SLICE_BYTES}, resting after each slice as long as it
 *   took, so writes, reads and watchers keep flowing while it runs (etcd's defrag blocks every
 *   request on the member).
 */
import { newLevel, type Level } from './level.js';
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as yieldToEventLoop, setTimeout as sleep } from 'node:timers/promises';
import { crc32 } from 'node:zlib';
import { assert } from '../../util/assert.js';
import { KvdError, errorMessage } from '../../util/errors.js';
import {
  FORMAT_VERSION, PREFIX_META, PREFIX_REVISION, PREFIX_SYSTEM, SYSTEM_KEYS, decodeNumber, decodeRecord, decodeRecordHeader,
  encodeNumber, encodePut, encodeTombstone, keyBytes, keyString, metaKey, parseMetaKey, parseRevisionKey, revisionBound, revisionKey, toKeyValue,
} from './codec.js';
import {
  allRevisions, compactHistory, latestState, recordPut, recordTombstone, replayRecord, stateAt, survivesCompaction, type KeyHistory, type KeyState,
} from './history.js';
import { KeyIndex } from './key-index.js';
import { prepareInstall, recoverInstall, type InstallRecovery, type PreparedRestore } from './install.js';
import { fetchLimit, finishRange, inKeyRange, resolveKeyRange, type KeyRange } from './range.js';
import { MvccRangeCursor, type RangeCursorOptions, type RangeCursorSource } from './range-cursor.js';
import { StoreDump, readDump, type DumpTail } from './dump.js';
import type {
  Compare, DeleteRangeRequest, DeleteRangeResponse, Event, KeyValue, LeaseId, PutRequest, PutResponse, RangeCursor, RangeRequest, RangeResponse,
  ResponseOp, Revision, TxnRequest, TxnResponse, WriteRequest, WriteResult,
} from './types.js';
import { DEFAULT_MAX_TXN_OPS, validateRange, validateWriteRequest } from './validate.js';

/** Keys pruned per compaction step (etcd: 1,000 per batch). */
export const COMPACTION_STEP_KEYS = 1000;
/**
 * Keys a large write (a DeleteRange, alone or in a txn; a txn of many operations; a lease
 * revoke) writes or reads per turn of the event loop (and operations a large batch hands LevelDB
 * per turn, {@link WRITE_SLICE_OPS}). Applying a million-key delete in one pass held the member's
 * event loop for 3 s: the leader's heartbeats stopped and its followers elected another leader
 * (bench/README.md, "2026-12-07, 18:39–"). Between slices reads go on at the revision before the
 * write (its records are at the next revision, which becomes readable only when the whole batch
 * does), and nothing else is applied.
 */
export const APPLY_SLICE_KEYS = 10_000;
/** Operations handed to a LevelDB batch per turn of the event loop (see APPLY_SLICE_KEYS). */
export const WRITE_SLICE_OPS = 65_536;
/** Records per LevelDB read in scans (open, changes, hash, export). */
const SCAN_BATCH_RECORDS = 1000;
/** Histories longer than this (in numbers) get their kept set computed once per hashKV. */
const LONG_HISTORY_NUMBERS = 64;
/** Bytes a scan iterator buffers per native round trip (classic-level's default is 16 KiB). */
const SCAN_HIGH_WATER_BYTES = 1 << 20;
/** Ranges of at most this many records read them synchronously (see #readRecords). */
const SYNC_READ_KEYS_MAX = 8;
/** Keys per getMany call in ranges. */
const GET_MANY_KEYS_MAX = 1000;
/** Most range cursors open at once (each pins a revision); more are refused with too-many-requests. */
export const RANGE_CURSORS_OPEN_MAX = 10_000;
/** Backend bytes compacted per defragmentation step (one LevelDB compactRange over a revision slice). */
export const DEFRAG_SLICE_BYTES = 16 * 1024 * 1024;
/** Most slices one defragmentation runs (larger stores get larger slices). */
const DEFRAG_SLICES_MAX = 1024;
/** Backend bytes per defragmentation sentinel (below LevelDB's 2 MiB table size: every table gets one). */
const DEFRAG_SENTINEL_BYTES = 1024 * 1024;
const DEFRAG_SENTINELS_PER_SLICE_MAX = 64;
/**
 * Rest after each defragmentation slice, as a multiple of the time the slice took (at least
 * DEFRAG_PAUSE_MS): a defragmentation compacts at most half of the time, so that on a busy
 * machine it slows the traffic beside it less (it takes about twice as long instead).
 */
const DEFRAG_REST_RATIO = 1;
const DEFRAG_PAUSE_MS = 5;

/** Structured events for the injected logger. */
export type StoreEvent =
  | { readonly type: 'opened'; readonly path: string; readonly keys: number; readonly records: number; readonly revision: Revision; readonly consistentIndex: number; readonly durationMs: number }
  | { readonly type: 'compaction-started'; readonly revision: Revision }
  | { readonly type: 'compaction-finished'; readonly revision: Revision; readonly removedRecords: number; readonly durationMs: number }
  | { readonly type: 'listener-failed'; readonly message: string }
  | { readonly type: 'defrag-started'; readonly slices: number; readonly dbSizeBytes: number }
  | { readonly type: 'defrag-finished'; readonly slices: number; readonly dbSizeBytesBefore: number; readonly dbSizeBytesAfter: number; readonly durationMs: number }
  | { readonly type: 'install-recovered'; readonly path: string; readonly actions: readonly InstallRecovery[] }
  | { readonly type: 'failed'; readonly message: string };

/** One committed Raft entry to apply; `request` null = an entry with no KV effect (advances the index). */
export interface ApplyEntry {
  readonly index: number;
  readonly request: WriteRequest | LeaseKeysDelete | null;
}

/**
 * A write only the server makes, for a lease revoke: deletes every key attached to `lease` at one
 * revision, in key order (etcd's lessor sorts them so that every member deletes alike), as a txn of
 * one delete per key would. Its result is a DeleteRange's (`deleted`, no prevKvs). The keys are never
 * turned into requests: a revoke of a million keys would otherwise build a million of them in one
 * pass.
 */
export interface LeaseKeysDelete {
  readonly type: 'delete-lease-keys';
  readonly lease: LeaseId;
}

/**
 * The result of one entry. Failures never change anything. `reason` tells a request that failed
 * (`rejected`, the error is etcd's) from entries that had nothing to do: `already-applied`
 * (index <= consistentIndex, a restart replay) and `empty-entry` (request null; the consistent
 * index still advanced).
 */
export type ApplyOutcome =
  | { readonly ok: true; readonly revision: Revision; readonly result: WriteResult; readonly events: readonly Event[] }
  | { readonly ok: false; readonly error: KvdError; readonly reason: 'rejected' | 'already-applied' | 'empty-entry'; readonly revision: Revision };

/** Options of {@link MvccStore.applyBatch}. */
export interface ApplyOptions {
  /** Whether a lease exists; when omitted, lease ids are not checked. */
  readonly leaseExists?: (id: LeaseId) => boolean;
  /** Meta writes committed in the same batch (null = delete). Ignored when every entry was already applied. */
  readonly meta?: ReadonlyMap<string, Uint8Array | null>;
  /** 'fsync' syncs the LevelDB log before resolving; default 'buffered' (the WAL is the durable copy). */
  readonly durability?: 'buffered' | 'fsync';
  /**
   * Called with the outcomes once the batch's revisions are readable, before its LevelDB write has
   * ended (the applier answers the writers here); at once when every entry was already applied.
   */
  readonly onVisible?: (outcomes: readonly ApplyOutcome[]) => void;
}

/** The changes of one new revision. Events carry no prevKv. */
export interface RevisionChanges {
  readonly revision: Revision;
  readonly events: readonly Event[];
}

/** What one defragmentation did. */
export interface DefragResult {
  readonly slices: number;
  readonly dbSizeBytesBefore: number;
  readonly dbSizeBytesAfter: number;
  readonly durationMs: number;
}

/** Options of {@link MvccStore.open}. */
export interface MvccStoreOptions {
  /** LevelDB directory (created if missing). */
  readonly path: string;
  /** etcd `--max-txn-ops`; default 128. */
  readonly maxTxnOps?: number;
  /**
   * Keys a write (a DeleteRange, a txn) writes or reads between turns of the event loop; default
   * {@link APPLY_SLICE_KEYS}. Tests set it small to run every large write in slices.
   */
  readonly applySliceKeys?: number;
  readonly logger?: (event: StoreEvent) => void;
}

type Db = Level;

/** Writes of the batch being applied. */
interface BatchContext {
  readonly ops: Array<{ type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer }>;
  /** Records written by this batch: `${revision}:${key}` → record. */
  readonly overlay: Map<string, Buffer>;
  readonly leaseExists: ((id: LeaseId) => boolean) | undefined;
  /** Keys written or read since the apply last yielded to the event loop (see APPLY_SLICE_KEYS). */
  work: number;
}

/** One request being applied: the revision it would create and its changes so far. */
interface WriteTxn {
  readonly revision: Revision;
  sub: number;
  readonly events: Event[];
}

/** The branches chosen by a txn's compares (evaluated up front on the pre-txn state, as etcd). */
interface TxnPlan {
  readonly succeeded: boolean;
  /** Plans of the nested txns of the chosen branch, in op order. */
  readonly nested: TxnPlan[];
}

const EMPTY = new Uint8Array(0);
const noop = (): void => undefined;

/** The MVCC store. See the module comment. */
export class MvccStore {
  readonly #db: Db;
  readonly #path: string;
  readonly #maxTxnOps: number;
  readonly #applySliceKeys: number;
  readonly #logger: (event: StoreEvent) => void;
  readonly #index = new KeyIndex();
  /** Head lease of each live key that has one. */
  readonly #leases = new Map<string, LeaseId>();
  /**
   * The other direction: the live keys attached to each lease. The store is the one owner of
   * key ↔ lease attachment (the lessor keeps only TTLs): a revoke deletes keysOfLease(id).
   * Invariant: #leaseKeys.get(l).has(k) iff #leases.get(k) === l.
   */
  readonly #leaseKeys = new Map<LeaseId, Set<string>>();
  readonly #meta = new Map<string, Uint8Array>();
  readonly #listeners = new Set<(batch: readonly RevisionChanges[]) => void>();
  /** Dumps opened and not yet closed; close() closes them. */
  readonly #dumps = new Set<StoreDump>();

  /** Invariant: #writtenRevision <= #revision <= #headRevision; all equal when no batch is being applied or written. */
  #revision: Revision = 1;
  /** The newest revision whose records are in LevelDB (and whose changes the listeners have). */
  #writtenRevision: Revision = 1;
  /**
   * The batch whose LevelDB write is in flight: its put records (the batch's overlay, by
   * `${revision}:${key}`; readers read no tombstone), read by readers until the write ends, and a
   * promise of that end (never rejects). At most one.
   */
  #inFlight: { readonly records: ReadonlyMap<string, Buffer>; readonly written: Promise<void> } | undefined;
  #headRevision: Revision = 1;
  #consistentIndex = 0;
  /** Reads below this fail (committed); the compaction scheduled last. */
  #compacted: Revision = 0;
  #headCompacted: Revision = 0;
  /** Compaction physically completed up to here (persisted). */
  #compactFinished: Revision = 0;

  #applyChain: Promise<unknown> = Promise.resolve();
  #compactionTask: Promise<void> | undefined;
  #compactionPauses = 0;
  #resumeCompaction: Array<() => void> = [];
  #compactionWaiters: Array<{ revision: Revision; resolve: () => void; reject: (error: unknown) => void }> = [];
  /**
   * Revisions pinned by open range cursors → number of cursors. Invariant: physical compaction
   * never goes past the oldest pinned revision; every pinned revision was >= #compacted when pinned.
   */
  readonly #pins = new Map<Revision, number>();
  #pinCount = 0;
  /** Compaction tasks waiting for a pin to go. */
  #pinWaiters: Array<() => void> = [];
  readonly #rangeSource: RangeCursorSource = {
    index: this.#index,
    readRecords: (keys) => this.#readRecords(keys),
    checkUsable: () => this.#checkUsable(),
  };
  #state: 'open' | 'closing' | 'closed' = 'open';
  /** Invariant: once set, never unset; every call but close() throws (the memory may be ahead of the disk). */
  #failure: unknown;
  #failureListeners: Array<(failure: 'disk-full' | 'failed', error: unknown) => void> = [];
  /**
   * Key + value bytes of every revision record and meta entry in LevelDB (what a defragmented
   * backend would hold, system keys aside). Invariant: updated in the same turn as the LevelDB
   * write that adds or deletes the records.
   */
  #liveBytes = 0;
  /** Key + value bytes handed to LevelDB so far (puts only; for size estimates between measurements). */
  #bytesWritten = 0;
  /** The defragmentation running, and the one queued behind it (callers that arrived meanwhile). */
  #defragRunning: Promise<DefragResult> | undefined;
  #defragQueued: Promise<DefragResult> | undefined;

  private constructor(db: Db, options: MvccStoreOptions) {
    this.#db = db;
    this.#path = options.path;
    this.#maxTxnOps = options.maxTxnOps ?? DEFAULT_MAX_TXN_OPS;
    this.#applySliceKeys = options.applySliceKeys ?? APPLY_SLICE_KEYS;
    assert(Number.isSafeInteger(this.#applySliceKeys) && this.#applySliceKeys > 0, 'applySliceKeys is a positive integer');
    this.#logger = options.logger ?? (() => {});
  }

  /**
   * Opens (creating if needed) the store at `path` and rebuilds the key index from LevelDB. First
   * repairs an interrupted snapshot install ({@link recoverRestore}), so an open never creates an
   * empty database where an install left the old one at `<path>.old`.
   */
  static async open(options: MvccStoreOptions): Promise<MvccStore> {
    const repaired = await recoverInstall(options.path);
    if (repaired.length > 0) options.logger?.({ type: 'install-recovered', path: options.path, actions: repaired });
    await mkdir(options.path, { recursive: true });
    const db: Db = newLevel(options.path);
    await db.open();
    const store = new MvccStore(db, options);
    try {
      await store.#load();
    } catch (error: unknown) {
      await db.close();
      throw error;
    }
    return store;
  }

  /** The newest committed revision (1 for an empty store). */
  get currentRevision(): Revision {
    return this.#revision;
  }

  /** Reads below this revision fail with 'compacted'; 0 when never compacted. */
  get compactedRevision(): Revision {
    return this.#compacted;
  }

  /** Last applied Raft index, persisted atomically with the data. */
  get consistentIndex(): number {
    return this.#consistentIndex;
  }

  /** Number of keys in the index (live or with history). */
  get indexedKeys(): number {
    return this.#index.size;
  }

  // ---------------------------------------------------------------------------------------------
  // Open

  async #load(): Promise<void> {
    const started = performance.now();
    const db = this.#db;
    const format = await db.get(SYSTEM_KEYS.format);
    if (format === undefined) await db.put(SYSTEM_KEYS.format, encodeNumber(FORMAT_VERSION));
    else assert(decodeNumber(format) === FORMAT_VERSION, 'known backend format');
    const readNumber = async (key: Buffer, fallback: number): Promise<number> => {
      const raw = await db.get(key);
      return raw === undefined ? fallback : decodeNumber(raw);
    };
    this.#consistentIndex = await readNumber(SYSTEM_KEYS.consistentIndex, 0);
    let revision = await readNumber(SYSTEM_KEYS.revision, 1);
    const scheduled = await readNumber(SYSTEM_KEYS.compactScheduled, 0);
    this.#compactFinished = await readNumber(SYSTEM_KEYS.compactFinished, 0);

    for await (const [key, value] of db.iterator({ gte: Buffer.from([PREFIX_META]), lt: Buffer.from([PREFIX_META + 1]) })) {
      this.#meta.set(parseMetaKey(key), new Uint8Array(value));
      this.#liveBytes += key.length + value.length;
    }

    let records = 0;
    const iterator = db.iterator({ gte: Buffer.from([PREFIX_REVISION]), lt: Buffer.from([PREFIX_REVISION + 1]), highWaterMarkBytes: SCAN_HIGH_WATER_BYTES });
    try {
      for (;;) {
        const entries = await iterator.nextv(SCAN_BATCH_RECORDS);
        if (entries.length === 0) break;
        for (const [levelKey, value] of entries) {
          records += 1;
          this.#liveBytes += levelKey.length + value.length;
          const { revision: recordRevision, key } = parseRevisionKey(levelKey);
          const header = decodeRecordHeader(value);
          const history = this.#index.get(key);
          if (header.kind === 'put') {
            const next = replayRecord(history, { revision: recordRevision, kind: 'put', created: header.created, version: header.version });
            if (next !== history) this.#index.set(key, next); // arrays are extended in place
            if (header.lease !== 0n) this.#attachLease(key, header.lease);
            else this.#detachLease(key);
          } else {
            const next = replayRecord(history, { revision: recordRevision, kind: 'tombstone' });
            if (next !== history) this.#index.set(key, next);
            this.#detachLease(key);
          }
          if (recordRevision > revision) revision = recordRevision;
        }
      }
    } finally {
      await iterator.close();
    }
    this.#revision = revision;
    this.#writtenRevision = revision;
    this.#headRevision = revision;
    this.#compacted = scheduled;
    this.#headCompacted = scheduled;
    this.#logger({
      type: 'opened', path: this.#path, keys: this.#index.size, records, revision, consistentIndex: this.#consistentIndex,
      durationMs: performance.now() - started,
    });
    this.#maybeStartCompaction();
  }

  // ---------------------------------------------------------------------------------------------
  // Reads

  /**
   * Range (etcd semantics: count ignores limit and filters; `more` when limit cut the result).
   * `revision` in the answer is the store revision the read saw. Throws KvdError 'empty-key',
   * 'future-revision', 'compacted'. Builds the whole result: callers serving clients use
   * {@link openRange} to hold a page at a time.
   */
  async range(request: RangeRequest): Promise<RangeResponse & { revision: Revision }> {
    const cursor = this.openRange(request);
    try {
      const kvs: KeyValue[] = [];
      for await (const page of cursor) for (const kv of page) kvs.push(kv);
      const { count, more } = cursor.summary();
      return { kvs, more, count, revision: cursor.revision };
    } finally {
      await cursor.return();
    }
  }

  /**
   * Opens a paged read of a Range at one revision (see range-cursor.ts): the request's revision,
   * or the current one when it asks for <= 0. Checks happen now, synchronously: throws KvdError
   * 'empty-key', 'future-revision', 'compacted', 'stopped', and 'too-many-requests' beyond
   * {@link RANGE_CURSORS_OPEN_MAX} open cursors. The cursor pins its revision until it ends or is
   * closed: the caller must call its `return()` (for-await does on break or throw; call it in a
   * finally).
   */
  openRange(request: RangeRequest, options: RangeCursorOptions = {}): RangeCursor {
    const { current, revision } = this.#checkRead(request);
    if (this.#pinCount >= RANGE_CURSORS_OPEN_MAX) throw new KvdError('too-many-requests');
    return new MvccRangeCursor({
      source: this.#rangeSource, request, range: resolveKeyRange(request.key, request.rangeEnd), revision: current, readRevision: revision,
      release: this.#pin(revision), options,
    });
  }

  /**
   * A Range of one key (empty range end), answered synchronously: the same checks and result as
   * {@link range}, without a cursor (one index lookup and at most one record, read with getSync;
   * nothing can change in between, so nothing is pinned). Returns undefined for any other range:
   * those go through {@link openRange}. The request's own fields (filters, limit, keys_only,
   * count_only) apply as in a Txn's Range (finishRange).
   */
  rangeKeyNow(request: RangeRequest): (RangeResponse & { revision: Revision }) | undefined {
    if (request.rangeEnd.length !== 0) return undefined;
    const { current, revision } = this.#checkRead(request);
    const { found, count } = this.#collect(request, revision);
    const kvs = found.map(({ key, state }) => {
      const record = this.#inFlight?.records.get(`${state.mod}:${key}`) ?? this.#db.getSync(revisionKey(state.mod, key));
      assert(record !== undefined, 'an indexed record exists in the backend');
      return toKeyValue(key, state.mod, record);
    });
    return { ...finishRange(request, kvs, count), revision: current };
  }

  /** A Range's checks: the store serves, the request is valid and its revision readable; the revision read and the current one. */
  #checkRead(request: RangeRequest): { current: Revision; revision: Revision } {
    this.#checkUsable();
    const invalid = validateRange(request);
    if (invalid !== undefined) throw invalid;
    const current = this.#revision;
    const revision = request.revision <= 0 ? current : request.revision;
    if (revision > current) throw new KvdError('future-revision');
    if (revision < this.#compacted) throw new KvdError('compacted');
    return { current, revision };
  }

  /** Pins `revision` against physical compaction; returns the (idempotent) release. */
  #pin(revision: Revision): () => void {
    assert(revision >= this.#compacted, 'a pinned revision is readable');
    this.#pins.set(revision, (this.#pins.get(revision) ?? 0) + 1);
    this.#pinCount += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#pins.get(revision) ?? 0) - 1;
      assert(left >= 0, 'pins balance');
      if (left === 0) this.#pins.delete(revision);
      else this.#pins.set(revision, left);
      this.#pinCount -= 1;
      for (const wake of this.#pinWaiters.splice(0)) wake();
    };
  }

  /** The oldest pinned revision, or +Infinity. */
  #oldestPin(): Revision {
    let oldest = Number.POSITIVE_INFINITY;
    for (const revision of this.#pins.keys()) if (revision < oldest) oldest = revision;
    return oldest;
  }

  /** Open range cursors (tests, metrics). */
  get openRangeCursors(): number {
    return this.#pinCount;
  }

  /** Index part of a range: keys alive at `revision`, up to etcd's fetch limit, and the count. */
  #collect(request: RangeRequest, revision: Revision): { found: Array<{ key: string; state: KeyState }>; count: number } {
    const range = resolveKeyRange(request.key, request.rangeEnd);
    const limit = request.countOnly ? -1 : fetchLimit(request);
    const found: Array<{ key: string; state: KeyState }> = [];
    let count = 0;
    this.#forEachAlive(range, revision, (key, state) => {
      count += 1;
      if (limit === 0 || (limit > 0 && found.length < limit)) found.push({ key, state });
      return true;
    });
    return { found, count };
  }

  #forEachAlive(range: KeyRange, revision: Revision, visit: (key: string, state: KeyState) => boolean): void {
    if (range.kind === 'single') {
      const history = this.#index.get(range.key);
      const state = history === undefined ? undefined : stateAt(history, revision);
      if (state !== undefined) visit(range.key, state);
      return;
    }
    if (range.end !== undefined && range.end <= range.start) return;
    this.#index.forEachInRange(range.start, range.end, (key, history) => {
      const state = stateAt(history, revision);
      return state === undefined ? true : visit(key, state);
    });
  }

  /**
   * Reads records; the first LevelDB read is issued synchronously (same tick as the caller's index
   * lookup). A few records are read synchronously (getSync: about 1.5 µs each from LevelDB's
   * caches against about 10 µs for an asynchronous get, measured here): records of a revision
   * never change, so a synchronous read sees the same bytes. Beyond SYNC_READ_KEYS_MAX the reads
   * go to the thread pool so that a large range cannot stall the event loop on disk reads.
   */
  async #readRecords(wanted: ReadonlyArray<{ readonly key: string; readonly state: KeyState }>): Promise<Array<Buffer | undefined>> {
    if (wanted.length === 0) return [];
    const inFlight = this.#inFlight?.records;
    if (inFlight === undefined) return this.#readStored(wanted.map(({ key, state }) => revisionKey(state.mod, key)));
    // Records of the batch being written come from it; every other one is in LevelDB already.
    const found = wanted.map(({ key, state }) => inFlight.get(`${state.mod}:${key}`));
    const missing: number[] = [];
    for (let i = 0; i < wanted.length; i++) if (found[i] === undefined) missing.push(i);
    if (missing.length === 0) return found;
    const read = await this.#readStored(missing.map((i) => revisionKey(wanted[i].state.mod, wanted[i].key)));
    missing.forEach((at, i) => { found[at] = read[i]; });
    return found;
  }

  /** Reads records from LevelDB (see #readRecords). */
  async #readStored(keys: Buffer[]): Promise<Array<Buffer | undefined>> {
    if (keys.length <= SYNC_READ_KEYS_MAX) return keys.map((key) => this.#db.getSync(key));
    if (keys.length <= GET_MANY_KEYS_MAX) return this.#db.getMany(keys);
    const snapshot = this.#db.snapshot();
    try {
      const out: Array<Buffer | undefined> = [];
      for (let i = 0; i < keys.length; i += GET_MANY_KEYS_MAX) {
        out.push(...(await this.#db.getMany(keys.slice(i, i + GET_MANY_KEYS_MAX), { snapshot })));
      }
      return out;
    } finally {
      await snapshot.close();
    }
  }

  /**
   * History for watch catch-up: events on keys in the range with fromRevision <= revision <=
   * toRevision (default: current), in revision order and, within a revision, in the order the
   * request made them (etcd's sub-revision order). Stops after about `limit` events, never
   * splitting a revision; `lastRevision` is the newest revision fully covered. Throws
   * KvdError('compacted') when fromRevision < compactedRevision (the compaction revision itself
   * stays readable, as for Range, so a watch may start exactly there, as in etcd).
   */
  async changes(options: {
    key: Uint8Array; rangeEnd: Uint8Array; fromRevision: Revision; toRevision?: Revision; limit: number; prevKv?: boolean;
  }): Promise<{ events: Event[]; lastRevision: Revision }> {
    this.#checkUsable();
    if (options.fromRevision < this.#compacted) throw new KvdError('compacted');
    // History is read from LevelDB: up to the written revision (the watch hub's head never passes it).
    const to = Math.min(options.toRevision ?? this.#writtenRevision, this.#writtenRevision);
    if (options.fromRevision > to) return { events: [], lastRevision: to };
    const range = resolveKeyRange(options.key, options.rangeEnd);
    const limit = Math.max(1, options.limit);
    const events: Event[] = [];
    let lastRevision = to;
    let pending: Array<{ sub: number; event: Event }> = [];
    let pendingRevision = -1;
    const flush = (): boolean => {
      if (pending.length === 0) return true;
      if (events.length > 0 && events.length + pending.length > limit) return false;
      pending.sort((a, b) => a.sub - b.sub);
      for (const item of pending) events.push(item.event);
      pending = [];
      return true;
    };
    const iterator = this.#db.iterator({ gte: revisionBound(options.fromRevision), lt: revisionBound(to + 1), highWaterMarkBytes: SCAN_HIGH_WATER_BYTES });
    try {
      scan: for (;;) {
        const entries = await iterator.nextv(SCAN_BATCH_RECORDS);
        if (entries.length === 0) break;
        for (const [levelKey, value] of entries) {
          const { revision, key } = parseRevisionKey(levelKey);
          if (revision !== pendingRevision) {
            if (!flush()) {
              lastRevision = pendingRevision - 1;
              pending = [];
              break scan;
            }
            if (events.length >= limit) {
              lastRevision = revision - 1;
              break scan;
            }
            pendingRevision = revision;
          }
          if (!inKeyRange(range, key)) continue;
          const record = decodeRecord(value);
          const event: Event = record.kind === 'put'
            ? { type: 'put', kv: { key: keyBytes(key), createRevision: record.created, modRevision: revision, version: record.version, value: record.value, lease: record.lease } }
            : { type: 'delete', kv: deletedKeyValue(keyBytes(key), revision) };
          pending.push({ sub: record.sub, event });
        }
      }
      if (pending.length > 0 && !flush()) lastRevision = pendingRevision - 1;
    } finally {
      await iterator.close();
    }
    if (options.prevKv === true && events.length > 0) await this.#fillPrevKvs(events);
    if (options.fromRevision < this.#compacted) throw new KvdError('compacted');
    return { events, lastRevision };
  }

  async #fillPrevKvs(events: Event[]): Promise<void> {
    const wanted: Array<{ at: number; key: string; state: KeyState }> = [];
    events.forEach((event, at) => {
      const key = keyString(event.kv.key);
      const history = this.#index.get(key);
      const state = history === undefined ? undefined : stateAt(history, event.kv.modRevision - 1);
      if (state !== undefined) wanted.push({ at, key, state });
    });
    const records = await this.#readRecords(wanted);
    wanted.forEach(({ at, key, state }, i) => {
      const record = records[i];
      // Compacted away meanwhile: the event goes without prevKv, as etcd's watch server does.
      if (record === undefined) return;
      events[at] = { ...events[at], prevKv: toKeyValue(key, state.mod, record) };
    });
  }

  /** Live keys with a lease, grouped by lease. */
  listLeasedKeys(): Map<LeaseId, Uint8Array[]> {
    const out = new Map<LeaseId, Uint8Array[]>();
    for (const lease of this.#leaseKeys.keys()) out.set(lease, this.keysOfLease(lease));
    return out;
  }

  /**
   * The live keys attached to `lease`, sorted bytewise (LeaseRevoke deletes them; LeaseTimeToLive
   * lists them). Reflects every applied write, including those of a batch being applied, so the
   * applier sees the keys earlier entries of the same batch attached.
   */
  keysOfLease(lease: LeaseId): Uint8Array[] {
    return this.#leaseKeysInOrder(lease).map(keyBytes);
  }

  /** The keys attached to `lease` in byte order (latin1 strings: the default sort compares code units, that is bytes). */
  #leaseKeysInOrder(lease: LeaseId): string[] {
    const keys = this.#leaseKeys.get(BigInt.asUintN(64, lease));
    return keys === undefined ? [] : [...keys].sort();
  }

  #attachLease(key: string, lease: LeaseId): void {
    const previous = this.#leases.get(key);
    if (previous === lease) return;
    if (previous !== undefined) this.#detachLease(key);
    this.#leases.set(key, lease);
    let keys = this.#leaseKeys.get(lease);
    if (keys === undefined) {
      keys = new Set();
      this.#leaseKeys.set(lease, keys);
    }
    keys.add(key);
  }

  #detachLease(key: string): void {
    const lease = this.#leases.get(key);
    if (lease === undefined) return;
    this.#leases.delete(key);
    const keys = this.#leaseKeys.get(lease);
    keys?.delete(key);
    if (keys !== undefined && keys.size === 0) this.#leaseKeys.delete(lease);
  }

  /** A meta value written through applyBatch (sync, from memory). */
  getMeta(name: string): Uint8Array | undefined {
    return this.#meta.get(name);
  }

  /** Every meta value whose name starts with `prefix`. */
  listMeta(prefix: string): Map<string, Uint8Array> {
    const out = new Map<string, Uint8Array>();
    for (const [name, value] of this.#meta) if (name.startsWith(prefix)) out.set(name, value);
    return out;
  }

  /**
   * CRC-32 over the backend records (key and value bytes, in backend order) of every revision in
   * (compactRevision, revision], plus the records at or below compactRevision that compaction
   * keeps (so the hash does not depend on how far physical compaction has progressed).
   * `revision` 0 = current. Same entries applied ⇒ same hash on every member.
   */
  async hashKV(revision: Revision): Promise<{ hash: number; compactRevision: Revision; hashRevision: Revision }> {
    this.#checkUsable();
    const current = this.#revision;
    const compacted = this.#compacted;
    const hashRevision = revision <= 0 ? current : revision;
    if (hashRevision > current) throw new KvdError('future-revision');
    if (hashRevision < compacted) throw new KvdError('compacted');
    while (this.#writtenRevision < hashRevision && this.#inFlight !== undefined) await this.#inFlight.written;
    this.#checkUsable();
    const hash = await this.#hashRecords({ hashRevision, compacted, seed: crc32(Buffer.from('key', 'latin1')) });
    return { hash, compactRevision: compacted, hashRevision };
  }

  /**
   * Hash of the whole backend at the current revision (etcd's Maintenance.Hash, "for testing
   * only"): CRC-32 over the meta entries and the replicated system keys (not the consistent index
   * or the physical compaction progress, which differ between members, as etcd ignores its
   * consistent index), then every record as {@link hashKV} hashes them. Members that applied the
   * same entries answer the same hash.
   */
  async hash(): Promise<{ hash: number; revision: Revision }> {
    this.#checkUsable();
    // The meta entries and the records read below are the written ones.
    while (this.#inFlight !== undefined) await this.#inFlight.written;
    this.#checkUsable();
    const current = this.#revision;
    let hash = crc32(Buffer.from('backend', 'latin1'));
    for (const name of [...this.#meta.keys()].sort()) {
      hash = crc32(metaKey(name), hash);
      hash = crc32(this.#meta.get(name) as Uint8Array, hash);
    }
    for (const [key, value] of [[SYSTEM_KEYS.format, FORMAT_VERSION], [SYSTEM_KEYS.revision, current], [SYSTEM_KEYS.compactScheduled, this.#compacted]] as const) {
      hash = crc32(key, hash);
      hash = crc32(encodeNumber(value), hash);
    }
    hash = await this.#hashRecords({ hashRevision: current, compacted: this.#compacted, seed: hash });
    return { hash, revision: current };
  }

  /** Continues `seed` over the records up to hashRevision, skipping those compaction at `compacted` drops. */
  async #hashRecords(options: { hashRevision: Revision; compacted: Revision; seed: number }): Promise<number> {
    const { hashRevision, compacted } = options;
    this.#compactionPauses += 1;
    /** Revisions kept at `compacted` of keys with long histories, so each is computed once. */
    const keptOfLongHistories = new Map<string, Set<number>>();
    let hash = options.seed;
    const iterator = this.#db.iterator({ gte: Buffer.from([PREFIX_REVISION]), lt: revisionBound(hashRevision + 1), highWaterMarkBytes: SCAN_HIGH_WATER_BYTES });
    try {
      for (;;) {
        const entries = await iterator.nextv(SCAN_BATCH_RECORDS);
        if (entries.length === 0) break;
        for (const [levelKey, value] of entries) {
          const { revision: recordRevision, key } = parseRevisionKey(levelKey);
          if (recordRevision <= compacted && !this.#survives(key, recordRevision, compacted, keptOfLongHistories)) continue;
          hash = crc32(levelKey, hash);
          hash = crc32(value, hash);
        }
      }
    } finally {
      await iterator.close();
      this.#compactionPauses -= 1;
      if (this.#compactionPauses === 0) for (const resume of this.#resumeCompaction.splice(0)) resume();
    }
    return hash >>> 0;
  }

  #survives(key: string, revision: Revision, compacted: Revision, cache: Map<string, Set<number>>): boolean {
    const history = this.#index.get(key);
    if (history === undefined) return false;
    if (typeof history === 'number' || history.length <= LONG_HISTORY_NUMBERS) return survivesCompaction(history, revision, compacted);
    let kept = cache.get(key);
    if (kept === undefined) {
      const after = compactHistory(history, compacted, []);
      kept = new Set(after === undefined ? [] : allRevisions(after));
      cache.set(key, kept);
    }
    return kept.has(revision);
  }

  // ---------------------------------------------------------------------------------------------
  // Apply

  /**
   * Registers a listener called synchronously after each batch is committed, with one item per
   * new revision in order (nothing for batches that made no revision). Returns an unsubscribe.
   */
  onApply(listener: (batch: readonly RevisionChanges[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Applies entries in order (later requests see earlier ones) and commits them, the consistent
   * index (= last entry's index) and `options.meta` in one atomic LevelDB batch. Entries with
   * index <= consistentIndex are skipped. Calls are serialized. A LevelDB write failure makes the
   * store unusable (the in-memory state would be ahead of the disk).
   */
  applyBatch(entries: readonly ApplyEntry[], options: ApplyOptions = {}): Promise<ApplyOutcome[]> {
    const run = this.#applyChain.then(() => this.#applyBatchNow(entries, options));
    this.#applyChain = run.catch(() => undefined); // failures are reported to this caller; the chain continues
    return run;
  }

  async #applyBatchNow(entries: readonly ApplyEntry[], options: ApplyOptions): Promise<ApplyOutcome[]> {
    this.#checkUsable();
    const context: BatchContext = { ops: [], overlay: new Map(), leaseExists: options.leaseExists, work: 0 };
    const outcomes: ApplyOutcome[] = [];
    const changes: RevisionChanges[] = [];
    let lastIndex = this.#consistentIndex;
    const compactedBefore = this.#headCompacted;
    for (const entry of entries) {
      if (entry.index <= this.#consistentIndex) {
        outcomes.push({ ok: false, error: new KvdError('invalid-argument', { detail: 'etcdserver: entry already applied' }), reason: 'already-applied', revision: this.#headRevision });
        continue;
      }
      assert(entry.index > lastIndex, 'entry indexes increase');
      lastIndex = entry.index;
      if (entry.request === null) {
        outcomes.push({ ok: false, error: new KvdError('invalid-argument', { detail: 'etcdserver: entry has no request' }), reason: 'empty-entry', revision: this.#headRevision });
        continue;
      }
      let outcome: ApplyOutcome;
      try {
        const applied = this.#applyRequest(context, entry.request);
        outcome = applied instanceof Promise ? await applied : applied;
      } catch (error: unknown) {
        // A bug (assertion) with the index half-updated: refuse all further use, then rethrow.
        this.#fail(error);
        throw error;
      }
      if (outcome.ok && outcome.events.length > 0) changes.push({ revision: outcome.revision, events: outcome.events });
      outcomes.push(outcome);
    }
    if (lastIndex === this.#consistentIndex) {
      options.onVisible?.(outcomes); // nothing to write: readable as it was
      return outcomes;
    }
    context.ops.push({ type: 'put', key: SYSTEM_KEYS.consistentIndex, value: encodeNumber(lastIndex) });
    context.ops.push({ type: 'put', key: SYSTEM_KEYS.revision, value: encodeNumber(this.#headRevision) });
    if (this.#headCompacted !== compactedBefore) context.ops.push({ type: 'put', key: SYSTEM_KEYS.compactScheduled, value: encodeNumber(this.#headCompacted) });
    for (const [name, value] of options.meta ?? []) {
      if (value === null) context.ops.push({ type: 'del', key: metaKey(name) });
      else context.ops.push({ type: 'put', key: metaKey(name), value: Buffer.from(value) });
    }
    const written = this.#write(context.ops, options.durability === 'fsync' ? 'fsync' : 'buffered');
    try {
      if (options.onVisible !== undefined) {
        this.#inFlight = { records: context.overlay, written: written.then(() => undefined, () => undefined) };
        this.#revision = this.#headRevision;
        this.#compacted = this.#headCompacted;
        options.onVisible(outcomes);
      }
      await written;
    } catch (error: unknown) {
      this.#fail(error);
      throw error;
    } finally {
      this.#inFlight = undefined;
    }
    this.#revision = this.#headRevision;
    this.#writtenRevision = this.#headRevision;
    this.#consistentIndex = lastIndex;
    this.#compacted = this.#headCompacted;
    for (const op of context.ops) if (op.type === 'put' && op.key[0] === PREFIX_REVISION) this.#liveBytes += op.key.length + op.value.length;
    for (const [name, value] of options.meta ?? []) {
      const keyLength = 1 + Buffer.byteLength(name, 'utf8');
      const previous = this.#meta.get(name);
      if (previous !== undefined) this.#liveBytes -= keyLength + previous.byteLength;
      if (value === null) this.#meta.delete(name);
      else {
        this.#meta.set(name, new Uint8Array(value));
        this.#liveBytes += keyLength + value.byteLength;
      }
    }
    if (changes.length > 0) {
      for (const listener of this.#listeners) {
        try {
          listener(changes);
        } catch (error: unknown) {
          this.#logger({ type: 'listener-failed', message: errorMessage(error) });
        }
      }
    }
    if (this.#headCompacted !== compactedBefore) this.#maybeStartCompaction();
    return outcomes;
  }

  /** One atomic LevelDB write (a chained batch: markedly faster than the array form). */
  async #write(ops: ReadonlyArray<{ type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer }>, durability: 'buffered' | 'fsync'): Promise<void> {
    const batch = this.#db.batch();
    let bytes = 0;
    for (let i = 0; i < ops.length; i++) {
      // A huge batch (a large DeleteRange) is handed over in slices; it is readable already (its
      // records are in the overlay, and a tombstone is never read), and nothing else is applied.
      if (i > 0 && i % WRITE_SLICE_OPS === 0) await yieldToEventLoop();
      const op = ops[i];
      if (op.type === 'put') {
        batch.put(op.key, op.value);
        bytes += op.key.length + op.value.length;
      } else batch.del(op.key);
    }
    await batch.write({ sync: durability === 'fsync' });
    this.#bytesWritten += bytes;
  }

  /** Makes the LevelDB log durable (everything committed so far survives an OS crash). */
  sync(): Promise<void> {
    this.#checkUsable();
    // Through the apply chain, so that no batch is in flight while the index is rewritten.
    const run = this.#applyChain.then(async () => {
      try {
        await this.#db.put(SYSTEM_KEYS.consistentIndex, encodeNumber(this.#consistentIndex), { sync: true });
      } catch (error: unknown) {
        // LevelDB's log may be left mid-record: no later write may follow on this handle.
        this.#fail(error);
        throw error;
      }
    });
    this.#applyChain = run.catch(() => undefined); // the failure is reported to this caller
    return run;
  }

  // ---------------------------------------------------------------------------------------------
  // Offline restore tooling (src/server/restore.ts). Never called on a serving member.

  /**
   * Point-in-time restore: appends revisions exactly as they were made elsewhere (a backup's
   * record of the source's watch events), so that the store then answers every read at those
   * revisions as the source did: same create and mod revisions, versions, leases, values, and
   * the same backend records (sub revision = the event's position in its revision), hence the
   * same HashKV. Each item must be the next revision (currentRevision + 1) with at least one
   * event, in the order the source made them; a put's createRevision and version must be what
   * this store's history gives (a check that the recording starts where this store is), a
   * delete must hit a live key, and no key may change twice in a revision. Any mismatch throws
   * KvdError('corrupt') before anything of the call is written. Commits all items in one
   * LevelDB batch (callers bound the batch); does not touch the consistent index; onApply
   * listeners see the revisions.
   */
  applyRecorded(revisions: readonly RevisionChanges[]): Promise<void> {
    const run = this.#applyChain.then(() => this.#applyRecordedNow(revisions));
    this.#applyChain = run.catch(() => undefined); // the failure is reported to this caller
    return run;
  }

  async #applyRecordedNow(revisions: readonly RevisionChanges[]): Promise<void> {
    this.#checkUsable();
    if (revisions.length === 0) return;
    const corrupt = (why: string): KvdError => new KvdError('corrupt', { detail: `etcdserver: corrupt backup: ${why}` });
    // Check everything first: nothing is staged unless the whole call is consistent.
    const planned = planRecorded(revisions, this.#headRevision, (key) => this.#index.get(key), corrupt);
    const ops: BatchContext['ops'] = [];
    for (const { revision, events } of revisions) {
      events.forEach((event, sub) => {
        const key = keyString(event.kv.key);
        const history = this.#index.get(key);
        if (event.type === 'put') {
          const { history: next } = recordPut(history, revision);
          this.#index.set(key, next);
          const lease = BigInt.asUintN(64, event.kv.lease);
          ops.push({ type: 'put', key: revisionKey(revision, key), value: encodePut({ sub, created: event.kv.createRevision, version: event.kv.version, lease, value: event.kv.value }) });
          if (lease !== 0n) this.#attachLease(key, lease);
          else this.#detachLease(key);
        } else {
          assert(history !== undefined, 'a planned delete hits an indexed key');
          this.#index.set(key, recordTombstone(history, revision));
          ops.push({ type: 'put', key: revisionKey(revision, key), value: encodeTombstone(sub) });
          this.#detachLease(key);
        }
      });
      this.#headRevision = revision;
    }
    assert(this.#headRevision === planned, 'recorded revisions applied as planned');
    ops.push({ type: 'put', key: SYSTEM_KEYS.revision, value: encodeNumber(this.#headRevision) });
    try {
      await this.#write(ops, 'buffered');
    } catch (error: unknown) {
      this.#fail(error);
      throw error;
    }
    this.#revision = this.#headRevision;
    this.#writtenRevision = this.#headRevision;
    const changes: RevisionChanges[] = revisions.map(({ revision, events }) => ({ revision, events: events.map((event) => (event.type === 'put' ? { type: 'put', kv: event.kv } : { type: 'delete', kv: deletedKeyValue(event.kv.key, revision) })) }));
    for (const listener of this.#listeners) {
      try {
        listener(changes);
      } catch (error: unknown) {
        this.#logger({ type: 'listener-failed', message: errorMessage(error) });
      }
    }
  }

  /**
   * Restore: makes this store the backend of a member of a NEW cluster. Sets the consistent
   * index to `consistentIndex` (which may be lower than the current one: the new cluster's log
   * starts over) and applies `meta` (null deletes), in one synced LevelDB batch. Records are
   * untouched. Only for offline tools: on a serving member it would make entries apply twice.
   */
  async rebaseForRestore(options: { consistentIndex: number; meta: ReadonlyMap<string, Uint8Array | null> }): Promise<void> {
    this.#checkUsable();
    assert(Number.isSafeInteger(options.consistentIndex) && options.consistentIndex >= 0, 'consistent index is a non-negative integer');
    const run = this.#applyChain.then(async () => {
      const ops: BatchContext['ops'] = [{ type: 'put', key: SYSTEM_KEYS.consistentIndex, value: encodeNumber(options.consistentIndex) }];
      ops.push({ type: 'put', key: SYSTEM_KEYS.revision, value: encodeNumber(this.#revision) });
      for (const [name, value] of options.meta) {
        if (value === null) ops.push({ type: 'del', key: metaKey(name) });
        else ops.push({ type: 'put', key: metaKey(name), value: Buffer.from(value) });
      }
      await this.#write(ops, 'fsync');
      this.#consistentIndex = options.consistentIndex;
      for (const [name, value] of options.meta) {
        if (value === null) this.#meta.delete(name);
        else this.#meta.set(name, new Uint8Array(value));
      }
    });
    this.#applyChain = run.catch(() => undefined); // the failure is reported to this caller
    return run;
  }

  /**
   * Applies one write. A put or a compaction is one synchronous pass. A DeleteRange or a txn runs as
   * steps ({@link #deleteRangeSteps}, {@link #txnSteps}) that stop once every #applySliceKeys keys
   * written or read: one that never stops is applied synchronously, a larger one returns a promise
   * and goes on after a turn of the event loop at each stop (see APPLY_SLICE_KEYS). The outcome
   * does not depend on what runs in between: reads (at the revision before this batch) and
   * compaction steps (only below the readable revision; what a txn reads or deletes is at or above
   * the scheduled compaction, checked first, and a victim is live, so its latest record stays).
   */
  #applyRequest(context: BatchContext, request: WriteRequest | LeaseKeysDelete): ApplyOutcome | Promise<ApplyOutcome> {
    if (request.type === 'delete-lease-keys') {
      const txn = this.#nextTxn();
      return this.#runSteps(txn, 'delete-range', this.#leaseKeysSteps(context, txn, request.lease));
    }
    const invalid = validateWriteRequest(request, { maxTxnOps: this.#maxTxnOps });
    if (invalid !== undefined) return this.#rejected(invalid);
    const txn = this.#nextTxn();
    switch (request.type) {
      case 'put': {
        const put = request.request;
        if (put.lease !== 0n && context.leaseExists !== undefined && !context.leaseExists(put.lease)) return this.#rejected(new KvdError('lease-not-found'));
        if ((put.ignoreValue || put.ignoreLease) && this.#latest(keyString(put.key), this.#headRevision) === undefined) {
          return this.#rejected(new KvdError('key-not-found'));
        }
        return this.#applied(txn, { type: 'put', response: this.#put(context, txn, put) });
      }
      case 'delete-range':
        return this.#runSteps(txn, 'delete-range', this.#deleteRangeSteps(context, txn, request.request));
      case 'txn': {
        const plan = this.#plan(context, request.request);
        const error = this.#checkTxn(context, request.request, plan);
        if (error !== undefined) return this.#rejected(error);
        return this.#runSteps(txn, 'txn', this.#txnSteps(context, txn, request.request, plan));
      }
      case 'compact': {
        const revision = request.request.revision;
        if (revision <= this.#headCompacted) return this.#rejected(new KvdError('compacted'));
        if (revision > this.#headRevision) return this.#rejected(new KvdError('future-revision'));
        this.#headCompacted = revision;
        return this.#applied(txn, { type: 'compact', response: {} });
      }
    }
  }

  /** Runs a write's steps: synchronously when they never stop, else across turns of the event loop. */
  #runSteps(txn: WriteTxn, type: 'delete-range' | 'txn', steps: Generator<void, DeleteRangeResponse | TxnResponse>): ApplyOutcome | Promise<ApplyOutcome> {
    const first = steps.next();
    if (first.done === true) return this.#applied(txn, { type, response: first.value } as WriteResult);
    return this.#runStepsSliced(txn, type, steps);
  }

  async #runStepsSliced(txn: WriteTxn, type: 'delete-range' | 'txn', steps: Generator<void, DeleteRangeResponse | TxnResponse>): Promise<ApplyOutcome> {
    for (;;) {
      await this.#yieldInApply();
      const next = steps.next();
      if (next.done === true) return this.#applied(txn, { type, response: next.value } as WriteResult);
    }
  }

  /** Counts `keys` written or read; true when a slice is full (the steps stop there once). */
  #sliceFull(context: BatchContext, keys: number): boolean {
    context.work += keys;
    if (context.work < this.#applySliceKeys) return false;
    context.work = 0;
    return true;
  }

  /** The write that creates the next revision (if it changes anything). */
  #nextTxn(): WriteTxn {
    return { revision: this.#headRevision + 1, sub: 0, events: [] };
  }

  /** A write done: the head moves to its revision if it changed anything. */
  #applied(txn: WriteTxn, result: WriteResult): ApplyOutcome {
    if (txn.sub > 0) this.#headRevision = txn.revision;
    return { ok: true, revision: this.#headRevision, result, events: txn.events };
  }

  #rejected(error: KvdError): ApplyOutcome {
    return { ok: false, error, reason: 'rejected', revision: this.#headRevision };
  }

  /** The revision a read inside `txn` sees: its own writes once it made any (etcd storeTxnWrite.Range). */
  #readRevision(txn: WriteTxn): Revision {
    return txn.sub > 0 ? txn.revision : this.#headRevision;
  }

  /** Head state of a key at `revision` (during apply). */
  #latest(key: string, revision: Revision): KeyState | undefined {
    const history = this.#index.get(key);
    return history === undefined ? undefined : stateAt(history, revision);
  }

  /** Reads a record during apply: this batch's writes first, then LevelDB synchronously. */
  #recordSync(context: BatchContext, key: string, revision: Revision): Buffer {
    const pending = context.overlay.get(`${revision}:${key}`);
    if (pending !== undefined) return pending;
    const stored = this.#db.getSync(revisionKey(revision, key));
    assert(stored !== undefined, 'an indexed record exists in the backend');
    return stored;
  }

  #kvSync(context: BatchContext, key: string, state: KeyState): KeyValue {
    return toKeyValue(key, state.mod, this.#recordSync(context, key, state.mod));
  }

  #stage(context: BatchContext, key: string, revision: Revision, record: Buffer): void {
    context.ops.push({ type: 'put', key: revisionKey(revision, key), value: record });
    context.overlay.set(`${revision}:${key}`, record);
  }

  #put(context: BatchContext, txn: WriteTxn, request: PutRequest): PutResponse {
    const key = keyString(request.key);
    const history = this.#index.get(key);
    const before = history === undefined ? undefined : stateAt(history, this.#readRevision(txn));
    const previous = before !== undefined && (request.prevKv || request.ignoreValue || request.ignoreLease) ? this.#kvSync(context, key, before) : undefined;
    const value = request.ignoreValue ? (previous?.value ?? EMPTY) : request.value;
    // Stored as u64 (codec.ts); normalize so events and later reads report the same value.
    const lease = BigInt.asUintN(64, request.ignoreLease ? (previous?.lease ?? 0n) : request.lease);
    assert(history === undefined || latestState(history)?.mod !== txn.revision, 'a key is written once per revision');
    const { history: next, state } = recordPut(history, txn.revision);
    const record = encodePut({ sub: txn.sub, created: state.created, version: state.version, lease, value });
    this.#stage(context, key, txn.revision, record);
    this.#index.set(key, next);
    if (lease !== 0n) this.#attachLease(key, lease);
    else this.#detachLease(key);
    txn.sub += 1;
    txn.events.push({
      type: 'put',
      // Requests are immutable once applied (house rule), so events share their bytes.
      kv: { key: request.key, createRevision: state.created, modRevision: txn.revision, version: state.version, value, lease },
    });
    return request.prevKv && previous !== undefined ? { prevKv: previous } : {};
  }

  /**
   * One turn of the event loop in the middle of an apply; then throws the store's failure if one
   * came meanwhile (a compaction write that failed), so that the apply stops (its caller fails the
   * store). A close waits for the apply (close() awaits the apply chain), so it is not one.
   */
  async #yieldInApply(): Promise<void> {
    await yieldToEventLoop();
    if (this.#failure !== undefined) this.#checkUsable();
  }

  /** The keys a DeleteRange deletes, with their live state, in key order (one synchronous pass). */
  #victims(txn: WriteTxn, request: DeleteRangeRequest): Array<{ key: string; state: KeyState }> {
    const victims: Array<{ key: string; state: KeyState }> = [];
    this.#forEachAlive(resolveKeyRange(request.key, request.rangeEnd), this.#readRevision(txn), (key, state) => {
      victims.push({ key, state });
      return true;
    });
    return victims;
  }

  /** A DeleteRange's steps (see {@link #applyRequest}): the keys are chosen in one pass first. */
  *#deleteRangeSteps(context: BatchContext, txn: WriteTxn, request: DeleteRangeRequest): Generator<void, DeleteRangeResponse> {
    const victims = this.#victims(txn, request);
    const prevKvs: KeyValue[] = [];
    if (request.prevKv) {
      for (const { key, state } of victims) {
        prevKvs.push(this.#kvSync(context, key, state));
        if (this.#sliceFull(context, 1)) yield;
      }
    }
    yield* this.#tombstoneSteps(context, txn, victims);
    return { deleted: victims.length, prevKvs };
  }

  /** A {@link LeaseKeysDelete}'s steps (see {@link #applyRequest}): the keys are chosen first, as a DeleteRange's. */
  *#leaseKeysSteps(context: BatchContext, txn: WriteTxn, lease: LeaseId): Generator<void, DeleteRangeResponse> {
    const revision = this.#readRevision(txn);
    const victims = this.#leaseKeysInOrder(lease).map((key) => {
      const state = this.#latest(key, revision);
      assert(state !== undefined, 'a key attached to a lease is live');
      return { key, state };
    });
    yield* this.#tombstoneSteps(context, txn, victims);
    return { deleted: victims.length, prevKvs: [] };
  }

  /**
   * Deletes live keys in `txn`, stopping at each full slice: a tombstone record, the index, the
   * lease and an event each.
   */
  *#tombstoneSteps(context: BatchContext, txn: WriteTxn, victims: ReadonlyArray<{ readonly key: string; readonly state: KeyState }>): Generator<void, void> {
    for (const { key, state } of victims) {
      assert(state.mod !== txn.revision, 'a key is written once per revision');
      const history = this.#index.get(key);
      assert(history !== undefined, 'a live key is indexed');
      // Only into the batch, not the overlay: #recordSync reads the record of a live state, and a
      // tombstone never is one (a key is written once per revision). Saves a string key and a map
      // entry per deleted key (a quarter of applying a 100,000-key DeleteRange).
      context.ops.push({ type: 'put', key: revisionKey(txn.revision, key), value: encodeTombstone(txn.sub) });
      this.#index.set(key, recordTombstone(history, txn.revision));
      this.#detachLease(key);
      txn.sub += 1;
      txn.events.push({ type: 'delete', kv: deletedKeyValue(keyBytes(key), txn.revision) });
      if (this.#sliceFull(context, 1)) yield;
    }
  }

  /** Evaluates the compares of a txn and of the nested txns on the chosen path (etcd compareToPath). */
  #plan(context: BatchContext, request: TxnRequest): TxnPlan {
    const succeeded = request.compare.every((compare) => this.#compareHolds(context, compare));
    const nested: TxnPlan[] = [];
    for (const op of succeeded ? request.success : request.failure) {
      if (op.type === 'txn') nested.push(this.#plan(context, op.request));
    }
    return { succeeded, nested };
  }

  /** etcd applyCompare: every key in the range must satisfy it; no key ⇒ a zero-valued KV (value compares fail). */
  #compareHolds(context: BatchContext, compare: Compare): boolean {
    const range = resolveKeyRange(compare.key, compare.rangeEnd);
    let any = false;
    let holds = true;
    this.#forEachAlive(range, this.#headRevision, (key, state) => {
      any = true;
      holds = compareMatches(compare, () => this.#compareSubject(context, compare, key, state));
      return holds;
    });
    if (!any) {
      if (compare.target === 'value') return false;
      return compareMatches(compare, () => ({ value: EMPTY, version: 0, createRevision: 0, modRevision: 0, lease: 0n }));
    }
    return holds;
  }

  #compareSubject(context: BatchContext, compare: Compare, key: string, state: KeyState): CompareSubject {
    const value = compare.target === 'value' ? this.#kvSync(context, key, state).value : EMPTY;
    return { value, version: state.version, createRevision: state.created, modRevision: state.mod, lease: this.#leases.get(key) ?? 0n };
  }

  /**
   * etcd checkTxn: revision checks of ranges and preconditions of puts on the chosen path, on the
   * pre-txn state. Also refuses (duplicate-key) a delete-range on the path that would delete a key
   * put earlier in the same txn: etcd's static interval check lets that through for sibling nested
   * txns (`txn{txn{put k}, txn{delete k}}`) and writes k twice in one revision, which this backend
   * (one record per key and revision) cannot represent.
   */
  #checkTxn(context: BatchContext, request: TxnRequest, plan: TxnPlan, puts: string[] = []): KvdError | undefined {
    let nested = 0;
    for (const op of plan.succeeded ? request.success : request.failure) {
      switch (op.type) {
        case 'range': {
          const revision = op.request.revision;
          if (revision === 0) break;
          if (revision > this.#headRevision) return new KvdError('future-revision');
          if (revision < (this.#headCompacted > 0 ? this.#headCompacted : -1)) return new KvdError('compacted');
          break;
        }
        case 'put': {
          const put = op.request;
          if ((put.ignoreValue || put.ignoreLease) && this.#latest(keyString(put.key), this.#headRevision) === undefined) return new KvdError('key-not-found');
          if (put.lease !== 0n && context.leaseExists !== undefined && !context.leaseExists(put.lease)) return new KvdError('lease-not-found');
          puts.push(keyString(put.key));
          break;
        }
        case 'txn': {
          const error = this.#checkTxn(context, op.request, plan.nested[nested], puts);
          nested += 1;
          if (error !== undefined) return error;
          break;
        }
        case 'delete-range': {
          if (puts.length === 0) break;
          const range = resolveKeyRange(op.request.key, op.request.rangeEnd);
          if (puts.some((key) => inKeyRange(range, key))) return new KvdError('duplicate-key');
          break;
        }
      }
    }
    return undefined;
  }

  /** A txn's steps on the path its plan chose (see {@link #applyRequest}); each operation counts a key at least. */
  *#txnSteps(context: BatchContext, txn: WriteTxn, request: TxnRequest, plan: TxnPlan): Generator<void, TxnResponse> {
    const responses: ResponseOp[] = [];
    let nested = 0;
    for (const op of plan.succeeded ? request.success : request.failure) {
      switch (op.type) {
        case 'range': {
          const response = this.#rangeSync(context, txn, op.request);
          responses.push({ type: 'range', response });
          if (this.#sliceFull(context, 1 + response.kvs.length)) yield;
          break;
        }
        case 'put':
          responses.push({ type: 'put', response: this.#put(context, txn, op.request) });
          if (this.#sliceFull(context, 1)) yield;
          break;
        case 'delete-range':
          responses.push({ type: 'delete-range', response: yield* this.#deleteRangeSteps(context, txn, op.request) });
          if (this.#sliceFull(context, 1)) yield;
          break;
        case 'txn':
          responses.push({ type: 'txn', response: yield* this.#txnSteps(context, txn, op.request, plan.nested[nested++]) });
          break;
      }
    }
    return { succeeded: plan.succeeded, responses };
  }

  #rangeSync(context: BatchContext, txn: WriteTxn, request: RangeRequest): RangeResponse {
    const current = this.#readRevision(txn);
    const revision = request.revision <= 0 ? current : request.revision;
    const { found, count } = this.#collect(request, revision);
    if (request.countOnly) return { kvs: [], more: false, count };
    return finishRange(request, found.map(({ key, state }) => this.#kvSync(context, key, state)), count);
  }

  // ---------------------------------------------------------------------------------------------
  // Compaction

  /** Resolves once compaction up to `revision` has physically completed (etcd `physical: true`). */
  waitCompacted(revision: Revision): Promise<void> {
    if (this.#compactFinished >= revision) return Promise.resolve();
    return new Promise((resolve, reject) => this.#compactionWaiters.push({ revision, resolve, reject }));
  }

  #maybeStartCompaction(): void {
    if (this.#compactionTask !== undefined || this.#state !== 'open' || this.#compacted <= this.#compactFinished) return;
    // Detached on purpose: compaction runs in the background; close() awaits it and failures are
    // recorded as the store's failure.
    this.#compactionTask = this.#runCompaction().then(
      () => {
        this.#compactionTask = undefined;
        this.#maybeStartCompaction();
      },
      (error: unknown) => {
        this.#compactionTask = undefined;
        this.#fail(error);
      },
    );
  }

  async #runCompaction(): Promise<void> {
    while (this.#state === 'open' && this.#compacted > this.#compactFinished) {
      const target = Math.min(this.#compacted, this.#oldestPin());
      if (target <= this.#compactFinished) {
        // Everything up to the scheduled revision that is not pinned is done: wait for a cursor to close.
        await new Promise<void>((resolve) => this.#pinWaiters.push(resolve));
        continue;
      }
      const started = performance.now();
      this.#logger({ type: 'compaction-started', revision: target });
      let removedRecords = 0;
      let cursor: string | undefined;
      for (;;) {
        if (this.#state !== 'open') return;
        if (this.#compactionPauses > 0) await new Promise<void>((resolve) => this.#resumeCompaction.push(resolve));
        const step = this.#index.entriesAfter(cursor, COMPACTION_STEP_KEYS);
        if (step.length === 0) break;
        cursor = step[step.length - 1][0];
        const deletes: Array<{ type: 'del'; key: Buffer }> = [];
        for (const [key, history] of step) {
          if (typeof history === 'number') continue;
          const removed: number[] = [];
          const next = compactHistory(history, target, removed);
          if (removed.length === 0) continue;
          if (next === undefined) this.#index.delete(key);
          else this.#index.set(key, next);
          for (const revision of removed) deletes.push({ type: 'del', key: revisionKey(revision, key) });
        }
        if (deletes.length > 0) {
          const removedBytes = await this.#recordBytes(deletes.map((op) => op.key));
          await this.#write(deletes, 'buffered');
          this.#liveBytes -= removedBytes;
        }
        removedRecords += deletes.length;
        await yieldToEventLoop();
      }
      await this.#db.put(SYSTEM_KEYS.compactFinished, encodeNumber(target));
      this.#compactFinished = target;
      this.#logger({ type: 'compaction-finished', revision: target, removedRecords, durationMs: performance.now() - started });
      const ready = this.#compactionWaiters.filter((waiter) => waiter.revision <= target);
      this.#compactionWaiters = this.#compactionWaiters.filter((waiter) => waiter.revision > target);
      for (const waiter of ready) waiter.resolve();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Snapshots and maintenance

  /**
   * A consistent dump of the whole backend (dump.ts: records, meta, consistent index, compaction
   * state) at this instant: the LevelDB snapshot is taken synchronously by this call, so the
   * dump holds exactly the batches committed before it; applies go on meanwhile and are not
   * in it. Physical compaction may run meanwhile too (the snapshot keeps what it deletes). The
   * caller reads it once (its iterator closes it) or closes it; {@link close} closes dumps
   * still open.
   */
  openDump(): Promise<StoreDump> {
    this.#checkUsable();
    let dump: StoreDump | undefined;
    const opened = StoreDump.open(this.#db, () => {
      if (dump !== undefined) this.#dumps.delete(dump);
    });
    return opened.then((value) => {
      dump = value;
      this.#dumps.add(value);
      return value;
    });
  }

  /** Open dumps (tests, metrics). */
  get openDumps(): number {
    return this.#dumps.size;
  }

  /**
   * A fresh dump streamed in chunks of about SNAPSHOT_CHUNK_BYTES (what the snapshotter
   * sends a lagging peer). The snapshot is taken at the first `next()`.
   */
  async *exportSnapshot(): AsyncIterable<Uint8Array> {
    const dump = await this.openDump();
    yield* dump.chunks();
  }

  /**
   * Step 1 of installing a snapshot (see install.ts for the protocol and its crash analysis):
   * writes the dump from {@link exportSnapshot} into `<path>.restore`, verifies its trailer (and,
   * with `tail: 'snapshot-file'`, accepts a snapshot file's padding and SHA-256 after it, which
   * {@link checkSnapshotFile} verifies) and
   * fsyncs every file and the directory. `<path>` is not touched, so the store there may still be
   * open and serving. Throws KvdError('corrupt') on a malformed dump; on any failure the temporary
   * database is closed and removed (no descriptor or directory is left behind).
   */
  static prepareRestore(options: { path: string; chunks: AsyncIterable<Uint8Array>; tail?: DumpTail }): Promise<PreparedRestore> {
    return prepareInstall({ path: options.path, chunks: options.chunks, writeDump: (chunks, write) => readDump(chunks, write, { tail: options.tail }) });
  }

  /**
   * Repairs an install interrupted by a crash (see install.ts): afterwards `<path>` is the old or
   * the new database, complete, and no `<path>.restore` / `<path>.old` is left. {@link open} calls
   * it first; the member may call it earlier at start-up to log what was repaired. The store must
   * be closed.
   */
  static recoverRestore(path: string): Promise<InstallRecovery[]> {
    return recoverInstall(path);
  }

  /**
   * prepareRestore + switch + removeOld in one call, for callers without a WAL marker to write in
   * between (tools, tests). The member must use the three steps so that its marker comes after
   * the switch is durable and before the old database is removed.
   */
  static async restoreSnapshot(options: { path: string; chunks: AsyncIterable<Uint8Array>; tail?: DumpTail }): Promise<void> {
    const prepared = await MvccStore.prepareRestore(options);
    await prepared.switch();
    await prepared.removeOld();
  }

  /** Key + value bytes of the records of `keys` (absent ones count zero), read without filling the cache. */
  async #recordBytes(keys: Buffer[]): Promise<number> {
    let total = 0;
    for (let i = 0; i < keys.length; i += GET_MANY_KEYS_MAX) {
      const slice = keys.slice(i, i + GET_MANY_KEYS_MAX);
      const values = await this.#db.getMany(slice, { fillCache: false });
      values.forEach((value, at) => {
        if (value !== undefined) total += slice[at].length + value.length;
      });
    }
    return total;
  }

  /**
   * Key + value bytes of every record and meta entry the store holds: the backend's size once
   * defragmented (LevelDB's own overhead aside). Maintenance.Status reports it as dbSizeInUse.
   */
  get liveBytes(): number {
    return this.#liveBytes;
  }

  /** Key + value bytes written to LevelDB since open (monotonic): size growth since a measurement. */
  get bytesWritten(): number {
    return this.#bytesWritten;
  }

  /** Bytes of the LevelDB files on disk. */
  async dbSizeBytes(): Promise<number> {
    let total = 0;
    for (const name of await readdir(this.#path)) {
      try {
        total += (await stat(join(this.#path, name))).size;
      } catch (error: unknown) {
        // Files come and go while LevelDB compacts; a vanished file counts as zero.
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
    }
    return total;
  }

  /**
   * Defragments the backend (etcd's defrag): LevelDB compaction of the whole key space, which
   * drops the records physical compaction deleted and gives their space back. Runs in slices of
   * about {@link DEFRAG_SLICE_BYTES} (revision ranges sized with LevelDB's approximateSize), with
   * a pause between slices, so it never holds up writes, reads or watchers for long. A call made
   * while one runs waits for that one and then runs once more (the records it must reclaim may
   * have been deleted after the running one passed them); callers arriving meanwhile share it.
   */
  defragment(): Promise<DefragResult> {
    this.#checkUsable();
    if (this.#defragRunning === undefined) return this.#startDefrag();
    this.#defragQueued ??= this.#defragRunning.then(noop, noop).then(() => {
      this.#defragQueued = undefined;
      return this.#startDefrag();
    });
    return this.#defragQueued;
  }

  #startDefrag(): Promise<DefragResult> {
    const run = this.#defragmentNow().finally(() => {
      if (this.#defragRunning === run) this.#defragRunning = undefined;
    });
    this.#defragRunning = run;
    return run;
  }

  async #defragmentNow(): Promise<DefragResult> {
    this.#checkUsable();
    const started = performance.now();
    const dbSizeBytesBefore = await this.dbSizeBytes();
    const slices = await this.#defragSlices();
    this.#logger({ type: 'defrag-started', slices: slices.length, dbSizeBytes: dbSizeBytesBefore });
    for (const slice of slices) {
      this.#checkUsable();
      // LevelDB's compactRange never rewrites the deepest level holding the range, so records
      // deleted in a file that sits there (a flushed memtable pushed straight down, as in a young
      // store) would stay forever. A deletion marker for a key no record uses, inside each file's
      // span, lands above those files and makes compactRange merge them down, dropping what was
      // deleted. The marker itself is dropped at the bottom level.
      const sliceStarted = performance.now();
      const sentinels = this.#db.batch();
      for (const key of slice.sentinels) sentinels.del(key);
      try {
        await sentinels.write();
        await this.#db.compactRange(slice.from, slice.to);
      } catch (error: unknown) {
        // A write that failed may leave LevelDB's log mid-record, a compaction that failed leaves
        // LevelDB refusing writes: either way the store must be opened again.
        this.#fail(error);
        this.#checkUsable();
        throw error;
      }
      await sleep(Math.max(DEFRAG_PAUSE_MS, (performance.now() - sliceStarted) * DEFRAG_REST_RATIO));
    }
    const dbSizeBytesAfter = await this.dbSizeBytes();
    const result: DefragResult = { slices: slices.length, dbSizeBytesBefore, dbSizeBytesAfter, durationMs: performance.now() - started };
    this.#logger({ type: 'defrag-finished', ...result });
    return result;
  }

  /**
   * The slices of one defragmentation, in key order: everything before the revision records
   * (meta), revision ranges of about DEFRAG_SLICE_BYTES each, everything after (system keys). Each
   * slice carries its sentinel keys, about one per {@link DEFRAG_SENTINEL_BYTES} of backend: keys
   * inside the slice that no record ever uses (a bare namespace byte, or `r` + revision with no
   * user key, which sorts before that revision's records).
   */
  async #defragSlices(): Promise<Array<{ from: Buffer; to: Buffer; sentinels: Buffer[] }>> {
    const end = this.#headRevision + 1;
    const total = await this.#db.approximateSize(revisionBound(0), revisionBound(end));
    const count = Math.min(DEFRAG_SLICES_MAX, Math.max(1, Math.ceil(total / DEFRAG_SLICE_BYTES)));
    const step = Math.max(1, Math.ceil(end / count));
    const perSlice = Math.min(DEFRAG_SENTINELS_PER_SLICE_MAX, Math.max(1, Math.ceil(total / count / DEFRAG_SENTINEL_BYTES)));
    const slices: Array<{ from: Buffer; to: Buffer; sentinels: Buffer[] }> = [
      { from: Buffer.from([0]), to: revisionBound(0), sentinels: [Buffer.from([PREFIX_META])] },
    ];
    for (let from = 0; from < end; from += step) {
      const to = Math.min(end, from + step);
      const sentinels: Buffer[] = [];
      const spacing = Math.max(1, Math.floor((to - from) / perSlice));
      for (let revision = from; revision < to; revision += spacing) sentinels.push(revisionBound(revision));
      slices.push({ from: revisionBound(from), to: revisionBound(to), sentinels });
    }
    slices.push({ from: revisionBound(end), to: Buffer.from([0xff]), sentinels: [Buffer.from([PREFIX_SYSTEM])] });
    return slices;
  }

  /** Stops background compaction (progress is persisted and resumes on open) and closes LevelDB. */
  async close(): Promise<void> {
    if (this.#state !== 'open') return;
    this.#state = 'closing';
    await this.#applyChain;
    // A defragmentation stops at its next slice (it sees the state); wait for the slice in flight.
    await this.#defragQueued?.catch(() => undefined);
    await this.#defragRunning?.catch(() => undefined);
    for (const resume of this.#resumeCompaction.splice(0)) resume();
    for (const wake of this.#pinWaiters.splice(0)) wake();
    await this.#compactionTask;
    for (const waiter of this.#compactionWaiters.splice(0)) waiter.reject(new KvdError('stopped'));
    for (const dump of [...this.#dumps]) await dump.close();
    await this.#db.close();
    this.#state = 'closed';
  }

  /** Test helper: checks the index invariants. */
  assertInvariants(): void {
    this.#index.assertInvariants();
    let attached = 0;
    for (const [lease, keys] of this.#leaseKeys) {
      for (const key of keys) assert(this.#leases.get(key) === lease, 'lease reverse index agrees');
      attached += keys.size;
    }
    assert(attached === this.#leases.size, 'every leased key is in the reverse index once');
    assert(this.#writtenRevision <= this.#revision && this.#revision <= this.#headRevision, 'written revision <= readable revision <= head');
    assert(this.#compacted <= this.#revision, 'compacted <= current');
  }

  #checkUsable(): void {
    if (this.#failure !== undefined) {
      if (isNoSpaceFailure(this.#failure)) throw new KvdError('disk-full', { cause: this.#failure });
      throw new KvdError('internal', { detail: `mvcc store failed: ${errorMessage(this.#failure)}`, cause: this.#failure });
    }
    if (this.#state !== 'open') throw new KvdError('stopped');
  }

  /**
   * Why the store refuses all use, if it does: 'disk-full' after a LevelDB write failed for lack
   * of space (the owner may close it and open it again once there is room), 'failed' otherwise.
   */
  get failure(): 'none' | 'disk-full' | 'failed' {
    if (this.#failure === undefined) return 'none';
    return isNoSpaceFailure(this.#failure) ? 'disk-full' : 'failed';
  }

  /** Registers a listener called once, synchronously, when the store fails (see {@link failure}). */
  onFailure(listener: (failure: 'disk-full' | 'failed', error: unknown) => void): void {
    this.#failureListeners.push(listener);
  }

  #fail(error: unknown): void {
    if (this.#failure !== undefined) return;
    this.#failure = error;
    this.#logger({ type: 'failed', message: errorMessage(error) });
    const failure = isNoSpaceFailure(error) ? 'disk-full' : 'failed';
    for (const listener of this.#failureListeners.splice(0)) listener(failure, error);
  }
}

/**
 * Whether a failure is the disk being full. classic-level reports LevelDB's I/O errors as
 * LEVEL_IO_ERROR with LevelDB's text ("IO error: <file>: No space left on device"): the errno
 * survives only in that text, so it is read there, once, at this boundary.
 */
export function isNoSpaceFailure(error: unknown): boolean {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (code === 'ENOSPC' || code === 'EDQUOT' || (current instanceof KvdError && current.code === 'disk-full')) return true;
    if (current instanceof Error && /No space left on device|Disk quota exceeded/.test(current.message)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

interface CompareSubject {
  readonly value: Uint8Array;
  readonly version: number;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly lease: LeaseId;
}

/** etcd compareKV; integers compare as int64 like etcd's. */
function compareMatches(compare: Compare, subject: () => CompareSubject): boolean {
  const kv = subject();
  let result: number;
  switch (compare.target) {
    case 'value':
      result = Buffer.compare(kv.value, compare.value);
      break;
    case 'version':
      result = compareBig(BigInt(kv.version), BigInt.asIntN(64, compare.value));
      break;
    case 'create':
      result = compareBig(BigInt(kv.createRevision), BigInt.asIntN(64, compare.value));
      break;
    case 'mod':
      result = compareBig(BigInt(kv.modRevision), BigInt.asIntN(64, compare.value));
      break;
    case 'lease':
      result = compareBig(BigInt.asIntN(64, kv.lease), BigInt.asIntN(64, compare.value));
      break;
  }
  switch (compare.result) {
    case 'equal':
      return result === 0;
    case 'not-equal':
      return result !== 0;
    case 'greater':
      return result > 0;
    case 'less':
      return result < 0;
  }
}

function compareBig(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Checks recorded revisions against the current index without changing it (see
 * MvccStore.applyRecorded): revisions follow `head` one by one, each key changes once per
 * revision, puts carry the create revision and version the history gives, deletes hit live
 * keys. Returns the last revision.
 */
function planRecorded(
  revisions: readonly RevisionChanges[],
  head: Revision,
  historyOf: (key: string) => KeyHistory | undefined,
  corrupt: (why: string) => KvdError,
): Revision {
  /** What each key touched by this call looks like after the items planned so far. */
  const planned = new Map<string, KeyState | 'deleted'>();
  let expected = head + 1;
  for (const { revision, events } of revisions) {
    if (revision !== expected) throw corrupt(`revision ${revision} where ${expected} was expected`);
    if (events.length === 0) throw corrupt(`revision ${revision} has no events`);
    const seen = new Set<string>();
    for (const event of events) {
      const key = keyString(event.kv.key);
      if (seen.has(key)) throw corrupt(`key ${JSON.stringify(key)} changes twice in revision ${revision}`);
      seen.add(key);
      if (event.kv.modRevision !== revision) throw corrupt(`an event of revision ${revision} has mod revision ${event.kv.modRevision}`);
      const before = planned.get(key) ?? latestLive(historyOf(key));
      const live = before !== undefined && before !== 'deleted' ? before : undefined;
      if (event.type === 'delete') {
        if (live === undefined) throw corrupt(`revision ${revision} deletes ${JSON.stringify(key)}, which is not live`);
        planned.set(key, 'deleted');
        continue;
      }
      const created = live === undefined ? revision : live.created;
      const version = live === undefined ? 1 : live.version + 1;
      if (event.kv.createRevision !== created || event.kv.version !== version) {
        throw corrupt(`revision ${revision} puts ${JSON.stringify(key)} with create revision ${event.kv.createRevision} and version ${event.kv.version}; the history gives ${created} and ${version}`);
      }
      planned.set(key, { mod: revision, created, version });
    }
    expected += 1;
  }
  return expected - 1;
}

/** The key's newest state if it is live. */
function latestLive(history: KeyHistory | undefined): KeyState | undefined {
  return history === undefined ? undefined : latestState(history);
}

function deletedKeyValue(key: Uint8Array, revision: Revision): KeyValue {
  return { key, createRevision: 0, modRevision: revision, version: 0, value: EMPTY, lease: 0n };
}

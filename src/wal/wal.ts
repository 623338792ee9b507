/**
 * kvd's write-ahead log: the durable copy of Raft's hard state, log entries and snapshot markers
 * (DESIGN.md "Durability"). The server persists each Ready with one {@link Wal.save} (one
 * durable write: group commit) before sending the Ready's messages, and mirrors what it saved into
 * a MemoryStorage. A durable save is one write through a second descriptor of the segment opened
 * with O_DSYNC (durable when it returns, as write + fdatasync, in one trip through the libuv
 * pool). Commit-only ('buffered') saves are not written at once: their records are held in memory
 * (at most UNSYNCED_BYTES_MAX) and written, durably, in front of the next durable write, before a
 * rotation, or at close. A member that dies before then replays an older commit index, which Raft
 * allows (it is never ahead of what is durable, and the leader tells it again); the same as a
 * buffered write the OS lost.
 *
 * On disk: a directory of segment files `<seq:16 hex>-<firstIndex:16 hex>.wal`, each a sequence
 * of framed records (see record.ts). Every segment starts with a segment-header record followed
 * by copies of the latest snapshot marker and hard state, so any prefix of segments can be
 * deleted ({@link Wal.releaseTo}) without losing state. A new segment is started before a write
 * once the current one holds `segmentBytes` or more (a batch is never split across segments).
 *
 * A full disk (ENOSPC, EDQUOT) is not fatal: the write that failed throws {@link WalNoSpaceError},
 * nothing of it counts as written (the file is cut back to its durable end), and the caller may
 * retry the same call once space returns; a segment whose creation failed is removed. Any other
 * I/O error stays fatal and sticky.
 *
 * Preallocation (etcd preallocates its segments too): the current segment is kept zero-filled,
 * durably, up to {@link WalOptions.preallocateBytes} ahead of its write position, by a background
 * write of zeros and an fdatasync that run beside the saves. A durable write into space that is
 * already part of the file has no new file size (metadata) to make durable with it: measured here,
 * three processes writing 400-byte O_DSYNC records side by side took 142 µs at p50 and 193 at
 * p90 in zero-filled files against 187 and 265 appending. A save that would reach into a region
 * still being zero-filled waits for it first, so zeros never land on records. Zero-filling stops
 * at the size at which a segment rotates, so a segment left behind ends at its last record; a
 * failed zero-fill (a full disk) gives back what it wrote and only stops preallocating in that
 * segment. On open, zeros from a bad record to the end of a segment are preallocated space, not
 * damage: the segment ends there.
 *
 * Crash repair on open: a bad record in the LAST segment with no valid record after it is a torn
 * tail: the file is truncated there (and fsynced). Any other bad record is corruption and open
 * throws {@link WalCorruptError} naming the file and offset. Known limit: a torn write whose
 * later pages reached the disk while an earlier page did not is reported as corruption (loudly),
 * not repaired.
 */
import { constants as fsConstants, promises as fs, existsSync, readdirSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Entry, HardState, Index, SnapshotMetadata } from '../raft/types.js';

import { assert } from '../util/assert.js';
import { WalCorruptError, WalFatalError, WalNoSpaceError, isNoSpaceError, toFatalError } from './errors.js';
import { datasync, ensureDirectory, syncDirectory, writeFully } from './fs-util.js';
import {
  HARD_STATE_RECORD_BYTES,
  RecordType,
  SEGMENT_HEADER_RECORD_BYTES,
  decodePayload,
  entryRecordBytes,
  readFrame,
  snapshotMarkerRecordBytes,
  writeEntryRecord,
  writeHardStateRecord,
  writeSegmentHeaderRecord,
  writeSnapshotMarkerRecord,
} from './record.js';
import { LogShape } from './log-shape.js';
import { LogReplay } from './replay.js';

/** Default segment size at which a new segment is started: 64 MiB (etcd's SegmentSizeBytes). */
export const SEGMENT_BYTES_DEFAULT = 64 * 1024 * 1024;
/** An fsync slower than this is reported as a 'slow-fsync' event (etcd's warnSyncDuration). */
export const SLOW_FSYNC_MS = 1000;
/** Bytes of commit-only ('buffered') saves held in memory before the next save writes them durably anyway. */
const UNSYNCED_BYTES_MAX = 64 * 1024;
/** Default of {@link WalOptions.preallocateBytes}: zero-filled space kept ahead of the write position. */
export const PREALLOCATE_BYTES_DEFAULT = 2 * 1024 * 1024;

const SEGMENT_NAME = /^([0-9a-f]{16})-([0-9a-f]{16})\.wal$/;

/** Structured events for the server's log. */
export type WalEvent =
  | { readonly kind: 'directory-created'; readonly dir: string }
  | { readonly kind: 'torn-tail-truncated'; readonly file: string; readonly offset: number; readonly droppedBytes: number; readonly why: string }
  | { readonly kind: 'empty-segment-removed'; readonly file: string }
  | { readonly kind: 'segment-created'; readonly file: string; readonly seq: number; readonly firstIndex: Index }
  | { readonly kind: 'segment-released'; readonly file: string }
  | { readonly kind: 'slow-fsync'; readonly file: string; readonly durationMs: number }
  | { readonly kind: 'no-space'; readonly file: string; readonly offset: number; readonly bytes: number; readonly error: string }
  | { readonly kind: 'partial-segment-removed'; readonly file: string }
  /** Zero-filling ahead of the write position failed (a full disk): this segment is appended to as it is. */
  | { readonly kind: 'preallocate-failed'; readonly file: string; readonly offset: number; readonly error: string }
  /** close() could not write the held commit-only records (the WAL replays an older commit index). */
  | { readonly kind: 'held-records-dropped'; readonly file: string; readonly bytes: number; readonly error: string };

/** Options of {@link Wal.open}. */
export interface WalOptions {
  /** The WAL directory (created, with its parents, if missing). */
  readonly dir: string;
  /** Start a new segment before a write once the current one holds this many bytes. Default 64 MiB. */
  readonly segmentBytes?: number;
  /** Receives structured events (repairs, rotations, slow fsyncs). Default: ignore. */
  readonly logger?: (event: WalEvent) => void;
  /**
   * Zero-filled bytes kept ahead of the current segment's write position, written in chunks of
   * this size once less than half of it is left (see the file comment). 0 turns preallocation
   * off (each durable write appends to the file). Default {@link PREALLOCATE_BYTES_DEFAULT}.
   */
  readonly preallocateBytes?: number;
}

/** What {@link Wal.open} replayed. */
export interface WalState {
  /** The latest hard state written, or {term: 0, vote: 0n, commit: 0}. */
  readonly hardState: HardState;
  /**
   * The entries after the latest snapshot marker (all of them when there is none), contiguous,
   * starting at snapshot.index + 1, with Raft overwrites applied. Entry data are read-only views
   * into the segment's read buffer (one buffer per segment, kept alive while any entry uses it).
   */
  readonly entries: Entry[];
  /** The latest snapshot marker, if any. */
  readonly snapshot?: SnapshotMetadata;
}

interface Segment {
  readonly seq: number;
  readonly firstIndex: Index;
  readonly path: string;
  /** Highest entry index written in this segment, 0 when none. */
  maxEntryIndex: Index;
}

function segmentName(seq: number, firstIndex: Index): string {
  return `${seq.toString(16).padStart(16, '0')}-${firstIndex.toString(16).padStart(16, '0')}.wal`;
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/**
 * The write-ahead log. Obtain one with {@link Wal.open}. `save` and `saveSnapshotMarker` must not
 * overlap each other (asserted: the server's Ready loop runs one at a time); `releaseTo` may run
 * while one of them is in flight, but not alongside another `releaseTo`. After any
 * {@link WalFatalError} every call rethrows it.
 */
export class Wal {
  readonly #dir: string;
  readonly #segmentBytes: number;
  readonly #preallocateBytes: number;
  readonly #logger: (event: WalEvent) => void;
  /** Invariant: non-empty, seqs consecutive; the last one is the one being appended to. */
  readonly #segments: Segment[];
  /** Handle of the last segment, opened 'r+'. */
  #handle: FileHandle;
  /** The current segment opened a second time with O_DSYNC, for durable appends (opened on first use). */
  #dsync: { readonly path: string; readonly handle: FileHandle } | undefined;
  /** Bytes of valid records in the last segment, held ones included = the position of the next save's records. */
  #size: number;
  /**
   * Bytes of the last segment written and durable (or found at open): where the next write to the
   * file starts. Invariant: #syncedSize + bytes of #unsynced === #size.
   */
  #syncedSize: number;
  /** Records of 'buffered' saves since #syncedSize, in order, held in memory (not yet in the file). */
  #unsynced: Buffer[] = [];
  #unsyncedBytes = 0;
  /**
   * Bytes at the start of the last segment that are durably part of the file (records or zeros
   * written and synced): a durable write that ends within them changes no file size.
   * Invariant: #syncedSize <= #allocated.
   */
  #allocated: number;
  /** The zero-fill in flight in the last segment (it covers #allocated onwards), if any. Never rejects. */
  #zeroFill: Promise<void> | undefined;
  /** False once a zero-fill in the last segment failed: it is appended to as it is from then on. */
  #preallocating: boolean;
  /** Which indexes the logical log holds and their terms: asserts every save replays without a gap. */
  readonly #shape: LogShape;
  #hardState: HardState;
  #snapshot: SnapshotMetadata | undefined;
  #writing: 'idle' | 'busy' = 'idle';
  #releasing: 'idle' | 'busy' = 'idle';
  #state: 'open' | 'closed' = 'open';
  #failure: WalFatalError | undefined;

  private constructor(init: {
    dir: string;
    segmentBytes: number;
    preallocateBytes: number;
    logger: (event: WalEvent) => void;
    segments: Segment[];
    handle: FileHandle;
    size: number;
    shape: LogShape;
    hardState: HardState;
    snapshot: SnapshotMetadata | undefined;
  }) {
    this.#dir = init.dir;
    this.#segmentBytes = init.segmentBytes;
    this.#preallocateBytes = init.preallocateBytes;
    this.#logger = init.logger;
    this.#segments = init.segments;
    this.#handle = init.handle;
    this.#size = init.size;
    this.#syncedSize = init.size;
    // Zeros found after the last record at open are not counted: whether they were durable is
    // unknown, so the first zero-fill writes them again.
    this.#allocated = init.size;
    this.#zeroFill = undefined;
    this.#preallocating = init.preallocateBytes > 0;
    this.#shape = init.shape;
    this.#hardState = init.hardState;
    this.#snapshot = init.snapshot;
  }

  /** True if `dir` holds at least one WAL segment (i.e. this member has durable Raft state). */
  static exists(dir: string): boolean {
    if (!existsSync(dir)) return false;
    return readdirSync(dir).some((name) => SEGMENT_NAME.test(name));
  }

  /**
   * Opens (creating if needed) the WAL in `options.dir`, replays it and repairs a torn tail.
   * Throws WalCorruptError for corruption before the tail, WalFatalError for I/O failures.
   */
  static async open(options: WalOptions): Promise<{ wal: Wal; state: WalState }> {
    const segmentBytes = options.segmentBytes ?? SEGMENT_BYTES_DEFAULT;
    assert(Number.isSafeInteger(segmentBytes) && segmentBytes > 0, 'segmentBytes must be a positive integer');
    const preallocateBytes = options.preallocateBytes ?? PREALLOCATE_BYTES_DEFAULT;
    assert(Number.isSafeInteger(preallocateBytes) && preallocateBytes >= 0, 'preallocateBytes must be a whole number');
    const logger = options.logger ?? (() => {});
    const dir = options.dir;
    if ((await ensureDirectory(dir)) === 'created') logger({ kind: 'directory-created', dir });

    const segments = await listSegments(dir);
    const replay = new LogReplay();
    let lastSize = 0;
    for (let i = 0; i < segments.length; i++) {
      const isLast = i === segments.length - 1;
      const result = await replaySegment({ segment: segments[i], isLast, replay, logger });
      lastSize = result.validBytes;
      if (isLast && result.validBytes === 0) {
        // A segment whose creation never became durable (not even its header): no acknowledged
        // write can be in it.
        await unlinkDurably(dir, segments[i].path);
        logger({ kind: 'empty-segment-removed', file: segments[i].path });
        segments.pop();
        lastSize = -1;
      }
    }
    const state = replay.finish();
    const shape = new LogShape({ snapshot: state.snapshot, entries: state.entries });
    const lastIndex = shape.lastIndex;

    let handle: FileHandle;
    if (segments.length === 0) {
      const created = await createSegment({
        dir,
        seq: 0,
        firstIndex: lastIndex + 1,
        hardState: state.hardState,
        snapshot: state.snapshot,
        batch: undefined,
      });
      logger({ kind: 'segment-created', file: created.segment.path, seq: 0, firstIndex: lastIndex + 1 });
      segments.push(created.segment);
      handle = created.handle;
      lastSize = created.size;
    } else {
      const last = segments[segments.length - 1];
      if (lastSize < 0) lastSize = (await fs.stat(last.path)).size;
      try {
        handle = await fs.open(last.path, 'r+');
      } catch (error: unknown) {
        throw toFatalError(error, `open ${last.path}`);
      }
    }
    const wal = new Wal({
      dir,
      segmentBytes,
      preallocateBytes,
      logger,
      segments,
      handle,
      size: lastSize,
      shape,
      hardState: state.hardState,
      snapshot: state.snapshot,
    });
    return { wal, state };
  }

  /**
   * Appends `hardState` (if given and different from the last one written) and `entries`
   * (contiguous; entries at or below the last index overwrite the log from there), encoded into one
   * buffer, written with one write call and made durable with ONE fdatasync. Resolves once durable.
   * Does nothing (no write, no fsync) when there is nothing new.
   *
   * Asserted (bugs): entries start after the latest snapshot marker and at most one past the last
   * index, are contiguous, and their terms never decrease. So for a Ready that carries a snapshot,
   * call {@link Wal.saveSnapshotMarker} BEFORE saving that Ready's entries (etcd's order).
   *
   * `durability: 'buffered'` (Raft's `mustSync` false: only the commit index changed, which Raft
   * may lose and relearn) holds the record in memory, no I/O; the next durable write, a rotation
   * or close() writes it. Default 'fsync'.
   */
  async save(options: { hardState?: HardState; entries: readonly Entry[]; durability?: 'fsync' | 'buffered' }): Promise<void> {
    this.#checkUsable();
    const entries = options.entries;
    const hardState =
      options.hardState !== undefined && !sameHardState(options.hardState, this.#hardState) ? options.hardState : undefined;
    if (entries.length === 0 && hardState === undefined) return;
    assert(options.durability !== 'buffered' || entries.length === 0, 'entries are always synced');
    assert(this.#writing === 'idle', 'Wal.save/saveSnapshotMarker calls must not overlap');
    this.#writing = 'busy';
    try {
      // The index a segment started by this write is named after: its first entry's.
      const firstIndex = entries.length > 0 ? entries[0].index : this.#shape.lastIndex + 1;
      if (entries.length > 0) this.#shape.append(entries);
      let bytes = hardState === undefined ? 0 : HARD_STATE_RECORD_BYTES;
      for (let i = 0; i < entries.length; i++) bytes += entryRecordBytes(entries[i]);
      const buffer = Buffer.allocUnsafe(bytes);
      let offset = 0;
      for (const entry of entries) offset = writeEntryRecord(buffer, offset, entry);
      // Hard state after the entries: a commit index is never durable before the entries it covers.
      if (hardState !== undefined) offset = writeHardStateRecord(buffer, offset, hardState);
      assert(offset === bytes, 'encoded size matches the computed size');
      const lastIndex = entries.length > 0 ? entries[entries.length - 1].index : undefined;
      await this.#append(buffer, { firstIndex, lastIndex, sync: options.durability ?? 'fsync' });
      if (hardState !== undefined) this.#hardState = hardState;
    } finally {
      this.#writing = 'idle';
    }
  }

  /**
   * Records that a snapshot at `metadata` exists (written to the snapshot store BEFORE this call),
   * with one fdatasync. On replay, entries up to metadata.index are dropped, and the rest are kept
   * only if they connect to the snapshot.
   */
  async saveSnapshotMarker(metadata: SnapshotMetadata): Promise<void> {
    this.#checkUsable();
    assert(this.#writing === 'idle', 'Wal.save/saveSnapshotMarker calls must not overlap');
    this.#writing = 'busy';
    try {
      this.#shape.marker(metadata);
      const buffer = Buffer.allocUnsafe(snapshotMarkerRecordBytes(metadata));
      writeSnapshotMarkerRecord(buffer, 0, metadata);
      await this.#append(buffer, { firstIndex: this.#shape.lastIndex + 1, lastIndex: undefined });
      this.#snapshot = metadata;
    } finally {
      this.#writing = 'idle';
    }
  }

  /**
   * Deletes whole segments, oldest first, whose entries all have index < `index`; never the
   * segment being written. Call only with an index that a saved snapshot marker covers
   * (index <= marker.index + 1, asserted) and that the backend holds durably.
   */
  async releaseTo(index: Index): Promise<void> {
    this.#checkUsable();
    assert(this.#releasing === 'idle', 'Wal.releaseTo calls must not overlap');
    if (!(index <= this.#shape.snapshotIndex + 1)) assert(false, `releaseTo(${index}) beyond the latest snapshot marker`);
    this.#releasing = 'busy';
    try {
      while (this.#segments.length > 1 && this.#segments[0].maxEntryIndex < index) {
        const segment = this.#segments[0];
        // One unlink + directory fsync at a time, oldest first, so a crash leaves consecutive seqs.
        await unlinkDurably(this.#dir, segment.path);
        this.#segments.shift();
        this.#logger({ kind: 'segment-released', file: segment.path });
      }
    } finally {
      this.#releasing = 'idle';
    }
  }

  /** Closes the current segment. Calls must not overlap a write. Closing twice is a no-op. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    assert(this.#writing === 'idle' && this.#releasing === 'idle', 'Wal.close during a write');
    if (this.#failure === undefined && this.#unsyncedBytes > 0) {
      // The held commit-only records: a cleanly closed WAL replays the latest commit index. A
      // failure here loses only those (Raft relearns the commit index); the WAL still closes.
      const path = this.#segments[this.#segments.length - 1].path;
      try {
        await this.#appendDurably(undefined, path);
      } catch (error: unknown) {
        this.#logger({ kind: 'held-records-dropped', file: path, bytes: this.#unsyncedBytes, error: error instanceof Error ? error.message : String(error) });
      }
    }
    this.#state = 'closed';
    await this.#zeroFill;
    await this.#dsync?.handle.close();
    this.#dsync = undefined;
    await this.#handle.close();
  }

  /** Bytes of records in the file of the current segment, where its next durable write starts; preallocated zeros follow (for tests and diagnostics). */
  writtenBytes(): number {
    return this.#syncedSize;
  }

  /** Paths of the current segment files, oldest first (for tests and diagnostics). */
  segmentPaths(): string[] {
    return this.#segments.map((segment) => segment.path);
  }

  #checkUsable(): void {
    if (this.#failure !== undefined) throw this.#failure;
    assert(this.#state === 'open', 'Wal used after close');
  }

  /**
   * Writes `buffer` at the end of the log (rotating first if the segment is full) and fdatasyncs
   * (unless 'buffered'). On ENOSPC/EDQUOT throws WalNoSpaceError and counts nothing of `buffer`
   * as written (the caller may retry); any other failure is fatal and sticky.
   */
  async #append(buffer: Buffer, options: { firstIndex: Index; lastIndex: Index | undefined; sync?: 'fsync' | 'buffered' }): Promise<void> {
    const path = this.#segments[this.#segments.length - 1].path;
    try {
      // Before the segment is left behind, the records held for it go into it, durably.
      if (this.#size >= this.#segmentBytes && this.#unsyncedBytes > 0) await this.#appendDurably(undefined, path);
      if (this.#size >= this.#segmentBytes) {
        await this.#rotate(buffer, options.firstIndex);
      } else {
        if (options.sync === 'buffered' && this.#unsyncedBytes + buffer.length <= UNSYNCED_BYTES_MAX) {
          // Held, not written: no write (and no trip through the libuv pool) per commit-only
          // Ready; the next durable write carries the record.
          this.#size += buffer.length;
          this.#unsynced.push(buffer);
          this.#unsyncedBytes += buffer.length;
        } else {
          await this.#appendDurably(buffer, path);
        }
      }
    } catch (error: unknown) {
      if (isNoSpaceError(error)) {
        // Nothing of `buffer` counts: cut what a short write left after the durable end (a later
        // write of other bytes must not leave a stale record behind it); the held records are
        // written in front of the next write.
        try {
          // A zero-fill in flight would write behind the cut: it finishes first (it cannot fail loudly).
          await this.#zeroFill;
          await this.#handle.truncate(this.#syncedSize);
          this.#allocated = this.#syncedSize;
        } catch (truncateError: unknown) {
          this.#failure = toFatalError(truncateError, `truncating ${path} after a failed write`);
          throw this.#failure;
        }
        this.#logger({ kind: 'no-space', file: path, offset: this.#size, bytes: buffer.length, error: error instanceof Error ? error.message : String(error) });
        throw new WalNoSpaceError(`WAL write in ${this.#dir}: no space left on device`, { cause: error });
      }
      this.#failure = toFatalError(error, `WAL write in ${this.#dir}`);
      throw this.#failure;
    }
    if (options.lastIndex !== undefined) {
      const segment = this.#segments[this.#segments.length - 1];
      segment.maxEntryIndex = Math.max(segment.maxEntryIndex, options.lastIndex);
    }
  }

  /**
   * Appends `buffer` (if any) durably with ONE write through a descriptor opened with O_DSYNC (the
   * write returns once its data is on stable storage, as write + fdatasync would: one trip through
   * the libuv pool instead of two). The records held by 'buffered' saves since (a few hard-state
   * records) go in front of `buffer`, in the same write. Everything is synced after.
   */
  async #appendDurably(buffer: Buffer | undefined, path: string): Promise<void> {
    const buffers = buffer === undefined ? this.#unsynced : [...this.#unsynced, buffer];
    if (this.#dsync === undefined || this.#dsync.path !== path) {
      const handle = await fs.open(path, fsConstants.O_WRONLY | fsConstants.O_DSYNC);
      const previous = this.#dsync;
      this.#dsync = { path, handle };
      await previous?.handle.close();
    }
    // The write starts at the last synced offset: were the bookkeeping off, it would overwrite records.
    assert(this.#syncedSize + this.#unsyncedBytes === this.#size, 'WAL: synced + unsynced bytes == size');
    const end = this.#size + (buffer?.length ?? 0);
    // Zeros still being written where these records go would land on them: the fill finishes first.
    if (this.#zeroFill !== undefined && end > this.#allocated) await this.#zeroFill;
    const started = performance.now();
    if (buffers.length > 0) await writeFully(this.#dsync.handle, buffers, this.#syncedSize);
    const durationMs = performance.now() - started;
    if (durationMs > SLOW_FSYNC_MS) this.#logger({ kind: 'slow-fsync', file: path, durationMs });
    this.#size = end;
    this.#markSynced();
    this.#allocated = Math.max(this.#allocated, end);
    this.#preallocate(path);
  }

  /**
   * Starts zero-filling the next chunk of the last segment in the background, durably, once less
   * than half of {@link WalOptions.preallocateBytes} is left ahead of its write position (never
   * past the size at which the segment rotates). A failure stops preallocation in this segment.
   */
  #preallocate(path: string): void {
    const chunk = this.#preallocateBytes;
    if (!this.#preallocating || this.#zeroFill !== undefined) return;
    if (this.#allocated - this.#size >= chunk / 2 || this.#allocated >= this.#segmentBytes) return;
    const from = this.#allocated;
    const bytes = Math.min(chunk, this.#segmentBytes - from);
    const handle = this.#handle;
    this.#zeroFill = (async () => {
      try {
        await writeFully(handle, [Buffer.alloc(bytes)], from);
        await datasync(handle);
        this.#allocated = from + bytes;
      } catch (error: unknown) {
        this.#preallocating = false;
        // Give back what part of the fill got written (no record is there: saves reaching into it wait).
        await handle.truncate(from).catch(() => undefined);
        this.#logger({ kind: 'preallocate-failed', file: path, offset: from, error: error instanceof Error ? error.message : String(error) });
      } finally {
        this.#zeroFill = undefined;
      }
    })();
  }

  #markSynced(): void {
    this.#syncedSize = this.#size;
    this.#unsynced = [];
    this.#unsyncedBytes = 0;
  }

  /**
   * Starts the next segment, named after `firstIndex` (the first entry index of `batch`, else the
   * next index), with `batch` as its first records (one write, one fdatasync, dir fsync).
   */
  async #rotate(batch: Buffer, firstIndex: Index): Promise<void> {
    await this.#zeroFill;
    const previous = this.#segments[this.#segments.length - 1];
    const seq = previous.seq + 1;
    const created = await createSegment({
      dir: this.#dir,
      seq,
      firstIndex,
      hardState: this.#hardState,
      snapshot: this.#snapshot,
      batch,
      onSlowFsync: (durationMs, file) => this.#logger({ kind: 'slow-fsync', file, durationMs }),
      onPartialRemoved: (file) => this.#logger({ kind: 'partial-segment-removed', file }),
    });
    const oldHandle = this.#handle;
    this.#segments.push(created.segment);
    this.#handle = created.handle;
    this.#size = created.size;
    this.#markSynced();
    this.#allocated = created.size;
    this.#preallocating = this.#preallocateBytes > 0;
    this.#logger({ kind: 'segment-created', file: created.segment.path, seq, firstIndex });
    // The previous segment was made durable by the write that filled it (or by #appendDurably
    // before the rotation); it ends at its last record (zero-fills stop at segmentBytes).
    await oldHandle.close();
    const oldDsync = this.#dsync;
    this.#dsync = undefined;
    await oldDsync?.handle.close();
  }
}

async function listSegments(dir: string): Promise<Segment[]> {
  const segments: Segment[] = [];
  for (const name of await fs.readdir(dir)) {
    const match = SEGMENT_NAME.exec(name);
    if (match === null) continue;
    segments.push({ seq: parseInt(match[1], 16), firstIndex: parseInt(match[2], 16), path: join(dir, name), maxEntryIndex: 0 });
  }
  segments.sort((a, b) => a.seq - b.seq);
  for (let i = 1; i < segments.length; i++) {
    if (segments[i].seq !== segments[i - 1].seq + 1) {
      throw new WalCorruptError({ file: segments[i].path, offset: 0, detail: `segment seq ${segments[i - 1].seq + 1} is missing` });
    }
  }
  return segments;
}

/**
 * Replays one segment into `replay`. Returns the byte length of its valid records (after a
 * torn-tail truncation in the last segment).
 */
async function replaySegment(options: {
  segment: Segment;
  isLast: boolean;
  replay: LogReplay;
  logger: (event: WalEvent) => void;
}): Promise<{ validBytes: number }> {
  const { segment, isLast, replay } = options;
  const file = segment.path;
  let buffer: Buffer;
  try {
    buffer = await fs.readFile(file);
  } catch (error: unknown) {
    throw toFatalError(error, `read ${file}`);
  }
  let offset = 0;
  while (offset < buffer.length) {
    const frame = readFrame(buffer, offset);
    if (!frame.ok) {
      // Preallocated space (no record starts with a zero byte run: type 0 is not a record type).
      if (zerosFrom(buffer, offset)) break;
      const later = findValidFrameAfter(buffer, offset);
      if (!isLast || later !== undefined) {
        const detail = later === undefined ? `${frame.why} in a segment that is not the last` : `${frame.why}, followed by a valid record at offset ${later}`;
        throw new WalCorruptError({ file, offset, detail });
      }
      await truncateTail({ file, offset, why: frame.why, droppedBytes: buffer.length - offset, logger: options.logger });
      break;
    }
    const record = decodePayload(buffer, frame);
    if (typeof record === 'string') throw new WalCorruptError({ file, offset, detail: record });
    if (offset === 0) {
      if (record.type !== 'segment-header' || record.header.seq !== segment.seq || record.header.firstIndex !== segment.firstIndex) {
        throw new WalCorruptError({ file, offset, detail: 'first record is not this segment\'s header' });
      }
    } else {
      switch (record.type) {
        case 'segment-header':
          throw new WalCorruptError({ file, offset, detail: 'segment header in the middle of a segment' });
        case 'hard-state':
          replay.hardState(record.hardState);
          break;
        case 'entry':
          replay.entry(record.entry, { file, offset });
          segment.maxEntryIndex = Math.max(segment.maxEntryIndex, record.entry.index);
          break;
        case 'snapshot-marker':
          replay.snapshotMarker(record.metadata);
          break;
      }
    }
    offset = frame.end;
  }
  return { validBytes: Math.min(offset, buffer.length) };
}

/** Whether every byte of `buffer` from `offset` on is zero. */
function zerosFrom(buffer: Buffer, offset: number): boolean {
  for (let at = offset; at < buffer.length; at++) if (buffer[at] !== 0) return false;
  return true;
}

/**
 * Looks for any whole, checksummed record starting after `offset`. Its existence means the bad
 * record at `offset` is not a torn tail. Tries the position the bad record's length field
 * claims first (the common case of a flipped payload byte), then every byte.
 */
function findValidFrameAfter(buffer: Buffer, offset: number): number | undefined {
  if (buffer.length - offset >= 9) {
    const claimed = offset + 9 + buffer.readUInt32LE(offset);
    if (claimed < buffer.length && readFrame(buffer, claimed).ok) return claimed;
  }
  for (let at = offset + 1; at + 9 <= buffer.length; at++) {
    const type = buffer[at + 4];
    if (type < RecordType.segmentHeader || type > RecordType.snapshotMarker) continue;
    if (readFrame(buffer, at).ok) return at;
  }
  return undefined;
}

async function truncateTail(options: {
  file: string;
  offset: number;
  why: string;
  droppedBytes: number;
  logger: (event: WalEvent) => void;
}): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await fs.open(options.file, 'r+');
    await handle.truncate(options.offset);
    await handle.sync();
  } catch (error: unknown) {
    throw toFatalError(error, `truncating torn tail of ${options.file}`);
  } finally {
    await handle?.close();
  }
  options.logger({ kind: 'torn-tail-truncated', file: options.file, offset: options.offset, droppedBytes: options.droppedBytes, why: options.why });
}

async function unlinkDurably(dir: string, path: string): Promise<void> {
  try {
    await fs.unlink(path);
  } catch (error: unknown) {
    throw toFatalError(error, `unlink ${path}`);
  }
  await syncDirectory(dir);
}

/**
 * Creates segment `seq` exclusively and writes its header, copies of the latest snapshot marker
 * and hard state, and `batch`, with one write and one fdatasync; then fsyncs the directory.
 */
async function createSegment(options: {
  dir: string;
  seq: number;
  firstIndex: Index;
  hardState: HardState;
  snapshot: SnapshotMetadata | undefined;
  batch: Buffer | undefined;
  onSlowFsync?: (durationMs: number, file: string) => void;
  /** Called when a segment whose creation failed was removed again. */
  onPartialRemoved?: (file: string) => void;
}): Promise<{ segment: Segment; handle: FileHandle; size: number }> {
  const path = join(options.dir, segmentName(options.seq, options.firstIndex));
  const emptyHardState = sameHardState(options.hardState, { term: 0, vote: 0n, commit: 0 });
  const prefixBytes =
    SEGMENT_HEADER_RECORD_BYTES +
    (options.snapshot === undefined ? 0 : snapshotMarkerRecordBytes(options.snapshot)) +
    (emptyHardState ? 0 : HARD_STATE_RECORD_BYTES);
  const prefix = Buffer.allocUnsafe(prefixBytes);
  let offset = writeSegmentHeaderRecord(prefix, 0, { seq: options.seq, firstIndex: options.firstIndex });
  if (options.snapshot !== undefined) offset = writeSnapshotMarkerRecord(prefix, offset, options.snapshot);
  if (!emptyHardState) offset = writeHardStateRecord(prefix, offset, options.hardState);
  assert(offset === prefixBytes, 'segment prefix size matches');
  const buffers = options.batch === undefined ? [prefix] : [prefix, options.batch];
  let handle: FileHandle | undefined;
  try {
    handle = await fs.open(path, 'wx');
    const size = await writeFully(handle, buffers, 0);
    const started = performance.now();
    await datasync(handle);
    const durationMs = performance.now() - started;
    if (durationMs > SLOW_FSYNC_MS) options.onSlowFsync?.(durationMs, path);
    await syncDirectory(options.dir);
    const maxEntryIndex = 0;
    return { segment: { seq: options.seq, firstIndex: options.firstIndex, path, maxEntryIndex }, handle, size };
  } catch (error: unknown) {
    await handle?.close();
    if (handle !== undefined && isNoSpaceError(error)) {
      // The disk filled up while the segment was being written: remove it, so that a retry
      // creates it afresh (an unremovable partial segment is fatal).
      try {
        await fs.unlink(path);
      } catch (unlinkError: unknown) {
        throw toFatalError(unlinkError, `removing the partial segment ${path}`);
      }
      options.onPartialRemoved?.(path);
      throw new WalNoSpaceError(`creating segment ${path}: no space left on device`, { cause: error });
    }
    throw toFatalError(error, `creating segment ${path}`);
  }
}



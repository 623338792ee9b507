/**
 * The synchronous log storage the core reads from ({@link LogStorage}) and its in-memory
 * implementation ({@link MemoryStorage}), which the server keeps as a mirror of its WAL the way
 * etcd's server pairs raft.MemoryStorage with its WAL.
 */
import { assert } from '../util/assert.js';
import type { ConfState, Entry, HardState, Index, Snapshot, Term } from './types.js';
import { NO_NODE } from './types.js';

/** A value, or why it cannot be had: `compacted` (below the first index), `unavailable` (not there yet / try later). */
export type StorageResult<T> = { ok: true; value: T } | { ok: false; reason: 'compacted' | 'unavailable' };

/** Shared, frozen failure results (no allocation on hot paths). */
export const COMPACTED: { ok: false; reason: 'compacted' } = Object.freeze({ ok: false, reason: 'compacted' });
export const UNAVAILABLE: { ok: false; reason: 'unavailable' } = Object.freeze({ ok: false, reason: 'unavailable' });

/**
 * What the core needs from stable storage. Every method is synchronous and must only return
 * durable (persisted) state.
 */
export interface LogStorage {
  /** The persisted hard state and the membership as of the latest snapshot. */
  initialState(): { hardState: HardState; confState: ConfState };
  /** Entries in [lo, hi), at most `maxBytes` in total but always >= 1 entry if lo < hi. */
  entries(lo: Index, hi: Index, maxBytes: number): StorageResult<readonly Entry[]>;
  /** The term of the entry at `index`; valid for firstIndex()-1 (the snapshot index) through lastIndex(). */
  term(index: Index): StorageResult<Term>;
  /** First index still in the log (snapshot index + 1). */
  firstIndex(): Index;
  /** Last index in the log (the snapshot index if the log is empty). */
  lastIndex(): Index;
  /** The most recent snapshot ('unavailable' = try later). */
  snapshot(): StorageResult<Snapshot>;
}

/** Bytes an entry counts for in size limits: its payload plus a fixed framing overhead. */
export function entryBytes(entry: Entry): number {
  return entry.data.byteLength + ENTRY_OVERHEAD_BYTES;
}
/** Fixed per-entry overhead added to the payload size in byte limits (term, index, type). */
export const ENTRY_OVERHEAD_BYTES = 16;

/** Returns the longest prefix of `entries` within `maxBytes`, but at least one entry. Does not copy if all fit. */
export function limitSize(entries: readonly Entry[], maxBytes: number): readonly Entry[] {
  if (entries.length <= 1) return entries;
  let size = entryBytes(entries[0]);
  for (let i = 1; i < entries.length; i++) {
    size += entryBytes(entries[i]);
    if (size > maxBytes) return entries.slice(0, i);
  }
  return entries;
}

const EMPTY_DATA = new Uint8Array(0);

/**
 * An in-memory {@link LogStorage}. Invariant: `#entries[0]` is a dummy entry standing for the
 * snapshot (its index and term); real entries follow contiguously.
 * Not thread-safe and not durable: the server writes the WAL first, then mirrors here.
 */
export class MemoryStorage implements LogStorage {
  #hardState: HardState = { term: 0, vote: NO_NODE, commit: 0 };
  #snapshot: Snapshot = { metadata: { index: 0, term: 0, confState: { voters: [], learners: [] } }, data: EMPTY_DATA };
  /** Invariant: non-empty; `#entries[0]` has the snapshot's index and term; indexes contiguous. */
  #entries: Entry[] = [{ term: 0, index: 0, type: 'normal', data: EMPTY_DATA }];

  /** Creates an empty storage: no entries, snapshot at index 0 with an empty ConfState. */
  constructor() {}

  /** See {@link LogStorage.initialState}. */
  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.#hardState, confState: this.#snapshot.metadata.confState };
  }

  /** Records the persisted hard state. */
  setHardState(hardState: HardState): void {
    this.#hardState = hardState;
  }

  /** See {@link LogStorage.entries}. Asserts hi <= lastIndex()+1. */
  entries(lo: Index, hi: Index, maxBytes: number): StorageResult<readonly Entry[]> {
    const offset = this.#entries[0].index;
    if (lo <= offset) return COMPACTED;
    if (!(hi <= this.lastIndex() + 1)) assert(false, `storage entries: hi ${hi} beyond last index ${this.lastIndex()}`);
    if (this.#entries.length === 1 || lo >= hi) return { ok: true, value: [] };
    return { ok: true, value: limitSize(this.#entries.slice(lo - offset, hi - offset), maxBytes) };
  }

  /** See {@link LogStorage.term}. */
  term(index: Index): StorageResult<Term> {
    const offset = this.#entries[0].index;
    if (index < offset) return COMPACTED;
    if (index - offset >= this.#entries.length) return UNAVAILABLE;
    return { ok: true, value: this.#entries[index - offset].term };
  }

  /** See {@link LogStorage.firstIndex}. */
  firstIndex(): Index {
    return this.#entries[0].index + 1;
  }

  /** See {@link LogStorage.lastIndex}. */
  lastIndex(): Index {
    return this.#entries[0].index + this.#entries.length - 1;
  }

  /** See {@link LogStorage.snapshot}. */
  snapshot(): StorageResult<Snapshot> {
    return { ok: true, value: this.#snapshot };
  }

  /**
   * Replaces the whole log with `snapshot` (restart, or installing a snapshot received from the
   * leader). Asserts the snapshot is not older than the current one.
   */
  applySnapshot(snapshot: Snapshot): void {
    const { index, term } = snapshot.metadata;
    if (!(index >= this.#snapshot.metadata.index)) assert(false, `applySnapshot: snapshot ${index} older than ${this.#snapshot.metadata.index}`);
    this.#snapshot = snapshot;
    this.#entries = [{ term, index, type: 'normal', data: EMPTY_DATA }];
  }

  /**
   * Makes a snapshot at `index` (which must be within the log and >= the current snapshot index;
   * the caller has applied through `index`) and returns it. Entries are kept until {@link compact}.
   */
  createSnapshot(options: { index: Index; confState: ConfState; data: Uint8Array }): Snapshot {
    const { index, confState, data } = options;
    const offset = this.#entries[0].index;
    if (!(index >= this.#snapshot.metadata.index)) assert(false, `createSnapshot: index ${index} older than snapshot ${this.#snapshot.metadata.index}`);
    if (!(index <= this.lastIndex())) assert(false, `createSnapshot: index ${index} beyond last index ${this.lastIndex()}`);
    const term = this.#entries[index - offset].term;
    this.#snapshot = { metadata: { index, term, confState }, data };
    return this.#snapshot;
  }

  /**
   * Drops entries <= `index` (the caller must have applied and snapshotted through it; the term of
   * `index` is kept as the new dummy). A no-op if already compacted that far.
   */
  compact(index: Index): void {
    const offset = this.#entries[0].index;
    if (index <= offset) return;
    if (!(index <= this.lastIndex())) assert(false, `compact: index ${index} beyond last index ${this.lastIndex()}`);
    const term = this.#entries[index - offset].term;
    const rest = this.#entries.slice(index - offset + 1);
    rest.unshift({ term, index, type: 'normal', data: EMPTY_DATA });
    this.#entries = rest;
  }

  /**
   * Appends entries (contiguous, ascending), truncating any existing suffix from the first new
   * index on. Entries at or below the snapshot index are ignored. Asserts there is no gap.
   */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const first = this.firstIndex();
    const last = entries[entries.length - 1].index;
    if (last < first) return;
    let start = 0;
    if (entries[0].index < first) start = first - entries[0].index;
    const offset = entries[start].index - this.#entries[0].index;
    if (!(offset <= this.#entries.length)) assert(false, `append: gap: log ends at ${this.lastIndex()}, got ${entries[start].index}`);
    if (offset < this.#entries.length) this.#entries.length = offset;
    for (let i = start; i < entries.length; i++) this.#entries.push(entries[i]);
  }
}

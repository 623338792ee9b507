/**
 * The Raft log as the core sees it: the persisted part (read through {@link LogStorage}) plus the
 * {@link Unstable} tail, with the commit and applied indexes. Modelled on etcd-io/raft log.go.
 */
import { assert } from '../util/assert.js';
import type { LogStorage, StorageResult } from './storage.js';
import { COMPACTED, UNAVAILABLE, entryBytes, limitSize } from './storage.js';
import { Unstable } from './unstable.js';
import type { Entry, Index, Snapshot, Term } from './types.js';

/**
 * Invariants: `applied <= applying <= committed <= lastIndex()`; `firstIndex() - 1 <= committed`.
 */
export class RaftLog {
  readonly storage: LogStorage;
  readonly unstable: Unstable;
  /** Highest index known committed. Invariant: never decreases, <= lastIndex(). */
  committed: Index;
  /**
   * Highest index the application has applied (advance() with apply 'done', or appliedTo()).
   * Decisions that depend on the application's state (one pending conf change, campaigning with
   * an unapplied conf change) use this. Invariant: <= applying.
   */
  applied: Index;
  /**
   * Highest index handed to the application (in a Ready whose advance() said apply 'pending' or
   * 'done'); the next Ready's committed entries start after it. Invariant: applied <= applying <= committed.
   */
  applying: Index;

  constructor(storage: LogStorage) {
    this.storage = storage;
    const first = storage.firstIndex();
    const last = storage.lastIndex();
    this.unstable = new Unstable(last + 1);
    this.committed = first - 1;
    this.applied = first - 1;
    this.applying = first - 1;
  }

  firstIndex(): Index {
    const index = this.unstable.maybeFirstIndex();
    return index ?? this.storage.firstIndex();
  }

  lastIndex(): Index {
    const index = this.unstable.maybeLastIndex();
    return index ?? this.storage.lastIndex();
  }

  /** The term of `index`: from the unstable tail, else storage ('compacted'/'unavailable' outside). */
  term(index: Index): StorageResult<Term> {
    const unstableTerm = this.unstable.maybeTerm(index);
    if (unstableTerm !== undefined) return { ok: true, value: unstableTerm };
    if (index + 1 < this.firstIndex()) return COMPACTED;
    if (index > this.lastIndex()) return UNAVAILABLE;
    return this.storage.term(index);
  }

  /** The term of `index`, or 0 when it is compacted or not in the log. */
  termOrZero(index: Index): Term {
    const unstableTerm = this.unstable.maybeTerm(index);
    if (unstableTerm !== undefined) return unstableTerm;
    const result = this.term(index);
    return result.ok ? result.value : 0;
  }

  lastTerm(): Term {
    const result = this.term(this.lastIndex());
    assert(result.ok, 'term of the last index must be known');
    return result.value;
  }

  matchTerm(index: Index, term: Term): boolean {
    const unstableTerm = this.unstable.maybeTerm(index);
    if (unstableTerm !== undefined) return unstableTerm === term;
    if (index > this.lastIndex()) return false;
    const result = this.term(index);
    return result.ok && result.value === term;
  }

  /** Whether a log ending at (lastIndex, lastTerm) is at least as up to date as ours (thesis 3.6.1). */
  isUpToDate(options: { lastIndex: Index; lastTerm: Term }): boolean {
    const ourTerm = this.lastTerm();
    return options.lastTerm > ourTerm || (options.lastTerm === ourTerm && options.lastIndex >= this.lastIndex());
  }

  /**
   * Appends leader entries after (index, logTerm) if our log matches there, truncating a
   * conflicting uncommitted suffix, and advances commit to min(commit, last new index).
   * Returns the last new index, or undefined on mismatch.
   */
  maybeAppend(options: { index: Index; logTerm: Term; commit: Index; entries: readonly Entry[] }): Index | undefined {
    const { index, logTerm, commit, entries } = options;
    if (!this.matchTerm(index, logTerm)) return undefined;
    const lastNew = index + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      if (!(conflict > this.committed)) assert(false, `entry ${conflict} conflicts with committed entry (committed ${this.committed})`);
      const start = conflict - (index + 1);
      this.append(start === 0 ? entries : entries.slice(start));
    }
    this.commitTo(Math.min(commit, lastNew));
    return lastNew;
  }

  /** Index of the first entry whose term differs from ours or which is new; 0 if all are present. */
  findConflict(entries: readonly Entry[]): Index {
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i];
      if (!this.matchTerm(entry.index, entry.term)) return entry.index;
    }
    return 0;
  }

  /**
   * For fast back-off (etcd findConflictByTerm): the largest index <= `index` whose term is <= `term`,
   * with that term (0 if unknown/compacted).
   */
  findConflictByTerm(options: { index: Index; term: Term }): { index: Index; term: Term } {
    let index = options.index;
    for (; index > 0; index--) {
      const result = this.term(index);
      if (!result.ok) return { index, term: 0 };
      if (result.value <= options.term) return { index, term: result.value };
    }
    return { index: 0, term: 0 };
  }

  /** Appends entries to the unstable tail (may truncate a suffix). Returns the new last index. */
  append(entries: readonly Entry[]): Index {
    if (entries.length === 0) return this.lastIndex();
    if (!(entries[0].index - 1 >= this.committed)) assert(false, `append after ${entries[0].index - 1} would overwrite committed ${this.committed}`);
    this.unstable.truncateAndAppend(entries);
    return this.lastIndex();
  }

  commitTo(index: Index): void {
    if (index > this.committed) {
      if (!(index <= this.lastIndex())) assert(false, `commit ${index} beyond last index ${this.lastIndex()}`);
      this.committed = index;
    }
  }

  /** The application applied everything up to `index` (also handed out, if it was not yet). */
  appliedTo(index: Index): void {
    if (index === 0) return;
    if (!(index <= this.committed && index >= this.applied)) assert(false, `applied ${index} outside [${this.applied}, ${this.committed}]`);
    this.applied = index;
    if (index > this.applying) this.applying = index;
  }

  /** Entries up to `index` were handed to the application, which will report them with appliedTo(). */
  applyingTo(index: Index): void {
    if (!(index <= this.committed && index >= this.applying)) assert(false, `applying ${index} outside [${this.applying}, ${this.committed}]`);
    this.applying = index;
  }

  /** Entries [lo, hi) within maxBytes (>= 1 entry), or 'compacted'. */
  slice(lo: Index, hi: Index, maxBytes: number): StorageResult<readonly Entry[]> {
    if (lo >= hi) return { ok: true, value: [] };
    const first = this.firstIndex();
    if (lo < first) return COMPACTED;
    if (!(hi <= this.lastIndex() + 1)) assert(false, `slice [${lo},${hi}) beyond last index ${this.lastIndex()}`);
    const offset = this.unstable.offset;
    if (lo >= offset) return { ok: true, value: limitSize(this.unstable.slice(lo, hi), maxBytes) };
    const stored = this.storage.entries(lo, Math.min(hi, offset), maxBytes);
    if (!stored.ok) return stored;
    if (hi <= offset || stored.value.length < Math.min(hi, offset) - lo) return stored;
    let size = 0;
    for (const entry of stored.value) size += entryBytes(entry);
    const combined = stored.value.slice();
    const more = this.unstable.slice(offset, hi);
    for (const entry of more) {
      size += entryBytes(entry);
      if (size > maxBytes) break;
      combined.push(entry);
    }
    return { ok: true, value: combined };
  }

  /** Entries from `lo` to the end within maxBytes. */
  entriesFrom(lo: Index, maxBytes: number): StorageResult<readonly Entry[]> {
    return this.slice(lo, this.lastIndex() + 1, maxBytes);
  }

  /** The unstable snapshot if any, else storage's snapshot. */
  snapshot(): StorageResult<Snapshot> {
    if (this.unstable.snapshot !== undefined) return { ok: true, value: this.unstable.snapshot };
    return this.storage.snapshot();
  }

  hasPendingSnapshot(): boolean {
    return this.unstable.snapshot !== undefined;
  }

  /** Whether committed entries are waiting to be handed to the application. */
  hasNextCommittedEntries(): boolean {
    if (this.hasPendingSnapshot()) return false;
    return this.committed > Math.max(this.applying, this.firstIndex() - 1);
  }

  /** Committed entries not yet handed to the application, at most maxBytes (>= 1 entry). */
  nextCommittedEntries(maxBytes: number): readonly Entry[] {
    if (!this.hasNextCommittedEntries()) return [];
    const lo = Math.max(this.applying + 1, this.firstIndex());
    const result = this.slice(lo, this.committed + 1, maxBytes);
    if (!(result.ok)) assert(false, `committed entries from ${lo} must be available`);
    return result.value;
  }

  /** Installs a snapshot: the log becomes just the snapshot; commit moves to its index. */
  restore(snapshot: Snapshot): void {
    this.committed = snapshot.metadata.index;
    this.unstable.restore(snapshot);
  }
}

/**
 * The unstable tail of the log: entries (and possibly an incoming snapshot) the core has but the
 * caller has not yet persisted. Modelled on etcd-io/raft log_unstable.go.
 */
import { assert } from '../util/assert.js';
import type { Entry, Index, Snapshot, Term } from './types.js';

/**
 * Invariants: `entries[i].index === offset + i`; if `snapshot` is set, `offset === snapshot.index + 1`
 * or later entries follow it contiguously.
 */
export class Unstable {
  /** An incoming snapshot not yet persisted. */
  snapshot: Snapshot | undefined = undefined;
  /** Entries not yet persisted; `entries[0].index === offset`. */
  entries: Entry[] = [];
  /** Index of `entries[0]` (or where the next entry would go). */
  offset: Index;

  constructor(offset: Index) {
    this.offset = offset;
  }

  /** First index if a snapshot is pending (snapshot index + 1), else undefined. */
  maybeFirstIndex(): Index | undefined {
    return this.snapshot === undefined ? undefined : this.snapshot.metadata.index + 1;
  }

  /** Last index held here (last entry, else the snapshot index), else undefined. */
  maybeLastIndex(): Index | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot === undefined ? undefined : this.snapshot.metadata.index;
  }

  /** The term of `index` if held here, else undefined. */
  maybeTerm(index: Index): Term | undefined {
    if (index < this.offset) {
      if (this.snapshot !== undefined && this.snapshot.metadata.index === index) return this.snapshot.metadata.term;
      return undefined;
    }
    const position = index - this.offset;
    if (position >= this.entries.length) return undefined;
    return this.entries[position].term;
  }

  /** The caller persisted entries through (index, term): drop them if they are still ours. */
  stableTo(index: Index, term: Term): void {
    const current = this.maybeTerm(index);
    if (current !== term || index < this.offset) return;
    const count = index + 1 - this.offset;
    this.entries = count === this.entries.length ? [] : this.entries.slice(count);
    this.offset = index + 1;
  }

  /** The caller persisted the snapshot at `index`. */
  stableSnapshotTo(index: Index): void {
    if (this.snapshot !== undefined && this.snapshot.metadata.index === index) this.snapshot = undefined;
  }

  /** Replaces everything with an incoming snapshot. */
  restore(snapshot: Snapshot): void {
    this.offset = snapshot.metadata.index + 1;
    this.entries = [];
    this.snapshot = snapshot;
  }

  /** Appends one entry that directly follows the last one (leader hot path). */
  appendOne(entry: Entry): void {
    this.entries.push(entry);
  }

  /** Appends contiguous entries, truncating any conflicting suffix from `entries[0].index` on. */
  truncateAndAppend(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    const after = entries[0].index;
    if (after === this.offset + this.entries.length) {
      for (let i = 0; i < entries.length; i++) this.entries.push(entries[i]);
    } else if (after <= this.offset) {
      this.offset = after;
      this.entries = entries.slice();
    } else {
      const kept = this.entries.slice(0, after - this.offset);
      for (let i = 0; i < entries.length; i++) kept.push(entries[i]);
      this.entries = kept;
    }
  }

  /** Entries [lo, hi) held here; asserts lo >= offset and hi within bounds. Returns a fresh array. */
  slice(lo: Index, hi: Index): Entry[] {
    if (!(lo >= this.offset && hi <= this.offset + this.entries.length && lo <= hi)) assert(false, `unstable slice [${lo},${hi}) out of [${this.offset},${this.offset + this.entries.length})`);
    return this.entries.slice(lo - this.offset, hi - this.offset);
  }
}

/**
 * The writer's compact picture of the logical log (which indexes exist and their terms), kept so
 * that Wal.save can assert, before writing, that what it writes replays without a gap. Terms are
 * stored as runs (one per term change), so memory stays tiny however long the log is.
 */
import type { Entry, Index, SnapshotMetadata, Term } from '../raft/types.js';
import { assert } from '../util/assert.js';

interface TermRun {
  /** First index of the run; the run extends to the next run's index - 1, or to lastIndex. */
  readonly index: Index;
  readonly term: Term;
}

/** Mirrors LogReplay's rules for the writer: overwrite on append, keep-or-discard on a marker. */
export class LogShape {
  /** Invariant: lastIndex >= snapshotIndex; the log holds (snapshotIndex, lastIndex]. */
  #snapshotIndex: Index;
  #lastIndex: Index;
  /** Invariant: sorted by index, first run starts at snapshotIndex + 1 when the log is non-empty, terms increase. */
  #runs: TermRun[] = [];

  constructor(init: { snapshot: SnapshotMetadata | undefined; entries: readonly Entry[] }) {
    this.#snapshotIndex = init.snapshot?.index ?? 0;
    this.#lastIndex = this.#snapshotIndex;
    if (init.entries.length > 0) this.append(init.entries);
  }

  /** Highest index in the logical log (the snapshot index when the log is empty). */
  get lastIndex(): Index {
    return this.#lastIndex;
  }

  /** Index of the latest snapshot marker (0 when none). */
  get snapshotIndex(): Index {
    return this.#snapshotIndex;
  }

  /** Term of the entry at `index`, or undefined when the log does not hold it. */
  termAt(index: Index): Term | undefined {
    if (index <= this.#snapshotIndex || index > this.#lastIndex) return undefined;
    for (let i = this.#runs.length - 1; i >= 0; i--) if (this.#runs[i].index <= index) return this.#runs[i].term;
    return undefined;
  }

  /**
   * Records `entries` (contiguous, non-empty) as appended. Asserts they connect to the log: they
   * start after the snapshot index and at most one past the last index, and terms never decrease.
   */
  append(entries: readonly Entry[]): void {
    const first = entries[0].index;
    if (!(first > this.#snapshotIndex)) assert(false, `entries start at ${first}, at or below the snapshot marker ${this.#snapshotIndex}`);
    if (!(first <= this.#lastIndex + 1)) assert(false, `entries start at ${first}, leaving a gap after ${this.#lastIndex} (save a snapshot marker before the entries that follow it)`);
    while (this.#runs.length > 0 && this.#runs[this.#runs.length - 1].index >= first) this.#runs.pop();
    const previousTerm = first - 1 > this.#snapshotIndex ? this.termAt(first - 1) : undefined;
    let runTerm = this.#runs.length > 0 ? this.#runs[this.#runs.length - 1].term : undefined;
    let lastTerm = previousTerm ?? 0;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i];
      if (!(entry.index === first + i)) assert(false, `entries must be contiguous (${entry.index} at position ${i} after ${first})`);
      if (!(entry.term >= lastTerm)) assert(false, `entry terms never decrease along the log (${entry.term} after ${lastTerm} at ${entry.index})`);
      lastTerm = entry.term;
      if (runTerm !== entry.term) {
        this.#runs.push({ index: entry.index, term: entry.term });
        runTerm = entry.term;
      }
    }
    this.#lastIndex = entries[entries.length - 1].index;
  }

  /** Records a snapshot marker: keeps the log after it if it holds the marker's entry, else discards it. */
  marker(metadata: SnapshotMetadata): void {
    assert(metadata.index >= this.#snapshotIndex, 'snapshot markers never go backwards');
    const keep = metadata.index <= this.#lastIndex && (metadata.index === this.#snapshotIndex || this.termAt(metadata.index) === metadata.term);
    this.#snapshotIndex = metadata.index;
    if (!keep) {
      this.#runs = [];
      this.#lastIndex = metadata.index;
      return;
    }
    // Drop runs that end at or before the marker; trim the one that straddles it.
    let cut = 0;
    while (cut + 1 < this.#runs.length && this.#runs[cut + 1].index <= metadata.index + 1) cut++;
    const runs = this.#runs.slice(cut);
    if (metadata.index === this.#lastIndex) {
      this.#runs = [];
    } else {
      runs[0] = { index: metadata.index + 1, term: runs[0].term };
      this.#runs = runs;
    }
  }
}

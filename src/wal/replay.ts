/**
 * Rebuilds the logical Raft log from WAL records in file order (pure; no I/O).
 *
 * Rules, mirroring what the writer did:
 * - An entry at index i <= the last index truncates the log from i (Raft overwrite), then appends.
 * - An entry that does not follow the log (a gap, or below its first index) starts a new run; the
 *   final check decides whether that was legitimate (it is when a snapshot marker anchors it).
 * - A snapshot marker (m, t) drops entries <= m. Entries after m are kept only if they connect to
 *   the snapshot: the log holds m with term t (Raft §7: "retain log entries following it"), or
 *   the log starts at m+1. Otherwise the log is discarded (the snapshot replaced it).
 * - The latest hard state and the latest marker win.
 * At the end the log must start exactly at (latest marker index, or 0) + 1.
 */
import type { Entry, HardState, SnapshotMetadata } from '../raft/types.js';

import { WalCorruptError } from './errors.js';

/** Where a record came from, for error messages. */
export interface RecordLocation {
  readonly file: string;
  readonly offset: number;
}

/** The replayed durable state. */
export interface ReplayResult {
  readonly hardState: HardState;
  readonly entries: Entry[];
  readonly snapshot?: SnapshotMetadata;
}

/** Accumulates records; call {@link LogReplay.finish} once at the end. */
export class LogReplay {
  /** Invariant: contiguous, entries[k].index === entries[0].index + k. */
  #entries: Entry[] = [];
  /** Location of the record of entries[0] when it started a run (for the final check's error). */
  #anchor: RecordLocation | undefined;
  #hardState: HardState = { term: 0, vote: 0n, commit: 0 };
  #snapshot: SnapshotMetadata | undefined;

  /** Applies an entry record. */
  entry(entry: Entry, location: RecordLocation): void {
    const entries = this.#entries;
    if (entries.length === 0) {
      this.#startRun(entry, location);
      return;
    }
    const first = entries[0].index;
    const next = first + entries.length;
    if (entry.index === next) {
      entries.push(entry);
    } else if (entry.index >= first && entry.index < next) {
      entries.length = entry.index - first;
      if (entries.length === 0) this.#startRun(entry, location);
      else entries.push(entry);
    } else {
      this.#startRun(entry, location);
    }
  }

  /** Applies a hard-state record (latest wins). */
  hardState(hardState: HardState): void {
    this.#hardState = hardState;
  }

  /** Applies a snapshot-marker record (latest wins; trims or discards the log as described above). */
  snapshotMarker(metadata: SnapshotMetadata): void {
    this.#snapshot = metadata;
    const entries = this.#entries;
    if (entries.length === 0) return;
    const first = entries[0].index;
    const last = first + entries.length - 1;
    if (first > metadata.index) {
      // Starts after the snapshot: keep; the final check requires first === index + 1.
      return;
    }
    if (last < metadata.index || entries[metadata.index - first].term !== metadata.term) {
      this.#entries = [];
      this.#anchor = undefined;
      return;
    }
    this.#entries = entries.slice(metadata.index - first + 1);
  }

  /** Validates and returns the result; throws WalCorruptError when entries are missing. */
  finish(): ReplayResult {
    const expectedFirst = (this.#snapshot?.index ?? 0) + 1;
    if (this.#entries.length > 0 && this.#entries[0].index !== expectedFirst) {
      const where = this.#anchor ?? { file: '(unknown)', offset: 0 };
      throw new WalCorruptError({
        ...where,
        detail: `log starts at index ${this.#entries[0].index} but the latest snapshot marker requires ${expectedFirst} (missing entries)`,
      });
    }
    return this.#snapshot === undefined
      ? { hardState: this.#hardState, entries: this.#entries }
      : { hardState: this.#hardState, entries: this.#entries, snapshot: this.#snapshot };
  }

  #startRun(entry: Entry, location: RecordLocation): void {
    this.#entries = [entry];
    this.#anchor = location;
  }
}

/**
 * The revision history of one key, as etcd's `keyIndex` (server/storage/mvcc/key_index.go), in a
 * memory-frugal encoding: pure functions over a value of type {@link KeyHistory}.
 *
 * A history is a list of generations. A generation is the life of the key from a creation to a
 * deletion: `{created, ver, revs}` where `revs` are the main revisions that modified the key in
 * ascending order, `created` is its create revision and `ver` is the number of modifications
 * (a deletion counts as one, as in etcd). Every generation but the last ends with a tombstone
 * (deletion); the last one does too when the key is currently deleted ("closed").
 *
 * Encoding (chosen so that the common case costs no heap object, and appends and reads at the
 * newest revisions cost O(1) however long the history grows):
 * - a `number` r: one open generation `{created: r, ver: 1, revs: [r]}` (a key put once);
 * - an array `[closed, (created, ver, n, rev_1 .. rev_n, n)+]` with `closed` 1 when the last
 *   generation ends in a tombstone. The trailing `n` lets generations be walked from the end.
 *
 * Invariant: revisions strictly increase across the whole history; no generation is empty.
 * Revisions here are main revisions only: a key is modified at most once per main revision, so
 * (main revision, key) identifies a record in the backend.
 */
import { assert } from '../../util/assert.js';

/** Encoded history of one key; see the module comment. */
export type KeyHistory = number | number[];

/** What a key looked like at some revision. */
export interface KeyState {
  /** The main revision of the record holding the key's value (its mod revision). */
  readonly mod: number;
  readonly created: number;
  readonly version: number;
}

interface Generation {
  created: number;
  ver: number;
  revs: number[];
}

const HEADER = 1;

function decode(history: KeyHistory): { closed: boolean; generations: Generation[] } {
  if (typeof history === 'number') return { closed: false, generations: [{ created: history, ver: 1, revs: [history] }] };
  const generations: Generation[] = [];
  let offset = HEADER;
  while (offset < history.length) {
    const n = history[offset + 2];
    generations.push({ created: history[offset], ver: history[offset + 1], revs: history.slice(offset + 3, offset + 3 + n) });
    offset += n + 4;
  }
  return { closed: history[0] === 1, generations };
}

function encode(closed: boolean, generations: readonly Generation[]): KeyHistory | undefined {
  if (generations.length === 0) return undefined;
  if (!closed && generations.length === 1) {
    const only = generations[0];
    if (only.revs.length === 1 && only.ver === 1 && only.created === only.revs[0]) return only.created;
  }
  const out: number[] = [closed ? 1 : 0];
  for (const generation of generations) {
    assert(generation.revs.length > 0, 'a stored generation is never empty');
    out.push(generation.created, generation.ver, generation.revs.length, ...generation.revs, generation.revs.length);
  }
  return out;
}

/** Offset of the last generation in an array history (O(1) thanks to the trailing count). */
function lastGenerationOffset(history: number[]): number {
  const end = history.length - 1;
  return end - history[end] - 3;
}

/** Offset of the generation before the one at `offset`, or -1. */
function previousGenerationOffset(history: number[], offset: number): number {
  return offset === HEADER ? -1 : offset - history[offset - 1] - 4;
}

/** Offset of the generation holding the newest revision <= `revision`, or -1. */
function generationAt(history: number[], revision: number): number {
  let offset = lastGenerationOffset(history);
  while (offset >= 0 && history[offset + 3] > revision) offset = previousGenerationOffset(history, offset);
  return offset;
}

/** Index (0-based within the generation) of the newest revision <= `revision`; the first must be <= it. */
function indexAt(history: number[], offset: number, revision: number): number {
  let low = 0;
  let high = history[offset + 2] - 1;
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    if (history[offset + 3 + middle] <= revision) low = middle;
    else high = middle - 1;
  }
  return low;
}

/** Appends `revision` to the last generation of an array history. */
function appendToLast(history: number[], revision: number, version: number): void {
  const offset = lastGenerationOffset(history);
  const n = history[offset + 2];
  history[offset + 1] = version;
  history[offset + 2] = n + 1;
  history[history.length - 1] = revision;
  history.push(n + 1);
}

/** The key's state in its newest (open) generation, or undefined when it is deleted/absent. */
export function latestState(history: KeyHistory | undefined): KeyState | undefined {
  if (history === undefined) return undefined;
  if (typeof history === 'number') return { mod: history, created: history, version: 1 };
  if (history[0] === 1) return undefined;
  const offset = lastGenerationOffset(history);
  return { mod: history[history.length - 2], created: history[offset], version: history[offset + 1] };
}

/** The newest main revision in the history (a put or a tombstone). */
export function newestRevision(history: KeyHistory): number {
  if (typeof history === 'number') return history;
  return history[history.length - 2];
}

/**
 * Records a put at `revision` (> every revision in the history). Returns the new history
 * (the input array may be reused) and the state written.
 */
export function recordPut(history: KeyHistory | undefined, revision: number): { history: KeyHistory; state: KeyState } {
  if (history === undefined) return { history: revision, state: { mod: revision, created: revision, version: 1 } };
  assert(newestRevision(history) < revision, 'revisions of a key increase');
  if (typeof history === 'number') {
    return { history: [0, history, 2, 2, history, revision, 2], state: { mod: revision, created: history, version: 2 } };
  }
  if (history[0] === 1) {
    history[0] = 0;
    history.push(revision, 1, 1, revision, 1);
    return { history, state: { mod: revision, created: revision, version: 1 } };
  }
  const offset = lastGenerationOffset(history);
  const version = history[offset + 1] + 1;
  appendToLast(history, revision, version);
  return { history, state: { mod: revision, created: history[offset], version } };
}

/** Records a deletion (tombstone) at `revision`; the key must be live. */
export function recordTombstone(history: KeyHistory, revision: number): KeyHistory {
  assert(newestRevision(history) < revision, 'revisions of a key increase');
  if (typeof history === 'number') return [1, history, 2, 2, history, revision, 2];
  assert(history[0] === 0, 'only a live key can be deleted');
  history[0] = 1;
  appendToLast(history, revision, history[lastGenerationOffset(history) + 1] + 1);
  return history;
}

/**
 * Rebuild helper (open): appends a backend record found while scanning revisions in order.
 * `created`/`version` come from the record, because compaction may have removed earlier ones.
 * O(1) per record; may reuse the input array.
 */
export function replayRecord(
  history: KeyHistory | undefined,
  record: { revision: number; kind: 'put'; created: number; version: number } | { revision: number; kind: 'tombstone' },
): KeyHistory {
  const revision = record.revision;
  if (history !== undefined) assert(newestRevision(history) < revision, 'records replay in revision order');
  if (record.kind === 'put') {
    if (history === undefined) {
      return record.created === revision && record.version === 1 ? revision : [0, record.created, record.version, 1, revision, 1];
    }
    if (typeof history === 'number') return [0, history, record.version, 2, history, revision, 2];
    if (history[0] === 1) {
      history[0] = 0;
      history.push(record.created, record.version, 1, revision, 1);
      return history;
    }
    appendToLast(history, revision, record.version);
    return history;
  }
  // A tombstone without a live generation: its generation was partly removed by an interrupted
  // compaction; keep it as a tombstone-only generation for the resumed compaction to drop.
  if (history === undefined) return [1, 0, 1, 1, revision, 1];
  if (typeof history === 'number') return [1, history, 2, 2, history, revision, 2];
  if (history[0] === 1) {
    history.push(0, 1, 1, revision, 1);
    return history;
  }
  history[0] = 1;
  appendToLast(history, revision, history[lastGenerationOffset(history) + 1] + 1);
  return history;
}

/** The key's state at `revision`, or undefined when it did not exist then (or was deleted). */
export function stateAt(history: KeyHistory, revision: number): KeyState | undefined {
  if (typeof history === 'number') return history <= revision ? { mod: history, created: history, version: 1 } : undefined;
  const offset = generationAt(history, revision);
  if (offset < 0) return undefined;
  const n = history[offset + 2];
  const isLast = offset + n + 4 === history.length;
  const closed = !isLast || history[0] === 1;
  const index = indexAt(history, offset, revision);
  if (closed && index === n - 1) return undefined;
  return { mod: history[offset + 3 + index], created: history[offset], version: history[offset + 1] - (n - 1 - index) };
}

/**
 * Compacts the history at `atRevision` exactly as etcd's `keyIndex.compact`: generations whose
 * tombstone is below `atRevision` go; in the generation containing it, revisions below the largest
 * one <= `atRevision` go, and that one too if it is the tombstone. Pushes every removed revision to
 * `removed`. Returns undefined when nothing remains (the key leaves the index).
 */
export function compactHistory(history: KeyHistory, atRevision: number, removed: number[]): KeyHistory | undefined {
  if (typeof history === 'number') return history;
  const { closed, generations } = decode(history);
  let index = 0;
  while (index < generations.length) {
    const generation = generations[index];
    const isLast = index === generations.length - 1;
    const tomb = generation.revs[generation.revs.length - 1];
    if ((!isLast || closed) && tomb < atRevision) {
      removed.push(...generation.revs);
      index += 1;
      continue;
    }
    break;
  }
  const kept = generations.slice(index);
  if (kept.length > 0) {
    const generation = kept[0];
    let last = -1;
    for (let i = 0; i < generation.revs.length && generation.revs[i] <= atRevision; i += 1) last = i;
    if (last > 0) {
      removed.push(...generation.revs.slice(0, last));
      generation.revs = generation.revs.slice(last);
    }
    const isLast = kept.length === 1;
    if (generation.revs.length === 1 && last >= 0 && (!isLast || closed)) {
      removed.push(generation.revs[0]);
      kept.shift();
    }
  }
  return encode(closed, kept);
}

/**
 * Whether the record at `revision` (<= `atRevision`) survives a compaction at `atRevision`: it is
 * the newest revision <= `atRevision` of its generation and not a tombstone. Gives the same answer
 * before and after the history was compacted at or below `atRevision`. O(generations walked + log n).
 */
export function survivesCompaction(history: KeyHistory, revision: number, atRevision: number): boolean {
  if (typeof history === 'number') return history === revision;
  const offset = generationAt(history, revision);
  if (offset < 0) return false;
  const n = history[offset + 2];
  const index = indexAt(history, offset, revision);
  if (history[offset + 3 + index] !== revision) return false;
  const isLast = offset + n + 4 === history.length;
  const closed = !isLast || history[0] === 1;
  if (index === n - 1) return !closed;
  return history[offset + 3 + index + 1] > atRevision;
}

/** Every revision in the history, ascending (tests and diagnostics). */
export function allRevisions(history: KeyHistory): number[] {
  return decode(history).generations.flatMap((generation) => generation.revs);
}

/** Approximate count of revisions held, for statistics. */
export function revisionCount(history: KeyHistory): number {
  return typeof history === 'number' ? 1 : decode(history).generations.reduce((sum, generation) => sum + generation.revs.length, 0);
}

/**
 * The in-memory key index: every key (as a latin1 "binary" string, so that JS string order is
 * byte order) mapped to its {@link KeyHistory}, kept sorted.
 *
 * Structure: a two-level sorted list (a list of sorted chunks, each at most
 * {@link CHUNK_SIZE_MAX} keys; lookups binary-search the chunk list, then the chunk). It costs two
 * array slots per key plus the key string, inserts are a splice of at most one chunk, and range
 * scans walk chunks in order. Chunks are split when full and dropped when empty.
 */
import { assert } from '../../util/assert.js';
import type { KeyHistory } from './history.js';

/** Maximum keys per chunk; a full chunk is split in two halves. */
export const CHUNK_SIZE_MAX = 512;

interface Chunk {
  keys: string[];
  values: KeyHistory[];
}

/** Sorted map from key strings to histories. Not safe to mutate while iterating with a callback. */
export class KeyIndex {
  /** Invariant: chunks are non-empty, sorted, and chunk i's keys all precede chunk i+1's. */
  #chunks: Chunk[] = [];
  #size = 0;
  /**
   * Where the last get() looked (chunk and position), valid while no insert or delete happened
   * since (#layout unchanged): a write looks its key up, then sets it, and set() then skips the
   * second search.
   */
  #hintKey: string | undefined;
  #hintChunk = 0;
  #hintPosition = 0;
  #hintLayout = 0;
  /** Counts inserts and deletes (any change of positions). */
  #layout = 0;

  /** Number of keys. */
  get size(): number {
    return this.#size;
  }

  /** Index of the chunk that holds or would hold `key` (-1 when the index is empty). */
  #chunkFor(key: string): number {
    const chunks = this.#chunks;
    if (chunks.length === 0) return -1;
    let low = 0;
    let high = chunks.length - 1;
    // Last chunk whose first key <= key (or 0).
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (chunks[middle].keys[0] <= key) low = middle;
      else high = middle - 1;
    }
    return low;
  }

  /** Position of the first key >= `key` within the chunk. */
  static #lowerBound(keys: readonly string[], key: string): number {
    let low = 0;
    let high = keys.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (keys[middle] < key) low = middle + 1;
      else high = middle;
    }
    return low;
  }

  get(key: string): KeyHistory | undefined {
    const c = this.#chunkFor(key);
    if (c < 0) return undefined;
    const chunk = this.#chunks[c];
    const i = KeyIndex.#lowerBound(chunk.keys, key);
    this.#hintKey = key;
    this.#hintChunk = c;
    this.#hintPosition = i;
    this.#hintLayout = this.#layout;
    return i < chunk.keys.length && chunk.keys[i] === key ? chunk.values[i] : undefined;
  }

  /** Inserts or replaces. */
  set(key: string, value: KeyHistory): void {
    const hinted = this.#hintKey === key && this.#hintLayout === this.#layout;
    const c = hinted ? this.#hintChunk : this.#chunkFor(key);
    if (c < 0) {
      this.#chunks.push({ keys: [key], values: [value] });
      this.#size = 1;
      this.#layout += 1;
      return;
    }
    const chunk = this.#chunks[c];
    const i = hinted ? this.#hintPosition : KeyIndex.#lowerBound(chunk.keys, key);
    if (i < chunk.keys.length && chunk.keys[i] === key) {
      chunk.values[i] = value;
      return;
    }
    this.#layout += 1;
    if (i === chunk.keys.length) {
      chunk.keys.push(key);
      chunk.values.push(value);
    } else {
      chunk.keys.splice(i, 0, key);
      chunk.values.splice(i, 0, value);
    }
    this.#size += 1;
    if (chunk.keys.length > CHUNK_SIZE_MAX) {
      const half = chunk.keys.length >> 1;
      const right: Chunk = { keys: chunk.keys.slice(half), values: chunk.values.slice(half) };
      chunk.keys.length = half;
      chunk.values.length = half;
      this.#chunks.splice(c + 1, 0, right);
    }
  }

  delete(key: string): boolean {
    const c = this.#chunkFor(key);
    if (c < 0) return false;
    const chunk = this.#chunks[c];
    const i = KeyIndex.#lowerBound(chunk.keys, key);
    if (i >= chunk.keys.length || chunk.keys[i] !== key) return false;
    this.#layout += 1;
    chunk.keys.splice(i, 1);
    chunk.values.splice(i, 1);
    this.#size -= 1;
    if (chunk.keys.length === 0) this.#chunks.splice(c, 1);
    return true;
  }

  /**
   * Calls `visit` for each key in [start, end) in ascending order (`end` undefined = no upper
   * bound) until it returns false. `visit` must not mutate the index.
   */
  forEachInRange(start: string, end: string | undefined, visit: (key: string, history: KeyHistory) => boolean): void {
    let c = this.#chunkFor(start);
    if (c < 0) return;
    let i = KeyIndex.#lowerBound(this.#chunks[c].keys, start);
    const chunks = this.#chunks;
    for (; c < chunks.length; c += 1, i = 0) {
      const { keys, values } = chunks[c];
      for (; i < keys.length; i += 1) {
        const key = keys[i];
        if (end !== undefined && key >= end) return;
        if (!visit(key, values[i])) return;
      }
    }
  }

  /** Up to `max` keys strictly after `after` (undefined = from the start), with their histories. */
  entriesAfter(after: string | undefined, max: number): Array<[string, KeyHistory]> {
    assert(max > 0, 'positive batch');
    const out: Array<[string, KeyHistory]> = [];
    let c = after === undefined ? 0 : this.#chunkFor(after);
    if (c < 0 || this.#chunks.length === 0) return out;
    const chunks = this.#chunks;
    let i = 0;
    if (after !== undefined) {
      const keys = chunks[c].keys;
      i = KeyIndex.#lowerBound(keys, after);
      if (i < keys.length && keys[i] === after) i += 1;
    }
    for (; c < chunks.length; c += 1, i = 0) {
      const { keys, values } = chunks[c];
      for (; i < keys.length; i += 1) {
        out.push([keys[i], values[i]]);
        if (out.length >= max) return out;
      }
    }
    return out;
  }

  /** Checks the sortedness invariant (tests). */
  assertInvariants(): void {
    let previous: string | undefined;
    let count = 0;
    for (const chunk of this.#chunks) {
      assert(chunk.keys.length > 0 && chunk.keys.length === chunk.values.length, 'chunk shape');
      for (const key of chunk.keys) {
        assert(previous === undefined || previous < key, 'keys sorted and unique');
        previous = key;
        count += 1;
      }
    }
    assert(count === this.#size, 'size matches');
  }
}

/**
 * Paged reads of one Range at one revision (etcd's Range, server/etcdserver/txn/range.go and mvcc
 * `rangeKeys`), so that neither the store nor its callers hold more than a page of key-values.
 *
 * Plans, chosen from the request once:
 * - 'count-only': walks the key index, counting; no records are read.
 * - 'key-order' (no sort, or KEY ascending; min/max filters allowed): walks the index from the
 *   last visited key, picks up to a page of keys alive at the revision that pass the filters,
 *   reads their records with one LevelDB getMany, hands the page out, and goes on. Once `limit`
 *   key-values went out it keeps walking only to count (and to learn `more`).
 * - 'sorted' (KEY descending, VERSION, CREATE, MOD): collects the filtered (key, state) pairs from
 *   the index (no values: about 100 bytes per key, a fraction of the index's own memory), sorts
 *   them stably as etcd's results come (key order first), cuts at `limit`, then reads records a
 *   page at a time in that order.
 * - 'value-sorted' (VALUE): as 'sorted', but must read every value to sort; it keeps only the best
 *   `limit` candidates (all of them without a limit) and refuses, with grpc's send-limit error,
 *   once the candidates it holds exceed `sortBytesMax`.
 *
 * Bounds: a page reads at most {@link RANGE_PAGE_KEYS_MAX} records; the next page's key count
 * follows the largest record of the last one so a page is about {@link RANGE_PAGE_BYTES_TARGET}
 * bytes. A value's size is unknown before it is read, so after small records one page may reach
 * RANGE_PAGE_KEYS_MAX × the largest value (etcd's max-request-bytes). Index walks visit at most
 * {@link RANGE_VISIT_STEP_KEYS} keys per synchronous step and yield to the event loop between
 * steps.
 *
 * Consistency: the store pins the cursor's revision until it is closed (compaction does not prune
 * the index or delete records past it), and applies only add revisions above it, so every page
 * reads the same revision however long the cursor lives and whatever is written meanwhile.
 */
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { assert } from '../../util/assert.js';
import { KvdError, responseTooLargeMessage } from '../../util/errors.js';
import { toKeyValue } from './codec.js';
import { stateAt, type KeyState } from './history.js';
import type { KeyIndex } from './key-index.js';
import type { KeyRange } from './range.js';
import type { KeyValue, RangeCursor, RangeRequest, Revision, SortTarget } from './types.js';

/** Aimed-at bytes of one page's records. */
export const RANGE_PAGE_BYTES_TARGET = 1 << 20;
/** Most records one page reads (one LevelDB getMany). */
export const RANGE_PAGE_KEYS_MAX = 256;
/** Records of a cursor's first page, before it has seen any record size. */
const RANGE_PAGE_KEYS_INITIAL = 64;
/** Index entries visited per synchronous step of a walk. */
export const RANGE_VISIT_STEP_KEYS = 10_000;

/** What the cursor needs from the store. */
export interface RangeCursorSource {
  readonly index: KeyIndex;
  /** Reads the records of keys at their states' revisions; same order, undefined for a missing one. */
  readRecords(wanted: ReadonlyArray<{ readonly key: string; readonly state: KeyState }>): Promise<Array<Buffer | undefined>>;
  /** Throws (KvdError 'stopped' or 'internal') when the store can no longer serve reads. */
  checkUsable(): void;
}

/** Options of {@link MvccStore.openRange}. */
export interface RangeCursorOptions {
  /** Ends the read: the next page rejects with the signal's reason. */
  readonly signal?: AbortSignal;
  /** Bytes of candidate values a VALUE sort may hold (default: unbounded). */
  readonly sortBytesMax?: number;
  /** Most records per page; default and maximum {@link RANGE_PAGE_KEYS_MAX} (tests use small pages). */
  readonly pageKeysMax?: number;
}

type Plan = 'count-only' | 'key-order' | 'sorted' | 'value-sorted';

interface Picked {
  readonly key: string;
  readonly state: KeyState;
}

/** See the module comment. Made by the store, which pins `readRevision` and passes `release`. */
export class MvccRangeCursor implements RangeCursor {
  readonly revision: Revision;
  readonly readRevision: Revision;
  readonly #source: RangeCursorSource;
  readonly #request: RangeRequest;
  readonly #range: KeyRange;
  readonly #plan: Plan;
  /** Where the signal is read from, lazily: a one-page read never looks (see #checkLive). */
  readonly #callOptions: RangeCursorOptions;
  /** Pages handed out so far. */
  #pagesOut = 0;
  readonly #sortBytesMax: number;
  readonly #pageKeysMax: number;
  readonly #release: () => void;
  /** Invariant: 'done' and 'closed' have released the revision. */
  #state: 'open' | 'done' | 'closed' = 'open';
  #busy = false;
  #pageKeys: number;

  // Walk state. Invariant: every key <= #after in the range has been visited exactly once.
  #after: string | undefined;
  #walked = false;
  /** Keys alive at readRevision visited so far (etcd's count). */
  #count = 0;
  /** Of those, keys passing the filters. */
  #selected = 0;
  /** Key-values handed out. Invariant: <= limit when limit > 0. */
  #emitted = 0;

  /**
   * Sorted plans: how many keys (in key order) are sorted. etcd's quirk: with sort order NONE, a
   * non-key target, a limit and no filters, it fetches limit + 1 keys in key order and sorts only
   * those (range.go); the api edge turns NONE into ASCEND, but the store stays exact.
   */
  readonly #sortedKeysMax: number;
  /** Sorted plans: the keys of the response in order, and how many were handed out. */
  #ordered: Picked[] | undefined;
  #orderedAt = 0;
  /** Value-sorted plan: the response, values read. */
  #sortedValues: KeyValue[] | undefined;

  constructor(options: {
    source: RangeCursorSource; request: RangeRequest; range: KeyRange; revision: Revision; readRevision: Revision; release: () => void; options: RangeCursorOptions;
  }) {
    this.#source = options.source;
    this.#request = options.request;
    this.#range = options.range;
    this.revision = options.revision;
    this.readRevision = options.readRevision;
    this.#release = options.release;
    this.#callOptions = options.options;
    this.#sortBytesMax = options.options.sortBytesMax ?? Number.POSITIVE_INFINITY;
    this.#pageKeysMax = Math.min(RANGE_PAGE_KEYS_MAX, Math.max(1, options.options.pageKeysMax ?? RANGE_PAGE_KEYS_MAX));
    this.#pageKeys = Math.min(RANGE_PAGE_KEYS_INITIAL, this.#pageKeysMax);
    this.#plan = planOf(options.request);
    const { request } = options;
    const filtered = request.minModRevision !== 0 || request.maxModRevision !== 0 || request.minCreateRevision !== 0 || request.maxCreateRevision !== 0;
    this.#sortedKeysMax = request.sortOrder === 'none' && request.limit > 0 && !filtered ? request.limit + 1 : Number.MAX_SAFE_INTEGER;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<readonly KeyValue[], undefined>> {
    assert(!this.#busy, 'a range cursor refuses concurrent next() calls');
    if (this.#state !== 'open') return { done: true, value: undefined };
    this.#busy = true;
    try {
      const page = await this.#nextPage();
      if (page !== undefined) {
        this.#pagesOut += 1;
        return { done: false, value: page };
      }
      this.#finish('done');
      return { done: true, value: undefined };
    } catch (error: unknown) {
      this.#finish('closed');
      throw error;
    } finally {
      this.#busy = false;
    }
  }

  async return(): Promise<IteratorResult<readonly KeyValue[], undefined>> {
    if (this.#state === 'open') this.#finish('closed');
    return { done: true, value: undefined };
  }

  summary(): { readonly count: number; readonly more: boolean } {
    assert(this.#state === 'done', 'summary() after the last page');
    const limit = this.#request.limit;
    return { count: this.#count, more: this.#plan !== 'count-only' && limit > 0 && this.#selected > limit };
  }

  #finish(state: 'done' | 'closed'): void {
    this.#state = state;
    this.#ordered = undefined;
    this.#sortedValues = undefined;
    this.#release();
  }

  /**
   * Throws when the caller gave up or the store closed. The caller's signal is consulted from the
   * second page on only: making it costs a small read more than the read itself, and a one-page
   * read ends before a cancellation could save anything.
   */
  #checkLive(): void {
    if (this.#pagesOut > 0) {
      const signal = this.#callOptions.signal;
      if (signal?.aborted === true) {
        const reason: unknown = signal.reason;
        throw reason instanceof Error ? reason : new KvdError('watch-canceled', { detail: 'etcdserver: request canceled' });
      }
    }
    this.#source.checkUsable();
  }

  #nextPage(): Promise<KeyValue[] | undefined> {
    switch (this.#plan) {
      case 'count-only':
        return this.#countOnly();
      case 'key-order':
        return this.#nextInKeyOrder();
      case 'sorted':
        return this.#nextSorted();
      case 'value-sorted':
        return this.#nextValueSorted();
    }
  }

  async #countOnly(): Promise<undefined> {
    while (!this.#walked) {
      this.#checkLive();
      this.#walk(0, undefined);
      if (!this.#walked) await yieldToEventLoop();
    }
    return undefined;
  }

  async #nextInKeyOrder(): Promise<KeyValue[] | undefined> {
    const limit = this.#request.limit;
    while (!this.#walked) {
      this.#checkLive();
      const wanted = limit > 0 ? Math.min(this.#pageKeys, limit - this.#emitted) : this.#pageKeys;
      const picked: Picked[] = [];
      this.#walk(wanted, picked);
      if (picked.length > 0) return this.#read(picked);
      if (!this.#walked) await yieldToEventLoop();
    }
    return undefined;
  }

  async #nextSorted(): Promise<KeyValue[] | undefined> {
    if (this.#ordered === undefined) this.#ordered = await this.#collectSorted();
    const ordered = this.#ordered;
    if (this.#orderedAt >= ordered.length) return undefined;
    this.#checkLive();
    const picked = ordered.slice(this.#orderedAt, this.#orderedAt + this.#pageKeys);
    this.#orderedAt += picked.length;
    return this.#read(picked);
  }

  async #nextValueSorted(): Promise<KeyValue[] | undefined> {
    if (this.#sortedValues === undefined) this.#sortedValues = await this.#collectValueSorted();
    const sorted = this.#sortedValues;
    if (this.#orderedAt >= sorted.length) return undefined;
    const page = sorted.slice(this.#orderedAt, this.#orderedAt + this.#pageKeysMax);
    // Let go of what was handed out.
    sorted.fill(EMPTY_SLOT, this.#orderedAt, this.#orderedAt + page.length);
    this.#orderedAt += page.length;
    this.#emitted += page.length;
    return page;
  }

  /**
   * One synchronous step of the index walk: visits up to {@link RANGE_VISIT_STEP_KEYS} keys after
   * #after, counting live keys and filtered ones, and appends up to `wanted` filtered keys to
   * `picked` (stopping right after the last one). Sets #walked at the end of the range.
   */
  #walk(wanted: number, picked: Picked[] | undefined): void {
    const range = this.#range;
    const revision = this.readRevision;
    const visit = (key: string, state: KeyState | undefined): boolean => {
      this.#after = key;
      if (state === undefined) return true;
      this.#count += 1;
      if (!passesFilters(this.#request, state)) return true;
      this.#selected += 1;
      if (picked !== undefined && picked.length < wanted) {
        picked.push({ key, state });
        if (picked.length >= wanted) return false;
      }
      return true;
    };
    if (range.kind === 'single') {
      assert(this.#after === undefined, 'a single key is visited once');
      const history = this.#source.index.get(range.key);
      visit(range.key, history === undefined ? undefined : stateAt(history, revision));
      this.#walked = true;
      return;
    }
    if (range.end !== undefined && range.end <= range.start) {
      this.#walked = true;
      return;
    }
    const start = this.#after === undefined ? range.start : `${this.#after}\u0000`;
    let visited = 0;
    let stopped = false;
    this.#source.index.forEachInRange(start, range.end, (key, history) => {
      visited += 1;
      if (!visit(key, stateAt(history, revision)) || visited >= RANGE_VISIT_STEP_KEYS) {
        stopped = true;
        return false;
      }
      return true;
    });
    if (!stopped) this.#walked = true;
  }

  /** The first #sortedKeysMax filtered keys of the range, in key order; walks it all (to count) in steps. */
  async #collectAll(): Promise<Picked[]> {
    const all: Picked[] = [];
    while (!this.#walked) {
      this.#checkLive();
      this.#walk(this.#sortedKeysMax - all.length, all);
      if (!this.#walked) await yieldToEventLoop();
    }
    return all;
  }

  /** The keys of a 'sorted' response, in response order, cut at limit. */
  async #collectSorted(): Promise<Picked[]> {
    const all = await this.#collectAll();
    const { sortOrder, sortTarget, limit } = this.#request;
    if (sortTarget === 'key') {
      assert(sortOrder === 'descend', 'KEY ascending is read in key order');
      all.reverse();
    } else {
      assert(sortTarget !== 'value', 'VALUE sorts are value-sorted plans');
      const by = stateComparator(sortTarget);
      const sign = sortOrder === 'descend' ? -1 : 1;
      all.sort((a, b) => sign * by(a.state, b.state)); // stable: ties stay in key order, as etcd's results
    }
    if (limit > 0 && all.length > limit) all.length = limit;
    return all;
  }

  /** The key-values of a 'value-sorted' response, in order, cut at limit, holding at most the best candidates. */
  async #collectValueSorted(): Promise<KeyValue[]> {
    const keys = await this.#collectAll();
    const { sortOrder, limit, keysOnly } = this.#request;
    const sign = sortOrder === 'descend' ? -1 : 1;
    const byValue = (a: KeyValue, b: KeyValue): number => sign * Buffer.compare(a.value, b.value);
    let candidates: KeyValue[] = [];
    let heldBytes = 0;
    const cut = (): void => {
      candidates.sort(byValue); // stable, and candidates arrive in key order: ties keep key order
      if (limit > 0 && candidates.length > limit) candidates.length = limit;
      heldBytes = candidates.reduce((sum, kv) => sum + kv.key.length + kv.value.length, 0);
    };
    for (let at = 0; at < keys.length;) {
      this.#checkLive();
      const picked = keys.slice(at, at + this.#pageKeys);
      at += picked.length;
      for (const kv of await this.#read(picked, 'values')) {
        candidates.push(kv);
        heldBytes += kv.key.length + kv.value.length;
      }
      if (limit > 0 && candidates.length >= 2 * limit + this.#pageKeysMax) cut();
      if (heldBytes > this.#sortBytesMax) {
        throw new KvdError('response-too-large', { detail: responseTooLargeMessage(heldBytes, this.#sortBytesMax) });
      }
    }
    cut();
    this.#emitted = 0;
    if (keysOnly) candidates = candidates.map((kv) => ({ ...kv, value: EMPTY_VALUE }));
    return candidates;
  }

  /** Reads the records of `picked` (one getMany) and adapts the page size to their sizes. */
  async #read(picked: readonly Picked[], values: 'values' | 'as-requested' = 'as-requested'): Promise<KeyValue[]> {
    let records: Array<Buffer | undefined>;
    try {
      records = await this.#source.readRecords(picked);
    } catch (error: unknown) {
      this.#source.checkUsable(); // a store closed under the read reports 'stopped'
      throw error;
    }
    this.#checkLive();
    const omit = values === 'as-requested' && this.#request.keysOnly;
    let largest = 1;
    const kvs = picked.map(({ key, state }, i) => {
      const record = records[i];
      assert(record !== undefined, 'a record at a pinned revision is in the backend');
      if (record.length > largest) largest = record.length;
      return toKeyValue(key, state.mod, record, omit ? 'omit' : 'include');
    });
    this.#pageKeys = Math.max(1, Math.min(this.#pageKeysMax, Math.floor(RANGE_PAGE_BYTES_TARGET / largest)));
    if (values === 'as-requested') this.#emitted += kvs.length;
    return kvs;
  }
}

const EMPTY_VALUE = new Uint8Array(0);
const EMPTY_SLOT: KeyValue = { key: EMPTY_VALUE, createRevision: 0, modRevision: 0, version: 0, value: EMPTY_VALUE, lease: 0n };

/** Which plan serves `request` (its sort order is already normalised by the api edge or validate). */
function planOf(request: RangeRequest): Plan {
  if (request.countOnly) return 'count-only';
  let order = request.sortOrder;
  // As etcd: results come in key order; a non-key target with order NONE sorts ascending, and KEY
  // ascending is key order.
  if (request.sortTarget !== 'key' && order === 'none') order = 'ascend';
  else if (request.sortTarget === 'key' && order === 'ascend') order = 'none';
  if (order === 'none') return 'key-order';
  return request.sortTarget === 'value' ? 'value-sorted' : 'sorted';
}

function passesFilters(request: RangeRequest, state: KeyState): boolean {
  if (request.maxModRevision !== 0 && state.mod > request.maxModRevision) return false;
  if (request.minModRevision !== 0 && state.mod < request.minModRevision) return false;
  if (request.maxCreateRevision !== 0 && state.created > request.maxCreateRevision) return false;
  if (request.minCreateRevision !== 0 && state.created < request.minCreateRevision) return false;
  return true;
}

function stateComparator(target: Exclude<SortTarget, 'key' | 'value'>): (a: KeyState, b: KeyState) => number {
  switch (target) {
    case 'version':
      return (a, b) => a.version - b.version;
    case 'create':
      return (a, b) => a.created - b.created;
    case 'mod':
      return (a, b) => a.mod - b.mod;
  }
}

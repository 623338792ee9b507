/**
 * The watch hub: delivers key-space changes to watchers, in revision order, with no gap and no
 * duplicate, without ever letting a slow watcher block the apply path.
 *
 * Design (after etcd's watchable store: synced / unsynced / victim watchers):
 * - Every live watcher is in the match index: single keys in a Map; prefixes in a Map probed
 *   with each prefix length in use; other ranges grouped by identical range and scanned.
 *   `notify()` is synchronous and costs O(events × (prefix lengths + other range groups +
 *   matching watchers)).
 * - A watcher is `synced` when everything up to the hub's head has been handed to its sink: live
 *   events then go straight to `sink.send()`.
 * - A watcher is `catching-up` when it started in the past, or its sink said `'full'`. A
 *   background loop (scheduled with setImmediate, at most `maxConcurrentCatchUps` reads in flight)
 *   reads history in bounded batches from `nextRevision` up to its target, and is synced again
 *   once history reaches it, in one synchronous step, so no live event can slip between (no gap);
 *   `nextRevision` guards every delivery (no duplicate). A watcher without prevKv targets the
 *   hub's head: live events go past it, and it reads them like the rest, mostly from the recent
 *   revisions the hub keeps (no per-watcher copy: under a burst to 10,000 watchers of one key the
 *   copies were most of a member's garbage). A prevKv watcher targets `bufferFrom` while
 *   `notify()` buffers its live events above `bufferFrom` in a bounded pending list, sent when
 *   history reaches `bufferFrom`. If the pending list would overflow, it is dropped and
 *   `bufferFrom` moves to the head: those events are read from history instead.
 * - A sink that answers `'full'` during catch-up makes the watcher wait `retryDelayMs` (a victim).
 * - A watcher whose next needed revision has been compacted is canceled with the compact revision.
 *
 * Sinks are called only from `notify()`, `requestProgress()`, `reportProgress()` and the
 * background loop, never from inside `watch()`.
 */
import type { Event, Revision } from '../mvcc/types.js';
import { assert } from '../../util/assert.js';
import { KvdError, errorMessage, isKvdError } from '../../util/errors.js';
import { keySelector, keyString, selects, type KeySelector } from './key-range.js';

/** The slice of the MVCC store the hub reads history from (declared here, structurally). */
export interface HistorySource {
  /** The newest applied revision. */
  readonly currentRevision: Revision;
  /** Revisions below this are compacted away; this one stays readable (0 when nothing was compacted). */
  readonly compactedRevision: Revision;
  /**
   * Events on keys in [key, rangeEnd) (etcd range rules) with revision in
   * [fromRevision, toRevision], in revision order, at most about `limit` events, never splitting
   * one revision. `lastRevision`: every such event with revision <= lastRevision was returned.
   * Throws KvdError('compacted') when fromRevision < compactedRevision.
   */
  changes(options: {
    key: Uint8Array;
    rangeEnd: Uint8Array;
    fromRevision: Revision;
    toRevision?: Revision;
    limit: number;
    prevKv?: boolean;
  }): Promise<{ events: readonly Event[]; lastRevision: Revision }>;
}

/** What a client asked to watch (decoded from WatchCreateRequest by the API edge). */
export interface WatchRequest {
  readonly key: Uint8Array;
  /** Empty: the single key; [0]: every key >= key; else [key, rangeEnd). */
  readonly rangeEnd: Uint8Array;
  /** Inclusive; 0 = "now" (current revision + 1). Negative values are refused by the API edge. */
  readonly startRevision: Revision;
  /** Whether events carry the previous key-value (stripped otherwise). */
  readonly prevKv: boolean;
  readonly filters: { readonly noPut: boolean; readonly noDelete: boolean };
  /** Whether idle periodic progress notifications are wanted. */
  readonly progressNotify: boolean;
}

/** One delivery: events of whole revisions in order; all matching events <= `revision` are delivered. */
export interface WatchResponse {
  readonly revision: Revision;
  readonly events: Event[];
}

/** `'ok'`: the response was taken. `'full'`: it was NOT taken; the hub will catch up later. */
export type SendResult = 'ok' | 'full';

/** Where one watcher's output goes (the API edge's per-watch adapter over a gRPC stream). */
export interface WatchSink {
  /**
   * Must not throw; a throwing sink is canceled with reason 'internal'. The events array may be
   * the one other watchers' responses carry too: read it, never change it.
   */
  send(response: WatchResponse): SendResult;
  /** The hub ended the watch (compaction or error). Called at most once; never after `cancel()`. */
  canceled(options: { reason: string; compactRevision: Revision }): void;
  /** All matching events with revision <= `revision` have been sent. */
  progress(revision: Revision): void;
  /**
   * Optional: false while send() would answer 'full'. A catching-up watcher whose sink has no
   * room starts no step (it would read history it could not send) and waits for its retry.
   */
  ready?(): boolean;
}

/** The handle returned by {@link WatchHub.watch}. */
export interface Watcher {
  /** Hub-wide unique id (not the stream's client-visible watch id). */
  readonly id: number;
  /** 'synced': caught up with the hub's head; 'catching-up': behind (or its sink was full). */
  readonly mode: 'synced' | 'catching-up' | 'canceled';
  /** Stops the watch; the sink is not called again. Idempotent. */
  cancel(): void;
  /**
   * Asks for a progress notification: sent now when synced, else as soon as the watcher is
   * synced again (etcd sends progress only for synced watchers).
   */
  requestProgress(): void;
}

/** Structured events for logs and tests. */
export type WatchHubEvent =
  | { readonly type: 'unsynced'; readonly watcherId: number; readonly reason: UnsyncReason }
  | { readonly type: 'synced'; readonly watcherId: number }
  | { readonly type: 'pending-overflow'; readonly watcherId: number }
  | { readonly type: 'canceled'; readonly watcherId: number; readonly reason: string; readonly compactRevision: Revision };

/** Construction options; every bound has a named default (see DEFAULTS). */
export interface WatchHubOptions {
  readonly history: HistorySource;
  /** Live events buffered per catching-up watcher before falling back to history. Default 1024. */
  readonly maxPendingEventsPerWatcher?: number;
  /** History events read per catch-up step. Default 1000. */
  readonly catchUpBatchEvents?: number;
  /** History reads in flight at once. Default 8. */
  readonly maxConcurrentCatchUps?: number;
  /** Delay before retrying a watcher whose sink was full or whose read made no progress. Default 10 ms. */
  readonly retryDelayMs?: number;
  /** Idle progress interval; 0 = no timer (the owner calls reportProgress()). Default 10 min, floor 100 ms. */
  readonly progressIntervalMs?: number;
  /** Refuse new watchers beyond this (KvdError 'too-many-requests'). Default 100,000. */
  readonly maxWatchers?: number;
  /**
   * Recent revisions kept as notify() delivered them, for catch-up reads (see #recent): at most
   * this many key + value bytes (default 16 MiB) and this many revisions (default 10,000).
   */
  readonly recentBytesMax?: number;
  readonly recentRevisionsMax?: number;
  readonly onEvent?: (event: WatchHubEvent) => void;
}

/** Counters for metrics. */
export interface WatchHubStats {
  readonly watchers: number;
  readonly synced: number;
  readonly catchingUp: number;
  /** Catching-up watchers waiting out `retryDelayMs` (etcd's victims). */
  readonly victims: number;
  /** Live events buffered in pending lists. */
  readonly pendingEvents: number;
  readonly headRevision: Revision;
}

type Mode = 'synced' | 'catching-up' | 'canceled';
type UnsyncReason = 'start-in-past' | 'sink-full' | 'store-replaced' | 'prev-kv';
/** Where a catching-up watcher is in the background loop. */
type Step = 'none' | 'queued' | 'running' | 'retry';

class WatcherState implements Watcher {
  readonly id: number;
  readonly request: WatchRequest;
  readonly sink: WatchSink;
  readonly selector: KeySelector;
  /** Key of its index slot (single-key map or range-group map). */
  readonly slot: string;
  mode: Mode = 'catching-up';
  step: Step = 'none';
  /** Invariant: every matching event with revision < nextRevision has been sent (or filtered). */
  nextRevision: Revision;
  /**
   * Catching-up with prevKv only (empty otherwise). Invariant: `pending` holds every matching
   * event with revision > bufferFrom.
   */
  bufferFrom: Revision = 0;
  pending: Event[] = [];
  /** Progress bookkeeping: no events sent since the last periodic report. */
  progressIdle = true;
  progressRequested = false;
  /**
   * Set while the watcher reads live revisions from history only to fill prevKv: those are sent
   * one response per revision, as a synced watcher would have received them (etcd does so).
   */
  perRevision = false;
  readonly #onCancel: (watcher: WatcherState) => void;
  readonly #onProgress: (watcher: WatcherState) => void;

  constructor(init: {
    id: number;
    request: WatchRequest;
    sink: WatchSink;
    nextRevision: Revision;
    onCancel: (watcher: WatcherState) => void;
    onProgress: (watcher: WatcherState) => void;
  }) {
    this.id = init.id;
    this.request = init.request;
    this.sink = init.sink;
    this.selector = keySelector(init.request);
    this.slot = this.selector.kind === 'single' || this.selector.kind === 'prefix' ? keyString(this.selector.key) : rangeSlot(this.selector);
    this.nextRevision = init.nextRevision;
    this.#onCancel = init.onCancel;
    this.#onProgress = init.onProgress;
  }

  cancel(): void {
    if (this.mode !== 'canceled') this.#onCancel(this);
  }

  requestProgress(): void {
    if (this.mode !== 'canceled') this.#onProgress(this);
  }
}

function rangeSlot(selector: KeySelector): string {
  const end = selector.kind === 'range' ? keyString(selector.rangeEnd) : '\u0000';
  return `${selector.kind}|${keyString(selector.key).length}|${keyString(selector.key)}|${end}`;
}

interface RangeGroup {
  readonly selector: KeySelector;
  readonly watchers: Set<WatcherState>;
}

/** One applied revision and its events, as the server hands them to {@link WatchHub.notify}. */
export interface RevisionChanges {
  readonly revision: Revision;
  readonly events: readonly Event[];
}

const DEFAULTS = {
  maxPendingEventsPerWatcher: 1024,
  catchUpBatchEvents: 1000,
  maxConcurrentCatchUps: 8,
  retryDelayMs: 10,
  progressIntervalMs: 10 * 60 * 1000,
  maxWatchers: 100_000,
  recentBytesMax: 16 * 1024 * 1024,
  recentRevisionsMax: 10_000,
} as const;
const MIN_PROGRESS_INTERVAL_MS = 100;

/**
 * The watch hub. One per member; the server calls {@link notify} after each applied batch and
 * the Watch service calls {@link watch} per watch-create request. Pure of Raft and of the server.
 */
export class WatchHub {
  readonly #history: HistorySource;
  readonly #maxPending: number;
  readonly #batchEvents: number;
  readonly #maxConcurrent: number;
  readonly #retryDelayMs: number;
  readonly #maxWatchers: number;
  readonly #onEvent: (event: WatchHubEvent) => void;

  /** Invariant: the highest revision passed to notify(), or the store's revision at construction. */
  #head: Revision;
  #nextId = 1;
  #closed = false;
  readonly #watchers = new Set<WatcherState>();
  readonly #singles = new Map<string, Set<WatcherState>>();
  readonly #prefixes = new Map<string, Set<WatcherState>>();
  /** Prefix length → number of #prefixes slots of that length (the lengths to probe). */
  readonly #prefixLengths = new Map<number, number>();
  readonly #ranges = new Map<string, RangeGroup>();
  readonly #progressWatchers = new Set<WatcherState>();
  /** Catching-up watchers ready for a step, FIFO. */
  readonly #queue = new Set<WatcherState>();
  readonly #retry = new Set<WatcherState>();
  #running = 0;
  #syncedCount = 0;
  #pendingEvents = 0;
  #pumpScheduled = false;
  #retryTimer: NodeJS.Timeout | undefined;
  readonly #progressTimer: NodeJS.Timeout | undefined;
  /**
   * The most recent revisions' events as notify() delivered them (no prevKv), oldest first, from
   * #recent[#recentStart] up to #head with no gap. A catch-up step that needs no prevKv reads from
   * here instead of the store: no read, and the same Event objects the live path delivered, so
   * their wire encoding (cached per Event at the API edge) is shared by every watcher. Bounded by
   * #recentBytesMax key + value bytes and #recentRevisionsMax revisions; cleared when the store is
   * replaced.
   */
  #recent: Array<{ readonly item: RevisionChanges; readonly bytes: number }> = [];
  #recentStart = 0;
  #recentBytes = 0;
  readonly #recentBytesMax: number;
  readonly #recentRevisionsMax: number;
  /**
   * The last read from the recent revisions, for the next watcher of the same keys and filters
   * from the same revision: under a burst, the watchers of one key that fell behind together read
   * the same events, and share one array (sinks only read it) instead of one copy each. Recent
   * revisions only grow at the end and are dropped from the front, so an answer for revisions
   * still kept stays true; cleared with them.
   */
  #lastRecentRead: { readonly kind: KeySelector['kind']; readonly slot: string; readonly filters: WatchRequest['filters']; readonly from: Revision; readonly to: Revision; readonly result: { events: Event[]; lastRevision: Revision } } | undefined;

  constructor(options: WatchHubOptions) {
    this.#history = options.history;
    this.#maxPending = options.maxPendingEventsPerWatcher ?? DEFAULTS.maxPendingEventsPerWatcher;
    this.#batchEvents = options.catchUpBatchEvents ?? DEFAULTS.catchUpBatchEvents;
    this.#maxConcurrent = options.maxConcurrentCatchUps ?? DEFAULTS.maxConcurrentCatchUps;
    this.#retryDelayMs = options.retryDelayMs ?? DEFAULTS.retryDelayMs;
    this.#maxWatchers = options.maxWatchers ?? DEFAULTS.maxWatchers;
    this.#recentBytesMax = options.recentBytesMax ?? DEFAULTS.recentBytesMax;
    this.#recentRevisionsMax = options.recentRevisionsMax ?? DEFAULTS.recentRevisionsMax;
    this.#onEvent = options.onEvent ?? (() => {});
    assert(this.#maxPending >= 1 && this.#batchEvents >= 1 && this.#maxConcurrent >= 1, 'watch hub bounds must be positive');
    this.#head = this.#history.currentRevision;
    const interval = options.progressIntervalMs ?? DEFAULTS.progressIntervalMs;
    if (interval > 0) {
      const every = Math.max(interval, MIN_PROGRESS_INTERVAL_MS);
      this.#progressTimer = setInterval(() => this.reportProgress(), every);
      this.#progressTimer.unref();
    }
  }

  /** The highest revision the hub has been notified of. */
  get headRevision(): Revision {
    return this.#head;
  }

  /**
   * Starts a watch. Returns at once; every sink call happens later (from notify() or the
   * background loop), so the caller can announce the watch before any event or cancel.
   * Throws KvdError('too-many-requests') beyond `maxWatchers`, KvdError('stopped') after close().
   */
  watch(request: WatchRequest, sink: WatchSink): Watcher {
    if (this.#closed) throw new KvdError('stopped');
    if (this.#watchers.size >= this.#maxWatchers) throw new KvdError('too-many-requests');
    assert(request.startRevision >= 0, 'negative start revisions are refused at the API edge');
    const now = Math.max(this.#head, this.#history.currentRevision) + 1;
    const start = request.startRevision === 0 ? now : request.startRevision;
    const watcher = new WatcherState({
      id: this.#nextId++,
      request,
      sink,
      nextRevision: start,
      onCancel: (w) => this.#remove(w),
      onProgress: (w) => this.#requestProgress(w),
    });
    this.#watchers.add(watcher);
    this.#index(watcher);
    if (request.progressNotify) this.#progressWatchers.add(watcher);
    if (start > this.#head) {
      watcher.mode = 'synced';
      this.#syncedCount++;
    } else {
      this.#startCatchUp(watcher, { from: start, reason: 'start-in-past' });
    }
    return watcher;
  }

  /**
   * Feeds newly applied revisions, in order, each greater than the last notified. Synchronous;
   * never waits on a sink. Events should carry prevKv (stripped for watchers that did not ask).
   */
  notify(batch: readonly RevisionChanges[]): void {
    if (this.#closed || batch.length === 0) return;
    // With nobody to deliver to and nobody catching up, the recent revisions are not kept either
    // (a watcher created later that starts in the past reads those revisions from the store, as it
    // does beyond the cache): keeping them cost every write without watchers an Event array that
    // lived long enough to be promoted to the old generation.
    const watching = this.#watchers.size > 0;
    if (!watching && this.#recent.length > 0) this.#forgetRecent();
    const deliveries = new Map<WatcherState, Event[]>();
    for (const item of batch) {
      if (!(item.revision > this.#head)) assert(false, `notify revisions must increase (${item.revision} after ${this.#head})`);
      if (watching) {
        this.#collectDeliveries(item, deliveries);
        this.#remember(item);
      }
      this.#head = item.revision;
    }
    for (const [watcher, events] of deliveries) {
      // Live events carry no prevKv (the store does not read old values on the apply path): a
      // watcher that asked for them reads these revisions from history instead, which fills them.
      const lacksPrevKv = watcher.request.prevKv && events.some(needsPrevKv);
      if (watcher.mode === 'synced') {
        if (lacksPrevKv) {
          this.#startCatchUp(watcher, { from: events[0].kv.modRevision, reason: 'prev-kv' });
          watcher.perRevision = true;
        }
        else this.#deliverLive(watcher, events);
      } else if (watcher.mode === 'catching-up' && watcher.request.prevKv) {
        if (lacksPrevKv) this.#coverFromHistory(watcher);
        else this.#buffer(watcher, events);
      }
    }
  }

  /** Adds each event of `item`, projected, to the list of every watcher that should get it. */
  #collectDeliveries(item: RevisionChanges, deliveries: Map<WatcherState, Event[]>): void {
    for (const event of item.events) {
      assert(event.kv.modRevision === item.revision, 'an event belongs to the revision it is notified with');
      this.#forEachMatch(event.kv.key, (watcher) => {
        if (watcher.mode === 'synced' && item.revision < watcher.nextRevision) return;
        if (watcher.mode === 'catching-up' && !watcher.request.prevKv) return; // reads up to the head (see #target)
        const projected = project(watcher.request, event);
        if (projected === undefined) return;
        const list = deliveries.get(watcher);
        if (list === undefined) deliveries.set(watcher, [projected]);
        else list.push(projected);
      });
    }
  }

  /** A catching-up watcher will read everything up to the head from history; its pending list is dropped. */
  #coverFromHistory(watcher: WatcherState): void {
    this.#pendingEvents -= watcher.pending.length;
    watcher.pending = [];
    watcher.bufferFrom = this.#head;
  }

  /**
   * Sends progress(revision) to every synced watcher with progressNotify that received no events
   * since the previous call. Driven by the internal timer, or by the owner when the interval is 0.
   */
  reportProgress(): void {
    for (const watcher of this.#progressWatchers) {
      if (watcher.mode === 'synced' && watcher.progressIdle) this.#sendProgress(watcher);
      watcher.progressIdle = true;
    }
  }

  /**
   * The store's state was replaced without notify() (a snapshot was installed, or the store was
   * reopened): adopt its current revision as the head and make every watcher catch up from
   * history from where it stands (those whose position was compacted are canceled, as etcd).
   */
  storeReplaced(): void {
    this.#forgetRecent();
    const previousHead = this.#head;
    this.#head = Math.max(this.#head, this.#history.currentRevision);
    for (const watcher of this.#watchers) {
      if (watcher.mode === 'synced') {
        this.#startCatchUp(watcher, { from: Math.max(watcher.nextRevision, previousHead + 1), reason: 'store-replaced' });
      } else {
        // Pending no longer covers everything above bufferFrom: the jump was never notified.
        this.#pendingEvents -= watcher.pending.length;
        watcher.pending = [];
        watcher.bufferFrom = this.#head;
      }
    }
  }

  /** Counters for metrics; O(1). */
  stats(): WatchHubStats {
    return {
      watchers: this.#watchers.size,
      synced: this.#syncedCount,
      catchingUp: this.#watchers.size - this.#syncedCount,
      victims: this.#retry.size,
      pendingEvents: this.#pendingEvents,
      headRevision: this.#head,
    };
  }

  /** Stops timers and drops every watcher without calling sinks (the server ends the streams). */
  close(): void {
    this.#closed = true;
    if (this.#progressTimer !== undefined) clearInterval(this.#progressTimer);
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    for (const watcher of [...this.#watchers]) this.#remove(watcher);
  }

  /** Test hook: checks the bookkeeping invariants; throws AssertionError on a broken one. */
  assertInvariants(): void {
    let synced = 0;
    let pending = 0;
    for (const watcher of this.#watchers) {
      assert(watcher.mode !== 'canceled', 'canceled watchers leave the hub');
      if (watcher.mode === 'synced') {
        synced++;
        assert(watcher.step === 'none' && watcher.pending.length === 0, 'synced watchers have no catch-up state');
      } else {
        assert(watcher.step !== 'none', 'a catching-up watcher is queued, running or waiting');
        assert(watcher.bufferFrom <= this.#head, 'bufferFrom is at most the head');
        assert(watcher.pending.length <= this.#maxPending, 'pending is bounded');
        assert(watcher.request.prevKv || watcher.pending.length === 0, 'only prevKv watchers buffer live events');
        pending += watcher.pending.length;
      }
    }
    assert(synced === this.#syncedCount, 'synced counter matches');
    let prefixSlots = 0;
    for (const count of this.#prefixLengths.values()) prefixSlots += count;
    assert(prefixSlots === this.#prefixes.size, 'every prefix slot is counted under its length');
    assert(pending === this.#pendingEvents, 'pending counter matches');
    assert(this.#running <= this.#maxConcurrent, 'catch-up concurrency is bounded');
  }

  // --- matching ---------------------------------------------------------------------------

  #index(watcher: WatcherState): void {
    if (watcher.selector.kind === 'single') {
      let set = this.#singles.get(watcher.slot);
      if (set === undefined) this.#singles.set(watcher.slot, (set = new Set()));
      set.add(watcher);
      return;
    }
    if (watcher.selector.kind === 'prefix') {
      let set = this.#prefixes.get(watcher.slot);
      if (set === undefined) {
        this.#prefixes.set(watcher.slot, (set = new Set()));
        const length = watcher.slot.length;
        this.#prefixLengths.set(length, (this.#prefixLengths.get(length) ?? 0) + 1);
      }
      set.add(watcher);
      return;
    }
    let group = this.#ranges.get(watcher.slot);
    if (group === undefined) this.#ranges.set(watcher.slot, (group = { selector: watcher.selector, watchers: new Set() }));
    group.watchers.add(watcher);
  }

  #unindex(watcher: WatcherState): void {
    if (watcher.selector.kind === 'single') {
      const set = this.#singles.get(watcher.slot);
      set?.delete(watcher);
      if (set?.size === 0) this.#singles.delete(watcher.slot);
      return;
    }
    if (watcher.selector.kind === 'prefix') {
      const set = this.#prefixes.get(watcher.slot);
      set?.delete(watcher);
      if (set?.size === 0) {
        this.#prefixes.delete(watcher.slot);
        const length = watcher.slot.length;
        const count = (this.#prefixLengths.get(length) ?? 0) - 1;
        if (count > 0) this.#prefixLengths.set(length, count);
        else this.#prefixLengths.delete(length);
      }
      return;
    }
    const group = this.#ranges.get(watcher.slot);
    group?.watchers.delete(watcher);
    if (group?.watchers.size === 0) this.#ranges.delete(watcher.slot);
  }

  #forEachMatch(key: Uint8Array, visit: (watcher: WatcherState) => void): void {
    const name = keyString(key);
    const singles = this.#singles.get(name);
    if (singles !== undefined) for (const watcher of singles) visit(watcher);
    for (const length of this.#prefixLengths.keys()) {
      if (length > name.length) continue;
      const prefixed = this.#prefixes.get(length === name.length ? name : name.slice(0, length));
      if (prefixed !== undefined) for (const watcher of prefixed) visit(watcher);
    }
    for (const group of this.#ranges.values()) {
      if (selects(group.selector, key)) for (const watcher of group.watchers) visit(watcher);
    }
  }

  // --- live delivery ----------------------------------------------------------------------

  #deliverLive(watcher: WatcherState, events: Event[]): void {
    const first = events[0].kv.modRevision;
    const result = this.#send(watcher, { revision: this.#head, events });
    if (result === 'canceled') return;
    if (result === 'ok') {
      watcher.nextRevision = this.#head + 1;
      return;
    }
    this.#startCatchUp(watcher, { from: first, reason: 'sink-full' });
  }

  #buffer(watcher: WatcherState, events: Event[]): void {
    if (watcher.pending.length + events.length > this.#maxPending) {
      this.#pendingEvents -= watcher.pending.length;
      watcher.pending = [];
      watcher.bufferFrom = this.#head;
      this.#onEvent({ type: 'pending-overflow', watcherId: watcher.id });
      return;
    }
    for (const event of events) watcher.pending.push(event);
    this.#pendingEvents += events.length;
  }

  /** Calls sink.send; a throwing sink is canceled. Returns 'canceled' in that case. */
  #send(watcher: WatcherState, response: WatchResponse): SendResult | 'canceled' {
    let result: SendResult;
    try {
      result = watcher.sink.send(response);
    } catch (error: unknown) {
      this.#cancelWith(watcher, { reason: `internal: sink failed: ${errorMessage(error)}`, compactRevision: 0 });
      return 'canceled';
    }
    if (watcher.mode === 'canceled') return 'canceled';
    if (result === 'ok') watcher.progressIdle = false;
    return result;
  }

  #sendProgress(watcher: WatcherState): void {
    try {
      watcher.sink.progress(this.#head);
    } catch (error: unknown) {
      this.#cancelWith(watcher, { reason: `internal: sink failed: ${errorMessage(error)}`, compactRevision: 0 });
    }
  }

  #requestProgress(watcher: WatcherState): void {
    if (watcher.mode === 'synced') this.#sendProgress(watcher);
    else watcher.progressRequested = true;
  }

  // --- lifecycle --------------------------------------------------------------------------

  #startCatchUp(watcher: WatcherState, options: { from: Revision; reason: UnsyncReason }): void {
    if (watcher.mode === 'synced') this.#syncedCount--;
    watcher.mode = 'catching-up';
    watcher.nextRevision = options.from;
    watcher.bufferFrom = this.#head;
    assert(watcher.pending.length === 0, 'a synced watcher has no pending events');
    this.#onEvent({ type: 'unsynced', watcherId: watcher.id, reason: options.reason });
    this.#enqueue(watcher);
  }

  #remove(watcher: WatcherState): void {
    if (watcher.mode === 'canceled') return;
    if (watcher.mode === 'synced') this.#syncedCount--;
    this.#pendingEvents -= watcher.pending.length;
    watcher.pending = [];
    watcher.mode = 'canceled';
    this.#watchers.delete(watcher);
    this.#unindex(watcher);
    this.#progressWatchers.delete(watcher);
    this.#queue.delete(watcher);
    this.#retry.delete(watcher);
    if (watcher.step !== 'running') watcher.step = 'none';
  }

  #cancelWith(watcher: WatcherState, options: { reason: string; compactRevision: Revision }): void {
    if (watcher.mode === 'canceled') return;
    this.#remove(watcher);
    this.#onEvent({ type: 'canceled', watcherId: watcher.id, ...options });
    try {
      watcher.sink.canceled(options);
    } catch (error: unknown) {
      // The watcher is already gone; a failing sink has nothing more to be told.
      this.#onEvent({ type: 'canceled', watcherId: watcher.id, reason: `sink.canceled threw: ${errorMessage(error)}`, compactRevision: 0 });
    }
  }

  // --- background catch-up ----------------------------------------------------------------

  #enqueue(watcher: WatcherState): void {
    watcher.step = 'queued';
    this.#queue.add(watcher);
    this.#schedulePump();
  }

  #schedulePump(): void {
    if (this.#pumpScheduled || this.#closed) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  #pump(): void {
    while (!this.#closed && this.#running < this.#maxConcurrent && this.#queue.size > 0) {
      const watcher: WatcherState = this.#queue.values().next().value!;
      this.#queue.delete(watcher);
      if (this.#waitsForRoom(watcher)) {
        // Wait for the retry without starting a step (a promise and its callbacks).
        watcher.step = 'retry';
        this.#retry.add(watcher);
        this.#armRetry();
        continue;
      }
      watcher.step = 'running';
      this.#running++;
      // Detached on purpose: the step handles its own errors and reports through the outcome.
      void this.#runStep(watcher).then(
        (outcome) => this.#afterStep(watcher, outcome),
        (error: unknown) => {
          this.#afterStep(watcher, 'done');
          throw error;
        },
      );
    }
  }

  #afterStep(watcher: WatcherState, outcome: 'done' | 'again' | 'retry'): void {
    this.#running--;
    // finishSync() may have synced the watcher and a full sink re-queued it meanwhile.
    if (watcher.step !== 'running') {
      this.#schedulePump();
      return;
    }
    if (watcher.mode !== 'catching-up' || outcome === 'done') {
      watcher.step = 'none';
    } else if (outcome === 'again') {
      this.#enqueue(watcher);
    } else {
      watcher.step = 'retry';
      this.#retry.add(watcher);
      this.#armRetry();
    }
    this.#schedulePump();
  }

  #armRetry(): void {
    if (this.#retryTimer !== undefined || this.#closed) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      // A watcher whose sink still has no room waits on: a step would only find that out again.
      for (const watcher of this.#retry) {
        if (this.#waitsForRoom(watcher)) continue;
        this.#retry.delete(watcher);
        this.#enqueue(watcher);
      }
      if (this.#retry.size > 0) this.#armRetry();
    }, this.#retryDelayMs);
    this.#retryTimer.unref();
  }

  /**
   * Where a catching-up watcher's history reads end: the head for a watcher without prevKv (its
   * live events are not buffered), `bufferFrom` for one with prevKv (its pending list holds what
   * follows).
   */
  #target(watcher: WatcherState): Revision {
    return watcher.request.prevKv ? watcher.bufferFrom : this.#head;
  }

  /**
   * Whether a catching-up watcher's next step would only read history its sink has no room for
   * (a step that syncs it or cancels it for compaction still runs).
   */
  #waitsForRoom(watcher: WatcherState): boolean {
    if (watcher.mode !== 'catching-up' || watcher.sink.ready?.() !== false) return false;
    return watcher.nextRevision <= this.#target(watcher) && watcher.nextRevision >= this.#history.compactedRevision;
  }

  /** One bounded catch-up step for a catching-up watcher. */
  async #runStep(watcher: WatcherState): Promise<'done' | 'again' | 'retry'> {
    if (watcher.mode !== 'catching-up') return 'done';
    if (watcher.nextRevision > this.#target(watcher)) return this.#finishSync(watcher);
    const compacted = this.#history.compactedRevision;
    if (watcher.nextRevision < compacted) {
      this.#cancelWith(watcher, { reason: new KvdError('compacted').message, compactRevision: compacted });
      return 'done';
    }
    const fromRevision = watcher.nextRevision;
    const toRevision = this.#target(watcher);
    const recent = watcher.request.prevKv ? undefined : this.#fromRecent(watcher, fromRevision, toRevision);
    let result: { events: readonly Event[]; lastRevision: Revision } | undefined = recent;
    if (result === undefined) try {
      result = await this.#history.changes({
        key: watcher.selector.key,
        rangeEnd: watcher.request.rangeEnd,
        fromRevision,
        toRevision,
        limit: this.#batchEvents,
        prevKv: watcher.request.prevKv,
      });
    } catch (error: unknown) {
      if (watcher.mode !== 'catching-up') return 'done';
      if (isKvdError(error, 'compacted')) {
        this.#cancelWith(watcher, { reason: error.message, compactRevision: this.#history.compactedRevision });
      } else {
        this.#cancelWith(watcher, { reason: `internal: history read failed: ${errorMessage(error)}`, compactRevision: 0 });
      }
      return 'done';
    }
    if (watcher.mode !== 'catching-up') return 'done';
    assert(watcher.nextRevision === fromRevision, 'only the running step moves a catching-up watcher');
    const last = Math.min(result.lastRevision, toRevision);
    if (last < fromRevision) return 'retry';
    let events: Event[];
    if (recent !== undefined) events = recent.events; // projected, all within [fromRevision, last]
    else {
      events = [];
      for (const event of result.events) {
        const revision = event.kv.modRevision;
        if (revision < fromRevision || revision > last) continue;
        const projected = project(watcher.request, event);
        if (projected !== undefined) events.push(projected);
      }
    }
    if (events.length > 0 && watcher.perRevision) {
      // One response per revision; on 'full' resume after the last revision sent.
      let start = 0;
      while (start < events.length) {
        const revision = events[start].kv.modRevision;
        let end = start;
        while (end < events.length && events[end].kv.modRevision === revision) end++;
        const sent = this.#send(watcher, { revision: end === events.length ? last : revision, events: events.slice(start, end) });
        if (sent === 'canceled') return 'done';
        if (sent === 'full') {
          if (start > 0) watcher.nextRevision = revision;
          return 'retry';
        }
        start = end;
      }
    } else if (events.length > 0) {
      const sent = this.#send(watcher, { revision: last, events });
      if (sent === 'canceled') return 'done';
      if (sent === 'full') return 'retry';
    }
    watcher.nextRevision = last + 1;
    if (watcher.nextRevision > this.#target(watcher)) return this.#finishSync(watcher);
    return 'again';
  }

  // --- recent revisions -------------------------------------------------------------------

  #remember(item: RevisionChanges): void {
    const last = this.#recent.length > this.#recentStart ? this.#recent[this.#recent.length - 1].item.revision : undefined;
    if (last !== undefined && item.revision !== last + 1) this.#forgetRecent(); // a gap: start again from here
    let bytes = 0;
    for (const event of item.events) bytes += event.kv.key.length + event.kv.value.length;
    this.#recent.push({ item, bytes });
    this.#recentBytes += bytes;
    while (this.#recent.length - this.#recentStart > 1 && (this.#recentBytes > this.#recentBytesMax || this.#recent.length - this.#recentStart > this.#recentRevisionsMax)) {
      this.#recentBytes -= this.#recent[this.#recentStart].bytes;
      this.#recentStart++;
    }
    if (this.#recentStart > 1024 && this.#recentStart * 2 > this.#recent.length) {
      this.#recent = this.#recent.slice(this.#recentStart);
      this.#recentStart = 0;
    }
  }

  #forgetRecent(): void {
    this.#lastRecentRead = undefined;
    this.#recent = [];
    this.#recentStart = 0;
    this.#recentBytes = 0;
  }

  /**
   * The events on `selector`'s keys with revision in [from, to] from the recent revisions, as
   * HistorySource.changes answers (about #batchEvents events, never splitting a revision) but
   * already projected for `request` (its filters), or undefined when `from` is older than what is
   * kept. One array per step: under a burst every catching-up watcher takes steps like this.
   */
  #fromRecent(watcher: WatcherState, from: Revision, to: Revision): { events: Event[]; lastRevision: Revision } | undefined {
    if (this.#recent.length === this.#recentStart) return undefined;
    const first = this.#recent[this.#recentStart].item.revision;
    if (from < first || to > this.#head) return undefined;
    const { request, selector, slot } = watcher;
    const last = this.#lastRecentRead;
    if (last !== undefined && last.from === from && last.to === to && last.slot === slot && last.kind === selector.kind
      && last.filters.noPut === request.filters.noPut && last.filters.noDelete === request.filters.noDelete) return last.result;
    const events: Event[] = [];
    let lastRevision = from - 1;
    for (let at = this.#recentStart + (from - first); at < this.#recent.length; at++) {
      const { item } = this.#recent[at];
      if (item.revision > to) break;
      for (const event of item.events) {
        if (!selects(selector, event.kv.key)) continue;
        const projected = project(request, event);
        if (projected !== undefined) events.push(projected);
      }
      lastRevision = item.revision;
      if (events.length >= this.#batchEvents) break;
    }
    const result = { events, lastRevision };
    this.#lastRecentRead = { kind: selector.kind, slot, filters: request.filters, from, to, result };
    return result;
  }

  /** History has reached the target: send the pending events (prevKv only) and become synced, synchronously. */
  #finishSync(watcher: WatcherState): 'done' | 'retry' {
    const events = watcher.pending.filter((event) => event.kv.modRevision >= watcher.nextRevision);
    if (events.length > 0) {
      const sent = this.#send(watcher, { revision: this.#head, events });
      if (sent === 'canceled') return 'done';
      if (sent === 'full') return 'retry';
    }
    this.#pendingEvents -= watcher.pending.length;
    watcher.pending = [];
    watcher.mode = 'synced';
    watcher.perRevision = false;
    watcher.step = 'none';
    watcher.nextRevision = Math.max(watcher.nextRevision, this.#head + 1);
    this.#syncedCount++;
    this.#onEvent({ type: 'synced', watcherId: watcher.id });
    if (watcher.progressRequested) {
      watcher.progressRequested = false;
      this.#sendProgress(watcher);
    }
    return 'done';
  }
}

/** True for an event that should carry a previous key-value but does not (a creation has none). */
function needsPrevKv(event: Event): boolean {
  return event.prevKv === undefined && !(event.type === 'put' && event.kv.version === 1);
}

/** Applies the watcher's filters and prevKv choice; undefined when filtered out. */
function project(request: WatchRequest, event: Event): Event | undefined {
  if (event.type === 'put' && request.filters.noPut) return undefined;
  if (event.type === 'delete' && request.filters.noDelete) return undefined;
  if (request.prevKv || event.prevKv === undefined) return event;
  return { type: event.type, kv: event.kv };
}

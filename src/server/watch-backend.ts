/**
 * Adapts the store's WatchHub (one watcher, one sink) to the API's per-stream WatchStream
 * contract (many watchers per gRPC stream, one bounded send queue). Back-pressure: when the
 * stream's queue is full the hub is told 'full' and catches the watcher up from history later,
 * so a slow client never blocks applies or other watchers.
 */
import type { ResponseHeader, WatchBackend, WatchDelivery, WatcherHandle, WatchOptions, WatchSink as ApiSink, WatchStream } from '../api/backend.js';
import type { Watcher, WatchHub } from '../store/watch/watch-hub.js';
import { assert } from '../util/assert.js';

/** What a watch stream needs from the member. */
export interface WatchHost {
  readonly watchHub: WatchHub;
  /** The store's current revision (for control responses). */
  currentRevision(): number;
  header(): ResponseHeader;
}

export function watchBackend(member: { readonly watchHub: WatchHub; readonly store: { readonly currentRevision: number }; header(): ResponseHeader }): WatchBackend {
  const host: WatchHost = { watchHub: member.watchHub, currentRevision: () => member.store.currentRevision, header: () => member.header() };
  return {
    openWatchStream: (sink) => new HubStream(host, sink),
    header: () => member.header(),
  };
}

/**
 * One gRPC watch stream's side of the hub.
 *
 * Bound on held control deliveries: a cancel is held only for a watcher that is then forgotten
 * (removed from #watchers), so at most one per watcher the stream ever had open, plus one
 * stream-wide progress answer; nothing is dropped (a dropped cancel would leave the client's
 * watch silently stalled).
 */
export class HubStream implements WatchStream {
  readonly #member: WatchHost;
  readonly #sink: ApiSink;
  readonly #watchers = new Map<WatcherHandle, Watcher>();
  /** Cancels that could not be delivered because the stream was full; re-offered on writable(). */
  readonly #held: WatchDelivery[] = [];
  /** Watchers ever started on this stream: the bound of #held (see the class comment). */
  #started = 0;
  /** Handles still owing a progress answer for a stream-wide progress request, with the lowest revision seen. */
  #progressAll: { waiting: Set<WatcherHandle>; revision: number } | undefined;
  #closed = false;
  /** The sink answered 'full' and has not called writable() since: the hub's catch-up waits. */
  #full = false;

  constructor(member: WatchHost, sink: ApiSink) {
    this.#member = member;
    this.#sink = sink;
  }

  watch(handle: WatcherHandle, options: WatchOptions): void {
    if (this.#closed) return;
    const watcher = this.#member.watchHub.watch(
      {
        key: options.key,
        rangeEnd: options.rangeEnd,
        startRevision: options.startRevision,
        prevKv: options.prevKv,
        filters: { noPut: options.filters.includes('no-put'), noDelete: options.filters.includes('no-delete') },
        progressNotify: options.progressNotify,
      },
      {
        send: (response) => {
          if (this.#closed || !this.#watchers.has(handle)) return 'ok';
          const result = this.#sink.deliver({ type: 'events', watcher: handle, revision: response.revision, events: response.events });
          if (result === 'accepted') return 'ok';
          this.#full = true;
          return 'full';
        },
        ready: () => !this.#full,
        canceled: ({ reason, compactRevision }) => {
          this.#watchers.delete(handle);
          const revision = this.#member.currentRevision();
          this.#offer(compactRevision > 0 ? { type: 'compacted', watcher: handle, compactRevision, revision } : { type: 'canceled', watcher: handle, reason, revision });
        },
        progress: (revision) => this.#onProgress(handle, revision),
      },
    );
    this.#watchers.set(handle, watcher);
    this.#started += 1;
  }

  cancel(handle: WatcherHandle): void {
    const watcher = this.#watchers.get(handle);
    this.#watchers.delete(handle);
    watcher?.cancel();
    this.#progressAll?.waiting.delete(handle);
    this.#maybeFinishProgressAll();
  }

  requestProgress(handle: WatcherHandle): void {
    this.#watchers.get(handle)?.requestProgress();
  }

  requestProgressAll(): void {
    if (this.#closed) return;
    if (this.#progressAll !== undefined) return; // one outstanding stream-wide request answers both
    this.#progressAll = { waiting: new Set(this.#watchers.keys()), revision: this.#member.watchHub.headRevision };
    for (const watcher of this.#watchers.values()) watcher.requestProgress();
    this.#maybeFinishProgressAll();
  }

  writable(): void {
    this.#full = false;
    while (this.#held.length > 0 && !this.#closed) {
      const delivery = this.#held[0];
      if (this.#sink.deliver(delivery) === 'full') {
        this.#full = true;
        return;
      }
      this.#held.shift();
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const watcher of this.#watchers.values()) watcher.cancel();
    this.#watchers.clear();
    this.#held.length = 0;
  }

  #onProgress(handle: WatcherHandle, revision: number): void {
    if (this.#closed) return;
    const all = this.#progressAll;
    if (all !== undefined && all.waiting.has(handle)) {
      all.waiting.delete(handle);
      all.revision = Math.min(all.revision, revision);
      this.#maybeFinishProgressAll();
      return;
    }
    // Progress is advisory: when the stream is full it is dropped (a later one supersedes it).
    this.#sink.deliver({ type: 'progress', watcher: handle, revision });
  }

  #maybeFinishProgressAll(): void {
    const all = this.#progressAll;
    if (all === undefined || all.waiting.size > 0) return;
    this.#progressAll = undefined;
    this.#offer({ type: 'progress', watcher: 'all', revision: all.revision });
  }

  #offer(delivery: WatchDelivery): void {
    if (this.#closed) return;
    if (this.#held.length === 0 && this.#sink.deliver(delivery) === 'accepted') return;
    this.#full = true;
    // A stream-wide progress answer already waiting answers a newer request too.
    if (delivery.type === 'progress' && this.#held.some((held) => held.type === 'progress')) return;
    this.#held.push(delivery);
    assert(this.#held.length <= this.#started + 1, 'held control deliveries: at most one per watcher plus one progress');
  }
}

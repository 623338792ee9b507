/**
 * Adapts the store's WatchHub (one watcher, one sink) to the API's per-stream WatchStream
 * contract (many watchers per gRPC stream, one bounded send queue). Back-pressure: when the
 * stream's queue is full the hub is told 'full' and catches the watcher up from history later,
 * so a slow client never blocks applies or other watchers.
 */
import type { WatchBackend, WatchDelivery, WatcherHandle, WatchOptions, WatchSink as ApiSink, WatchStream } from '../api/backend.js';
import type { Watcher } from '../store/watch/watch-hub.js';
import type { KvdMember } from './member.js';

/** Bound on control deliveries (cancels) held while the stream is full. */
const MAX_HELD_CONTROL = 10_000;

export function watchBackend(member: KvdMember): WatchBackend {
  return {
    openWatchStream: (sink) => new HubStream(member, sink),
    header: () => member.header(),
  };
}

class HubStream implements WatchStream {
  readonly #member: KvdMember;
  readonly #sink: ApiSink;
  readonly #watchers = new Map<WatcherHandle, Watcher>();
  /** Cancels that could not be delivered because the stream was full; re-offered on writable(). */
  readonly #held: WatchDelivery[] = [];
  /** Handles still owing a progress answer for a stream-wide progress request, with the lowest revision seen. */
  #progressAll: { waiting: Set<WatcherHandle>; revision: number } | undefined;
  #closed = false;

  constructor(member: KvdMember, sink: ApiSink) {
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
          return result === 'accepted' ? 'ok' : 'full';
        },
        canceled: ({ compactRevision }) => {
          this.#watchers.delete(handle);
          this.#offer({ type: 'compacted', watcher: handle, compactRevision, revision: this.#member.store.currentRevision });
        },
        progress: (revision) => this.#onProgress(handle, revision),
      },
    );
    this.#watchers.set(handle, watcher);
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
    while (this.#held.length > 0 && !this.#closed) {
      const delivery = this.#held[0];
      if (this.#sink.deliver(delivery) === 'full') return;
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
    if (this.#held.length < MAX_HELD_CONTROL) this.#held.push(delivery);
  }
}

/**
 * Watches: one gRPC Watch stream per watcher, consumed as an async iterable. After a stream
 * failure the watcher reconnects (to the next endpoint) and resumes at the last delivered
 * revision + 1, so no event is missed or repeated. A compacted start revision ends the
 * iteration with {@link WatchCompactedError}.
 */
import type * as grpc from '@grpc/grpc-js';
import { decodeHeader, fromWire, toBuffer, toWire, type Bytes, type Int64Like, type ResponseHeader } from './codec.js';
import { backoffMs, type Connection } from './connection.js';
import { CancelledError, KvError, WatchCompactedError, toKvError } from './errors.js';
import { decodeKeyValue, rangeEndFor, rangeEndField, type KeyRangeOptions, type KeyValue } from './kv.js';

/** A put or delete of one key. */
export interface WatchEvent {
  readonly type: 'put' | 'delete';
  /** The key after the event (for deletes: key and mod revision = deletion revision only). */
  readonly kv: KeyValue;
  /** The key before the event, when `prevKv` was requested and it existed. */
  readonly prevKv: KeyValue | undefined;
  /** The event's revision (= kv.modRevision). */
  readonly revision: bigint;
}

/** A progress notification: every event up to `revision` has been delivered. */
export interface WatchProgress {
  readonly type: 'progress';
  readonly revision: bigint;
}

/** What iterating a {@link Watcher} yields. */
export type WatchItem = WatchEvent | WatchProgress;

/**
 * One server response: whole revisions of events (never split), or, with no events, a
 * progress notification. `revision` is the header revision (store revision when sent).
 */
export interface WatchBatch {
  readonly revision: bigint;
  /** The response header. */
  readonly header: ResponseHeader;
  readonly events: readonly WatchEvent[];
}

/** Options of {@link Client.watch}. */
export interface WatchOptions extends KeyRangeOptions {
  /** First revision to deliver (inclusive). Default: changes after now. */
  readonly startRevision?: Int64Like;
  /** Include each key's previous state in events. */
  readonly prevKv?: boolean;
  /** Ask the server for periodic progress notifications while idle. */
  readonly progressNotify?: boolean;
  /** Stops the watch; a pending next() rejects with CancelledError. */
  readonly signal?: AbortSignal;
}

/** Responses buffered before the stream is paused (back-pressure on the server). */
export const WATCH_QUEUE_MAX = 256;

/** Decodes an mvccpb.Event. */
function decodeEvent(raw: Record<string, unknown>): WatchEvent {
  const kv = decodeKeyValue(raw.kv);
  return {
    type: raw.type === 'DELETE' || raw.type === 1 ? 'delete' : 'put',
    kv,
    prevKv: raw.prev_kv == null ? undefined : decodeKeyValue(raw.prev_kv),
    revision: kv.modRevision,
  };
}

/**
 * A running watch. Iterate it (`for await (const item of watcher)`) for single events and
 * progress notifications, or iterate {@link Watcher.batches} for whole responses; not both.
 * Only one `next()` may be pending at a time. Breaking out of the loop, `return()`,
 * {@link Watcher.close} or the signal release the stream.
 */
export class Watcher implements AsyncIterable<WatchItem> {
  readonly #connection: Connection;
  readonly #key: Buffer;
  readonly #rangeEnd: Buffer;
  readonly #options: WatchOptions;
  readonly #queue: WatchBatch[] = [];
  /** Revision to resume from; undefined until the first create response ("now"). */
  #nextRevision: bigint | undefined;
  #stream: grpc.ClientDuplexStream<unknown, unknown> | undefined;
  #paused = false;
  #state: 'running' | 'closed' | 'failed' = 'running';
  #failure: KvError | undefined;
  #pending: { resolve: (batch: WatchBatch | undefined) => void; reject: (error: unknown) => void } | undefined;
  #readyWaiters: Array<{ resolve: (revision: bigint) => void; reject: (error: unknown) => void }> = [];
  #created = false;
  #attempt = 0;
  #reconnectTimer: NodeJS.Timeout | undefined;
  readonly #onAbort = (): void => this.#fail(new CancelledError('internal', { detail: 'watch aborted' }));

  readonly #onRelease: (() => void) | undefined;

  /**
   * Starts watching at once (use {@link Client.watch}). `onRelease` is called once when the
   * watch stops for any reason (the client uses it to forget the watcher).
   */
  constructor(connection: Connection, key: Bytes, options: WatchOptions = {}, onRelease?: () => void) {
    this.#connection = connection;
    this.#onRelease = onRelease;
    // etcd treats an empty watch key as "\0".
    const keyBytes = toBuffer(key);
    this.#key = keyBytes.length === 0 ? Buffer.from([0]) : keyBytes;
    this.#rangeEnd = rangeEndFor(keyBytes, options);
    this.#options = options;
    this.#nextRevision = options.startRevision === undefined || toWire(options.startRevision) === '0' ? undefined : BigInt(toWire(options.startRevision));
    if (options.signal?.aborted === true) {
      this.#onAbort();
      return;
    }
    options.signal?.addEventListener('abort', this.#onAbort, { once: true });
    this.#open();
  }

  /** The next revision this watcher will deliver (undefined before it is created). */
  get nextRevision(): bigint | undefined {
    return this.#nextRevision;
  }

  /**
   * Resolves with the first revision the watch delivers once the server has created it (the
   * moment after which changes are certain to be seen); rejects if the watch fails first.
   */
  ready(): Promise<bigint> {
    if (this.#created && this.#nextRevision !== undefined) return Promise.resolve(this.#nextRevision);
    if (this.#state !== 'running') return Promise.reject(this.#failure ?? new CancelledError('internal', { detail: 'watch closed' }));
    return new Promise((resolve, reject) => this.#readyWaiters.push({ resolve, reject }));
  }

  #open(): void {
    if (this.#state !== 'running') return;
    // With credentials, a token first (the stream carries it in its metadata).
    this.#connection.ensureToken().then(
      () => this.#openStream(),
      (error: unknown) => {
        const failure = toKvError(error);
        if (failure.code === 'auth-failed' || failure.code === 'auth-no-password-user') this.#fail(failure);
        else if (this.#state === 'running') this.#scheduleReconnect(failure);
      },
    );
  }

  #openStream(): void {
    if (this.#state !== 'running') return;
    const endpoint = this.#connection.currentEndpoint;
    let stream: grpc.ClientDuplexStream<unknown, unknown>;
    try {
      stream = this.#connection.duplex('Watch', 'Watch', endpoint, { hasleader: 'true' });
    } catch (error: unknown) {
      this.#fail(toKvError(error));
      return;
    }
    this.#stream = stream;
    let ended = false;
    const onGone = (error: unknown): void => {
      if (ended) return;
      ended = true;
      if (this.#stream === stream) this.#stream = undefined;
      if (this.#state !== 'running') return;
      this.#connection.reportFailure(endpoint);
      this.#scheduleReconnect(error);
    };
    stream.on('data', (raw: Record<string, unknown>) => {
      if (ended) return;
      try {
        this.#onResponse(raw, stream);
      } catch (error: unknown) {
        // A malformed response or a server-side cancel other than compaction: reconnect.
        stream.cancel();
        onGone(error);
      }
    });
    stream.on('error', onGone);
    stream.on('end', () => onGone(new KvError('stopped', { detail: 'watch stream ended' })));
    stream.write({
      create_request: {
        key: this.#key,
        ...rangeEndField(this.#key, { rangeEnd: this.#rangeEnd }),
        start_revision: this.#nextRevision === undefined ? '0' : this.#nextRevision.toString(),
        progress_notify: this.#options.progressNotify === true,
        filters: [],
        prev_kv: this.#options.prevKv === true,
        watch_id: '0',
        fragment: false,
      },
    });
  }

  #scheduleReconnect(cause: unknown): void {
    const wait = backoffMs(Math.min(this.#attempt, 6));
    this.#attempt += 1;
    void cause; // Every stream failure is retried: a watch stays alive until closed.
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      this.#open();
    }, wait);
  }

  #onResponse(raw: Record<string, unknown>, stream: grpc.ClientDuplexStream<unknown, unknown>): void {
    const header = decodeHeader(raw.header);
    if (raw.canceled === true) {
      const compactRevision = fromWire(raw.compact_revision);
      if (compactRevision > 0n) {
        stream.cancel();
        this.#fail(new WatchCompactedError(compactRevision));
        return;
      }
      const reason = String(raw.cancel_reason ?? '');
      // Refused by auth (etcd's cancel reasons): a refused watch stays refused; an invalid token
      // gets a new one before the next attempt.
      if (reason.includes('etcdserver: permission denied')) {
        stream.cancel();
        this.#fail(new KvError('permission-denied', { detail: reason }));
        return;
      }
      if (reason.includes('etcdserver: invalid auth token') || reason.includes('etcdserver: user name is empty') || reason.includes('revision of auth store is old')) {
        this.#connection.invalidateToken(this.#connection.token);
      }
      throw new KvError('watch-canceled', { detail: reason || 'etcdserver: watch canceled' });
    }
    if (raw.created === true) {
      this.#attempt = 0;
      if (this.#nextRevision === undefined) this.#nextRevision = header.revision + 1n;
      if (!this.#created) {
        this.#created = true;
        for (const waiter of this.#readyWaiters.splice(0)) waiter.resolve(this.#nextRevision);
      }
    }
    const rawEvents = (raw.events ?? []) as Array<Record<string, unknown>>;
    if (rawEvents.length === 0) {
      if (raw.created === true) return;
      // Progress: everything up to header.revision has been delivered.
      if (this.#nextRevision === undefined || header.revision + 1n > this.#nextRevision) this.#nextRevision = header.revision + 1n;
      this.#push({ revision: header.revision, header, events: [] });
      return;
    }
    const floor = this.#nextRevision ?? 0n;
    const events = rawEvents.map(decodeEvent).filter((event) => event.revision >= floor);
    if (events.length === 0) return;
    this.#nextRevision = events[events.length - 1].revision + 1n;
    this.#push({ revision: header.revision, header, events });
  }

  #push(batch: WatchBatch): void {
    if (this.#pending !== undefined) {
      const pending = this.#pending;
      this.#pending = undefined;
      pending.resolve(batch);
      return;
    }
    this.#queue.push(batch);
    if (this.#queue.length >= WATCH_QUEUE_MAX && !this.#paused && this.#stream !== undefined) {
      this.#paused = true;
      this.#stream.pause();
    }
  }

  #fail(error: KvError): void {
    if (this.#state !== 'running') return;
    this.#state = 'failed';
    this.#failure = error;
    this.#release();
    for (const waiter of this.#readyWaiters.splice(0)) waiter.reject(error);
    if (this.#pending !== undefined) {
      const pending = this.#pending;
      this.#pending = undefined;
      pending.reject(error);
    }
  }

  #release(): void {
    this.#onRelease?.();
    this.#options.signal?.removeEventListener('abort', this.#onAbort);
    if (this.#reconnectTimer !== undefined) clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = undefined;
    const stream = this.#stream;
    this.#stream = undefined;
    if (stream !== undefined) {
      stream.cancel();
    }
  }

  /**
   * Asks the server for an immediate progress notification (etcd 3.4+); it arrives as a
   * progress item / empty batch. Returns false when no stream is currently open.
   */
  requestProgress(): boolean {
    if (this.#stream === undefined || !this.#created) return false;
    this.#stream.write({ progress_request: {} });
    return true;
  }

  /** Next whole response; undefined when closed. Throws the failure that ended the watch. */
  nextBatch(): Promise<WatchBatch | undefined> {
    if (this.#pending !== undefined) return Promise.reject(new TypeError('watch: concurrent next() calls are not allowed'));
    const queued = this.#queue.shift();
    if (queued !== undefined) {
      if (this.#paused && this.#queue.length < WATCH_QUEUE_MAX / 2) {
        this.#paused = false;
        this.#stream?.resume();
      }
      return Promise.resolve(queued);
    }
    if (this.#state === 'failed') {
      const failure = this.#failure;
      this.#failure = undefined;
      this.#state = 'closed';
      return failure === undefined ? Promise.resolve(undefined) : Promise.reject(failure);
    }
    if (this.#state === 'closed') return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      this.#pending = { resolve, reject };
    });
  }

  /** Iterates whole responses (see {@link WatchBatch}); exiting the loop closes the watch. */
  batches(): AsyncIterableIterator<WatchBatch> {
    return this.#iterator(async () => this.nextBatch());
  }

  /**
   * Iterates events one by one, with progress notifications as `{ type: 'progress' }`;
   * exiting the loop closes the watch. A second next() while one is pending is refused.
   */
  [Symbol.asyncIterator](): AsyncIterableIterator<WatchItem> {
    const buffered: WatchItem[] = [];
    return this.#iterator(async () => {
      for (;;) {
        const item = buffered.shift();
        if (item !== undefined) return item;
        const batch = await this.nextBatch();
        if (batch === undefined) return undefined;
        if (batch.events.length === 0) return { type: 'progress', revision: batch.revision };
        buffered.push(...batch.events);
      }
    });
  }

  #iterator<T>(pull: () => Promise<T | undefined>): AsyncIterableIterator<T> {
    let busy = false;
    const close = (): void => this.close();
    const iterator: AsyncIterableIterator<T> = {
      async next(): Promise<IteratorResult<T, undefined>> {
        if (busy) throw new TypeError('watch: concurrent next() calls are not allowed');
        busy = true;
        try {
          const value = await pull();
          if (value === undefined) return { value: undefined, done: true };
          return { value, done: false };
        } catch (error: unknown) {
          close();
          throw error;
        } finally {
          busy = false;
        }
      },
      async return(): Promise<IteratorResult<T, undefined>> {
        close();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator](): AsyncIterableIterator<T> {
        return iterator;
      },
    };
    return iterator;
  }

  /** Stops the watch and releases its stream. A pending next() resolves as done. Idempotent. */
  close(): void {
    if (this.#state === 'closed') return;
    const wasRunning = this.#state === 'running';
    this.#state = 'closed';
    this.#failure = undefined;
    this.#release();
    if (wasRunning) for (const waiter of this.#readyWaiters.splice(0)) waiter.reject(new CancelledError('internal', { detail: 'watch closed' }));
    if (this.#pending !== undefined) {
      const pending = this.#pending;
      this.#pending = undefined;
      pending.resolve(undefined);
    }
  }
}

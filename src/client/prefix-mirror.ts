/**
 * A local mirror of every key under a prefix, kept by one range and one watch from the range's
 * revision + 1 (never polling). When the watch fails (compaction, every endpoint down) it waits
 * with backoff, reads the prefix again and resumes. Shared by the registry's ServiceView and the
 * config watch, which differ only in what they make of the keys.
 */
import type { Client } from './index.js';
import type { KeyValue } from './kv.js';
import { backoffMs } from './connection.js';
import { toKvError } from './errors.js';
import type { Watcher, WatchBatch } from './watch.js';

/** What a mirror's owner does with the data. */
export interface MirrorHandler {
  /** The whole prefix as read at `revision`: 'initial' the first time, 'reload' after a failure. */
  reset(kvs: readonly KeyValue[], revision: bigint, kind: 'initial' | 'reload'): void;
  /** One watch response, in revision order. */
  apply(batch: WatchBatch): void;
}

/** Backoff steps are capped at this attempt number. */
const MAX_BACKOFF_STEP = 5;

export class PrefixMirror {
  readonly #client: Client;
  readonly #prefix: string;
  readonly #handler: MirrorHandler;
  #watcher: Watcher | undefined;
  #closed = false;
  #loaded = false;
  #onStop: (() => void) | undefined;

  constructor(client: Client, prefix: string, handler: MirrorHandler) {
    this.#client = client;
    this.#prefix = prefix;
    this.#handler = handler;
  }

  /** Reads the prefix, hands it to the handler and starts the watch; returns the watch's start revision. */
  async load(): Promise<bigint> {
    const result = await this.#client.range(this.#prefix, { prefix: true });
    const startRevision = result.header.revision + 1n;
    if (this.#closed) return startRevision;
    this.#handler.reset(result.kvs, result.header.revision, this.#loaded ? 'reload' : 'initial');
    this.#loaded = true;
    this.#watcher = this.#client.watch(this.#prefix, { prefix: true, startRevision });
    return startRevision;
  }

  /** Consumes the watch until closed, reloading after failures. Runs detached. */
  async run(): Promise<void> {
    let attempt = 0;
    while (!this.#closed) {
      const watcher = this.#watcher;
      if (watcher === undefined) return;
      try {
        for await (const batch of watcher.batches()) this.#handler.apply(batch);
        return;
      } catch (error: unknown) {
        if (this.#closed) return;
        void toKvError(error); // Compaction or failure: re-read below.
        await new Promise((resolve) => setTimeout(resolve, backoffMs(Math.min(attempt, MAX_BACKOFF_STEP))));
        attempt += 1;
        try {
          await this.load();
        } catch (loadError: unknown) {
          void loadError; // Retried by the loop.
        }
      }
    }
  }

  /** Sets a function called once when the mirror is closed (used by the client). */
  onStop(listener: () => void): void {
    this.#onStop = listener;
  }

  /** Stops the mirror. Idempotent. */
  close(): void {
    this.#onStop?.();
    this.#onStop = undefined;
    this.#closed = true;
    this.#watcher?.close();
  }
}

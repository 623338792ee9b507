/**
 * Config watching: the whole map of keys under a prefix, then one callback per revision that
 * changes it. Built on one range and one watch from the range's revision + 1; after a
 * compaction it re-reads and delivers the new whole map.
 */
import type { Client } from './index.js';
import type { KeyValue } from './kv.js';
import { PrefixMirror } from './prefix-mirror.js';
import type { WatchBatch } from './watch.js';

/** What one callback reports. */
export interface ConfigChange {
  /** The revision the map reflects. */
  readonly revision: bigint;
  /** 'initial' for the first delivery (and after a re-read), 'update' for a change. */
  readonly kind: 'initial' | 'update';
  /** Keys set in this revision (empty for 'initial'). */
  readonly updated: readonly string[];
  /** Keys deleted in this revision (empty for 'initial'). */
  readonly deleted: readonly string[];
}

/** Receives the whole current map (key → value, UTF-8) after each change. */
export type ConfigListener = (config: ReadonlyMap<string, string>, change: ConfigChange) => void;

/** A running config watch. {@link ConfigWatch.close} stops it. */
export class ConfigWatch {
  readonly #listener: ConfigListener;
  readonly #config = new Map<string, string>();
  readonly #mirror: PrefixMirror;
  #revision = 0n;

  /** Use {@link ConfigApi.watch}. */
  constructor(client: Client, prefix: string, listener: ConfigListener) {
    this.#listener = listener;
    this.#mirror = new PrefixMirror(client, prefix, {
      reset: (kvs, revision) => this.#reset(kvs, revision),
      apply: (batch) => this.#apply(batch),
    });
  }

  /** The map as last delivered. */
  get current(): ReadonlyMap<string, string> {
    return this.#config;
  }

  /** The revision of the last delivery. */
  get revision(): bigint {
    return this.#revision;
  }

  /** Reads the whole prefix, delivers it, and starts the watch. */
  async load(): Promise<void> {
    await this.#mirror.load();
  }

  /** Consumes the watch until closed; re-reads and delivers the whole map after a failure. Runs detached. */
  run(): Promise<void> {
    return this.#mirror.run();
  }

  /** Sets a function called once when the watch is closed (used by the client). */
  onStop(listener: () => void): void {
    this.#mirror.onStop(listener);
  }

  /** Stops the watch. Idempotent. */
  close(): void {
    this.#mirror.close();
  }

  #reset(kvs: readonly KeyValue[], revision: bigint): void {
    this.#config.clear();
    for (const kv of kvs) this.#config.set(kv.key.toString('utf8'), kv.value.toString('utf8'));
    this.#revision = revision;
    this.#listener(this.#config, { revision, kind: 'initial', updated: [], deleted: [] });
  }

  /** One callback per revision in the batch. */
  #apply(batch: WatchBatch): void {
    let index = 0;
    while (index < batch.events.length) {
      const revision = batch.events[index].revision;
      const updated: string[] = [];
      const deleted: string[] = [];
      for (; index < batch.events.length && batch.events[index].revision === revision; index += 1) {
        const event = batch.events[index];
        const key = event.kv.key.toString('utf8');
        if (event.type === 'delete') {
          this.#config.delete(key);
          deleted.push(key);
        } else {
          this.#config.set(key, event.kv.value.toString('utf8'));
          updated.push(key);
        }
      }
      this.#revision = revision;
      this.#listener(this.#config, { revision, kind: 'update', updated, deleted });
    }
  }
}

/** Config calls of a {@link Client} (`client.config`). */
export class ConfigApi {
  readonly #client: Client;
  readonly #track: (closer: { close(): void }) => () => void;

  /** Created by the client; `track` registers a helper to close with it and returns a forget function. */
  constructor(client: Client, track: (closer: { close(): void }) => () => void) {
    this.#client = client;
    this.#track = track;
  }

  /**
   * Delivers the whole map under `prefix` to `onChange` (kind 'initial'), then the whole map
   * again after every revision that changes it (kind 'update', one call per revision).
   * Resolves after the initial delivery.
   */
  async watch(prefix: string, onChange: ConfigListener): Promise<ConfigWatch> {
    const handle = new ConfigWatch(this.#client, prefix, onChange);
    await handle.load();
    handle.onStop(this.#track(handle));
    void handle.run(); // Detached: run() handles its own errors and ends on close().
    return handle;
  }
}

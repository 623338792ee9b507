/**
 * The messages between the load driver (main thread) and its worker threads. A job runs in two
 * phases: setup (dial, preload, grant leases, create watchers: not measured), then, after the
 * driver's 'go', the measured run; the worker answers with a {@link WorkerResult}.
 */
import type { HistogramData } from './histogram.js';

/** What every job shares. */
export interface JobBase {
  readonly workerIndex: number;
  /** host:port list; connection c of this worker dials endpoints[(connOffset + c) % length]. */
  readonly endpoints: readonly string[];
  readonly connOffset: number;
  /** Connections (HTTP/2 channels) this worker opens. */
  readonly conns: number;
  /** Concurrent request loops this worker runs, spread over its connections. */
  readonly clients: number;
  /** Global index of this worker's first client (keys owned per client use it). */
  readonly clientOffset: number;
  /** Measured phase length; ignored when `totalOps` is set. */
  readonly durationMs: number;
  /** Stop after this many ops across all workers (shared counter); 0 = use duration. */
  readonly totalOps: number;
  /** Int32Array over it: [0] = ops handed out (for totalOps); [1] = 1 once the driver says stop. */
  readonly shared: SharedArrayBuffer;
  readonly keySize: number;
  readonly valueSize: number;
}

/** Puts of random keys in [0, keySpace). */
export interface PutJob extends JobBase { readonly kind: 'put'; readonly keySpace: number }
/** Single- or multi-key ranges at random keys in [0, keySpace). */
export interface RangeJob extends JobBase { readonly kind: 'range'; readonly keySpace: number; readonly keysPerRange: number; readonly consistency: 'linearizable' | 'serializable' }
/** Compare-and-swap transactions on a key per client (compare mod_revision, then put). */
export interface TxnJob extends JobBase { readonly kind: 'txn' }
/** Keep-alive round trips for `leases` leases (granted in setup), one bidi stream per client. */
export interface LeaseJob extends JobBase { readonly kind: 'lease'; readonly leases: number }
/** Loads keys [from, to) with txns of `batch` puts each (used by rss1m and range preloads). */
export interface LoadJob extends JobBase { readonly kind: 'load'; readonly from: number; readonly to: number; readonly batch: number }
/** `streams` watch streams with `watchersPerStream` watchers each on `key`; counts `expectedEvents`. */
export interface WatchJob extends JobBase { readonly kind: 'watch'; readonly key: string; readonly streams: number; readonly watchersPerStream: number; readonly expectedEvents: number; readonly timeoutMs: number }

/**
 * Closed-loop puts of timestamped values on keys `prefix` + [0, keySpace), watched by
 * `watchStreams` streams (one watcher each) on the whole prefix: put latency, and watch delivery
 * latency (put issued → event received), side by side.
 */
export interface PutWatchJob extends JobBase { readonly kind: 'putwatch'; readonly keySpace: number; readonly prefix: string; readonly watchStreams: number }

/** A job for one worker. */
export type Job = PutJob | RangeJob | TxnJob | LeaseJob | LoadJob | WatchJob | PutWatchJob;

/** Worker → driver. */
export type WorkerMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'result'; readonly result: WorkerResult }
  | { readonly type: 'failed'; readonly error: string };

/** Driver → worker. */
export type DriverMessage = { readonly type: 'go' };

/** What a worker measured. */
export interface WorkerResult {
  readonly ops: number;
  readonly errors: number;
  /** Error texts (code: message) with counts, at most a few distinct ones. */
  readonly errorSamples: Record<string, number>;
  readonly latency: HistogramData;
  /** Wall time of the measured phase in ms. */
  readonly elapsedMs: number;
  /** putwatch: events received and their delivery latency. */
  readonly watch?: { readonly events: number; readonly latency: HistogramData };
}

/** The 8-byte (or keySize) key for index i: 'k' + zero-padded decimal. */
export function keyFor(prefix: string, index: number, keySize: number): Buffer {
  return Buffer.from(prefix + String(index).padStart(Math.max(1, keySize - prefix.length), '0'));
}

/** Wall-clock time in ms with sub-ms precision, comparable across threads of one process. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

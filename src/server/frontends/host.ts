/**
 * The core side of a member's front-ends (issue 16's design): N front-end processes serve the
 * client port — HTTP/2, gRPC framing, protobuf, validation and watch fan-out — and hand decoded
 * requests to this process (Raft, WAL, apply: deterministic, one thread, as before) over a private
 * channel each. The client listeners are shared with the front-ends through node:cluster (each
 * front-end accepts from the same listening socket; this process never accepts client
 * connections).
 *
 * This host: forks the front-ends, sends them their settings, serves their backend calls against
 * the member's real backends (src/server/backends.ts), mirrors the member's state to them, and
 * broadcasts every committed revision to their watch hubs (encoded once for all; a large batch in
 * parts at the front-ends' pace, see broadcaster.ts). A front-end that
 * dies is restarted (its clients reconnect and resume their watches); one that cannot keep up with
 * the broadcast (channel backlog over MAX_CHANNEL_BACKLOG_BYTES) is restarted too, so the core never
 * buffers without bound.
 */
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import type { Duplex } from 'node:stream';
import { DerivedCallOptions, type Backends, type CallAuth, type CallOptions, type RangeReadOptions } from '../../api/backend.js';
import type { RangeCursor } from '../../store/mvcc/types.js';
import type { RevisionChanges } from '../../store/mvcc/store.js';
import { KvdError, errorMessage } from '../../util/errors.js';
import type { RequestTrace } from '../../api/instrument.js';
import type { Profiling } from '../../api/http-endpoints.js';
import type { MetricsJson } from '../metrics.js';
import type { Logger } from '../logger.js';
import { Channel, type ChannelMessage } from './channel.js';
import { MAX_CALLS_IN_FLIGHT, MAX_OPEN_CURSORS, type FrontendConfig, type MirroredState } from './protocol.js';
import { Broadcaster, type BroadcastTarget } from './broadcaster.js';
import { KeyedTable } from '../../util/keyed-table.js';
import { BUNDLED } from '../../util/bundled.js';

/** The front-end's entry: the worker bundle's launcher when this runs from the kvd bundle (dist/bin). */
const WORKER_MAIN = fileURLToPath(new URL(BUNDLED ? './kvd-frontend.js' : './worker-main.js', import.meta.url));
/** Restart back-off after a front-end died: from this, doubling, up to RESTART_MAX_MS. */
const RESTART_INITIAL_MS = 100;
const RESTART_MAX_MS = 5_000;
/** A cursor untouched this long is closed (its front-end went away or forgot it). */
const CURSOR_IDLE_MS = 60_000;

/** What the host needs from the member. */
export interface FrontendHostOptions {
  readonly count: number;
  readonly config: FrontendConfig;
  readonly backends: Backends;
  readonly logger: Logger;
  /** The member's state now. */
  readonly state: () => MirroredState;
  /** History for watch catch-up (the store's changes()). */
  readonly changes: (options: Parameters<import('../../store/watch/watch-hub.js').HistorySource['changes']>[0]) => ReturnType<import('../../store/watch/watch-hub.js').HistorySource['changes']>;
  /** Subscribes to committed revisions, snapshot installs and state changes; returns an unsubscribe. */
  readonly subscribe: (listeners: { revisions: (batch: readonly RevisionChanges[]) => void; storeReplaced: () => void; stateChanged: () => void }) => () => void;
  /** The whole member's metrics as Prometheus text (core and front-ends), for a front-end's /metrics. */
  readonly metrics: () => Promise<string>;
  /** Profiles of the core process, for a front-end's /debug/pprof. */
  readonly profiling: Profiling;
}

/** How long the core waits for front-ends' metrics before answering without the missing ones. */
const METRICS_TIMEOUT_MS = 2_000;

interface FrontendProcess extends BroadcastTarget {
  readonly slot: number;
  readonly worker: Worker;
  readonly channel: Channel;
  /** Calls being served, by the front-end's call id; not a Map: one in and one out per call (see KeyedTable). */
  readonly calls: KeyedTable<number, CoreCall>;
  readonly cursors: Map<number, { cursor: RangeCursor; touchedMs: number }>;
  /** Byte streams (Maintenance.Snapshot) read by the front-end a chunk at a time. */
  readonly streams: Map<number, { iterator: AsyncIterator<Uint8Array>; touchedMs: number }>;
  nextCursor: number;
  /** Metrics requests waiting for this front-end's answer. */
  readonly metricsWaiters: Map<number, (value: MetricsJson | undefined) => void>;
}

export class FrontendHost {
  readonly #options: FrontendHostOptions;
  readonly #slots: Array<FrontendProcess | undefined>;
  readonly #restartDelayMs: number[];
  #stopping = false;
  #unsubscribe: (() => void) | undefined;
  #sweeper: NodeJS.Timeout | undefined;
  #lastState = '';
  readonly #broadcaster: Broadcaster<FrontendProcess>;

  constructor(options: FrontendHostOptions) {
    this.#options = options;
    this.#slots = new Array<FrontendProcess | undefined>(options.count).fill(undefined);
    this.#restartDelayMs = new Array<number>(options.count).fill(RESTART_INITIAL_MS);
    this.#broadcaster = new Broadcaster<FrontendProcess>({
      targets: () => this.#slots,
      restart: (frontend, message, heldEvents) => {
        this.#options.logger.warn({ event: 'frontend-lagging', slot: frontend.slot, backlogBytes: frontend.channel.backlogBytes, heldEvents }, message);
        frontend.worker.process.kill('SIGKILL');
      },
      stateSent: (state) => {
        this.#lastState = stateKey(state);
      },
      failed: (error) => this.#options.logger.error({ event: 'frontend-broadcast-failed', error: errorMessage(error) }, 'could not send a large revision to the front-ends'),
    });
  }

  /** Forks every front-end and resolves once each is serving. */
  async start(): Promise<void> {
    cluster.schedulingPolicy = cluster.SCHED_NONE; // front-ends accept from the shared socket themselves
    cluster.setupPrimary({ exec: WORKER_MAIN, stdio: ['ignore', 'inherit', 'inherit', 'ipc', 'pipe'], silent: false });
    this.#unsubscribe = this.#options.subscribe({
      revisions: (batch) => this.#broadcaster.revisions(batch, this.#options.state()),
      storeReplaced: () => this.#broadcaster.storeReplaced(this.#options.state()),
      stateChanged: () => this.#maybeSendState(),
    });
    this.#sweeper = setInterval(() => this.#sweep(), 1_000);
    this.#sweeper.unref();
    await Promise.all(this.#slots.map((_, slot) => this.#spawn(slot)));
  }

  /** Front-ends running now. */
  get running(): number {
    return this.#slots.filter((slot) => slot !== undefined).length;
  }

  /** Process ids of the running front-ends (tests kill one to check the restart). */
  get pids(): number[] {
    return this.#slots.flatMap((slot) => (slot?.worker.process.pid === undefined ? [] : [slot.worker.process.pid]));
  }

  /**
   * Every running front-end's metrics (prom-client JSON); a front-end that does not answer within
   * METRICS_TIMEOUT_MS is left out of this scrape.
   */
  async collectMetrics(): Promise<MetricsJson[]> {
    const answers = await Promise.all(this.#slots.map((frontend) => {
      if (frontend === undefined || frontend.channel.closed) return Promise.resolve(undefined);
      const id = this.#nextMetricsRequest++;
      return new Promise<MetricsJson | undefined>((resolve) => {
        const timer = setTimeout(() => {
          frontend.metricsWaiters.delete(id);
          resolve(undefined);
        }, METRICS_TIMEOUT_MS);
        frontend.metricsWaiters.set(id, (value) => {
          clearTimeout(timer);
          resolve(value);
        });
        frontend.channel.send({ t: 'metrics-request', id });
      });
    }));
    return answers.filter((answer): answer is MetricsJson => answer !== undefined);
  }

  #nextMetricsRequest = 1;

  /** Stops every front-end: they stop accepting and finish in-flight calls for `graceMs`. */
  async stop(options: { graceMs: number }): Promise<void> {
    this.#stopping = true;
    this.#unsubscribe?.();
    if (this.#sweeper !== undefined) clearInterval(this.#sweeper);
    await Promise.all(this.#slots.map(async (frontend) => {
      if (frontend === undefined) return;
      const exited = new Promise<void>((resolve) => frontend.worker.once('exit', () => resolve()));
      frontend.channel.send({ t: 'shutdown', graceMs: options.graceMs });
      const kill = setTimeout(() => frontend.worker.process.kill('SIGKILL'), options.graceMs + 2_000);
      await exited;
      clearTimeout(kill);
    }));
  }

  #spawn(slot: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const worker = cluster.fork({ KVD_FRONTEND_SLOT: String(slot) });
      const pipe = worker.process.stdio?.[4] as Duplex | undefined;
      if (pipe === undefined || pipe === null) {
        reject(new Error('front-end has no channel pipe'));
        return;
      }
      const channel = new Channel(pipe);
      // Its first state (the 'config' below, in this turn) includes every broadcast so far.
      const frontend: FrontendProcess = { slot, worker, channel, startSequence: this.#broadcaster.sequence, calls: new KeyedTable<number, CoreCall>((call) => call.id, (id) => id), cursors: new Map(), streams: new Map(), nextCursor: 1, metricsWaiters: new Map() };
      this.#slots[slot] = frontend;
      let ready = false;
      channel.onMessage((message) => {
        if (message.t === 'ready') {
          ready = true;
          this.#restartDelayMs[slot] = RESTART_INITIAL_MS;
          this.#options.logger.info({ event: 'frontend-ready', slot, pid: worker.process.pid }, 'front-end serving');
          resolve();
          return;
        }
        this.#onMessage(frontend, message);
      });
      channel.onClose((reason) => this.#options.logger.debug({ event: 'frontend-channel-closed', slot, reason }, 'front-end channel closed'));
      worker.once('exit', (code, signal) => {
        this.#abandon(frontend);
        if (this.#slots[slot] === frontend) this.#slots[slot] = undefined;
        if (!ready) reject(new Error(`front-end ${slot} exited before serving (${signal ?? `code ${code}`})`));
        if (this.#stopping) return;
        const delay = this.#restartDelayMs[slot];
        this.#restartDelayMs[slot] = Math.min(RESTART_MAX_MS, delay * 2);
        this.#options.logger.warn({ event: 'frontend-exited', slot, code, signal, restartInMs: delay }, 'a front-end exited; restarting it');
        const timer = setTimeout(() => {
          if (this.#stopping) return;
          this.#spawn(slot).catch((error: unknown) => this.#options.logger.error({ event: 'frontend-restart-failed', slot, error: errorMessage(error) }, 'could not restart a front-end'));
        }, delay);
        timer.unref();
      });
      channel.send({ t: 'config', c: this.#options.config, s: this.#options.state() });
    });
  }

  #onMessage(frontend: FrontendProcess, message: ChannelMessage): void {
    switch (message.t) {
      case 'call':
        this.#serveCall(frontend, message as ChannelMessage & { id: number; m: string; a: unknown[]; d: number; u?: CallAuth });
        return;
      case 'cancel':
        frontend.calls.get(message.id as number)?.cancel();
        return;
      case 'metrics': {
        const waiter = frontend.metricsWaiters.get(message.id as number);
        frontend.metricsWaiters.delete(message.id as number);
        waiter?.(message.v as MetricsJson);
        return;
      }
      default:
        this.#options.logger.warn({ event: 'frontend-bad-message', slot: frontend.slot, type: message.t }, 'unknown message from a front-end');
    }
  }

  #serveCall(frontend: FrontendProcess, call: { id: number; m: string; a: unknown[]; d: number; u?: CallAuth }): void {
    const { channel, calls } = frontend;
    if (calls.size >= MAX_CALLS_IN_FLIGHT) {
      const error = new KvdError('too-many-requests');
      channel.send({ t: 'error', id: call.id, code: error.code, message: error.message });
      return;
    }
    if (calls.get(call.id) !== undefined) {
      this.#options.logger.error({ event: 'frontend-bad-message', slot: frontend.slot, id: call.id }, 'a front-end reused the id of a call in flight');
      channel.send({ t: 'error', id: call.id, code: 'internal', message: 'etcdserver: internal error: call id in use' });
      return;
    }
    const options = new CoreCall(call.d, { startMs: Date.now() }, callAuthFrom(call.u), call.id);
    calls.add(options);
    const trace = options.trace;
    let answer: Promise<unknown>;
    try {
      answer = this.#dispatch(frontend, call.m, call.a, options);
    } catch (error: unknown) {
      answer = Promise.reject(error);
    }
    // A compaction moves the mirrored state without a new revision: the front-ends get the new
    // state before this answer (the channel is ordered), so their watch hubs cancel watchers
    // below it with the right compact_revision.
    const compaction = call.m === 'kv.write' && (call.a[0] as { type?: string } | undefined)?.type === 'compact';
    answer.then(
      (value) => {
        if (compaction) this.#maybeSendState();
        calls.delete(call.id);
        if (trace.proposeMs !== undefined) channel.send({ t: 'result', id: call.id, v: value, tr: { proposeMs: trace.proposeMs, applyMs: trace.applyMs } });
        else channel.send({ t: 'result', id: call.id, v: value });
      },
      (error: unknown) => {
        calls.delete(call.id);
        if (error instanceof KvdError && error.code === 'compacted') this.#maybeSendState();
        if (error instanceof KvdError) channel.send({ t: 'error', id: call.id, code: error.code, message: error.message });
        else {
          this.#options.logger.error({ event: 'frontend-call-failed', method: call.m, error: errorMessage(error) }, 'unexpected error serving a front-end call');
          channel.send({ t: 'error', id: call.id, code: 'internal', message: `etcdserver: internal error: ${errorMessage(error)}` });
        }
      },
    );
  }

  /** Runs one backend method for a front-end. Arguments arrive decoded (bigints, Uint8Arrays). */
  #dispatch(frontend: FrontendProcess, method: string, args: unknown[], options: CoreCall): Promise<unknown> {
    const backends = this.#options.backends;
    const arg = args[0] as never;
    switch (method) {
      case 'kv.range': return backends.kv.range(arg, options);
      case 'kv.rangeKey': return (async () => (await backends.kv.rangeKey?.(arg, options)) ?? null)();
      case 'kv.write': return backends.kv.write(arg, options);
      case 'kv.openRange': return this.#openRange(frontend, arg, new RangeCallOptions(options, args[1] as number));
      case 'cursor.next': return this.#cursorNext(frontend, args[0] as number);
      case 'cursor.close': return this.#cursorClose(frontend, args[0] as number);
      case 'lease.grant': return backends.lease.grant(arg, options);
      case 'lease.revoke': return backends.lease.revoke(arg, options);
      case 'lease.keepAlive': return backends.lease.keepAlive(arg, options);
      case 'lease.timeToLive': return backends.lease.timeToLive(arg, options);
      case 'lease.leases': return backends.lease.leases(options);
      case 'cluster.memberList': return backends.cluster.memberList(arg, options);
      case 'cluster.memberAdd': return required(backends.cluster.memberAdd, method).call(backends.cluster, arg, options);
      case 'cluster.memberRemove': return required(backends.cluster.memberRemove, method).call(backends.cluster, arg, options);
      case 'cluster.memberUpdate': return required(backends.cluster.memberUpdate, method).call(backends.cluster, arg, options);
      case 'cluster.memberPromote': return required(backends.cluster.memberPromote, method).call(backends.cluster, arg, options);
      case 'maintenance.status': return backends.maintenance.status(options);
      case 'maintenance.alarm': return required(backends.maintenance.alarm, method).call(backends.maintenance, arg, options);
      case 'maintenance.defragment': return required(backends.maintenance.defragment, method).call(backends.maintenance, options);
      case 'maintenance.hash': return required(backends.maintenance.hash, method).call(backends.maintenance, options);
      case 'maintenance.hashKv': return required(backends.maintenance.hashKv, method).call(backends.maintenance, arg, options);
      case 'maintenance.moveLeader': return required(backends.maintenance.moveLeader, method).call(backends.maintenance, arg, options);
      case 'maintenance.snapshot': return this.#openSnapshot(frontend, options);
      case 'stream.next': return this.#streamNext(frontend, args[0] as number);
      case 'stream.close': return this.#streamClose(frontend, args[0] as number);
      case 'auth.status': return required(backends.auth?.status, method).call(backends.auth, options);
      case 'auth.call': return required(backends.auth?.call, method).call(backends.auth, arg, options);
      case 'watch.authorize': return backends.watch.authorizeWatch?.(arg, options.auth)?.then(() => null) ?? Promise.resolve(null);
      case 'history.changes': return this.#options.changes(arg);
      case 'metrics.all': return this.#options.metrics();
      case 'debug.profile': return this.#options.profiling.cpuProfile(args[0] as number, 'core');
      case 'debug.heap': return this.#options.profiling.heapSnapshot('core');
      default:
        throw new KvdError('unimplemented', { detail: `etcdserver: not implemented: front-end call ${method}` });
    }
  }

  async #openRange(frontend: FrontendProcess, request: never, options: RangeReadOptions): Promise<unknown> {
    const open = this.#options.backends.kv.openRange;
    if (open === undefined) throw new KvdError('unimplemented', { detail: 'etcdserver: not implemented: openRange' });
    if (frontend.cursors.size >= MAX_OPEN_CURSORS) throw new KvdError('too-many-requests');
    const { header, cursor } = await open.call(this.#options.backends.kv, request, options);
    const id = frontend.nextCursor++;
    frontend.cursors.set(id, { cursor, touchedMs: Date.now() });
    return { header, cursor: id, revision: cursor.revision, readRevision: cursor.readRevision };
  }

  async #cursorNext(frontend: FrontendProcess, id: number): Promise<unknown> {
    const entry = frontend.cursors.get(id);
    if (entry === undefined) throw new KvdError('invalid-argument', { detail: 'etcdserver: range cursor expired' });
    entry.touchedMs = Date.now();
    const next = await entry.cursor.next();
    if (next.done === true) {
      const summary = entry.cursor.summary();
      frontend.cursors.delete(id);
      await entry.cursor.return();
      return { done: true, summary };
    }
    return { done: false, page: next.value };
  }

  async #cursorClose(frontend: FrontendProcess, id: number): Promise<unknown> {
    const entry = frontend.cursors.get(id);
    frontend.cursors.delete(id);
    if (entry !== undefined) await entry.cursor.return();
    return null;
  }

  async #openSnapshot(frontend: FrontendProcess, options: { deadline: number; signal: AbortSignal }): Promise<unknown> {
    const snapshot = this.#options.backends.maintenance.snapshot;
    if (snapshot === undefined) throw new KvdError('unimplemented', { detail: 'etcdserver: not implemented: Snapshot' });
    if (frontend.cursors.size + frontend.streams.size >= MAX_OPEN_CURSORS) throw new KvdError('too-many-requests');
    const opened = await snapshot.call(this.#options.backends.maintenance, options);
    const id = frontend.nextCursor++;
    frontend.streams.set(id, { iterator: opened.chunks[Symbol.asyncIterator](), touchedMs: Date.now() });
    return { header: opened.header, sizeBytes: opened.sizeBytes, version: opened.version, stream: id };
  }

  async #streamNext(frontend: FrontendProcess, id: number): Promise<unknown> {
    const entry = frontend.streams.get(id);
    if (entry === undefined) throw new KvdError('invalid-argument', { detail: 'etcdserver: stream expired' });
    entry.touchedMs = Date.now();
    const next = await entry.iterator.next();
    if (next.done === true) {
      frontend.streams.delete(id);
      return { done: true };
    }
    return { done: false, value: next.value };
  }

  async #streamClose(frontend: FrontendProcess, id: number): Promise<unknown> {
    const entry = frontend.streams.get(id);
    frontend.streams.delete(id);
    if (entry !== undefined) await entry.iterator.return?.();
    return null;
  }

  #maybeSendState(): void {
    const state = this.#options.state();
    const key = stateKey(state);
    if (key === this.#lastState) return;
    this.#lastState = key;
    for (const frontend of this.#slots) frontend?.channel.send({ t: 'state', s: state });
  }

  /** Closes idle cursors; re-sends the state if it moved without a broadcast. */
  #sweep(): void {
    const now = Date.now();
    for (const frontend of this.#slots) {
      if (frontend === undefined) continue;
      for (const [id, entry] of frontend.cursors) {
        if (now - entry.touchedMs < CURSOR_IDLE_MS) continue;
        frontend.cursors.delete(id);
        void entry.cursor.return(); // Detached: releasing a cursor cannot fail in a way anyone waits for.
      }
      for (const [id, entry] of frontend.streams) {
        if (now - entry.touchedMs < CURSOR_IDLE_MS) continue;
        frontend.streams.delete(id);
        void entry.iterator.return?.(); // Detached: as above.
      }
    }
    this.#maybeSendState();
  }

  /** A front-end is gone: abort what it asked for and release its cursors. */
  #abandon(frontend: FrontendProcess): void {
    for (const call of frontend.calls.values()) call.cancel();
    frontend.calls.clear();
    for (const entry of frontend.cursors.values()) void entry.cursor.return(); // Detached: nothing waits on it.
    frontend.cursors.clear();
    for (const entry of frontend.streams.values()) void entry.iterator.return?.(); // Detached: nothing waits on it.
    frontend.streams.clear();
    for (const waiter of frontend.metricsWaiters.values()) waiter(undefined);
    frontend.metricsWaiters.clear();
  }
}

/** The credentials a front-end forwarded, checked for shape (the channel is trusted, the values are the client's). */
function callAuthFrom(value: unknown): CallAuth | undefined {
  if (value === undefined || value === null || typeof value !== 'object') return undefined;
  const { token, commonName } = value as { token?: unknown; commonName?: unknown };
  return { token: typeof token === 'string' ? token : undefined, commonName: typeof commonName === 'string' ? commonName : undefined };
}

function required<T>(method: T | undefined, name: string): T {
  if (method === undefined) throw new KvdError('unimplemented', { detail: `etcdserver: not implemented: ${name}` });
  return method;
}

function stateKey(state: MirroredState): string {
  return `${state.term}/${state.leader}/${state.revision}/${state.compacted}/${state.learner}`;
}

/**
 * A front-end's call as the core serves it: the CallOptions handed to the backends and what the
 * front-end's 'cancel' (or its exit) triggers. Cancellation without an AbortSignal (an
 * AbortController with an event listener per call was 7 % of the core's CPU under puts through
 * front-ends); the signal is built only when something reads it, aborted if the call already was.
 * Exported for tests.
 */
export class CoreCall implements CallOptions {
  readonly deadline: number;
  readonly trace: RequestTrace;
  readonly auth: CallAuth | undefined;
  #cancelled = false;
  #listeners: Array<() => void> | undefined;
  #controller: AbortController | undefined;

  /** The front-end's id of the call (0 where none is needed). */
  readonly id: number;

  constructor(deadline: number, trace: RequestTrace, auth: CallAuth | undefined, id = 0) {
    this.id = id;
    this.deadline = deadline;
    this.trace = trace;
    this.auth = auth;
  }

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      const controller = new AbortController();
      this.#controller = controller;
      this.onCancel(() => controller.abort(new KvdError('canceled')));
    }
    return this.#controller.signal;
  }

  /** Runs `listener` once when the call is cancelled (at once if it is); returns its removal. Callable unbound. */
  readonly onCancel = (listener: () => void): (() => void) => {
    if (this.#cancelled) {
      listener();
      return noop;
    }
    (this.#listeners ??= []).push(listener);
    return () => {
      const listeners = this.#listeners;
      const at = listeners === undefined ? -1 : listeners.indexOf(listener);
      if (at >= 0) listeners?.splice(at, 1);
    };
  };

  cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    const listeners = this.#listeners;
    this.#listeners = undefined;
    for (const listener of listeners ?? []) listener();
  }
}

/** A CoreCall's options for an openRange: its own, with the sort bound (the signal read from the call only when used). */
class RangeCallOptions extends DerivedCallOptions implements RangeReadOptions {
  readonly trace: RequestTrace;
  readonly sortBytesMax: number;

  constructor(call: CoreCall, sortBytesMax: number) {
    super(call);
    this.trace = call.trace;
    this.sortBytesMax = sortBytesMax;
  }
}

function noop(): void {
  // Nothing to remove.
}

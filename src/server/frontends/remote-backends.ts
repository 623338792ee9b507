/**
 * The backends a front-end's gRPC services call (src/api/backend.ts), served by the member's core
 * over the channel: every method is one 'call' message answered by one 'result' or 'error'. The
 * watch backend is local: a WatchHub in the front-end fed by the core's revision broadcast, whose
 * catch-up reads history from the core; headers and the hasleader guard use the mirrored state.
 *
 * Bounds: at most MAX_CALLS_IN_FLIGHT calls wait for the core ('too-many-requests' beyond); a
 * client that cancels frees its call at once and the core is told to abort it.
 */
import type {
  Backends, CallOptions, ClusterBackend, KvBackend, LeaseBackend, MaintenanceBackend, AuthBackend, RangeReadOptions, ResponseHeader, WatchBackend,
} from '../../api/backend.js';
import { onCancelOf } from '../../api/backend.js';
import type { KeyValue, RangeCursor, RangeResponse, Revision } from '../../store/mvcc/types.js';
import { WatchHub, type HistorySource } from '../../store/watch/watch-hub.js';
import { ERRORS, KvdError, type ErrorCode } from '../../util/errors.js';
import { KeyedTable } from '../../util/keyed-table.js';
import { watchBackend } from '../watch-backend.js';
import type { Channel, ChannelMessage } from './channel.js';
import { MAX_CALLS_IN_FLIGHT, type FrontendMethod, type MirroredState } from './protocol.js';

function noop(): void {
  // Nothing to release.
}

/** The signal of a call nothing cancels. */
const NEVER_ABORTED = new AbortController().signal;

interface PendingCall {
  readonly id: number;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: KvdError) => void;
  /** The caller's trace: the core's propose and apply times are copied into it. */
  readonly trace: CallOptions['trace'];
}

/** Calls into the core and the state mirrored from it. */
export class CoreLink {
  readonly #channel: Channel;
  /** Calls waiting for the core's answer; not a Map: one in and one out per call (see KeyedTable). */
  readonly #pending = new KeyedTable<number, PendingCall>((pending) => pending.id, (id) => id);
  #nextId = 1;
  #state: MirroredState;

  constructor(channel: Channel, state: MirroredState) {
    this.#channel = channel;
    this.#state = state;
  }

  get state(): MirroredState {
    return this.#state;
  }

  setState(state: MirroredState): void {
    this.#state = state;
  }

  header(revision?: Revision): ResponseHeader {
    const state = this.#state;
    return { clusterId: state.clusterId, memberId: state.memberId, revision: revision ?? state.revision, raftTerm: state.term };
  }

  /** Calls `method` at the core; resolves with its answer. */
  call<T>(method: FrontendMethod, args: readonly unknown[], options: CallOptions): Promise<T> {
    if (this.#channel.closed) return Promise.reject(new KvdError('stopped'));
    if (this.#pending.size >= MAX_CALLS_IN_FLIGHT) return Promise.reject(new KvdError('too-many-requests'));
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      let cancelled = false;
      const onAbort = (): void => {
        cancelled = true;
        if (this.#pending.delete(id) === undefined) return;
        this.#channel.send({ t: 'cancel', id });
        reject(new KvdError('canceled'));
      };
      // The call's cancellation without an AbortSignal (building one per call was 4 % of a
      // front-end's CPU under puts); a call cancelled already runs onAbort at once.
      let release: () => void = noop;
      this.#pending.add({
        id,
        resolve: (value) => { release(); resolve(value as T); },
        reject: (error) => { release(); reject(error); },
        trace: options.trace,
      });
      release = onCancelOf(options)(onAbort);
      if (cancelled) return;
      const auth = options.auth;
      this.#channel.send(auth === undefined ? { t: 'call', id, m: method, a: args, d: options.deadline } : { t: 'call', id, m: method, a: args, d: options.deadline, u: auth });
    });
  }

  /** A call that is not tied to a client call (history reads for the watch hub). */
  callDetached<T>(method: FrontendMethod, args: readonly unknown[], deadlineMs: number): Promise<T> {
    return this.call<T>(method, args, { deadline: deadlineMs, signal: NEVER_ABORTED, onCancel: () => noop });
  }

  /** An answer from the core. */
  settle(message: ChannelMessage): void {
    const pending = this.#pending.delete(message.id as number);
    if (pending === undefined) return; // canceled meanwhile
    const spent = message.tr as { proposeMs?: number; applyMs?: number } | undefined;
    if (spent !== undefined && pending.trace !== undefined) {
      pending.trace.proposeMs = spent.proposeMs;
      pending.trace.applyMs = spent.applyMs;
    }
    if (message.t === 'result') pending.resolve(message.v);
    else {
      const code = message.code as string;
      pending.reject(new KvdError(code in ERRORS ? (code as ErrorCode) : 'internal', { detail: message.message as string }));
    }
  }

  /** The core is gone: every waiting call fails. */
  failAll(): void {
    const pending = this.#pending.values();
    this.#pending.clear();
    for (const call of pending) call.reject(new KvdError('stopped'));
  }
}

/** Backends whose work happens at the core, plus a local watch hub. */
export function remoteBackends(link: CoreLink, options: { watchProgressIntervalMs: number; historyTimeoutMs: number }): { backends: Backends; hub: WatchHub } {
  const history: HistorySource = {
    get currentRevision() { return link.state.revision; },
    get compactedRevision() { return link.state.compacted; },
    changes: (request) => link.callDetached('history.changes', [request], Date.now() + options.historyTimeoutMs),
  };
  const hub = new WatchHub({ history, progressIntervalMs: options.watchProgressIntervalMs });
  const kv: KvBackend = {
    range: (request, callOptions) => link.call('kv.range', [request], callOptions),
    // One call for the commonest read instead of an open, a page and a close. A caller with
    // credentials has permissions to check, which the core's rangeKey leaves to its range: such a
    // read asks for the whole Range (one record at most) at once. The core also answers null when
    // it must check permissions of a caller without credentials (auth on): then the same.
    rangeKey(request, callOptions) {
      if (request.rangeEnd.length !== 0) return undefined;
      if (callOptions.auth !== undefined) return link.call<{ header: ResponseHeader; response: RangeResponse }>('kv.range', [request], callOptions);
      return link.call<{ header: ResponseHeader; response: RangeResponse } | null>('kv.rangeKey', [request], callOptions)
        .then((read) => read ?? link.call<{ header: ResponseHeader; response: RangeResponse }>('kv.range', [request], callOptions));
    },
    write: (request, callOptions) => link.call('kv.write', [request], callOptions),
    async openRange(request, callOptions: RangeReadOptions) {
      // The open is never abandoned half-way: a cursor the core opened is closed only by this side
      // (a canceled open whose answer was already on its way would pin its revision, holding back
      // physical compaction until the core's idle sweep). It runs to its answer, bounded by the
      // deadline, and a client gone meanwhile closes the cursor at once.
      const opened = await link.call<{ header: ResponseHeader; cursor: number; revision: Revision; readRevision: Revision }>(
        'kv.openRange', [request, callOptions.sortBytesMax],
        { deadline: callOptions.deadline, auth: callOptions.auth, trace: callOptions.trace, signal: new AbortController().signal },
      );
      const cursor = remoteCursor(link, opened, callOptions);
      if (callOptions.signal.aborted) {
        void cursor.return(); // Detached: sends cursor.close; its answer matters to nobody.
        throw new KvdError('canceled');
      }
      return { header: opened.header, cursor };
    },
  };
  const lease: LeaseBackend = {
    grant: (request, callOptions) => link.call('lease.grant', [request], callOptions),
    revoke: (id, callOptions) => link.call('lease.revoke', [id], callOptions),
    keepAlive: (id, callOptions) => link.call('lease.keepAlive', [id], callOptions),
    timeToLive: (request, callOptions) => link.call('lease.timeToLive', [request], callOptions),
    leases: (callOptions) => link.call('lease.leases', [], callOptions),
    header: () => link.header(),
  };
  const cluster: ClusterBackend = {
    memberList: (request, callOptions) => link.call('cluster.memberList', [request], callOptions),
    memberAdd: (request, callOptions) => link.call('cluster.memberAdd', [request], callOptions),
    memberRemove: (request, callOptions) => link.call('cluster.memberRemove', [request], callOptions),
    memberUpdate: (request, callOptions) => link.call('cluster.memberUpdate', [request], callOptions),
    memberPromote: (request, callOptions) => link.call('cluster.memberPromote', [request], callOptions),
  };
  const maintenance: MaintenanceBackend = {
    status: (callOptions) => link.call('maintenance.status', [], callOptions),
    alarm: (request, callOptions) => link.call('maintenance.alarm', [request], callOptions),
    defragment: (callOptions) => link.call('maintenance.defragment', [], callOptions),
    hash: (callOptions) => link.call('maintenance.hash', [], callOptions),
    hashKv: (request, callOptions) => link.call('maintenance.hashKv', [request], callOptions),
    moveLeader: (request, callOptions) => link.call('maintenance.moveLeader', [request], callOptions),
    async snapshot(callOptions) {
      const opened = await link.call<{ header: ResponseHeader; sizeBytes: number; version: string; stream: number }>('maintenance.snapshot', [], callOptions);
      return { header: opened.header, sizeBytes: opened.sizeBytes, version: opened.version, chunks: remoteStream(link, opened.stream, callOptions) };
    },
  };
  const auth: AuthBackend = {
    status: (callOptions) => link.call('auth.status', [], callOptions),
    call: (request, callOptions) => link.call('auth.call', [request], callOptions),
  };
  const watch: WatchBackend = {
    ...watchBackend({ watchHub: hub, store: { get currentRevision() { return link.state.revision; } }, header: () => link.header() }),
    // The auth state lives at the core: every create is decided there (one call per create).
    authorizeWatch: (range, callAuth) => link.call<null>('watch.authorize', [range], { deadline: Date.now() + options.historyTimeoutMs, signal: new AbortController().signal, auth: callAuth }).then(() => undefined),
  };
  return {
    backends: { kv, watch, lease, cluster, maintenance, auth, leadership: { hasLeader: () => link.state.leader !== 0n, isLearner: () => link.state.learner } },
    hub,
  };
}

/** A byte stream whose chunks are read at the core, one call per chunk (back-pressure by pull). */
async function* remoteStream(link: CoreLink, id: number, options: CallOptions): AsyncGenerator<Uint8Array> {
  let finished = false;
  try {
    for (;;) {
      const next = await link.call<{ done: boolean; value?: Uint8Array }>('stream.next', [id], options);
      if (next.done) {
        finished = true;
        return;
      }
      if (next.value !== undefined) yield next.value;
    }
  } finally {
    // Detached on purpose: closing an abandoned stream at the core is best effort (it also expires).
    if (!finished) void link.callDetached('stream.close', [id], Date.now() + 5_000).catch(() => undefined);
  }
}

/** A range cursor whose pages are read at the core. */
function remoteCursor(link: CoreLink, opened: { cursor: number; revision: Revision; readRevision: Revision }, options: CallOptions): RangeCursor {
  let summary: { count: number; more: boolean } | undefined;
  let finished = false;
  const cursor: RangeCursor = {
    revision: opened.revision,
    readRevision: opened.readRevision,
    summary() {
      if (summary === undefined) throw new KvdError('internal', { detail: 'etcdserver: range summary read before the last page' });
      return summary;
    },
    async next(): Promise<IteratorResult<readonly KeyValue[]>> {
      if (finished) return { done: true, value: undefined };
      const answer = await link.call<{ done: boolean; page?: KeyValue[]; summary?: { count: number; more: boolean } }>('cursor.next', [opened.cursor], options);
      if (answer.done) {
        finished = true;
        summary = answer.summary;
        return { done: true, value: undefined };
      }
      return { done: false, value: answer.page ?? [] };
    },
    async return(): Promise<IteratorResult<readonly KeyValue[], undefined>> {
      if (!finished) {
        finished = true;
        await link.callDetached('cursor.close', [opened.cursor], Date.now() + 5_000).catch(() => undefined);
      }
      return { done: true, value: undefined };
    },
    [Symbol.asyncIterator]() {
      return cursor;
    },
  };
  return cursor;
}

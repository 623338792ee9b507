/**
 * The Watch service: one bidirectional gRPC stream multiplexes many watchers, as in etcd's
 * server/etcdserver/api/v3rpc/watch.go. This module owns the per-stream protocol (watch ids,
 * created/canceled responses, progress timer, fragmentation, flow control); the watch hub behind
 * {@link WatchBackend} owns matching and history.
 *
 * Wire behaviour (etcd's):
 * - create → a `created` response (header revision = current store revision) precedes every
 *   event of that watcher. Server-chosen ids start at 0 and skip ids in use on the stream; a
 *   client-chosen id (watch_id != 0) already in use → created+canceled with watch_id -1 and
 *   reason "mvcc: duplicate watch ID provided on the WatchStream".
 * - negative start_revision → created+canceled, watch_id -1, reason = the compacted error text;
 *   key >= range_end → created+canceled, watch_id -1, "mvcc: watcher range is empty".
 * - cancel of a known id → `canceled` response; after it no response carries that id. Unknown
 *   ids are ignored.
 * - a compacted start (or falling behind compaction) → canceled with compact_revision.
 * - progress_request → one response with watch_id -1 once every watcher is caught up.
 * - progress_notify watchers get an empty response each interval (10 min + ≤10 % jitter by
 *   default) unless they received events since the last tick.
 * - fragment watchers get responses over the size limit split into parts, all but the last
 *   with fragment=true (never splitting below one event).
 * - client half-close: the stream stays open while watchers remain (etcd keeps it open until
 *   the client cancels); with no watchers it is ended.
 *
 * Flow control: responses wait in a bounded per-stream queue ({@link WATCH_SEND_QUEUE_MAX}
 * deliveries) and are written as the gRPC stream drains. When the queue is full the hub is told
 * 'full' and keeps its deliveries until writable(). Control responses (created/canceled) are
 * bounded by pausing the reading side beyond {@link WATCH_CONTROL_QUEUE_MAX}.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Event } from '../store/mvcc/types.js';
import { assert } from '../util/assert.js';
import type { CallAuth, ResponseHeader, WatchBackend, WatchDelivery, WatcherHandle, WatchStream } from './backend.js';
import { callAuthOf, type HandlerContext } from './call.js';
import { isKvdError } from '../util/errors.js';
import {
  WATCH_DUPLICATE_ID_REASON,
  decodeWatchCreateRequest,
  decodeBytes,
  decodeInt64,
  EncodedMessage,
  passEncodedResponses,
  type DecodedWatchCreate,
  encodeHeader,
  encodeRangeHeaderWire,
  encodeWatchEventsWire,
  encodeWatchEventsWireSteps,
  type PbMessage,
} from './codec.js';

/** Most hub deliveries queued per stream before the hub is told 'full'. */
export const WATCH_SEND_QUEUE_MAX = 256;
/** Most control responses queued per stream before reading client requests pauses (etcd: 128). */
export const WATCH_CONTROL_QUEUE_MAX = 128;
/** etcd's default progress notification interval. */
export const DEFAULT_WATCH_PROGRESS_INTERVAL_MS = 10 * 60 * 1000;
/** etcd's floor for the progress interval. */
export const MIN_WATCH_PROGRESS_INTERVAL_MS = 100;
/**
 * Events of one response encoded per turn of the event loop: a larger response (a revision that
 * deleted a million keys) is encoded in slices while the stream's later responses wait behind it.
 * Encoding a million-event response in one pass held the member's event loop for most of a second.
 */
export const WATCH_ENCODE_SLICE_EVENTS = 10_000;
/** Rough protobuf overhead of one event beyond its keys and values, for fragment sizing. */
const EVENT_OVERHEAD_BYTES = 64;

/** Options of {@link createWatchService}. */
export interface WatchServiceOptions extends HandlerContext {
  readonly backend: WatchBackend;
  /** Responses of fragment watchers above this size are split (etcd: max-request-bytes + 512 KiB). */
  readonly fragmentBytesMax: number;
  /** Interval of progress notifications; floored at {@link MIN_WATCH_PROGRESS_INTERVAL_MS}. */
  readonly progressIntervalMs: number;
  /** Jitter source in [0, 1); injected for tests. */
  readonly random?: () => number;
  /** Default {@link WATCH_ENCODE_SLICE_EVENTS}; tests set it small. */
  readonly encodeSliceEvents?: number;
}

/**
 * The Watch service definition with a serializer that passes pre-encoded event responses
 * ({@link EncodedMessage}) through. Register the handlers of {@link createWatchService} under it.
 */
export function watchServiceDefinition(definition: grpc.ServiceDefinition): grpc.ServiceDefinition {
  return passEncodedResponses(definition, ['Watch']);
}

/** Builds the handlers of etcdserverpb.Watch (register them under {@link watchServiceDefinition}). */
export function createWatchService(options: WatchServiceOptions): grpc.UntypedServiceImplementation {
  return {
    Watch: (call: grpc.ServerDuplexStream<PbMessage, PbMessage | EncodedMessage>) => {
      const session = new WatchSession(call, options);
      session.start();
    },
  };
}

interface WatcherState {
  readonly wireId: string;
  readonly progressNotify: boolean;
  readonly fragment: boolean;
  /** Invariant: only meaningful when progressNotify; true = send progress at the next tick. */
  progressDue: boolean;
}

/** A large response being encoded a slice per turn (see WATCH_ENCODE_SLICE_EVENTS). */
class SlicedEncoding {
  readonly #steps: Generator<void, EncodedMessage>;

  constructor(steps: Generator<void, EncodedMessage>) {
    this.#steps = steps;
  }

  /** Encodes one more slice; the message once every event is encoded (call no more then). */
  next(): EncodedMessage | undefined {
    const step = this.#steps.next();
    return step.done === true ? step.value : undefined;
  }
}

type QueueItem = { readonly response: PbMessage | EncodedMessage | SlicedEncoding; readonly kind: 'delivery' | 'control' };

/** One gRPC watch stream. */
class WatchSession {
  readonly #call: grpc.ServerDuplexStream<PbMessage, PbMessage | EncodedMessage>;
  readonly #options: WatchServiceOptions;
  readonly #hub: WatchStream;
  /** Invariant: #watchers and #handleByWireId are inverse maps of the live watchers. */
  readonly #watchers = new Map<WatcherHandle, WatcherState>();
  readonly #handleByWireId = new Map<string, WatcherHandle>();
  #nextHandle: WatcherHandle = 1;
  #nextAutoId = 0n;
  readonly #queue: QueueItem[] = [];
  /** Invariant: counts of #queue items by kind. */
  #queuedDeliveries = 0;
  #queuedControls = 0;
  #awaitingDrain = false;
  /** A turn of the event loop is scheduled to encode the next slice of the queue's head. */
  #encodeScheduled = false;
  /** The hub was told 'full' and waits for writable(). */
  #owesWritable = false;
  #readingPaused = false;
  /** The caller's credentials, read once per stream (etcd reads them from the stream's context). */
  readonly #auth: CallAuth | undefined;
  /** A create waits for its authorization; later requests wait in #backlog, in order. */
  #authorizing = false;
  /** Invariant: empty unless #authorizing; bounded by pausing reads at WATCH_CONTROL_QUEUE_MAX. */
  readonly #backlog: PbMessage[] = [];
  #backlogPaused = false;
  #clientEnded = false;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;

  constructor(call: grpc.ServerDuplexStream<PbMessage, PbMessage | EncodedMessage>, options: WatchServiceOptions) {
    this.#call = call;
    this.#options = options;
    this.#hub = options.backend.openWatchStream({ deliver: (delivery) => this.#deliver(delivery) });
    this.#auth = callAuthOf(call, options);
  }

  start(): void {
    this.#call.on('data', (request: PbMessage) => this.#onRequest(request));
    this.#call.on('end', () => {
      this.#clientEnded = true;
      this.#maybeEnd();
    });
    this.#call.on('cancelled', () => this.#close());
    this.#call.on('error', () => this.#close());
    this.#call.on('close', () => this.#close());
    const random = this.#options.random ?? Math.random;
    const base = Math.max(this.#options.progressIntervalMs, MIN_WATCH_PROGRESS_INTERVAL_MS);
    this.#timer = setInterval(() => this.#onProgressTick(), base + Math.floor(random() * (base / 10)));
    this.#timer.unref();
  }

  #header(revision?: number): PbMessage {
    const header: ResponseHeader = this.#options.backend.header();
    return encodeHeader(revision === undefined ? header : { ...header, revision });
  }

  #onRequest(request: PbMessage): void {
    if (this.#closed) return;
    if (this.#authorizing) {
      this.#backlog.push(request);
      if (this.#backlog.length >= WATCH_CONTROL_QUEUE_MAX && !this.#backlogPaused) {
        this.#backlogPaused = true;
        this.#call.pause();
      }
      return;
    }
    try {
      const which = request.request_union;
      if (which === 'create_request' && request.create_request) this.#onCreate(request.create_request as PbMessage);
      else if (which === 'cancel_request' && request.cancel_request) this.#onCancel(request.cancel_request as PbMessage);
      else if (which === 'progress_request' && request.progress_request) this.#hub.requestProgressAll();
      // Anything else is ignored, as etcd does, rather than failing the whole stream.
    } catch (error: unknown) {
      this.#options.onUnexpectedError(error, { method: 'Watch' });
      this.#call.emit('error', { code: 2, details: error instanceof Error ? error.message : String(error) });
      this.#close();
    }
  }

  #onCreate(pb: PbMessage): void {
    // As etcd's recvLoop: the caller's read permission on the range first, then the request's checks.
    const key = decodeBytes(pb.key);
    const range = { key: key.length === 0 ? new Uint8Array([0]) : key, rangeEnd: decodeBytes(pb.range_end) };
    const authorized = this.#options.backend.authorizeWatch?.(range, this.#auth);
    if (authorized === undefined) {
      this.#createChecked(pb);
      return;
    }
    // Requests after this one wait, so that responses keep the order of the requests.
    this.#authorizing = true;
    authorized.then(
      () => {
        if (!this.#closed) this.#createChecked(pb);
      },
      (error: unknown) => {
        if (this.#closed) return;
        if (!isKvdError(error)) this.#options.onUnexpectedError(error, { method: 'Watch' });
        this.#enqueueControl({ header: this.#header(), watch_id: '-1', created: true, canceled: true, cancel_reason: watchRefusalReason(error) });
      },
    ).finally(() => this.#afterAuthorization());
  }

  /** Handles the requests that waited for an authorization, until the next one waits again. */
  #afterAuthorization(): void {
    this.#authorizing = false;
    while (!this.#closed && !this.#authorizing && this.#backlog.length > 0) {
      const next = this.#backlog.shift() as PbMessage;
      this.#onRequest(next);
    }
    if (this.#backlogPaused && this.#backlog.length < WATCH_CONTROL_QUEUE_MAX / 2 && !this.#closed) {
      this.#backlogPaused = false;
      this.#call.resume();
    }
    this.#maybeEnd();
  }

  #createChecked(pb: PbMessage): void {
    const decoded = decodeWatchCreateRequest(pb);
    if (!decoded.ok) {
      this.#enqueueControl({ header: this.#header(), watch_id: '-1', created: true, canceled: true, cancel_reason: decoded.cancelReason });
      return;
    }
    this.#create(decoded);
  }

  #create(decoded: Extract<DecodedWatchCreate, { ok: true }>): void {
    let wireId: string;
    if (decoded.requestedId !== 0n) {
      wireId = decoded.requestedId.toString();
      if (this.#handleByWireId.has(wireId)) {
        this.#enqueueControl({ header: this.#header(), watch_id: '-1', created: true, canceled: true, cancel_reason: WATCH_DUPLICATE_ID_REASON });
        return;
      }
    } else {
      while (this.#handleByWireId.has(this.#nextAutoId.toString())) this.#nextAutoId += 1n;
      wireId = this.#nextAutoId.toString();
      this.#nextAutoId += 1n;
    }
    const handle = this.#nextHandle++;
    this.#watchers.set(handle, { wireId, progressNotify: decoded.options.progressNotify, fragment: decoded.fragment, progressDue: true });
    this.#handleByWireId.set(wireId, handle);
    // The created response is queued before the hub may deliver anything for this watcher.
    this.#enqueueControl({ header: this.#header(), watch_id: wireId, created: true });
    this.#hub.watch(handle, decoded.options);
  }

  #onCancel(pb: PbMessage): void {
    const wireId = decodeInt64(pb.watch_id).toString();
    const handle = this.#handleByWireId.get(wireId);
    if (handle === undefined) return;
    this.#hub.cancel(handle);
    this.#enqueueControl({ header: this.#header(), watch_id: wireId, canceled: true });
    this.#forget(handle);
  }

  #forget(handle: WatcherHandle): void {
    const watcher = this.#watchers.get(handle);
    if (watcher === undefined) return;
    this.#watchers.delete(handle);
    this.#handleByWireId.delete(watcher.wireId);
    this.#maybeEnd();
  }

  #onProgressTick(): void {
    if (this.#closed) return;
    for (const [handle, watcher] of this.#watchers) {
      if (!watcher.progressNotify) continue;
      if (watcher.progressDue) this.#hub.requestProgress(handle);
      watcher.progressDue = true;
    }
  }

  #deliver(delivery: WatchDelivery): 'accepted' | 'full' {
    if (this.#closed) return 'accepted';
    if (this.#queuedDeliveries >= WATCH_SEND_QUEUE_MAX) {
      this.#owesWritable = true;
      return 'full';
    }
    switch (delivery.type) {
      case 'events':
        this.#deliverEvents(delivery.watcher, delivery.revision, delivery.events);
        break;
      case 'progress': {
        if (delivery.watcher === 'all') {
          this.#enqueueDelivery({ header: this.#header(delivery.revision), watch_id: '-1' });
          break;
        }
        const watcher = this.#watchers.get(delivery.watcher);
        if (watcher !== undefined) this.#enqueueDelivery({ header: this.#header(delivery.revision), watch_id: watcher.wireId });
        break;
      }
      case 'compacted': {
        const watcher = this.#watchers.get(delivery.watcher);
        if (watcher === undefined) break;
        this.#enqueueDelivery({ header: this.#header(delivery.revision), watch_id: watcher.wireId, canceled: true, compact_revision: String(delivery.compactRevision) });
        this.#forget(delivery.watcher);
        break;
      }
      case 'canceled': {
        const watcher = this.#watchers.get(delivery.watcher);
        if (watcher === undefined) break;
        this.#enqueueDelivery({ header: this.#header(delivery.revision), watch_id: watcher.wireId, canceled: true, cancel_reason: delivery.reason });
        this.#forget(delivery.watcher);
        break;
      }
    }
    return 'accepted';
  }

  #deliverEvents(handle: WatcherHandle, revision: number, events: readonly Event[]): void {
    const watcher = this.#watchers.get(handle);
    if (watcher === undefined || events.length === 0) return;
    if (watcher.progressNotify) watcher.progressDue = false;
    // Wire bytes: the events' encoding is shared with every other watcher they go to (codec.ts).
    // The codec keeps the last header it encoded: the watchers of one revision share its bytes.
    const header = encodeRangeHeaderWire(this.#options.backend.header(), revision);
    const watchId = BigInt(watcher.wireId);
    const parts = watcher.fragment ? fragmentEvents(events, this.#options.fragmentBytesMax) : [events];
    const slice = this.#options.encodeSliceEvents ?? WATCH_ENCODE_SLICE_EVENTS;
    for (const [index, part] of parts.entries()) {
      const fragment = index < parts.length - 1;
      this.#enqueueDelivery(part.length > slice
        ? new SlicedEncoding(encodeWatchEventsWireSteps(header, watchId, part, fragment, slice))
        : encodeWatchEventsWire(header, watchId, part, fragment));
    }
  }

  #enqueueDelivery(response: PbMessage | EncodedMessage | SlicedEncoding): void {
    this.#queue.push({ response, kind: 'delivery' });
    this.#queuedDeliveries += 1;
    this.#pump();
  }

  #enqueueControl(response: PbMessage): void {
    this.#queue.push({ response, kind: 'control' });
    this.#queuedControls += 1;
    if (this.#queuedControls >= WATCH_CONTROL_QUEUE_MAX && !this.#readingPaused) {
      this.#readingPaused = true;
      this.#call.pause();
    }
    this.#pump();
  }

  #pump(): void {
    while (!this.#closed && !this.#awaitingDrain && this.#queue.length > 0) {
      let response = this.#queue[0].response;
      if (response instanceof SlicedEncoding) {
        // Encoded a slice per turn; what is queued behind it waits, in order.
        const encoded = response.next();
        if (encoded === undefined) {
          this.#encodeNextSlice();
          break;
        }
        response = encoded;
      }
      const item = this.#queue.shift();
      assert(item !== undefined, 'queue is non-empty');
      if (item.kind === 'delivery') this.#queuedDeliveries -= 1;
      else this.#queuedControls -= 1;
      const flowing = this.#call.write(response);
      if (!flowing) {
        this.#awaitingDrain = true;
        this.#call.once('drain', () => {
          this.#awaitingDrain = false;
          this.#pump();
        });
      }
    }
    if (this.#closed) return;
    if (this.#readingPaused && this.#queuedControls < WATCH_CONTROL_QUEUE_MAX / 2) {
      this.#readingPaused = false;
      this.#call.resume();
    }
    if (this.#owesWritable && this.#queuedDeliveries <= WATCH_SEND_QUEUE_MAX / 2) {
      this.#owesWritable = false;
      this.#hub.writable();
    }
    this.#maybeEnd();
  }

  #encodeNextSlice(): void {
    if (this.#encodeScheduled) return;
    this.#encodeScheduled = true;
    setImmediate(() => {
      this.#encodeScheduled = false;
      this.#pump();
    });
  }

  #maybeEnd(): void {
    if (this.#closed || !this.#clientEnded || this.#watchers.size > 0 || this.#queue.length > 0 || this.#awaitingDrain || this.#authorizing) return;
    this.#close();
    this.#call.end();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#queue.length = 0;
    this.#backlog.length = 0;
    this.#queuedDeliveries = 0;
    this.#queuedControls = 0;
    this.#hub.close();
  }
}

/**
 * etcd's cancel reason for a refused watch create: the gRPC status text of the matching rpctypes
 * error (v3rpc/watch.go: invalid token, old auth revision, empty user name; anything else is
 * "permission denied").
 */
export function watchRefusalReason(error: unknown): string {
  if (isKvdError(error, 'invalid-auth-token')) return 'rpc error: code = Unauthenticated desc = etcdserver: invalid auth token';
  if (isKvdError(error, 'auth-old-revision')) return 'rpc error: code = InvalidArgument desc = etcdserver: revision of auth store is old';
  if (isKvdError(error, 'auth-user-empty')) return 'rpc error: code = InvalidArgument desc = etcdserver: user name is empty';
  return 'rpc error: code = PermissionDenied desc = etcdserver: permission denied';
}

function eventBytes(event: Event): number {
  let bytes = event.kv.key.length + event.kv.value.length + EVENT_OVERHEAD_BYTES;
  if (event.prevKv !== undefined) bytes += event.prevKv.key.length + event.prevKv.value.length + EVENT_OVERHEAD_BYTES;
  return bytes;
}

/**
 * Splits events into parts of at most `bytesMax` (estimated), as etcd's sendFragments: no split
 * when the whole fits or there is a single event; each part holds at least one event.
 */
export function fragmentEvents(events: readonly Event[], bytesMax: number): (readonly Event[])[] {
  const total = events.reduce((sum, event) => sum + eventBytes(event), 0);
  if (total < bytesMax || events.length < 2) return [events];
  const parts: Event[][] = [];
  let current: Event[] = [];
  let bytes = 0;
  for (const event of events) {
    const size = eventBytes(event);
    if (current.length > 0 && bytes + size >= bytesMax) {
      parts.push(current);
      current = [];
      bytes = 0;
    }
    current.push(event);
    bytes += size;
  }
  parts.push(current);
  return parts;
}

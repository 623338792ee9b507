/**
 * gRPC over the client port's own HTTP/2 (src/util/h2/connection.ts): every method registered
 * with a grpc-js server — unary, server-streaming, client-streaming and bidirectional — served
 * with the registered deserializer, handler and serializer, through call objects that offer what
 * grpc-js' call objects offer kvd's handlers, guards and metrics wrapper (request, metadata,
 * cancelled, getDeadline/getPath/getPeer/getAuthContext, write with backpressure and 'drain',
 * end, pause/resume, emit('error', status), 'data'/'end'/'cancelled'/'close').
 *
 * What grpc-js does is done the same way, texts included: a content-type that is not gRPC gets
 * HTTP 415; an unknown method UNIMPLEMENTED "The server does not implement the method P"; a
 * message larger than the receive limit RESOURCE_EXHAUSTED "Received message larger than max (N vs.
 * M)"; gzip and deflate requests are inflated (at most the limit: "Received message that
 * decompresses to a size larger than M"), other encodings UNIMPLEMENTED; no or two messages for a
 * unary or server-streaming method UNIMPLEMENTED; a request that does not decode INTERNAL; an
 * invalid grpc-timeout INTERNAL; a passed deadline DEADLINE_EXCEEDED "Deadline exceeded".
 * 'cancelled' is emitted when every call ends (handlers release what they hold then); `cancelled`
 * is true only for a call that ended before it was answered.
 *
 * Bounds: a call buffers at most one incomplete message (the receive limit plus the rest of the
 * DATA frame that completed it), or while its handler pauses, what its stream window let the
 * client send before that; a streaming call's write() returns false until the socket has taken
 * the message (callers wait for 'drain'), so a writer that heeds it has one response unsent.
 */
import { EventEmitter } from 'node:events';
import type * as http2 from 'node:http2';
import type * as net from 'node:net';
import * as zlib from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { ChunkQueue, HeaderMetadata, framedMessage, RESPONSE_HEADERS, authContextOf, deadlineOf, peerOf, invalidTimeout, serializeToBuffer, statusOf, trailersOf, type CallAuthContext, type RegisteredHandler } from '../grpc-fast-path.js';
import { KvdError } from '../errors.js';
import { Slab } from '../slab.js';
import { H2Connection, type H2Stream } from './connection.js';
import { encodeHeaderBlock, type HeaderList } from './hpack.js';

/** Node's header object as fields (arrays as repeated fields, values as text). */
function fieldsOf(headers: http2.OutgoingHttpHeaders): Array<[string, string]> {
  const fields: Array<[string, string]> = [];
  for (const [name, value] of Object.entries(headers)) {
    for (const one of Array.isArray(value) ? value : [value]) fields.push([name, String(one)]);
  }
  return fields;
}

/** The lean path's response headers and trailers, encoded once. */
const RESPONSE_HEADERS_BLOCK = encodeHeaderBlock(fieldsOf(RESPONSE_HEADERS));
const OK_TRAILERS_BLOCK = encodeHeaderBlock(fieldsOf(trailersOf(grpc.status.OK, 'OK', null)));
const UNSUPPORTED_MEDIA_TYPE_BLOCK = encodeHeaderBlock([[':status', '415']]);
const STOPPED = new KvdError('stopped');
/**
 * Unary requests' bytes (see nextMessage); a request over a quarter of a slab gets a buffer of its
 * own. A call held until its deadline (a write while there is no leader) keeps its slab alive
 * that long: 16 KiB, so that calls in flight never hold much more than their own bytes.
 */
const UNARY_REQUEST_SLAB = new Slab(16 * 1024);

/**
 * write() returns false while this many of a call's messages wait for the socket to take them;
 * 'drain' follows once none does, after the loop's next I/O phase. At 1, a streaming writer that
 * heeds it (the watch service) sends one response per loop turn and gathers what comes meanwhile:
 * under etcd's watch benchmark (10,000 watchers, 2,000 puts) 1 gave 1.71M / 1.89M events/s at
 * 7.7–8.7 s of CPU, 2 1.37M / 1.48M, 4 1.20M / 1.47M, 16 (a grpc-js stream's 16 objects) 0.65M–0.99M
 * at 11–13 s, 64 0.62M / 0.67M: the fewer responses in flight, the more events each carries.
 */
const WRITES_IN_FLIGHT_MAX = 1;

/** The trailers of a status, with the response headers in front when nothing was sent yet (trailers-only). */
function statusBlock(code: number, details: string, metadata: grpc.Metadata | null, trailersOnly: boolean): Buffer {
  const trailers = trailersOf(code, details, metadata);
  return encodeHeaderBlock(fieldsOf(trailersOnly ? { ...RESPONSE_HEADERS, ...trailers } : trailers));
}

/** The header list as Node's HTTP/2 hands headers over (repeated names as arrays). */
function headerObject(list: HeaderList): http2.IncomingHttpHeaders {
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of list) {
    const existing = headers[name];
    if (existing === undefined) headers[name] = value;
    else if (Array.isArray(existing)) existing.push(value);
    else headers[name] = [existing, value];
  }
  return headers as http2.IncomingHttpHeaders;
}

/** Counts of calls served (tests). */
export interface H2GrpcStats {
  calls: number;
  connections: number;
}

export interface H2GrpcServerOptions {
  /** The receive limit of one message (what grpc-js' 'grpc.max_receive_message_length' is). */
  readonly maxReceiveBytes: number;
  /** Open streams per connection at most. */
  readonly maxConcurrentStreams?: number;
  /** Request header list per stream at most. */
  readonly maxHeaderListBytes?: number;
  readonly stats?: H2GrpcStats;
  /** PING each connection every `intervalMs`, dropping it when one is unanswered for `timeoutMs` (default: none). */
  readonly keepalive?: { readonly intervalMs: number; readonly timeoutMs: number };
}

/** grpc-js' table of registered methods (internal), or undefined if this grpc-js keeps none. */
export function registeredRoutes(server: grpc.Server): ReadonlyMap<string, RegisteredHandler> | undefined {
  const handlers = (server as unknown as { handlers?: unknown }).handlers;
  return handlers instanceof Map ? (handlers as ReadonlyMap<string, RegisteredHandler>) : undefined;
}

/** Serves gRPC on the HTTP/2 connections it is given. */
export class H2GrpcServer {
  readonly #routes: ReadonlyMap<string, RegisteredHandler>;
  readonly #options: H2GrpcServerOptions;
  readonly #connections = new Set<H2Connection>();

  constructor(routes: ReadonlyMap<string, RegisteredHandler>, options: H2GrpcServerOptions) {
    this.#routes = routes;
    this.#options = options;
  }

  /** Serves HTTP/2 on `socket` (plain or TLS, the preface not yet read). */
  serve(socket: net.Socket): H2Connection {
    const connection: H2Connection = new H2Connection(socket, {
      maxConcurrentStreams: this.#options.maxConcurrentStreams ?? 10_000,
      maxHeaderListBytes: this.#options.maxHeaderListBytes ?? 65_535,
      onStream: (stream) => this.#onStream(stream, socket),
      onClose: () => this.#connections.delete(connection),
      keepalive: this.#options.keepalive,
    });
    this.#connections.add(connection);
    if (this.#options.stats !== undefined) this.#options.stats.connections += 1;
    return connection;
  }

  /**
   * GOAWAY on every connection: they close once their calls are done. With `force`, at once, and
   * every call still open ends with UNAVAILABLE "etcdserver: server stopped" (etcd's ErrStopped:
   * clients retry it elsewhere) instead of a stream that ends without a status.
   */
  close(force: boolean): void {
    for (const connection of [...this.#connections]) {
      if (force) {
        for (const stream of connection.openStreams()) {
          if (stream.context instanceof H2GrpcCall) stream.context.finish(STOPPED.status, STOPPED.message);
        }
      }
      connection.close(force);
    }
  }

  /** Resolves once every connection has closed, or after `timeoutMs`. */
  async whenClosed(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.#connections.size > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(50, Math.max(1, deadline - Date.now()))));
    }
  }

  #onStream(stream: H2Stream, socket: net.Socket): void {
    const headers = headerObject(stream.headers);
    const contentType = headers['content-type'];
    if (typeof contentType !== 'string' || !contentType.startsWith('application/grpc')) {
      stream.respondTrailersOnly(UNSUPPORTED_MEDIA_TYPE_BLOCK);
      return;
    }
    const path = headers[':path'] ?? '';
    const route = this.#routes.get(path);
    if (route === undefined) {
      stream.respondTrailersOnly(statusBlock(grpc.status.UNIMPLEMENTED, `The server does not implement the method ${path}`, null, true));
      return;
    }
    const parsed = deadlineOf(headers);
    if (parsed === undefined) {
      stream.respondTrailersOnly(statusBlock(grpc.status.INTERNAL, invalidTimeout(headers), null, true));
      return;
    }
    if (this.#options.stats !== undefined) this.#options.stats.calls += 1;
    serveCall(stream, socket, headers, route, parsed, this.#options.maxReceiveBytes);
  }
}

/** A call: what grpc-js' ServerUnaryCall / ServerWritableStream / ServerDuplexStream offer kvd's code. */
export class H2GrpcCall extends EventEmitter {
  request: unknown = null;
  cancelled = false;
  readonly metadata: grpc.Metadata;
  /** While paused, no 'data' is emitted and the stream's window is not granted back. */
  paused = false;
  /** Set by serveCall: emits the messages already received once resumed. */
  onResume: (() => void) | undefined = undefined;
  readonly #stream: H2Stream;
  readonly #socket: net.Socket;
  readonly #route: RegisteredHandler;
  readonly #deadline: number;
  #headersSent = false;
  #ended = false;
  /** Messages written whose bytes the socket has not taken yet (see {@link WRITES_IN_FLIGHT_MAX}). */
  #inFlight = 0;
  /** write() returned false: 'drain' is owed. */
  #owesDrain = false;
  #drainScheduled = false;
  /** A listener run once when the call ends, before 'cancelled' is emitted (see {@link onEnded}). */
  #endListener: (() => void) | undefined = undefined;
  /**
   * The request as it arrives (serveCall), kept on the call rather than in closures: a unary
   * call's stream events are served by static functions that find the call as the stream's
   * context (four closures and their context per call were most of what a call kept alive).
   */
  readonly #received = new ChunkQueue();
  #encoding = 'identity';
  #maxReceiveBytes = 0;
  /** A unary or server-streaming call: the length its message declares, once known (-1 before). */
  #declared = -1;
  #timer: NodeJS.Timeout | undefined = undefined;

  constructor(stream: H2Stream, socket: net.Socket, headers: http2.IncomingHttpHeaders, route: RegisteredHandler, deadline: number) {
    super();
    this.#stream = stream;
    this.#socket = socket;
    this.#route = route;
    this.#deadline = deadline;
    this.metadata = new HeaderMetadata(headers) as unknown as grpc.Metadata;
  }

  /** serveCall: how the request arrives (its encoding, the receive limit, a deadline in ms). */
  receiveWith(encoding: string, maxReceiveBytes: number, timeoutMs: number | undefined): void {
    this.#encoding = encoding;
    this.#maxReceiveBytes = maxReceiveBytes;
    if (timeoutMs !== undefined) this.#timer = setTimeout(H2GrpcCall.#deadlinePassed, timeoutMs, this);
  }

  static #deadlinePassed(call: H2GrpcCall): void {
    call.finish(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded');
  }

  /** A chunk of the request's bytes (client-streaming and bidirectional calls). */
  receive(chunk: Buffer): void {
    this.#received.push(chunk);
  }

  /** Whether a whole message waits in what was received. */
  holdsMessage(): boolean {
    return this.#received.holdsMessage();
  }

  /** The next whole message received, decoded; undefined when none is complete (or the call ended). */
  nextMessage(): { message: unknown } | undefined {
    const received = this.#received;
    if (received.bytes < 5) return undefined;
    const length = received.messageLength();
    if (length > this.#maxReceiveBytes) {
      this.finish(grpc.status.RESOURCE_EXHAUSTED, `Received message larger than max (${length} vs ${this.#maxReceiveBytes})`);
      return undefined;
    }
    if (received.bytes < 5 + length) return undefined;
    // A unary call's request is not kept beyond the call (a put's key and value are copied into
    // its entry): cut from a slab, a stream's messages (a watch's key range) in buffers of their own.
    const framed = received.take(5 + length, this.#route.type === 'unary' ? UNARY_REQUEST_SLAB : undefined);
    let payload = framed.subarray(5);
    const encoding = this.#encoding;
    if (framed[0] !== 0 && encoding !== 'identity') {
      if (encoding !== 'gzip' && encoding !== 'deflate') {
        this.finish(grpc.status.UNIMPLEMENTED, `Received message compressed with unsupported encoding "${encoding}"`);
        return undefined;
      }
      const inflated = inflate(payload, encoding, this.#maxReceiveBytes);
      if (!Buffer.isBuffer(inflated)) {
        this.finish(inflated.code, inflated.details);
        return undefined;
      }
      payload = inflated;
    }
    try {
      return { message: this.#route.deserialize(payload) };
    } catch {
      this.finish(grpc.status.INTERNAL, 'Error deserializing request');
      return undefined;
    }
  }

  /** A unary or server-streaming call's DATA (the stream's onData; `this` is the stream). */
  static onSingleData(this: H2Stream, chunk: Buffer): void {
    const call = this.context as H2GrpcCall;
    if (call.#ended) return;
    const received = call.#received;
    received.push(chunk);
    if (call.#declared < 0 && received.bytes >= 5) {
      call.#declared = received.messageLength();
      if (call.#declared > call.#maxReceiveBytes) {
        call.finish(grpc.status.RESOURCE_EXHAUSTED, `Received message larger than max (${call.#declared} vs ${call.#maxReceiveBytes})`);
        return;
      }
    }
    // More than the one message: refused at once (nothing beyond one message is buffered).
    if (call.#declared >= 0 && received.bytes > 5 + call.#declared) call.finish(grpc.status.UNIMPLEMENTED, `Received a second request message for server streaming method ${call.#route.path}`);
  }

  /** A unary or server-streaming call's request is complete: decoded and handed to the handler. */
  static onSingleEnd(this: H2Stream): void {
    const call = this.context as H2GrpcCall;
    if (call.#ended) return;
    if (!call.#received.holdsMessage()) {
      call.finish(grpc.status.UNIMPLEMENTED, `Received no request message for server streaming method ${call.#route.path}`);
      return;
    }
    const next = call.nextMessage();
    if (next === undefined) return;
    call.request = next.message;
    runHandler(call.#route, call);
  }

  /** The call's stream closed (the stream's onClose): the deadline goes, the call ends. */
  static onStreamClose(this: H2Stream): void {
    const call = this.context as H2GrpcCall;
    if (call.#timer !== undefined) clearTimeout(call.#timer);
    if (!call.#ended) call.cancelled = true;
    call.#endedNow();
    if (call.#route.type !== 'unary') call.emit('close');
  }

  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Runs `listener` once when the call ends, as a once('cancelled') listener would, from a slot of
   * the call's own: once() wrapped every listener and removing one copied the listener list, for
   * every write. One listener at a time: false when the slot is taken (use once() then).
   */
  onEnded(listener: () => void): boolean {
    if (this.#endListener !== undefined) return false;
    this.#endListener = listener;
    return true;
  }

  /** Removes `listener` from the slot if it is there. */
  offEnded(listener: () => void): void {
    if (this.#endListener === listener) this.#endListener = undefined;
  }

  /** The call's stream closed: the slot's listener runs, then 'cancelled' is emitted. */
  #endedNow(): void {
    const listener = this.#endListener;
    this.#endListener = undefined;
    listener?.();
    this.emit('cancelled', 'cancelled');
  }

  getDeadline(): number {
    return this.#deadline;
  }

  getPath(): string {
    return this.#route.path;
  }

  getPeer(): string {
    return peerOf(this.#socket);
  }

  getAuthContext(): CallAuthContext {
    return authContextOf(this.#socket);
  }

  sendMetadata(): void {
    this.#sendHeaders();
  }

  #sendHeaders(): void {
    if (this.#headersSent) return;
    this.#headersSent = true;
    this.#stream.respond(RESPONSE_HEADERS_BLOCK);
  }

  #open(): boolean {
    return !this.#ended && !this.#stream.closed;
  }

  /** Sends one response message; false when the caller should wait for 'drain'. */
  write(message: unknown, callback?: (error?: Error | null) => void): boolean {
    const payload = this.#serialize(message);
    if (payload === undefined) {
      if (callback !== undefined) process.nextTick(callback, new Error('call ended'));
      return false;
    }
    return this.#writeCounted(payload, callback);
  }

  /** The response serialized, or undefined (the call ended, or failed with INTERNAL). */
  #serialize(message: unknown): Buffer | undefined {
    if (!this.#open()) return undefined;
    try {
      return serializeToBuffer(this.#route, message);
    } catch {
      this.finish(grpc.status.INTERNAL, 'Error serializing response');
      return undefined;
    }
  }

  /**
   * Sends one length-prefixed message; `written` runs once the socket has taken it. Small ones go
   * as one copied buffer, large ones as prefix + payload (no copy).
   */
  #writePayload(payload: Buffer, written?: (error?: Error | null) => void): void {
    this.#sendHeaders();
    const parts = framedMessage(payload);
    if (parts.length > 1) this.#stream.write(parts[0]);
    this.#stream.write(parts[parts.length - 1], written);
  }

  /** A streaming write, counted in flight until the socket takes it (see {@link WRITES_IN_FLIGHT_MAX}). */
  #writeCounted(payload: Buffer, callback?: (error?: Error | null) => void): boolean {
    this.#inFlight += 1;
    this.#writePayload(payload, (error) => {
      this.#inFlight -= 1;
      callback?.(error);
      this.#maybeDrain();
    });
    if (this.#inFlight < WRITES_IN_FLIGHT_MAX) return true;
    this.#owesDrain = true;
    return false;
  }

  #maybeDrain(): void {
    if (!this.#owesDrain || this.#inFlight > 0 || !this.#open() || this.#drainScheduled) return;
    // After the event loop's next I/O phase, as Node's HTTP/2 streams call back (nghttp2 sends
    // from an immediate): a writer that waited gathers one loop's worth of events meanwhile.
    this.#drainScheduled = true;
    setImmediate(() => {
      this.#drainScheduled = false;
      if (!this.#owesDrain || this.#inFlight > 0 || !this.#open()) return;
      this.#owesDrain = false;
      this.emit('drain');
    });
  }

  end(): void {
    this.finish(grpc.status.OK, 'OK');
  }

  pause(): this {
    this.paused = true;
    this.#stream.pause();
    return this;
  }

  resume(): this {
    this.paused = false;
    this.onResume?.();
    if (!this.paused) this.#stream.resume();
    return this;
  }

  /** Ends the call with a status: in the trailers, or trailers-only when nothing was sent yet. */
  finish(code: number, details: string, metadata: grpc.Metadata | null = null): void {
    if (!this.#open()) return;
    this.#ended = true;
    if (!this.#headersSent) {
      this.#headersSent = true;
      this.#stream.respondTrailersOnly(statusBlock(code, details, metadata, true));
      return;
    }
    this.#stream.end(code === grpc.status.OK && metadata === null ? OK_TRAILERS_BLOCK : statusBlock(code, details, metadata, false));
  }

  /** A unary call's answer: headers, the message and OK trailers, in one turn. */
  answer(value: unknown): void {
    const payload = this.#serialize(value);
    if (payload === undefined) return;
    this.#writePayload(payload);
    this.finish(grpc.status.OK, 'OK');
  }
}

/** Inflates a compressed request message (grpc-js' decompressMessage), at most `max` bytes; a status when it cannot. */
function inflate(payload: Buffer, encoding: 'gzip' | 'deflate', max: number): Buffer | { code: number; details: string } {
  try {
    return encoding === 'gzip' ? zlib.gunzipSync(payload, { maxOutputLength: max }) : zlib.inflateSync(payload, { maxOutputLength: max });
  } catch (error: unknown) {
    if (error instanceof RangeError || (error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
      return { code: grpc.status.RESOURCE_EXHAUSTED, details: `Received message that decompresses to a size larger than ${max}` };
    }
    return { code: grpc.status.INTERNAL, details: 'Failed to decompress message' };
  }
}

function serveCall(stream: H2Stream, socket: net.Socket, headers: http2.IncomingHttpHeaders, route: RegisteredHandler, parsed: { deadline: number; ms?: number }, maxReceiveBytes: number): void {
  const call = new H2GrpcCall(stream, socket, headers, route, parsed.deadline);
  stream.context = call;
  const encodingHeader = headers['grpc-encoding'];
  call.receiveWith(typeof encodingHeader === 'string' ? encodingHeader : 'identity', maxReceiveBytes, parsed.ms);
  stream.onClose = H2GrpcCall.onStreamClose;
  if (route.type !== 'unary') {
    // As grpc-js' server streams: an emitted error ends the call with that status.
    call.on('error', (error: unknown) => {
      const status = statusOf(error);
      call.finish(status.code, status.details, status.metadata);
    });
  }
  if (route.type === 'unary' || route.type === 'serverStream') {
    stream.onData = H2GrpcCall.onSingleData;
    stream.onEnd = H2GrpcCall.onSingleEnd;
    return;
  }
  // Client-streaming and bidirectional: messages emitted as they complete; 'end' once every
  // message received has been emitted.
  let clientEnded = false;
  const emitReceived = (): void => {
    while (!call.ended && !call.paused) {
      const next = call.nextMessage();
      if (next === undefined) break;
      call.emit('data', next.message);
    }
    if (clientEnded && !call.ended && !call.paused && !call.holdsMessage()) {
      clientEnded = false;
      call.emit('end');
    }
  };
  call.onResume = emitReceived;
  stream.onData = (chunk) => {
    if (call.ended) return;
    call.receive(chunk);
    emitReceived();
  };
  stream.onEnd = () => {
    clientEnded = true;
    emitReceived();
  };
  runHandler(route, call);
}

/**
 * Runs the registered handler as grpc-js does: unary and client-streaming handlers answer through
 * a callback (value, or error with optional trailers), the others through the call itself.
 */
function runHandler(route: RegisteredHandler, call: H2GrpcCall): void {
  try {
    if (route.type === 'unary' || route.type === 'clientStream') {
      route.func(call, (error, value, trailer) => {
        if (error !== null && error !== undefined) {
          const status = statusOf(error);
          call.finish(status.code, status.details, trailer ?? status.metadata);
          return;
        }
        call.answer(value);
      });
    } else {
      (route.func as (call: unknown) => void)(call);
    }
  } catch {
    call.finish(grpc.status.UNKNOWN, 'Unknown error');
  }
}

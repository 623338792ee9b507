/**
 * A lean serving path for unary gRPC calls (Range, Put, DeleteRange, Txn, LeaseGrant, ...) and
 * for chosen bidirectional streams: the client port's LeaseKeepAlive, the peer transport's Raft
 * message stream and member calls (src/transport/transport.ts installs it on its server too).
 *
 * grpc-js serves every call through layers built for the general case: an intercepting call with
 * its own read queue, a decoder stream, a Metadata object built from all headers, a writable
 * stream object per call, and a 'cancelled' event after every call. For a small unary request
 * that is a large share of the member's CPU (issue 16's profiles). This path takes the HTTP/2
 * streams of unary methods before grpc-js sees them and serves them directly: read the one
 * length-prefixed message, decode it with the method's (instrumented) deserializer, run the same
 * handler grpc-js would run (guards, instrumentation and all), and answer with headers, one DATA
 * frame and trailers — what grpc-js sends, byte for byte in the headers that matter.
 *
 * Those streams (etcd's KeepAliveOnce opens a LeaseKeepAlive stream per renewal; a follower
 * receives every append frame on its leader's message stream) are served here too: messages
 * parsed as they arrive, answers as DATA frames, the end as trailers.
 *
 * Everything unusual goes to grpc-js unchanged: other streaming methods, unknown paths, a content-type
 * that is not gRPC, a compressed request (grpc-encoding other than identity). Errors and limits
 * follow grpc-js, texts included: a message larger than the receive limit (RESOURCE_EXHAUSTED
 * "Received message larger than max (N vs. M)"), a request that does not decode (INTERNAL), no or
 * two messages (UNIMPLEMENTED), an invalid grpc-timeout (INTERNAL), a passed deadline
 * (DEADLINE_EXCEEDED "Deadline exceeded").
 *
 * Installed by wrapping the grpc-js server's (internal) createHttp2Server: each HTTP/2 server it
 * makes — bound ports and connection injectors alike — gets a 'stream' listener that serves the
 * unary methods and LeaseKeepAlive and hands the rest to grpc-js's own listeners. If grpc-js no longer has that
 * method, nothing is installed and grpc-js serves everything ({@link installUnaryFastPath}
 * returns false; a test checks that it is installed).
 *
 * Bounds: a unary call buffers its one request message, a stream the bytes of at most one
 * incomplete message (or, while its handler pauses, what arrived before the pause): each at most
 * the receive limit plus its 5-byte prefix and the rest of the DATA frame that completed it.
 */
import { EventEmitter } from 'node:events';
import type * as http2 from 'node:http2';
import { TLSSocket } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { Slab } from './slab.js';

/** A method as grpc-js keeps it registered (its `handlers` map): what this path serves with. */
export interface RegisteredHandler {
  readonly func: (call: unknown, callback: grpc.sendUnaryData<unknown>) => void;
  readonly serialize: (value: unknown) => Buffer;
  readonly deserialize: (bytes: Buffer) => unknown;
  readonly type: string;
  readonly path: string;
}

/** Counts of calls served here (tests check the path is in use; debugging). */
export interface FastPathStats {
  /** Unary calls. */
  served: number;
  /** Streams of {@link LEAN_STREAMS}. */
  streams: number;
}

/**
 * Bidirectional streams also served here: LeaseKeepAlive, which etcd's clients open for each
 * KeepAliveOnce (etcdctl lease keep-alive --once, etcd's lease benchmark) and whose cost was mostly
 * grpc-js' per-stream setup. Watch keeps grpc-js (its flow control is more involved).
 */
export const LEAN_STREAMS: ReadonlySet<string> = new Set(['/etcdserverpb.Lease/LeaseKeepAlive']);

export const RESPONSE_HEADERS = {
  ':status': 200,
  'content-type': 'application/grpc+proto',
  'grpc-accept-encoding': 'identity,deflate,gzip',
  'grpc-encoding': 'identity',
} as const;

const OK_TRAILERS = { 'grpc-status': '0', 'grpc-message': 'OK' } as const;

/**
 * Options of the response headers: trailers follow; no `date` header (Node adds one to every HTTP/2
 * response unless told not to; gRPC has no use for it and Go's servers, etcd's among them, send none).
 * `sendDate` is read by Node's respond() (its processHeaders) though only its compatibility API
 * documents it; were it ignored, the header would just come back.
 */
const RESPOND_OPTIONS: http2.ServerStreamResponseOptions & { sendDate: boolean } = { waitForTrailers: true, sendDate: false };
const TRAILERS_ONLY_OPTIONS: http2.ServerStreamResponseOptions & { sendDate: boolean } = { endStream: true, sendDate: false };

const DEADLINE_PATTERN = /(\d{1,8})\s*([HMSmun])/;
const DEADLINE_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** Responses above this go out as prefix + payload (two writes) instead of one copied buffer. */
const COPY_RESPONSE_BYTES_MAX = 64 * 1024;

type StreamListener = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) => void;

/**
 * Makes `server` serve its unary methods and the bidirectional streams of `leanStreams` (default
 * {@link LEAN_STREAMS}; the peer transport passes its message stream) on the lean path: the methods registered with it when a
 * call arrives (addService/removeService keep working), with their registered deserializer,
 * handler and serializer. Call before the server is bound or gets a connection injector. Returns
 * false when grpc-js' internals did not allow it (everything is then served by grpc-js).
 */
export function installUnaryFastPath(server: grpc.Server, options: { maxReceiveBytes: number; stats?: FastPathStats; leanStreams?: ReadonlySet<string> }): boolean {
  const leanStreams = options.leanStreams ?? LEAN_STREAMS;
  const internals = server as unknown as { createHttp2Server?: (credentials: unknown) => http2.Http2Server; handlers?: unknown };
  const create = internals.createHttp2Server;
  const registered = internals.handlers;
  if (typeof create !== 'function' || !(registered instanceof Map)) return false;
  const routes = registered as ReadonlyMap<string, RegisteredHandler>;
  internals.createHttp2Server = function createWithFastPath(this: unknown, credentials: unknown): http2.Http2Server {
    const http2Server = create.call(server, credentials);
    const grpcListeners = http2Server.listeners('stream') as StreamListener[];
    http2Server.removeAllListeners('stream');
    http2Server.on('stream', (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) => {
      const route = routes.get(headers[':path'] ?? '');
      if (route !== undefined && servable(headers)) {
        if (route.type === 'unary') {
          if (options.stats !== undefined) options.stats.served += 1;
          serveUnary(stream, headers, route, options.maxReceiveBytes);
          return;
        }
        if (route.type === 'bidi' && leanStreams.has(route.path)) {
          if (options.stats !== undefined) options.stats.streams += 1;
          serveStream(stream, headers, route, options.maxReceiveBytes);
          return;
        }
      }
      for (const listener of grpcListeners) listener.call(http2Server, stream, headers, flags, rawHeaders);
    });
    return http2Server;
  };
  return true;
}

/** gRPC content-type and no compression: anything else is grpc-js's to answer. */
function servable(headers: http2.IncomingHttpHeaders): boolean {
  const contentType = headers['content-type'];
  if (typeof contentType !== 'string' || !contentType.startsWith('application/grpc')) return false;
  const encoding = headers['grpc-encoding'];
  return encoding === undefined || encoding === 'identity';
}

const NO_VALUES = Object.freeze([]) as unknown as grpc.MetadataValue[];

/**
 * The request's metadata as grpc.Metadata's `get` sees it, read from the headers on demand
 * (building a grpc.Metadata of every header per call is what this path avoids). Binary (-bin)
 * keys and the other Metadata methods use a real grpc.Metadata, built on first use.
 */
export class HeaderMetadata {
  readonly #headers: http2.IncomingHttpHeaders;
  #full: grpc.Metadata | undefined;

  constructor(headers: http2.IncomingHttpHeaders) {
    this.#headers = headers;
  }

  get(key: string): grpc.MetadataValue[] {
    const name = key.toLowerCase();
    if (name.endsWith('-bin')) return this.full().get(name);
    if (name.startsWith(':') || name === 'grpc-timeout' || name === 'grpc-encoding' || name === 'grpc-accept-encoding' || name === 'accept-encoding' || name === 'te' || name === 'content-type') return NO_VALUES;
    const value = this.#headers[name];
    // Most lookups find nothing (a call without a token is asked for two names): one shared, frozen empty answer.
    if (value === undefined) return NO_VALUES;
    return Array.isArray(value) ? [...value] : [value];
  }

  getMap(): Record<string, grpc.MetadataValue> { return this.full().getMap(); }
  toJSON(): Record<string, grpc.MetadataValue[]> { return this.full().toJSON(); }
  clone(): grpc.Metadata { return this.full().clone(); }

  full(): grpc.Metadata {
    if (this.#full === undefined) {
      const full = grpc.Metadata.fromHttp2Headers(this.#headers);
      for (const name of ['grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'accept-encoding', 'te', 'content-type']) full.remove(name);
      this.#full = full;
    }
    return this.#full;
  }
}

/** What a call's getAuthContext() answers (grpc-js' AuthContext, as far as kvd reads it). */
export interface CallAuthContext { transportSecurityType?: string; sslPeerCertificate?: unknown }

/** A call's getPeer(): the connection's remote address and port, as grpc-js gives it. */
export function peerOf(socket: { remoteAddress?: string; remotePort?: number } | undefined): string {
  if (socket?.remoteAddress === undefined) return 'unknown';
  return socket.remotePort === undefined ? socket.remoteAddress : `${socket.remoteAddress}:${socket.remotePort}`;
}

/** A call's getAuthContext(), as grpc-js: the verified peer certificate of a TLS connection, else nothing. */
export function authContextOf(socket: unknown): CallAuthContext {
  if (!(socket instanceof TLSSocket) || !socket.authorized) return {};
  const certificate = socket.getPeerCertificate();
  return { transportSecurityType: 'ssl', sslPeerCertificate: certificate.raw === undefined ? undefined : certificate };
}

/** What grpc-js' server call objects offer that kvd's handlers, guards and metrics use. */
class FastCall extends EventEmitter {
  cancelled = false;
  readonly metadata: grpc.Metadata;
  protected readonly stream: http2.ServerHttp2Stream;
  readonly #deadline: number;
  readonly #path: string;

  constructor(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, deadline: number, path: string) {
    super();
    this.stream = stream;
    this.#deadline = deadline;
    this.#path = path;
    this.metadata = new HeaderMetadata(headers) as unknown as grpc.Metadata;
  }

  getDeadline(): number { return this.#deadline; }
  getPath(): string { return this.#path; }

  getPeer(): string {
    return peerOf(this.stream.session?.socket);
  }

  getAuthContext(): CallAuthContext {
    return authContextOf(this.stream.session?.socket);
  }
}

/** A unary call: the request, and response headers that go out with the answer. */
class FastUnaryCall extends FastCall {
  request: unknown = null;

  sendMetadata(): void {
    // Response headers go out with the answer.
  }
}

/** The grpc-timeout header: the deadline (ms since the epoch; Infinity without one) and its ms, or undefined when invalid. */
export function deadlineOf(headers: http2.IncomingHttpHeaders): { deadline: number; ms?: number } | undefined {
  const timeout = headers['grpc-timeout'];
  if (timeout === undefined) return { deadline: Number.POSITIVE_INFINITY };
  const match = DEADLINE_PATTERN.exec(String(timeout));
  if (match === null) return undefined;
  const ms = (Number(match[1]) * DEADLINE_UNIT_MS[match[2]]) | 0;
  return { deadline: Date.now() + ms, ms };
}

export function invalidTimeout(headers: http2.IncomingHttpHeaders): string {
  return `Invalid grpc-timeout value "${String(headers['grpc-timeout'])}"`;
}

/** A status as handlers pass or emit it (grpc-js' serverErrorToStatus): code, details, metadata. */
export function statusOf(error: unknown): { code: number; details: string; metadata: grpc.Metadata | null } {
  const status = (error ?? {}) as Partial<grpc.StatusObject> & { message?: string };
  const code = typeof status.code === 'number' && Number.isInteger(status.code) ? status.code : grpc.status.UNKNOWN;
  const details = typeof status.code === 'number' && typeof status.details === 'string' ? status.details : (status.message ?? 'Unknown Error');
  return { code, details, metadata: status.metadata ?? null };
}

/** The trailers of a status (grpc-js encodes the message with encodeURI). */
export function trailersOf(code: number, details: string, metadata: grpc.Metadata | null): http2.OutgoingHttpHeaders {
  return { 'grpc-status': String(code), 'grpc-message': encodeURI(details), ...(metadata?.toHttp2Headers() ?? {}) };
}

/**
 * Listeners shared by every stream (`this` is the stream), not closures made per call: a reset or
 * a broken connection needs no handling of its own ('close' follows and cancels the call), and
 * 'wantTrailers' comes once per stream, so `on` does what `once` would without its wrapper.
 */
function ignoreStreamError(): void {
  // Nothing: see above.
}

function sendOkTrailers(this: http2.ServerHttp2Stream): void {
  this.sendTrailers(OK_TRAILERS);
}

/** Ends a stream that sent nothing yet with a trailers-only response, as grpc-js does. */
function respondTrailersOnly(stream: http2.ServerHttp2Stream, code: number, details: string, metadata: grpc.Metadata | null = null): void {
  stream.respond({ ...RESPONSE_HEADERS, ...trailersOf(code, details, metadata) }, TRAILERS_ONLY_OPTIONS);
}

/** The serialized response as a Buffer (a serializer may answer any Uint8Array). */
export function serializeToBuffer(route: RegisteredHandler, value: unknown): Buffer {
  const serialized: Uint8Array = route.serialize(value);
  return Buffer.isBuffer(serialized) ? serialized : Buffer.from(serialized.buffer, serialized.byteOffset, serialized.byteLength);
}

/**
 * One gRPC message, length-prefixed (flag 0, not compressed): one copied buffer up to
 * `copyUpTo` bytes, else the 5-byte prefix and the payload itself (a large message is not copied;
 * its bytes must then stay as they are until written).
 */
export function framedMessage(payload: Uint8Array, copyUpTo = COPY_RESPONSE_BYTES_MAX): Buffer[] {
  const length = payload.byteLength;
  const head = Buffer.allocUnsafe(length <= copyUpTo ? 5 + length : 5);
  head[0] = 0;
  head.writeUInt32BE(length, 1);
  if (length <= copyUpTo) {
    head.set(payload, 5);
    return [head];
  }
  return [head, Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, length)];
}

/** Writes one length-prefixed message (see framedMessage), ending the stream after it when `end`. */
function writeMessage(stream: http2.ServerHttp2Stream, payload: Buffer, end: boolean, callback?: (error?: Error | null) => void): boolean {
  const parts = framedMessage(payload);
  const last = parts[parts.length - 1];
  if (parts.length > 1) stream.write(parts[0]);
  if (end) {
    stream.end(last, callback);
    return false;
  }
  return stream.write(last, callback);
}

/**
 * Bytes received on a stream and not yet taken, as the chunks that arrived. A message is copied
 * out once, when all its bytes are in (joining on every chunk would copy a large message once per
 * DATA frame), into a buffer of its own, as grpc-js' decoder does: what the handler keeps of it
 * (the peer transport keeps entry data as views into its frame) holds no other bytes alive.
 */
export class ChunkQueue {
  /**
   * The first chunk, and those after it: most messages arrive in one chunk, and an array's first
   * push made room for 16 (a call's queue lives as long as the call).
   */
  #first: Buffer | undefined = undefined;
  #rest: Buffer[] | undefined = undefined;
  bytes = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.#first === undefined) this.#first = chunk;
    else (this.#rest ??= []).push(chunk);
    this.bytes += chunk.length;
  }

  /** The length in the 5-byte prefix of the next message (requires bytes >= 5). */
  messageLength(): number {
    let first = this.#first as Buffer;
    if (first.length < 5) {
      // A prefix split across chunks (rare): join the few leading chunks it spans.
      const parts = [first];
      let joined = first.length;
      while (joined < 5) {
        const next = (this.#rest as Buffer[]).shift() as Buffer;
        parts.push(next);
        joined += next.length;
      }
      first = Buffer.concat(parts, joined);
      this.#first = first;
    }
    return first.readUInt32BE(1);
  }

  /** Whether a whole length-prefixed message is in. */
  holdsMessage(): boolean {
    return this.bytes >= 5 && this.bytes >= 5 + this.messageLength();
  }

  /**
   * Removes the first `count` bytes (requires bytes >= count) and returns a copy of them: in a
   * buffer of its own, or cut from `slab` (for a message nothing keeps beyond its call).
   */
  take(count: number, slab?: Slab): Buffer {
    let out: Buffer;
    if (slab === undefined) out = Buffer.allocUnsafeSlow(count);
    else {
      const cut = slab.alloc(count);
      out = Buffer.from(cut.buffer, cut.byteOffset, count);
    }
    let at = 0;
    while (at < count) {
      const first = this.#first as Buffer;
      const n = Math.min(first.length, count - at);
      first.copy(out, at, 0, n);
      at += n;
      if (n < first.length) this.#first = first.subarray(n);
      else this.#first = this.#rest?.shift();
    }
    this.bytes -= count;
    return out;
  }
}

/** True when `buffer` starts with a whole length-prefixed message. */
function holdsMessage(buffer: Buffer | undefined): boolean {
  return buffer !== undefined && buffer.length >= 5 && buffer.length >= 5 + buffer.readUInt32BE(1);
}

function serveUnary(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, route: RegisteredHandler, maxReceiveBytes: number): void {
  const path = route.path;
  let answered = false;
  let timer: NodeJS.Timeout | undefined;

  const finish = (): boolean => {
    if (answered) return false;
    answered = true;
    if (timer !== undefined) clearTimeout(timer);
    return !stream.destroyed && !stream.closed;
  };
  const fail = (code: grpc.status, details: string, metadata: grpc.Metadata | null = null): void => {
    if (finish()) respondTrailersOnly(stream, code, details, metadata);
  };
  stream.on('error', ignoreStreamError);

  const parsed = deadlineOf(headers);
  if (parsed === undefined) {
    fail(grpc.status.INTERNAL, invalidTimeout(headers));
    return;
  }
  if (parsed.ms !== undefined) timer = setTimeout(() => fail(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded'), parsed.ms);

  const call = new FastUnaryCall(stream, headers, parsed.deadline, path);
  // As grpc-js, 'cancelled' is emitted when every call ends (handlers release what they hold
  // until the response has left: Range's response bytes); `cancelled` is true only for a call
  // that ended before it was answered.
  stream.once('close', () => {
    if (timer !== undefined) clearTimeout(timer);
    if (!answered) {
      answered = true;
      call.cancelled = true;
    }
    call.emit('cancelled', 'cancelled');
  });

  // The request: one length-prefixed message (flag byte, 4-byte big-endian length).
  const chunks: Buffer[] = [];
  let received = 0;
  let declared = -1;
  stream.on('data', (chunk: Buffer) => {
    if (answered) return;
    chunks.push(chunk);
    received += chunk.length;
    if (declared < 0 && received >= 5) {
      const head = chunks.length === 1 ? chunk : Buffer.concat(chunks);
      declared = head.readUInt32BE(1);
      if (declared > maxReceiveBytes) {
        fail(grpc.status.RESOURCE_EXHAUSTED, `Received message larger than max (${declared} vs ${maxReceiveBytes})`);
        return;
      }
    }
    // More than the one message: refused at once (nothing beyond one message is buffered).
    if (declared >= 0 && received > 5 + declared) fail(grpc.status.UNIMPLEMENTED, `Received a second request message for server streaming method ${path}`);
  });
  stream.on('end', () => {
    if (answered) return;
    const body = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, received);
    // Nothing, or a stream that ended inside its message (grpc-js never completes one either).
    if (!holdsMessage(body)) {
      fail(grpc.status.UNIMPLEMENTED, `Received no request message for server streaming method ${path}`);
      return;
    }
    if (body.length > 5 + body.readUInt32BE(1)) {
      fail(grpc.status.UNIMPLEMENTED, `Received a second request message for server streaming method ${path}`);
      return;
    }
    if (body[0] !== 0) {
      fail(grpc.status.UNIMPLEMENTED, 'Received message compressed with unsupported encoding "identity"');
      return;
    }
    try {
      call.request = route.deserialize(body.subarray(5));
    } catch {
      fail(grpc.status.INTERNAL, 'Error deserializing request');
      return;
    }
    try {
      route.func(call, (error, value, trailer) => {
        if (error !== null && error !== undefined) {
          const status = statusOf(error);
          fail(status.code, status.details, trailer ?? status.metadata);
          return;
        }
        respond(value);
      });
    } catch {
      fail(grpc.status.UNKNOWN, 'Unknown error');
    }
  });

  const respond = (value: unknown): void => {
    let payload: Buffer;
    try {
      payload = serializeToBuffer(route, value);
    } catch {
      fail(grpc.status.INTERNAL, 'Error serializing response');
      return;
    }
    if (!finish()) return;
    stream.respond(RESPONSE_HEADERS, RESPOND_OPTIONS);
    stream.on('wantTrailers', sendOkTrailers);
    writeMessage(stream, payload, true);
  };
}

/**
 * The call object of a lean bidirectional stream: what grpc-js' ServerDuplexStream offers that
 * the keep-alive handler, the guards and the metrics wrapper use ('data', 'end', 'cancelled',
 * 'drain', write, end, pause, resume, emit('error', status)).
 */
class FastStreamCall extends FastCall {
  readonly #route: RegisteredHandler;
  #headersSent = false;
  #ended = false;
  /** While paused, no 'data' is emitted and the HTTP/2 stream is not read (flow control). */
  paused = false;
  /** Set by serveStream: emits the messages already received once resumed. */
  onResume: (() => void) | undefined;

  constructor(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, route: RegisteredHandler, deadline: number) {
    super(stream, headers, deadline, route.path);
    this.#route = route;
    // As grpc-js' server streams: an emitted error ends the call with that status.
    this.on('error', (error: unknown) => {
      const status = statusOf(error);
      this.finish(status.code, status.details, status.metadata);
    });
  }

  get ended(): boolean { return this.#ended; }

  sendMetadata(): void {
    this.#sendHeaders();
  }

  #sendHeaders(): void {
    if (this.#headersSent) return;
    this.#headersSent = true;
    this.stream.respond(RESPONSE_HEADERS, RESPOND_OPTIONS);
  }

  #open(): boolean {
    return !this.#ended && !this.stream.destroyed && !this.stream.closed;
  }

  write(message: unknown, callback?: (error?: Error | null) => void): boolean {
    if (!this.#open()) return false;
    let payload: Buffer;
    try {
      payload = serializeToBuffer(this.#route, message);
    } catch {
      this.finish(grpc.status.INTERNAL, 'Error serializing response');
      return false;
    }
    this.#sendHeaders();
    return writeMessage(this.stream, payload, false, callback);
  }

  end(): void {
    this.finish(grpc.status.OK, 'OK');
  }

  pause(): this {
    this.paused = true;
    this.stream.pause();
    return this;
  }

  resume(): this {
    this.paused = false;
    this.onResume?.();
    if (!this.paused) this.stream.resume();
    return this;
  }

  /** Ends the call with a status: in the trailers, or trailers-only when nothing was sent yet. */
  finish(code: number, details: string, metadata: grpc.Metadata | null = null): void {
    if (!this.#open()) return;
    this.#ended = true;
    if (!this.#headersSent) {
      this.#headersSent = true;
      respondTrailersOnly(this.stream, code, details, metadata);
      return;
    }
    const trailers = trailersOf(code, details, metadata);
    this.stream.once('wantTrailers', () => this.stream.sendTrailers(trailers));
    this.stream.end();
  }
}

/**
 * A bidirectional stream of {@link LEAN_STREAMS}: request messages are parsed as they arrive
 * (at most one message's bytes buffered, bounded by the receive limit), each handed to the
 * handler as 'data'; the handler's writes go out as DATA frames and its end as trailers.
 */
function serveStream(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, route: RegisteredHandler, maxReceiveBytes: number): void {
  stream.on('error', ignoreStreamError);
  const parsed = deadlineOf(headers);
  if (parsed === undefined) {
    respondTrailersOnly(stream, grpc.status.INTERNAL, invalidTimeout(headers));
    return;
  }
  const call = new FastStreamCall(stream, headers, route, parsed.deadline);
  let timer: NodeJS.Timeout | undefined;
  if (parsed.ms !== undefined) timer = setTimeout(() => call.finish(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded'), parsed.ms);
  stream.once('close', () => {
    if (timer !== undefined) clearTimeout(timer);
    if (!call.ended) call.cancelled = true;
    call.emit('cancelled', 'cancelled');
  });

  // Bytes received and not yet emitted: an incomplete message, or messages held while paused
  // (at most what arrived before the pause took effect, plus one message). Kept as the chunks
  // that arrived and joined once per message, when it is complete: a large message (a peer's
  // frame of entries) arriving in many DATA frames is copied once, not once per frame.
  const received = new ChunkQueue();
  const emitReceived = (): void => {
    while (!call.ended && !call.paused && received.bytes >= 5) {
      const length = received.messageLength();
      if (length > maxReceiveBytes) {
        call.finish(grpc.status.RESOURCE_EXHAUSTED, `Received message larger than max (${length} vs ${maxReceiveBytes})`);
        return;
      }
      if (received.bytes < 5 + length) break;
      const framed = received.take(5 + length);
      if (framed[0] !== 0) {
        call.finish(grpc.status.UNIMPLEMENTED, 'Received message compressed with unsupported encoding "identity"');
        return;
      }
      let message: unknown;
      try {
        message = route.deserialize(framed.subarray(5));
      } catch {
        call.finish(grpc.status.INTERNAL, 'Error deserializing request');
        return;
      }
      call.emit('data', message);
    }
    if (!call.ended && !received.holdsMessage()) call.emit('resumed-all');
  };
  call.onResume = emitReceived;
  stream.on('data', (chunk: Buffer) => {
    if (call.ended) return;
    received.push(chunk);
    emitReceived();
  });
  stream.on('end', () => {
    // Half-closed by the client: 'end' once every message received has been emitted.
    const ended = (): void => {
      if (call.ended) return;
      if (received.holdsMessage()) {
        call.once('resumed-all', ended);
        return;
      }
      call.emit('end');
    };
    ended();
  });
  stream.on('drain', () => call.emit('drain'));
  try {
    // As grpc-js calls a bidirectional handler: the call only, no callback.
    (route.func as (call: unknown) => void)(call);
  } catch {
    call.finish(grpc.status.UNKNOWN, 'Unknown error');
  }
}

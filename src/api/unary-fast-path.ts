/**
 * A lean serving path for unary gRPC calls (Range, Put, DeleteRange, Txn, LeaseGrant, ...).
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
 * Everything unusual goes to grpc-js unchanged: streaming methods, unknown paths, a content-type
 * that is not gRPC, a compressed request (grpc-encoding other than identity). Errors and limits
 * follow grpc-js, texts included: a message larger than the receive limit (RESOURCE_EXHAUSTED
 * "Received message larger than max (N vs. M)"), a request that does not decode (INTERNAL), no or
 * two messages (UNIMPLEMENTED), an invalid grpc-timeout (INTERNAL), a passed deadline
 * (DEADLINE_EXCEEDED "Deadline exceeded").
 *
 * Installed by wrapping the grpc-js server's (internal) createHttp2Server: each HTTP/2 server it
 * makes — bound ports and connection injectors alike — gets a 'stream' listener that serves the
 * unary routes and hands the rest to grpc-js's own listeners. If grpc-js no longer has that
 * method, nothing is installed and grpc-js serves everything ({@link installUnaryFastPath}
 * returns false; a test checks that it is installed).
 *
 * Bounds: one request message per stream, at most the receive limit (+ its 5-byte prefix and the
 * rest of the DATA frame that completed it).
 */
import { EventEmitter } from 'node:events';
import type * as http2 from 'node:http2';
import { TLSSocket } from 'node:tls';
import * as grpc from '@grpc/grpc-js';

/** A method as grpc-js keeps it registered (its `handlers` map): what this path serves with. */
interface RegisteredHandler {
  readonly func: (call: unknown, callback: grpc.sendUnaryData<unknown>) => void;
  readonly serialize: (value: unknown) => Buffer;
  readonly deserialize: (bytes: Buffer) => unknown;
  readonly type: string;
  readonly path: string;
}

/** Counts of calls served here (tests check the path is in use; debugging). */
export interface FastPathStats {
  served: number;
}

const RESPONSE_HEADERS = {
  ':status': 200,
  'content-type': 'application/grpc+proto',
  'grpc-accept-encoding': 'identity,deflate,gzip',
  'grpc-encoding': 'identity',
} as const;

const OK_TRAILERS = { 'grpc-status': '0', 'grpc-message': 'OK' } as const;

const DEADLINE_PATTERN = /(\d{1,8})\s*([HMSmun])/;
const DEADLINE_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/** Responses above this go out as prefix + payload (two writes) instead of one copied buffer. */
const COPY_RESPONSE_BYTES_MAX = 64 * 1024;

type StreamListener = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, flags: number, rawHeaders: string[]) => void;

/**
 * Makes `server` serve its unary methods on the lean path: the methods registered with it when a
 * call arrives (addService/removeService keep working), with their registered deserializer,
 * handler and serializer. Call before the server is bound or gets a connection injector. Returns
 * false when grpc-js' internals did not allow it (everything is then served by grpc-js).
 */
export function installUnaryFastPath(server: grpc.Server, options: { maxReceiveBytes: number; stats?: FastPathStats }): boolean {
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
      if (route !== undefined && route.type === 'unary' && servable(headers)) {
        if (options.stats !== undefined) options.stats.served += 1;
        serveUnary(stream, headers, route, options.maxReceiveBytes);
        return;
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

/**
 * The request's metadata as grpc.Metadata's `get` sees it, read from the headers on demand
 * (building a grpc.Metadata of every header per call is what this path avoids). Binary (-bin)
 * keys and the other Metadata methods use a real grpc.Metadata, built on first use.
 */
class HeaderMetadata {
  readonly #headers: http2.IncomingHttpHeaders;
  #full: grpc.Metadata | undefined;

  constructor(headers: http2.IncomingHttpHeaders) {
    this.#headers = headers;
  }

  get(key: string): grpc.MetadataValue[] {
    const name = key.toLowerCase();
    if (name.endsWith('-bin')) return this.full().get(name);
    if (name.startsWith(':') || name === 'grpc-timeout' || name === 'grpc-encoding' || name === 'grpc-accept-encoding' || name === 'accept-encoding' || name === 'te' || name === 'content-type') return [];
    const value = this.#headers[name];
    if (value === undefined) return [];
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

/** The call object handed to the handler: what grpc-js' ServerUnaryCall offers that kvd uses. */
class FastUnaryCall extends EventEmitter {
  request: unknown = null;
  cancelled = false;
  readonly metadata: grpc.Metadata;
  readonly #stream: http2.ServerHttp2Stream;
  readonly #deadline: number;
  readonly #path: string;

  constructor(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, deadline: number, path: string) {
    super();
    this.#stream = stream;
    this.#deadline = deadline;
    this.#path = path;
    this.metadata = new HeaderMetadata(headers) as unknown as grpc.Metadata;
  }

  getDeadline(): number { return this.#deadline; }
  getPath(): string { return this.#path; }

  getPeer(): string {
    const socket = this.#stream.session?.socket;
    if (socket?.remoteAddress === undefined) return 'unknown';
    return socket.remotePort === undefined ? socket.remoteAddress : `${socket.remoteAddress}:${socket.remotePort}`;
  }

  /** As grpc-js: the verified peer certificate of a TLS connection, else nothing. */
  getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: unknown } {
    const socket = this.#stream.session?.socket;
    if (!(socket instanceof TLSSocket) || !socket.authorized) return {};
    const certificate = socket.getPeerCertificate();
    return { transportSecurityType: 'ssl', sslPeerCertificate: certificate.raw === undefined ? undefined : certificate };
  }

  sendMetadata(): void {
    // Response headers go out with the answer.
  }
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
  const fail = (code: grpc.status, details: string, metadata?: grpc.Metadata | null): void => {
    if (!finish()) return;
    // Trailers-only response, as grpc-js sends it.
    stream.respond({ ...RESPONSE_HEADERS, 'grpc-status': String(code), 'grpc-message': encodeURI(details), ...(metadata?.toHttp2Headers() ?? {}) }, { endStream: true });
  };
  stream.on('error', () => {
    // A reset or a broken connection: 'close' follows and cancels the call.
  });

  let deadline = Number.POSITIVE_INFINITY;
  const timeout = headers['grpc-timeout'];
  if (timeout !== undefined) {
    const match = DEADLINE_PATTERN.exec(String(timeout));
    if (match === null) {
      fail(grpc.status.INTERNAL, `Invalid grpc-timeout value "${String(timeout)}"`);
      return;
    }
    const ms = (Number(match[1]) * DEADLINE_UNIT_MS[match[2]]) | 0;
    deadline = Date.now() + ms;
    timer = setTimeout(() => fail(grpc.status.DEADLINE_EXCEEDED, 'Deadline exceeded'), ms);
  }

  const call = new FastUnaryCall(stream, headers, deadline, path);
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
    if (body.length < 5) {
      fail(grpc.status.UNIMPLEMENTED, `Received no request message for server streaming method ${path}`);
      return;
    }
    const length = body.readUInt32BE(1);
    if (body.length < 5 + length) {
      // The stream ended inside a message: grpc-js never completes such a message either.
      fail(grpc.status.UNIMPLEMENTED, `Received no request message for server streaming method ${path}`);
      return;
    }
    if (body.length > 5 + length) {
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
          const status = error as Partial<grpc.StatusObject> & { message?: string };
          const code = typeof status.code === 'number' && Number.isInteger(status.code) ? status.code : grpc.status.UNKNOWN;
          const details = typeof status.code === 'number' && typeof status.details === 'string' ? status.details : (status.message ?? 'Unknown Error');
          fail(code, details, trailer ?? status.metadata ?? null);
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
      const serialized: Uint8Array = route.serialize(value);
      payload = Buffer.isBuffer(serialized) ? serialized : Buffer.from(serialized.buffer, serialized.byteOffset, serialized.byteLength);
    } catch {
      fail(grpc.status.INTERNAL, 'Error serializing response');
      return;
    }
    if (!finish()) return;
    stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers(OK_TRAILERS));
    if (payload.length <= COPY_RESPONSE_BYTES_MAX) {
      const frame = Buffer.allocUnsafe(5 + payload.length);
      frame[0] = 0;
      frame.writeUInt32BE(payload.length, 1);
      payload.copy(frame, 5);
      stream.end(frame);
    } else {
      const prefix = Buffer.allocUnsafe(5);
      prefix[0] = 0;
      prefix.writeUInt32BE(payload.length, 1);
      stream.write(prefix);
      stream.end(payload);
    }
  };
}

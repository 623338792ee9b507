/**
 * The client side of gRPC bidirectional streams over kvd's HTTP/2 (./connection.ts): what kvd's
 * peer transport sends Raft messages and member calls on. grpc-js' client costs a follower about
 * 8 % of its CPU receiving its leader's appends and the leader about 5 % sending them (Node's
 * HTTP/2 module under grpc-js' channel, subchannel and call layers); here a message is one
 * length-prefixed DATA payload on a long-lived stream, and a turn's frames leave in one write.
 *
 * Only what the transport needs: bidirectional streams of raw bytes (no compression, no
 * metadata), a deadline-free call ended by the server's status, a cancel, or the connection's end.
 * A channel holds one connection to one address (plain TCP, or TLS with ALPN h2), opened on first
 * use and again after it ended; a keepalive PING finds a peer that vanished.
 *
 * Bounds: a received message at most `maxReceiveBytes` (larger ones cancel the call with
 * RESOURCE_EXHAUSTED, as grpc-js does); `write()` returns false while the socket has not taken
 * more than {@link WRITE_HIGH_WATER_BYTES} of the call's messages, and 'onDrain' comes once it
 * has taken them all: a writer that heeds it holds the rest (the transport's queues are bounded).
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { ChunkQueue, framedMessage } from '../grpc-fast-path.js';
import { H2_CANCEL, H2_NO_ERROR, H2Connection, type H2Stream } from './connection.js';
import { encodeHeaderBlock, type HeaderList } from './hpack.js';

/** Unsent bytes of one call above which write() asks the writer to wait for onDrain. */
export const WRITE_HIGH_WATER_BYTES = 256 * 1024;

/** What a call tells its owner. onEnd comes exactly once, after which nothing else does. */
export interface H2ClientCallHandlers {
  /** One whole message (a buffer of its own). */
  onMessage(message: Buffer): void;
  /** write() returned false, and the socket has since taken everything written. */
  onDrain(): void;
  /** The call ended: the server's status, or a client-side one (CANCELLED, UNAVAILABLE, ...). */
  onEnd(code: number, details: string): void;
}

export interface H2GrpcChannelOptions {
  readonly host: string;
  readonly port: number;
  /** TLS (with ALPN h2) when present: the options of each connection's tls.connect. */
  readonly tls?: () => tls.ConnectionOptions;
  readonly maxReceiveBytes: number;
  readonly keepalive: { readonly intervalMs: number; readonly timeoutMs: number };
}

/** One connection's worth of gRPC client calls to one address. */
export class H2GrpcChannel {
  readonly #options: H2GrpcChannelOptions;
  readonly #authority: string;
  #connection: H2Connection | undefined;
  #closed = false;

  constructor(options: H2GrpcChannelOptions) {
    this.#options = options;
    this.#authority = `${options.host}:${options.port}`;
  }

  /** Opens a bidirectional stream on `path`; a channel that was closed ends it at once (UNAVAILABLE). */
  openStream(path: string, handlers: H2ClientCallHandlers): H2ClientCall {
    const connection = this.#connect();
    const block = encodeHeaderBlock([
      [':method', 'POST'],
      [':scheme', this.#options.tls === undefined ? 'http' : 'https'],
      [':path', path],
      [':authority', this.#authority],
      ['content-type', 'application/grpc'],
      ['te', 'trailers'],
    ]);
    const stream = connection?.openStream(block);
    return new H2ClientCall(stream, handlers, this.#options.maxReceiveBytes, connection);
  }

  /** Closes the connection (its calls end CANCELLED or UNAVAILABLE); no call opens after this. */
  close(): void {
    this.#closed = true;
    this.#connection?.close(true);
    this.#connection = undefined;
  }

  #connect(): H2Connection | undefined {
    if (this.#closed) return undefined;
    if (this.#connection !== undefined && !this.#connection.ended) return this.#connection;
    const { host: rawHost, port } = this.#options;
    const host = rawHost.startsWith('[') ? rawHost.slice(1, -1) : rawHost;
    let socket: net.Socket;
    if (this.#options.tls === undefined) {
      socket = net.connect({ host, port, noDelay: true });
    } else {
      const options: tls.ConnectionOptions = { ...this.#options.tls(), host, port, ALPNProtocols: ['h2'] };
      // SNI carries host names only.
      if (net.isIP(host) === 0) options.servername = host;
      socket = tls.connect(options);
    }
    socket.setKeepAlive(true);
    const connection: H2Connection = new H2Connection(socket, {
      role: 'client',
      maxConcurrentStreams: 0,
      maxHeaderListBytes: 65_535,
      keepalive: this.#options.keepalive,
      onClose: () => {
        if (this.#connection === connection) this.#connection = undefined;
      },
    });
    this.#connection = connection;
    return connection;
  }
}

/** One bidirectional stream's client end. */
export class H2ClientCall {
  readonly #stream: H2Stream | undefined;
  readonly #handlers: H2ClientCallHandlers;
  readonly #maxReceiveBytes: number;
  readonly #connection: H2Connection | undefined;
  readonly #received = new ChunkQueue();
  #headersSeen = false;
  #ended = false;
  /** A status this side decided before resetting the stream (cancel, a message over the limit). */
  #localStatus: { code: number; details: string } | undefined;
  /** Bytes written and not yet taken by the socket. */
  #unsent = 0;
  #wantsDrain = false;

  constructor(stream: H2Stream | undefined, handlers: H2ClientCallHandlers, maxReceiveBytes: number, connection: H2Connection | undefined) {
    this.#stream = stream;
    this.#handlers = handlers;
    this.#maxReceiveBytes = maxReceiveBytes;
    this.#connection = connection;
    if (stream === undefined) {
      // Ended on the next tick, as a call that failed to connect would.
      process.nextTick(() => this.#end(GrpcStatus.UNAVAILABLE, 'connection closed'));
      return;
    }
    stream.onHeaders = (headers, endStream) => this.#onHeaders(headers, endStream);
    stream.onData = (chunk) => this.#onData(chunk);
    stream.onClose = () => this.#onClose();
  }

  /**
   * Sends one message. Returns false when the writer should wait for onDrain before the next
   * (the message is sent all the same).
   */
  write(message: Uint8Array): boolean {
    const stream = this.#stream;
    if (this.#ended || stream === undefined || stream.closed) return false;
    // Copied whatever its size: the transport's messages are views into msgpackr's buffer.
    const [frame] = framedMessage(message, Infinity);
    this.#unsent += frame.length;
    stream.write(frame, () => {
      this.#unsent -= frame.length;
      if (this.#unsent === 0 && this.#wantsDrain && !this.#ended) {
        this.#wantsDrain = false;
        this.#handlers.onDrain();
      }
    });
    if (this.#unsent <= WRITE_HIGH_WATER_BYTES) return true;
    this.#wantsDrain = true;
    return false;
  }

  /** Ends the call from this side: onEnd(CANCELLED) follows. */
  cancel(): void {
    this.#resetWith(GrpcStatus.CANCELLED, 'Cancelled on client');
  }

  #resetWith(code: number, details: string): void {
    if (this.#ended || this.#localStatus !== undefined) return;
    this.#localStatus = { code, details };
    if (this.#stream === undefined || this.#stream.closed) {
      this.#end(code, details);
      return;
    }
    this.#stream.reset(H2_CANCEL); // onClose ends the call
  }

  #onHeaders(headers: HeaderList, endStream: boolean): void {
    const fields = new Map(headers);
    if (!this.#headersSeen) {
      this.#headersSeen = true;
      const httpStatus = fields.get(':status');
      if (httpStatus !== '200') {
        this.#resetWith(codeOfHttpStatus(Number(httpStatus)), `Received HTTP status code ${httpStatus ?? 'none'}`);
        return;
      }
      const contentType = fields.get('content-type');
      if (!endStream && (contentType === undefined || !contentType.startsWith('application/grpc'))) {
        this.#resetWith(GrpcStatus.UNKNOWN, `Received unexpected content-type '${contentType ?? ''}'`);
        return;
      }
      if (!endStream) return;
    }
    if (!endStream) {
      this.#resetWith(GrpcStatus.INTERNAL, 'Received a second header block before the trailers');
      return;
    }
    // Trailers (or a trailers-only response).
    const rawCode = fields.get('grpc-status');
    const code = rawCode !== undefined && /^\d+$/.test(rawCode) ? Number(rawCode) : GrpcStatus.UNKNOWN;
    const details = rawCode === undefined ? 'No status received' : decodeGrpcMessage(fields.get('grpc-message') ?? '');
    // Messages before the trailers were delivered as they came. This side never half-closes, so
    // the stream is reset (NO_ERROR) to close it; onClose ends the call with the server's status.
    this.#localStatus ??= { code, details };
    this.#stream?.reset(H2_NO_ERROR);
  }

  #onData(chunk: Buffer): void {
    if (this.#ended || this.#localStatus !== undefined) return;
    const received = this.#received;
    received.push(chunk);
    while (received.bytes >= 5) {
      const length = received.messageLength();
      if (length > this.#maxReceiveBytes) {
        this.#resetWith(GrpcStatus.RESOURCE_EXHAUSTED, `Received message larger than max (${length} vs. ${this.#maxReceiveBytes})`);
        return;
      }
      if (received.bytes < 5 + length) return;
      const framed = received.take(5 + length);
      if (framed[0] !== 0) {
        this.#resetWith(GrpcStatus.INTERNAL, 'Received a compressed message (this client accepts none)');
        return;
      }
      this.#handlers.onMessage(framed.subarray(5));
      if (this.#ended || this.#localStatus !== undefined) return;
    }
  }

  #onClose(): void {
    const status = this.#localStatus;
    if (status !== undefined) {
      this.#end(status.code, status.details);
      return;
    }
    const stream = this.#stream;
    if (stream?.resetCode !== undefined) {
      this.#end(stream.resetCode === H2_CANCEL ? GrpcStatus.CANCELLED : GrpcStatus.UNAVAILABLE, `Received RST_STREAM with code ${stream.resetCode}`);
      return;
    }
    const error = this.#connection?.socketError;
    this.#end(GrpcStatus.UNAVAILABLE, error === undefined ? 'Connection closed' : `Connection failed: ${error.message}`);
  }

  #end(code: number, details: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#handlers.onEnd(code, details);
  }
}

/** grpc-js' mapping of a non-200 HTTP status to a gRPC code. */
function codeOfHttpStatus(httpStatus: number): number {
  switch (httpStatus) {
    case 400:
      return GrpcStatus.INTERNAL;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcStatus.UNAVAILABLE;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

/** grpc-message is percent-encoded (gRPC over HTTP/2 spec); a malformed one is taken as it is. */
function decodeGrpcMessage(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

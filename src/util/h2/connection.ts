/**
 * One HTTP/2 connection (RFC 7540/9113), in JavaScript over a socket: the server side of what a
 * gRPC server needs, and the client side of what kvd's peer transport needs (./grpc-client.ts),
 * nothing more. Node's HTTP/2 module costs about 40 µs of CPU per unary call
 * on this machine before any handler runs (bench/h2-ceiling.ts: a server that answers every call
 * with the same bytes); most of it is the stream objects, the Readable/Writable machinery and the
 * crossings into nghttp2 that each request and answer make. Here a stream is a small object, a
 * request's frames are parsed straight from the socket's chunk, response header blocks are
 * encoded once (src/util/h2/hpack.ts), and everything one pass of the event loop answers leaves in
 * one socket write.
 *
 * Frames handled: DATA, HEADERS (+ CONTINUATION, padding, priority), RST_STREAM, SETTINGS, PING,
 * GOAWAY, WINDOW_UPDATE; PRIORITY and unknown types are read past; PUSH_PROMISE from a client is a
 * connection error. Flow control both ways: DATA this side sends waits for the peer's windows; the
 * windows this side grants are replenished as data is taken (a paused stream's is not).
 *
 * Bounds: a frame at most the 16,384 bytes this side advertises (SETTINGS_MAX_FRAME_SIZE's
 * default); a header block (HEADERS plus CONTINUATIONs) at most `maxHeaderListBytes` + 1 KiB; at most
 * `maxConcurrentStreams` open streams (more are refused with REFUSED_STREAM); a stream's unread
 * data at most its window (65,535 bytes unless a consumer grants more by reading); data queued for
 * sending beyond the peer's windows is the caller's to bound (a write's callback says when the
 * socket has taken it; src/util/h2/grpc-serve.ts waits for that).
 */
import type * as net from 'node:net';
import { HeaderListTooLargeError, HpackDecoder, HpackError, type HeaderList } from './hpack.js';
import { KeyedTable } from '../keyed-table.js';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Frame types (RFC 7540 §6). */
const DATA = 0x0;
const HEADERS = 0x1;
const PRIORITY = 0x2;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PUSH_PROMISE = 0x5;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;

/** Flags. */
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY_FLAG = 0x20;

/** Error codes (RFC 7540 §7). */
export const H2_NO_ERROR = 0x0;
export const H2_PROTOCOL_ERROR = 0x1;
export const H2_FLOW_CONTROL_ERROR = 0x3;
export const H2_STREAM_CLOSED = 0x5;
export const H2_FRAME_SIZE_ERROR = 0x6;
export const H2_REFUSED_STREAM = 0x7;
export const H2_CANCEL = 0x8;
export const H2_COMPRESSION_ERROR = 0x9;
export const H2_ENHANCE_YOUR_CALM = 0xb;

/** Settings identifiers. */
const SETTINGS_HEADER_TABLE_SIZE = 0x1;
const SETTINGS_ENABLE_PUSH = 0x2;
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE = 0x4;
const SETTINGS_MAX_FRAME_SIZE = 0x5;
const SETTINGS_MAX_HEADER_LIST_SIZE = 0x6;

const FRAME_HEADER_BYTES = 9;
const DEFAULT_WINDOW = 65_535;
const MAX_WINDOW = 2 ** 31 - 1;
/** The largest frame this side accepts (the protocol's default; never raised). */
const LOCAL_MAX_FRAME_BYTES = 16_384;
/**
 * Bytes the socket may hold unsent before the connection is dropped: DATA stops at the socket's
 * own mark (and waits for 'drain'), so only frames a peer provokes without reading (PING and
 * SETTINGS acknowledgements, answers' headers) can pile up past it.
 */
const MAX_SOCKET_BACKLOG_BYTES = 16 * 1024 * 1024;
/** Frames of one flush joined into one buffer up to this many bytes. */
const FLUSH_JOIN_BYTES = 64 * 1024;
/**
 * Frames are written into a buffer of the connection's (its stage) as they are made, payloads up
 * to STAGED_PAYLOAD_MAX_BYTES copied in, larger ones kept as they are; a flush hands the socket the
 * staged bytes as one view, and the next frames go on after them, into a new stage once this one
 * is full. A frame header was a Buffer of its own, and a flush copied every frame again to join
 * them (a unary answer: three frames).
 */
const STAGE_BYTES = 4096;
const STAGED_PAYLOAD_MAX_BYTES = 1024;
/**
 * A PING acknowledgement waits at most this long for other frames to leave with (see the PING
 * case in #onFrame).
 */
const PING_ACK_DELAY_MS = 5;
/**
 * DATA is held back while the socket holds this much unsent (Node's own mark for a socket is 16
 * KiB: stopping there would stall a burst of small answers every few kilobytes).
 */
const SOCKET_HIGH_WATER_BYTES = 1024 * 1024;
/** The connection-level receive window this side grants (raised once, at start, from 65,535). */
const CONNECTION_WINDOW = 1 << 20;

/** A connection error: GOAWAY with `code`, then the socket closes. */
class ConnectionError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

export interface H2ConnectionOptions {
  /** 'server' (the default): the peer opens streams; 'client': this side does (openStream), and sends the preface. */
  readonly role?: 'server' | 'client';
  /** Open streams the peer may start at most (advertised as SETTINGS_MAX_CONCURRENT_STREAMS). */
  readonly maxConcurrentStreams: number;
  /** A received header list at most (advertised as SETTINGS_MAX_HEADER_LIST_SIZE). */
  readonly maxHeaderListBytes: number;
  /** Server: a new stream's request headers (the handler sets the stream's callbacks). */
  readonly onStream?: (stream: H2Stream) => void;
  /** The connection ended (socket closed); every open stream has had onClose first. */
  readonly onClose?: () => void;
  /**
   * A PING every `intervalMs`; a connection whose peer leaves one unanswered for `timeoutMs` is
   * dropped (a peer that vanished without closing its connection would hold its streams forever).
   */
  readonly keepalive?: { readonly intervalMs: number; readonly timeoutMs: number };
}

/** One request stream. The handler sets the on* callbacks in onStream (or later). */
export class H2Stream {
  /** Request data, a view into the socket's chunk (copy what you keep). */
  onData: ((chunk: Buffer) => void) | undefined = undefined;
  /** The peer ended its side (END_STREAM). */
  onEnd: (() => void) | undefined = undefined;
  /** Client: the response's headers, then its trailers (`endStream`), or trailers only. */
  onHeaders: ((headers: HeaderList, endStream: boolean) => void) | undefined = undefined;
  /** The stream is over (answered, reset by either side, or the connection gone); once. */
  onClose: (() => void) | undefined = undefined;

  /** The peer ended its side. */
  remoteEnded = false;
  /** This side sent its end (trailers or a reset). */
  localEnded = false;
  closed = false;
  /** Headers sent (respond called). */
  headersSent = false;
  /** Send window (the peer's grant for this stream). */
  sendWindow: number;
  /** DATA waiting for window: payloads (with what to call once each has left), and the trailers block to send after them. */
  pending: Buffer[] = [];
  pendingCallbacks: Array<((error?: Error | null) => void) | undefined> = [];
  pendingTrailers: Buffer | undefined = undefined;
  /** Request bytes received since this side last granted them back. */
  unacknowledged = 0;
  paused = false;
  /** What serves the stream (the gRPC call), for whoever closes the connection. */
  context: unknown = undefined;
  /** The RST_STREAM code that ended the stream, either side's (undefined: not reset). */
  resetCode: number | undefined = undefined;

  constructor(
    readonly connection: H2Connection,
    readonly id: number,
    readonly headers: HeaderList,
    sendWindow: number,
  ) {
    this.sendWindow = sendWindow;
  }

  /** Sends the response headers (an encoded block, see encodeHeaderBlock). */
  respond(block: Buffer): void {
    if (this.closed || this.headersSent) return;
    this.headersSent = true;
    this.connection.sendHeaders(this.id, block, false);
  }

  /** Sends a trailers-only response (headers with END_STREAM) and closes the stream. */
  respondTrailersOnly(block: Buffer): void {
    if (this.closed || this.localEnded) return;
    this.headersSent = true;
    this.localEnded = true;
    this.connection.sendHeaders(this.id, block, true);
    this.connection.maybeClose(this);
  }

  /**
   * Sends data as the peer's windows allow, queueing the rest. `callback` runs once the data has
   * been handed to the socket (with an error if the stream or connection closed first).
   */
  write(data: Buffer, callback?: (error?: Error | null) => void): void {
    if (this.closed || this.localEnded) {
      if (callback !== undefined) process.nextTick(callback, new Error('stream closed'));
      return;
    }
    this.connection.sendData(this, data, callback);
  }

  /** Sends the trailers (END_STREAM) after any queued data. */
  end(trailers: Buffer): void {
    if (this.closed || this.localEnded) return;
    this.localEnded = true;
    if (this.pending.length === 0) {
      this.connection.sendHeaders(this.id, trailers, true);
      this.connection.maybeClose(this);
    } else {
      this.pendingTrailers = trailers;
    }
  }

  /** Resets the stream with `code` (RST_STREAM); onClose follows. */
  reset(code: number): void {
    this.connection.resetStream(this, code);
  }

  /** Stops granting window for this stream (its sender stops once the window is used up). */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.connection.grantStream(this);
  }
}

export class H2Connection {
  readonly #socket: net.Socket;
  readonly #options: H2ConnectionOptions;
  readonly #decoder: HpackDecoder;
  /** Open streams by id; not a Map: one in and one out per request (see KeyedTable). */
  readonly #streams = new KeyedTable<number, H2Stream>((stream) => stream.id, (id) => id >>> 1);
  readonly #client: boolean;
  /** Keepalive: the interval timer, and the timer of an unanswered PING. */
  #pingInterval: NodeJS.Timeout | undefined = undefined;
  #pingTimeout: NodeJS.Timeout | undefined = undefined;
  /** Why the socket failed (client: refused, reset, timed out), for the streams it ends. */
  #socketError: Error | undefined = undefined;

  #prefaceSeen = false;
  #settingsSeen = false;
  #buffer: Buffer | undefined = undefined;
  /** Server: the highest stream id the peer opened; client: the highest this side opened. */
  #lastStreamId = 0;
  /** A header block in progress: stream id, flags of its HEADERS, fragments. */
  #headerBlock: { id: number; endStream: boolean; fragments: Buffer[]; bytes: number } | undefined = undefined;

  /** Peer settings. */
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxFrame = LOCAL_MAX_FRAME_BYTES;
  /** Connection send window (the peer's grant). */
  #sendWindow = DEFAULT_WINDOW;
  /** Connection bytes received since the last WINDOW_UPDATE this side sent. */
  #unacknowledged = 0;
  /** Streams with DATA waiting for window, in order. */
  readonly #blocked = new Set<H2Stream>();

  /** What the next flush writes, in order (staged bytes are pushed as a view when sealed). */
  #out: Buffer[] = [];
  #outBytes = 0;
  /** The stage (see STAGE_BYTES): bytes [#stageStart, #stageEnd) are made but not yet in #out. */
  #stage: Buffer | undefined = undefined;
  #stageStart = 0;
  #stageEnd = 0;
  /** What to call once the socket has taken this flush's bytes (writes whose data is in #out). */
  #outCallbacks: Array<(error?: Error | null) => void> = [];
  /** A flush is scheduled for after the I/O phase; #urgentFlush: one for this tick (#out is large). */
  #flushScheduled = false;
  #urgentFlush = false;
  /** The flush of PING acknowledgements that no other frame has taken along yet (PING_ACK_DELAY_MS). */
  #pingAckFlush: NodeJS.Timeout | undefined = undefined;
  /** The socket's buffer is above its mark: DATA waits (the peer reads slower than this side sends). */
  #socketBlocked = false;
  #goingAway = false;
  #closed = false;

  constructor(socket: net.Socket, options: H2ConnectionOptions) {
    this.#socket = socket;
    this.#options = options;
    this.#decoder = new HpackDecoder();
    this.#client = options.role === 'client';
    socket.setNoDelay(true);
    if (this.#client) {
      // The client speaks first (its preface); the server sends none.
      this.#prefaceSeen = true;
      this.#out.push(PREFACE);
      this.#outBytes += PREFACE.length;
    }
    // Our settings, and the connection window raised from 65,535.
    this.#frame(SETTINGS, 0, 0, settingsPayload([
      [SETTINGS_MAX_CONCURRENT_STREAMS, options.maxConcurrentStreams],
      [SETTINGS_MAX_HEADER_LIST_SIZE, options.maxHeaderListBytes],
      [SETTINGS_ENABLE_PUSH, 0],
    ]));
    this.#frame(WINDOW_UPDATE, 0, 0, u32(CONNECTION_WINDOW - DEFAULT_WINDOW));
    socket.on('data', (chunk: Buffer) => this.#receive(chunk));
    socket.on('error', (error: Error) => {
      this.#socketError ??= error; // 'close' follows
    });
    socket.on('close', () => this.#onSocketClose());
    if (options.keepalive !== undefined) this.#startKeepalive(options.keepalive.intervalMs, options.keepalive.timeoutMs);
  }

  /** True once the connection is closed or closing (client: open no more streams on it). */
  get ended(): boolean {
    return this.#closed || this.#goingAway;
  }

  /** Why the socket failed, if it did. */
  get socketError(): Error | undefined {
    return this.#socketError;
  }

  /**
   * Client: opens a stream with the request header block (see encodeHeaderBlock); undefined when
   * the connection is closing or out of stream ids.
   */
  openStream(block: Buffer): H2Stream | undefined {
    if (!this.#client || this.#closed || this.#goingAway) return undefined;
    const id = this.#lastStreamId === 0 ? 1 : this.#lastStreamId + 2;
    if (id > MAX_STREAM_ID) return undefined;
    this.#lastStreamId = id;
    const stream = new H2Stream(this, id, [], this.#peerInitialWindow);
    this.#streams.add(stream);
    this.sendHeaders(id, block, false);
    return stream;
  }

  #startKeepalive(intervalMs: number, timeoutMs: number): void {
    this.#pingInterval = setInterval(() => {
      if (this.#closed || this.#pingTimeout !== undefined) return;
      this.#frame(PING, 0, 0, KEEPALIVE_PING);
      this.#pingTimeout = setTimeout(() => {
        this.#socketError ??= new Error(`no PING acknowledgement within ${timeoutMs} ms`);
        this.#socket.destroy();
      }, timeoutMs);
      this.#pingTimeout.unref();
    }, intervalMs);
    this.#pingInterval.unref();
  }

  #stopKeepalive(): void {
    if (this.#pingInterval !== undefined) clearInterval(this.#pingInterval);
    if (this.#pingTimeout !== undefined) clearTimeout(this.#pingTimeout);
    this.#pingInterval = undefined;
    this.#pingTimeout = undefined;
  }

  /** The open streams, oldest first (a copy). */
  #streamsInOrder(): H2Stream[] {
    return this.#streams.values().sort((a, b) => a.id - b.id);
  }

  /** The open streams (a copy). */
  openStreams(): H2Stream[] {
    return this.#streamsInOrder();
  }

  /**
   * Sends GOAWAY and closes once the open streams are done; with `force`, at once: streams this
   * side has not ended yet are reset with CANCEL first.
   */
  close(force = false): void {
    if (this.#closed) return;
    if (!this.#goingAway) {
      this.#goingAway = true;
      this.#frame(GOAWAY, 0, 0, goawayPayload(this.#lastPeerStreamId(), H2_NO_ERROR));
    }
    if (force) {
      for (const stream of this.#streamsInOrder()) if (!stream.localEnded) this.#frame(RST_STREAM, 0, stream.id, u32(H2_CANCEL));
    }
    if (force || this.#streams.size === 0) this.#end();
  }

  /** The last stream the peer opened, as GOAWAY reports it (a client's peer opens none). */
  #lastPeerStreamId(): number {
    return this.#client ? 0 : this.#lastStreamId;
  }

  // ---- receiving

  #receive(chunk: Buffer): void {
    if (this.#closed) return;
    try {
      let rest = chunk;
      if (this.#buffer !== undefined) {
        // A frame (or the preface) began in an earlier chunk: complete it with just the bytes it
        // still needs, rather than joining the whole chunk to it (a busy connection's chunks often
        // end inside a frame; joining copied every chunk after that whole).
        let head = this.#buffer;
        this.#buffer = undefined;
        for (let need = this.#unitBytes(head); head.length < need; need = this.#unitBytes(head)) {
          if (rest.length === 0) {
            this.#buffer = head;
            return;
          }
          const take = Math.min(need - head.length, rest.length);
          head = Buffer.concat([head, rest.subarray(0, take)]);
          rest = rest.subarray(take);
        }
        this.#parse(head);
        if (this.#closed) return;
      }
      const at = this.#parse(rest);
      if (at < rest.length && !this.#closed) this.#buffer = Buffer.from(rest.subarray(at));
    } catch (error: unknown) {
      if (error instanceof ConnectionError) {
        this.#fail(error.code);
        return;
      }
      throw error;
    }
  }

  /** The bytes of the first unit `head` begins (the preface, or a frame), as far as `head` tells. */
  #unitBytes(head: Buffer): number {
    if (!this.#prefaceSeen) {
      if (!PREFACE.subarray(0, Math.min(head.length, PREFACE.length)).equals(head.subarray(0, PREFACE.length))) throw new ConnectionError(H2_PROTOCOL_ERROR, 'bad connection preface');
      return PREFACE.length;
    }
    if (head.length < FRAME_HEADER_BYTES) return FRAME_HEADER_BYTES;
    return FRAME_HEADER_BYTES + H2Connection.#frameLength(head, 0);
  }

  /** A frame's payload length from its header at `at` (refused beyond what this side accepts). */
  static #frameLength(data: Buffer, at: number): number {
    const length = (data[at] << 16) | (data[at + 1] << 8) | data[at + 2];
    if (length > LOCAL_MAX_FRAME_BYTES) throw new ConnectionError(H2_FRAME_SIZE_ERROR, `frame of ${length} bytes`);
    return length;
  }

  /** Handles the preface and the whole frames at the start of `data`; returns the bytes used. */
  #parse(data: Buffer): number {
    let at = 0;
    if (!this.#prefaceSeen) {
      if (this.#unitBytes(data) > data.length) return 0;
      this.#prefaceSeen = true;
      at = PREFACE.length;
    }
    while (data.length - at >= FRAME_HEADER_BYTES) {
      const length = H2Connection.#frameLength(data, at);
      if (data.length - at < FRAME_HEADER_BYTES + length) break;
      const type = data[at + 3];
      const flags = data[at + 4];
      const id = data.readUInt32BE(at + 5) & 0x7fffffff;
      const payload = data.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length);
      at += FRAME_HEADER_BYTES + length;
      this.#onFrame(type, flags, id, payload);
      if (this.#closed) break;
    }
    return at;
  }

  #onFrame(type: number, flags: number, id: number, payload: Buffer): void {
    if (!this.#settingsSeen && type !== SETTINGS) throw new ConnectionError(H2_PROTOCOL_ERROR, 'first frame is not SETTINGS');
    if (this.#headerBlock !== undefined && type !== CONTINUATION) throw new ConnectionError(H2_PROTOCOL_ERROR, 'header block interrupted');
    switch (type) {
      case DATA:
        this.#onData(flags, id, payload);
        return;
      case HEADERS:
        this.#onHeaders(flags, id, payload);
        return;
      case CONTINUATION:
        this.#onContinuation(flags, id, payload);
        return;
      case PRIORITY:
        if (id === 0) throw new ConnectionError(H2_PROTOCOL_ERROR, 'PRIORITY on stream 0');
        if (payload.length !== 5) throw new ConnectionError(H2_FRAME_SIZE_ERROR, 'PRIORITY size');
        return;
      case RST_STREAM: {
        if (id === 0) throw new ConnectionError(H2_PROTOCOL_ERROR, 'RST_STREAM on stream 0');
        if (payload.length !== 4) throw new ConnectionError(H2_FRAME_SIZE_ERROR, 'RST_STREAM size');
        if (id > this.#lastStreamId) throw new ConnectionError(H2_PROTOCOL_ERROR, 'RST_STREAM on an idle stream');
        const stream = this.#streams.get(id);
        if (stream !== undefined) this.#resetStream(stream, payload.readUInt32BE(0), true);
        return;
      }
      case SETTINGS:
        this.#onSettings(flags, id, payload);
        return;
      case PUSH_PROMISE:
        // A server's, refused: this side advertises SETTINGS_ENABLE_PUSH 0.
        throw new ConnectionError(H2_PROTOCOL_ERROR, this.#client ? 'PUSH_PROMISE with push disabled' : 'PUSH_PROMISE from a client');
      case PING:
        if (id !== 0) throw new ConnectionError(H2_PROTOCOL_ERROR, 'PING on a stream');
        if (payload.length !== 8) throw new ConnectionError(H2_FRAME_SIZE_ERROR, 'PING size');
        if ((flags & ACK) === 0) {
          // The acknowledgement leaves with the next frames this side sends (a Go client sends a
          // PING with nearly every request, to size its flow-control window): one socket write
          // less per request, and the request's own work (a leader's appends) no longer waits
          // behind it. If nothing else is sent, it leaves after PING_ACK_DELAY_MS.
          this.#frame(PING, ACK, 0, Buffer.from(payload), 'later');
        } else if (this.#pingTimeout !== undefined) {
          clearTimeout(this.#pingTimeout);
          this.#pingTimeout = undefined;
        }
        return;
      case GOAWAY:
        if (id !== 0) throw new ConnectionError(H2_PROTOCOL_ERROR, 'GOAWAY on a stream');
        if (payload.length < 8) throw new ConnectionError(H2_FRAME_SIZE_ERROR, 'GOAWAY size');
        // No more streams start; those open run to their end, except (client) the ones the server
        // says it never processed (above its last stream id): they end refused.
        this.#goingAway = true;
        if (this.#client) {
          const last = payload.readUInt32BE(0) & 0x7fffffff;
          for (const stream of this.#streamsInOrder()) {
            if (stream.id > last) this.#resetStream(stream, H2_REFUSED_STREAM, true);
          }
        }
        if (this.#streams.size === 0) this.#end();
        return;
      case WINDOW_UPDATE:
        this.#onWindowUpdate(id, payload);
        return;
      default:
        // Unknown frame types are ignored (RFC 7540 §4.1).
        return;
    }
  }

  /** Strips padding (PADDED flag): the payload without its pad length byte and padding. */
  static #unpad(flags: number, payload: Buffer): Buffer {
    if ((flags & PADDED) === 0) return payload;
    if (payload.length < 1) throw new ConnectionError(H2_PROTOCOL_ERROR, 'padded frame without pad length');
    const pad = payload[0];
    if (pad >= payload.length) throw new ConnectionError(H2_PROTOCOL_ERROR, 'padding beyond the frame');
    return payload.subarray(1, payload.length - pad);
  }

  #onData(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw new ConnectionError(H2_PROTOCOL_ERROR, 'DATA on stream 0');
    // Flow control counts the whole frame, padding included.
    this.#unacknowledged += payload.length;
    if (this.#unacknowledged > CONNECTION_WINDOW) throw new ConnectionError(H2_FLOW_CONTROL_ERROR, 'connection window exceeded');
    this.#grantConnection();
    const stream = this.#streams.get(id);
    if (stream === undefined || stream.remoteEnded) {
      if (id > this.#lastStreamId) throw new ConnectionError(H2_PROTOCOL_ERROR, 'DATA on an idle stream');
      // A stream this side closed or reset: its data is late, not an error worth the connection.
      this.#frame(RST_STREAM, 0, id, u32(H2_STREAM_CLOSED));
      return;
    }
    stream.unacknowledged += payload.length;
    if (stream.unacknowledged > DEFAULT_WINDOW) {
      this.#resetStream(stream, H2_FLOW_CONTROL_ERROR, false);
      return;
    }
    const data = H2Connection.#unpad(flags, payload);
    if (data.length > 0) stream.onData?.(data);
    if (!stream.paused) this.grantStream(stream);
    if ((flags & END_STREAM) !== 0) this.#remoteEnd(stream);
  }

  #onHeaders(flags: number, id: number, payload: Buffer): void {
    // Client-initiated streams are odd; servers push none here.
    if (id === 0 || id % 2 === 0) throw new ConnectionError(H2_PROTOCOL_ERROR, `HEADERS on stream ${id}`);
    let fragment = H2Connection.#unpad(flags, payload);
    if ((flags & PRIORITY_FLAG) !== 0) {
      if (fragment.length < 5) throw new ConnectionError(H2_FRAME_SIZE_ERROR, 'HEADERS priority');
      fragment = fragment.subarray(5);
    }
    this.#headerBlock = { id, endStream: (flags & END_STREAM) !== 0, fragments: [fragment], bytes: fragment.length };
    this.#checkHeaderBlockSize();
    if ((flags & END_HEADERS) !== 0) this.#headerBlockDone();
  }

  #onContinuation(flags: number, id: number, payload: Buffer): void {
    const block = this.#headerBlock;
    if (block === undefined || block.id !== id) throw new ConnectionError(H2_PROTOCOL_ERROR, 'unexpected CONTINUATION');
    block.fragments.push(payload);
    block.bytes += payload.length;
    this.#checkHeaderBlockSize();
    if ((flags & END_HEADERS) !== 0) this.#headerBlockDone();
  }

  #checkHeaderBlockSize(): void {
    // A compressed block is never larger than what it decodes to (plus a little): bounded by the list limit.
    if (this.#headerBlock !== undefined && this.#headerBlock.bytes > this.#options.maxHeaderListBytes + 1024) {
      throw new ConnectionError(H2_ENHANCE_YOUR_CALM, 'header block too large');
    }
  }

  #headerBlockDone(): void {
    const block = this.#headerBlock;
    if (block === undefined) return;
    this.#headerBlock = undefined;
    const bytes = block.fragments.length === 1 ? block.fragments[0] : Buffer.concat(block.fragments, block.bytes);
    let headers: HeaderList | undefined;
    let tooLarge = false;
    try {
      headers = this.#decoder.decode(bytes, this.#options.maxHeaderListBytes);
    } catch (error: unknown) {
      if (error instanceof HeaderListTooLargeError) tooLarge = true;
      else if (error instanceof HpackError) throw new ConnectionError(H2_COMPRESSION_ERROR, error.message);
      else throw error;
    }
    if (this.#client) {
      this.#responseHeaders(block.id, block.endStream, tooLarge ? undefined : headers);
      return;
    }
    const existing = this.#streams.get(block.id);
    if (existing !== undefined) {
      // Trailers from the client: must end the stream.
      if (!block.endStream || existing.remoteEnded) throw new ConnectionError(H2_PROTOCOL_ERROR, 'HEADERS on an open stream');
      this.#remoteEnd(existing);
      return;
    }
    // A stream this side already closed or reset (the block was decoded all the same: the table stays in step).
    if (block.id <= this.#lastStreamId) return;
    this.#lastStreamId = block.id;
    if (this.#goingAway) {
      this.#frame(RST_STREAM, 0, block.id, u32(H2_REFUSED_STREAM));
      return;
    }
    if (tooLarge || headers === undefined) {
      // As nghttp2 does for an oversized header list: the stream is refused, the connection lives.
      this.#frame(RST_STREAM, 0, block.id, u32(H2_REFUSED_STREAM));
      return;
    }
    if (this.#streams.size >= this.#options.maxConcurrentStreams) {
      this.#frame(RST_STREAM, 0, block.id, u32(H2_REFUSED_STREAM));
      return;
    }
    const stream = new H2Stream(this, block.id, headers, this.#peerInitialWindow);
    this.#streams.add(stream);
    this.#options.onStream?.(stream);
    if (block.endStream && !stream.closed) this.#remoteEnd(stream);
  }

  /** Client: a response's headers or trailers (undefined: the list was over the limit). */
  #responseHeaders(id: number, endStream: boolean, headers: HeaderList | undefined): void {
    const stream = this.#streams.get(id);
    if (stream === undefined) {
      if (id > this.#lastStreamId) throw new ConnectionError(H2_PROTOCOL_ERROR, 'HEADERS on an idle stream');
      return; // a stream this side already closed or reset
    }
    if (stream.remoteEnded) throw new ConnectionError(H2_PROTOCOL_ERROR, 'HEADERS on a closed stream');
    if (headers === undefined) {
      this.#resetStream(stream, H2_PROTOCOL_ERROR, false);
      return;
    }
    stream.onHeaders?.(headers, endStream);
    if (endStream && !stream.closed) this.#remoteEnd(stream);
  }

  #remoteEnd(stream: H2Stream): void {
    if (stream.remoteEnded) return;
    stream.remoteEnded = true;
    stream.onEnd?.();
    this.maybeClose(stream);
  }

  #onSettings(flags: number, id: number, payload: Buffer): void {
    if (id !== 0) throw new ConnectionError(H2_PROTOCOL_ERROR, 'SETTINGS on a stream');
    if ((flags & ACK) !== 0) {
      if (payload.length !== 0) throw new ConnectionError(H2_FRAME_SIZE_ERROR, 'SETTINGS ack with a payload');
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(H2_FRAME_SIZE_ERROR, 'SETTINGS size');
    this.#settingsSeen = true;
    for (let at = 0; at < payload.length; at += 6) {
      const key = payload.readUInt16BE(at);
      const value = payload.readUInt32BE(at + 2);
      switch (key) {
        case SETTINGS_INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW) throw new ConnectionError(H2_FLOW_CONTROL_ERROR, 'initial window too large');
          const delta = value - this.#peerInitialWindow;
          this.#peerInitialWindow = value;
          for (const stream of this.#streams.values()) {
            stream.sendWindow += delta;
            if (stream.sendWindow > MAX_WINDOW) throw new ConnectionError(H2_FLOW_CONTROL_ERROR, 'stream window overflow');
          }
          if (delta > 0) this.#pump();
          break;
        }
        case SETTINGS_MAX_FRAME_SIZE:
          if (value < 16_384 || value > 16_777_215) throw new ConnectionError(H2_PROTOCOL_ERROR, 'bad max frame size');
          this.#peerMaxFrame = value;
          break;
        case SETTINGS_ENABLE_PUSH:
          if (value > 1) throw new ConnectionError(H2_PROTOCOL_ERROR, 'bad enable push');
          break;
        case SETTINGS_HEADER_TABLE_SIZE:
          // This side's encoder uses no dynamic table: nothing to resize.
          break;
        default:
          // MAX_CONCURRENT_STREAMS (this side opens none), MAX_HEADER_LIST_SIZE (advisory), unknown.
          break;
      }
    }
    this.#frame(SETTINGS, ACK, 0, EMPTY);
  }

  #onWindowUpdate(id: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(H2_FRAME_SIZE_ERROR, 'WINDOW_UPDATE size');
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (id === 0) {
      if (increment === 0) throw new ConnectionError(H2_PROTOCOL_ERROR, 'zero WINDOW_UPDATE');
      this.#sendWindow += increment;
      if (this.#sendWindow > MAX_WINDOW) throw new ConnectionError(H2_FLOW_CONTROL_ERROR, 'connection window overflow');
      this.#pump();
      return;
    }
    const stream = this.#streams.get(id);
    if (stream === undefined) {
      if (id > this.#lastStreamId) throw new ConnectionError(H2_PROTOCOL_ERROR, 'WINDOW_UPDATE on an idle stream');
      return;
    }
    if (increment === 0) {
      this.#resetStream(stream, H2_PROTOCOL_ERROR, false);
      return;
    }
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) {
      this.#resetStream(stream, H2_FLOW_CONTROL_ERROR, false);
      return;
    }
    this.#pump();
  }

  /** Grants the connection's received bytes back once half the window is used. */
  #grantConnection(): void {
    if (this.#unacknowledged >= CONNECTION_WINDOW / 2) {
      this.#frame(WINDOW_UPDATE, 0, 0, u32(this.#unacknowledged));
      this.#unacknowledged = 0;
    }
  }

  /** Grants a stream's received bytes back once a quarter of its window is used, unless it is paused. */
  grantStream(stream: H2Stream): void {
    if (stream.closed || stream.remoteEnded || stream.paused) return;
    if (stream.unacknowledged < DEFAULT_WINDOW / 4) return;
    this.#frame(WINDOW_UPDATE, 0, stream.id, u32(stream.unacknowledged));
    stream.unacknowledged = 0;
  }

  // ---- sending

  sendHeaders(id: number, block: Buffer, endStream: boolean): void {
    // A block larger than the peer's frame size goes as HEADERS + CONTINUATION frames.
    if (block.length <= this.#peerMaxFrame) {
      this.#frame(HEADERS, END_HEADERS | (endStream ? END_STREAM : 0), id, block);
      return;
    }
    let at = 0;
    let first = true;
    while (at < block.length) {
      const size = Math.min(this.#peerMaxFrame, block.length - at);
      const last = at + size === block.length;
      const flags = (last ? END_HEADERS : 0) | (first && endStream ? END_STREAM : 0);
      this.#frame(first ? HEADERS : CONTINUATION, flags, id, block.subarray(at, at + size));
      first = false;
      at += size;
    }
  }

  /**
   * Sends what the windows allow of `data` now, queues the rest. A write with a callback is one
   * whose writer waits for the socket to take it (a streaming call's, the peer client's Raft
   * messages): its frames leave at the end of this callback rather than after the I/O phase. For
   * the watch service a deferred flush cost a pass of the loop per message (etcd's watch
   * benchmark fell from 1.74–1.87M to 1.02–1.45M events/s); for Raft messages the Ready loop
   * writes once per peer per Ready anyway, and the round trip to a follower is on every put's path
   * (four alternating pairs, medians: put64 8,700 → 9,303 puts/s, put1 613 → 634).
   */
  sendData(stream: H2Stream, data: Buffer, callback?: (error?: Error | null) => void): void {
    if (callback !== undefined) this.#flushSoon();
    if (stream.pending.length === 0) {
      const sent = this.#sendDataNow(stream, data);
      if (sent === data.length) {
        if (callback !== undefined) this.#outCallbacks.push(callback);
        return;
      }
      data = data.subarray(sent);
    }
    stream.pending.push(data);
    stream.pendingCallbacks.push(callback);
    this.#blocked.add(stream);
  }

  /** Sends as much of `data` as both windows and the frame size allow; returns the bytes sent. */
  #sendDataNow(stream: H2Stream, data: Buffer): number {
    let at = 0;
    while (at < data.length && !this.#socketBlocked) {
      const room = Math.min(this.#sendWindow, stream.sendWindow, this.#peerMaxFrame);
      if (room <= 0) break;
      const size = Math.min(room, data.length - at);
      this.#frame(DATA, 0, stream.id, at === 0 && size === data.length ? data : data.subarray(at, at + size));
      this.#sendWindow -= size;
      stream.sendWindow -= size;
      at += size;
    }
    return at;
  }

  /** Sends queued data the windows now allow, then queued trailers. */
  #pump(): void {
    for (const stream of this.#blocked) {
      if (this.#sendWindow <= 0 || this.#socketBlocked) break;
      while (stream.pending.length > 0) {
        const data = stream.pending[0];
        const sent = this.#sendDataNow(stream, data);
        if (sent < data.length) {
          stream.pending[0] = data.subarray(sent);
          break;
        }
        stream.pending.shift();
        const callback = stream.pendingCallbacks.shift();
        if (callback !== undefined) this.#outCallbacks.push(callback);
      }
      if (stream.pending.length > 0) continue;
      this.#blocked.delete(stream);
      if (stream.pendingTrailers !== undefined) {
        const trailers = stream.pendingTrailers;
        stream.pendingTrailers = undefined;
        this.sendHeaders(stream.id, trailers, true);
        this.maybeClose(stream);
      }
    }
  }

  /** Resets a stream from this side (RST_STREAM with `code`). */
  resetStream(stream: H2Stream, code: number): void {
    this.#resetStream(stream, code, false);
  }

  #resetStream(stream: H2Stream, code: number, byPeer: boolean): void {
    if (stream.closed) return;
    stream.resetCode = code;
    if (!byPeer) this.#frame(RST_STREAM, 0, stream.id, u32(code));
    stream.localEnded = true;
    stream.remoteEnded = true;
    this.#close(stream);
  }

  /** Closes a stream both sides have ended. */
  maybeClose(stream: H2Stream): void {
    if (stream.closed || !stream.remoteEnded || !stream.localEnded || stream.pendingTrailers !== undefined) return;
    this.#close(stream);
  }

  /** Forgets a stream (its data that never left is dropped, its callbacks told) and tells its handler. */
  #close(stream: H2Stream): void {
    stream.closed = true;
    // An Error is built only when someone waits for it: its stack capture cost about 6 µs, 9 % of a
    // leader's CPU under put256 when every closed stream built one.
    if (stream.pendingCallbacks.length > 0) H2Connection.#callBack(stream.pendingCallbacks, new Error('stream closed'));
    stream.pending = [];
    stream.pendingCallbacks = [];
    stream.pendingTrailers = undefined;
    this.#blocked.delete(stream);
    this.#streams.delete(stream.id);
    stream.onClose?.();
    if (this.#goingAway && this.#streams.size === 0) this.#end();
  }

  /** Runs write callbacks on the next tick, with `error` (null: the bytes left). */
  static #callBack(callbacks: ReadonlyArray<((error?: Error | null) => void) | undefined>, error: Error | null): void {
    for (const callback of callbacks) if (callback !== undefined) process.nextTick(callback, error);
  }

  /**
   * Queues a frame; all frames queued in one pass of the event loop leave in one write. 'later':
   * the frame waits for the next flush, at most PING_ACK_DELAY_MS.
   */
  #frame(type: number, flags: number, id: number, payload: Buffer, when: 'now' | 'later' = 'now'): void {
    if (this.#closed) return;
    const staged = payload.length <= STAGED_PAYLOAD_MAX_BYTES;
    const stage = this.#reserve(FRAME_HEADER_BYTES + (staged ? payload.length : 0));
    let at = this.#stageEnd;
    stage[at] = (payload.length >>> 16) & 0xff;
    stage[at + 1] = (payload.length >>> 8) & 0xff;
    stage[at + 2] = payload.length & 0xff;
    stage[at + 3] = type;
    stage[at + 4] = flags;
    stage.writeUInt32BE(id, at + 5);
    at += FRAME_HEADER_BYTES;
    if (staged) {
      payload.copy(stage, at);
      this.#stageEnd = at + payload.length;
    } else {
      this.#stageEnd = at;
      this.#seal();
      this.#out.push(payload);
    }
    this.#outBytes += FRAME_HEADER_BYTES + payload.length;
    if (when === 'later') {
      if (!this.#flushScheduled && this.#pingAckFlush === undefined) {
        this.#pingAckFlush = setTimeout(() => {
          this.#pingAckFlush = undefined;
          if (!this.#flushScheduled && this.#outBytes > 0) this.#flush();
        }, PING_ACK_DELAY_MS);
        this.#pingAckFlush.unref();
      }
    } else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      // After the loop's I/O phase rather than after this callback: the answers that one pass of
      // the loop produces (apply batches, reads) share a write. A loopback write costs this VM tens
      // of µs (the receiver's TCP path and wake-up run in it): put64 rose from 7,773–8,151 to
      // 8,230–8,872 puts/s (bench/README.md, "2026-12-07, 07:02–08:45"). Writes whose writer
      // waits for the socket go sooner (sendData).
      setImmediate(() => {
        if (this.#flushScheduled) this.#flush();
      });
    }
    // Already a large write (a watch burst, a snapshot): waiting gains nothing.
    if (this.#outBytes >= FLUSH_JOIN_BYTES) this.#flushSoon();
  }

  /** The stage, with room for `bytes` more after #stageEnd (a new one when this one is full). */
  #reserve(bytes: number): Buffer {
    const stage = this.#stage;
    if (stage !== undefined && stage.length - this.#stageEnd >= bytes) return stage;
    this.#seal();
    // Bytes once sealed are never written again (the socket may still hold views of them): a full
    // stage is left to them and a new one taken.
    const fresh = Buffer.allocUnsafeSlow(Math.max(STAGE_BYTES, bytes));
    this.#stage = fresh;
    this.#stageStart = 0;
    this.#stageEnd = 0;
    return fresh;
  }

  /** Moves the staged bytes made since the last seal into #out (one view). */
  #seal(): void {
    if (this.#stage === undefined || this.#stageEnd === this.#stageStart) return;
    this.#out.push(this.#stage.subarray(this.#stageStart, this.#stageEnd));
    this.#stageStart = this.#stageEnd;
  }

  /** Flushes at the end of this callback rather than after the I/O phase. */
  #flushSoon(): void {
    if (this.#urgentFlush || this.#closed) return;
    this.#urgentFlush = true;
    process.nextTick(() => {
      this.#urgentFlush = false;
      this.#flush();
    });
  }

  #flush(): void {
    this.#flushScheduled = false;
    if (this.#pingAckFlush !== undefined) {
      clearTimeout(this.#pingAckFlush);
      this.#pingAckFlush = undefined;
    }
    const callbacks = this.#outCallbacks;
    this.#outCallbacks = [];
    this.#seal();
    if (this.#out.length === 0 || this.#socket.destroyed) {
      this.#out = [];
      this.#outBytes = 0;
      if (callbacks.length > 0) H2Connection.#callBack(callbacks, this.#socket.destroyed ? new Error('connection closed') : null);
      return;
    }
    const out = this.#out;
    const bytes = this.#outBytes;
    this.#out = [];
    this.#outBytes = 0;
    if (this.#socket.writableLength + bytes > MAX_SOCKET_BACKLOG_BYTES) {
      // A peer that sends but does not read: drop it rather than buffer without end.
      this.#closed = true;
      this.#socket.destroy();
      this.#resetAll();
      H2Connection.#callBack(callbacks, new Error('connection closed'));
      return;
    }
    const written = callbacks.length === 0 ? undefined : (error?: Error | null): void => {
      for (const callback of callbacks) callback(error ?? null);
    };
    const socket = this.#socket;
    if (bytes <= FLUSH_JOIN_BYTES) {
      socket.write(out.length === 1 ? out[0] : Buffer.concat(out, bytes), written);
    } else {
      // Much to send (a watch burst, a snapshot): small frames joined in runs, large payloads as
      // they are, all in one writev.
      socket.cork();
      let run: Buffer[] = [];
      let runBytes = 0;
      const writeRun = (callback?: (error?: Error | null) => void): void => {
        if (run.length === 0) return;
        socket.write(run.length === 1 ? run[0] : Buffer.concat(run, runBytes), callback);
        run = [];
        runBytes = 0;
      };
      for (const [index, buffer] of out.entries()) {
        const last = index === out.length - 1;
        if (buffer.length >= FLUSH_JOIN_BYTES / 4) {
          writeRun();
          socket.write(buffer, last ? written : undefined);
          continue;
        }
        run.push(buffer);
        runBytes += buffer.length;
        if (runBytes >= FLUSH_JOIN_BYTES || last) writeRun(last ? written : undefined);
      }
      socket.uncork();
    }
    // DATA waits while the socket holds more than its mark (its 'drain' comes once it is empty).
    if (socket.writableLength >= SOCKET_HIGH_WATER_BYTES && !this.#socketBlocked) {
      this.#socketBlocked = true;
      socket.once('drain', () => {
        this.#socketBlocked = false;
        this.#pump();
      });
    }
  }

  #fail(code: number): void {
    if (this.#closed) return;
    this.#socketError ??= new Error(`HTTP/2 protocol error ${code}`);
    this.#frame(GOAWAY, 0, 0, goawayPayload(this.#lastPeerStreamId(), code));
    this.#end();
  }

  #end(): void {
    if (this.#closed) return;
    this.#flush();
    this.#closed = true;
    this.#stopKeepalive();
    this.#socket.end();
    this.#resetAll();
  }

  /** Closes every open stream (the connection is closed already, so none of this goes out). */
  #resetAll(): void {
    for (const stream of this.#streamsInOrder()) this.#close(stream);
  }

  #onSocketClose(): void {
    this.#closed = true;
    this.#stopKeepalive();
    if (this.#outCallbacks.length > 0) H2Connection.#callBack(this.#outCallbacks, new Error('connection closed'));
    this.#outCallbacks = [];
    this.#resetAll();
    this.#options.onClose?.();
  }
}

const EMPTY = Buffer.alloc(0);
const KEEPALIVE_PING = Buffer.from('kvdalive', 'latin1');
const MAX_STREAM_ID = 2 ** 31 - 1;

function u32(value: number): Buffer {
  const buffer = Buffer.allocUnsafe(4);
  buffer.writeUInt32BE(value >>> 0, 0);
  return buffer;
}

function settingsPayload(settings: ReadonlyArray<readonly [number, number]>): Buffer {
  const buffer = Buffer.allocUnsafe(settings.length * 6);
  settings.forEach(([key, value], i) => {
    buffer.writeUInt16BE(key, i * 6);
    buffer.writeUInt32BE(value >>> 0, i * 6 + 2);
  });
  return buffer;
}

function goawayPayload(lastStreamId: number, code: number): Buffer {
  const buffer = Buffer.allocUnsafe(8);
  buffer.writeUInt32BE(lastStreamId, 0);
  buffer.writeUInt32BE(code, 4);
  return buffer;
}

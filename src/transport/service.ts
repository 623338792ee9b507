/**
 * The peer gRPC service `kvd.peer.Peer`, defined in code (no .proto): both methods carry raw
 * bytes, encoded and validated by ./codec.ts.
 *
 * - `Stream` (bidirectional): the caller writes a handshake, then frames of Raft messages for
 *   the callee; the callee answers the handshake with one acknowledgement and nothing else.
 * - `Snapshot` (client streaming): handshake, snapshot header, data chunks, end record; the
 *   callee answers once the application has installed (or refused) the snapshot.
 * - `Call` (unary): one member's request to another (identity fields as in a handshake, a kind
 *   and a payload the server defines), answered with a payload or an error code.
 * - `Calls` (bidirectional): the same requests and answers as `Call`, many on one long-lived
 *   stream, each numbered by the caller (./codec.ts call frames); members call this way and fall
 *   back to `Call` when the callee does not serve `Calls`.
 * - `Members` (unary): the cluster id and its members, for a member that joins and does not know
 *   them yet (no identity: like etcd's peer /members, it reveals only what the peer port already
 *   serves to any peer).
 */
import type * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { KvdError, errorMessage } from '../util/errors.js';
import { H2GrpcChannel } from '../util/h2/grpc-client.js';

/** Fully qualified method paths. */
export const PEER_STREAM_PATH = '/kvd.peer.Peer/Stream';
export const PEER_SNAPSHOT_PATH = '/kvd.peer.Peer/Snapshot';
export const PEER_CALL_PATH = '/kvd.peer.Peer/Call';
export const PEER_CALLS_PATH = '/kvd.peer.Peer/Calls';
export const PEER_MEMBERS_PATH = '/kvd.peer.Peer/Members';

/** Wraps bytes as a Buffer without copying (grpc-js wants Buffers). */
export function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function identity(bytes: Buffer): Buffer {
  return bytes;
}

/** A method of the peer service: raw bytes both ways (./codec.ts encodes and validates them). */
function bytesMethod(path: string, originalName: string, streams: { request: boolean; response: boolean }): grpc.MethodDefinition<Uint8Array, Buffer> {
  return {
    path,
    requestStream: streams.request,
    responseStream: streams.response,
    requestSerialize: toBuffer,
    requestDeserialize: identity,
    responseSerialize: toBuffer,
    responseDeserialize: identity,
    originalName,
  };
}

/** The service definition registered on the peer server. */
export const peerServiceDefinition: grpc.ServiceDefinition = {
  Stream: bytesMethod(PEER_STREAM_PATH, 'stream', { request: true, response: true }),
  Snapshot: bytesMethod(PEER_SNAPSHOT_PATH, 'snapshot', { request: true, response: false }),
  Call: bytesMethod(PEER_CALL_PATH, 'call', { request: false, response: false }),
  Calls: bytesMethod(PEER_CALLS_PATH, 'calls', { request: true, response: true }),
  Members: bytesMethod(PEER_MEMBERS_PATH, 'members', { request: false, response: false }),
};

/** Keepalive: a silent peer is declared dead within about this time plus the timeout. */
export const KEEPALIVE_TIME_MS = 5_000;
export const KEEPALIVE_TIMEOUT_MS = 5_000;
/** Bytes of slack granted above maxFrameBytes for gRPC-level limits (snapshot record tags). */
export const FRAME_SLACK_BYTES = 1024;

/**
 * Channel options for peer clients. Each client gets its own connection (local subchannel
 * pool), so a snapshot transfer never shares a TCP connection with the message stream; grpc-js
 * sets TCP_NODELAY on client sockets. Retries are off: Raft tolerates loss, and the retry
 * buffer would only add copies and memory.
 */
export function clientChannelOptions(maxFrameBytes: number): grpc.ChannelOptions {
  return {
    'grpc.use_local_subchannel_pool': 1,
    'grpc.enable_retries': 0,
    // Channelz (grpc's introspection service, which kvd does not serve) tracks every call: off.
    'grpc.enable_channelz': 0,
    'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
    'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
    'grpc.keepalive_permit_without_calls': 1,
    'grpc.initial_reconnect_backoff_ms': 50,
    'grpc.max_reconnect_backoff_ms': 2_000,
    'grpc.max_send_message_length': maxFrameBytes + FRAME_SLACK_BYTES,
    'grpc.max_receive_message_length': maxFrameBytes + FRAME_SLACK_BYTES,
  };
}

/** Server options matching {@link clientChannelOptions}. */
export function serverOptions(maxFrameBytes: number): grpc.ServerOptions {
  return {
    'grpc.enable_channelz': 0,
    'grpc.keepalive_time_ms': KEEPALIVE_TIME_MS,
    'grpc.keepalive_timeout_ms': KEEPALIVE_TIMEOUT_MS,
    'grpc.max_send_message_length': maxFrameBytes + FRAME_SLACK_BYTES,
    'grpc.max_receive_message_length': maxFrameBytes + FRAME_SLACK_BYTES,
  };
}

/** A parsed peer URL: `http://host:port` (plain) or `https://host:port` (TLS). */
export interface PeerAddress {
  /** As written in the URL; IPv6 literals keep their brackets. */
  readonly host: string;
  readonly port: number;
  /** https: the connection is TLS (credentials from the transport's TLS settings). */
  readonly secure: boolean;
}

/**
 * Parses `http://host:port` or `https://host:port` (port defaults to 80 / 443). Throws
 * KvdError('member-bad-urls') for anything else (paths, credentials): peer URLs come from
 * configuration and must be valid before use.
 */
export function parsePeerUrl(url: string): PeerAddress {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error: unknown) {
    throw new KvdError('member-bad-urls', { cause: error });
  }
  const pathOk = parsed.pathname === '/' || parsed.pathname === '';
  const secure = parsed.protocol === 'https:';
  if ((parsed.protocol !== 'http:' && !secure) || parsed.hostname === '' || !pathOk || parsed.search !== '' || parsed.username !== '') {
    throw new KvdError('member-bad-urls', { cause: new Error(`unsupported peer URL ${url}: expected http(s)://host:port`) });
  }
  // URL elides the scheme's default port: 'http://h:80' has port ''.
  return { host: parsed.hostname, port: parsed.port === '' ? (secure ? 443 : 80) : Number(parsed.port), secure };
}

/**
 * Credentials for TLS peer connections (the member's peer certificate as client certificate, the
 * peer CA to verify the callee), made afresh per connection so that reloaded certificates are used.
 */
export type PeerCredentials = () => grpc.ChannelCredentials;

/** Secures an accepted peer connection (TLS handshake and certificate checks), or refuses it (undefined). */
export type PeerSecureAccept = (socket: import('node:net').Socket) => Promise<import('node:net').Socket | undefined>;

/** `host:port` as grpc-js targets and net.Server listens expect it. */
export function addressTarget(address: PeerAddress): string {
  return `${address.host}:${address.port}`;
}

/**
 * Creates a client (with its own connection) for one peer address: TLS with `credentials` (or
 * the system's roots without them) for https addresses, plain otherwise.
 */
export function createPeerClient(address: PeerAddress, maxFrameBytes: number, credentials?: PeerCredentials): grpc.Client {
  const channelCredentials = address.secure ? (credentials?.() ?? grpc.credentials.createSsl()) : grpc.credentials.createInsecure();
  return new grpc.Client(addressTarget(address), channelCredentials, clientChannelOptions(maxFrameBytes));
}

/**
 * Which HTTP/2 the peer transport speaks: 'kvd' (src/util/h2: the peer port's server and the
 * `Stream` and `Calls` streams' client) or 'node' (grpc-js on Node's HTTP/2 module). The two
 * interoperate: members of one cluster may differ.
 */
export type PeerHttp2 = 'kvd' | 'node';

/** TLS options for kvd's HTTP/2 client (the member's peer certificate and CA, made per connection). */
export type PeerTlsConnect = () => tls.ConnectionOptions;

/** What a long-lived peer stream tells its owner; onEnd comes once, then nothing else. */
export interface PeerStreamHandlers {
  onMessage(bytes: Buffer): void;
  onDrain(): void;
  /** The stream ended: its gRPC status code (undefined when there was none) and details. */
  onEnd(code: number | undefined, details: string): void;
}

/** A long-lived bidirectional peer stream (`Stream` or `Calls`). */
export interface PeerStreamCall {
  /** Sends one message; false: wait for onDrain before the next (this one is sent all the same). */
  write(bytes: Uint8Array): boolean;
  cancel(): void;
}

/** A connection to one peer address that long-lived streams open on. */
export interface PeerChannel {
  openStream(path: string, handlers: PeerStreamHandlers): PeerStreamCall;
  close(): void;
}

/** How peer channels are made. */
export interface PeerChannelOptions {
  readonly http2: PeerHttp2;
  readonly maxFrameBytes: number;
  readonly credentials?: PeerCredentials;
  readonly tlsConnect?: PeerTlsConnect;
}

/** A channel to `address` on the chosen HTTP/2. */
export function createPeerChannel(address: PeerAddress, options: PeerChannelOptions): PeerChannel {
  if (options.http2 === 'node') return new GrpcJsPeerChannel(createPeerClient(address, options.maxFrameBytes, options.credentials));
  return new H2GrpcChannel({
    host: address.host,
    port: address.port,
    tls: address.secure ? (options.tlsConnect ?? (() => ({}))) : undefined,
    maxReceiveBytes: options.maxFrameBytes + FRAME_SLACK_BYTES,
    keepalive: { intervalMs: KEEPALIVE_TIME_MS, timeoutMs: KEEPALIVE_TIMEOUT_MS },
  });
}

/** A peer channel on a grpc-js client. */
class GrpcJsPeerChannel implements PeerChannel {
  readonly #client: grpc.Client;

  constructor(client: grpc.Client) {
    this.#client = client;
  }

  openStream(path: string, handlers: PeerStreamHandlers): PeerStreamCall {
    const call = this.#client.makeBidiStreamRequest<Uint8Array, Buffer>(path, toBuffer, identity);
    let ended = false;
    const end = (code: number | undefined, details: string): void => {
      if (ended) return;
      ended = true;
      handlers.onEnd(code, details);
    };
    call.on('data', (bytes: Buffer) => {
      if (!ended) handlers.onMessage(bytes);
    });
    call.on('drain', () => {
      if (!ended) handlers.onDrain();
    });
    // A failed call emits both 'error' and 'status'; whichever comes first ends the stream.
    call.on('error', (error: unknown) => {
      const status = error as Partial<grpc.StatusObject>;
      if (typeof status.code === 'number' && typeof status.details === 'string') end(status.code, status.details);
      else end(undefined, errorMessage(error));
    });
    call.on('status', (status: grpc.StatusObject) => end(status.code, status.details));
    return { write: (bytes) => call.write(bytes), cancel: () => call.cancel() };
  }

  close(): void {
    this.#client.close();
  }
}

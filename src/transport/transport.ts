/**
 * kvd's peer-to-peer transport: Raft messages and snapshots between members over gRPC
 * (`kvd.peer.Peer`, see ./service.ts) carrying msgpack frames (./codec.ts).
 *
 * Each member opens one long-lived outbound `Stream` call per peer and only ever writes on it;
 * it receives its peers' messages on the calls they open to it. Every call starts with a
 * handshake `{ clusterId, from, to }`; a receiver refuses (FAILED_PRECONDITION) a handshake from
 * another cluster or addressed to another member, so members of different clusters never mix.
 *
 * The transport holds no Raft logic: it drops what it cannot deliver and reports the peer
 * unreachable, and Raft probes and retransmits.
 */
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { assert } from '../util/assert.js';
import { ERRORS, KvdError, errorMessage, type ErrorCode } from '../util/errors.js';
import type { Message, NodeId, SnapshotMessage } from '../raft/types.js';
import {
  decodeCallFrame, decodeCallRequest, decodeCallResponse, decodeFrame, decodeHandshake, decodeMembersAnswer, encodeCallAnswerFrame, encodeCallRequest, encodeCallResponse, encodeHandshakeAck, encodeMembersAnswer,
  type CallRequest, type CallResponse, type Handshake, type MembersAnswer,
} from './codec.js';
import { CallStream, CallStreamFailure } from './call-stream.js';
import { formatMemberId, type DropReason, type TransportEvent } from './events.js';
import { HANDSHAKE_TIMEOUT_MS, OutboundPeer, type PeerContext, type PeerStatus } from './peer.js';
import { installUnaryFastPath } from '../util/grpc-fast-path.js';
import { H2GrpcServer, registeredRoutes } from '../util/h2/grpc-serve.js';
import {
  addressTarget, createPeerChannel, createPeerClient, FRAME_SLACK_BYTES, KEEPALIVE_TIME_MS, KEEPALIVE_TIMEOUT_MS, peerServiceDefinition, parsePeerUrl, PEER_CALL_PATH, PEER_CALLS_PATH,
  PEER_MEMBERS_PATH, PEER_STREAM_PATH, serverOptions, toBuffer, type PeerAddress, type PeerChannel, type PeerCredentials, type PeerHttp2, type PeerSecureAccept, type PeerTlsConnect,
} from './service.js';
import { serveSnapshotCall, startSnapshotSend, type SnapshotSend } from './snapshot.js';

/** Default bound of each peer's send queue (messages). */
export const DEFAULT_MAX_QUEUED_MESSAGES_PER_PEER = 4096;
/** Default bound of one frame (bytes); also gRPC's message size limit on peer calls. */
export const DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024;
/** Inbound `Stream` calls served at once; more are refused with RESOURCE_EXHAUSTED. */
export const MAX_INBOUND_STREAMS = 1024;
/** Inbound snapshots received at once; more are refused with RESOURCE_EXHAUSTED. */
export const MAX_INBOUND_SNAPSHOTS = 4;
/**
 * Routes learnt from inbound handshakes of members this transport was not told about (at most
 * this many at once). A member that missed a membership change (it was down, or partitioned)
 * learns of a newer member only when it applies the change; until then, that member may lead
 * and must get answers, or the lagging member never catches up.
 */
export const MAX_PROVISIONAL_PEERS = 16;
/** Text in the refusal of a removed member's handshake (the removed member recognises it and stops). */
export const MEMBER_REMOVED_REASON = 'member removed';

/**
 * Asks the member at `peerUrl` for its cluster's membership (a joining member, before it knows
 * its own id). Rejects on any failure (unreachable, refused, malformed answer).
 */
export async function fetchMembers(peerUrl: string, options: { deadlineMs: number; credentials?: PeerCredentials }): Promise<MembersAnswer> {
  const client = createPeerClient(parsePeerUrl(peerUrl), 16 * 1024 * 1024, options.credentials);
  try {
    const bytes = await new Promise<Buffer>((resolve, reject) => {
      client.makeUnaryRequest<Uint8Array, Buffer>(PEER_MEMBERS_PATH, toBuffer, (b: Buffer) => b, new Uint8Array(0), { deadline: new Date(options.deadlineMs) }, (error, response) => {
        if (error !== null || response === undefined) reject(error ?? new Error('no answer'));
        else resolve(response);
      });
    });
    const decoded = decodeMembersAnswer(bytes);
    if (!decoded.ok) throw new Error(`malformed membership answer: ${decoded.reason}`);
    return decoded.value;
  } finally {
    client.close();
  }
}

/** Member calls served at once; more are refused with RESOURCE_EXHAUSTED ('too-many-requests'). */
export const MAX_INBOUND_CALLS = 10_000;
/** Member calls waiting for an answer from one peer; more are refused at once ('too-many-requests'). */
export const MAX_OUTBOUND_CALLS_PER_PEER = 10_000;
/** Minimum time between two 'messages-dropped' events for the same peer and reason. */
export const DROP_REPORT_INTERVAL_MS = 1_000;

/** Options of {@link Transport.start}. */
export interface TransportOptions {
  /** This cluster's id; handshakes carrying another id are refused. */
  clusterId: bigint;
  /** This member's id (never 0). */
  memberId: NodeId;
  /** This member's advertised peer URLs, told to peers in stream handshakes (default: none). */
  advertisePeerUrls?: readonly string[];
  /** Where to listen, as `http://host:port`; port 0 picks a free port (see `boundUrls`). */
  listenUrls: string[];
  /**
   * Called once per received message, in the order the peer sent them, synchronously from the
   * network callback. Never called with 'snapshot' messages (those arrive via onSnapshot). Must
   * not throw: a throw is a bug in the receiver; it is rethrown outside gRPC's callbacks (an
   * uncaught exception: fail-stop) and the stream is closed.
   */
  onMessage: (message: Message) => void;
  /**
   * Called when a peer streams a snapshot: `data` yields the backend data chunks (single use).
   * Resolve when the snapshot is installed (the sender then reports 'finished' to its Raft);
   * reject on failure (the sender reports 'failed'). Reading `data` may throw if the stream
   * breaks or is truncated.
   */
  onSnapshot: (message: SnapshotMessage, data: AsyncIterable<Uint8Array>) => Promise<void>;
  /**
   * Called (asynchronously, never from inside `send`, at most once per peer per turn of the
   * event loop) when messages to `id` were or may have been lost: queue full, peer
   * disconnected, unknown peer. The server calls rawNode.reportUnreachable(id).
   */
  onUnreachable?: (id: NodeId) => void;
  /**
   * Serves a member call (see {@link Transport.call}) from `from`: resolves with the response
   * payload, or rejects with a KvdError whose code and message travel back to the caller (any
   * other error travels as 'internal'). Without it, calls are refused as 'unimplemented'.
   */
  onCall?: (from: NodeId, kind: string, payload: Uint8Array, options: { deadlineMs: number }) => Promise<Uint8Array>;
  /** The cluster's membership, served to joining members (`Members`); refused when absent. */
  onMembersRequest?: () => MembersAnswer;
  /**
   * Whether a peer id may talk to this member; a removed member's streams and calls are refused
   * with a reason naming the removal (default: every id may).
   */
  isRemoved?: (id: NodeId) => boolean;
  /** Structured log events. */
  onEvent?: (event: TransportEvent) => void;
  /** Bytes of Raft message frames written to (`sent`) or read from (`received`) a peer; for metrics. Must not throw. */
  onTraffic?: (direction: 'sent' | 'received', peer: NodeId, bytes: number) => void;
  /** Bound of each peer's send queue; further messages are dropped and reported. Default 4096. */
  maxQueuedMessagesPerPeer?: number;
  /** Bound of one frame in bytes (larger single messages are dropped). Default 16 MiB. */
  maxFrameBytes?: number;
  /**
   * TLS for https peer URLs (etcd's --peer-* flags): `accept` secures connections accepted on
   * https listen URLs (refusing peers without a valid certificate), `credentials` (grpc-js) and
   * `connectOptions` (kvd's HTTP/2) secure outbound connections to https peers. Required when
   * any listen URL is https.
   */
  tls?: { readonly accept: PeerSecureAccept; readonly credentials: PeerCredentials; readonly connectOptions: PeerTlsConnect };
  /** Which HTTP/2 serves the peer port and carries the `Stream` and `Calls` streams (default 'kvd'). */
  http2?: PeerHttp2;
}

type InboundCall = grpc.ServerDuplexStream<Buffer, Buffer>;

/** The end of an inbound stream: `close` ends it once with a status; `closed` once it ended either way. */
class InboundStreamEnd {
  closed = false;
  readonly #call: InboundCall;

  constructor(call: InboundCall) {
    this.#call = call;
  }

  close(code: grpc.status, details: string): void {
    if (this.closed) return;
    this.closed = true;
    this.#call.emit('error', { code, details, message: details });
  }
}

/** What member calls to one peer go through. */
interface Caller {
  /** The peer address the calls go to (a peer whose address changed gets a new caller). */
  readonly address: PeerAddress;
  /** The `Calls` stream's channel. */
  readonly channel: PeerChannel;
  /** grpc-js' client for unary `Call`s, made when the peer turns out not to serve `Calls`. */
  unary: grpc.Client | undefined;
  inflight: number;
  stream: CallStream | undefined;
  /** The peer does not serve `Calls` (an older member): every call is a unary `Call`. */
  unaryOnly: boolean;
}

type HandshakeCheck = { ok: true; handshake: Handshake } | { ok: false; code: grpc.status; reason: string };

/** The peer transport of one member. */
export class Transport {
  readonly #clusterId: bigint;
  readonly #memberId: NodeId;
  readonly #onMessage: (message: Message) => void;
  readonly #onSnapshot: (message: SnapshotMessage, data: AsyncIterable<Uint8Array>) => Promise<void>;
  readonly #onUnreachable: ((id: NodeId) => void) | undefined;
  readonly #onEvent: ((event: TransportEvent) => void) | undefined;
  readonly #onTraffic: TransportOptions['onTraffic'];
  readonly #onCall: TransportOptions['onCall'];
  readonly #onMembersRequest: TransportOptions['onMembersRequest'];
  readonly #isRemoved: (id: NodeId) => boolean;
  readonly #maxQueuedMessages: number;
  readonly #maxFrameBytes: number;
  readonly #tls: TransportOptions['tls'];
  readonly #server: grpc.Server;
  /** kvd's HTTP/2 on the peer port (undefined: grpc-js serves it). */
  readonly #h2Server: H2GrpcServer | undefined;
  readonly #listeners: net.Server[] = [];
  readonly #sockets = new Set<net.Socket>();
  #boundUrls: string[] = [];
  readonly #peers = new Map<NodeId, OutboundPeer>();
  /** Peers in #peers added from an inbound handshake, not by addPeer. Invariant: size <= MAX_PROVISIONAL_PEERS. */
  readonly #provisional = new Set<NodeId>();
  readonly #peerContext: PeerContext;
  readonly #inboundCalls = new Set<InboundCall>();
  #inboundSnapshots = 0;
  /** Member calls being served. Invariant: <= MAX_INBOUND_CALLS. */
  #inboundMemberCalls = 0;
  /**
   * Per peer: the client member calls go through (its own connection), its `Calls` stream (opened
   * on first use; `unaryOnly` once the peer turned out not to serve it) and the calls waiting.
   */
  readonly #callers = new Map<NodeId, Caller>();
  readonly #snapshotSends = new Set<SnapshotSend>();
  /** Peers to report unreachable at the next flush; bounded by the number of peers. */
  readonly #pendingUnreachable = new Set<NodeId>();
  #unreachableFlush: NodeJS.Immediate | undefined;
  /** Per "peer/reason": drops not yet reported and when the last report went out. */
  readonly #drops = new Map<string, { peer: string; reason: DropReason; count: number; lastReportMs: number }>();
  #state: 'running' | 'stopped' = 'running';
  /** Set when stop() completes: no callback is called after that. */
  #silenced = false;

  private constructor(options: TransportOptions) {
    assert(options.memberId !== 0n, 'memberId must not be 0');
    assert(options.listenUrls.length > 0, 'at least one listen URL');
    this.#clusterId = options.clusterId;
    this.#memberId = options.memberId;
    this.#onMessage = options.onMessage;
    this.#onSnapshot = options.onSnapshot;
    this.#onUnreachable = options.onUnreachable;
    this.#onEvent = options.onEvent;
    this.#onTraffic = options.onTraffic;
    this.#onCall = options.onCall;
    this.#onMembersRequest = options.onMembersRequest;
    this.#isRemoved = options.isRemoved ?? (() => false);
    this.#maxQueuedMessages = options.maxQueuedMessagesPerPeer ?? DEFAULT_MAX_QUEUED_MESSAGES_PER_PEER;
    this.#maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.#tls = options.tls;
    assert(Number.isSafeInteger(this.#maxQueuedMessages) && this.#maxQueuedMessages > 0, 'maxQueuedMessagesPerPeer > 0');
    assert(Number.isSafeInteger(this.#maxFrameBytes) && this.#maxFrameBytes >= 1024, 'maxFrameBytes >= 1 KiB');
    this.#peerContext = {
      clusterId: this.#clusterId,
      memberId: this.#memberId,
      advertiseUrls: [...(options.advertisePeerUrls ?? [])],
      maxQueuedMessages: this.#maxQueuedMessages,
      maxFrameBytes: this.#maxFrameBytes,
      channels: { http2: options.http2 ?? 'kvd', maxFrameBytes: this.#maxFrameBytes, credentials: this.#tls?.credentials, tlsConnect: this.#tls?.connectOptions },
      emit: (event) => this.#emit(event),
      unreachable: (id) => this.#reportUnreachable(id),
      dropped: (id, count, reason) => this.#reportDropped(id, count, reason),
      sent: (id, bytes) => this.#onTraffic?.('sent', id, bytes),
    };
    this.#server = new grpc.Server(serverOptions(this.#maxFrameBytes));
    // Inbound message streams and member calls skip grpc-js' call machinery (as the client port's
    // unary calls do): a follower parses every frame of its leader's appends there.
    installUnaryFastPath(this.#server, { maxReceiveBytes: this.#maxFrameBytes + FRAME_SLACK_BYTES, leanStreams: new Set([PEER_STREAM_PATH, PEER_CALLS_PATH]) });
    this.#server.addService(peerServiceDefinition, {
      Stream: (call: InboundCall) => this.#serveStream(call),
      Snapshot: (call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => this.#serveSnapshot(call, callback),
      Call: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => this.#serveMemberCall(call, callback),
      Calls: (call: InboundCall) => this.#serveCallStream(call),
      Members: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
        const answer = this.#onMembersRequest?.();
        if (answer === undefined || this.#state === 'stopped') callback({ code: grpc.status.UNAVAILABLE, details: 'kvd transport: membership not available' });
        else callback(null, toBuffer(encodeMembersAnswer(answer)));
      },
    });
    if ((options.http2 ?? 'kvd') === 'kvd') {
      const routes = registeredRoutes(this.#server);
      assert(routes !== undefined, 'grpc-js keeps its registered methods in a map (kvd\'s HTTP/2 serves them)');
      this.#h2Server = new H2GrpcServer(routes, {
        maxReceiveBytes: this.#maxFrameBytes + FRAME_SLACK_BYTES,
        keepalive: { intervalMs: KEEPALIVE_TIME_MS, timeoutMs: KEEPALIVE_TIMEOUT_MS },
      });
    }
  }

  /**
   * Creates a transport and binds every listen URL. Rejects (with everything released) when a
   * URL is invalid (KvdError 'member-bad-urls') or cannot be bound (e.g. EADDRINUSE).
   */
  static async start(options: TransportOptions): Promise<Transport> {
    const transport = new Transport(options);
    try {
      await transport.#listen(options.listenUrls);
    } catch (error: unknown) {
      await transport.stop();
      throw error;
    }
    return transport;
  }

  /** The URLs actually bound, in `listenUrls` order, with port 0 resolved. */
  get boundUrls(): string[] {
    return [...this.#boundUrls];
  }

  async #listen(urls: readonly string[]): Promise<void> {
    // Our own TCP listeners hand accepted sockets to gRPC: that lets us disable Nagle on the
    // server side too (grpc-js only does it for client sockets) and keep track of raw sockets.
    const injector = this.#server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    const h2 = this.#h2Server;
    const serve = (socket: net.Socket): void => {
      if (h2 === undefined) injector.injectConnection(socket);
      else h2.serve(socket);
    };
    const addresses = urls.map(parsePeerUrl);
    for (const address of addresses) {
      const accept = address.secure ? this.#tls?.accept : undefined;
      if (address.secure && accept === undefined) throw new KvdError('member-bad-urls', { detail: `etcdserver: peer URL https://${address.host}:${address.port} needs TLS settings (--peer-cert-file and --peer-key-file, or --peer-auto-tls)` });
      const listener = net.createServer({ noDelay: true, keepAlive: true }, (socket) => {
        this.#sockets.add(socket);
        socket.once('close', () => this.#sockets.delete(socket));
        if (accept === undefined) {
          serve(socket);
          return;
        }
        // TLS first: a peer without a valid certificate never reaches gRPC (accept logs why).
        socket.on('error', () => undefined);
        accept(socket).then(
          (secure) => {
            if (secure === undefined || this.#state === 'stopped') {
              secure?.destroy();
              return;
            }
            this.#sockets.add(secure);
            secure.once('close', () => this.#sockets.delete(secure));
            serve(secure);
          },
          () => socket.destroy(),
        );
      });
      this.#listeners.push(listener);
      const host = address.host.startsWith('[') ? address.host.slice(1, -1) : address.host;
      await new Promise<void>((resolve, reject) => {
        listener.once('error', reject);
        listener.listen({ host, port: address.port }, () => {
          listener.off('error', reject);
          resolve();
        });
      });
      listener.on('error', (error: unknown) => this.#emit({ kind: 'bad-frame', direction: 'inbound', remote: 'listener', reason: errorMessage(error) }));
      const bound = listener.address();
      assert(bound !== null && typeof bound === 'object', 'a TCP listener has an address');
      this.#boundUrls.push(`${address.secure ? 'https' : 'http'}://${address.host}:${bound.port}`);
    }
    this.#emit({ kind: 'listening', urls: this.boundUrls });
  }

  /**
   * Starts streaming to a member at `urls` (tried in turn on failures). Adding a known peer
   * updates its URLs. Throws KvdError('member-bad-urls') for URLs other than http://host:port.
   */
  addPeer(id: NodeId, urls: string[]): void {
    assert(id !== this.#memberId && id !== 0n, 'a peer is another member');
    if (this.#state === 'stopped') return;
    const existing = this.#peers.get(id);
    if (existing !== undefined) {
      this.#provisional.delete(id); // known now
      existing.updateUrls(urls);
      return;
    }
    this.#peers.set(id, new OutboundPeer(this.#peerContext, id, urls));
  }

  /** Drops the provisional routes of members that turned out to be removed. */
  pruneProvisional(): void {
    for (const id of [...this.#provisional]) if (this.#isRemoved(id)) this.removePeer(id);
  }

  /** Ids of the peers reached through a provisional route (learnt from their handshake). */
  provisionalPeerIds(): NodeId[] {
    return [...this.#provisional];
  }

  /** Changes a peer's URLs (reconnecting at once if they differ); adds the peer if unknown. */
  updatePeer(id: NodeId, urls: string[]): void {
    this.addPeer(id, urls);
  }

  /** Stops streaming to a member; its queued messages are dropped. Unknown ids are ignored. */
  removePeer(id: NodeId): void {
    this.#closeCaller(id);
    this.#provisional.delete(id);
    const peer = this.#peers.get(id);
    if (peer === undefined) return;
    this.#peers.delete(id);
    peer.close('removed');
  }

  /** Ids of the peers this transport was told to stream to (provisional routes excluded). */
  peerIds(): NodeId[] {
    return [...this.#peers.keys()].filter((id) => !this.#provisional.has(id));
  }

  /**
   * Calls `kind` on member `to` with `payload` (the server defines both), over a connection of its
   * own to the peer's current address, with the cluster and member ids checked by the callee as in
   * a handshake. Resolves with the response payload; rejects with a KvdError: the callee's error
   * (same code and message), 'timeout' at the deadline, 'too-many-requests' beyond
   * {@link MAX_OUTBOUND_CALLS_PER_PEER} waiting calls, 'stopped' when the peer is unknown or
   * unreachable (the call may or may not have run there: only idempotent calls should be retried).
   */
  call(to: NodeId, kind: string, payload: Uint8Array, options: { deadlineMs: number }): Promise<Uint8Array> {
    const peer = this.#peers.get(to);
    if (this.#state === 'stopped' || peer === undefined) return Promise.reject(new KvdError('stopped', { detail: `etcdserver: server stopped (member ${formatMemberId(to)} is not a peer)` }));
    const address = peer.currentAddress();
    let caller = this.#callers.get(to);
    if (caller !== undefined && addressTarget(caller.address) !== addressTarget(address)) {
      this.#closeCaller(to);
      caller = undefined;
    }
    if (caller === undefined) {
      caller = { address, channel: createPeerChannel(address, this.#peerContext.channels), unary: undefined, inflight: 0, stream: undefined, unaryOnly: false };
      this.#callers.set(to, caller);
    }
    if (caller.inflight >= MAX_OUTBOUND_CALLS_PER_PEER) return Promise.reject(new KvdError('too-many-requests'));
    const request: CallRequest = { clusterId: this.#clusterId, from: this.#memberId, to, kind, payload };
    const active = caller;
    active.inflight += 1;
    const answered = active.unaryOnly ? this.#callUnary(active, request, options.deadlineMs) : this.#callOnStream(active, request, options.deadlineMs);
    return answered.finally(() => {
      active.inflight -= 1;
    });
  }

  /** A member call on the caller's `Calls` stream (opened if needed); unary when the peer does not serve it. */
  async #callOnStream(caller: Caller, request: CallRequest, deadlineMs: number): Promise<Uint8Array> {
    if (caller.stream === undefined || caller.stream.ended) caller.stream = new CallStream(caller.channel);
    let response: CallResponse;
    try {
      response = await caller.stream.send(request, deadlineMs);
    } catch (error: unknown) {
      if (!(error instanceof CallStreamFailure)) throw error; // KvdError('timeout')
      // An older member: the call never ran there, so it is made again as a unary call.
      if (error.code === grpc.status.UNIMPLEMENTED) {
        caller.unaryOnly = true;
        return this.#callUnary(caller, request, deadlineMs);
      }
      if (error.code === grpc.status.RESOURCE_EXHAUSTED) throw new KvdError('too-many-requests', { cause: error });
      throw new KvdError('stopped', { detail: `etcdserver: server stopped (member call to ${formatMemberId(request.to)} failed: ${error.message})`, cause: error });
    }
    return payloadOf(response);
  }

  /** A member call as a unary gRPC `Call`. */
  #callUnary(caller: Caller, request: CallRequest, deadlineMs: number): Promise<Uint8Array> {
    return new Promise<Uint8Array>((resolve, reject) => {
      caller.unary ??= createPeerClient(caller.address, this.#maxFrameBytes, this.#tls?.credentials);
      caller.unary.makeUnaryRequest<Uint8Array, Buffer>(
        PEER_CALL_PATH,
        toBuffer,
        (bytes: Buffer) => bytes,
        encodeCallRequest(request),
        { deadline: new Date(Math.max(deadlineMs, Date.now() + 1)) },
        (error, response) => {
          if (error !== null || response === undefined) {
            const code = error?.code;
            if (code === grpc.status.DEADLINE_EXCEEDED) reject(new KvdError('timeout', { cause: error }));
            else if (code === grpc.status.RESOURCE_EXHAUSTED) reject(new KvdError('too-many-requests', { cause: error }));
            else reject(new KvdError('stopped', { detail: `etcdserver: server stopped (member call to ${formatMemberId(request.to)} failed: ${errorMessage(error)})`, cause: error }));
            return;
          }
          const decoded = decodeCallResponse(response);
          if (!decoded.ok) {
            reject(new KvdError('internal', { detail: `etcdserver: bad member call response: ${decoded.reason}` }));
            return;
          }
          try {
            resolve(payloadOf(decoded.value));
          } catch (answer: unknown) {
            reject(answer);
          }
        },
      );
    });
  }

  #closeCaller(id: NodeId): void {
    const caller = this.#callers.get(id);
    if (caller === undefined) return;
    this.#callers.delete(id);
    caller.stream?.close('the peer connection was closed');
    caller.channel.close();
    caller.unary?.close();
  }

  /**
   * Sends messages without blocking. Messages for one peer in one call travel in one frame
   * (split only beyond maxFrameBytes), in order. Messages of type 'snapshot' are skipped: send
   * them with {@link sendSnapshot}. Every message's `from` must be this member (asserted). Messages that cannot be queued (peer unknown, disconnected,
   * queue full) are dropped, reported as events, and the peer reported unreachable.
   */
  send(messages: readonly Message[]): void {
    if (this.#state === 'stopped' || messages.length === 0) return;
    let byPeer: Map<NodeId, Message[]> | undefined;
    let only: { to: NodeId; messages: Message[] } | undefined;
    for (const message of messages) {
      if (message.type === 'snapshot') continue;
      // The common case (one destination) avoids building a map.
      if (byPeer === undefined && (only === undefined || only.to === message.to)) {
        if (only === undefined) only = { to: message.to, messages: [] };
        only.messages.push(message);
        continue;
      }
      if (byPeer === undefined) {
        byPeer = new Map();
        if (only !== undefined) byPeer.set(only.to, only.messages);
      }
      const list = byPeer.get(message.to);
      if (list === undefined) byPeer.set(message.to, [message]);
      else list.push(message);
    }
    if (byPeer !== undefined) {
      for (const [to, list] of byPeer) this.#sendTo(to, list);
    } else if (only !== undefined) {
      this.#sendTo(only.to, only.messages);
    }
  }

  #sendTo(to: NodeId, messages: Message[]): void {
    // The receiver refuses (and closes the stream on) a frame with a foreign sender.
    for (const message of messages) assert(message.from === this.#memberId, `message ${message.type} sent with from != this member`);
    const peer = this.#peers.get(to);
    if (peer === undefined) {
      this.#reportDropped(to, messages.length, 'unknown-peer');
      this.#reportUnreachable(to);
      return;
    }
    peer.send(messages);
  }

  /**
   * Streams a snapshot to `message.to`: the message as header, then the chunks of `data()` (a
   * fresh iterable per call), on a connection of its own. Resolves 'finished' once the peer's
   * onSnapshot resolved, else 'failed' (never rejects); the server then calls
   * rawNode.reportSnapshot(message.to, result).
   */
  async sendSnapshot(message: SnapshotMessage, data: () => AsyncIterable<Uint8Array>): Promise<'finished' | 'failed'> {
    const peer = this.#peers.get(message.to);
    if (this.#state === 'stopped' || peer === undefined) {
      const reason = this.#state === 'stopped' ? 'transport stopped' : 'unknown peer';
      this.#emit({ kind: 'snapshot-send-failed', peer: formatMemberId(message.to), reason });
      return 'failed';
    }
    const send = startSnapshotSend(
      { clusterId: this.#clusterId, memberId: this.#memberId, maxFrameBytes: this.#maxFrameBytes, credentials: this.#tls?.credentials, emit: (event) => this.#emit(event) },
      peer.currentAddress(),
      message,
      data,
    );
    this.#snapshotSends.add(send);
    try {
      return await send.result;
    } finally {
      this.#snapshotSends.delete(send);
    }
  }

  /** Whether the outbound stream to `id` is up, and the last error seen on it. */
  peerStatus(id: NodeId): PeerStatus {
    const peer = this.#peers.get(id);
    return peer === undefined ? { connected: false, lastError: 'unknown peer' } : peer.status();
  }

  /**
   * Closes every stream and listener. Pending snapshot sends resolve 'failed'; inbound snapshot
   * data iterables throw. Idempotent. Callbacks are not called after it resolves.
   */
  async stop(): Promise<void> {
    if (this.#state === 'stopped') return;
    this.#state = 'stopped';
    for (const peer of this.#peers.values()) peer.close('stopped');
    this.#peers.clear();
    this.#provisional.clear();
    for (const id of [...this.#callers.keys()]) this.#closeCaller(id);
    const sends = [...this.#snapshotSends];
    for (const send of sends) send.cancel();
    this.#server.forceShutdown();
    this.#h2Server?.close(true);
    for (const socket of this.#sockets) socket.destroy();
    await Promise.all(
      this.#listeners.map((listener) => new Promise<void>((resolve) => (listener.listening ? listener.close(() => resolve()) : resolve()))),
    );
    await Promise.all(sends.map((send) => send.result));
    if (this.#unreachableFlush !== undefined) clearImmediate(this.#unreachableFlush);
    this.#pendingUnreachable.clear();
    for (const drop of this.#drops.values()) {
      if (drop.count > 0) this.#emit({ kind: 'messages-dropped', peer: drop.peer, count: drop.count, reason: drop.reason });
    }
    this.#drops.clear();
    this.#silenced = true;
  }

  // -------------------------------------------------------------------------------------------
  // Reporting

  #emit(event: TransportEvent): void {
    if (this.#onEvent === undefined || this.#silenced) return;
    try {
      this.#onEvent(event);
    } catch (error: unknown) {
      // A failing log sink must not break the transport; there is nowhere else to report it.
      process.emitWarning(`kvd transport: onEvent threw: ${errorMessage(error)}`);
    }
  }

  #reportUnreachable(id: NodeId): void {
    if (this.#onUnreachable === undefined || this.#state === 'stopped') return;
    this.#pendingUnreachable.add(id);
    // Deferred so that onUnreachable never re-enters the caller of send().
    this.#unreachableFlush ??= setImmediate(() => {
      this.#unreachableFlush = undefined;
      const ids = [...this.#pendingUnreachable];
      this.#pendingUnreachable.clear();
      for (const peer of ids) {
        if (this.#state === 'stopped') return;
        this.#onUnreachable?.(peer);
      }
    });
  }

  #reportDropped(id: NodeId, count: number, reason: DropReason): void {
    if (count === 0) return;
    const peer = formatMemberId(id);
    const key = `${peer}/${reason}`;
    const now = performance.now();
    let drop = this.#drops.get(key);
    if (drop === undefined) {
      // Bounded by peers x reasons, except for 'unknown-peer' ids: cap those entries.
      if (this.#drops.size >= 1024) this.#drops.clear();
      drop = { peer, reason, count: 0, lastReportMs: -Infinity };
      this.#drops.set(key, drop);
    }
    drop.count += count;
    if (now - drop.lastReportMs >= DROP_REPORT_INTERVAL_MS) {
      this.#emit({ kind: 'messages-dropped', peer, count: drop.count, reason });
      drop.count = 0;
      drop.lastReportMs = now;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Inbound

  #checkHandshake(bytes: Uint8Array, remote: string): HandshakeCheck {
    const decoded = decodeHandshake(bytes);
    if (!decoded.ok) {
      this.#emit({ kind: 'bad-frame', direction: 'inbound', remote, reason: `handshake: ${decoded.reason}` });
      return { ok: false, code: grpc.status.INVALID_ARGUMENT, reason: `kvd transport: malformed handshake: ${decoded.reason}` };
    }
    return this.#checkIdentity(decoded.value, remote);
  }

  /** The identity checks of a handshake (also applied to every member call). */
  #checkIdentity(handshake: Handshake, remote: string): HandshakeCheck {
    let reason: string | undefined;
    if (handshake.clusterId !== this.#clusterId) {
      reason = `cluster ID mismatch: this member is in cluster ${formatMemberId(this.#clusterId)}, the peer in ${formatMemberId(handshake.clusterId)}`;
    } else if (handshake.to !== this.#memberId) {
      reason = `member ID mismatch: stream addressed to member ${formatMemberId(handshake.to)}, this is member ${formatMemberId(this.#memberId)}`;
    } else if (handshake.from === this.#memberId) {
      reason = `stream from this member's own id ${formatMemberId(this.#memberId)}`;
    } else if (this.#isRemoved(handshake.from)) {
      reason = `${MEMBER_REMOVED_REASON}: member ${formatMemberId(handshake.from)} was removed from the cluster`;
    }
    if (reason !== undefined) {
      this.#emit({ kind: 'handshake-refused', direction: 'inbound', peer: formatMemberId(handshake.from), remote, reason });
      return { ok: false, code: grpc.status.FAILED_PRECONDITION, reason: `kvd transport: ${reason}` };
    }
    return { ok: true, handshake };
  }

  /**
   * An inbound stream from a member with no route: answer it at the URLs it advertised, so a
   * member that has not applied that member's addition yet can still take part (its leader's
   * appends need answers).
   */
  #learnRoute(handshake: Handshake): void {
    const from = handshake.from;
    const urls = handshake.urls ?? [];
    if (this.#state === 'stopped' || urls.length === 0 || this.#peers.has(from)) return;
    const peer = formatMemberId(from);
    if (this.#provisional.size >= MAX_PROVISIONAL_PEERS) {
      this.#emit({ kind: 'provisional-peer', peer, urls, refused: `${MAX_PROVISIONAL_PEERS} provisional peers already` });
      return;
    }
    let outbound: OutboundPeer;
    try {
      outbound = new OutboundPeer(this.#peerContext, from, urls);
    } catch (error: unknown) {
      this.#emit({ kind: 'provisional-peer', peer, urls, refused: errorMessage(error) });
      return;
    }
    this.#peers.set(from, outbound);
    this.#provisional.add(from);
    this.#emit({ kind: 'provisional-peer', peer, urls });
  }

  /**
   * Admits an inbound stream, counted in #inboundCalls (at most MAX_INBOUND_STREAMS), and returns
   * its end; refuses it with RESOURCE_EXHAUSTED (undefined) when stopped or full.
   */
  #admitStream(call: InboundCall): InboundStreamEnd | undefined {
    const end = new InboundStreamEnd(call);
    if (this.#state === 'stopped' || this.#inboundCalls.size >= MAX_INBOUND_STREAMS) {
      end.close(grpc.status.RESOURCE_EXHAUSTED, 'kvd transport: too many peer streams');
      return undefined;
    }
    this.#inboundCalls.add(call);
    return end;
  }

  #serveStream(call: InboundCall): void {
    const remote = call.getPeer();
    let handshake: Handshake | undefined;
    const end = this.#admitStream(call);
    if (end === undefined) return;
    const close = (code: grpc.status, details: string): void => end.close(code, details);
    // A caller that never says hello must not hold a stream slot forever.
    const handshakeTimer = setTimeout(() => {
      this.#emit({ kind: 'handshake-refused', direction: 'inbound', remote, reason: 'no handshake in time' });
      close(grpc.status.DEADLINE_EXCEEDED, `kvd transport: no handshake within ${HANDSHAKE_TIMEOUT_MS} ms`);
    }, HANDSHAKE_TIMEOUT_MS);
    const finished = (reason: string): void => {
      clearTimeout(handshakeTimer);
      if (!this.#inboundCalls.delete(call)) return;
      end.closed = true;
      if (handshake !== undefined) this.#emit({ kind: 'inbound-stream-closed', peer: formatMemberId(handshake.from), remote, reason });
    };
    call.on('data', (bytes: Buffer) => {
      if (end.closed) return;
      if (handshake === undefined) {
        clearTimeout(handshakeTimer);
        const checked = this.#checkHandshake(bytes, remote);
        if (!checked.ok) {
          close(checked.code, checked.reason);
          return;
        }
        handshake = checked.handshake;
        call.write(toBuffer(encodeHandshakeAck(this.#memberId)));
        this.#emit({ kind: 'inbound-stream-opened', peer: formatMemberId(handshake.from), remote, method: 'stream' });
        this.#learnRoute(handshake);
        return;
      }
      this.#deliverFrame(handshake, bytes, remote, close);
    });
    call.on('end', () => {
      finished('peer closed the stream');
      if (!call.writableEnded) call.end();
    });
    call.on('cancelled', () => finished('cancelled'));
    call.on('error', (error: unknown) => finished(errorMessage(error)));
    call.on('close', () => finished('closed'));
  }

  #deliverFrame(handshake: Handshake, bytes: Uint8Array, remote: string, close: (code: grpc.status, details: string) => void): void {
    // The sender may have been removed since its handshake was accepted. Refuse its frames as its
    // handshake would be refused now: a removed member that missed the commit of its own removal
    // learns it only this way (the others no longer send it anything), and stops; otherwise it
    // keeps campaigning on its old streams, unanswered, for ever.
    const identity = this.#checkIdentity(handshake, remote);
    if (!identity.ok) {
      close(identity.code, identity.reason);
      return;
    }
    const peer = formatMemberId(handshake.from);
    this.#onTraffic?.('received', handshake.from, bytes.byteLength);
    const decoded = decodeFrame(bytes);
    let reason = decoded.ok ? undefined : decoded.reason;
    if (decoded.ok) {
      for (const message of decoded.value) {
        if (message.from !== handshake.from || message.to !== this.#memberId) {
          reason = `message ${message.type} from ${formatMemberId(message.from)} to ${formatMemberId(message.to)} on a stream from ${peer}`;
        } else if (message.type === 'snapshot') {
          reason = 'snapshot message on a message stream';
        }
        if (reason !== undefined) break;
      }
    }
    if (reason !== undefined || !decoded.ok) {
      this.#emit({ kind: 'bad-frame', direction: 'inbound', peer, remote, reason: reason ?? 'invalid frame' });
      close(grpc.status.INVALID_ARGUMENT, `kvd transport: bad frame: ${reason}`);
      return;
    }
    for (const message of decoded.value) {
      if (this.#state === 'stopped') return;
      try {
        this.#onMessage(message);
      } catch (error: unknown) {
        // A throw here is a broken invariant in the receiver (onMessage's contract). grpc-js would
        // swallow it into this call's status, so it is rethrown outside the call: it reaches the
        // process as an uncaught exception and the member stops (fail-stop) instead of going on
        // with half-changed state.
        setImmediate(() => {
          throw error;
        });
        close(grpc.status.INTERNAL, 'kvd transport: receiver failed');
        return;
      }
    }
  }

  #serveMemberCall(call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>): void {
    const remote = call.getPeer();
    if (this.#state === 'stopped' || this.#inboundMemberCalls >= MAX_INBOUND_CALLS) {
      callback({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'kvd transport: too many member calls' });
      return;
    }
    const decoded = decodeCallRequest(call.request);
    if (!decoded.ok) {
      this.#emit({ kind: 'bad-frame', direction: 'inbound', remote, reason: `call: ${decoded.reason}` });
      callback({ code: grpc.status.INVALID_ARGUMENT, details: `kvd transport: malformed call: ${decoded.reason}` });
      return;
    }
    const request = decoded.value;
    const checked = this.#checkIdentity(request, remote);
    if (!checked.ok) {
      callback({ code: checked.code, details: checked.reason });
      return;
    }
    const raw = call.getDeadline();
    const deadline = raw instanceof Date ? raw.getTime() : Number.isFinite(raw) ? raw : Date.now() + 30_000;
    this.#serveCall(request, deadline, (response) => callback(null, toBuffer(encodeCallResponse(response))));
  }

  /**
   * A `Calls` stream: numbered member calls, each answered on the stream as it is done (in any
   * order). A malformed frame, or a call whose identity is refused, ends the stream with the
   * status a unary `Call` would get; calls beyond MAX_INBOUND_CALLS are answered
   * 'too-many-requests'. While the answers wait for the connection to drain, no more calls are
   * read (so what waits is bounded by the calls in flight).
   */
  #serveCallStream(call: InboundCall): void {
    const remote = call.getPeer();
    const end = this.#admitStream(call);
    if (end === undefined) return;
    const finished = (): void => {
      end.closed = true;
      this.#inboundCalls.delete(call);
    };
    let paused = false;
    call.on('drain', () => {
      if (!paused) return;
      paused = false;
      call.resume();
    });
    call.on('data', (bytes: Buffer) => {
      if (end.closed) return;
      const decoded = decodeCallFrame(bytes);
      if (!decoded.ok) {
        this.#emit({ kind: 'bad-frame', direction: 'inbound', remote, reason: `call: ${decoded.reason}` });
        end.close(grpc.status.INVALID_ARGUMENT, `kvd transport: malformed call: ${decoded.reason}`);
        return;
      }
      const { callId, waitMs, request } = decoded.value;
      const checked = this.#checkIdentity(request, remote);
      if (!checked.ok) {
        end.close(checked.code, checked.reason);
        return;
      }
      const answer = (response: CallResponse): void => {
        if (end.closed) return;
        if (!call.write(toBuffer(encodeCallAnswerFrame(callId, response))) && !paused) {
          paused = true;
          call.pause();
        }
      };
      if (this.#state === 'stopped' || this.#inboundMemberCalls >= MAX_INBOUND_CALLS) {
        answer({ ok: false, code: 'too-many-requests', message: ERRORS['too-many-requests'].message });
        return;
      }
      this.#serveCall(request, Date.now() + waitMs, answer);
    });
    call.on('end', () => {
      finished();
      call.end();
    });
    call.on('cancelled', finished);
    call.on('error', finished);
    call.on('close', finished);
  }

  /** Runs one member call (its identity checked) and answers it, counted in #inboundMemberCalls meanwhile. */
  #serveCall(request: CallRequest, deadlineMs: number, answer: (response: CallResponse) => void): void {
    if (this.#onCall === undefined) {
      answer({ ok: false, code: 'unimplemented', message: `${ERRORS.unimplemented.message}: member call ${request.kind}` });
      return;
    }
    this.#inboundMemberCalls += 1;
    let served: Promise<Uint8Array>;
    try {
      served = this.#onCall(request.from, request.kind, request.payload, { deadlineMs });
    } catch (error: unknown) {
      served = Promise.reject(error);
    }
    served.then(
      (payload) => {
        this.#inboundMemberCalls -= 1;
        answer({ ok: true, payload });
      },
      (error: unknown) => {
        this.#inboundMemberCalls -= 1;
        if (error instanceof KvdError) answer({ ok: false, code: error.code, message: error.message });
        else answer({ ok: false, code: 'internal', message: `${ERRORS.internal.message}: ${errorMessage(error)}` });
      },
    );
  }

  #serveSnapshot(call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>): void {
    if (this.#state === 'stopped' || this.#inboundSnapshots >= MAX_INBOUND_SNAPSHOTS) {
      callback({ code: grpc.status.RESOURCE_EXHAUSTED, details: 'kvd transport: too many snapshots in flight', name: 'Busy', message: 'busy', metadata: new grpc.Metadata() });
      return;
    }
    this.#inboundSnapshots += 1;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.#inboundSnapshots -= 1;
    };
    call.on('close', release);
    call.on('cancelled', release);
    serveSnapshotCall(
      {
        memberId: this.#memberId,
        handshakeTimeoutMs: HANDSHAKE_TIMEOUT_MS,
        checkHandshake: (bytes, remote) => this.#checkHandshake(bytes, remote),
        onSnapshot: async (message, data) => {
          try {
            await this.#onSnapshot(message, data);
          } finally {
            release();
          }
        },
        emit: (event) => this.#emit(event),
      },
      call,
      (error, value) => {
        release();
        callback(error, value);
      },
    );
  }
}

/** The payload of an answer, or the callee's error as a KvdError (same code and text). */
function payloadOf(response: CallResponse): Uint8Array {
  if (response.ok) return response.payload;
  throw new KvdError(response.code in ERRORS ? (response.code as ErrorCode) : 'internal', { detail: response.message });
}

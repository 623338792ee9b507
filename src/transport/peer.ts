/**
 * The sending half of the transport for one peer: one long-lived `Stream` call, a bounded queue
 * of messages waiting for it, and reconnection with exponential backoff and jitter.
 *
 * States: `connecting` (call opened, handshake written, waiting for the ack: messages queue),
 * `connected` (messages are framed and written at once; they queue only while gRPC pushes
 * back), `backoff` (waiting to retry: messages are dropped and the peer reported unreachable),
 * `closed` (removed or stopped: messages are dropped).
 *
 * Order: messages for the peer are written in `send` order on a single call. Messages queued
 * on a call that fails are dropped (Raft tolerates loss and retransmits); nothing is resent on
 * the next call, so a later message never overtakes an earlier one.
 */
import { status as GrpcCode } from '@grpc/grpc-js';
import { assert, unreachable } from '../util/assert.js';
import type { Message, NodeId } from '../raft/types.js';
import { decodeHandshakeAck, encodeFrame, encodeHandshake } from './codec.js';
import { formatMemberId, type DropReason, type TransportEvent } from './events.js';
import { createPeerChannel, parsePeerUrl, PEER_STREAM_PATH, type PeerAddress, type PeerChannel, type PeerChannelOptions, type PeerStreamCall } from './service.js';

/** First reconnect delay; doubles per failed attempt up to {@link RECONNECT_MAX_MS}. */
export const RECONNECT_INITIAL_MS = 50;
/** Upper bound of the reconnect delay. */
export const RECONNECT_MAX_MS = 2_000;
/** A call whose handshake is not acknowledged within this time is abandoned and retried. */
export const HANDSHAKE_TIMEOUT_MS = 3_000;

/**
 * Reconnect delay for the `attempt`-th consecutive failure (0-based): exponential from
 * RECONNECT_INITIAL_MS to RECONNECT_MAX_MS with "equal jitter" (uniform in [d/2, d)), so peers
 * that lost each other at the same moment do not retry in lockstep. `random` is in [0, 1).
 */
export function reconnectDelayMs(attempt: number, random: number): number {
  const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_INITIAL_MS * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random * ceiling) / 2);
}

/** What an outbound peer needs from the transport that owns it. */
export interface PeerContext {
  readonly clusterId: bigint;
  readonly memberId: NodeId;
  /** This member's advertised peer URLs, sent in every stream handshake. */
  readonly advertiseUrls: readonly string[];
  readonly maxQueuedMessages: number;
  readonly maxFrameBytes: number;
  /** How channels to peers are made (HTTP/2 implementation, TLS for https peers). */
  readonly channels: PeerChannelOptions;
  emit(event: TransportEvent): void;
  /** Messages for the peer were lost: tell Raft (deferred and deduplicated by the transport). */
  unreachable(id: NodeId): void;
  dropped(id: NodeId, count: number, reason: DropReason): void;
  /** A frame of `bytes` was handed to the peer's stream (metrics). */
  sent(id: NodeId, bytes: number): void;
}

type PeerState =
  | { readonly kind: 'connecting'; readonly client: PeerChannel; readonly call: PeerStreamCall; readonly url: string; readonly timer: NodeJS.Timeout }
  | { readonly kind: 'connected'; readonly client: PeerChannel; readonly call: PeerStreamCall; readonly url: string; readonly sinceMs: number }
  | { readonly kind: 'backoff'; readonly timer: NodeJS.Timeout }
  | { readonly kind: 'closed' };

/** The status of a peer as `Transport.peerStatus` reports it. */
export interface PeerStatus {
  readonly connected: boolean;
  readonly lastError?: string;
  /** While connected: since when (Date.now() scale), for "connected long enough" health checks. */
  readonly connectedSinceMs?: number;
}

/** One peer's outbound stream. Created by the transport on addPeer; closed on removePeer/stop. */
export class OutboundPeer {
  readonly id: NodeId;
  readonly #context: PeerContext;
  #urls: string[];
  #addresses: PeerAddress[];
  /** Which URL the next attempt uses; advances on each failure so every URL gets tried. */
  #urlCursor = 0;
  /** Consecutive failed attempts; reset by an acknowledged handshake. */
  #attempt = 0;
  #state: PeerState;
  /** Invariant: length <= context.maxQueuedMessages; empty in 'backoff' and 'closed'. */
  #queue: Message[] = [];
  /** True while the connected call's write() has returned false and 'drain' is awaited. */
  #awaitingDrain = false;
  #lastError: string | undefined;

  /** Validates `urls` (throws KvdError('member-bad-urls')) and starts connecting. */
  constructor(context: PeerContext, id: NodeId, urls: readonly string[]) {
    assert(urls.length > 0, 'a peer needs at least one URL');
    this.#context = context;
    this.id = id;
    this.#urls = [...urls];
    this.#addresses = urls.map(parsePeerUrl);
    this.#state = { kind: 'closed' };
    this.#connect();
  }

  /** The URLs this peer is reached at. */
  get urls(): readonly string[] {
    return this.#urls;
  }

  /** The address in use (connected or being tried); snapshots go there too. */
  currentAddress(): PeerAddress {
    return this.#addresses[this.#urlCursor % this.#addresses.length];
  }

  status(): PeerStatus {
    const connected = this.#state.kind === 'connected';
    if (this.#state.kind === 'connected') return { connected: true, connectedSinceMs: this.#state.sinceMs };
    return this.#lastError === undefined ? { connected } : { connected, lastError: this.#lastError };
  }

  /** Queues messages (all addressed to this peer) and writes them as one frame when possible. */
  send(messages: readonly Message[]): void {
    switch (this.#state.kind) {
      case 'closed':
        this.#context.dropped(this.id, messages.length, 'stopped');
        return;
      case 'backoff':
        this.#context.dropped(this.id, messages.length, 'disconnected');
        this.#context.unreachable(this.id);
        return;
      case 'connecting':
      case 'connected':
        break;
      default:
        unreachable(this.#state, 'peer state');
    }
    const room = this.#context.maxQueuedMessages - this.#queue.length;
    if (messages.length > room) {
      this.#context.dropped(this.id, messages.length - room, 'queue-full');
      this.#context.unreachable(this.id);
    }
    const accepted = messages.length > room ? messages.slice(0, room) : messages;
    for (const message of accepted) this.#queue.push(message);
    this.#flush();
  }

  /** Switches to new URLs: the current call (if any) is abandoned and a new one opened at once. */
  updateUrls(urls: readonly string[]): void {
    assert(urls.length > 0, 'a peer needs at least one URL');
    const addresses = urls.map(parsePeerUrl);
    if (urls.length === this.#urls.length && urls.every((url, i) => url === this.#urls[i])) return;
    this.#urls = [...urls];
    this.#addresses = addresses;
    this.#urlCursor = 0;
    this.#attempt = 0;
    this.#teardown('disconnected');
    this.#connect();
  }

  /** Closes the stream for good; queued messages are dropped with `reason`. */
  close(reason: DropReason): void {
    this.#teardown(reason);
    this.#state = { kind: 'closed' };
  }

  #connect(): void {
    const index = this.#urlCursor % this.#addresses.length;
    const url = this.#urls[index];
    const client = createPeerChannel(this.#addresses[index], this.#context.channels);
    // The handlers run from a later turn on, once `call` is set.
    const call: PeerStreamCall = client.openStream(PEER_STREAM_PATH, {
      onMessage: (bytes) => this.#onData(call, bytes),
      onDrain: () => this.#onDrain(call),
      onEnd: (code, details) => this.#onEnded(call, code, details),
    });
    const timer = setTimeout(() => this.#fail(call, `handshake not acknowledged within ${HANDSHAKE_TIMEOUT_MS} ms`), HANDSHAKE_TIMEOUT_MS);
    this.#state = { kind: 'connecting', client, call, url, timer };
    this.#awaitingDrain = false;
    call.write(encodeHandshake({ clusterId: this.#context.clusterId, from: this.#context.memberId, to: this.id, urls: this.#context.advertiseUrls }));
  }

  #isCurrent(call: PeerStreamCall): boolean {
    return (this.#state.kind === 'connecting' || this.#state.kind === 'connected') && this.#state.call === call;
  }

  #onData(call: PeerStreamCall, bytes: Buffer): void {
    if (!this.#isCurrent(call)) return;
    const state = this.#state;
    if (state.kind !== 'connecting') {
      this.#fail(call, 'peer sent data after the handshake ack');
      return;
    }
    const ack = decodeHandshakeAck(bytes);
    if (!ack.ok || ack.value !== this.id) {
      const reason = ack.ok ? `handshake acknowledged by member ${formatMemberId(ack.value)}` : ack.reason;
      this.#context.emit({ kind: 'bad-frame', direction: 'outbound', peer: formatMemberId(this.id), remote: state.url, reason });
      this.#fail(call, `bad handshake ack: ${reason}`);
      return;
    }
    clearTimeout(state.timer);
    this.#state = { kind: 'connected', client: state.client, call, url: state.url, sinceMs: Date.now() };
    this.#attempt = 0;
    this.#lastError = undefined;
    this.#context.emit({ kind: 'peer-connected', peer: formatMemberId(this.id), url: state.url });
    this.#flush();
  }

  #onDrain(call: PeerStreamCall): void {
    if (!this.#isCurrent(call)) return;
    this.#awaitingDrain = false;
    this.#flush();
  }

  #onEnded(call: PeerStreamCall, code: number | undefined, details: string): void {
    if (!this.#isCurrent(call)) return;
    const state = this.#state;
    assert(state.kind === 'connecting' || state.kind === 'connected', 'a current call is connecting or connected');
    if (code === GrpcCode.FAILED_PRECONDITION) {
      this.#context.emit({ kind: 'handshake-refused', direction: 'outbound', peer: formatMemberId(this.id), remote: state.url, reason: details });
    }
    this.#fail(call, code === undefined ? details : `${GrpcCode[code] ?? code}: ${details}`);
  }

  /** Abandons the current call and schedules the next attempt. */
  #fail(call: PeerStreamCall, reason: string): void {
    if (!this.#isCurrent(call)) return;
    const url = this.#state.kind === 'connecting' || this.#state.kind === 'connected' ? this.#state.url : '';
    this.#teardown('disconnected');
    this.#lastError = reason;
    const delay = reconnectDelayMs(this.#attempt, Math.random());
    this.#attempt += 1;
    this.#urlCursor += 1;
    const timer = setTimeout(() => {
      if (this.#state.kind === 'backoff' && this.#state.timer === timer) this.#connect();
    }, delay);
    this.#state = { kind: 'backoff', timer };
    this.#context.emit({ kind: 'peer-disconnected', peer: formatMemberId(this.id), url, reason, retryInMs: delay });
  }

  /**
   * Releases the current call/client/timer (if any) and drops queued messages. Leaves the state
   * for the caller to set. Reports the peer unreachable when a stream was or may have been lost.
   */
  #teardown(reason: DropReason): void {
    const state = this.#state;
    switch (state.kind) {
      case 'connecting':
        clearTimeout(state.timer);
        state.call.cancel();
        state.client.close();
        break;
      case 'connected':
        state.call.cancel();
        state.client.close();
        break;
      case 'backoff':
        clearTimeout(state.timer);
        break;
      case 'closed':
        break;
      default:
        unreachable(state, 'peer state');
    }
    this.#state = { kind: 'closed' };
    if (this.#queue.length > 0) {
      this.#context.dropped(this.id, this.#queue.length, reason);
      this.#queue = [];
    }
    if (state.kind === 'connecting' || state.kind === 'connected') this.#context.unreachable(this.id);
    this.#awaitingDrain = false;
  }

  /** Writes everything queued as one frame (split only when it exceeds maxFrameBytes). */
  #flush(): void {
    const state = this.#state;
    if (state.kind !== 'connected' || this.#awaitingDrain || this.#queue.length === 0) return;
    const messages = this.#queue;
    this.#queue = [];
    for (const frame of this.#encodeBounded(messages)) {
      this.#context.sent(this.id, frame.byteLength);
      if (!state.call.write(frame)) this.#awaitingDrain = true;
    }
  }

  /** Encodes messages into as few frames as possible, each at most maxFrameBytes. */
  #encodeBounded(messages: readonly Message[]): Uint8Array[] {
    const frame = encodeFrame(messages);
    if (frame.byteLength <= this.#context.maxFrameBytes) return [frame];
    if (messages.length === 1) {
      this.#context.dropped(this.id, 1, 'frame-too-large');
      this.#context.unreachable(this.id);
      return [];
    }
    const half = Math.ceil(messages.length / 2);
    return [...this.#encodeBounded(messages.slice(0, half)), ...this.#encodeBounded(messages.slice(half))];
  }
}

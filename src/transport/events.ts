/**
 * Structured events reported by the transport through `TransportOptions.onEvent`, for logs.
 * Member ids appear as 16-digit hex strings (see {@link formatMemberId}) so events serialize as
 * JSON without bigint handling.
 */
import type { NodeId } from '../raft/types.js';

/** Formats a member id the way etcd prints it: 16 lower-case hex digits. */
export function formatMemberId(id: NodeId): string {
  return id.toString(16).padStart(16, '0');
}

/** Which side of a connection noticed the problem. */
export type Direction = 'inbound' | 'outbound';

/** Why messages were dropped instead of sent. */
export type DropReason = 'queue-full' | 'disconnected' | 'unknown-peer' | 'frame-too-large' | 'removed' | 'stopped';

/** Every event the transport reports. */
export type TransportEvent =
  /** The peer listener is bound. */
  | { kind: 'listening'; urls: string[] }
  /** An outbound stream's handshake was accepted: messages now flow to `peer`. */
  | { kind: 'peer-connected'; peer: string; url: string }
  /** An outbound stream ended or a connection attempt failed; a reconnect is scheduled. */
  | { kind: 'peer-disconnected'; peer: string; url: string; reason: string; retryInMs: number }
  /**
   * A member this transport had no route to opened a stream: messages to it now go to the URLs
   * its handshake advertised (`refused`: not taken, with why).
   */
  | { kind: 'provisional-peer'; peer: string; urls: readonly string[]; refused?: string }
  /** A peer opened a stream to us and passed the handshake. */
  | { kind: 'inbound-stream-opened'; peer: string; remote: string; method: 'stream' | 'snapshot' }
  /** An inbound stream ended. */
  | { kind: 'inbound-stream-closed'; peer: string; remote: string; reason: string }
  /** A handshake was refused: by us ('inbound') or by the peer ('outbound'). */
  | { kind: 'handshake-refused'; direction: Direction; peer?: string; remote: string; reason: string }
  /** A frame failed validation; the stream carrying it was closed. */
  | { kind: 'bad-frame'; direction: Direction; peer?: string; remote: string; reason: string }
  /**
   * Messages were dropped. Rate-limited to one event per peer and reason per second: `count`
   * is the number dropped since the previous event for that peer and reason.
   */
  | { kind: 'messages-dropped'; peer: string; count: number; reason: DropReason }
  /** A snapshot was streamed to a peer and installed there. */
  | { kind: 'snapshot-sent'; peer: string; bytes: number; durationMs: number }
  /** Sending a snapshot failed (Raft is told 'failed' and will retry). */
  | { kind: 'snapshot-send-failed'; peer: string; reason: string }
  /** A snapshot from a peer was received and `onSnapshot` resolved. */
  | { kind: 'snapshot-received'; peer: string; bytes: number; durationMs: number }
  /** Receiving a snapshot failed (stream broken, truncated, refused or `onSnapshot` rejected). */
  | { kind: 'snapshot-receive-failed'; peer?: string; remote: string; reason: string };

/** The kinds of {@link TransportEvent}. */
export type TransportEventKind = TransportEvent['kind'];

/**
 * The peer transport's public surface. The server uses {@link Transport}; the codec is exported
 * for tests and tools that inspect frames.
 */
export {
  Transport,
  fetchMembers,
  MEMBER_REMOVED_REASON,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MAX_QUEUED_MESSAGES_PER_PEER,
  type TransportOptions,
} from './transport.js';
export type { PeerStatus } from './peer.js';
export type { PeerCredentials, PeerSecureAccept } from './service.js';
export { formatMemberId, type TransportEvent, type TransportEventKind, type DropReason, type Direction } from './events.js';
export { encodeFrame, decodeFrame, type DecodeResult, type MembersAnswer, type MemberInfo } from './codec.js';

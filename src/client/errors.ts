/**
 * Typed client errors. Every failure of a client call is a {@link KvError} (a {@link KvdError}
 * subclass); the subclass is chosen from etcd's exact message text (the wire contract, see
 * src/util/errors.ts) or, for failures that never reached a server, from the gRPC status.
 */
import { ERRORS, KvdError, type ErrorCode } from '../util/errors.js';

/** Base class of all errors thrown by the client. `grpcCode` is the status seen (or -1). */
export class KvError extends KvdError {
  override name = 'KvError';
  /** The gRPC status code of the failed call, or -1 when no call was made. */
  readonly grpcCode: number;
  constructor(code: ErrorCode, options: { detail?: string; cause?: unknown; grpcCode?: number } = {}) {
    super(code, options);
    this.grpcCode = options.grpcCode ?? -1;
  }
}

/** The requested revision has been compacted (`etcdserver: mvcc: required revision has been compacted`). */
export class CompactedError extends KvError {
  override name = 'CompactedError';
}
/** The requested revision is newer than the store's. */
export class FutureRevisionError extends KvError {
  override name = 'FutureRevisionError';
}
/** The lease does not exist (never granted, revoked or expired). */
export class LeaseNotFoundError extends KvError {
  override name = 'LeaseNotFoundError';
}
/** The member has no leader (election in progress or partitioned). Retried for idempotent calls. */
export class NoLeaderError extends KvError {
  override name = 'NoLeaderError';
}
/** The call's deadline passed (client side) or the server timed the request out. */
export class TimeoutError extends KvError {
  override name = 'TimeoutError';
}
/** No endpoint could be reached, or the connection broke. */
export class UnavailableError extends KvError {
  override name = 'UnavailableError';
}
/** `ignore_value`/`ignore_lease` on a missing key (`etcdserver: key not found`). */
export class KeyNotFoundError extends KvError {
  override name = 'KeyNotFoundError';
}
/** The call was cancelled through its AbortSignal or by closing the client. */
export class CancelledError extends KvError {
  override name = 'CancelledError';
}

/**
 * A watch was cancelled by the server because its start revision was compacted.
 * `compactRevision` is the oldest revision still available: re-read the state, then watch from
 * the read's revision + 1.
 */
export class WatchCompactedError extends CompactedError {
  override name = 'WatchCompactedError';
  /** The oldest revision still available on the server. */
  readonly compactRevision: bigint;
  constructor(compactRevision: bigint) {
    super('compacted');
    this.compactRevision = compactRevision;
  }
}

/** An election operation was attempted by a campaigner that is not (or no longer) the leader. */
export class ElectionNotLeaderError extends KvError {
  override name = 'ElectionNotLeaderError';
  constructor() {
    super('not-leader', { detail: 'election: not leader' });
  }
}

/** An election has no leader (`election: no leader`). */
export class ElectionNoLeaderError extends KvError {
  override name = 'ElectionNoLeaderError';
  constructor() {
    super('no-leader', { detail: 'election: no leader' });
  }
}

/**
 * A membership change was refused (Cluster.MemberAdd/Remove/Update/Promote). The subclass says
 * why; the message is etcd's exact text. None of them means "applied": etcd (and kvd) check
 * these before proposing the change, so the caller may inspect the membership and try again.
 */
export class MembershipError extends KvError {
  override name = 'MembershipError';
}
/** `etcdserver: member ID already exist`. */
export class MemberExistsError extends MembershipError {
  override name = 'MemberExistsError';
}
/** `etcdserver: Peer URLs already exists`: another member has one of the peer URLs. */
export class PeerUrlsExistError extends MembershipError {
  override name = 'PeerUrlsExistError';
}
/** `etcdserver: member not found`. */
export class MemberNotFoundError extends MembershipError {
  override name = 'MemberNotFoundError';
}
/** `etcdserver: can only promote a learner member`: the member is already a voter. */
export class MemberNotLearnerError extends MembershipError {
  override name = 'MemberNotLearnerError';
}
/**
 * `etcdserver: can only promote a learner member which is in sync with leader`: the learner
 * has not started or is behind. The only refusal worth retrying a promote on (after a wait).
 */
export class LearnerNotReadyError extends MembershipError {
  override name = 'LearnerNotReadyError';
}
/** `etcdserver: re-configuration failed due to not enough started members`. */
export class NotEnoughStartedMembersError extends MembershipError {
  override name = 'NotEnoughStartedMembersError';
}
/** `etcdserver: too many learner members in cluster` (etcd allows one learner by default). */
export class TooManyLearnersError extends MembershipError {
  override name = 'TooManyLearnersError';
}
/**
 * `etcdserver: unhealthy cluster`: a voter has not been connected long enough (etcd: 5 s), for
 * instance right after the cluster started or while a member is down. Not applied.
 */
export class UnhealthyClusterError extends MembershipError {
  override name = 'UnhealthyClusterError';
}
/**
 * Peer URLs refused: by the server (`etcdserver: given member URLs are invalid`) or, before
 * anything is sent, by the client's own check (then the message is the check's, as etcdctl's).
 */
export class InvalidMemberUrlsError extends MembershipError {
  override name = 'InvalidMemberUrlsError';
}

/**
 * Refused by auth: `etcdserver: permission denied` (or, from the maintenance calls, etcd's
 * untranslated `auth: permission denied`). Nothing was applied.
 */
export class PermissionDeniedError extends KvError {
  override name = 'PermissionDeniedError';
}
/** Authenticate refused the user or password (`etcdserver: authentication failed, invalid user ID or password`). */
export class AuthenticationFailedError extends KvError {
  override name = 'AuthenticationFailedError';
}
/**
 * The token is not (or no longer) valid: it expired, the user's password changed, or auth was
 * turned off. The client renews tokens by itself; a write that failed so was not applied.
 */
export class InvalidAuthTokenError extends KvError {
  override name = 'InvalidAuthTokenError';
}

const byMessage = new Map<string, ErrorCode>();
for (const [code, entry] of Object.entries(ERRORS)) {
  if (!byMessage.has(entry.message)) byMessage.set(entry.message, code as ErrorCode);
}

type KvErrorClass = new (code: ErrorCode, options: { detail?: string; cause?: unknown; grpcCode?: number }) => KvError;

function classFor(code: ErrorCode): KvErrorClass {
  switch (code) {
    case 'compacted':
      return CompactedError;
    case 'future-revision':
      return FutureRevisionError;
    case 'lease-not-found':
      return LeaseNotFoundError;
    case 'no-leader':
      return NoLeaderError;
    case 'key-not-found':
      return KeyNotFoundError;
    case 'member-exists':
      return MemberExistsError;
    case 'peer-url-exists':
      return PeerUrlsExistError;
    case 'member-not-found':
      return MemberNotFoundError;
    case 'member-not-learner':
      return MemberNotLearnerError;
    case 'learner-not-ready':
      return LearnerNotReadyError;
    case 'member-not-enough-started':
      return NotEnoughStartedMembersError;
    case 'too-many-learners':
      return TooManyLearnersError;
    case 'unhealthy':
      return UnhealthyClusterError;
    case 'member-bad-urls':
      return InvalidMemberUrlsError;
    case 'permission-denied':
    case 'admin-permission-denied':
      return PermissionDeniedError;
    case 'auth-failed':
      return AuthenticationFailedError;
    case 'invalid-auth-token':
    case 'admin-invalid-auth-token':
      return InvalidAuthTokenError;
    case 'timeout':
    case 'timeout-due-to-leader-fail':
    case 'timeout-due-to-connection-lost':
    case 'timeout-wait-applied-index':
      return TimeoutError;
    default:
      return KvError;
  }
}

/** gRPC status codes the client interprets. */
export const GrpcCode = {
  CANCELLED: 1,
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  UNAVAILABLE: 14,
} as const;

/** A gRPC failure as grpc-js reports it. */
interface ServiceErrorLike {
  code?: unknown;
  details?: unknown;
  message?: unknown;
}

/**
 * Converts anything a gRPC call rejected with into a {@link KvError}, choosing the subclass by
 * etcd's message text first and the gRPC status second. Already-typed errors pass through.
 */
export function toKvError(error: unknown): KvError {
  if (error instanceof KvError) return error;
  const like = (typeof error === 'object' && error !== null ? error : {}) as ServiceErrorLike;
  const grpcCode = typeof like.code === 'number' ? like.code : -1;
  const details = typeof like.details === 'string' ? like.details : typeof like.message === 'string' ? like.message : String(error);
  const known = byMessage.get(details);
  if (known !== undefined) {
    const Class = classFor(known);
    return new Class(known, { grpcCode, cause: error });
  }
  if (grpcCode === GrpcCode.DEADLINE_EXCEEDED) {
    return new TimeoutError('timeout', { detail: 'context deadline exceeded', grpcCode, cause: error });
  }
  if (grpcCode === GrpcCode.CANCELLED) {
    return new CancelledError('internal', { detail: 'context canceled', grpcCode, cause: error });
  }
  if (grpcCode === GrpcCode.UNAVAILABLE) {
    return new UnavailableError('stopped', { detail: details, grpcCode, cause: error });
  }
  return new KvError('internal', { detail: details, grpcCode, cause: error });
}

/**
 * Whether a failed call may be retried on another endpoint (it says nothing about whether the
 * request was applied: only retry idempotent calls, or calls known not to have been sent).
 */
export function isRetryable(error: KvError): boolean {
  if (error instanceof NoLeaderError || error instanceof UnavailableError) return true;
  if (error instanceof TimeoutError) return error.grpcCode === GrpcCode.UNAVAILABLE;
  return error.code === 'leader-changed' || error.code === 'stopped' || error.code === 'not-capable' || error.code === 'too-many-requests';
}

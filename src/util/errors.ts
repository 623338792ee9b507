/**
 * The catalog of client-visible errors, each with a stable code, its gRPC status and the exact
 * message text etcd sends. etcd clients (etcdctl, the etcd3 npm client, Go rpctypes) match on
 * the text, so the text is part of the wire contract: never reword it.
 *
 * Inside kvd, compare `error.code`, never messages.
 */

/** gRPC status codes used by kvd (numbers as in grpc's status.proto). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

interface CatalogEntry {
  readonly status: GrpcStatusCode;
  readonly message: string;
}

/** Every client-visible error: code → gRPC status + etcd's exact message. */
export const ERRORS = {
  'empty-key': { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: key is not provided' },
  'key-not-found': { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: key not found' },
  'value-provided': { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: value is provided' },
  'lease-provided': { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: lease is provided' },
  'too-many-ops': { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: too many operations in txn request' },
  'duplicate-key': { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: duplicate key given in txn request' },
  'invalid-sort-option': { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: invalid sort option' },
  compacted: { status: GrpcStatus.OUT_OF_RANGE, message: 'etcdserver: mvcc: required revision has been compacted' },
  'future-revision': { status: GrpcStatus.OUT_OF_RANGE, message: 'etcdserver: mvcc: required revision is a future revision' },
  'no-space': { status: GrpcStatus.RESOURCE_EXHAUSTED, message: 'etcdserver: mvcc: database space exceeded' },
  'lease-not-found': { status: GrpcStatus.NOT_FOUND, message: 'etcdserver: requested lease not found' },
  'lease-exists': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: lease already exists' },
  'lease-ttl-too-large': { status: GrpcStatus.OUT_OF_RANGE, message: 'etcdserver: too large lease TTL' },
  'member-exists': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: member ID already exist' },
  'peer-url-exists': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: Peer URLs already exists' },
  'member-not-enough-started': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: re-configuration failed due to not enough started members' },
  'member-bad-urls': { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: given member URLs are invalid' },
  'member-not-found': { status: GrpcStatus.NOT_FOUND, message: 'etcdserver: member not found' },
  'member-not-learner': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: can only promote a learner member' },
  'learner-not-ready': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: can only promote a learner member which is in sync with leader' },
  'too-many-learners': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: too many learner members in cluster' },
  /** kvd: Raft allows one membership change in flight; etcd's raft silently drops the second (its client then times out). */
  'conf-change-in-progress': { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: another membership change is in progress' },
  'request-too-large': { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: request is too large' },
  'too-many-requests': { status: GrpcStatus.RESOURCE_EXHAUSTED, message: 'etcdserver: too many requests' },
  /** grpc-go's send-limit error as etcd's server sends it; the detail carries the sizes, see {@link responseTooLargeMessage}. */
  'response-too-large': { status: GrpcStatus.RESOURCE_EXHAUSTED, message: 'grpc: trying to send message larger than max' },
  'no-leader': { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: no leader' },
  'not-leader': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: not leader' },
  'leader-changed': { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: leader changed' },
  'not-supported-for-learner': { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: rpc not supported for learner' },
  'not-capable': { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: not capable' },
  stopped: { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: server stopped' },
  timeout: { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: request timed out' },
  'timeout-due-to-leader-fail': { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: request timed out, possibly due to previous leader failure' },
  'timeout-due-to-connection-lost': { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: request timed out, possibly due to connection lost' },
  'timeout-wait-applied-index': { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: request timed out, waiting for the applied index took too long' },
  'timeout-leader-transfer': { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: request timed out, leader transfer took too long' },
  unhealthy: { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: unhealthy cluster' },
  corrupt: { status: GrpcStatus.DATA_LOSS, message: 'etcdserver: corrupt cluster' },
  // etcd's ErrTimeoutLeaderTransfer; not in etcd's gRPC error map, so it travels as Unknown.
  'leader-transfer-failed': { status: GrpcStatus.UNKNOWN, message: 'etcdserver: request timed out, leader transfer took too long' },
  /**
   * kvd: this member's disk is full (ENOSPC from its WAL or backend): it refuses writes and
   * linearizable reads until space returns, while the rest of the cluster serves them (etcd exits
   * instead). UNAVAILABLE, so that clients with several endpoints go to another member.
   */
  'disk-full': { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: no space left on device' },
  'bad-leader-transferee': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: bad leader transferee' },
  'auth-not-enabled': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: authentication is not enabled' },
  'watch-canceled': { status: GrpcStatus.CANCELLED, message: 'etcdserver: watch canceled' },
  canceled: { status: GrpcStatus.CANCELLED, message: 'etcdserver: request canceled' },
  'grpc-not-capable': { status: GrpcStatus.UNAVAILABLE, message: 'etcdserver: not capable' },
  'invalid-argument': { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: invalid argument' },
  // Auth (etcd's rpctypes; the maintenance RPCs answer auth failures untranslated: 'admin-*').
  'auth-root-user-missing': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: root user does not exist' },
  'auth-root-role-missing': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: root user does not have root role' },
  'auth-user-exists': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: user name already exists' },
  'auth-user-empty': { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: user name is empty' },
  'auth-user-not-found': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: user name not found' },
  'auth-role-exists': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: role name already exists' },
  'auth-role-not-found': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: role name not found' },
  'auth-role-empty': { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: role name is empty' },
  'auth-failed': { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: authentication failed, invalid user ID or password' },
  /** etcd maps this one to no rpctypes error: clients see it as UNKNOWN with the auth package's text. */
  'auth-no-password-user': { status: GrpcStatus.UNKNOWN, message: 'auth: authentication failed, password was given for no password user' },
  'permission-denied': { status: GrpcStatus.PERMISSION_DENIED, message: 'etcdserver: permission denied' },
  'permission-not-given': { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: permission not given' },
  'role-not-granted': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: role is not granted to the user' },
  'permission-not-granted': { status: GrpcStatus.FAILED_PRECONDITION, message: 'etcdserver: permission is not granted to the role' },
  'invalid-auth-token': { status: GrpcStatus.UNAUTHENTICATED, message: 'etcdserver: invalid auth token' },
  'invalid-auth-mgmt': { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: invalid auth management' },
  'auth-old-revision': { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: revision of auth store is old' },
  /** kvd: a UserAdd/UserChangePassword hashedPassword that is not base64 of a bcrypt hash. */
  'invalid-hashed-password': { status: GrpcStatus.INVALID_ARGUMENT, message: 'etcdserver: invalid hashed password' },
  'admin-permission-denied': { status: GrpcStatus.UNKNOWN, message: 'auth: permission denied' },
  'admin-user-empty': { status: GrpcStatus.UNKNOWN, message: 'auth: user name is empty' },
  'admin-user-not-found': { status: GrpcStatus.UNKNOWN, message: 'auth: user not found' },
  'admin-invalid-auth-token': { status: GrpcStatus.UNKNOWN, message: 'auth: invalid auth token' },
  'unimplemented': { status: GrpcStatus.UNIMPLEMENTED, message: 'etcdserver: not implemented' },
  internal: { status: GrpcStatus.INTERNAL, message: 'etcdserver: internal error' },
} as const satisfies Record<string, CatalogEntry>;

/** A stable error code from the catalog. */
export type ErrorCode = keyof typeof ERRORS;

/**
 * The one error class crossing async boundaries. `code` is stable; `status` and `message` come
 * from the catalog unless `detail` overrides the message (only for errors etcd also formats,
 * e.g. invalid-argument with a reason).
 */
export class KvdError extends Error {
  override name = 'KvdError';
  readonly code: ErrorCode;
  readonly status: GrpcStatusCode;

  constructor(code: ErrorCode, options: { detail?: string; cause?: unknown } = {}) {
    super(options.detail ?? ERRORS[code].message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = ERRORS[code].status;
  }
}

/**
 * grpc-go's text for a response over the server's send limit (server.go sendResponse):
 * `grpc: trying to send message larger than max (<bytes> vs. <max>)`.
 */
export function responseTooLargeMessage(bytes: number, maxBytes: number): string {
  return `${ERRORS['response-too-large'].message} (${bytes} vs. ${maxBytes})`;
}

/** Narrows an unknown caught value. */
export function isKvdError(error: unknown, code?: ErrorCode): error is KvdError {
  return error instanceof KvdError && (code === undefined || error.code === code);
}

/** Returns a printable message for any caught value. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

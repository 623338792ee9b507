/**
 * The contract between the client-facing gRPC services (src/api) and the member that serves them
 * (src/server). The services decode protobuf into the domain types of src/store/mvcc/types.ts,
 * validate them as etcd's v3rpc layer does, call these interfaces, and encode the results.
 *
 * Rules for implementers (the server):
 * - Expected failures are thrown as `KvdError` (src/util/errors.ts); the service turns them into a
 *   gRPC status with the catalog's code and etcd's exact message. Anything else thrown becomes
 *   UNKNOWN and is reported through `onUnexpectedError` of `createGrpcServer`.
 * - Every call carries a {@link CallOptions}: a deadline (ms since the epoch, from the client's
 *   gRPC deadline or the server's default request timeout) and an AbortSignal that fires when the
 *   client cancels the call or disconnects. Give up with `KvdError('timeout')` (or the more precise
 *   timeout codes) when the deadline passes.
 * - Values handed in are immutable and owned by the callee afterwards; values returned must not
 *   be mutated later (the services may encode them after the call returns).
 * - Optional methods that are absent make the matching RPC answer UNIMPLEMENTED.
 */
import type {
  Event,
  LeaseId,
  RangeCursor,
  RangeRequest,
  RangeResponse,
  Revision,
  WriteRequest,
  WriteResult,
} from '../store/mvcc/types.js';
import type { Index, NodeId, Term } from '../raft/types.js';
import type { RequestTrace } from './instrument.js';

/**
 * The caller's credentials as the api layer found them: gRPC metadata `token` (or
 * `authorization`, etcd's gateway name), and the verified client certificate's common name when
 * the server runs with --client-cert-auth. The backend decides what they are worth.
 */
export interface CallAuth {
  readonly token?: string;
  readonly commonName?: string;
}

/** Calls `listener` once when something is cancelled (at once if it already is); returns the function that unregisters it. */
export type OnCancel = (listener: () => void) => () => void;

/** Per-call context handed to every backend method. */
export interface CallOptions {
  /** Absolute deadline, ms since the epoch (Date.now() scale). Always finite. */
  readonly deadline: number;
  /** Aborted when the client cancels the call or the connection goes away. */
  readonly signal: AbortSignal;
  /**
   * The same cancellation as `signal` without building an AbortSignal (an AbortController per
   * call is a measurable share of a small write's cost). Optional: {@link onCancelOf} falls back
   * to `signal`.
   */
  readonly onCancel?: OnCancel;
  /** Who calls (absent: no credentials at all). */
  readonly auth?: CallAuth;
  /** Where the call spends its time; the member fills in the propose and apply stages (optional). */
  readonly trace?: RequestTrace;
}

/** What cancels a call: its `onCancel` when it has one, else its `signal` (only then read: reading it builds it). */
export function onCancelOf(options: CallOptions): OnCancel {
  return options.onCancel ?? onAbortOf(options.signal);
}

/** An AbortSignal as an {@link OnCancel}. */
export function onAbortOf(signal: AbortSignal): OnCancel {
  return (listener) => {
    if (signal.aborted) {
      listener();
      return () => {};
    }
    signal.addEventListener('abort', listener, { once: true });
    return () => signal.removeEventListener('abort', listener);
  };
}

/**
 * CallOptions made from a call's for one piece of its work: the same credentials and cancellation,
 * the signal taken from the call's only when read (reading it builds it), and a deadline of their
 * own when given (a keep-alive stream's renewals). A class, not a spread (that would read the
 * signal) nor an object literal with a getter (V8 builds one on a slow runtime path, about 0.3 µs).
 */
export class DerivedCallOptions implements CallOptions {
  readonly #base: CallOptions;
  readonly deadline: number;
  readonly onCancel: OnCancel | undefined;
  readonly auth: CallAuth | undefined;

  constructor(base: CallOptions, deadline: number = base.deadline) {
    this.#base = base;
    this.deadline = deadline;
    this.onCancel = base.onCancel;
    this.auth = base.auth;
  }

  get signal(): AbortSignal {
    return this.#base.signal;
  }
}

/** Options of {@link KvBackend.openRange}. */
export interface RangeReadOptions extends CallOptions {
  /** Bytes of values a VALUE-sorted read may hold while sorting (the response limit). */
  readonly sortBytesMax: number;
}

/** The header of every response (etcd's ResponseHeader). */
export interface ResponseHeader {
  readonly clusterId: bigint;
  readonly memberId: NodeId;
  /** Store revision when the request was applied (or the current one for reads/status). */
  readonly revision: Revision;
  readonly raftTerm: Term;
}

// ---------------------------------------------------------------------------------------------
// KV

/** Backend of the KV service. */
export interface KvBackend {
  /**
   * Reads a range. Linearizable unless `request.serializable`. `request` is validated (non-empty
   * key, known sort options; a sort order of 'none' with a non-key target is already turned into
   * 'ascend' as etcd's apply does; a negative limit is 0). `request.revision <= 0` means the
   * current revision. Throws `compacted` / `future-revision` for revisions out of range.
   */
  range(request: RangeRequest, options: CallOptions): Promise<{ header: ResponseHeader; response: RangeResponse }>;
  /**
   * Reads a range in pages at one revision instead of building it (Range and RangeStream use it
   * when present, so that a member never holds a whole large result). Same request and errors as
   * {@link range}, checked before it resolves (after the linearizable barrier). `header.revision`
   * is the cursor's `revision`. The caller closes the cursor (`return()`) when done or failing;
   * the cursor ends with `options.signal`.
   */
  openRange?(request: RangeRequest, options: RangeReadOptions): Promise<{ header: ResponseHeader; cursor: RangeCursor }>;
  /**
   * A Range of one key (empty range end) read without a cursor, the commonest read of a service
   * registry or config store: the same result and errors as {@link range}. Answers at once
   * (serializable) or after the linearizable barrier; returns undefined when it cannot serve the
   * request this way (a range of keys, or a caller the member must check permissions for), and
   * the caller then uses openRange or range.
   */
  rangeKey?(request: RangeRequest, options: CallOptions): { header: ResponseHeader; response: RangeResponse } | Promise<{ header: ResponseHeader; response: RangeResponse }> | undefined;
  /**
   * Applies a write: put, delete-range, txn or compact, through Raft, and resolves once applied
   * on this member. The request is validated (etcd's key.go checks: keys, ignore_value/lease,
   * txn op counts and duplicate keys, request size). A txn whose ops are all ranges may be served
   * as a linearizable read without a proposal; the backend decides. `header.revision` is the
   * store revision after the write (etcd semantics). Throws e.g. `key-not-found` (ignore_value /
   * ignore_lease on a missing key), `lease-not-found`, `compacted`, `future-revision`, `no-space`,
   * `too-many-requests`, `timeout`, `no-leader`.
   */
  write(request: WriteRequest, options: CallOptions): Promise<{ header: ResponseHeader; result: WriteResult }>;
}

// ---------------------------------------------------------------------------------------------
// Watch

/**
 * A watcher handle: a small integer chosen by the api layer, unique within one watch stream and
 * never reused on that stream. (The wire `watch_id`, chosen by client or server, is mapped by the
 * api layer; the hub never sees it.)
 */
export type WatcherHandle = number;

/** What one watcher watches, decoded and validated. */
export interface WatchOptions {
  /** First key; never empty (an empty wire key is turned into [0], as etcd does). */
  readonly key: Uint8Array;
  /**
   * Exclusive end. Empty = the single key `key`; [0] = every key >= key; otherwise
   * key < rangeEnd holds (checked by the api layer).
   */
  readonly rangeEnd: Uint8Array;
  /** First revision to deliver (inclusive); 0 means "the next revision" (current + 1). Never negative. */
  readonly startRevision: Revision;
  /** Attach the previous key-value to each event that is not a creation (skip it if compacted). */
  readonly prevKv: boolean;
  /** Event types not to deliver. */
  readonly filters: readonly ('no-put' | 'no-delete')[];
  /** Informational: the api layer runs the progress timer and calls requestProgress(). */
  readonly progressNotify: boolean;
}

/**
 * What the hub hands to one stream. For one watcher, batches are delivered in revision order,
 * each revision's events whole in one batch (the api layer may fragment on the wire).
 */
export type WatchDelivery =
  /** Events of one or more revisions (`events` non-empty); `revision` is the header revision to send (>= the last event's). */
  | { readonly type: 'events'; readonly watcher: WatcherHandle; readonly revision: Revision; readonly events: readonly Event[] }
  /**
   * The watcher (or every watcher of the stream: 'all') has received every event up to
   * `revision`: sent as an empty response with header.revision = `revision`.
   */
  | { readonly type: 'progress'; readonly watcher: WatcherHandle | 'all'; readonly revision: Revision }
  /**
   * The watcher's next revision was compacted: the hub has dropped the watcher; the api layer
   * sends canceled with compact_revision. `compactRevision` is the store's compaction revision
   * (the oldest revision still readable; etcd sends exactly that, and clients restart from it).
   * etcd's rule: a watcher whose next revision is below the compaction revision is compacted.
   */
  | { readonly type: 'compacted'; readonly watcher: WatcherHandle; readonly compactRevision: Revision; readonly revision: Revision }
  /**
   * The hub ended the watcher for another reason (an internal failure): the api layer sends
   * canceled with `reason` as cancel_reason and no compact_revision (etcd does the same).
   */
  | { readonly type: 'canceled'; readonly watcher: WatcherHandle; readonly reason: string; readonly revision: Revision };

/** The api side of one watch stream, given to the hub. */
export interface WatchSink {
  /**
   * Offers one delivery. 'accepted': the stream took it. 'full': the stream's bounded send queue
   * is full and NOTHING was taken; the hub keeps the delivery (and everything after it for that
   * watcher) and offers again after {@link WatchStream.writable} is called. Never throws.
   * Must not be called after {@link WatchStream.close} or, for a watcher, after cancel().
   */
  deliver(delivery: WatchDelivery): 'accepted' | 'full';
}

/** The hub side of one watch stream (etcd's mvcc.WatchStream without id assignment). */
export interface WatchStream {
  /**
   * Starts a watcher. Deliveries for it may begin synchronously inside this call. A start
   * revision below the compaction revision yields a 'compacted' delivery (not an exception).
   */
  watch(watcher: WatcherHandle, options: WatchOptions): void;
  /** Stops a watcher; no delivery for it follows the return of this call. Unknown handles: no-op. */
  cancel(watcher: WatcherHandle): void;
  /** If the watcher is caught up, delivers a 'progress' for it at the current revision; otherwise nothing. */
  requestProgress(watcher: WatcherHandle): void;
  /**
   * Stream-wide progress (WatchProgressRequest): when every watcher of the stream is caught up,
   * deliver one 'progress' with watcher 'all' at the current revision (possibly later, once they are).
   */
  requestProgressAll(): void;
  /** The sink has room again after answering 'full': offer the held deliveries. */
  writable(): void;
  /** Ends the stream: cancels all its watchers; no delivery follows. Idempotent. */
  close(): void;
}

/** Backend of the Watch service. */
export interface WatchBackend {
  /** Opens the hub side of a new gRPC watch stream. */
  openWatchStream(sink: WatchSink): WatchStream;
  /**
   * Whether the stream's caller may watch the range (etcd checks read permission when a watcher
   * is created). undefined: allowed, decided at once (auth off and no token: the common case).
   * Otherwise a promise that rejects with the KvdError of the refusal (the api layer cancels the
   * watcher with etcd's reason text). Absent: everything is allowed.
   */
  authorizeWatch?(range: { readonly key: Uint8Array; readonly rangeEnd: Uint8Array }, auth: CallAuth | undefined): Promise<void> | undefined;
  /** The header to put on control responses (created/canceled): current revision, term, ids. */
  header(): ResponseHeader;
}

// ---------------------------------------------------------------------------------------------
// Lease

/** A lease's state as LeaseTimeToLive reports it. */
export interface LeaseTimeToLive {
  readonly id: LeaseId;
  /** Remaining seconds (the lease expires within ttlSeconds + 1 s). */
  readonly ttlSeconds: number;
  readonly grantedTtlSeconds: number;
  /** Attached keys, only when asked for (`keys: true`), else empty. */
  readonly keys: readonly Uint8Array[];
}

/** Backend of the Lease service. Lease ids are signed 64-bit (int64 on the wire). */
export interface LeaseBackend {
  /**
   * Grants a lease. `id` 0n lets the server choose. `ttlSeconds` is as sent by the client (the
   * server raises it to its minimum TTL). Throws `lease-exists`, `lease-ttl-too-large`, `no-space`.
   */
  grant(request: { readonly id: LeaseId; readonly ttlSeconds: number }, options: CallOptions): Promise<{ header: ResponseHeader; id: LeaseId; ttlSeconds: number }>;
  /** Revokes a lease and deletes its keys. Throws `lease-not-found`. */
  revoke(id: LeaseId, options: CallOptions): Promise<{ header: ResponseHeader }>;
  /**
   * Renews a lease (at the leader). Returns the new TTL. Throws `lease-not-found` for an unknown
   * or expired lease (the api layer answers TTL 0 as etcd does).
   */
  keepAlive(id: LeaseId, options: CallOptions): Promise<{ header: ResponseHeader; ttlSeconds: number }>;
  /** Remaining TTL. Throws `lease-not-found` (the api layer answers TTL -1 as etcd does). */
  timeToLive(request: { readonly id: LeaseId; readonly keys: boolean }, options: CallOptions): Promise<{ header: ResponseHeader; lease: LeaseTimeToLive }>;
  /** Every live lease id. */
  leases(options: CallOptions): Promise<{ header: ResponseHeader; ids: readonly LeaseId[] }>;
  /** The header for responses the api layer makes up itself (TTL -1 of an unknown lease). */
  header(): ResponseHeader;
}

// ---------------------------------------------------------------------------------------------
// Cluster

/** One member as the Cluster service reports it. */
export interface Member {
  readonly id: NodeId;
  /** Empty until the member has published its attributes (etcdctl prints "unstarted"). */
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  readonly isLearner: boolean;
  /** kvd extension: a learner the leader promotes once it is in sync. */
  readonly autoPromote: boolean;
}

/** Backend of the Cluster service. Membership changes may be left out (UNIMPLEMENTED). */
export interface ClusterBackend {
  /** The members; `linearizable` asks for a ReadIndex barrier first (etcd 3.5+). */
  memberList(request: { readonly linearizable: boolean }, options: CallOptions): Promise<{ header: ResponseHeader; members: readonly Member[] }>;
  /** Adds a member. Throws `member-bad-urls`, `peer-url-exists`, `too-many-learners`, ... */
  memberAdd?(request: { readonly peerUrls: readonly string[]; readonly isLearner: boolean; readonly autoPromote: boolean }, options: CallOptions): Promise<{ header: ResponseHeader; member: Member; members: readonly Member[] }>;
  /** Removes a member. Throws `member-not-found`, `member-not-enough-started`. */
  memberRemove?(request: { readonly id: NodeId }, options: CallOptions): Promise<{ header: ResponseHeader; members: readonly Member[] }>;
  /** Changes a member's peer URLs. */
  memberUpdate?(request: { readonly id: NodeId; readonly peerUrls: readonly string[] }, options: CallOptions): Promise<{ header: ResponseHeader; members: readonly Member[] }>;
  /** Promotes a learner. Throws `member-not-learner`, `learner-not-ready`. */
  memberPromote?(request: { readonly id: NodeId }, options: CallOptions): Promise<{ header: ResponseHeader; members: readonly Member[] }>;
}

// ---------------------------------------------------------------------------------------------
// Maintenance

/** This member's status (etcd's StatusResponse without the header). */
export interface MemberStatus {
  /** Server version reported to clients, e.g. "3.4.0" style (etcdctl prints it). */
  readonly version: string;
  /** Backend bytes physically allocated. */
  readonly dbSizeBytes: number;
  /** Backend bytes logically in use. */
  readonly dbSizeInUseBytes: number;
  /** The member this member believes leads; 0n when none. */
  readonly leader: NodeId;
  /** Raft committed index. */
  readonly raftIndex: Index;
  readonly raftTerm: Term;
  readonly raftAppliedIndex: Index;
  /** Alarm / health texts (etcd puts e.g. "memberID:... alarm:NOSPACE" here). */
  readonly errors: readonly string[];
  readonly isLearner: boolean;
  readonly storageVersion: string;
  /** --quota-backend-bytes. */
  readonly dbSizeQuotaBytes: number;
}

export type AlarmType = 'none' | 'nospace' | 'corrupt';

/** A raised alarm. */
export interface Alarm {
  readonly memberId: NodeId;
  readonly alarm: AlarmType;
}

/** Backend of the Maintenance service; absent optional methods answer UNIMPLEMENTED. */
export interface MaintenanceBackend {
  /** This member's status. Served locally (no Raft round). */
  status(options: CallOptions): Promise<{ header: ResponseHeader; status: MemberStatus }>;
  /**
   * Alarm get / activate / deactivate. `memberId` 0n = all members; `alarm` 'none' with 'get'
   * = all alarms. Returns the affected (get: matching) alarms.
   */
  alarm?(request: { readonly action: 'get' | 'activate' | 'deactivate'; readonly memberId: NodeId; readonly alarm: AlarmType }, options: CallOptions): Promise<{ header: ResponseHeader; alarms: readonly Alarm[] }>;
  /** Compacts this member's backend files. */
  defragment?(options: CallOptions): Promise<{ header: ResponseHeader }>;
  /** Hash of the whole backend (tests only). Unsigned 32-bit. */
  hash?(options: CallOptions): Promise<{ header: ResponseHeader; hash: number }>;
  /** HashKV at `revision` (0 = current): unsigned 32-bit hash, the compaction revision, the hashed revision. */
  hashKv?(request: { readonly revision: Revision }, options: CallOptions): Promise<{ header: ResponseHeader; hash: number; compactRevision: Revision; hashRevision: Revision }>;
  /**
   * A point-in-time copy of the backend: `sizeBytes` in total, delivered by `chunks` (the api
   * layer sends remaining_bytes). The iterator's return() is called if the client goes away.
   */
  snapshot?(options: CallOptions): Promise<{ header: ResponseHeader; sizeBytes: number; version: string; chunks: AsyncIterable<Uint8Array> }>;
  /** Transfers leadership (called on the leader). Throws `not-leader`, `bad-leader-transferee`. */
  moveLeader?(request: { readonly targetId: NodeId }, options: CallOptions): Promise<{ header: ResponseHeader }>;
  /** Cluster-version downgrade; returns the current cluster version. */
  downgrade?(request: { readonly action: 'validate' | 'enable' | 'cancel'; readonly version: string }, options: CallOptions): Promise<{ header: ResponseHeader; version: string }>;
}

// ---------------------------------------------------------------------------------------------
// Auth

/** A key permission of a role (etcd's authpb.Permission); `rangeEnd` empty = one key, [0] = from key. */
export interface AuthPermission {
  readonly type: 'read' | 'write' | 'readwrite';
  readonly key: Uint8Array;
  readonly rangeEnd: Uint8Array;
}

/** Every Auth RPC but AuthStatus, decoded (one shape so front-ends forward them as one call). */
export type AuthRequest =
  | { readonly method: 'enable' }
  | { readonly method: 'disable' }
  | { readonly method: 'authenticate'; readonly name: string; readonly password: string }
  | { readonly method: 'user-add'; readonly name: string; readonly password: string; readonly hashedPassword: string; readonly noPassword: boolean }
  | { readonly method: 'user-get'; readonly name: string }
  | { readonly method: 'user-list' }
  | { readonly method: 'user-delete'; readonly name: string }
  | { readonly method: 'user-change-password'; readonly name: string; readonly password: string; readonly hashedPassword: string }
  | { readonly method: 'user-grant-role'; readonly user: string; readonly role: string }
  | { readonly method: 'user-revoke-role'; readonly name: string; readonly role: string }
  | { readonly method: 'role-add'; readonly name: string }
  | { readonly method: 'role-get'; readonly role: string }
  | { readonly method: 'role-list' }
  | { readonly method: 'role-delete'; readonly role: string }
  | { readonly method: 'role-grant-permission'; readonly name: string; readonly permission: AuthPermission }
  | { readonly method: 'role-revoke-permission'; readonly role: string; readonly key: Uint8Array; readonly rangeEnd: Uint8Array };

/** The answer to an {@link AuthRequest}: the header plus the fields of its response message. */
export interface AuthAnswer {
  readonly header: ResponseHeader;
  readonly token?: string;
  readonly roles?: readonly string[];
  readonly users?: readonly string[];
  readonly permissions?: readonly AuthPermission[];
}

/** Backend of the Auth service. Without one, AuthStatus answers "disabled" and the rest UNIMPLEMENTED. */
export interface AuthBackend {
  status(options: CallOptions): Promise<{ header: ResponseHeader; enabled: boolean; authRevision: number }>;
  /** Every other Auth RPC, with etcd's checks and errors. Absent: UNIMPLEMENTED. */
  call?(request: AuthRequest, options: CallOptions): Promise<AuthAnswer>;
}

// ---------------------------------------------------------------------------------------------
// Leadership (etcd's `hasleader` metadata)

/**
 * Whether this member knows a leader. Calls carrying gRPC metadata `hasleader: true` (Go
 * clientv3 WithRequireLeader, used by etcdctl watch) are refused with `no-leader` while there is
 * none, as etcd's interceptors do. Without this backend the check is skipped.
 */
export interface LeadershipBackend {
  /** Cheap and synchronous: called at the start of every such call. */
  hasLeader(): boolean;
  /**
   * Whether this member is a learner: it then serves only Status and serializable Range (etcd's
   * isRPCSupportedForLearner); every other call is refused with `not-supported-for-learner`.
   * Cheap and synchronous. Absent: never a learner.
   */
  isLearner?(): boolean;
  /** Calls `listener` after every change of leader or term (grpc.health.v1 Watch); returns an unsubscribe. */
  subscribe?(listener: () => void): () => void;
}

// ---------------------------------------------------------------------------------------------

/** Every backend the gRPC server can be given. KV, Watch, Lease, Cluster and Maintenance are required. */
export interface Backends {
  readonly kv: KvBackend;
  readonly watch: WatchBackend;
  readonly lease: LeaseBackend;
  readonly cluster: ClusterBackend;
  readonly maintenance: MaintenanceBackend;
  readonly auth?: AuthBackend;
  readonly leadership?: LeadershipBackend;
}

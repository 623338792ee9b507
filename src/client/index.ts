/**
 * kvd's TypeScript client (package export `kvd/client`): KV, transactions, watches, leases,
 * a service registry, config watching, locks and elections over etcd's v3 gRPC API. Works
 * against kvd and against etcd 3.4+.
 *
 * ```ts
 * const client = connect({ endpoints: ['127.0.0.1:2379'] });
 * await client.put('greeting', 'hello');
 * const kv = await client.get('greeting');
 * client.close();
 * ```
 */
import { Connection, type AuthOptions, type TlsOptions } from './connection.js';
import { AuthApi } from './auth.js';
import { KvError } from './errors.js';
import { ClusterApi } from './cluster.js';
import { ConfigApi } from './config.js';
import { Election, Mutex, Session, type SessionOptions } from './concurrency.js';
import { Kv, type CompactOptions, type DeleteOptions, type DeleteResult, type KeyRangeOptions, type KeyValue, type KvApi, type PutOptions, type PutResult, type RangeOptions, type RangeResult, type TxnBuilder } from './kv.js';
import { Lease, LeaseApi } from './lease.js';
import { Registry } from './registry.js';
import { Watcher, type WatchOptions } from './watch.js';
import { SnapshotReader, saveSnapshot, type SnapshotOptions, type SnapshotSaved } from './snapshot.js';
import type { Bytes, Int64Like, ResponseHeader } from './codec.js';

export * from './errors.js';
export { compare, op, TxnBuilder } from './kv.js';
export type { Compare, CompareOperator, Operation, OperationResult, TxnResult, KeyValue, KeyRangeOptions, RangeOptions, RangeResult, PutOptions, PutResult, DeleteOptions, DeleteResult, CompactOptions, SortTarget, SortOrder, KvApi, CommitOptions } from './kv.js';
export { Watcher, WATCH_QUEUE_MAX } from './watch.js';
export { SnapshotReader, SNAPSHOT_HASH_BYTES } from './snapshot.js';
export { runBackup, describeBackup, planRestore, isDirectory, BACKUP_DEFAULTS, MANIFEST_FILE } from './backup.js';
export type { BackupOptions, BackupEventReport, BackupChain, BackupDescription, BackupRestorePlan, BackupEvent, BackupRevision, LeaseTtl } from './backup.js';
export type { SnapshotOptions, SnapshotProgress, SnapshotSaved } from './snapshot.js';
export type { WatchEvent, WatchProgress, WatchItem, WatchBatch, WatchOptions } from './watch.js';
export { Lease, LeaseApi } from './lease.js';
export type { LeaseEvents, LeaseGrantResult, LeaseKeepAliveResult, LeaseTimeToLiveResult } from './lease.js';
export { ClusterApi } from './cluster.js';
export { AuthApi } from './auth.js';
export type { Permission, AuthCallOptions } from './auth.js';
export type { TlsOptions, AuthOptions } from './connection.js';
export type { Member, MemberListResult, MemberAddResult, MemberAddRequest, MemberCallOptions, MemberListOptions, StatusResult, HashKvResult, HealthResult, AlarmName, AlarmMember, AlarmResult } from './cluster.js';
export { replaceMember, planReplacement, startSettings, systemClock, ReplaceRefusedError, REPLACE_TIMEOUT_DEFAULT_MS, POLL_INTERVAL_DEFAULT_MS, POLL_INTERVAL_MIN_MS, POLL_INTERVAL_MAX_MS } from './membership.js';
export type { MembershipApi, Clock, ReplacementTarget, MemberStartSettings, ReplaceStep, ReplacePlan, ReplaceEvent, ReplaceMemberOptions, ReplaceResult } from './membership.js';
export { peerUrlProblem, peerUrlsProblem } from './peer-urls.js';
export { Registry, Registration, ServiceView } from './registry.js';
export type { RegisterOptions, ServiceInstance, RegistrationEvents, ServiceViewEvents } from './registry.js';
export { ConfigApi, ConfigWatch } from './config.js';
export type { ConfigChange } from './config.js';
export { Session, Mutex, Election } from './concurrency.js';
export type { SessionOptions, LeaderKey } from './concurrency.js';
export { prefixEnd, hexId, toBuffer } from './codec.js';
export type { Bytes, Int64Like, ResponseHeader } from './codec.js';

/** Options of {@link connect}. */
export interface ConnectOptions {
  /** Member addresses, `host:port`, `http://host:port` or `https://host:port`. Calls fail over in this order. */
  readonly endpoints: readonly string[];
  /**
   * TLS: `{ ca, cert, key }` as PEM (plus `insecureSkipVerify`, `serverName`). `https://`
   * endpoints, and endpoints without a scheme when this is given, are dialled with TLS.
   */
  readonly tls?: TlsOptions;
  /**
   * `{ username, password }`: the client authenticates (once, shared by concurrent calls), sends
   * the token with every call, and gets a new one by itself when the server says `invalid auth
   * token` (reads are then retried once; a write is never resent after an auth failure: it throws).
   */
  readonly auth?: AuthOptions;
  /** Milliseconds to wait for a connection to one endpoint before trying the next. Default 2000. */
  readonly dialTimeout?: number;
  /** Default deadline of every call in milliseconds, retries included. Default 5000. */
  readonly requestTimeout?: number;
}

/**
 * A connection to a kvd (or etcd) cluster. Connects lazily; {@link Client.close} releases
 * every channel, stream and timer the client opened (watches, leases, registrations...).
 * Reads are retried across endpoints with backoff and jitter; writes are sent at most once.
 */
export class Client implements KvApi {
  readonly #connection: Connection;
  readonly #kv: Kv;
  readonly #closers = new Set<{ close(): void }>();
  /** Plain lease calls (grant, revoke, timeToLive, list, keepAliveOnce). */
  readonly leases: LeaseApi;
  /** Membership (list, add, remove, update, promote), status, hashKV, health. */
  readonly cluster: ClusterApi;
  /** Service registry: register and discover service instances. */
  readonly registry: Registry;
  /** Config watching: whole map under a prefix, then every change. */
  readonly config: ConfigApi;
  /** Users, roles, permissions, auth on/off (etcd's Auth service). */
  readonly auth: AuthApi;

  /** Use {@link connect}. */
  constructor(options: ConnectOptions) {
    this.#connection = new Connection({ endpoints: options.endpoints, dialTimeoutMs: options.dialTimeout, requestTimeoutMs: options.requestTimeout, tls: options.tls, auth: options.auth });
    this.auth = new AuthApi(this.#connection);
    this.#kv = new Kv(this.#connection);
    this.leases = new LeaseApi(this.#connection);
    this.cluster = new ClusterApi(this.#connection);
    this.registry = new Registry(this, (closer) => this.#track(closer));
    this.config = new ConfigApi(this, (closer) => this.#track(closer));
  }

  /** The configured endpoints as `host:port`. */
  get endpoints(): readonly string[] {
    return this.#connection.endpoints;
  }

  /** Remembers a helper to close with the client; returns a function that forgets it again. */
  #track(closer: { close(): void }): () => void {
    this.#closers.add(closer);
    return () => this.#closers.delete(closer);
  }

  /** Reads one key; undefined when absent. Options: revision, serializable, keysOnly. */
  get(key: Bytes, options?: Omit<RangeOptions, keyof KeyRangeOptions | 'limit' | 'countOnly'>): Promise<KeyValue | undefined> {
    return this.#kv.get(key, options);
  }

  /** Reads a key range: prefix / fromKey / rangeEnd, revision, limit, sort, keysOnly, countOnly, serializable. */
  range(key: Bytes, options?: RangeOptions): Promise<RangeResult> {
    return this.#kv.range(key, options);
  }

  /** Reads every key under `prefix` into a Map of UTF-8 key → UTF-8 value. */
  getAll(prefix: Bytes, options?: Omit<RangeOptions, keyof KeyRangeOptions>): Promise<Map<string, string>> {
    return this.#kv.getAll(prefix, options);
  }

  /** Writes `key` = `value` (options: lease, prevKv, ignoreValue, ignoreLease). Sent at most once. */
  put(key: Bytes, value: Bytes, options?: PutOptions): Promise<PutResult> {
    return this.#kv.put(key, value, options);
  }

  /** Deletes a key or a range (options: prefix, fromKey, rangeEnd, prevKv). Sent at most once. */
  delete(key: Bytes, options?: DeleteOptions): Promise<DeleteResult> {
    return this.#kv.delete(key, options);
  }

  /** Starts a transaction: `client.txn().if(...).then(...).else(...).commit()`. */
  txn(): TxnBuilder {
    return this.#kv.txn();
  }

  /** Compacts the history below `revision`. Sent at most once. */
  compact(revision: Int64Like, options?: CompactOptions): Promise<{ header: ResponseHeader }> {
    return this.#kv.compact(revision, options);
  }

  /**
   * Watches a key (or range/prefix, see {@link WatchOptions}) and returns a {@link Watcher},
   * an async iterable of events and progress notifications that resumes across endpoint
   * failures without missing or repeating events.
   */
  watch(key: Bytes, options: WatchOptions = {}): Watcher {
    let watcher: Watcher | undefined;
    const handle = { close: (): void => watcher?.close() };
    this.#closers.add(handle);
    watcher = new Watcher(this.#connection, key, options, () => this.#closers.delete(handle));
    return watcher;
  }

  /**
   * A point-in-time snapshot of the member at `endpoint` (Maintenance.Snapshot; one member, no
   * failover), as an async iterable of its bytes. The SHA-256 trailer is checked when the stream
   * ends (the last iteration throws if it is missing or wrong). Works against kvd and etcd.
   */
  snapshot(endpoint: string, options: SnapshotOptions = {}): SnapshotReader {
    return new SnapshotReader(this.#connection, endpoint, options);
  }

  /**
   * Saves a snapshot of the member at `endpoint` to `path`: written to `<path>.part`, checksum
   * verified, fsynced, renamed, directory fsynced; the partial file is removed on failure.
   */
  saveSnapshot(endpoint: string, path: string, options: SnapshotOptions = {}): Promise<SnapshotSaved> {
    return saveSnapshot(this.#connection, endpoint, path, options);
  }

  /**
   * Grants a lease of `ttlSeconds` that keeps itself alive until revoked or closed. The grant is
   * sent at most once. With `id` (a positive int64 of the caller's own choosing) the lease gets
   * that id instead of one the server picks, and `existing: 'adopt'` makes the grant safe to
   * repeat: when a lease with that id already exists (an earlier grant of the caller's was
   * applied although its answer was lost), it is renewed once, which proves it is still there,
   * and kept alive instead of failing with "lease already exists". Default `existing: 'fail'`.
   */
  async lease(ttlSeconds: number, options: { id?: Int64Like; existing?: 'fail' | 'adopt' } = {}): Promise<Lease> {
    let grant: { id: bigint; ttl: number };
    try {
      grant = await this.leases.grant(ttlSeconds, { id: options.id });
    } catch (error: unknown) {
      if (options.existing !== 'adopt' || options.id === undefined || !(error instanceof KvError) || error.code !== 'lease-exists') throw error;
      const renewed = await this.leases.keepAliveOnce(options.id);
      grant = { id: renewed.id, ttl: renewed.ttl };
    }
    let lease: Lease | undefined;
    const handle = { close: (): void => lease?.close() };
    this.#closers.add(handle);
    lease = new Lease(this.#connection, grant, () => this.#closers.delete(handle));
    return lease;
  }

  /**
   * A session (a kept-alive lease, default TTL 60 s) for locks and elections; closing the
   * session revokes its lease, releasing everything held through it.
   */
  async session(options: SessionOptions = {}): Promise<Session> {
    const lease = await this.lease(options.ttl ?? 60);
    return new Session(this, lease);
  }

  /**
   * A mutex with etcd's concurrency-package protocol (keys `<name>/<leaseIdHex>`), so it
   * excludes `etcdctl lock <name>`. Pass a session to share one lease; otherwise one is made
   * on `lock()` and revoked on `unlock()`.
   */
  lock(name: string, options: { session?: Session; ttl?: number } = {}): Mutex {
    return new Mutex(this, name, options);
  }

  /** A leader election with etcd's concurrency-package protocol (compatible with `etcdctl elect`). */
  election(name: string, options: { session?: Session; ttl?: number } = {}): Election {
    return new Election(this, name, options);
  }

  /** Closes every watch, lease (without revoking), registration, view and channel. Idempotent. */
  close(): void {
    for (const closer of [...this.#closers]) {
      try {
        closer.close();
      } catch (error: unknown) {
        // Closing is best effort: one failing closer must not keep the others open.
        void error;
      }
    }
    this.#closers.clear();
    this.#connection.close();
  }
}

/** Creates a {@link Client}. Nothing is dialled until the first call. */
export function connect(options: ConnectOptions): Client {
  return new Client(options);
}

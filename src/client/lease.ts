/**
 * Leases: plain calls (grant, revoke, time-to-live, list, one keep-alive) and the self-renewing
 * {@link Lease} that keeps a LeaseKeepAlive stream open, refreshes every TTL/3 and reports
 * 'lost' when the lease expired or could not be renewed in time.
 */
import { EventEmitter } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import { bytesFromWire, decodeHeader, fromWire, toWire, type Int64Like, type ResponseHeader } from './codec.js';
import { backoffMs, type Connection, type RetryPolicy } from './connection.js';
import { KvError, LeaseNotFoundError, toKvError } from './errors.js';

/** Result of a lease grant. */
export interface LeaseGrantResult {
  readonly header: ResponseHeader;
  readonly id: bigint;
  /** Granted TTL in seconds (the server may raise it to its minimum). */
  readonly ttl: number;
}

/** Result of a lease time-to-live query. */
export interface LeaseTimeToLiveResult {
  readonly header: ResponseHeader;
  readonly id: bigint;
  /** Remaining seconds; -1 when the lease does not exist (expired or revoked). */
  readonly ttl: number;
  /** TTL the lease was granted with (0 when it does not exist). */
  readonly grantedTtl: number;
  /** Attached keys (only when requested). */
  readonly keys: readonly Buffer[];
}

/** Result of one keep-alive. */
export interface LeaseKeepAliveResult {
  readonly header: ResponseHeader;
  readonly id: bigint;
  /** New TTL in seconds; 0 means the lease no longer exists. */
  readonly ttl: number;
}

/** Plain lease calls of a {@link Client} (`client.leases`). */
export class LeaseApi {
  readonly #connection: Connection;

  /** Wraps `connection` (not owned). */
  constructor(connection: Connection) {
    this.#connection = connection;
  }

  /** Grants a lease of `ttlSeconds`; `id` 0 (default) lets the server choose. */
  async grant(ttlSeconds: number, options: { id?: Int64Like; timeoutMs?: number } = {}): Promise<LeaseGrantResult> {
    const { response } = await this.#connection.unary('Lease', 'LeaseGrant', { TTL: String(ttlSeconds), ID: toWire(options.id ?? 0n) }, { retry: 'at-most-once', timeoutMs: options.timeoutMs });
    if (typeof response.error === 'string' && response.error !== '') throw toKvError({ details: response.error });
    return { header: decodeHeader(response.header), id: fromWire(response.ID), ttl: Number(fromWire(response.TTL)) };
  }

  /**
   * Revokes a lease, deleting its keys. Throws LeaseNotFoundError if it does not exist. Sent at
   * most once: a repeated revoke would answer LeaseNotFoundError although the first succeeded.
   */
  revoke(id: Int64Like, options: { timeoutMs?: number } = {}): Promise<{ header: ResponseHeader }> {
    return revokeLease(this.#connection, id, { retry: 'at-most-once', timeoutMs: options.timeoutMs });
  }

  /** Remaining and granted TTL of a lease, optionally with its keys. */
  async timeToLive(id: Int64Like, options: { keys?: boolean; timeoutMs?: number } = {}): Promise<LeaseTimeToLiveResult> {
    const { response } = await this.#connection.unary('Lease', 'LeaseTimeToLive', { ID: toWire(id), keys: options.keys === true }, { retry: 'idempotent', timeoutMs: options.timeoutMs });
    return {
      header: decodeHeader(response.header),
      id: fromWire(response.ID),
      ttl: Number(fromWire(response.TTL)),
      grantedTtl: Number(fromWire(response.grantedTTL)),
      keys: ((response.keys ?? []) as unknown[]).map(bytesFromWire),
    };
  }

  /** Lists the ids of all leases. */
  async list(options: { timeoutMs?: number } = {}): Promise<{ header: ResponseHeader; leases: bigint[] }> {
    const { response } = await this.#connection.unary('Lease', 'LeaseLeases', {}, { retry: 'idempotent', ...options });
    return { header: decodeHeader(response.header), leases: ((response.leases ?? []) as Array<Record<string, unknown>>).map((lease) => fromWire(lease.ID)) };
  }

  /** Renews a lease once over a short-lived stream. Throws LeaseNotFoundError if it is gone. */
  async keepAliveOnce(id: Int64Like, options: { timeoutMs?: number } = {}): Promise<LeaseKeepAliveResult> {
    const deadline = Date.now() + (options.timeoutMs ?? this.#connection.requestTimeoutMs);
    const endpoint = this.#connection.currentEndpoint;
    const stream = this.#connection.duplex('Lease', 'LeaseKeepAlive', endpoint);
    try {
      const response = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const timer = setTimeout(() => reject(new KvError('timeout', { detail: 'context deadline exceeded' })), Math.max(0, deadline - Date.now()));
        stream.once('data', (raw: Record<string, unknown>) => {
          clearTimeout(timer);
          resolve(raw);
        });
        stream.once('error', (error: unknown) => {
          clearTimeout(timer);
          reject(toKvError(error));
        });
        stream.write({ ID: toWire(id) });
      });
      const result = { header: decodeHeader(response.header), id: fromWire(response.ID), ttl: Number(fromWire(response.TTL)) };
      if (result.ttl <= 0) throw new LeaseNotFoundError('lease-not-found');
      return result;
    } finally {
      stream.on('error', () => undefined); // The cancel below surfaces as a CANCELLED error: expected.
      stream.cancel();
    }
  }
}

/**
 * Sends LeaseRevoke. `retry` is 'at-most-once' for callers that report LeaseNotFoundError, and
 * may be 'idempotent' only for callers that treat a lease already gone as success (then a
 * resent revoke has the same outcome as the first).
 */
async function revokeLease(connection: Connection, id: Int64Like, options: { retry: RetryPolicy; timeoutMs?: number }): Promise<{ header: ResponseHeader }> {
  const { response } = await connection.unary('Lease', 'LeaseRevoke', { ID: toWire(id) }, options);
  return { header: decodeHeader(response.header) };
}

/** Events of a {@link Lease}. */
export interface LeaseEvents {
  /** A renewal succeeded; the lease now lives `ttl` more seconds. */
  keepalive: [ttl: number];
  /** The lease expired or could not be renewed before its TTL ran out. Emitted once. */
  lost: [error: KvError];
}

/** Lower bound on the renewal interval, whatever the TTL. */
const KEEPALIVE_INTERVAL_MIN_MS = 300;

/**
 * A granted lease that renews itself every TTL/3 on a LeaseKeepAlive stream (reconnecting to
 * other endpoints as needed) until {@link Lease.revoke} or {@link Lease.close}. When it is
 * found expired, or its TTL elapses without a successful renewal, it emits 'lost' once and
 * stops. Invariant: at most one stream and one timer are live.
 */
export class Lease extends EventEmitter<LeaseEvents> {
  readonly #connection: Connection;
  readonly #api: LeaseApi;
  /** The lease id. */
  readonly id: bigint;
  /** The granted TTL in seconds. */
  readonly ttl: number;
  #state: 'alive' | 'lost' | 'revoked' | 'closed' = 'alive';
  #expiresAt: number;
  #stream: grpc.ClientDuplexStream<unknown, unknown> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #attempt = 0;

  readonly #onRelease: (() => void) | undefined;

  /**
   * Use {@link Client.lease}. `grant` is the lease as granted (or found existing, then `ttl` is
   * its granted TTL). `onRelease` is called once when renewing stops for any reason.
   */
  constructor(connection: Connection, grant: Pick<LeaseGrantResult, 'id' | 'ttl'>, onRelease?: () => void) {
    super();
    this.#onRelease = onRelease;
    this.#connection = connection;
    this.#api = new LeaseApi(connection);
    this.id = grant.id;
    this.ttl = grant.ttl;
    this.#expiresAt = Date.now() + grant.ttl * 1000;
    this.#openStream();
    this.#schedule(this.#intervalMs());
  }

  /** 'alive' while being renewed; otherwise why it stopped. */
  get state(): 'alive' | 'lost' | 'revoked' | 'closed' {
    return this.#state;
  }

  #intervalMs(): number {
    return Math.max(KEEPALIVE_INTERVAL_MIN_MS, (this.ttl * 1000) / 3);
  }

  #schedule(ms: number): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#tick(), ms);
    this.#timer.unref?.();
  }

  #tick(): void {
    this.#timer = undefined;
    if (this.#state !== 'alive') return;
    if (Date.now() >= this.#expiresAt) {
      this.#lose(new LeaseNotFoundError('lease-not-found', { detail: 'lease expired before it could be renewed' }));
      return;
    }
    if (this.#stream === undefined) this.#openStream();
    this.#stream?.write({ ID: this.id.toString() });
    // Retry sooner while renewals are not getting through.
    const sinceRenewal = this.#expiresAt - Date.now();
    this.#schedule(sinceRenewal < (this.ttl * 1000 * 2) / 3 ? Math.min(this.#intervalMs(), 500) : this.#intervalMs());
  }

  #openStream(): void {
    const endpoint = this.#connection.currentEndpoint;
    let stream: grpc.ClientDuplexStream<unknown, unknown>;
    try {
      stream = this.#connection.duplex('Lease', 'LeaseKeepAlive', endpoint);
    } catch (error: unknown) {
      this.#lose(toKvError(error));
      return;
    }
    this.#stream = stream;
    stream.on('data', (raw: Record<string, unknown>) => {
      if (this.#state !== 'alive') return;
      const ttl = Number(fromWire(raw.TTL));
      if (ttl <= 0) {
        this.#lose(new LeaseNotFoundError('lease-not-found'));
        return;
      }
      this.#attempt = 0;
      this.#expiresAt = Date.now() + ttl * 1000;
      this.emit('keepalive', ttl);
    });
    const onGone = (): void => {
      if (this.#stream !== stream) return;
      this.#stream = undefined;
      if (this.#state !== 'alive') return;
      this.#connection.reportFailure(endpoint);
      // Reconnect at the next tick, sooner after a short backoff.
      this.#schedule(Math.min(this.#intervalMs(), 100 + backoffMs(this.#attempt)));
      this.#attempt += 1;
    };
    stream.on('error', onGone);
    stream.on('end', onGone);
  }

  #stop(state: 'lost' | 'revoked' | 'closed'): void {
    if (this.#state === 'alive') this.#onRelease?.();
    this.#state = state;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const stream = this.#stream;
    this.#stream = undefined;
    if (stream !== undefined) {
      stream.end();
      stream.cancel();
    }
  }

  #lose(error: KvError): void {
    if (this.#state !== 'alive') return;
    this.#stop('lost');
    this.emit('lost', error);
  }

  /** Renews once now (besides the automatic renewals); returns the new TTL. */
  async keepAliveOnce(): Promise<number> {
    const result = await this.#api.keepAliveOnce(this.id);
    this.#expiresAt = Date.now() + result.ttl * 1000;
    return result.ttl;
  }

  /** Remaining TTL and attached keys. */
  timeToLive(options: { keys?: boolean } = {}): Promise<LeaseTimeToLiveResult> {
    return this.#api.timeToLive(this.id, options);
  }

  /**
   * Stops renewing and revokes the lease (deleting its keys). A lease already gone is fine, so
   * the revoke is retried across endpoints like a read: if a first attempt was applied but its
   * answer lost, the next one finds the lease gone, which is the same outcome.
   */
  async revoke(): Promise<void> {
    if (this.#state === 'revoked') return;
    this.#stop('revoked');
    try {
      await revokeLease(this.#connection, this.id, { retry: 'idempotent' });
    } catch (error: unknown) {
      if (!(error instanceof LeaseNotFoundError)) throw error;
    }
  }

  /** Stops renewing without revoking (the lease expires after its TTL). Idempotent. */
  close(): void {
    if (this.#state === 'alive') this.#stop('closed');
  }
}

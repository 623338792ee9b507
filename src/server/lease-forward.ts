/**
 * Lease keep-alives and exact TTLs are the leader's business: only the leader's lessor tracks
 * expiries. A follower forwards LeaseKeepAlive and LeaseTimeToLive to the leader as member calls
 * over the peer transport (etcd forwards over its peer HTTP API, leasehttp, the same way): one
 * unary call per request, so each answer is matched to its own request by the transport (never by
 * arrival order), and the call carries the member's peer identity, not a client connection.
 *
 * Both calls are idempotent, so a call that reaches a member that is no longer leader, or that
 * fails in transit, is retried (after a short pause, against the then-current leader) until the
 * request's deadline, as etcd's LeaseRenew does. 'lease-not-found' is an answer, not a failure.
 *
 * Bounds: the transport refuses more than MAX_OUTBOUND_CALLS_PER_PEER waiting calls per leader.
 */
import { Packr } from 'msgpackr';
import type { LeaseTimeToLive } from '../api/backend.js';
import type { LeaseId } from '../store/mvcc/types.js';
import type { NodeId } from '../raft/types.js';
import { KvdError } from '../util/errors.js';

/** Member-call kinds served by the leader (see KvdMember's member-call server). */
export const LEASE_KEEPALIVE_CALL = 'lease-keepalive';
export const LEASE_TTL_CALL = 'lease-ttl';

/** Pause between attempts when the leader is unknown, changing or unreachable. */
const RETRY_PAUSE_MS = 50;

const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true });

/** What the forwarder needs from the member. */
export interface LeaseForwardHost {
  /** The current leader's id, 0n when unknown. */
  leader(): NodeId;
  /** The member's own id. */
  readonly id: NodeId;
  /** A member call over the peer transport (Transport.call). */
  call(to: NodeId, kind: string, payload: Uint8Array, options: { deadlineMs: number }): Promise<Uint8Array>;
}

export interface KeepAliveRequest { readonly id: LeaseId }
export interface KeepAliveAnswer { readonly ttlSeconds: number }
export interface TimeToLiveRequest { readonly id: LeaseId; readonly keys: boolean }

export function encodeKeepAliveRequest(request: KeepAliveRequest): Uint8Array {
  return packr.pack({ id: BigInt.asIntN(64, request.id) });
}

export function decodeKeepAliveRequest(bytes: Uint8Array): KeepAliveRequest {
  const value = unpack(bytes) as { id?: unknown };
  return { id: asLeaseId(value.id) };
}

export function encodeKeepAliveAnswer(answer: KeepAliveAnswer): Uint8Array {
  return packr.pack({ ttl: answer.ttlSeconds });
}

export function decodeKeepAliveAnswer(bytes: Uint8Array): KeepAliveAnswer {
  const value = unpack(bytes) as { ttl?: unknown };
  return { ttlSeconds: asSeconds(value.ttl) };
}

export function encodeTimeToLiveRequest(request: TimeToLiveRequest): Uint8Array {
  return packr.pack({ id: BigInt.asIntN(64, request.id), keys: request.keys });
}

export function decodeTimeToLiveRequest(bytes: Uint8Array): TimeToLiveRequest {
  const value = unpack(bytes) as { id?: unknown; keys?: unknown };
  if (typeof value.keys !== 'boolean') throw bad('keys');
  return { id: asLeaseId(value.id), keys: value.keys };
}

export function encodeTimeToLive(lease: LeaseTimeToLive): Uint8Array {
  return packr.pack({ id: BigInt.asIntN(64, lease.id), ttl: lease.ttlSeconds, granted: lease.grantedTtlSeconds, keys: lease.keys.map((key) => Buffer.from(key)) });
}

export function decodeTimeToLive(bytes: Uint8Array): LeaseTimeToLive {
  const value = unpack(bytes) as { id?: unknown; ttl?: unknown; granted?: unknown; keys?: unknown };
  if (!Array.isArray(value.keys) || !value.keys.every((key) => key instanceof Uint8Array)) throw bad('keys');
  return { id: asLeaseId(value.id), ttlSeconds: asSeconds(value.ttl), grantedTtlSeconds: asSeconds(value.granted), keys: value.keys as Uint8Array[] };
}

/** Forwards lease requests from a follower to the leader. */
export class LeaseForwarder {
  readonly #host: LeaseForwardHost;

  constructor(host: LeaseForwardHost) {
    this.#host = host;
  }

  /** Renews `id` at the leader; resolves with the TTL. Rejects 'lease-not-found', 'timeout', 'too-many-requests'. */
  async keepAlive(id: LeaseId, options: { deadlineMs: number }): Promise<number> {
    const answer = await this.#callLeader(LEASE_KEEPALIVE_CALL, encodeKeepAliveRequest({ id }), options);
    return decodeKeepAliveAnswer(answer).ttlSeconds;
  }

  /** LeaseTimeToLive at the leader. Rejects 'lease-not-found' for an unknown or expired lease. */
  async timeToLive(id: LeaseId, options: { keys: boolean; deadlineMs: number }): Promise<LeaseTimeToLive> {
    const answer = await this.#callLeader(LEASE_TTL_CALL, encodeTimeToLiveRequest({ id, keys: options.keys }), options);
    return decodeTimeToLive(answer);
  }

  async #callLeader(kind: string, payload: Uint8Array, options: { deadlineMs: number }): Promise<Uint8Array> {
    let last: KvdError = new KvdError('no-leader');
    for (;;) {
      if (Date.now() >= options.deadlineMs) throw last.code === 'no-leader' ? last : new KvdError('timeout', { cause: last });
      const leader = this.#host.leader();
      if (leader !== 0n && leader !== this.#host.id) {
        try {
          return await this.#host.call(leader, kind, payload, options);
        } catch (error: unknown) {
          if (!(error instanceof KvdError)) throw error;
          // Answers of the leader: pass them on. Everything else means "ask again".
          if (error.code === 'lease-not-found' || error.code === 'too-many-requests' || error.code === 'internal' || error.code === 'unimplemented') throw error;
          last = error;
        }
      } else if (leader === this.#host.id) {
        // We became leader meanwhile: the caller answers from its own lessor.
        throw new KvdError('leader-changed');
      }
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(RETRY_PAUSE_MS, options.deadlineMs - Date.now()))));
    }
  }
}

function unpack(bytes: Uint8Array): unknown {
  try {
    const value: unknown = packr.unpack(bytes);
    if (typeof value !== 'object' || value === null) throw bad('not a map');
    return value;
  } catch (error: unknown) {
    if (error instanceof KvdError) throw error;
    throw bad('not msgpack');
  }
}

function asLeaseId(value: unknown): LeaseId {
  if (typeof value === 'bigint') return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return BigInt(value);
  throw bad('lease id');
}

function asSeconds(value: unknown): number {
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value;
  if (typeof value === 'bigint') return Number(value);
  throw bad('seconds');
}

function bad(what: string): KvdError {
  return new KvdError('invalid-argument', { detail: `etcdserver: malformed lease member call (${what})` });
}

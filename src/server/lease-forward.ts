/**
 * Lease keep-alives and exact TTLs are the leader's business: only the leader's lessor tracks
 * expiries. A follower forwards LeaseKeepAlive and LeaseTimeToLive to the leader as member calls
 * over the peer transport (etcd forwards over its peer HTTP API, leasehttp, the same way): one
 * unary call per request (keep-alives: per batch), so each answer is matched to its own request by
 * the transport (never by arrival order), and the call carries the member's peer identity, not a
 * client connection.
 *
 * Keep-alives are batched: those arriving in one turn of the event loop travel to the leader as
 * one call carrying their lease ids, answered by one list of TTLs in the same order (one member
 * call per keep-alive cost the follower and the leader each about 0.1 ms of CPU, most of a
 * forwarded keep-alive's cost under etcd's lease benchmark). A batch that fails in transit, or
 * reaches a member no longer leader, is retried id by id under each request's own deadline.
 *
 * Both calls are idempotent, so a call that reaches a member that is no longer leader, or that
 * fails in transit, is retried (after a short pause, against the then-current leader) until the
 * request's deadline, as etcd's LeaseRenew does. 'lease-not-found' is an answer, not a failure.
 *
 * Bounds: the transport refuses more than MAX_OUTBOUND_CALLS_PER_PEER waiting calls per leader;
 * at most KEEPALIVE_QUEUE_MAX keep-alives wait for their batch to leave (beyond, one goes as a call
 * of its own, under the transport's bound), and a batch carries at most KEEPALIVE_BATCH_MAX ids.
 */
import { Packr } from 'msgpackr';
import type { LeaseTimeToLive } from '../api/backend.js';
import type { LeaseId } from '../store/mvcc/types.js';
import type { NodeId } from '../raft/types.js';
import { KvdError } from '../util/errors.js';

/** Member-call kinds served by the leader (see KvdMember's member-call server). */
export const LEASE_KEEPALIVE_CALL = 'lease-keepalive';
export const LEASE_TTL_CALL = 'lease-ttl';
/** Several keep-alives in one call: `{ ids }` answered by `{ ttls }` (-1: lease not found). */
export const LEASE_KEEPALIVE_BATCH_CALL = 'lease-keepalive-batch';

/** Most lease ids in one forwarded keep-alive batch. */
export const KEEPALIVE_BATCH_MAX = 1024;
/** Most keep-alives waiting for their batch to be sent. */
export const KEEPALIVE_QUEUE_MAX = 16_384;

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

export function encodeKeepAliveBatch(ids: readonly LeaseId[]): Uint8Array {
  return packr.pack({ ids: ids.map((id) => BigInt.asIntN(64, id)) });
}

export function decodeKeepAliveBatch(bytes: Uint8Array): LeaseId[] {
  const value = unpack(bytes) as { ids?: unknown };
  if (!Array.isArray(value.ids) || value.ids.length > KEEPALIVE_BATCH_MAX) throw bad('ids');
  return value.ids.map(asLeaseId);
}

/** TTL per id of the batch, in its order; -1 for a lease the leader does not have. */
export function encodeKeepAliveBatchAnswer(ttls: readonly number[]): Uint8Array {
  return packr.pack({ ttls });
}

export function decodeKeepAliveBatchAnswer(bytes: Uint8Array, count: number): number[] {
  const value = unpack(bytes) as { ttls?: unknown };
  if (!Array.isArray(value.ttls) || value.ttls.length !== count) throw bad('ttls');
  return value.ttls.map((ttl) => (ttl === -1 ? -1 : asSeconds(ttl)));
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

interface QueuedKeepAlive {
  readonly id: LeaseId;
  readonly deadlineMs: number;
  readonly resolve: (ttlSeconds: number) => void;
  readonly reject: (error: unknown) => void;
}

/** Forwards lease requests from a follower to the leader. */
export class LeaseForwarder {
  readonly #host: LeaseForwardHost;
  /** Keep-alives waiting for the next batch, per leader they were meant for. */
  #queue: QueuedKeepAlive[] = [];
  #queueLeader: NodeId = 0n;
  #flushScheduled = false;

  constructor(host: LeaseForwardHost) {
    this.#host = host;
  }

  /** Renews `id` at the leader; resolves with the TTL. Rejects 'lease-not-found', 'timeout', 'too-many-requests'. */
  async keepAlive(id: LeaseId, options: { deadlineMs: number }): Promise<number> {
    // First through a batch; when the batch cannot be delivered, alone with the usual retries.
    const leader = this.#host.leader();
    if (leader !== 0n && leader !== this.#host.id && this.#queue.length < KEEPALIVE_QUEUE_MAX && Date.now() < options.deadlineMs) {
      try {
        return await this.#batched(leader, id, options.deadlineMs);
      } catch (error: unknown) {
        if (!(error instanceof KvdError)) throw error;
        if (isLeaderAnswer(error) && error.code !== 'unimplemented') throw error; // an older leader without batches: ask alone
      }
    }
    const answer = await this.#callLeader(LEASE_KEEPALIVE_CALL, encodeKeepAliveRequest({ id }), options);
    return decodeKeepAliveAnswer(answer).ttlSeconds;
  }

  #batched(leader: NodeId, id: LeaseId, deadlineMs: number): Promise<number> {
    if (leader !== this.#queueLeader && this.#queue.length > 0) this.#flush();
    this.#queueLeader = leader;
    return new Promise<number>((resolve, reject) => {
      this.#queue.push({ id, deadlineMs, resolve, reject });
      if (this.#queue.length >= KEEPALIVE_BATCH_MAX) this.#flush();
      else if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        // After this turn's I/O: every keep-alive read in it joins the batch.
        setImmediate(() => {
          this.#flushScheduled = false;
          this.#flush();
        });
      }
    });
  }

  /** Sends what is queued as one member call to the leader it was queued for. */
  #flush(): void {
    const batch = this.#queue;
    if (batch.length === 0) return;
    this.#queue = [];
    const leader = this.#queueLeader;
    const deadlineMs = batch.reduce((latest, entry) => Math.max(latest, entry.deadlineMs), 0);
    let answer: Promise<Uint8Array>;
    try {
      answer = this.#host.call(leader, LEASE_KEEPALIVE_BATCH_CALL, encodeKeepAliveBatch(batch.map((entry) => entry.id)), { deadlineMs });
    } catch (error: unknown) {
      for (const entry of batch) entry.reject(error);
      return;
    }
    answer.then(
      (bytes) => {
        let ttls: number[];
        try {
          ttls = decodeKeepAliveBatchAnswer(bytes, batch.length);
        } catch (error: unknown) {
          for (const entry of batch) entry.reject(error);
          return;
        }
        let notFound: KvdError | undefined;
        batch.forEach((entry, i) => {
          const ttl = ttls[i];
          if (ttl >= 0) entry.resolve(ttl);
          else entry.reject(notFound ??= new KvdError('lease-not-found'));
        });
      },
      (error: unknown) => {
        for (const entry of batch) entry.reject(error);
      },
    );
  }

  /** LeaseTimeToLive at the leader. Rejects 'lease-not-found' for an unknown or expired lease. */
  async timeToLive(id: LeaseId, options: { keys: boolean; deadlineMs: number }): Promise<LeaseTimeToLive> {
    const answer = await this.#callLeader(LEASE_TTL_CALL, encodeTimeToLiveRequest({ id, keys: options.keys }), options);
    return decodeTimeToLive(answer);
  }

  async #callLeader(kind: string, payload: Uint8Array, options: { deadlineMs: number }): Promise<Uint8Array> {
    // Built only when needed: an error per forwarded call (its stack) was a measurable cost.
    let last: KvdError | undefined;
    for (;;) {
      if (Date.now() >= options.deadlineMs) {
        if (last === undefined) throw new KvdError('no-leader');
        throw last.code === 'no-leader' ? last : new KvdError('timeout', { cause: last });
      }
      const leader = this.#host.leader();
      if (leader !== 0n && leader !== this.#host.id) {
        try {
          return await this.#host.call(leader, kind, payload, options);
        } catch (error: unknown) {
          if (!(error instanceof KvdError)) throw error;
          // Answers of the leader: pass them on. Everything else means "ask again".
          if (isLeaderAnswer(error)) throw error;
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

/** An error the leader answered with (passed to the caller); any other failure means "ask again". */
function isLeaderAnswer(error: KvdError): boolean {
  return error.code === 'lease-not-found' || error.code === 'too-many-requests' || error.code === 'internal' || error.code === 'unimplemented';
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

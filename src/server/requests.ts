/**
 * What travels through Raft: the envelope of a normal entry's data. Every member decodes and
 * applies the same bytes, so the codec must be deterministic and exact (bigint ids survive).
 *
 * An envelope carries the request id (unique per proposing member, so the member that received
 * the client request can find its waiter when the entry is applied) and the request itself.
 */
import { Packr } from 'msgpackr';
import type { WriteRequest, LeaseId } from '../store/mvcc/types.js';
import type { AuthMutation, Principal } from '../store/auth/index.js';
import type { NodeId } from '../raft/types.js';
import { assert } from '../util/assert.js';
import type { AlarmChangeRequest } from './alarms.js';

/** A lease granted with `ttlSeconds`; `id` chosen by the client or by the proposing member. */
export interface LeaseGrantRequest { readonly type: 'lease-grant'; readonly id: LeaseId; readonly ttlSeconds: number }
/** Revoke a lease and delete its keys in one revision. */
export interface LeaseRevokeRequest { readonly type: 'lease-revoke'; readonly id: LeaseId }
/** Record remaining TTLs so long leases survive restarts and leader changes (etcd checkpoints). */
export interface LeaseCheckpointRequest { readonly type: 'lease-checkpoint'; readonly checkpoints: readonly { readonly id: LeaseId; readonly remainingTtlSeconds: number }[] }
/** A member publishes its name and client URLs after start (etcd's attribute publish). */
export interface MemberAttributesRequest { readonly type: 'member-attributes'; readonly memberId: NodeId; readonly name: string; readonly clientUrls: readonly string[] }

/** Every request that is applied through the log. */
export type InternalRequest =
  | WriteRequest
  | LeaseGrantRequest
  | LeaseRevokeRequest
  | LeaseCheckpointRequest
  | MemberAttributesRequest
  | AlarmChangeRequest
  | AuthMutation;

/** The data of a normal entry. */
export interface Envelope {
  /** Unique per proposer: high 16 bits from the member id, low 48 a counter (as etcd's idutil). */
  readonly id: bigint;
  readonly request: InternalRequest;
  /**
   * Who the request acts for (etcd's RequestHeader username and auth revision): present on
   * every client request (user '' when anonymous), absent on the member's own requests (lease
   * expiry, checkpoints, attributes), which auth never refuses. The applier decides with it.
   */
  readonly auth?: Principal;
}

// int64AsType: 'bigint' decodes every 64-bit integer as bigint, so ids never lose precision;
// records off keeps the encoding self-describing (no shared structure state between members).
const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true });

/**
 * Encodes an envelope as entry data, in a buffer of its own. msgpackr packs the output of every
 * Packr in the process into one module-wide buffer that only grows (the peer transport's frames
 * take it past 1 MB), and entry data lives as long as its entry stays in the in-memory Raft log:
 * a view into that buffer kept it whole for a few entries, while the frames that filled the rest
 * were long gone (a leader that had loaded 1M keys held three times its log in such buffers).
 */
export function encodeEnvelope(envelope: Envelope): Uint8Array {
  return new Uint8Array(packr.pack(envelope));
}

/** Decodes entry data produced by {@link encodeEnvelope}. Throws on bytes that are not one. */
export function decodeEnvelope(data: Uint8Array): Envelope {
  const value = packr.unpack(data) as Envelope;
  assert(typeof value === 'object' && value !== null && typeof value.id === 'bigint' && typeof value.request?.type === 'string', 'entry data is an envelope');
  return value;
}

/**
 * Generates request ids unique across members and restarts: 16 bits of the member id, then a
 * 48-bit counter seeded from the clock at start (etcd's idutil.Generator).
 */
export class RequestIdGenerator {
  readonly #prefix: bigint;
  #counter: bigint;

  constructor(options: { memberId: NodeId; nowMs: number }) {
    this.#prefix = (options.memberId & 0xffffn) << 48n;
    this.#counter = (BigInt(Math.floor(options.nowMs)) << 8n) & 0xffff_ffff_ffffn;
  }

  /** The next id. */
  next(): bigint {
    this.#counter = (this.#counter + 1n) & 0xffff_ffff_ffffn;
    return this.#prefix | this.#counter;
  }
}

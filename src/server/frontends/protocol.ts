/**
 * What the core and its front-ends say to each other (over channel.ts).
 *
 * Front-end → core:
 *   { t: 'call', id, m, a, d, u } call backend method `m` with arguments `a` (deadline `d`, ms since
 *                                the epoch; the caller's credentials `u`, a CallAuth, when it has
 *                                any); answered by exactly one 'result' or 'error' with `id`
 *   { t: 'cancel', id }          the client went away: abort call `id` (its answer may still come)
 * Core → front-end:
 *   { t: 'config', c }           first message: the settings the front-end serves with
 *   { t: 'result', id, v }       / { t: 'error', id, code, message }: the answer to call `id`
 *   { t: 'state', s }            the member's state (ids, term, leader, revisions) after a change
 *   { t: 'revisions', b, s }     committed revisions (RevisionChanges[]) for the watch hubs, in order
 *   { t: 'revisions-part', b }   the first parts of a batch of more than BROADCAST_PART_EVENTS
 *                                events, one per turn; its last part is the 'revisions' that
 *                                follows them (joinRevisionParts); nothing else comes between
 *                                (the channel holds other messages meanwhile: Channel.hold)
 *   { t: 'store-replaced', s }   a snapshot replaced the backend: watchers catch up again
 *   { t: 'shutdown', graceMs }   stop accepting, let calls finish for graceMs, exit 0
 *   { t: 'metrics-request', id } send your registry (prom-client JSON) for the member's /metrics;
 *                                answered by { t: 'metrics', id, v } (front-end → core)
 *
 * A 'result' may carry `tr`: where the call spent its time at the core ({ proposeMs, applyMs }).
 *
 * Ids are per front-end. Methods are the backend interfaces' (src/api/backend.ts) as
 * 'kv.range', 'lease.keepAlive', ...; see FRONTEND_METHODS. 'kv.rangeKey' answers null when the
 * core cannot serve the read that way (a caller to check permissions for): the front-end then
 * asks 'kv.range'.
 */
import type { Event, Revision } from '../../store/mvcc/types.js';
import type { RevisionChanges } from '../../store/mvcc/store.js';
import type { TlsSettings } from '../tls.js';

/** The member state every front-end mirrors (for headers, the hasleader guard and its watch hub). */
export interface MirroredState {
  readonly clusterId: bigint;
  readonly memberId: bigint;
  readonly term: number;
  readonly leader: bigint;
  readonly revision: Revision;
  readonly compacted: Revision;
  /** The member is a learner (it serves only Status and serializable Range). */
  readonly learner: boolean;
}

/** Settings a front-end serves with (a subset of ServerConfig, plain data). */
export interface FrontendConfig {
  readonly name: string;
  readonly listenClientUrls: readonly string[];
  readonly maxRequestBytes: number;
  readonly maxTxnOps: number;
  readonly maxResponseBytes: number;
  readonly requestTimeoutMs: number;
  readonly watchProgressNotifyIntervalMs: number;
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** TLS of https client URLs (files resolved by the core, auto TLS included); each front-end reloads them itself. */
  readonly clientTls?: TlsSettings;
  /** etcd --client-cert-auth: the verified certificate's CN names the caller. */
  readonly clientCertAuth: 'on' | 'off';
  /** --enable-pprof. */
  readonly enablePprof: boolean;
  /** --enable-ui. */
  readonly enableUi: boolean;
  /** kvd --client-http2. */
  readonly clientHttp2: 'kvd' | 'node';
}

/** Unary backend methods a front-end may call. */
export const FRONTEND_METHODS = [
  'kv.range', 'kv.rangeKey', 'kv.write', 'kv.openRange', 'cursor.next', 'cursor.close',
  'lease.grant', 'lease.revoke', 'lease.keepAlive', 'lease.timeToLive', 'lease.leases',
  'cluster.memberList', 'cluster.memberAdd', 'cluster.memberRemove', 'cluster.memberUpdate', 'cluster.memberPromote',
  'maintenance.status', 'maintenance.alarm', 'maintenance.defragment', 'maintenance.hash', 'maintenance.hashKv', 'maintenance.moveLeader',
  'maintenance.snapshot', 'stream.next', 'stream.close',
  'auth.status', 'auth.call', 'watch.authorize',
  'history.changes',
  'metrics.all', 'debug.profile', 'debug.heap',
] as const;

export type FrontendMethod = (typeof FRONTEND_METHODS)[number];

/** Calls one front-end may have waiting at the core at once; beyond: 'too-many-requests'. */
export const MAX_CALLS_IN_FLIGHT = 50_000;
/** Range cursors one front-end may hold open at the core at once. */
export const MAX_OPEN_CURSORS = 1_024;
/** A front-end whose channel backlog exceeds this is stuck: it is restarted (its clients reconnect). */
export const MAX_CHANNEL_BACKLOG_BYTES = 64 * 1024 * 1024;
/**
 * Events one broadcast frame carries at most: a larger batch (a revision of a million deletes,
 * about 80 MB) goes out in parts, one per turn of the core's event loop, instead of being encoded
 * by the core and decoded by each front-end in one pass.
 */
export const BROADCAST_PART_EVENTS = 20_000;
/**
 * Events of committed batches the core may hold back behind a batch being sent in parts; beyond,
 * the front-ends are restarted (as for MAX_CHANNEL_BACKLOG_BYTES) rather than buffered for.
 */
export const MAX_HELD_BROADCAST_EVENTS = 4_000_000;
/**
 * The next part of a batch goes to a front-end once its channel's backlog is at most this: parts
 * go at the pace the front-end reads them (sent all at once, a million deletes passed
 * MAX_CHANNEL_BACKLOG_BYTES and the front-ends were restarted).
 */
export const BROADCAST_PACE_BYTES = 8 * 1024 * 1024;
/** A front-end whose backlog stays above BROADCAST_PACE_BYTES this long is restarted. */
export const BROADCAST_PACE_TIMEOUT_MS = 10_000;

/** Events in a batch. */
export function batchEvents(batch: readonly RevisionChanges[]): number {
  let events = 0;
  for (const item of batch) events += item.events.length;
  return events;
}

/** A batch cut into parts of at most `maxEvents` events, in order; a revision may span parts. */
export function splitRevisions(batch: readonly RevisionChanges[], maxEvents: number): RevisionChanges[][] {
  const parts: RevisionChanges[][] = [];
  let part: RevisionChanges[] = [];
  let room = maxEvents;
  for (const item of batch) {
    if (item.events.length === 0) part.push(item);
    for (let from = 0; from < item.events.length;) {
      if (room === 0) {
        parts.push(part);
        part = [];
        room = maxEvents;
      }
      const to = Math.min(item.events.length, from + room);
      part.push({ revision: item.revision, events: item.events.slice(from, to) });
      room -= to - from;
      from = to;
    }
  }
  parts.push(part);
  return parts;
}

/** The batch the parts of {@link splitRevisions} were cut from. */
export function joinRevisionParts(parts: readonly (readonly RevisionChanges[])[]): RevisionChanges[] {
  const batch: Array<{ revision: Revision; events: Event[] }> = [];
  for (const part of parts) {
    for (const item of part) {
      const last = batch[batch.length - 1];
      if (last !== undefined && last.revision === item.revision) {
        for (const event of item.events) last.events.push(event);
      } else batch.push({ revision: item.revision, events: [...item.events] });
    }
  }
  return batch;
}

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
import type { Revision } from '../../store/mvcc/types.js';
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

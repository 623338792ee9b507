/**
 * Typed calls of etcd's v3 API over the JSON gateway (field names as the gateway writes them:
 * proto names, int64 as strings, bytes as base64, zero values omitted).
 */
import { call, stream, type CallOptions } from './gateway.js';
import { fromBase64, prefixEnd, toBase64 } from '../lib/bytes.js';

export interface Header { cluster_id?: string; member_id?: string; revision?: string; raft_term?: string }
export interface Kv { key: string; value?: string; create_revision?: string; mod_revision?: string; version?: string; lease?: string }
export interface RangeResponse { header: Header; kvs?: Kv[]; more?: boolean; count?: string }
export interface Member { ID: string; name?: string; peerURLs?: string[]; clientURLs?: string[]; isLearner?: boolean }
export interface StatusResponse {
  header: Header; version?: string; dbSize?: string; leader?: string; raftIndex?: string; raftTerm?: string;
  raftAppliedIndex?: string; errors?: string[]; dbSizeInUse?: string; isLearner?: boolean;
}
export interface Alarm { memberID?: string; alarm?: 'NONE' | 'NOSPACE' | 'CORRUPT' }
export interface WatchEvent { type?: 'PUT' | 'DELETE'; kv: Kv; prev_kv?: Kv }
export interface WatchResponse {
  header: Header; watch_id?: string; created?: boolean; canceled?: boolean; compact_revision?: string;
  cancel_reason?: string; fragment?: boolean; events?: WatchEvent[];
}
export interface TxnResponse { header: Header; succeeded?: boolean; responses?: unknown[] }

/** A range request in the gateway's JSON (bytes already base64). */
export interface RangeRequest {
  key: string; range_end?: string; limit?: number; revision?: number; keys_only?: boolean; count_only?: boolean;
  serializable?: boolean; sort_order?: 'NONE' | 'ASCEND' | 'DESCEND'; sort_target?: 'KEY' | 'VERSION' | 'CREATE' | 'MOD' | 'VALUE';
}

export const range = (request: RangeRequest, options?: CallOptions): Promise<RangeResponse> => call('kv/range', request, options);
export const put = (request: { key: string; value: string; lease?: string; prev_kv?: boolean }, options?: CallOptions): Promise<{ header: Header }> => call('kv/put', request, options);
export const deleteRange = (request: { key: string; range_end?: string }, options?: CallOptions): Promise<{ header: Header; deleted?: string }> => call('kv/deleterange', request, options);
export const txn = (request: Record<string, unknown>, options?: CallOptions): Promise<TxnResponse> => call('kv/txn', request, options);
export const compact = (revision: number, physical: boolean, options?: CallOptions): Promise<{ header: Header }> => call('kv/compaction', { revision, physical }, options);
export const memberList = (options?: CallOptions): Promise<{ header: Header; members?: Member[] }> => call('cluster/member/list', {}, options);
export const status = (options?: CallOptions): Promise<StatusResponse> => call('maintenance/status', {}, options);
export const alarms = (options?: CallOptions): Promise<{ header: Header; alarms?: Alarm[] }> => call('maintenance/alarm', { action: 'GET' }, options);
export const defragment = (options?: CallOptions): Promise<{ header: Header }> => call('maintenance/defragment', {}, options);
export const moveLeader = (targetID: string, options?: CallOptions): Promise<{ header: Header }> => call('maintenance/transfer-leadership', { targetID }, options);
export const leases = (options?: CallOptions): Promise<{ header: Header; leases?: Array<{ ID: string }> }> => call('lease/leases', {}, options);
export const timeToLive = (id: string, options?: CallOptions): Promise<{ header: Header; ID: string; TTL?: string; grantedTTL?: string; keys?: string[] }> => call('lease/timetolive', { ID: id, keys: true }, options);
export const revoke = (id: string, options?: CallOptions): Promise<{ header: Header }> => call('lease/revoke', { ID: id }, options);
export const authStatus = (options?: CallOptions): Promise<{ header: Header; enabled?: boolean }> => call('auth/status', {}, options);
export const authenticate = (name: string, password: string): Promise<{ header: Header; token?: string }> => call('auth/authenticate', { name, password });

/** base64 of a text key. */
export function b64(text: string): string {
  return toBase64(new TextEncoder().encode(text));
}

/** The base64 range end covering every key with this (base64) prefix. */
export function b64PrefixEnd(prefix: string): string {
  return toBase64(prefixEnd(fromBase64(prefix)));
}

/** Options of {@link watch}. */
export interface WatchOptions {
  readonly key: string;
  readonly rangeEnd?: string;
  /** 0: from now. */
  readonly startRevision?: number;
  readonly prevKv?: boolean;
  /** Ask for a progress response right after creation (answers once the history was sent). */
  readonly progress?: boolean;
  readonly signal: AbortSignal;
}

/** A watch over the gateway's stream; each response is handed to `onResponse` as it arrives. */
export function watch(options: WatchOptions, onResponse: (response: WatchResponse) => void): Promise<void> {
  const create = { create_request: { key: options.key, range_end: options.rangeEnd, start_revision: options.startRevision ?? 0, prev_kv: options.prevKv ?? false } };
  const requests = options.progress === true ? [create, { progress_request: {} }] : [create];
  return stream<WatchResponse>('watch', requests, onResponse, { signal: options.signal });
}

/** What {@link readHistory} found. */
export interface History {
  /** Keys as they were at `baseRevision` (the compaction point), when history starts after a compaction; else empty. */
  readonly base: readonly Kv[];
  /** 0 when nothing was compacted (history starts at revision 1). */
  readonly baseRevision: number;
  /** Every event after the base, oldest first (at most `maxEvents`: the newest ones). */
  readonly events: readonly WatchEvent[];
  /** Older events were dropped to stay within `maxEvents`. */
  readonly truncated: boolean;
  /** The revision up to which the history is complete. */
  readonly revision: number;
}

/**
 * Every revision of a key (or range) still in the history: a watch from revision 1 with prev_kv
 * (restarted at the compaction revision when the history was compacted, with the state at that
 * revision read by a range as the base) plus a progress request; the progress answer comes once
 * every event up to the head was sent, and ends the read.
 */
export async function readHistory(request: { key: string; rangeEnd?: string; maxEvents: number; signal?: AbortSignal }): Promise<History> {
  let start = 1;
  let base: Kv[] = [];
  let baseRevision = 0;
  for (let attempt = 0; attempt < 5; attempt++) {
    const controller = new AbortController();
    const abort = (): void => controller.abort();
    request.signal?.addEventListener('abort', abort);
    const events: WatchEvent[] = [];
    let truncated = false;
    let compacted = 0;
    let revision = 0;
    try {
      await watch({ key: request.key, rangeEnd: request.rangeEnd, startRevision: start, prevKv: true, progress: true, signal: controller.signal }, (response) => {
        if (response.canceled === true) {
          compacted = Number(response.compact_revision ?? 0);
          controller.abort();
          return;
        }
        for (const event of response.events ?? []) {
          events.push(event);
          if (events.length > request.maxEvents) {
            events.shift();
            truncated = true;
          }
        }
        // A progress answer (watch_id -1, no events) after creation: everything up to its revision was sent.
        if (response.created !== true && (response.events ?? []).length === 0 && response.watch_id === '-1') {
          revision = Number(response.header.revision ?? 0);
          controller.abort();
        }
      });
    } finally {
      request.signal?.removeEventListener('abort', abort);
    }
    if (request.signal?.aborted === true) throw new DOMException('aborted', 'AbortError');
    if (compacted > 0) {
      const read = await range({ key: request.key, range_end: request.rangeEnd, revision: compacted });
      base = read.kvs ?? [];
      baseRevision = compacted;
      start = compacted + 1;
      continue;
    }
    return { base, baseRevision, events, truncated, revision };
  }
  throw new Error('the history kept being compacted while it was read; try again');
}

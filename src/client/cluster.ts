/**
 * Cluster membership and maintenance calls (MemberList, Status, HashKV, health probing), used
 * by kvctl's `member` and `endpoint` commands. Status and HashKV go to one named endpoint.
 */
import { decodeHeader, fromWire, fromWireNumber, toWire, type Int64Like, type ResponseHeader } from './codec.js';
import type { Connection } from './connection.js';
import { toKvError } from './errors.js';

/** One cluster member. */
export interface Member {
  readonly id: bigint;
  /** Empty while the member has not started. */
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  readonly isLearner: boolean;
}

/** Result of a member list. */
export interface MemberListResult {
  readonly header: ResponseHeader;
  readonly members: readonly Member[];
}

/** One member's status (Maintenance.Status). */
export interface StatusResult {
  readonly header: ResponseHeader;
  readonly version: string;
  /** Backend size in bytes. */
  readonly dbSize: bigint;
  /** Id of the leader as this member knows it (0 = none). */
  readonly leader: bigint;
  readonly raftIndex: bigint;
  readonly raftTerm: bigint;
  readonly raftAppliedIndex: bigint;
  readonly errors: readonly string[];
  /** Bytes of the backend in use. */
  readonly dbSizeInUse: bigint;
  readonly isLearner: boolean;
}

/** Result of HashKV on one member. */
export interface HashKvResult {
  readonly header: ResponseHeader;
  /** uint32 hash of the MVCC key space up to the revision. */
  readonly hash: number;
  readonly compactRevision: bigint;
}

/** Result of a health probe of one endpoint. */
export interface HealthResult {
  readonly endpoint: string;
  readonly health: boolean;
  /** Duration of the probe in ms. */
  readonly tookMs: number;
  /** Why it is unhealthy (absent when healthy). */
  readonly error?: string;
}

function decodeMember(raw: unknown): Member {
  const member = (raw ?? {}) as Record<string, unknown>;
  return {
    id: fromWire(member.ID),
    name: String(member.name ?? ''),
    peerUrls: ((member.peerURLs ?? []) as string[]).slice(),
    clientUrls: ((member.clientURLs ?? []) as string[]).slice(),
    isLearner: member.isLearner === true,
  };
}

/** Cluster and maintenance calls of a {@link Client}. */
export class ClusterApi {
  readonly #connection: Connection;

  /** Wraps `connection` (not owned). */
  constructor(connection: Connection) {
    this.#connection = connection;
  }

  /** Lists the cluster's members. */
  async memberList(options: { timeoutMs?: number } = {}): Promise<MemberListResult> {
    const { response } = await this.#connection.unary('Cluster', 'MemberList', {}, { retry: 'idempotent', ...options });
    return { header: decodeHeader(response.header), members: ((response.members ?? []) as unknown[]).map(decodeMember) };
  }

  /** The status of the member at `endpoint` (no failover). */
  async status(endpoint: string, options: { timeoutMs?: number } = {}): Promise<StatusResult> {
    const { response } = await this.#connection.unary('Maintenance', 'Status', {}, { retry: 'idempotent', endpoint, ...options });
    return {
      header: decodeHeader(response.header),
      version: String(response.version ?? ''),
      dbSize: fromWire(response.dbSize),
      leader: fromWire(response.leader),
      raftIndex: fromWire(response.raftIndex),
      raftTerm: fromWire(response.raftTerm),
      raftAppliedIndex: fromWire(response.raftAppliedIndex),
      errors: ((response.errors ?? []) as string[]).slice(),
      dbSizeInUse: fromWire(response.dbSizeInUse),
      isLearner: response.isLearner === true,
    };
  }

  /** HashKV of the member at `endpoint` at `revision` (0 = latest). */
  async hashKv(endpoint: string, revision: Int64Like = 0n, options: { timeoutMs?: number } = {}): Promise<HashKvResult> {
    const { response } = await this.#connection.unary('Maintenance', 'HashKV', { revision: toWire(revision) }, { retry: 'idempotent', endpoint, ...options });
    return { header: decodeHeader(response.header), hash: fromWireNumber(response.hash), compactRevision: fromWire(response.compact_revision) };
  }

  /**
   * Probes `endpoint` the way etcdctl does: a linearizable read of key "health"; a
   * permission-denied answer still counts as healthy.
   */
  async health(endpoint: string, options: { timeoutMs?: number } = {}): Promise<HealthResult> {
    const started = performance.now();
    try {
      await this.#connection.unary('KV', 'Range', { key: Buffer.from('health') }, { retry: 'idempotent', endpoint, ...options });
      return { endpoint, health: true, tookMs: performance.now() - started };
    } catch (error: unknown) {
      const kvError = toKvError(error);
      if (kvError.grpcCode === 7) return { endpoint, health: true, tookMs: performance.now() - started };
      return { endpoint, health: false, tookMs: performance.now() - started, error: kvError.message };
    }
  }

  /** Lists raised alarms (empty when none). */
  async alarms(options: { timeoutMs?: number } = {}): Promise<Array<{ memberId: bigint; alarm: string }>> {
    const { response } = await this.#connection.unary('Maintenance', 'Alarm', { action: 'GET', memberID: '0', alarm: 'NONE' }, { retry: 'idempotent', ...options });
    return ((response.alarms ?? []) as Array<Record<string, unknown>>).map((alarm) => ({ memberId: fromWire(alarm.memberID), alarm: String(alarm.alarm) }));
  }
}

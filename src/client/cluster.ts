/**
 * Cluster membership and maintenance calls (MemberList/Add/Remove/Update/Promote, Status,
 * HashKV, health probing), used by kvctl's `member` and `endpoint` commands and by the
 * replace-member helper (membership.ts). Status and HashKV go to one named endpoint.
 *
 * Membership changes are not idempotent (a repeated add makes a second member, a repeated
 * remove fails with "member not found"), so they are sent at most once: a change whose answer
 * was lost fails, typically with UnavailableError, and the caller reads the membership back to
 * learn whether it was applied (see membership.ts). Refusals come back as MembershipError
 * subclasses carrying etcd's messages.
 */
import { decodeHeader, fromWire, fromWireNumber, toBigInt, toWire, type Int64Like, type ResponseHeader } from './codec.js';
import type { Connection } from './connection.js';
import { InvalidMemberUrlsError, KvError, toKvError } from './errors.js';
import { peerUrlsProblem } from './peer-urls.js';

/** etcd's alarm types as they travel (AlarmType enum names). */
export type AlarmName = 'NONE' | 'NOSPACE' | 'CORRUPT';

/** One raised alarm: which member, which alarm. */
export interface AlarmMember {
  readonly memberId: bigint;
  readonly alarm: AlarmName;
}

/** Answer of an alarm call. `header` is absent when the server sends none (etcd 3.4 does not). */
export interface AlarmResult {
  readonly header: ResponseHeader | undefined;
  readonly alarms: readonly AlarmMember[];
}

const ALARM_NAMES: readonly AlarmName[] = ['NONE', 'NOSPACE', 'CORRUPT'];

function decodeAlarms(response: Record<string, unknown>): AlarmResult {
  const alarms = ((response.alarms ?? []) as Array<Record<string, unknown>>).map((alarm) => ({
    memberId: fromWire(alarm.memberID),
    alarm: (ALARM_NAMES.includes(alarm.alarm as AlarmName) ? alarm.alarm : ALARM_NAMES[Number(alarm.alarm)] ?? 'NONE') as AlarmName,
  }));
  return { header: response.header === null || response.header === undefined ? undefined : decodeHeader(response.header), alarms };
}

/** One cluster member. */
export interface Member {
  readonly id: bigint;
  /** Empty while the member has not started. */
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  readonly isLearner: boolean;
  /**
   * kvd extension (proto field 1001): the leader promotes this learner once it is in sync.
   * Always false from etcd, which does not know the field.
   */
  readonly autoPromote: boolean;
}

/** Result of a member list, and of a remove, update or promote (the membership after it). */
export interface MemberListResult {
  readonly header: ResponseHeader;
  readonly members: readonly Member[];
}

/** Result of a member add: the new member, and the membership after the add. */
export interface MemberAddResult {
  readonly header: ResponseHeader;
  /** The added member: no name or client URLs until it starts. */
  readonly member: Member;
  readonly members: readonly Member[];
}

/** What {@link ClusterApi.memberAdd} adds. */
export interface MemberAddRequest {
  /** Peer URLs of the new member (at least one; checked as etcd's Go client checks them). */
  readonly peerUrls: readonly string[];
  /** Add a learner (non-voting; promote it once it is in sync). Default false. */
  readonly isLearner?: boolean;
  /**
   * kvd extension, only with `isLearner`: kvd's leader promotes the learner by itself once it
   * is in sync. etcd ignores it (the member stays a learner). Default false.
   */
  readonly autoPromote?: boolean;
}

/** Options of the membership calls: a deadline (ms; default the client's) and cancellation. */
export interface MemberCallOptions {
  readonly timeoutMs?: number;
  readonly signal?: AbortSignal;
}

/** Options of memberList. */
export interface MemberListOptions extends MemberCallOptions {
  /**
   * Read the membership as the leader has committed it (a ReadIndex barrier first; etcd 3.5's
   * field, ignored by etcd 3.4, which answers from the member's applied state either way).
   */
  readonly linearizable?: boolean;
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
    autoPromote: member.autoPromote === true,
  };
}

function decodeMembers(raw: unknown): Member[] {
  return ((raw ?? []) as unknown[]).map(decodeMember);
}

/** A member id for a uint64 field (a negative int64 is read as its two's complement). */
function memberIdToWire(id: Int64Like): string {
  return BigInt.asUintN(64, toBigInt(id)).toString();
}

/** Refuses peer URLs etcd's Go client would refuse, with its message, before sending. */
function checkPeerUrls(peerUrls: readonly string[]): void {
  const problem = peerUrlsProblem(peerUrls);
  if (problem !== undefined) throw new InvalidMemberUrlsError('member-bad-urls', { detail: problem });
}

/** Cluster and maintenance calls of a {@link Client}. */
export class ClusterApi {
  readonly #connection: Connection;

  /** Wraps `connection` (not owned). */
  constructor(connection: Connection) {
    this.#connection = connection;
  }

  /** Lists the cluster's members (in the server's order; etcd sorts them by id). */
  async memberList(options: MemberListOptions = {}): Promise<MemberListResult> {
    const { linearizable, ...callOptions } = options;
    const { response } = await this.#connection.unary('Cluster', 'MemberList', linearizable === true ? { linearizable: true } : {}, { retry: 'idempotent', ...callOptions });
    return { header: decodeHeader(response.header), members: decodeMembers(response.members) };
  }

  /**
   * Adds a member (a voter, or a learner with `isLearner`). Sent at most once. Refusals:
   * PeerUrlsExistError, MemberExistsError, TooManyLearnersError, UnhealthyClusterError,
   * NotEnoughStartedMembersError, InvalidMemberUrlsError (also thrown before sending, with
   * etcd's Go client's message, for a URL it would refuse). etcd derives the new id from the
   * peer URLs and the current second: re-adding the URLs of a member removed within the same
   * second is refused with MemberNotFoundError (the id is a removed one's).
   */
  async memberAdd(request: MemberAddRequest, options: MemberCallOptions = {}): Promise<MemberAddResult> {
    checkPeerUrls(request.peerUrls);
    if (request.autoPromote === true && request.isLearner !== true) {
      throw new KvError('invalid-argument', { detail: 'autoPromote applies to learners only (set isLearner)' });
    }
    const wire = { peerURLs: [...request.peerUrls], isLearner: request.isLearner === true, autoPromote: request.autoPromote === true };
    const { response } = await this.#connection.unary('Cluster', 'MemberAdd', wire, { retry: 'at-most-once', ...options });
    return { header: decodeHeader(response.header), member: decodeMember(response.member), members: decodeMembers(response.members) };
  }

  /**
   * Removes member `id`. Sent at most once. Refusals: MemberNotFoundError,
   * UnhealthyClusterError, NotEnoughStartedMembersError.
   */
  async memberRemove(id: Int64Like, options: MemberCallOptions = {}): Promise<MemberListResult> {
    const { response } = await this.#connection.unary('Cluster', 'MemberRemove', { ID: memberIdToWire(id) }, { retry: 'at-most-once', ...options });
    return { header: decodeHeader(response.header), members: decodeMembers(response.members) };
  }

  /**
   * Replaces the peer URLs of member `id`. Sent at most once. Refusals: MemberNotFoundError,
   * PeerUrlsExistError, InvalidMemberUrlsError (also before sending, as for memberAdd).
   * etcd 3.4 loses a learner's learner flag in its membership when its URLs are updated (raft
   * still has it as a learner), and then refuses to promote it: update learners after promotion.
   */
  async memberUpdate(id: Int64Like, peerUrls: readonly string[], options: MemberCallOptions = {}): Promise<MemberListResult> {
    checkPeerUrls(peerUrls);
    const { response } = await this.#connection.unary('Cluster', 'MemberUpdate', { ID: memberIdToWire(id), peerURLs: [...peerUrls] }, { retry: 'at-most-once', ...options });
    return { header: decodeHeader(response.header), members: decodeMembers(response.members) };
  }

  /**
   * Promotes learner `id` to a voter. Sent at most once. Refusals: LearnerNotReadyError (not
   * started or behind the leader: the one refusal worth retrying after a wait; the caller
   * decides), MemberNotLearnerError (already a voter), MemberNotFoundError,
   * NotEnoughStartedMembersError.
   */
  async memberPromote(id: Int64Like, options: MemberCallOptions = {}): Promise<MemberListResult> {
    const { response } = await this.#connection.unary('Cluster', 'MemberPromote', { ID: memberIdToWire(id) }, { retry: 'at-most-once', ...options });
    return { header: decodeHeader(response.header), members: decodeMembers(response.members) };
  }

  /** The status of the member at `endpoint` (no failover). */
  async status(endpoint: string, options: MemberCallOptions = {}): Promise<StatusResult> {
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
    return [...(await this.alarmList(options)).alarms];
  }

  /** Maintenance.Alarm GET: every raised alarm, with the answer's header. */
  async alarmList(options: MemberCallOptions = {}): Promise<AlarmResult> {
    const { response } = await this.#connection.unary('Maintenance', 'Alarm', { action: 'GET', memberID: '0', alarm: 'NONE' }, { retry: 'idempotent', ...options });
    return decodeAlarms(response);
  }

  /**
   * Maintenance.Alarm ACTIVATE or DEACTIVATE of `alarm` for `memberId` (etcd accepts any member
   * id from clients). Answers the alarm raised (also when it already was) or cleared. Sent at
   * most once.
   */
  async alarm(request: { readonly action: 'activate' | 'deactivate'; readonly memberId: Int64Like; readonly alarm: AlarmName }, options: MemberCallOptions = {}): Promise<AlarmResult> {
    const wire = { action: request.action === 'activate' ? 'ACTIVATE' : 'DEACTIVATE', memberID: toWire(toBigInt(request.memberId)), alarm: request.alarm };
    const { response } = await this.#connection.unary('Maintenance', 'Alarm', wire, { retry: 'at-most-once', ...options });
    return decodeAlarms(response);
  }

  /**
   * Clears alarms as etcd's client does (`etcdctl alarm disarm`): without a member, every raised
   * alarm, one DEACTIVATE each; answers what was cleared (without a header, as etcd's client).
   */
  async alarmDisarm(target: AlarmMember | undefined = undefined, options: MemberCallOptions = {}): Promise<AlarmResult> {
    if (target !== undefined && (target.memberId !== 0n || target.alarm !== 'NONE')) return this.alarm({ action: 'deactivate', ...target }, options);
    const listed = await this.alarmList(options);
    const cleared: AlarmMember[] = [];
    for (const alarm of listed.alarms) cleared.push(...(await this.alarm({ action: 'deactivate', ...alarm }, options)).alarms);
    // etcd's client answers the expansion with no header (its AlarmResponse is assembled locally).
    return { header: undefined, alarms: cleared };
  }

  /** Maintenance.Defragment of the member at `endpoint` (no failover); answers when it is done. */
  async defragment(endpoint: string, options: MemberCallOptions = {}): Promise<{ header: ResponseHeader | undefined }> {
    const { response } = await this.#connection.unary('Maintenance', 'Defragment', {}, { retry: 'idempotent', endpoint, ...options });
    return { header: response.header === null || response.header === undefined ? undefined : decodeHeader(response.header) };
  }
}

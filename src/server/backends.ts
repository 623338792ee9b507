/**
 * The member seen through the API's backend interfaces (src/api/backend.ts): KV, Lease, Cluster
 * and Maintenance. Writes go through Raft via KvdMember.propose; linearizable reads wait for a
 * ReadIndex barrier and then read the local store; serializable reads read it at once.
 */
import { randomBytes } from 'node:crypto';
import type {
  AuthAnswer, CallOptions, ClusterBackend, KvBackend, LeaseBackend, LeaseTimeToLive, MaintenanceBackend, Member, RangeReadOptions, ResponseHeader, AuthBackend, WatchBackend,
} from '../api/backend.js';
import { onCancelOf } from '../api/backend.js';
import type { AuthMutation, PasswordHash, Principal } from '../store/auth/index.js';
import { bcryptFromHashedPassword, hashPassword } from './auth/passwords.js';
import type { RangeRequest, RangeResponse, WriteRequest, WriteResult, LeaseId } from '../store/mvcc/types.js';
import type { StoreDump } from '../store/mvcc/index.js';
import { KvdError, type ErrorCode } from '../util/errors.js';
import { TurnBatch } from '../util/turn-batch.js';
import type { KvdMember } from './member.js';
import { SERVER_VERSION } from './member.js';

/** Deadline of a call: the client's, capped by the server's request timeout. */
function deadlineOf(member: KvdMember, options: CallOptions): number {
  return Math.min(options.deadline, Date.now() + member.config.requestTimeoutMs);
}

/** Resolves with `promise`, or rejects with 'canceled' when `signal` aborts (the client went away). */
async function untilAborted(promise: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) throw new KvdError('canceled');
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(new KvdError('canceled'));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    await Promise.race([promise, aborted]);
  } finally {
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort);
  }
}

function toHeader(member: KvdMember, revision?: number): ResponseHeader {
  return member.header(revision);
}

/**
 * Proposes a write and answers once it is applied here. Not an async function, and one reaction on
 * the waiter's promise: an async write and its awaits were a promise, a suspended frame and
 * microtask turns more for every write.
 */
function proposeWrite(member: KvdMember, request: WriteRequest, options: CallOptions, auth: Principal | undefined): Promise<{ header: ResponseHeader; result: WriteResult }> {
  return member.gateway.propose(request, { deadlineMs: deadlineOf(member, options), onCancel: onCancelOf(options), trace: options.trace, auth }).then((applied) => {
    if (!applied.ok) throw applied.error;
    const answer = { header: toHeader(member, applied.revision), result: applied.result as WriteResult };
    // etcd's `physical: true`: answer once this member has removed the compacted history, however
    // long that takes (etcd does not bound it by its request timeout either), unless the client leaves.
    if (request.type === 'compact' && request.request.physical) return untilAborted(member.store.waitCompacted(request.request.revision), options.signal).then(() => answer);
    return answer;
  });
}

/** Serializable one-key reads held for the end of an event-loop turn, at most (see TurnBatch). */
const SERIALIZABLE_READS_BATCHED_MAX = 4_096;

export function kvBackend(member: KvdMember): KvBackend {
  const serializableReads = new TurnBatch({ maxQueued: SERIALIZABLE_READS_BATCHED_MAX });
  return {
    async range(request: RangeRequest, options: CallOptions) {
      if (!request.serializable) await member.gateway.linearizableBarrier({ deadlineMs: deadlineOf(member, options) });
      await requireRead(member, options, request.key, request.rangeEnd);
      const authRevision = member.state.auth.revision;
      const response = await member.store.range(request);
      // etcd's doSerialize: the auth state changed during the read: decide again.
      if (member.state.auth.revision !== authRevision) await requireRead(member, options, request.key, request.rangeEnd);
      return { header: toHeader(member, response.revision), response };
    },
    async openRange(request: RangeRequest, options: RangeReadOptions) {
      if (!request.serializable) await member.gateway.linearizableBarrier({ deadlineMs: deadlineOf(member, options) });
      await requireRead(member, options, request.key, request.rangeEnd);
      // The read's own options serve the cursor (its signal, made on first use only, and the sort bound).
      const cursor = member.store.openRange(request, options);
      return { header: toHeader(member, cursor.revision), cursor };
    },
    rangeKey(request: RangeRequest, options: CallOptions) {
      // Only where requireRead has nothing to check (no auth); etcd's doSerialize re-check is moot then.
      if (request.rangeEnd.length !== 0 || member.authGate.active || options.auth !== undefined) return undefined;
      const read = (): { header: ResponseHeader; response: RangeResponse } => {
        const response = member.store.rangeKeyNow(request);
        if (response === undefined) throw new KvdError('internal', { detail: 'a one-key range had no answer' });
        return { header: toHeader(member, response.revision), response };
      };
      // Auth enabled while the read waited (an applied entry): it is checked then, as openRange checks after the barrier.
      const readChecked = (): { header: ResponseHeader; response: RangeResponse } | Promise<{ header: ResponseHeader; response: RangeResponse }> =>
        member.authGate.active ? requireRead(member, options, request.key, request.rangeEnd).then(read) : read();
      if (request.serializable) return serializableReads.wait()?.then(readChecked) ?? read();
      return member.gateway.linearizableBarrier({ deadlineMs: deadlineOf(member, options) }).then(readChecked);
    },
    write(request: WriteRequest, options: CallOptions) {
      try {
        // Decided when applied (the principal travels in the entry), on every member alike; waited
        // for only while a token is being verified.
        const principal = member.authGate.principal(options.auth);
        return principal instanceof Promise ? principal.then((auth) => proposeWrite(member, request, options, auth)) : proposeWrite(member, request, options, principal);
      } catch (error: unknown) {
        return Promise.reject(error);
      }
    },
  };
}

export function leaseBackend(member: KvdMember): LeaseBackend {
  return {
    async grant(request, options) {
      let id: LeaseId = request.id;
      if (id === 0n) {
        // Like etcd: a random positive int64 not in use, chosen before proposing so apply stays deterministic.
        do { id = randomBytes(8).readBigInt64BE() & 0x7fff_ffff_ffff_ffffn; } while (id === 0n || member.lessor.has(id));
      }
      const auth = await principalOf(member, options);
      const applied = await member.gateway.propose({ type: 'lease-grant', id, ttlSeconds: request.ttlSeconds }, { deadlineMs: deadlineOf(member, options), onCancel: onCancelOf(options), trace: options.trace, auth });
      if (!applied.ok) throw applied.error;
      const result = applied.result;
      if (result.type !== 'lease-grant') throw new KvdError('internal');
      return { header: toHeader(member, applied.revision), id: result.id, ttlSeconds: result.ttlSeconds };
    },
    async revoke(id, options) {
      const auth = await principalOf(member, options);
      const applied = await member.gateway.propose({ type: 'lease-revoke', id }, { deadlineMs: deadlineOf(member, options), onCancel: onCancelOf(options), trace: options.trace, auth });
      if (!applied.ok) throw applied.error;
      return { header: toHeader(member, applied.revision) };
    },
    async keepAlive(id, options) {
      const ttlSeconds = await member.leases.renew(id, { deadlineMs: deadlineOf(member, options) });
      return { header: toHeader(member), ttlSeconds };
    },
    async timeToLive(request, options) {
      await member.gateway.linearizableBarrier({ deadlineMs: deadlineOf(member, options) });
      const lease: LeaseTimeToLive = await member.leases.timeToLive(request.id, { keys: request.keys, deadlineMs: deadlineOf(member, options) });
      // kvd (as etcd 3.5+): the keys are shown only to a caller who may read every one of them.
      if (request.keys && member.authGate.active) {
        const principal = await principalOf(member, options);
        member.authGate.require(principal, { kind: 'access', checks: lease.keys.map((key) => ({ access: 'read' as const, key, rangeEnd: new Uint8Array(0) })) });
      }
      return { header: toHeader(member), lease };
    },
    async leases(options) {
      await member.gateway.linearizableBarrier({ deadlineMs: deadlineOf(member, options) });
      return { header: toHeader(member), ids: member.lessor.leases().map((lease) => lease.id) };
    },
    header: () => toHeader(member),
  };
}

function toMember(record: { id: bigint; name: string; peerUrls: readonly string[]; clientUrls: readonly string[]; isLearner: boolean; autoPromote: boolean }): Member {
  return { id: record.id, name: record.name, peerUrls: record.peerUrls, clientUrls: record.clientUrls, isLearner: record.isLearner, autoPromote: record.autoPromote };
}

export function clusterBackend(member: KvdMember): ClusterBackend {
  const limits = (options: CallOptions): { deadlineMs: number; signal: AbortSignal } => ({ deadlineMs: deadlineOf(member, options), signal: options.signal });
  // etcd's membership responses carry no revision in their header.
  const answer = (members: readonly Parameters<typeof toMember>[0][]): { header: ResponseHeader; members: Member[] } => ({ header: toHeader(member, 0), members: members.map(toMember) });
  return {
    async memberList(request, options) {
      if (request.linearizable) await member.gateway.linearizableBarrier({ deadlineMs: deadlineOf(member, options) });
      return answer(member.membership.active());
    },
    async memberAdd(request, options) {
      await requireAdmin(member, options);
      const added = await member.membershipOps.add(request, limits(options));
      return { ...answer(added.members), member: toMember(added.member) };
    },
    async memberRemove(request, options) {
      await requireAdmin(member, options);
      return answer(await member.membershipOps.remove(request.id, limits(options)));
    },
    async memberUpdate(request, options) {
      await requireAdmin(member, options);
      return answer(await member.membershipOps.update(request.id, request.peerUrls, limits(options)));
    },
    async memberPromote(request, options) {
      await requireAdmin(member, options);
      return answer(await member.membershipOps.promote(request.id, limits(options)));
    },
  };
}

/**
 * Maintenance.Snapshot streams open at once on one member; more are refused with
 * `etcdserver: too many requests`. Each holds a LevelDB snapshot (which keeps LevelDB from
 * dropping what later writes replace) and about two chunks of memory.
 */
export const SNAPSHOT_STREAMS_MAX = 4;

export function maintenanceBackend(member: KvdMember): MaintenanceBackend {
  let snapshotStreams = 0;
  return {
    async status() {
      const dbSizeBytes = await member.store.dbSizeBytes();
      return {
        header: toHeader(member),
        status: {
          version: SERVER_VERSION,
          dbSizeBytes,
          // Live records only (what a defragmented backend would take); never more than the files.
          dbSizeInUseBytes: Math.min(member.store.liveBytes, dbSizeBytes),
          leader: member.leader,
          raftIndex: member.commitIndex,
          raftTerm: member.term,
          raftAppliedIndex: member.appliedIndex,
          errors: member.alarmTexts(),
          isLearner: member.isLearner,
          storageVersion: '',
          dbSizeQuotaBytes: member.config.quotaBackendBytes,
        },
      };
    },
    async alarm(request, options) {
      // etcd checks only that a token is valid (the alarm goes through Raft with the caller's
      // identity), and answers an invalid one untranslated, as the other maintenance calls.
      if (options.auth !== undefined) {
        try {
          await principalOf(member, options);
        } catch (error: unknown) {
          if (error instanceof KvdError && error.code === 'invalid-auth-token') throw new KvdError('admin-invalid-auth-token');
          throw error;
        }
      }
      if (request.action === 'get') {
        // etcd 3.4 filters GET by alarm type only (memberID is ignored).
        await member.gateway.linearizableBarrier({ deadlineMs: deadlineOf(member, options) });
        return { header: toHeader(member), alarms: member.state.alarms.list(request.alarm) };
      }
      const applied = await member.gateway.propose(
        { type: 'alarm', action: request.action, memberId: request.memberId, alarm: request.alarm, origin: 'client' },
        { deadlineMs: deadlineOf(member, options), onCancel: onCancelOf(options) },
      );
      if (!applied.ok) throw applied.error;
      if (applied.result.type !== 'alarm') throw new KvdError('internal');
      return { header: toHeader(member), alarms: applied.result.alarms };
    },
    async defragment(options) {
      await requireAdminMaintenance(member, options);
      await member.defragment();
      return { header: toHeader(member) };
    },
    async snapshot(options) {
      await requireAdminMaintenance(member, options);
      // A point-in-time dump of the member's backend (dump.ts), framed as a snapshot file:
      // zero-padded to a multiple of 512 and followed by its SHA-256 (what etcdctl checks).
      // Writes go on while it streams; the api layer waits for the stream to drain.
      if (snapshotStreams >= SNAPSHOT_STREAMS_MAX) throw new KvdError('too-many-requests');
      snapshotStreams += 1;
      let dump: StoreDump;
      try {
        dump = await member.store.openDump();
      } catch (error: unknown) {
        snapshotStreams -= 1;
        throw error;
      }
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        snapshotStreams -= 1;
      };
      const framed = dump.framedChunks();
      const chunks: AsyncIterableIterator<Uint8Array> = {
        next: async () => {
          try {
            const result = await framed.next();
            if (result.done === true) release();
            return result;
          } catch (error: unknown) {
            release();
            throw error;
          }
        },
        return: async () => {
          release();
          return (await framed.return?.()) ?? { done: true, value: undefined };
        },
        [Symbol.asyncIterator]: () => chunks,
      };
      member.logger.info({ event: 'snapshot-stream-started', revision: dump.revision, bytes: dump.framedSizeBytes, entries: dump.entries }, 'streaming a snapshot to a client');
      return { header: toHeader(member, dump.revision), sizeBytes: dump.framedSizeBytes, version: SERVER_VERSION, chunks };
    },
    async hash(options) {
      await requireAdminMaintenance(member, options);
      const result = await member.store.hash();
      return { header: toHeader(member, result.revision), hash: result.hash };
    },
    async hashKv(request, options) {
      await requireAdminMaintenance(member, options);
      const result = await member.store.hashKV(request.revision);
      return { header: toHeader(member), hash: result.hash, compactRevision: result.compactRevision, hashRevision: result.hashRevision };
    },
    async moveLeader(request, options) {
      // etcd's MoveLeader: asked of the leader, to a voting member; waits until the transferee leads.
      // kvd: root only (etcd 3.4 lets anyone move the leader, and ignores a token while auth is off).
      if (member.authGate.active) await requireAdminMaintenance(member, options);
      if (!member.isLeader) throw new KvdError('not-leader');
      const target = member.membership.get(request.targetId);
      if (target === undefined || target.isLearner) throw new KvdError('bad-leader-transferee');
      member.transferLeadership(request.targetId);
      const deadline = deadlineOf(member, options);
      while (member.leader !== request.targetId) {
        if (Date.now() >= deadline || options.signal.aborted) throw new KvdError('timeout-leader-transfer');
        await new Promise((resolve) => setTimeout(resolve, member.config.heartbeatIntervalMs));
      }
      return { header: toHeader(member) };
    },
  };
}

/** The principal of a call (see AuthGate.principal), awaited only when a JWT must be verified. */
async function principalOf(member: KvdMember, options: CallOptions): Promise<Principal> {
  return member.authGate.principal(options.auth);
}

/** Refuses a read the caller may not make (etcd checks reads on the serving member, after the barrier). */
async function requireRead(member: KvdMember, options: CallOptions, key: Uint8Array, rangeEnd: Uint8Array): Promise<void> {
  if (!member.authGate.active && options.auth === undefined) return;
  member.authGate.require(await principalOf(member, options), { kind: 'access', checks: [{ access: 'read', key, rangeEnd }] });
}

/**
 * Refuses a maintenance RPC to anyone but root, with etcd's untranslated auth errors
 * (v3rpc/maintenance.go answers "auth: permission denied" as UNKNOWN).
 */
async function requireAdminMaintenance(member: KvdMember, options: CallOptions): Promise<void> {
  if (!member.authGate.active && options.auth === undefined) return;
  try {
    member.authGate.require(await principalOf(member, options), { kind: 'admin' });
  } catch (error: unknown) {
    if (error instanceof KvdError) throw new KvdError(ADMIN_ERRORS[error.code] ?? error.code);
    throw error;
  }
}

const ADMIN_ERRORS: Partial<Record<ErrorCode, ErrorCode>> = {
  'invalid-auth-token': 'admin-invalid-auth-token',
  'auth-user-empty': 'admin-user-empty',
  'auth-user-not-found': 'admin-user-not-found',
  'permission-denied': 'admin-permission-denied',
};

/** Refuses a membership change to anyone but root (etcd's checkMembershipOperationPermission). */
async function requireAdmin(member: KvdMember, options: CallOptions): Promise<Principal> {
  const principal = await principalOf(member, options);
  member.authGate.require(principal, { kind: 'admin' });
  return principal;
}

/** The read check of a watch create, for the Watch service (see WatchBackend.authorizeWatch). */
export function watchAuthorizer(member: KvdMember): NonNullable<WatchBackend['authorizeWatch']> {
  return (range, auth) => {
    if (!member.authGate.active && auth === undefined) return undefined;
    const options = { deadline: Date.now() + member.config.requestTimeoutMs, signal: new AbortController().signal, auth };
    return requireRead(member, options, range.key, range.rangeEnd);
  };
}

export function authBackend(member: KvdMember): AuthBackend {
  const gate = member.authGate;
  const barrier = (options: CallOptions): Promise<void> => member.gateway.linearizableBarrier({ deadlineMs: deadlineOf(member, options) });
  const answer = (extra: Omit<AuthAnswer, 'header'> = {}): AuthAnswer => ({ header: toHeader(member), ...extra });
  /** Proposes an auth change and waits for it to apply; the applier checks root access. */
  const change = async (request: AuthMutation, options: CallOptions): Promise<AuthAnswer> => {
    const principal = await principalOf(member, options);
    const applied = await member.gateway.propose(request, { deadlineMs: deadlineOf(member, options), onCancel: onCancelOf(options), auth: principal });
    if (!applied.ok) throw applied.error;
    return answer();
  };
  /** Root may; or `alternative` (self or own role) with a valid identity. */
  const requireAdminOr = async (options: CallOptions, alternative: (principal: Principal) => boolean): Promise<void> => {
    const principal = await principalOf(member, options);
    try {
      gate.require(principal, { kind: 'admin' });
    } catch (error: unknown) {
      if (!(error instanceof KvdError) || error.code === 'invalid-auth-token' || !alternative(principal)) throw error;
      gate.require(principal, { kind: 'authenticated' });
    }
  };
  /** A password hash made here, before proposing (the password never enters the log). */
  const passwordOf = async (request: { password: string; hashedPassword: string }): Promise<PasswordHash> => {
    if (request.password === '' && request.hashedPassword !== '') return bcryptFromHashedPassword(request.hashedPassword);
    return hashPassword(request.password);
  };
  /** Refuses a non-root caller before paying for a password hash (the applier checks again). */
  const adminFirst = async (options: CallOptions): Promise<void> => {
    if (!gate.active) return;
    await barrier(options);
    await requireAdmin(member, options);
  };
  return {
    async status() {
      return { header: toHeader(member), enabled: member.state.auth.enabled, authRevision: member.state.auth.revision };
    },
    async call(request, options) {
      const auth = member.state.auth;
      switch (request.method) {
        case 'enable':
          return change({ type: 'auth-enable', tokenKey: new Uint8Array(randomBytes(32)) }, options);
        case 'disable':
          return change({ type: 'auth-disable' }, options);
        case 'authenticate': {
          if (!auth.enabled) throw new KvdError('auth-not-enabled');
          await barrier(options);
          return answer({ token: await gate.authenticate(request.name, request.password) });
        }
        case 'user-add': {
          if (request.name === '') throw new KvdError('auth-user-empty');
          await adminFirst(options);
          const password = request.noPassword ? undefined : await passwordOf(request);
          return change({ type: 'auth-user-add', name: request.name, password, noPassword: request.noPassword }, options);
        }
        case 'user-change-password': {
          await adminFirst(options);
          return change({ type: 'auth-user-change-password', name: request.name, password: await passwordOf(request) }, options);
        }
        case 'user-delete':
          return change({ type: 'auth-user-delete', name: request.name }, options);
        case 'user-grant-role':
          return change({ type: 'auth-user-grant-role', user: request.user, role: request.role }, options);
        case 'user-revoke-role':
          return change({ type: 'auth-user-revoke-role', name: request.name, role: request.role }, options);
        case 'role-add':
          return change({ type: 'auth-role-add', name: request.name }, options);
        case 'role-delete':
          return change({ type: 'auth-role-delete', role: request.role }, options);
        case 'role-grant-permission':
          return change({ type: 'auth-role-grant-permission', name: request.name, permission: request.permission }, options);
        case 'role-revoke-permission':
          return change({ type: 'auth-role-revoke-permission', role: request.role, key: request.key, rangeEnd: request.rangeEnd }, options);
        case 'user-get': {
          await barrier(options);
          await requireAdminOr(options, (principal) => principal.user === request.name);
          const user = member.state.auth.user(request.name);
          if (user === undefined) throw new KvdError('auth-user-not-found');
          return answer({ roles: user.roles });
        }
        case 'user-list':
          await barrier(options);
          await requireAdmin(member, options);
          return answer({ users: member.state.auth.userNames() });
        case 'role-get': {
          await barrier(options);
          await requireAdminOr(options, (principal) => member.state.auth.user(principal.user)?.roles.includes(request.role) === true);
          const role = member.state.auth.role(request.role);
          if (role === undefined) throw new KvdError('auth-role-not-found');
          return answer({ permissions: role.permissions });
        }
        case 'role-list':
          await barrier(options);
          await requireAdmin(member, options);
          return answer({ roles: member.state.auth.roleNames() });
      }
    },
  };
}

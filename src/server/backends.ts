/**
 * The member seen through the API's backend interfaces (src/api/backend.ts): KV, Lease, Cluster
 * and Maintenance. Writes go through Raft via KvdMember.propose; linearizable reads wait for a
 * ReadIndex barrier and then read the local store; serializable reads read it at once.
 */
import { randomBytes } from 'node:crypto';
import type {
  CallOptions, ClusterBackend, KvBackend, LeaseBackend, LeaseTimeToLive, MaintenanceBackend, Member, RangeReadOptions, ResponseHeader, AuthBackend,
} from '../api/backend.js';
import type { RangeRequest, WriteRequest, WriteResult, LeaseId } from '../store/mvcc/types.js';
import type { StoreDump } from '../store/mvcc/index.js';
import { KvdError } from '../util/errors.js';
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

export function kvBackend(member: KvdMember): KvBackend {
  return {
    async range(request: RangeRequest, options: CallOptions) {
      if (!request.serializable) await member.gateway.linearizableBarrier({ deadlineMs: deadlineOf(member, options) });
      const response = await member.store.range(request);
      return { header: toHeader(member, response.revision), response };
    },
    async openRange(request: RangeRequest, options: RangeReadOptions) {
      if (!request.serializable) await member.gateway.linearizableBarrier({ deadlineMs: deadlineOf(member, options) });
      const cursor = member.store.openRange(request, { get signal() { return options.signal; }, sortBytesMax: options.sortBytesMax });
      return { header: toHeader(member, cursor.revision), cursor };
    },
    async write(request: WriteRequest, options: CallOptions) {
      const applied = await member.gateway.propose(request, { deadlineMs: deadlineOf(member, options), signal: options.signal, trace: options.trace });
      if (!applied.ok) throw applied.error;
      // etcd's `physical: true`: answer once this member has removed the compacted history, however
      // long that takes (etcd does not bound it by its request timeout either), unless the client leaves.
      if (request.type === 'compact' && request.request.physical) await untilAborted(member.store.waitCompacted(request.request.revision), options.signal);
      return { header: toHeader(member, applied.revision), result: applied.result as WriteResult };
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
      const applied = await member.gateway.propose({ type: 'lease-grant', id, ttlSeconds: request.ttlSeconds }, { deadlineMs: deadlineOf(member, options), signal: options.signal, trace: options.trace });
      if (!applied.ok) throw applied.error;
      const result = applied.result;
      if (result.type !== 'lease-grant') throw new KvdError('internal');
      return { header: toHeader(member, applied.revision), id: result.id, ttlSeconds: result.ttlSeconds };
    },
    async revoke(id, options) {
      const applied = await member.gateway.propose({ type: 'lease-revoke', id }, { deadlineMs: deadlineOf(member, options), signal: options.signal, trace: options.trace });
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
      const added = await member.membershipOps.add(request, limits(options));
      return { ...answer(added.members), member: toMember(added.member) };
    },
    async memberRemove(request, options) {
      return answer(await member.membershipOps.remove(request.id, limits(options)));
    },
    async memberUpdate(request, options) {
      return answer(await member.membershipOps.update(request.id, request.peerUrls, limits(options)));
    },
    async memberPromote(request, options) {
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
      if (request.action === 'get') {
        // etcd 3.4 filters GET by alarm type only (memberID is ignored).
        await member.gateway.linearizableBarrier({ deadlineMs: deadlineOf(member, options) });
        return { header: toHeader(member), alarms: member.state.alarms.list(request.alarm) };
      }
      const applied = await member.gateway.propose(
        { type: 'alarm', action: request.action, memberId: request.memberId, alarm: request.alarm, origin: 'client' },
        { deadlineMs: deadlineOf(member, options), signal: options.signal },
      );
      if (!applied.ok) throw applied.error;
      if (applied.result.type !== 'alarm') throw new KvdError('internal');
      return { header: toHeader(member), alarms: applied.result.alarms };
    },
    async defragment() {
      await member.defragment();
      return { header: toHeader(member) };
    },
    async snapshot() {
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
    async hash() {
      const result = await member.store.hash();
      return { header: toHeader(member, result.revision), hash: result.hash };
    },
    async hashKv(request) {
      const result = await member.store.hashKV(request.revision);
      return { header: toHeader(member), hash: result.hash, compactRevision: result.compactRevision, hashRevision: result.hashRevision };
    },
    async moveLeader(request, options) {
      // etcd's MoveLeader: asked of the leader, to a voting member; waits until the transferee leads.
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

export function authBackend(member: KvdMember): AuthBackend {
  return {
    async status() {
      return { header: toHeader(member), enabled: false, authRevision: 0 };
    },
  };
}

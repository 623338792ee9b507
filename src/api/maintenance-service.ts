/**
 * The Maintenance service over a {@link MaintenanceBackend}; RPCs whose backend method is absent
 * answer UNIMPLEMENTED.
 */
import type * as grpc from '@grpc/grpc-js';
import { KvdError } from '../util/errors.js';
import type { AlarmType, MaintenanceBackend } from './backend.js';
import { callOptionsOf, toStatus, unary, waitForDrain, type HandlerContext } from './call.js';
import { unimplementedUnary } from './cluster-service.js';
import { decodeRequestedRevision, decodeUint64, encodeHeader, type PbMessage } from './codec.js';

/** Options of {@link createMaintenanceService}. */
export interface MaintenanceServiceOptions extends HandlerContext {
  readonly backend: MaintenanceBackend;
}

const ALARM_TYPES: Record<string, AlarmType> = { NONE: 'none', NOSPACE: 'nospace', CORRUPT: 'corrupt' };
const ALARM_NAMES: Record<AlarmType, string> = { none: 'NONE', nospace: 'NOSPACE', corrupt: 'CORRUPT' };
const ALARM_ACTIONS: Record<string, 'get' | 'activate' | 'deactivate'> = { GET: 'get', ACTIVATE: 'activate', DEACTIVATE: 'deactivate' };
const DOWNGRADE_ACTIONS: Record<string, 'validate' | 'enable' | 'cancel'> = { VALIDATE: 'validate', ENABLE: 'enable', CANCEL: 'cancel' };

function lookup<T>(table: Record<string, T>, value: unknown, what: string): T {
  if (typeof value === 'string' && Object.hasOwn(table, value)) return table[value];
  throw new KvdError('invalid-argument', { detail: `etcdserver: invalid argument: unknown ${what}` });
}

/** Builds the handlers of etcdserverpb.Maintenance. */
export function createMaintenanceService(options: MaintenanceServiceOptions): grpc.UntypedServiceImplementation {
  const { backend } = options;
  const alarm = backend.alarm?.bind(backend);
  const defragment = backend.defragment?.bind(backend);
  const hash = backend.hash?.bind(backend);
  const hashKv = backend.hashKv?.bind(backend);
  const snapshot = backend.snapshot?.bind(backend);
  const moveLeader = backend.moveLeader?.bind(backend);
  const downgrade = backend.downgrade?.bind(backend);
  return {
    Status: unary('Status', options, async (_request, call) => {
      const { header, status } = await backend.status(call);
      return {
        header: encodeHeader(header),
        version: status.version,
        dbSize: String(status.dbSizeBytes),
        leader: BigInt.asUintN(64, status.leader).toString(),
        raftIndex: String(status.raftIndex),
        raftTerm: String(status.raftTerm),
        raftAppliedIndex: String(status.raftAppliedIndex),
        errors: [...status.errors],
        dbSizeInUse: String(status.dbSizeInUseBytes),
        isLearner: status.isLearner,
        storageVersion: status.storageVersion,
        dbSizeQuota: String(status.dbSizeQuotaBytes),
        downgradeInfo: null,
      };
    }),
    Alarm: alarm === undefined ? unimplementedUnary('Alarm') : unary('Alarm', options, async (request, call) => {
      const { header, alarms } = await alarm(
        { action: lookup(ALARM_ACTIONS, request.action, 'alarm action'), memberId: decodeUint64(request.memberID), alarm: lookup(ALARM_TYPES, request.alarm, 'alarm type') },
        call,
      );
      void header; // etcd 3.4 answers Alarm without a header (its applier fills none)
      return { alarms: alarms.map((item) => ({ memberID: BigInt.asUintN(64, item.memberId).toString(), alarm: ALARM_NAMES[item.alarm] })) };
    }),
    Defragment: defragment === undefined ? unimplementedUnary('Defragment') : unary('Defragment', options, async (_request, call) => {
      const { header } = await defragment(call);
      return { header: encodeHeader(header) };
    }),
    Hash: hash === undefined ? unimplementedUnary('Hash') : unary('Hash', options, async (_request, call) => {
      const result = await hash(call);
      return { header: encodeHeader(result.header), hash: result.hash >>> 0 };
    }),
    HashKV: hashKv === undefined ? unimplementedUnary('HashKV') : unary('HashKV', options, async (request, call) => {
      const result = await hashKv({ revision: decodeRequestedRevision(request.revision) }, call);
      return { header: encodeHeader(result.header), hash: result.hash >>> 0, compact_revision: String(result.compactRevision), hash_revision: String(result.hashRevision) };
    }),
    MoveLeader: moveLeader === undefined ? unimplementedUnary('MoveLeader') : unary('MoveLeader', options, async (request, call) => {
      const { header } = await moveLeader({ targetId: decodeUint64(request.targetID) }, call);
      return { header: encodeHeader(header) };
    }),
    Downgrade: downgrade === undefined ? unimplementedUnary('Downgrade') : unary('Downgrade', options, async (request, call) => {
      const result = await downgrade({ action: lookup(DOWNGRADE_ACTIONS, request.action, 'downgrade action'), version: typeof request.version === 'string' ? request.version : '' }, call);
      return { header: encodeHeader(result.header), version: result.version };
    }),
    Snapshot: (call: grpc.ServerWritableStream<PbMessage, PbMessage>) => {
      if (snapshot === undefined) {
        call.emit('error', { code: 12, details: 'etcdserver: not implemented: Snapshot' });
        return;
      }
      const callOptions = callOptionsOf(call, options);
      // One chunk in flight at a time: a chunk is written only after the previous one drained
      // (grpc-js's write() returns false above its buffer), so a slow client slows the reading
      // of the backend down instead of growing memory; the member's writes are never blocked.
      const run = async (): Promise<void> => {
        const { header, sizeBytes, version, chunks } = await snapshot(callOptions);
        const iterator = chunks[Symbol.asyncIterator]();
        let remaining = sizeBytes;
        let first = true;
        try {
          for (;;) {
            if (callOptions.signal.aborted) return;
            const next = await iterator.next();
            if (next.done === true) break;
            const chunk = next.value;
            remaining -= chunk.length;
            if (remaining < 0) throw new KvdError('internal', { detail: 'etcdserver: snapshot stream is longer than announced' });
            const message: PbMessage = { remaining_bytes: String(remaining), blob: Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength), version };
            if (first) message.header = encodeHeader(header);
            first = false;
            if (!call.write(message)) await waitForDrain(call, callOptions.signal);
          }
        } finally {
          await iterator.return?.();
        }
        if (remaining !== 0) throw new KvdError('internal', { detail: 'etcdserver: snapshot stream is shorter than announced' });
        call.end();
      };
      run().then(
        () => callOptions.release(),
        (error: unknown) => {
          callOptions.release();
          if (!callOptions.signal.aborted) call.emit('error', toStatus(error, { method: 'Snapshot', onUnexpectedError: options.onUnexpectedError }));
        },
      );
    },
  };
}

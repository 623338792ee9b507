/**
 * The Lease service over a {@link LeaseBackend}, with etcd's wire quirks: a keep-alive for an
 * unknown or expired lease answers TTL 0 (the stream stays open), and LeaseTimeToLive for one
 * answers TTL -1 instead of an error.
 */
import type * as grpc from '@grpc/grpc-js';
import { isKvdError } from '../util/errors.js';
import { DerivedCallOptions, type LeaseBackend } from './backend.js';
import { callOptionsOf, toStatus, unary, type HandlerContext } from './call.js';
import { decodeInt64, decodeInt64Clamped, decodeLeaseKeepAliveRequestWire, encodeHeader, encodeLeaseKeepAliveResponseWire, passEncodedResponses, readRequestsFromWire, type EncodedMessage, type PbMessage } from './codec.js';

/** Most keep-alive requests of one stream waiting for their answers before reading pauses. */
export const LEASE_KEEPALIVE_PENDING_MAX = 64;

/**
 * The Lease service definition with a LeaseKeepAlive serializer that passes answers already in
 * wire bytes ({@link EncodedMessage}) through and a deserializer that reads requests straight from
 * theirs ({@link decodeLeaseKeepAliveRequestWire}). Register the handlers of
 * {@link createLeaseService} under it.
 */
export function leaseServiceDefinition(definition: grpc.ServiceDefinition): grpc.ServiceDefinition {
  return readRequestsFromWire(passEncodedResponses(definition, ['LeaseKeepAlive']), { LeaseKeepAlive: decodeLeaseKeepAliveRequestWire });
}

/** Options of {@link createLeaseService}. */
export interface LeaseServiceOptions extends HandlerContext {
  readonly backend: LeaseBackend;
}

/** Builds the handlers of etcdserverpb.Lease. */
export function createLeaseService(options: LeaseServiceOptions): grpc.UntypedServiceImplementation {
  const { backend } = options;
  return {
    LeaseGrant: unary('LeaseGrant', options, async (request, call) => {
      const granted = await backend.grant({ id: decodeInt64(request.ID), ttlSeconds: decodeInt64Clamped(request.TTL) }, call);
      return { header: encodeHeader(granted.header), ID: granted.id.toString(), TTL: String(granted.ttlSeconds), error: '' };
    }),
    LeaseRevoke: unary('LeaseRevoke', options, async (request, call) => {
      const { header } = await backend.revoke(decodeInt64(request.ID), call);
      return { header: encodeHeader(header) };
    }),
    LeaseTimeToLive: unary('LeaseTimeToLive', options, async (request, call) => {
      const id = decodeInt64(request.ID);
      try {
        const { header, lease } = await backend.timeToLive({ id, keys: request.keys === true }, call);
        return {
          header: encodeHeader(header),
          ID: lease.id.toString(),
          TTL: String(lease.ttlSeconds),
          grantedTTL: String(lease.grantedTtlSeconds),
          keys: lease.keys.map((key) => Buffer.from(key.buffer, key.byteOffset, key.byteLength)),
        };
      } catch (error: unknown) {
        if (!isKvdError(error, 'lease-not-found')) throw error;
        return { header: encodeHeader(backend.header()), ID: id.toString(), TTL: '-1', grantedTTL: '0', keys: [] };
      }
    }),
    LeaseLeases: unary('LeaseLeases', options, async (_request, call) => {
      const { header, ids } = await backend.leases(call);
      return { header: encodeHeader(header), leases: ids.map((id) => ({ ID: id.toString() })) };
    }),
    LeaseKeepAlive: (call: grpc.ServerDuplexStream<PbMessage, PbMessage | EncodedMessage>) => keepAliveStream(call, options),
  };
}

/** Answers keep-alive requests in order; the first unexpected error ends the stream with its status. */
function keepAliveStream(call: grpc.ServerDuplexStream<PbMessage, PbMessage | EncodedMessage>, options: LeaseServiceOptions): void {
  const callOptions = callOptionsOf(call, options);
  // A flag instead of the signal: etcd's KeepAliveOnce opens and cancels a stream per renewal,
  // and an AbortController per stream (built, then aborted) was a tenth of such a renewal's cost.
  let cancelled = false;
  callOptions.onCancel?.(() => { cancelled = true; });
  let pending = 0;
  let paused = false;
  let failed = false;
  let clientEnded = false;
  let tail: Promise<void> = Promise.resolve();

  const answer = async (id: bigint): Promise<EncodedMessage> => {
    // A keep-alive stream lives long; each renewal gets its own deadline.
    const perRequest = new DerivedCallOptions(callOptions, Date.now() + options.defaultRequestTimeoutMs);
    try {
      const { header, ttlSeconds } = await options.backend.keepAlive(id, perRequest);
      return encodeLeaseKeepAliveResponseWire(header, id, ttlSeconds);
    } catch (error: unknown) {
      if (!isKvdError(error, 'lease-not-found')) throw error;
      return encodeLeaseKeepAliveResponseWire(options.backend.header(), id, 0);
    }
  };

  call.on('data', (request: PbMessage) => {
    if (failed || cancelled) return;
    let id: bigint;
    try {
      id = decodeInt64(request.ID);
    } catch (error: unknown) {
      failed = true;
      call.emit('error', toStatus(error, { method: 'LeaseKeepAlive', onUnexpectedError: options.onUnexpectedError }));
      return;
    }
    pending += 1;
    if (pending >= LEASE_KEEPALIVE_PENDING_MAX && !paused) {
      paused = true;
      call.pause();
    }
    // Answers are written in request order: each waits for the previous one.
    const response = answer(id);
    tail = tail.then(async () => {
      try {
        const message = await response;
        if (!failed && !cancelled) call.write(message);
      } catch (error: unknown) {
        if (!failed && !cancelled) {
          failed = true;
          call.emit('error', toStatus(error, { method: 'LeaseKeepAlive', onUnexpectedError: options.onUnexpectedError }));
        }
      } finally {
        pending -= 1;
        if (paused && pending < LEASE_KEEPALIVE_PENDING_MAX / 2) {
          paused = false;
          call.resume();
        }
        if (clientEnded && pending === 0 && !failed && !cancelled) call.end();
      }
    });
  });
  call.on('end', () => {
    clientEnded = true;
    if (pending === 0 && !failed && !cancelled) call.end();
  });
}

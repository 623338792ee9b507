/**
 * The client-facing gRPC server: registers every etcd v3 service over the given backends and
 * binds it to client URLs.
 */
import * as grpc from '@grpc/grpc-js';
import type { Backends } from './backend.js';
import { requireLeaderGuard, withRequestSize, unimplementedHandler, type HandlerContext, type UnexpectedErrorHandler } from './call.js';
import { DEFAULT_MAX_TXN_OPS } from './codec.js';
import { DEFAULT_MAX_RESPONSE_BYTES, KV_SIZED_METHODS, createKvService, kvServiceDefinition } from './kv-service.js';
import { DEFAULT_WATCH_PROGRESS_INTERVAL_MS, createWatchService } from './watch-service.js';
import { createLeaseService } from './lease-service.js';
import { createClusterService } from './cluster-service.js';
import { createMaintenanceService } from './maintenance-service.js';
import { createAuthService } from './auth-service.js';
import { loadServices } from './proto.js';

/** etcd's default --max-request-bytes (1.5 MiB). */
export const DEFAULT_MAX_REQUEST_BYTES = 1.5 * 1024 * 1024;
/** What etcd adds to max-request-bytes for gRPC's own receive limit (512 KiB). */
export const GRPC_OVERHEAD_BYTES = 512 * 1024;
/** Default server-side request timeout (etcd: 5 s + 2 × the 1 s election timeout). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 7000;

/** Options of {@link createGrpcServer}. */
export interface GrpcServerOptions {
  readonly backends: Backends;
  /** etcd --max-request-bytes; default {@link DEFAULT_MAX_REQUEST_BYTES}. */
  readonly maxRequestBytes?: number;
  /** etcd --max-txn-ops; default 128. */
  readonly maxTxnOps?: number;
  /** Largest Range response in encoded bytes (--max-response-bytes); default {@link DEFAULT_MAX_RESPONSE_BYTES} (512 MiB). */
  readonly maxResponseBytes?: number;
  /** Member-wide bytes of range responses in flight; default and minimum maxResponseBytes. */
  readonly rangeBytesInflightMax?: number;
  /** Deadline for calls without a client deadline (and upper bound for all); default 7000 ms. */
  readonly defaultRequestTimeoutMs?: number;
  /** etcd --experimental-watch-progress-notify-interval; default 10 min, floor 100 ms. */
  readonly watchProgressIntervalMs?: number;
  /** Receives errors that are not KvdError (the call answers UNKNOWN); default writes to stderr. */
  readonly onUnexpectedError?: UnexpectedErrorHandler;
}

/**
 * Creates a grpc-js server with etcd's KV, Watch, Lease, Cluster, Maintenance and Auth services
 * plus Lock and Election (UNIMPLEMENTED for now). With `backends.leadership`, calls carrying
 * metadata `hasleader: true` are refused with "etcdserver: no leader" while there is none. The
 * gRPC receive limit is max-request-bytes +
 * 512 KiB as in etcd; writes between the two limits get etcd's "request is too large". The
 * server is not bound: call {@link startGrpcServer}.
 */
export function createGrpcServer(options: GrpcServerOptions): grpc.Server {
  const maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  const context: HandlerContext = {
    defaultRequestTimeoutMs: options.defaultRequestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    onUnexpectedError: options.onUnexpectedError ?? defaultUnexpectedErrorHandler,
  };
  const server = new grpc.Server({
    'grpc.max_receive_message_length': maxRequestBytes + GRPC_OVERHEAD_BYTES,
    'grpc.max_send_message_length': -1,
  });
  const services = loadServices();
  const { backends } = options;
  const leadership = backends.leadership;
  const add = (definition: grpc.ServiceDefinition, handlers: grpc.UntypedServiceImplementation): void => {
    server.addService(definition, leadership === undefined ? handlers : requireLeaderGuard(definition, handlers, () => leadership.hasLeader()));
  };
  add(
    kvServiceDefinition(withRequestSize(services.KV.service, KV_SIZED_METHODS)),
    createKvService({
      ...context,
      backend: backends.kv,
      maxRequestBytes,
      maxTxnOps: options.maxTxnOps ?? DEFAULT_MAX_TXN_OPS,
      maxResponseBytes: options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES,
      rangeBytesInflightMax: options.rangeBytesInflightMax,
    }),
  );
  add(
    services.Watch.service,
    createWatchService({
      ...context,
      backend: backends.watch,
      fragmentBytesMax: maxRequestBytes + GRPC_OVERHEAD_BYTES,
      progressIntervalMs: options.watchProgressIntervalMs ?? DEFAULT_WATCH_PROGRESS_INTERVAL_MS,
    }),
  );
  add(services.Lease.service, createLeaseService({ ...context, backend: backends.lease }));
  add(services.Cluster.service, createClusterService({ ...context, backend: backends.cluster }));
  add(services.Maintenance.service, createMaintenanceService({ ...context, backend: backends.maintenance }));
  add(services.Auth.service, createAuthService({ ...context, backend: backends.auth, header: () => backends.watch.header() }));
  add(services.Lock.service, unimplementedService('Lock', services.Lock.service));
  add(services.Election.service, unimplementedService('Election', services.Election.service));
  // Health is never behind the hasleader guard: probes must get an answer.
  server.addService(services.Health.service, createHealthService(() => leadership === undefined || leadership.hasLeader()));
  return server;
}

/**
 * grpc.health.v1.Health: Check answers SERVING for the whole server ("") while a leader is known
 * (or leadership is not tracked), NOT_SERVING otherwise, and NOT_FOUND for named services, as
 * the gRPC health protocol says. Watch is UNIMPLEMENTED (clients then treat the server as healthy).
 */
function createHealthService(serving: () => boolean): grpc.UntypedServiceImplementation {
  return {
    Check: ((call: grpc.ServerUnaryCall<{ service?: string }, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const service = call.request.service ?? '';
      if (service !== '') {
        callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${service}` });
        return;
      }
      callback(null, { status: serving() ? 'SERVING' : 'NOT_SERVING' });
    }) as grpc.UntypedHandleCall,
    Watch: unimplementedHandler('Health.Watch'),
  };
}

function unimplementedService(name: string, definition: grpc.ServiceDefinition): grpc.UntypedServiceImplementation {
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const method of Object.keys(definition)) handlers[method] = unimplementedHandler(`${name}.${method}`);
  return handlers;
}

function defaultUnexpectedErrorHandler(error: unknown, context: { readonly method: string }): void {
  const detail = error instanceof Error ? (error.stack ?? error.message) : String(error);
  process.stderr.write(`kvd api: unexpected error in ${context.method}: ${detail}\n`);
}

/** A bound listener: the URL as given and the port actually bound (useful with port 0). */
export interface BoundUrl {
  readonly url: string;
  readonly host: string;
  readonly port: number;
}

/**
 * Binds the server to client URLs of the form `http://host:port` (insecure credentials; port 0
 * picks a free port) and resolves with the bound ports, in the order given. `https` URLs are
 * refused (TLS is not supported yet).
 */
export async function startGrpcServer(server: grpc.Server, urls: readonly string[]): Promise<BoundUrl[]> {
  const bound: BoundUrl[] = [];
  for (const url of urls) {
    const parsed = new URL(url);
    if (parsed.protocol !== 'http:') throw new Error(`unsupported client URL ${url}: only http://host:port is supported`);
    const host = parsed.hostname.startsWith('[') ? parsed.hostname.slice(1, -1) : parsed.hostname;
    const port = parsed.port === '' ? 80 : Number(parsed.port);
    const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    const actual = await new Promise<number>((resolve, reject) => {
      server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, boundPort) => (error ? reject(error) : resolve(boundPort)));
    });
    bound.push({ url, host, port: actual });
  }
  return bound;
}

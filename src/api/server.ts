/**
 * The client-facing gRPC server: registers every etcd v3 service over the given backends and
 * binds it to client URLs.
 */
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type { Backends } from './backend.js';
import { learnerGuard, requireLeaderGuard, withRequestSize, unimplementedHandler, type HandlerContext, type UnexpectedErrorHandler } from './call.js';
import { instrumentService, type CallObserver } from './instrument.js';
import { DEFAULT_MAX_TXN_OPS } from './codec.js';
import { DEFAULT_MAX_RESPONSE_BYTES, KV_SIZED_METHODS, createKvService, kvServiceDefinition } from './kv-service.js';
import { DEFAULT_WATCH_PROGRESS_INTERVAL_MS, createWatchService, watchServiceDefinition } from './watch-service.js';
import { createLeaseService, leaseServiceDefinition } from './lease-service.js';
import { createClusterService } from './cluster-service.js';
import { createMaintenanceService } from './maintenance-service.js';
import { createAuthService } from './auth-service.js';
import { loadServices } from './proto.js';
import { installUnaryFastPath, type FastPathStats } from '../util/grpc-fast-path.js';

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
  /** etcd --client-cert-auth: a verified client certificate's CN names the caller; default 'off'. */
  readonly clientCertAuth?: 'on' | 'off';
  /** Counts calls and reports slow ones (metrics); default none. */
  readonly observer?: CallObserver;
  /** Serve unary calls on the lean path (src/util/grpc-fast-path.ts); default true. */
  readonly unaryFastPath?: boolean;
  /** Counts the calls the lean path served (tests). */
  readonly fastPathStats?: FastPathStats;
}

/** One registered service: its full name, its (wrapped) definition and handlers. */
export interface ServiceEntry {
  /** Fully qualified, e.g. 'etcdserverpb.KV'. */
  readonly name: string;
  readonly definition: grpc.ServiceDefinition;
  readonly handlers: grpc.UntypedServiceImplementation;
}

/** The client API: the grpc-js server and the services registered in it (the JSON gateway serves the same ones). */
export interface ClientApi {
  readonly server: grpc.Server;
  readonly services: readonly ServiceEntry[];
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
  return createClientApi(options).server;
}

/** {@link createGrpcServer}, also returning the services for the JSON gateway (src/api/http-gateway.ts). */
export function createClientApi(options: GrpcServerOptions): ClientApi {
  const maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
  const context: HandlerContext = {
    defaultRequestTimeoutMs: options.defaultRequestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
    onUnexpectedError: options.onUnexpectedError ?? defaultUnexpectedErrorHandler,
    clientCertAuth: options.clientCertAuth ?? 'off',
  };
  const server = new grpc.Server({
    'grpc.max_receive_message_length': maxRequestBytes + GRPC_OVERHEAD_BYTES,
    'grpc.max_send_message_length': -1,
    // Channelz (grpc's introspection service, which kvd does not serve) tracks every call with
    // listeners and counters: a few per cent of a small request's cost. Off.
    'grpc.enable_channelz': 0,
  });
  const services = loadServices();
  if (options.unaryFastPath !== false) installUnaryFastPath(server, { maxReceiveBytes: maxRequestBytes + GRPC_OVERHEAD_BYTES, stats: options.fastPathStats });
  const { backends } = options;
  const leadership = backends.leadership;
  const entries: ServiceEntry[] = [];
  const add = (name: string, definition: grpc.ServiceDefinition, handlers: grpc.UntypedServiceImplementation, guards: 'guarded' | 'unguarded' = 'guarded'): void => {
    let guarded = handlers;
    if (guards === 'guarded') {
      if (leadership !== undefined) guarded = requireLeaderGuard(definition, guarded, () => leadership.hasLeader());
      const isLearner = leadership?.isLearner?.bind(leadership);
      if (isLearner !== undefined) guarded = learnerGuard(name, definition, guarded, isLearner);
    }
    const instrumented = options.observer === undefined ? { definition, handlers: guarded } : instrumentService(name, definition, guarded, options.observer);
    server.addService(instrumented.definition, instrumented.handlers);
    entries.push({ name, definition: instrumented.definition, handlers: instrumented.handlers });
  };
  add(
    'etcdserverpb.KV',
    withRequestSize(kvServiceDefinition(services.KV.service), KV_SIZED_METHODS),
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
    'etcdserverpb.Watch',
    watchServiceDefinition(services.Watch.service),
    createWatchService({
      ...context,
      backend: backends.watch,
      fragmentBytesMax: maxRequestBytes + GRPC_OVERHEAD_BYTES,
      progressIntervalMs: options.watchProgressIntervalMs ?? DEFAULT_WATCH_PROGRESS_INTERVAL_MS,
    }),
  );
  add('etcdserverpb.Lease', leaseServiceDefinition(services.Lease.service), createLeaseService({ ...context, backend: backends.lease }));
  add('etcdserverpb.Cluster', services.Cluster.service, createClusterService({ ...context, backend: backends.cluster }));
  add('etcdserverpb.Maintenance', services.Maintenance.service, createMaintenanceService({ ...context, backend: backends.maintenance }));
  add('etcdserverpb.Auth', services.Auth.service, createAuthService({ ...context, backend: backends.auth, header: () => backends.watch.header() }));
  add('v3lockpb.Lock', services.Lock.service, unimplementedService('Lock', services.Lock.service));
  add('v3electionpb.Election', services.Election.service, unimplementedService('Election', services.Election.service));
  // Health is never behind the hasleader guard: probes must get an answer.
  add('grpc.health.v1.Health', services.Health.service, createHealthService(leadership), 'unguarded');
  return { server, services: entries };
}

/**
 * grpc.health.v1.Health: Check answers SERVING for the whole server ("") while a leader is known
 * (or leadership is not tracked), NOT_SERVING otherwise, and NOT_FOUND for named services, as
 * the gRPC health protocol says. Watch sends the status at once and again at every change;
 * a named service is SERVICE_UNKNOWN (the protocol's answer, the stream stays open).
 */
function createHealthService(leadership: Backends['leadership']): grpc.UntypedServiceImplementation {
  const serving = (): boolean => leadership === undefined || leadership.hasLeader();
  return {
    Check: ((call: grpc.ServerUnaryCall<{ service?: string }, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const service = call.request.service ?? '';
      if (service !== '') {
        callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${service}` });
        return;
      }
      callback(null, { status: serving() ? 'SERVING' : 'NOT_SERVING' });
    }) as grpc.UntypedHandleCall,
    Watch: ((call: grpc.ServerWritableStream<{ service?: string }, unknown>) => {
      const service = call.request.service ?? '';
      const statusNow = (): string => (service !== '' ? 'SERVICE_UNKNOWN' : serving() ? 'SERVING' : 'NOT_SERVING');
      let last = statusNow();
      call.write({ status: last });
      if (service !== '' || leadership?.subscribe === undefined) return; // nothing will change: the stream stays open until the client goes
      const unsubscribe = leadership.subscribe(() => {
        const now = statusNow();
        if (now === last) return;
        last = now;
        // A client that does not read: statuses are tiny and change rarely; grpc-js buffers them.
        call.write({ status: now });
      });
      call.once('cancelled', unsubscribe);
      call.once('close', unsubscribe);
    }) as grpc.UntypedHandleCall,
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
 * Secures an accepted TCP connection: resolves with the socket to serve on (a TLS socket whose
 * ALPN chose h2), or undefined when the connection was refused (and closed). Provided by the
 * server's TLS module (src/server/tls.ts) for https URLs.
 */
export type SecureAccept = (socket: net.Socket) => Promise<net.Socket | undefined>;

/** Options of {@link startGrpcServer}. */
export interface StartOptions {
  /** Required for `https` URLs. */
  readonly secure?: SecureAccept;
}

/**
 * Binds the server to client URLs `http://host:port` (plain) and `https://host:port` (TLS through
 * `options.secure`; the handshake happens on our own listener before the connection is handed to
 * grpc-js), and resolves with the bound ports, in the order given. Port 0 picks a free port.
 */
export async function startGrpcServer(server: grpc.Server, urls: readonly string[], options: StartOptions = {}): Promise<BoundUrl[]> {
  const bound: BoundUrl[] = [];
  for (const url of urls) {
    const parsed = new URL(url);
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error(`unsupported client URL ${url}: only http:// and https:// host:port are supported`);
    const host = parsed.hostname.startsWith('[') ? parsed.hostname.slice(1, -1) : parsed.hostname;
    const port = parsed.port === '' ? (parsed.protocol === 'https:' ? 443 : 80) : Number(parsed.port);
    if (parsed.protocol === 'https:') {
      if (options.secure === undefined) throw new Error(`client URL ${url} needs TLS settings (--cert-file and --key-file, or --auto-tls)`);
      bound.push({ url, host, port: await listenSecure(server, host, port, options.secure) });
      continue;
    }
    const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    const actual = await new Promise<number>((resolve, reject) => {
      server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error, boundPort) => (error ? reject(error) : resolve(boundPort)));
    });
    bound.push({ url, host, port: actual });
  }
  return bound;
}

/** Listeners of https URLs, per gRPC server, closed by {@link stopSecureListeners}. */
const secureListeners = new WeakMap<grpc.Server, { listeners: net.Server[]; sockets: Set<net.Socket>; injector: ReturnType<grpc.Server['createConnectionInjector']> }>();

async function listenSecure(server: grpc.Server, host: string, port: number, secure: SecureAccept): Promise<number> {
  let state = secureListeners.get(server);
  if (state === undefined) {
    state = { listeners: [], sockets: new Set(), injector: server.createConnectionInjector(grpc.ServerCredentials.createInsecure()) };
    secureListeners.set(server, state);
  }
  const { sockets, injector } = state;
  const listener = net.createServer({ noDelay: true, keepAlive: true }, (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.on('error', () => undefined); // handshake errors are reported by `secure`
    secure(socket).then(
      (served) => {
        if (served === undefined) return;
        sockets.add(served);
        served.once('close', () => sockets.delete(served));
        injector.injectConnection(served);
      },
      () => socket.destroy(),
    );
  });
  state.listeners.push(listener);
  await new Promise<void>((resolve, reject) => {
    listener.once('error', reject);
    listener.listen({ host, port }, () => {
      listener.off('error', reject);
      resolve();
    });
  });
  const address = listener.address();
  if (address === null || typeof address !== 'object') throw new Error('a TCP listener has an address');
  return address.port;
}

/** Closes the https listeners of `server` and their connections (after grpc's own shutdown). */
export function stopSecureListeners(server: grpc.Server): void {
  const state = secureListeners.get(server);
  if (state === undefined) return;
  secureListeners.delete(server);
  for (const listener of state.listeners) listener.close();
  for (const socket of state.sockets) socket.destroy();
  state.injector.destroy();
}

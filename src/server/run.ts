/**
 * Runs one member as a process: the member (Raft, WAL, store, transport), the client-facing gRPC
 * server, the optional metrics/health HTTP listener, and graceful shutdown on SIGTERM/SIGINT
 * (stop accepting, finish in-flight applies, close the WAL).
 */
import { createServer, type IncomingMessage, type ServerResponse, type Server as HttpServer } from 'node:http';
import type * as grpc from '@grpc/grpc-js';
import { GRPC_OVERHEAD_BYTES, createClientApi, type ClientApi } from '../api/server.js';
import type { Backends } from '../api/backend.js';
import type { UnexpectedErrorHandler } from '../api/call.js';
import { startClientListener, type ClientListener } from '../api/client-listener.js';
import { createJsonGateway } from '../api/http-gateway.js';
import { composeHttpHandlers, createHttpEndpoints, type Profiling } from '../api/http-endpoints.js';
import { SLOW_REQUEST_MS, type SlowRequest } from '../api/instrument.js';
import { GrpcMetrics, renderAggregated } from './metrics.js';
import { cpuProfile, heapSnapshot } from './profiler.js';
import { clientHttpHandler, logSlowRequest } from './client-http.js';
import { errorMessage } from '../util/errors.js';
import { AssertionError } from '../util/assert.js';
import { fatal } from './fatal.js';
import type { ServerConfig } from './config.js';
import { createLogger, type Logger } from './logger.js';
import { KvdMember, SERVER_VERSION, VERSION_INFO } from './member.js';
import { authBackend, clusterBackend, kvBackend, leaseBackend, maintenanceBackend, watchAuthorizer } from './backends.js';
import { CLIENT_ALPN, TlsMaterial, hostsOf, secureAccept, tlsWanted } from './tls.js';
import { watchBackend } from './watch-backend.js';
import { FrontendHost } from './frontends/host.js';
import { createServer as createNetServer } from 'node:net';

/** A running member with its listeners. */
export interface RunningServer {
  readonly member: KvdMember;
  /** The in-process gRPC server (--frontends 0), or undefined when front-end processes serve. */
  readonly grpcServer: grpc.Server | undefined;
  /** The front-end processes (--frontends > 0), or undefined. */
  readonly frontends: FrontendHost | undefined;
  /** Stops everything; idempotent. */
  stop(): Promise<void>;
}

/** Starts a member with its client and metrics listeners (for embedding and tests). */
export async function startServer(config: ServerConfig, logger?: Logger): Promise<RunningServer> {
  const log = logger ?? createLogger({ name: config.name, level: config.logLevel });
  log.info({ event: 'starting', dataDir: config.dataDir, clientUrls: config.listenClientUrls, peerUrls: config.listenPeerUrls, version: SERVER_VERSION }, 'starting kvd');
  const member = await KvdMember.start(config, log);
  const clientTls = tlsWanted(config.clientTls)
    ? await TlsMaterial.open(config.clientTls, { scope: 'client', dataDir: config.dataDir, hosts: hostsOf([...config.listenClientUrls, ...config.advertiseClientUrls]), logger: log })
    : undefined;
  const clientCertAuth = config.clientTls?.clientCertAuth === true ? 'on' : 'off';
  const backends: Backends = {
    kv: kvBackend(member),
    watch: { ...watchBackend(member), authorizeWatch: watchAuthorizer(member) },
    lease: leaseBackend(member),
    cluster: clusterBackend(member),
    maintenance: maintenanceBackend(member),
    auth: authBackend(member),
    leadership: {
      hasLeader: () => member.leader !== 0n,
      isLearner: () => member.isLearner,
      subscribe: (listener) => member.subscribe({ revisions: () => undefined, storeReplaced: () => undefined, stateChanged: listener }),
    },
  };
  const onUnexpectedError = (error: unknown, context: { readonly method: string }): void => log.error({ event: 'unexpected-error', method: context.method, error: errorMessage(error), stack: error instanceof Error ? error.stack : undefined }, 'unexpected error in a request handler');
  let grpcServer: grpc.Server | undefined;
  let listener: ClientListener | undefined;
  let frontends: FrontendHost | undefined;
  let metricsText: () => Promise<string> = () => member.metrics.render();
  const profiling: Profiling | undefined = config.enablePprof ? { cpuProfile: (seconds) => cpuProfile(seconds), heapSnapshot: () => heapSnapshot() } : undefined;
  if (config.frontends > 0) {
    const host: FrontendHost = new FrontendHost({
      count: config.frontends,
      config: {
        name: config.name,
        listenClientUrls: await resolvePorts(config.listenClientUrls),
        maxRequestBytes: config.maxRequestBytes,
        maxTxnOps: config.maxTxnOps,
        maxResponseBytes: config.maxResponseBytes,
        requestTimeoutMs: config.requestTimeoutMs,
        watchProgressNotifyIntervalMs: config.watchProgressNotifyIntervalMs,
        logLevel: config.logLevel,
        enablePprof: config.enablePprof,
        clientTls: clientTls?.resolvedSettings,
        clientCertAuth,
        enableUi: config.enableUi,
        clientHttp2: config.clientHttp2,
      },
      backends,
      logger: log,
      state: () => {
        const header = member.header();
        return { clusterId: header.clusterId, memberId: header.memberId, term: header.raftTerm, leader: member.leader, revision: header.revision, compacted: member.store.compactedRevision, learner: member.isLearner };
      },
      changes: (options) => member.store.changes(options),
      subscribe: (listeners) => member.subscribe(listeners),
      metrics: async () => renderAggregated(member.metrics.registry, await host.collectMetrics()),
      profiling: profiling ?? { cpuProfile: () => Promise.reject(new Error('profiling is off (--enable-pprof)')), heapSnapshot: () => Promise.reject(new Error('profiling is off (--enable-pprof)')) },
    });
    frontends = host;
    metricsText = async () => renderAggregated(member.metrics.registry, await host.collectMetrics());
    await frontends.start();
  } else {
    const api = createClientApi({
      backends,
      maxRequestBytes: config.maxRequestBytes,
      maxTxnOps: config.maxTxnOps,
      maxResponseBytes: config.maxResponseBytes,
      watchProgressIntervalMs: config.watchProgressNotifyIntervalMs,
      defaultRequestTimeoutMs: config.requestTimeoutMs,
      onUnexpectedError,
      observer: new GrpcMetrics(member.metrics.registry, { onSlowRequest: (request) => logSlowRequest(log, request) }),
      clientCertAuth,
    });
    grpcServer = api.server;
    listener = await startClientListener([...config.listenClientUrls], {
      grpcServer: api.server,
      http2: config.clientHttp2,
      maxReceiveBytes: config.maxRequestBytes + GRPC_OVERHEAD_BYTES,
      secure: clientTls === undefined ? undefined : secureAccept({ material: clientTls, alpn: CLIENT_ALPN, logger: log, scope: 'client' }),
      http: clientHttpHandler({ services: api.services, backends, config, metrics: () => member.metrics.render(), profiling, onUnexpectedError }),
    });
  }
  const metricsServers = await Promise.all(config.listenMetricsUrls.map((url) => startMetricsServer(url, createHttpEndpoints({
    backends, requestTimeoutMs: config.requestTimeoutMs, metrics: metricsText, version: VERSION_INFO,
  }))));
  log.info({ event: 'serving', clientUrls: config.listenClientUrls, frontends: config.frontends }, 'ready to serve client requests');
  let stopping: Promise<void> | undefined;
  return {
    member,
    grpcServer,
    frontends,
    stop: () => {
      stopping ??= (async () => {
        if (listener !== undefined) await listener.close('graceful', SHUTDOWN_GRACE_MS);
        if (grpcServer !== undefined) await shutdownGrpc(grpcServer, { graceMs: SHUTDOWN_GRACE_MS });
        if (listener !== undefined) await listener.close('force');
        if (frontends !== undefined) await frontends.stop({ graceMs: SHUTDOWN_GRACE_MS });
        clientTls?.close();
        for (const server of metricsServers) {
          server.close();
          server.closeAllConnections();
        }
        await member.stop();
      })();
      return stopping;
    },
  };
}

/**
 * Client URLs with port 0 get a concrete free port first: every front-end must listen on the
 * same one (node:cluster shares a listening socket per address and port).
 */
async function resolvePorts(urls: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const url of urls) {
    const parsed = new URL(url);
    if ((parsed.protocol === 'http:' || parsed.protocol === 'https:') && parsed.port === '0') {
      const port = await new Promise<number>((resolve, reject) => {
        const probe = createNetServer();
        probe.once('error', reject);
        probe.listen(0, parsed.hostname.replace(/^\[|\]$/g, ''), () => {
          const address = probe.address();
          const chosen = typeof address === 'object' && address !== null ? address.port : 0;
          probe.close(() => resolve(chosen));
        });
      });
      parsed.port = String(port);
      out.push(parsed.toString().replace(/\/$/, ''));
    } else {
      out.push(url);
    }
  }
  return out;
}

/** Time unary calls in flight get to finish on shutdown before every call (watches, keep-alive streams) is cut. */
const SHUTDOWN_GRACE_MS = 2_000;

/**
 * Stops accepting calls and lets those in flight finish, for at most `graceMs`; then cancels what
 * is left. Long-lived streams (watches, lease keep-alives) never finish by themselves, so without
 * the cut a member with one watcher open would never get to stop its Raft node cleanly.
 */
function shutdownGrpc(server: grpc.Server, options: { graceMs: number }): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, options.graceMs);
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Runs a member until SIGTERM/SIGINT, then shuts down cleanly and exits 0. */
export async function runServer(config: ServerConfig): Promise<void> {
  const log = createLogger({ name: config.name, level: config.logLevel });
  // Backstop for throws outside the paths that already fail-stop (timers, stream callbacks): one
  // structured line and a distinct exit code instead of Node's default exit 1.
  process.on('uncaughtException', (error: unknown) => {
    fatal(error instanceof AssertionError ? 'invariant' : 'loop-failed', `uncaught: ${errorMessage(error)}`, error);
  });
  // The handlers go in before the member starts: a SIGTERM while it is still starting (front-ends
  // coming up, a long WAL replay) stops it cleanly once it has started, instead of killing the
  // process by the signal's default action half-way through.
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  let stopWhenStarted = false;
  let signals = 0;
  const stop = (running: NonNullable<typeof server>): void => {
    running.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ event: 'shutdown-failed', error: errorMessage(error) }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 1) process.exit(1); // a second Ctrl-C forces the exit
    log.info({ event: 'shutdown', signal, starting: server === undefined }, 'shutting down');
    const force = setTimeout(() => {
      log.error({ event: 'shutdown-timeout', afterMs: 15_000 }, 'clean shutdown did not finish in time; exiting');
      process.exit(1);
    }, 15_000);
    force.unref();
    if (server === undefined) stopWhenStarted = true;
    else stop(server);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  server = await startServer(config, log);
  if (stopWhenStarted) {
    stop(server);
    return;
  }
  // A member removed from its cluster stops by itself, as etcd does (exit 0).
  const started = server;
  started.member.removed.then(
    () => {
      log.warn({ event: 'shutdown', reason: 'removed' }, 'the member has been permanently removed from the cluster; stopping');
      stop(started);
    },
    (error: unknown) => log.error({ event: 'removed-watch-failed', error: errorMessage(error) }, 'unexpected failure'),
  );
}

function startMetricsServer(url: string, endpoints: (request: IncomingMessage, response: ServerResponse) => boolean): Promise<HttpServer> {
  const parsed = new URL(url);
  const server = createServer(composeHttpHandlers(endpoints));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(parsed.port), parsed.hostname.replace(/^\[|\]$/g, ''), () => resolve(server));
  });
}

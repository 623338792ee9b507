/**
 * Entry point of one front-end process (forked by host.ts through node:cluster). It serves the
 * member's client URLs — the listening sockets are shared with its sibling front-ends by
 * node:cluster — with the same gRPC services as an in-process member (src/api), over backends
 * that call the core (remote-backends.ts). It exits when the core goes away or says 'shutdown'.
 */
import { Socket } from 'node:net';
import { GRPC_OVERHEAD_BYTES, createClientApi } from '../../api/server.js';
import { startClientListener, type ClientListener } from '../../api/client-listener.js';
import type { Profiling } from '../../api/http-endpoints.js';
import { FrontendMetrics } from '../metrics.js';
import { clientHttpHandler, logSlowRequest } from '../client-http.js';
import { cpuProfile, heapSnapshot } from '../profiler.js';
import { errorMessage } from '../../util/errors.js';
import { CLIENT_ALPN, TlsMaterial, secureAccept } from '../tls.js';
import { createLogger } from '../logger.js';
import { Channel, type ChannelMessage } from './channel.js';
import { CoreLink, remoteBackends } from './remote-backends.js';
import { joinRevisionParts, type FrontendConfig, type MirroredState } from './protocol.js';
import type { RevisionChanges } from '../../store/mvcc/store.js';
import type * as grpc from '@grpc/grpc-js';

const slot = process.env.KVD_FRONTEND_SLOT ?? '?';
const channel = new Channel(new Socket({ fd: 4, readable: true, writable: true }));
let link: CoreLink | undefined;
let server: grpc.Server | undefined;
let listener: ClientListener | undefined;
let metrics: FrontendMetrics | undefined;
let hub: ReturnType<typeof remoteBackends>['hub'] | undefined;
let exiting = false;
let tlsMaterial: TlsMaterial | undefined;
/** The parts of a large batch received so far (protocol.ts, 'revisions-part'). */
let revisionParts: RevisionChanges[][] | undefined;

channel.onClose(() => exit(0)); // the core is gone: nothing to serve for
channel.onMessage((message) => {
  try {
    onMessage(message);
  } catch (error: unknown) {
    process.stderr.write(`kvd front-end ${slot}: ${errorMessage(error)}\n`);
    exit(1);
  }
});

function onMessage(message: ChannelMessage): void {
  switch (message.t) {
    case 'config':
      void start(message.c as FrontendConfig, message.s as MirroredState); // Detached: start reports its own failure by exiting.
      return;
    case 'result':
    case 'error':
      link?.settle(message);
      return;
    case 'state':
      link?.setState(message.s as MirroredState);
      return;
    case 'revisions-part':
      (revisionParts ??= []).push(message.b as RevisionChanges[]);
      return;
    case 'revisions': {
      link?.setState(message.s as MirroredState);
      let batch = message.b as RevisionChanges[];
      if (revisionParts !== undefined) {
        revisionParts.push(batch);
        batch = joinRevisionParts(revisionParts);
        revisionParts = undefined;
      }
      hub?.notify(batch);
      return;
    }
    case 'store-replaced':
      link?.setState(message.s as MirroredState);
      hub?.storeReplaced();
      return;
    case 'shutdown':
      shutdown(Number(message.graceMs));
      return;
    case 'metrics-request': {
      const id = message.id;
      const registry = metrics?.registry;
      if (registry === undefined) {
        channel.send({ t: 'metrics', id, v: [] });
        return;
      }
      registry.getMetricsAsJSON().then(
        (value) => channel.send({ t: 'metrics', id, v: value }),
        (error: unknown) => {
          process.stderr.write(`kvd front-end ${slot}: metrics: ${errorMessage(error)}\n`);
          channel.send({ t: 'metrics', id, v: [] });
        },
      );
      return;
    }
    default:
      process.stderr.write(`kvd front-end ${slot}: unknown message ${message.t}\n`);
  }
}

async function start(config: FrontendConfig, state: MirroredState): Promise<void> {
  const logger = createLogger({ name: `${config.name}/fe${slot}`, level: config.logLevel });
  try {
    link = new CoreLink(channel, state);
    const remote = remoteBackends(link, { watchProgressIntervalMs: config.watchProgressNotifyIntervalMs, historyTimeoutMs: config.requestTimeoutMs });
    hub = remote.hub;
    const coreLink = link;
    const localHub = remote.hub;
    metrics = new FrontendMetrics({ watchers: () => localHub.stats().watchers, onSlowRequest: (request) => logSlowRequest(logger, request) });
    const onUnexpectedError = (error: unknown, context: { readonly method: string }): void => logger.error({ event: 'unexpected-error', method: context.method, error: errorMessage(error), stack: error instanceof Error ? error.stack : undefined }, 'unexpected error in a request handler');
    const api = createClientApi({
      backends: remote.backends,
      maxRequestBytes: config.maxRequestBytes,
      maxTxnOps: config.maxTxnOps,
      maxResponseBytes: config.maxResponseBytes,
      watchProgressIntervalMs: config.watchProgressNotifyIntervalMs,
      defaultRequestTimeoutMs: config.requestTimeoutMs,
      onUnexpectedError,
      observer: metrics.grpc,
      clientCertAuth: config.clientCertAuth,
    });
    server = api.server;
    // /metrics and core profiles are the core's: asked over the channel (the core gathers every front-end).
    const coreCall = <T>(method: 'metrics.all' | 'debug.profile' | 'debug.heap', args: unknown[], timeoutMs: number): Promise<T> =>
      coreLink.callDetached<T>(method, args, Date.now() + timeoutMs);
    const profiling: Profiling | undefined = config.enablePprof
      ? {
          cpuProfile: (seconds, target) => (target === 'frontend' ? cpuProfile(seconds) : coreCall<string>('debug.profile', [seconds], seconds * 1000 + 30_000)),
          heapSnapshot: (target) => (target === 'frontend' ? heapSnapshot() : coreCall<string>('debug.heap', [], 120_000)),
        }
      : undefined;
    // Each front-end does its own TLS handshakes (it accepts the connections) and reloads the files itself.
    tlsMaterial = config.clientTls === undefined ? undefined : await TlsMaterial.open(config.clientTls, { scope: 'client', dataDir: '.', hosts: [], logger });
    listener = await startClientListener([...config.listenClientUrls], {
      grpcServer: api.server,
      http2: config.clientHttp2,
      maxReceiveBytes: config.maxRequestBytes + GRPC_OVERHEAD_BYTES,
      secure: tlsMaterial === undefined ? undefined : secureAccept({ material: tlsMaterial, alpn: CLIENT_ALPN, logger, scope: 'client' }),
      http: clientHttpHandler({
        services: api.services,
        backends: remote.backends,
        config,
        metrics: () => coreCall<string>('metrics.all', [], 10_000),
        profiling,
        onUnexpectedError,
      }),
    });
    channel.send({ t: 'ready' });
  } catch (error: unknown) {
    logger.error({ event: 'frontend-start-failed', error: errorMessage(error) }, 'front-end could not start');
    exit(1);
  }
}

function shutdown(graceMs: number): void {
  const current = server;
  if (current === undefined) {
    exit(0);
    return;
  }
  void listener?.close('graceful'); // Detached: stops accepting at once; connections end with the gRPC shutdown below.
  const force = setTimeout(() => {
    current.forceShutdown();
    exit(0);
  }, graceMs);
  current.tryShutdown(() => {
    clearTimeout(force);
    exit(0);
  });
}

function exit(code: number): void {
  if (exiting) return;
  exiting = true;
  link?.failAll();
  hub?.close();
  server?.forceShutdown();
  tlsMaterial?.close();
  void listener?.close('force'); // Detached: the process exits right after.
  process.exit(code);
}

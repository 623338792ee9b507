/**
 * Entry point of one front-end process (forked by host.ts through node:cluster). It serves the
 * member's client URLs — the listening sockets are shared with its sibling front-ends by
 * node:cluster — with the same gRPC services as an in-process member (src/api), over backends
 * that call the core (remote-backends.ts). It exits when the core goes away or says 'shutdown'.
 */
import { Socket } from 'node:net';
import { createGrpcServer, startGrpcServer } from '../../api/server.js';
import { TlsMaterial, secureAccept } from '../tls.js';
import { errorMessage } from '../../util/errors.js';
import { createLogger } from '../logger.js';
import { Channel, type ChannelMessage } from './channel.js';
import { CoreLink, remoteBackends } from './remote-backends.js';
import type { FrontendConfig, MirroredState } from './protocol.js';
import type { RevisionChanges } from '../../store/mvcc/store.js';
import type * as grpc from '@grpc/grpc-js';

const slot = process.env.KVD_FRONTEND_SLOT ?? '?';
const channel = new Channel(new Socket({ fd: 4, readable: true, writable: true }));
let link: CoreLink | undefined;
let server: grpc.Server | undefined;
let hub: ReturnType<typeof remoteBackends>['hub'] | undefined;
let tlsMaterial: TlsMaterial | undefined;
let exiting = false;

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
    case 'revisions':
      link?.setState(message.s as MirroredState);
      hub?.notify(message.b as RevisionChanges[]);
      return;
    case 'store-replaced':
      link?.setState(message.s as MirroredState);
      hub?.storeReplaced();
      return;
    case 'shutdown':
      shutdown(Number(message.graceMs));
      return;
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
    server = createGrpcServer({
      backends: remote.backends,
      maxRequestBytes: config.maxRequestBytes,
      maxTxnOps: config.maxTxnOps,
      maxResponseBytes: config.maxResponseBytes,
      watchProgressIntervalMs: config.watchProgressNotifyIntervalMs,
      defaultRequestTimeoutMs: config.requestTimeoutMs,
      onUnexpectedError: (error, context) => logger.error({ event: 'unexpected-error', method: context.method, error: errorMessage(error), stack: error instanceof Error ? error.stack : undefined }, 'unexpected error in a request handler'),
      clientCertAuth: config.clientCertAuth,
    });
    // Each front-end does its own TLS handshakes (it accepts the connections) and reloads the files itself.
    tlsMaterial = config.clientTls === undefined ? undefined : await TlsMaterial.open(config.clientTls, { scope: 'client', dataDir: '.', hosts: [], logger });
    const secure = tlsMaterial === undefined ? undefined : secureAccept({ material: tlsMaterial, alpn: ['h2'], logger, scope: 'client' });
    await startGrpcServer(server, [...config.listenClientUrls], { secure });
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
  process.exit(code);
}

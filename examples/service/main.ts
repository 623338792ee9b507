/**
 * Example service: a tiny HTTP server (node:http) that registers itself in kvd's service
 * registry under `/registry/<service>/<id>` with a lease of `--ttl` seconds, answers every
 * `GET /...` with JSON naming its id, and deregisters on SIGTERM/SIGINT before exiting 0.
 *
 * ```sh
 * node dist/examples/service/main.js --endpoints 127.0.0.1:2379 --service echo --id a --port 0 --ttl 5
 * ```
 *
 * Flags (environment variable in brackets): `--endpoints` (KVD_ENDPOINTS, comma-separated,
 * default 127.0.0.1:2379), `--service` (SERVICE, default echo), `--id` (SERVICE_ID, default
 * `<hostname>-<pid>`), `--port` (PORT, 0 = any free port, default 0), `--host` (HOST, default
 * 127.0.0.1), `--ttl` (TTL seconds, default 10). Prints exactly one line `listening <port>` on
 * stdout once the instance is registered and serving; diagnostics go to stderr.
 *
 * If the process dies without SIGTERM (kill -9, crash), its key disappears when the lease
 * expires, at most `--ttl` seconds later.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { hostname } from 'node:os';
import { parseArgs } from 'node:util';
import { connect, type Client, type RegisterOptions, type Registration } from '../../src/client/index.js';

/** The parsed command line of the service. */
export interface ServiceOptions {
  /** kvd members, `host:port`. */
  readonly endpoints: readonly string[];
  /** Service name: the key is `/registry/<service>/<id>`. */
  readonly service: string;
  /** Instance id, unique within the service. */
  readonly id: string;
  /** Interface to listen on; also the host part of the registered address. */
  readonly host: string;
  /** Port to listen on; 0 picks a free one. */
  readonly port: number;
  /** Lease TTL: how long the key outlives a crashed instance at most. */
  readonly ttlSeconds: number;
}

/** Parses flags, falling back to environment variables, then to defaults. Throws on bad values. */
export function parseServiceOptions(argv: readonly string[], env: NodeJS.ProcessEnv): ServiceOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      endpoints: { type: 'string' },
      service: { type: 'string' },
      id: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      ttl: { type: 'string' },
    },
    strict: true,
  });
  const endpoints = (values.endpoints ?? env.KVD_ENDPOINTS ?? '127.0.0.1:2379').split(',').map((e) => e.trim()).filter((e) => e !== '');
  const port = Number(values.port ?? env.PORT ?? '0');
  const ttlSeconds = Number(values.ttl ?? env.TTL ?? '10');
  if (endpoints.length === 0) throw new Error('--endpoints: at least one host:port');
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new Error(`--port: not a port: ${String(values.port ?? env.PORT)}`);
  if (!Number.isInteger(ttlSeconds) || ttlSeconds < 1) throw new Error(`--ttl: whole seconds >= 1, got ${String(values.ttl ?? env.TTL)}`);
  return {
    endpoints,
    service: values.service ?? env.SERVICE ?? 'echo',
    id: values.id ?? env.SERVICE_ID ?? `${hostname()}-${process.pid}`,
    host: values.host ?? env.HOST ?? '127.0.0.1',
    port,
    ttlSeconds,
  };
}

function handle(options: ServiceOptions, request: IncomingMessage, response: ServerResponse): void {
  // Drain any request body: the answer never depends on it.
  request.resume();
  const status = request.method === 'GET' || request.method === 'HEAD' ? 200 : 405;
  const body = JSON.stringify({ service: options.service, id: options.id, method: request.method, path: request.url });
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  response.end(request.method === 'HEAD' ? undefined : body);
}

/** How long the service keeps trying to register at startup (the cluster may still be electing). */
export const REGISTER_DEADLINE_MS = 30_000;

/**
 * Registers, retrying with capped exponential backoff until {@link REGISTER_DEADLINE_MS}:
 * a lease grant is a write, which the client sends at most once, so "no leader" while the
 * cluster starts surfaces here.
 */
async function registerWithRetry(client: Client, registration: RegisterOptions): Promise<Registration> {
  const deadline = Date.now() + REGISTER_DEADLINE_MS;
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await client.registry.register(registration);
    } catch (error: unknown) {
      const delayMs = Math.min(2_000, 100 * 2 ** attempt);
      if (Date.now() + delayMs > deadline) throw error;
      process.stderr.write(`register failed (${error instanceof Error ? error.message : String(error)}); retrying in ${delayMs} ms\n`);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}

async function main(): Promise<void> {
  const options = parseServiceOptions(process.argv.slice(2), process.env);
  const server = createServer((request, response) => handle(options, request, response));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;

  const client = connect({ endpoints: options.endpoints });
  let registration: Registration;
  try {
    registration = await registerWithRetry(client, {
      service: options.service,
      id: options.id,
      address: `${options.host}:${port}`,
      ttl: options.ttlSeconds,
      metadata: { pid: process.pid },
    });
  } catch (error: unknown) {
    client.close();
    server.close();
    throw error;
  }
  registration.on('lost', (error) => process.stderr.write(`registration lost (${error.message}); registering again\n`));
  registration.on('reregistered', (leaseId) => process.stderr.write(`registered again under lease ${leaseId.toString(16)}\n`));

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`${signal}: deregistering ${registration.key}\n`);
    // Deregister first (revokes the lease: the key is gone at once, callers stop being routed
    // here), then stop serving. A failed revoke still exits: the lease expires after the TTL.
    registration.close().then(
      () => 0,
      (error: unknown) => {
        process.stderr.write(`deregistration failed, the key expires after ${options.ttlSeconds} s: ${String(error)}\n`);
        return 1;
      },
    ).then((code) => {
      client.close();
      server.closeAllConnections();
      server.close(() => process.exit(code));
    }, (error: unknown) => {
      process.stderr.write(`${String(error)}\n`);
      process.exit(1);
    });
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  process.stdout.write(`listening ${port}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`service: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});

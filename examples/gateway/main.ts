/**
 * Example gateway: an HTTP reverse proxy (node:http) whose backends come from kvd's service
 * registry and whose routes come from kvd config keys, both followed live by watches (never
 * polling the store).
 *
 * ```sh
 * node dist/examples/gateway/main.js --endpoints 127.0.0.1:2379 --port 8080
 * curl localhost:8080/svc/echo/hello            # → an instance of service "echo", path /hello
 * kvctl put /config/gateway/routes/api '{"service":"echo"}'
 * curl localhost:8080/api/hello                 # → the same, through the configured route
 * ```
 *
 * Routing, for a request path P:
 * 1. Configured routes: every key `/config/gateway/routes/<prefix>` holding JSON
 *    `{"service":"<name>"}` maps the path prefix `/<prefix>` to service `<name>` (e.g. key
 *    `/config/gateway/routes/api/v1` maps `/api/v1/...`). The longest prefix matching P at a
 *    segment boundary wins. Routes are re-read from `client.config.watch('/config/gateway/')`
 *    on every change, so puts and deletes apply without a restart; a malformed value is
 *    ignored (and reported on stderr).
 * 2. Otherwise `/svc/<name>/...` goes to service `<name>`.
 * 3. Otherwise 404.
 * The matched prefix is stripped: `/svc/echo/a/b?q` reaches the instance as `/a/b?q`.
 *
 * Instances of a service come from `client.registry.discover(name)` (one view per service,
 * opened on first use, at most {@link SERVICE_VIEWS_MAX}, least recently used closed first)
 * and are chosen round-robin. No instance: 502. A connection failure (refused, reset before
 * any response) is retried once on the next instance; then 502. Responses carry
 * `x-gateway-instance` (the instance id) and `x-gateway-attempts` (1 or 2).
 *
 * Flags (environment variable in brackets): `--endpoints` (KVD_ENDPOINTS, comma-separated,
 * default 127.0.0.1:2379), `--port` (PORT, 0 = any free port, default 8080), `--host` (HOST,
 * default 127.0.0.1). Prints one line `listening <port>` on stdout once the routes are loaded
 * and it serves. SIGTERM/SIGINT close everything and exit 0.
 */
import { Agent, createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { parseArgs } from 'node:util';
import { connect, type Client, type ConfigWatch, type ServiceInstance, type ServiceView } from '../../src/client/index.js';

/** The config prefix the gateway watches. */
export const CONFIG_PREFIX = '/config/gateway/';
/** Keys under this prefix are routes: `<ROUTES_PREFIX><path prefix without leading '/'>`. */
export const ROUTES_PREFIX = `${CONFIG_PREFIX}routes/`;
/** At most this many services are followed at once; the least recently used view is closed. */
export const SERVICE_VIEWS_MAX = 64;
/** Request bodies are buffered (so a failed attempt can be retried) up to this size; larger: 413. */
export const REQUEST_BODY_BYTES_MAX = 1024 * 1024;
/** An upstream attempt that has not answered within this many milliseconds fails with 504. */
export const UPSTREAM_TIMEOUT_MS = 10_000;
/** Idle keep-alive sockets kept per instance. */
const UPSTREAM_SOCKETS_MAX = 64;

/** The parsed command line of the gateway. */
export interface GatewayOptions {
  /** kvd members, `host:port`. */
  readonly endpoints: readonly string[];
  /** Interface to listen on. */
  readonly host: string;
  /** Port to listen on; 0 picks a free one. */
  readonly port: number;
}

/** Parses flags, falling back to environment variables, then to defaults. Throws on bad values. */
export function parseGatewayOptions(argv: readonly string[], env: NodeJS.ProcessEnv): GatewayOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: { endpoints: { type: 'string' }, host: { type: 'string' }, port: { type: 'string' } },
    strict: true,
  });
  const endpoints = (values.endpoints ?? env.KVD_ENDPOINTS ?? '127.0.0.1:2379').split(',').map((e) => e.trim()).filter((e) => e !== '');
  const port = Number(values.port ?? env.PORT ?? '8080');
  if (endpoints.length === 0) throw new Error('--endpoints: at least one host:port');
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new Error(`--port: not a port: ${String(values.port ?? env.PORT)}`);
  return { endpoints, host: values.host ?? env.HOST ?? '127.0.0.1', port };
}

/** One configured route: requests under `prefix` go to `service`. */
export interface Route {
  /** Path prefix, starting with '/', without a trailing '/'. */
  readonly prefix: string;
  readonly service: string;
}

/** Where a request goes: the service and the path to send upstream. */
export interface RouteMatch {
  /** The service whose instances serve the request. */
  readonly service: string;
  /** The request target sent upstream: the path without the matched prefix, plus the query. */
  readonly upstreamPath: string;
}

const SERVICE_NAME = /^[A-Za-z0-9._-]+$/;

/**
 * Builds the route table from the config map (key → value under {@link CONFIG_PREFIX}),
 * longest prefix first. Keys outside {@link ROUTES_PREFIX} are ignored; malformed routes are
 * skipped and reported through `onInvalid`.
 */
export function parseRoutes(config: ReadonlyMap<string, string>, onInvalid: (key: string, why: string) => void): Route[] {
  const routes: Route[] = [];
  for (const [key, value] of config) {
    if (!key.startsWith(ROUTES_PREFIX)) continue;
    const prefix = `/${key.slice(ROUTES_PREFIX.length)}`.replace(/\/+$/, '');
    if (prefix === '') {
      onInvalid(key, 'empty path prefix');
      continue;
    }
    let service: unknown;
    try {
      service = (JSON.parse(value) as { service?: unknown } | null)?.service;
    } catch (error: unknown) {
      onInvalid(key, `not JSON: ${error instanceof Error ? error.message : String(error)}`);
      continue;
    }
    if (typeof service !== 'string' || !SERVICE_NAME.test(service)) {
      onInvalid(key, 'expected {"service": "<name>"} with a name of [A-Za-z0-9._-]');
      continue;
    }
    routes.push({ prefix, service });
  }
  return routes.sort((a, b) => b.prefix.length - a.prefix.length);
}

/** Resolves a request target (`/path?query`) against `routes` (longest first), then `/svc/<name>/`. */
export function matchRoute(target: string, routes: readonly Route[]): RouteMatch | undefined {
  const queryAt = target.indexOf('?');
  const path = queryAt < 0 ? target : target.slice(0, queryAt);
  const query = queryAt < 0 ? '' : target.slice(queryAt);
  const strip = (prefix: string): string => (path.slice(prefix.length) === '' ? '/' : path.slice(prefix.length)) + query;
  for (const route of routes) {
    if (path === route.prefix || path.startsWith(`${route.prefix}/`)) return { service: route.service, upstreamPath: strip(route.prefix) };
  }
  const svc = /^\/svc\/([^/]+)(?:\/|$)/.exec(path);
  if (svc !== null && SERVICE_NAME.test(svc[1])) return { service: svc[1], upstreamPath: strip(`/svc/${svc[1]}`) };
  return undefined;
}

function describe(instances: readonly ServiceInstance[]): string {
  return instances.length === 0 ? 'no instances' : instances.map((i) => `${i.id}@${i.address}`).join(', ');
}

/**
 * The services the gateway follows: one {@link ServiceView} per service (discovered on first
 * use, bounded by {@link SERVICE_VIEWS_MAX}) and a round-robin cursor per service.
 */
class Backends {
  readonly #client: Client;
  /** Insertion order is recency order (re-inserted on use). */
  readonly #views = new Map<string, Promise<ServiceView>>();
  readonly #cursors = new Map<string, number>();

  constructor(client: Client) {
    this.#client = client;
  }

  /** The live instances of `service` (the view's current list; no store read after the first). */
  async instances(service: string): Promise<readonly ServiceInstance[]> {
    let view = this.#views.get(service);
    if (view === undefined) {
      const created = this.#client.registry.discover(service);
      void created.then((v) => { // Detached: logging, and forgetting a failed discovery.
        process.stderr.write(`${service}: ${describe(v.instances)}\n`);
        v.on('change', (instances) => process.stderr.write(`${service} changed: ${describe(instances)}\n`));
      }, (error: unknown) => {
        // Forget a failed discovery so that the next request tries again.
        process.stderr.write(`${service}: discovery failed: ${String(error)}\n`);
        if (this.#views.get(service) === created) this.#views.delete(service);
      });
      this.#evictOldestWhileFull();
      view = created;
    }
    this.#views.delete(service);
    this.#views.set(service, view);
    return (await view).instances;
  }

  #evictOldestWhileFull(): void {
    while (this.#views.size >= SERVICE_VIEWS_MAX) {
      const [oldest, view] = this.#views.entries().next().value as [string, Promise<ServiceView>];
      this.#views.delete(oldest);
      this.#cursors.delete(oldest);
      void view.then((v) => v.close(), (error: unknown) => void error); // Detached: a failed view has nothing to close.
    }
  }

  /** The next `count` distinct instances in round-robin order (fewer if there are fewer). */
  pick(service: string, instances: readonly ServiceInstance[], count: number): ServiceInstance[] {
    if (instances.length === 0) return [];
    const cursor = this.#cursors.get(service) ?? 0;
    this.#cursors.set(service, (cursor + 1) % instances.length);
    const picked: ServiceInstance[] = [];
    for (let i = 0; i < Math.min(count, instances.length); i += 1) picked.push(instances[(cursor + i) % instances.length]);
    return picked;
  }

  close(): void {
    for (const view of this.#views.values()) void view.then((v) => v.close(), (error: unknown) => void error); // Detached, as above.
    this.#views.clear();
  }
}

/** The outcome of one upstream attempt. */
type Attempt =
  | { readonly kind: 'response'; readonly response: IncomingMessage }
  | { readonly kind: 'connection-failed'; readonly error: Error }
  | { readonly kind: 'failed'; readonly status: 502 | 504; readonly error: Error };

const CONNECTION_FAILURES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

/** Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'host']);

function forwardHeaders(headers: IncomingMessage['headers']): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  return out;
}

function tryInstance(agent: Agent, instance: ServiceInstance, request: IncomingMessage, body: Buffer, upstreamPath: string): Promise<Attempt> {
  const separator = instance.address.lastIndexOf(':');
  const host = instance.address.slice(0, separator).replace(/^\[(.*)\]$/, '$1'); // [::1]:80 → ::1
  const port = Number(instance.address.slice(separator + 1));
  return new Promise<Attempt>((resolve) => {
    const headers = forwardHeaders(request.headers);
    headers['content-length'] = String(body.length);
    headers['x-forwarded-for'] = request.socket.remoteAddress ?? '';
    const upstream = httpRequest({ agent, host, port, method: request.method, path: upstreamPath, headers, timeout: UPSTREAM_TIMEOUT_MS });
    upstream.once('response', (response) => resolve({ kind: 'response', response }));
    upstream.once('timeout', () => upstream.destroy(Object.assign(new Error('upstream timeout'), { code: 'ETIMEDOUT' })));
    // 'on', not 'once': the socket can also fail after the response began (resolve is then a no-op;
    // the response stream reports it, see Gateway.handle).
    upstream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ETIMEDOUT') resolve({ kind: 'failed', status: 504, error });
      else if (error.code !== undefined && CONNECTION_FAILURES.has(error.code)) resolve({ kind: 'connection-failed', error });
      else resolve({ kind: 'failed', status: 502, error });
    });
    upstream.end(body);
  });
}

function sendJson(response: ServerResponse, status: number, body: object, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  response.end(text);
}

function readBody(request: IncomingMessage): Promise<Buffer | 'too-large'> {
  return new Promise<Buffer | 'too-large'>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > REQUEST_BODY_BYTES_MAX) {
        request.removeAllListeners('data');
        request.resume();
        resolve('too-large');
      } else chunks.push(chunk);
    });
    request.once('end', () => resolve(Buffer.concat(chunks)));
    request.on('error', reject);
  });
}

/** The gateway's request handling; state (routes, backends) is swapped in by the watches. */
class Gateway {
  readonly #backends: Backends;
  /** Keep-alive to instances; no per-instance socket cap, so the agent never queues requests. */
  readonly #agent = new Agent({ keepAlive: true, maxFreeSockets: UPSTREAM_SOCKETS_MAX });
  /** Replaced wholesale on every config change (readers never see a half-built table). */
  routes: readonly Route[] = [];

  constructor(client: Client) {
    this.#backends = new Backends(client);
  }

  async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const match = matchRoute(request.url ?? '/', this.routes);
    if (match === undefined) {
      sendJson(response, 404, { error: 'no route', path: request.url });
      return;
    }
    const body = await readBody(request);
    if (body === 'too-large') {
      sendJson(response, 413, { error: `request body over ${REQUEST_BODY_BYTES_MAX} bytes` });
      return;
    }
    let instances: readonly ServiceInstance[];
    try {
      instances = await this.#backends.instances(match.service);
    } catch (error: unknown) {
      sendJson(response, 503, { error: 'registry unavailable', service: match.service, detail: String(error) });
      return;
    }
    // One attempt plus one retry on the next instance if the first could not connect.
    const candidates = this.#backends.pick(match.service, instances, 2);
    if (candidates.length === 0) {
      sendJson(response, 502, { error: 'no instance', service: match.service });
      return;
    }
    let attempts = 0;
    let lastError: Error | undefined;
    for (const instance of candidates) {
      attempts += 1;
      const attempt = await tryInstance(this.#agent, instance, request, body, match.upstreamPath);
      if (attempt.kind === 'response') {
        const headers = forwardHeaders(attempt.response.headers);
        headers['x-gateway-instance'] = instance.id;
        headers['x-gateway-attempts'] = String(attempts);
        response.writeHead(attempt.response.statusCode ?? 502, headers);
        // An upstream failing mid-body cannot be retried (the status went out): cut the reply short.
        attempt.response.on('error', (error: Error) => {
          process.stderr.write(`${match.service}/${instance.id} failed mid-response: ${error.message}\n`);
          response.destroy();
        });
        attempt.response.pipe(response);
        return;
      }
      lastError = attempt.error;
      if (attempt.kind === 'failed') {
        sendJson(response, attempt.status, { error: 'upstream failed', service: match.service, instance: instance.id, detail: attempt.error.message }, { 'x-gateway-attempts': String(attempts) });
        return;
      }
    }
    sendJson(response, 502, { error: 'no instance reachable', service: match.service, detail: lastError?.message ?? '' }, { 'x-gateway-attempts': String(attempts) });
  }

  close(): void {
    this.#backends.close();
    this.#agent.destroy();
  }
}

/** How long the gateway keeps trying to load its routes at startup. */
export const CONFIG_LOAD_DEADLINE_MS = 30_000;

/**
 * Follows the routes under {@link ROUTES_PREFIX}, handing every new table to `onRoutes`;
 * resolves after the first table. Retries the initial load (capped exponential backoff, until
 * {@link CONFIG_LOAD_DEADLINE_MS}) while the cluster is unreachable.
 */
async function watchRoutes(client: Client, onRoutes: (routes: readonly Route[]) => void): Promise<ConfigWatch> {
  const deadline = Date.now() + CONFIG_LOAD_DEADLINE_MS;
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await client.config.watch(CONFIG_PREFIX, (map, change) => {
        const routes = parseRoutes(map, (key, why) => process.stderr.write(`ignoring route ${key}: ${why}\n`));
        onRoutes(routes);
        process.stderr.write(`routes (${change.kind} at revision ${change.revision}): ${routes.map((r) => `${r.prefix} → ${r.service}`).join(', ') || 'none'}\n`);
      });
    } catch (error: unknown) {
      const delayMs = Math.min(2_000, 100 * 2 ** attempt);
      if (Date.now() + delayMs > deadline) throw error;
      process.stderr.write(`loading routes failed (${error instanceof Error ? error.message : String(error)}); retrying in ${delayMs} ms\n`);
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
  }
}

async function main(): Promise<void> {
  const options = parseGatewayOptions(process.argv.slice(2), process.env);
  const client = connect({ endpoints: options.endpoints });
  const gateway = new Gateway(client);
  const config = await watchRoutes(client, (routes) => {
    gateway.routes = routes;
  });

  const server = createServer((request, response) => {
    gateway.handle(request, response).catch((error: unknown) => {
      process.stderr.write(`request ${request.url ?? ''} failed: ${String(error)}\n`);
      if (!response.headersSent) sendJson(response, 500, { error: 'internal' });
      else response.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : options.port;

  const stop = (): void => {
    config.close();
    gateway.close();
    client.close();
    server.closeAllConnections();
    server.close(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);

  process.stdout.write(`listening ${port}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`gateway: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});

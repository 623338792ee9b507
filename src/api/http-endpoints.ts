/**
 * The plain HTTP endpoints of the client port and of --listen-metrics-urls, as etcd serves them:
 *
 * - `/health` (etcd 3.4): `{"health":"true"}` (text/plain); 503 `{"health":"false","reason":...}`
 *   when an alarm is active, when there is no leader (unless `?serializable=true`), or when a
 *   range read fails ("RANGE ERROR:..."). `?exclude=NOSPACE` ignores that alarm.
 * - `/livez`, `/readyz` (etcd 3.5.11+/3.4.29+): `ok\n`; with `?verbose` each check's line first
 *   (`[+]serializable_read ok`); on failure 503 with the lines (`[-]linearizable_read failed:
 *   etcdserver: no leader`); `?exclude=<check>`; one check alone at `/readyz/<check>`.
 *   livez: serializable_read. readyz: data_corruption, serializable_read, linearizable_read.
 * - `/version`: `{"etcdserver":..., "etcdcluster":"3.4.0"}`.
 * - `/metrics`: Prometheus text (`text/plain; version=0.0.4; charset=utf-8`).
 * - `/debug/pprof/profile?seconds=N` and `/debug/pprof/heap` when profiling is enabled
 *   (--enable-pprof): a V8 CPU profile (.cpuprofile) or heap snapshot (.heapsnapshot) of the core
 *   process, or of the front-end answering with `?process=frontend`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import type { Alarm, Backends } from './backend.js';
import { CORS_HEADERS, plainError } from './http-gateway.js';
import { errorMessage } from '../util/errors.js';
import type { RangeRequest } from '../store/mvcc/types.js';

/** Which process a profile is taken of. */
export type ProfileTarget = 'core' | 'frontend';

/** On-demand profiling (--enable-pprof). */
export interface Profiling {
  /** A CPU profile over `seconds` (DevTools .cpuprofile JSON text). */
  cpuProfile(seconds: number, target: ProfileTarget): Promise<string>;
  /** Writes a heap snapshot to a temporary file and returns its path (the caller streams and removes it). */
  heapSnapshot(target: ProfileTarget): Promise<string>;
}

/** Longest CPU profile (seconds); Go's pprof default is 30. */
export const PROFILE_SECONDS_MAX = 300;
export const PROFILE_SECONDS_DEFAULT = 30;

/** Options of {@link createHttpEndpoints}. */
export interface HttpEndpointsOptions {
  readonly backends: Backends;
  readonly requestTimeoutMs: number;
  /** The member's metrics as Prometheus text. */
  readonly metrics: () => Promise<string>;
  readonly version: { readonly etcdserver: string; readonly etcdcluster: string };
  /** Present with --enable-pprof. */
  readonly profiling?: Profiling;
}

/** Prometheus text format's content type, as etcd sends it. */
const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type Check = () => Promise<void>;

/** Builds the handler; it returns false for paths it does not serve. */
export function createHttpEndpoints(options: HttpEndpointsOptions): (request: IncomingMessage, response: ServerResponse) => boolean {
  const { backends } = options;
  const callOptions = (): { deadline: number; signal: AbortSignal } => ({ deadline: Date.now() + options.requestTimeoutMs, signal: new AbortController().signal });
  const alarms = async (): Promise<readonly Alarm[]> => {
    const alarm = backends.maintenance.alarm;
    if (alarm === undefined) return [];
    return (await alarm.call(backends.maintenance, { action: 'get', memberId: 0n, alarm: 'none' }, callOptions())).alarms;
  };
  const hasLeader = (): boolean => backends.leadership === undefined || backends.leadership.hasLeader();
  const read = async (serializable: boolean): Promise<void> => {
    const request: RangeRequest = {
      key: new Uint8Array([0]), rangeEnd: new Uint8Array(0), limit: 1, revision: 0, sortOrder: 'none', sortTarget: 'key', serializable,
      keysOnly: true, countOnly: false, minModRevision: 0, maxModRevision: 0, minCreateRevision: 0, maxCreateRevision: 0,
    };
    await backends.kv.range(request, callOptions());
  };
  const livez: ReadonlyArray<[string, Check]> = [['serializable_read', () => read(true)]];
  const readyz: ReadonlyArray<[string, Check]> = [
    ['data_corruption', async () => {
      if ((await alarms()).some((item) => item.alarm === 'corrupt')) throw new Error('alarm activated: CORRUPT');
    }],
    ['serializable_read', () => read(true)],
    ['linearizable_read', () => read(false)],
  ];
  return (request, response) => {
    const url = new URL(request.url ?? '/', 'http://localhost');
    const path = url.pathname;
    if (path === '/health') {
      if (!getOnly(request, response)) return true;
      void health(url, { alarms, hasLeader, read }).then((result) => {
        const body = result.health === 'true' ? '{"health":"true"}' : JSON.stringify(result);
        if (result.health === 'true') {
          response.writeHead(200, { ...CORS_HEADERS, 'Content-Type': 'text/plain; charset=utf-8' });
          response.end(body);
        } else {
          plainError(response, 503, body);
        }
      }); // Detached: health() never rejects.
      return true;
    }
    for (const [root, checks] of [['/livez', livez], ['/readyz', readyz]] as const) {
      if (path !== root && !path.startsWith(`${root}/`)) continue;
      const single = path === root ? undefined : path.slice(root.length + 1);
      const chosen = single === undefined ? checks.filter(([name]) => !url.searchParams.getAll('exclude').includes(name)) : checks.filter(([name]) => name === single);
      if (chosen.length === 0) {
        plainError(response, 404, '404 page not found');
        return true;
      }
      if (!getOnly(request, response)) return true;
      void runChecks(chosen).then(({ ok, lines }) => {
        if (!ok) {
          plainError(response, 503, lines);
          return;
        }
        response.writeHead(200, { ...CORS_HEADERS, 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
        response.end(`${url.searchParams.has('verbose') ? lines : ''}ok\n`);
      }); // Detached: runChecks() never rejects.
      return true;
    }
    if (path === '/version') {
      response.writeHead(200, { ...CORS_HEADERS, 'Content-Type': 'application/json' });
      response.end(JSON.stringify(options.version));
      return true;
    }
    if (path === '/metrics') {
      options.metrics().then(
        (text) => {
          response.writeHead(200, { ...CORS_HEADERS, 'Content-Type': METRICS_CONTENT_TYPE });
          response.end(text);
        },
        (error: unknown) => plainError(response, 500, `metrics: ${errorMessage(error)}`),
      );
      return true;
    }
    if (path.startsWith('/debug/pprof')) {
      if (options.profiling === undefined) return false;
      serveProfile(path, url, response, options.profiling);
      return true;
    }
    return false;
  };
}

function getOnly(request: IncomingMessage, response: ServerResponse): boolean {
  if (request.method === 'GET' || request.method === 'HEAD') return true;
  response.setHeader('Allow', 'GET');
  plainError(response, 405, 'Method Not Allowed');
  return false;
}

async function health(url: URL, probes: { alarms: () => Promise<readonly Alarm[]>; hasLeader: () => boolean; read: (serializable: boolean) => Promise<void> }): Promise<{ health: string; reason?: string }> {
  const excluded = new Set(url.searchParams.getAll('exclude'));
  const serializable = url.searchParams.get('serializable') === 'true';
  try {
    for (const alarm of await probes.alarms()) {
      const name = alarm.alarm.toUpperCase();
      if (excluded.has(name)) continue;
      return { health: 'false', reason: alarm.alarm === 'nospace' ? 'ALARM NOSPACE' : alarm.alarm === 'corrupt' ? 'ALARM CORRUPT' : 'ALARM UNKNOWN' };
    }
  } catch (error: unknown) {
    return { health: 'false', reason: `ALARM ERROR:${errorMessage(error)}` };
  }
  if (!serializable && !probes.hasLeader()) return { health: 'false', reason: 'RAFT NO LEADER' };
  try {
    await probes.read(serializable);
  } catch (error: unknown) {
    return { health: 'false', reason: `RANGE ERROR:${errorMessage(error)}` };
  }
  return { health: 'true' };
}

async function runChecks(checks: ReadonlyArray<readonly [string, Check]>): Promise<{ ok: boolean; lines: string }> {
  let ok = true;
  let lines = '';
  for (const [name, check] of checks) {
    try {
      await check();
      lines += `[+]${name} ok\n`;
    } catch (error: unknown) {
      ok = false;
      lines += `[-]${name} failed: ${errorMessage(error)}\n`;
    }
  }
  return { ok, lines };
}

/** Profiles taken at once per process: one (a second one is refused, as Go's pprof does). */
let profiling = false;

function serveProfile(path: string, url: URL, response: ServerResponse, profiler: Profiling): void {
  const target: ProfileTarget = url.searchParams.get('process') === 'frontend' ? 'frontend' : 'core';
  if (path === '/debug/pprof' || path === '/debug/pprof/') {
    response.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
    response.end('kvd profiles (V8 formats; open in Chrome DevTools or speedscope):\n'
      + `/debug/pprof/profile?seconds=N  CPU profile over N seconds (default ${PROFILE_SECONDS_DEFAULT}, at most ${PROFILE_SECONDS_MAX}), .cpuprofile\n`
      + '/debug/pprof/heap               heap snapshot, .heapsnapshot\n'
      + 'add &process=frontend (or ?process=frontend) for the front-end process that answers instead of the core\n');
    return;
  }
  if (path !== '/debug/pprof/profile' && path !== '/debug/pprof/heap') {
    plainError(response, 404, '404 page not found');
    return;
  }
  if (profiling) {
    plainError(response, 500, 'Could not enable profiling: a profile is already being taken');
    return;
  }
  profiling = true;
  const done = (): void => { profiling = false; };
  if (path === '/debug/pprof/profile') {
    const seconds = Number(url.searchParams.get('seconds') ?? PROFILE_SECONDS_DEFAULT);
    if (!Number.isFinite(seconds) || seconds <= 0 || seconds > PROFILE_SECONDS_MAX) {
      done();
      plainError(response, 400, `seconds must be a number in (0, ${PROFILE_SECONDS_MAX}]`);
      return;
    }
    profiler.cpuProfile(seconds, target).then(
      (text) => {
        done();
        response.writeHead(200, { 'Content-Type': 'application/json', 'Content-Disposition': `attachment; filename="kvd-${target}.cpuprofile"` });
        response.end(text);
      },
      (error: unknown) => {
        done();
        plainError(response, 500, `Could not take a CPU profile: ${errorMessage(error)}`);
      },
    );
    return;
  }
  profiler.heapSnapshot(target).then(
    (file) => {
      response.writeHead(200, { 'Content-Type': 'application/json', 'Content-Disposition': `attachment; filename="kvd-${target}.heapsnapshot"` });
      const stream = createReadStream(file);
      const cleanup = (): void => {
        done();
        void rm(file, { force: true }); // Detached: a leftover temp file is harmless.
      };
      stream.once('close', cleanup);
      stream.once('error', () => response.destroy());
      stream.pipe(response);
    },
    (error: unknown) => {
      done();
      plainError(response, 500, `Could not take a heap snapshot: ${errorMessage(error)}`);
    },
  );
}

/**
 * CORS preflights: etcd's access controller answers every `OPTIONS` request with 200 and its
 * CORS headers (the default `--cors=*`), whatever the path. A browser page served by one member
 * (the web console) asks the others this before a POST with a JSON body or an Authorization header.
 */
export function corsPreflight(request: IncomingMessage, response: ServerResponse): boolean {
  if (request.method !== 'OPTIONS') return false;
  response.writeHead(200, { ...CORS_HEADERS, 'Access-Control-Max-Age': '600', 'Content-Length': 0 });
  response.end();
  return true;
}

/**
 * The client port's HTTP/1.1 handler: the endpoints above, then the JSON gateway, then Go's
 * `404 page not found` (so `/v3alpha/...` answers as etcd 3.4 does).
 */
export function composeHttpHandlers(...handlers: ReadonlyArray<(request: IncomingMessage, response: ServerResponse) => boolean>): (request: IncomingMessage, response: ServerResponse) => void {
  return (request, response) => {
    for (const handler of handlers) if (handler(request, response)) return;
    plainError(response, 404, '404 page not found');
  };
}

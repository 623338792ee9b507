/**
 * The client port's HTTP/1.1 side, shared by the member process (--frontends 0) and the front-end
 * processes: CORS preflights, /health, /livez, /readyz, /version, /metrics, /debug/pprof, /ui/ (the
 * web console), then the JSON gateway;
 * and the slow-request log line both write.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GRPC_OVERHEAD_BYTES, type ClientApi } from '../api/server.js';
import type { Backends } from '../api/backend.js';
import type { UnexpectedErrorHandler } from '../api/call.js';
import { createJsonGateway } from '../api/http-gateway.js';
import { composeHttpHandlers, corsPreflight, createHttpEndpoints, type Profiling } from '../api/http-endpoints.js';
import { createUiHandler } from '../api/ui-assets.js';
import { SLOW_REQUEST_MS, type SlowRequest } from '../api/instrument.js';
import type { Logger } from './logger.js';
import { VERSION_INFO } from './versions.js';

/**
 * The client port's HTTP/1.1 side: CORS preflights, health, version, metrics, profiles, the web
 * console's files (/ui/, --enable-ui), then the JSON gateway.
 */
export function clientHttpHandler(options: {
  readonly services: ClientApi['services'];
  readonly backends: Backends;
  readonly config: { readonly maxRequestBytes: number; readonly requestTimeoutMs: number; readonly enableUi: boolean };
  readonly metrics: () => Promise<string>;
  readonly profiling: Profiling | undefined;
  readonly onUnexpectedError: UnexpectedErrorHandler;
}): (request: IncomingMessage, response: ServerResponse) => void {
  return composeHttpHandlers(
    corsPreflight,
    createUiHandler({ mode: options.config.enableUi ? 'on' : 'off' }),
    createHttpEndpoints({ backends: options.backends, requestTimeoutMs: options.config.requestTimeoutMs, metrics: options.metrics, version: VERSION_INFO, profiling: options.profiling }),
    createJsonGateway({ services: options.services, maxRequestBytes: options.config.maxRequestBytes, grpcOverheadBytes: GRPC_OVERHEAD_BYTES, onUnexpectedError: options.onUnexpectedError }),
  );
}

/** Most slow-request lines per second and logger; the rest are counted in the next line's `suppressed`. */
export const SLOW_REQUEST_LINES_PER_SECOND = 20;

const slowLineBudget = new WeakMap<Logger, { second: number; lines: number; suppressed: number }>();

/**
 * etcd's "apply request took too long" warning, with the time each stage took. At most
 * {@link SLOW_REQUEST_LINES_PER_SECOND} lines a second: an overloaded member has thousands of slow
 * requests a second, and a line for each only adds to the load (the next line that is written
 * says how many were left out).
 */
export function logSlowRequest(log: Logger, request: SlowRequest, nowMs = Date.now()): void {
  const second = Math.floor(nowMs / 1000);
  let budget = slowLineBudget.get(log);
  if (budget === undefined) {
    budget = { second, lines: 0, suppressed: 0 };
    slowLineBudget.set(log, budget);
  }
  if (budget.second !== second) {
    budget.second = second;
    budget.lines = 0;
  }
  if (budget.lines >= SLOW_REQUEST_LINES_PER_SECOND) {
    budget.suppressed += 1;
    return;
  }
  budget.lines += 1;
  const suppressed = budget.suppressed;
  budget.suppressed = 0;
  const { trace } = request;
  const known = (trace.decodeMs ?? 0) + (trace.proposeMs ?? 0) + (trace.applyMs ?? 0);
  log.warn({
    event: 'slow-request',
    method: `/${request.service}/${request.method}`,
    code: request.code,
    tookMs: round(request.tookMs),
    expectedMs: SLOW_REQUEST_MS,
    decodeMs: round(trace.decodeMs),
    proposeMs: round(trace.proposeMs),
    commitApplyMs: round(trace.applyMs),
    encodeAndOtherMs: round(Math.max(0, request.tookMs - known)),
    ...(suppressed > 0 ? { suppressed } : {}),
  }, 'request took too long');
}

function round(value: number | undefined): number | undefined {
  return value === undefined ? undefined : Math.round(value * 1000) / 1000;
}


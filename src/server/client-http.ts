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

/** etcd's "apply request took too long" warning, with the time each stage took. */
export function logSlowRequest(log: Logger, request: SlowRequest): void {
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
  }, 'request took too long');
}

function round(value: number | undefined): number | undefined {
  return value === undefined ? undefined : Math.round(value * 1000) / 1000;
}


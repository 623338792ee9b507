/**
 * Per-call observation of the client-facing services, in one wrapper around every handler (so
 * gRPC calls and JSON gateway calls, which run the same handlers, are counted alike):
 *
 * - `started`/`handled` with go-grpc-prometheus' labels (grpc_type, grpc_service, grpc_method,
 *   grpc_code as Go spells the code), for grpc_server_started_total / grpc_server_handled_total;
 * - a {@link RequestTrace} per unary call, filled by the stages it passes (decode in the
 *   deserializer, propose and apply in the member, encode in the handler), reported through
 *   `slowRequest` when the call took longer than {@link SLOW_REQUEST_MS} (etcd's "apply request
 *   took too long" warning, with the time spent in each stage).
 */
import type * as grpc from '@grpc/grpc-js';

/** Calls slower than this are reported (etcd's default --warning-apply-duration, 100 ms). */
export const SLOW_REQUEST_MS = 100;

/** go-grpc-prometheus' grpc_type values. */
export type GrpcType = 'unary' | 'client_stream' | 'server_stream' | 'bidi_stream';

/**
 * Where a unary call spent its time (ms since the epoch, Date.now() scale, or durations in ms).
 * Filled in by whoever passes a stage; stages a call never reached stay undefined.
 */
export interface RequestTrace {
  /** The handler was entered. */
  readonly startMs: number;
  /** Time the request took to deserialize (protobuf, or JSON + protobuf on the gateway). */
  decodeMs?: number;
  /** Time from the backend call to the proposal being accepted by Raft (queue + propose). */
  proposeMs?: number;
  /** Time from the proposal to its result applied on this member (commit + apply). */
  applyMs?: number;
  /** Time from the backend's answer to the response being ready to send. */
  encodeMs?: number;
  /** Time in the backend, wherever spent (reads: barrier + read). */
  backendMs?: number;
}

/** A slow call, as reported to {@link CallObserver.slowRequest}. */
export interface SlowRequest {
  readonly service: string;
  readonly method: string;
  readonly tookMs: number;
  readonly code: string;
  readonly trace: RequestTrace;
}

/** Receives what the wrapper observes. Must not throw. */
export interface CallObserver {
  started(type: GrpcType, service: string, method: string): void;
  handled(type: GrpcType, service: string, method: string, code: string): void;
  slowRequest?(request: SlowRequest): void;
}

/** Go's codes.Code names (what go-grpc-prometheus puts in grpc_code). */
export const GRPC_CODE_NAMES = [
  'OK', 'Canceled', 'Unknown', 'InvalidArgument', 'DeadlineExceeded', 'NotFound', 'AlreadyExists', 'PermissionDenied',
  'ResourceExhausted', 'FailedPrecondition', 'Aborted', 'OutOfRange', 'Unimplemented', 'Internal', 'Unavailable',
  'DataLoss', 'Unauthenticated',
] as const;

export function grpcCodeName(code: unknown): string {
  return typeof code === 'number' && code >= 0 && code < GRPC_CODE_NAMES.length ? GRPC_CODE_NAMES[code] : 'Unknown';
}

/** Symbol under which a call object carries its trace. */
export const TRACE = Symbol('kvd.trace');
/** Symbol under which a decoded request carries its decode time in ms. */
export const DECODE_MS = Symbol('kvd.decodeMs');

/** The trace of a call (undefined for calls not wrapped). */
export function traceOf(call: unknown): RequestTrace | undefined {
  return (call as { [TRACE]?: RequestTrace } | null)?.[TRACE];
}

export function grpcTypeOf(method: grpc.MethodDefinition<unknown, unknown>): GrpcType {
  if (method.requestStream) return method.responseStream ? 'bidi_stream' : 'client_stream';
  return method.responseStream ? 'server_stream' : 'unary';
}

/**
 * Wraps every handler of a service: counts started/handled, gives unary calls a trace, reports
 * slow unary calls, and times request decoding (the definition's deserializers are wrapped).
 */
export function instrumentService(
  serviceName: string,
  definition: grpc.ServiceDefinition,
  handlers: grpc.UntypedServiceImplementation,
  observer: CallObserver,
): { definition: grpc.ServiceDefinition; handlers: grpc.UntypedServiceImplementation } {
  const timedDefinition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const wrapped: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(definition)) {
    timedDefinition[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        const started = performance.now();
        const message = method.requestDeserialize(bytes);
        if (message !== null && typeof message === 'object') {
          (message as { [DECODE_MS]?: number })[DECODE_MS] = performance.now() - started;
        }
        return message;
      },
    };
    const handler = handlers[name];
    if (handler === undefined) continue;
    const type = grpcTypeOf(method);
    wrapped[name] = (type === 'unary' ? wrapUnary(serviceName, name, handler, observer) : wrapStream(serviceName, name, type, handler, observer)) as grpc.UntypedHandleCall;
  }
  return { definition: timedDefinition as grpc.ServiceDefinition, handlers: wrapped };
}

function wrapUnary(service: string, method: string, handler: grpc.UntypedHandleCall, observer: CallObserver): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    const startMs = Date.now();
    const started = performance.now();
    const decodeMs = (call.request as { [DECODE_MS]?: number } | null)?.[DECODE_MS];
    const trace: RequestTrace = { startMs, decodeMs };
    (call as { [TRACE]?: RequestTrace })[TRACE] = trace;
    observer.started('unary', service, method);
    (handler as grpc.handleUnaryCall<unknown, unknown>)(call, (error, value, trailer, flags) => {
      const code = error === null || error === undefined ? 'OK' : grpcCodeName((error as { code?: number }).code);
      observer.handled('unary', service, method, code);
      const tookMs = performance.now() - started;
      if (tookMs > SLOW_REQUEST_MS && observer.slowRequest !== undefined) observer.slowRequest({ service, method, tookMs, code, trace });
      callback(error, value, trailer, flags);
    });
  };
}

function wrapStream(service: string, method: string, type: GrpcType, handler: grpc.UntypedHandleCall, observer: CallObserver): (call: grpc.ServerWritableStream<unknown, unknown>, callback?: unknown) => void {
  return (call, callback) => {
    observer.started(type, service, method);
    let done = false;
    const finish = (code: string): void => {
      if (done) return;
      done = true;
      observer.handled(type, service, method, code);
    };
    const stream = call as unknown as { end: (...args: unknown[]) => unknown; emit: (event: string | symbol, ...args: unknown[]) => boolean };
    const end = stream.end.bind(call);
    stream.end = (...args: unknown[]) => {
      finish('OK');
      return end(...args);
    };
    const emit = stream.emit.bind(call);
    stream.emit = (event: string | symbol, ...args: unknown[]) => {
      if (event === 'error') finish(grpcCodeName((args[0] as { code?: number } | undefined)?.code));
      return emit(event, ...args);
    };
    call.once('cancelled', () => finish('Canceled'));
    if (typeof callback === 'function') {
      // client-streaming: the answer comes through the callback
      (handler as (call: unknown, callback: unknown) => void)(call, (error: { code?: number } | null, ...rest: unknown[]) => {
        finish(error === null || error === undefined ? 'OK' : grpcCodeName(error.code));
        (callback as (...args: unknown[]) => void)(error, ...rest);
      });
      return;
    }
    (handler as (call: unknown) => void)(call);
  };
}

/**
 * Plumbing shared by the gRPC service handlers: per-call options (deadline, cancellation),
 * turning thrown errors into gRPC statuses, and the unary handler wrapper.
 */
import * as grpc from '@grpc/grpc-js';
import { ERRORS, GrpcStatus, KvdError, errorMessage } from '../util/errors.js';
import type { CallAuth, CallOptions } from './backend.js';
import type { EncodedMessage, PbMessage } from './codec.js';
import { traceOf, type RequestTrace } from './instrument.js';
import { H2GrpcCall } from '../util/h2/grpc-serve.js';

/** Called for errors that are not KvdError (bugs or unexpected failures); the call answers UNKNOWN. */
export type UnexpectedErrorHandler = (error: unknown, context: { readonly method: string }) => void;

/** Settings every handler needs. */
export interface HandlerContext {
  /** Deadline used when the client sent none, in ms (etcd: 5 s + 2 × election timeout ≈ 7 s). */
  readonly defaultRequestTimeoutMs: number;
  readonly onUnexpectedError: UnexpectedErrorHandler;
  /**
   * etcd --client-cert-auth: a verified client certificate's common name identifies the caller
   * when it sent no token. Default 'off'.
   */
  readonly clientCertAuth?: 'on' | 'off';
}

type AnyCall = grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>;

/** The common name of the call's verified client certificate, if the connection has one. */
function commonNameOf(call: AnyCall): string | undefined {
  const certificate = call.getAuthContext()?.sslPeerCertificate;
  const name: unknown = certificate?.subject?.CN;
  if (typeof name === 'string') return name;
  if (Array.isArray(name) && typeof name[0] === 'string') return name[0];
  return undefined;
}

/**
 * The caller's credentials (see {@link CallAuth}): metadata `token`, else `authorization` (the
 * name etcd's gateway forwards), and with --client-cert-auth the certificate's common name.
 * undefined when there are none.
 */
export function callAuthOf(call: AnyCall, context: Pick<HandlerContext, 'clientCertAuth'>): CallAuth | undefined {
  const metadata = call.metadata;
  let token = metadata.get('token')[0] ?? metadata.get('authorization')[0];
  if (token !== undefined && typeof token !== 'string') token = token.toString('utf8');
  const commonName = context.clientCertAuth === 'on' ? commonNameOf(call) : undefined;
  if (token === undefined && commonName === undefined) return undefined;
  return { token, commonName };
}

/** Symbol under which the request decoder records the request's wire size in bytes. */
export const REQUEST_BYTES = Symbol('kvd.requestBytes');

/** The wire size recorded by {@link withRequestSize}, or 0 when unknown. */
export function requestBytesOf(request: unknown): number {
  const value = (request as { [REQUEST_BYTES]?: number } | null)?.[REQUEST_BYTES];
  return typeof value === 'number' ? value : 0;
}

/**
 * Returns a copy of a service definition whose request deserializers record the message size
 * under {@link REQUEST_BYTES} for the named methods (so handlers can answer etcd's
 * "request is too large" for requests grpc let through).
 */
export function withRequestSize(definition: grpc.ServiceDefinition, methods: readonly string[]): grpc.ServiceDefinition {
  const copy: Record<string, grpc.MethodDefinition<unknown, unknown>> = { ...definition };
  for (const name of methods) {
    const method = copy[name];
    if (method === undefined) throw new Error(`no method ${name} in service definition`);
    copy[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        const message = method.requestDeserialize(bytes) as object;
        // A symbol-keyed property (never listed by Object.keys or JSON), set by plain assignment:
        // Object.defineProperty is a slow runtime call, paid three times per request.
        (message as { [REQUEST_BYTES]?: number })[REQUEST_BYTES] = bytes.length;
        return message;
      },
    };
  }
  return copy as grpc.ServiceDefinition;
}

/**
 * Builds the CallOptions of a call: its deadline (or the default) and an AbortSignal that fires
 * on cancel. The signal is made on first use only (most reads never look at it): an
 * AbortController plus a 'cancelled' listener per call was a measurable share of a small
 * request's cost. A call already cancelled when the signal is first asked for gets an aborted one.
 */
export function callOptionsOf(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>, context: HandlerContext): ServerCallOptions {
  return new ServerCallOptions(call as unknown as CancellableCall, context, callAuthOf(call, context), traceOf(call));
}

/** What {@link ServerCallOptions} needs of a grpc-js (or lean path) server call. */
interface CancellableCall extends NodeJS.EventEmitter {
  readonly cancelled?: boolean;
  getDeadline(): grpc.Deadline;
}

/**
 * The CallOptions of one server call, as one object per call: its methods live on the prototype
 * (an object literal with getters and closures per call was six allocations more for every request).
 */
export class ServerCallOptions implements CallOptions {
  readonly deadline: number;
  readonly auth: CallAuth | undefined;
  readonly trace: RequestTrace | undefined;
  readonly #call: CancellableCall;
  #controller: AbortController | undefined;
  #onCancelled: (() => void) | undefined;

  constructor(call: CancellableCall, context: HandlerContext, auth: CallAuth | undefined, trace: RequestTrace | undefined) {
    this.#call = call;
    this.auth = auth;
    this.trace = trace;
    const raw = call.getDeadline();
    const clientDeadline = raw instanceof Date ? raw.getTime() : raw;
    const fallback = Date.now() + context.defaultRequestTimeoutMs;
    // As etcd: the server's own request timeout bounds every call; a shorter client deadline wins.
    this.deadline = Number.isFinite(clientDeadline) ? Math.min(clientDeadline, fallback) : fallback;
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get controller(): AbortController {
    if (this.#controller !== undefined) return this.#controller;
    const created = new AbortController();
    this.#controller = created;
    const cancel = (): void => created.abort(canceledReason());
    if (this.#call.cancelled === true) cancel();
    else {
      this.#onCancelled = cancel;
      this.#call.once('cancelled', cancel);
    }
    return created;
  }

  /** Runs `listener` when the call is cancelled (at once if it is); returns its removal. Callable unbound. */
  readonly onCancel = (listener: () => void): (() => void) => {
    const call = this.#call;
    if (call.cancelled === true) {
      listener();
      return () => {};
    }
    if (call instanceof H2GrpcCall && call.onEnded(listener)) return () => call.offEnded(listener);
    call.once('cancelled', listener);
    return () => { call.removeListener('cancelled', listener); };
  };

  /**
   * grpc-js emits 'cancelled' after every finished call; a unary handler releases the signal's
   * listener before answering so a completed call does not build an error (a measurable per-call cost).
   */
  release(): void {
    if (this.#onCancelled !== undefined) this.#call.removeListener('cancelled', this.#onCancelled);
    this.#onCancelled = undefined;
  }
}

let canceled: KvdError | undefined;
/**
 * The reason a cancelled call's signal carries: one shared error, built on first use (a fresh
 * error per cancelled call, with its stack, was 5 % of a member's CPU under etcd's lease
 * keep-alive benchmark, whose every request ends by cancelling its stream).
 */
function canceledReason(): KvdError {
  canceled ??= new KvdError('watch-canceled', { detail: 'etcdserver: request canceled' });
  return canceled;
}

/** Converts any thrown value into a gRPC status object, reporting non-KvdErrors. */
export function toStatus(error: unknown, context: { readonly method: string; readonly onUnexpectedError: UnexpectedErrorHandler }): Partial<grpc.StatusObject> & { code: grpc.status; details: string } {
  if (error instanceof KvdError) return { code: error.status as number as grpc.status, details: error.message };
  context.onUnexpectedError(error, { method: context.method });
  return { code: GrpcStatus.UNKNOWN as number as grpc.status, details: errorMessage(error) };
}

/** A gRPC status for an RPC this member does not implement (yet). */
export function unimplementedStatus(method: string): { code: grpc.status; details: string } {
  return { code: grpc.status.UNIMPLEMENTED, details: `${ERRORS.unimplemented.message}: ${method}` };
}

/**
 * Wraps an async unary handler: decodes nothing itself, but catches everything the body throws
 * (decode/validation errors included) and answers with the matching status.
 */
export function unary(
  method: string,
  context: HandlerContext,
  body: (request: PbMessage, options: CallOptions) => Promise<PbMessage | EncodedMessage>,
): grpc.handleUnaryCall<PbMessage, PbMessage | EncodedMessage> {
  return (call, callback) => {
    const options = callOptionsOf(call as grpc.ServerUnaryCall<unknown, unknown>, context);
    let result: Promise<PbMessage | EncodedMessage>;
    try {
      result = body(call.request, options);
    } catch (error: unknown) {
      options.release();
      callback(toStatus(error, { method, onUnexpectedError: context.onUnexpectedError }));
      return;
    }
    result.then(
      (response) => {
        options.release();
        callback(null, response);
      },
      (error: unknown) => {
        options.release();
        callback(toStatus(error, { method, onUnexpectedError: context.onUnexpectedError }));
      },
    );
  };
}

/** A handler answering UNIMPLEMENTED, for any call shape. */
export function unimplementedHandler(method: string): grpc.UntypedHandleCall {
  return ((call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>, callback?: grpc.sendUnaryData<unknown>) => {
    const status = unimplementedStatus(method);
    if (typeof callback === 'function') {
      callback(status);
      return;
    }
    (call as grpc.ServerDuplexStream<unknown, unknown>).emit('error', status);
  }) as grpc.UntypedHandleCall;
}

/**
 * Resolves when a writable call has drained its buffer, or when `signal` aborts (the caller
 * checks `signal.aborted` afterwards). Avoids waiting forever on a cancelled call.
 */
export function waitForDrain(call: NodeJS.EventEmitter, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const done = (): void => {
      call.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    call.on('drain', done);
    signal.addEventListener('abort', done);
  });
}

/**
 * Wraps every handler of a service so that a learner refuses what etcd's learners refuse: every
 * call but Maintenance.Status and a serializable KV.Range, streams included, with "etcdserver:
 * rpc not supported for learner" (UNAVAILABLE, so clients move to another endpoint).
 */
export function learnerGuard(
  service: string,
  definition: grpc.ServiceDefinition,
  handlers: grpc.UntypedServiceImplementation,
  isLearner: () => boolean,
): grpc.UntypedServiceImplementation {
  const guarded: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(handlers)) {
    const method = definition[name];
    if (method === undefined || (service === 'etcdserverpb.Maintenance' && name === 'Status')) {
      guarded[name] = handler;
      continue;
    }
    const answersOnce = !method.responseStream;
    const serializableRange = service === 'etcdserverpb.KV' && name === 'Range';
    guarded[name] = ((call: grpc.ServerUnaryCall<unknown, unknown>, callback?: grpc.sendUnaryData<unknown>) => {
      if (isLearner() && !(serializableRange && (call.request as { serializable?: unknown } | undefined)?.serializable === true)) {
        const error = new KvdError('not-supported-for-learner');
        const status = { code: error.status as number as grpc.status, details: error.message };
        if (answersOnce) callback?.(status);
        else call.emit('error', status);
        return;
      }
      (handler as (call: unknown, callback?: unknown) => void)(call, callback);
    }) as grpc.UntypedHandleCall;
  }
  return guarded;
}

/**
 * Wraps every handler of a service so that calls with metadata `hasleader: true` are refused
 * with etcd's "no leader" error while `hasLeader()` is false (etcd's unary and stream
 * interceptors). Other calls pass through untouched.
 */
export function requireLeaderGuard(
  definition: grpc.ServiceDefinition,
  handlers: grpc.UntypedServiceImplementation,
  hasLeader: () => boolean,
): grpc.UntypedServiceImplementation {
  const guarded: grpc.UntypedServiceImplementation = {};
  for (const [name, handler] of Object.entries(handlers)) {
    const method = definition[name];
    if (method === undefined) {
      guarded[name] = handler;
      continue;
    }
    const unaryResponse = !method.responseStream && !method.requestStream;
    const clientStream = method.requestStream && !method.responseStream;
    guarded[name] = ((call: grpc.ServerUnaryCall<unknown, unknown>, callback?: grpc.sendUnaryData<unknown>) => {
      const wanted = call.metadata.get('hasleader').some((value) => String(value) === 'true');
      if (wanted && !hasLeader()) {
        const error = new KvdError('no-leader');
        const status = { code: error.status as number as grpc.status, details: error.message };
        if (unaryResponse || clientStream) callback?.(status);
        else call.emit('error', status);
        return;
      }
      (handler as (call: unknown, callback?: unknown) => void)(call, callback);
    }) as grpc.UntypedHandleCall;
  }
  return guarded;
}

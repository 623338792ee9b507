/**
 * The endpoint pool under every client call: one gRPC channel per endpoint (created lazily),
 * a current endpoint that moves on failure, a deadline on every call, and retries with
 * exponential backoff and full jitter: any retryable failure for idempotent calls, and for
 * writes only a failure that proves the request never left the client (see {@link deliveryOf}).
 */
import * as grpc from '@grpc/grpc-js';
import { loadClientServices, type ServiceName } from './proto.js';
import { CancelledError, KvError, TimeoutError, UnavailableError, isRetryable, toKvError } from './errors.js';

/** Connection settings (milliseconds). */
export interface ConnectionOptions {
  /** `host:port` or `http://host:port` of each member; at least one. */
  readonly endpoints: readonly string[];
  /** How long to wait for a connection to one endpoint before trying the next. Default 2000. */
  readonly dialTimeoutMs?: number;
  /** Default deadline of each call, including retries. Default 5000. */
  readonly requestTimeoutMs?: number;
}

/**
 * Whether a call may be repeated: `idempotent` calls (reads) are retried on another endpoint
 * after any retryable failure; `at-most-once` calls (writes) only when the failure proves the
 * request was never sent: the endpoint could not be connected, or grpc-js failed the call
 * before opening an HTTP/2 stream for it ({@link deliveryOf} is 'not-sent'). A write that fails
 * after its stream was opened throws (typically UnavailableError) and may or may not have been
 * applied: the caller decides whether to read back and retry, as with etcd's clientv3.
 */
export type RetryPolicy = 'idempotent' | 'at-most-once';

/**
 * How far a failed call got: 'not-sent' when no byte of the request can have reached a server,
 * 'maybe-sent' otherwise (the server may have received and applied it).
 */
export type Delivery = 'not-sent' | 'maybe-sent';

/**
 * Whether a finished grpc-js call ever had an HTTP/2 stream, read structurally from the call
 * rather than from its error text (grpc-js 1.14; pinned by test/unit/client/grpc-delivery).
 * `getAuthContext()` returns the auth context of the transport under the call's stream, and
 * null while there is none: a LoadBalancingCall answers from its child subchannel call, which
 * exists only once `session.request()` opened a stream; a ResolvingCall from its child; a
 * RetryingCall from the attempt it committed to, and it commits before reporting any status
 * except one from `cancelWithStatus` (deadline, cancellation, local filter failures: codes
 * DEADLINE_EXCEEDED, CANCELLED, INTERNAL..., none of them retried). A stream is opened before
 * any request byte is written, so null with UNAVAILABLE proves the request never left the
 * client: the pick failed ("No connection established"), the channel closed before the call
 * started, or name resolution failed. grpc-js's own transparent retries keep this true: they
 * resend only attempts that never started or that the server refused with REFUSED_STREAM
 * (HTTP/2: not processed). The converse does not hold (a stream may exist and carry nothing),
 * so 'maybe-sent' is the conservative answer. Read it only after the call ended.
 */
export function deliveryOf(call: Pick<grpc.ClientUnaryCall, 'getAuthContext'>): Delivery {
  return call.getAuthContext() === null ? 'not-sent' : 'maybe-sent';
}

/** The outcome of one attempt of a unary call, as a value (see {@link Delivery}). */
type AttemptResult = { readonly ok: true; readonly response: Record<string, unknown> } | { readonly ok: false; readonly error: KvError; readonly delivery: Delivery };

/** Per-call options. */
export interface CallOptions {
  /** See {@link RetryPolicy}. */
  readonly retry: RetryPolicy;
  /** Deadline for the whole call in ms; default the connection's request timeout. */
  readonly timeoutMs?: number;
  /** Cancels the call. */
  readonly signal?: AbortSignal;
  /** Send to this endpoint only (no failover), e.g. for per-member status. */
  readonly endpoint?: string;
}

/** Backoff between attempts: base doubled each attempt, capped, with full jitter. */
const BACKOFF_BASE_MS = 25;
/** Every {@link backoffMs} delay is below this, however many attempts failed. */
export const BACKOFF_MAX_MS = 500;
/** Upper bound on attempts of one call, whatever its deadline. */
const ATTEMPTS_MAX = 20;

type UnaryMethod = (request: unknown, metadata: grpc.Metadata, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, response: unknown) => void) => grpc.ClientUnaryCall;
type DuplexMethod = (metadata: grpc.Metadata, options: grpc.CallOptions) => grpc.ClientDuplexStream<unknown, unknown>;
type ServerStreamMethod = (request: unknown, metadata: grpc.Metadata, options: grpc.CallOptions) => grpc.ClientReadableStream<unknown>;

/** Strips the scheme of an endpoint URL; only plain-text (http) endpoints are supported. */
export function endpointTarget(endpoint: string): string {
  const trimmed = endpoint.trim();
  if (trimmed.startsWith('https://')) throw new KvError('invalid-argument', { detail: `TLS endpoints are not supported: ${endpoint}` });
  return trimmed.replace(/^http:\/\//, '').replace(/\/+$/, '');
}

/** Resolves after `ms` unless the signal aborts first. */
function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Full-jitter exponential backoff for attempt number `attempt` (0-based), in whole ms in
 * [0, {@link BACKOFF_MAX_MS}). `random` returns draws in [0, 1); callers reset `attempt` to 0
 * after a success.
 */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return Math.floor(random() * ceiling);
}

/**
 * The pool of endpoints. Owns the channels; {@link Connection.close} closes them all.
 * Invariant: `#current` indexes `#targets`.
 */
export class Connection {
  readonly #targets: readonly string[];
  readonly #clients = new Map<string, grpc.Client>();
  readonly #channels = new Map<string, grpc.Channel>();
  #current = 0;
  #closed = false;
  /** See {@link ConnectionOptions.dialTimeoutMs}. */
  readonly dialTimeoutMs: number;
  /** See {@link ConnectionOptions.requestTimeoutMs}. */
  readonly requestTimeoutMs: number;

  constructor(options: ConnectionOptions) {
    if (options.endpoints.length === 0) throw new KvError('invalid-argument', { detail: 'at least one endpoint is required' });
    this.#targets = options.endpoints.map(endpointTarget);
    this.dialTimeoutMs = options.dialTimeoutMs ?? 2000;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 5000;
  }

  /** The endpoints as `host:port`, in configured order. */
  get endpoints(): readonly string[] {
    return this.#targets;
  }

  /** The endpoint calls currently go to. */
  get currentEndpoint(): string {
    return this.#targets[this.#current];
  }

  /** Moves to the next endpoint if `endpoint` is still the current one (after a failure on it). */
  reportFailure(endpoint: string): void {
    if (this.#targets[this.#current] === endpoint) this.#current = (this.#current + 1) % this.#targets.length;
  }

  #channel(target: string): grpc.Channel {
    let channel = this.#channels.get(target);
    if (channel === undefined) {
      channel = new grpc.Channel(target, grpc.credentials.createInsecure(), {
        'grpc.max_receive_message_length': -1,
        'grpc.max_send_message_length': 2 * 1024 * 1024,
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1000,
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5_000,
        // No service config from DNS TXT records: one could turn on grpc-js's own retry or
        // hedging policies, which resend requests regardless of RetryPolicy. grpc-js then
        // retries only transparently (see deliveryOf), which never repeats a processed write.
        'grpc.service_config_disable_resolution': 1,
      });
      this.#channels.set(target, channel);
    }
    return channel;
  }

  /** The grpc-js client of `service` on `target` (cached). */
  client(service: ServiceName, target: string): grpc.Client {
    if (this.#closed) throw new CancelledError('internal', { detail: 'client is closed' });
    const key = `${service}@${target}`;
    let client = this.#clients.get(key);
    if (client === undefined) {
      const Service = loadClientServices()[service];
      client = new Service(target, grpc.credentials.createInsecure(), { channelOverride: this.#channel(target) });
      this.#clients.set(key, client);
    }
    return client;
  }

  /** Waits until `target` is connected or `deadline` (epoch ms) passes. */
  waitForReady(target: string, deadline: number): Promise<boolean> {
    const client = this.client('KV', target);
    return new Promise((resolve) => {
      client.waitForReady(new Date(deadline), (error?: Error) => resolve(error === undefined));
    });
  }

  /**
   * Sends one unary request and returns the raw response message and the endpoint that served
   * it. Throws a {@link KvError}. See {@link CallOptions} for failover and retries.
   */
  async unary(service: ServiceName, method: string, request: unknown, options: CallOptions): Promise<{ response: Record<string, unknown>; endpoint: string }> {
    const deadline = Date.now() + (options.timeoutMs ?? this.requestTimeoutMs);
    let lastError: KvError | undefined;
    for (let attempt = 0; attempt < ATTEMPTS_MAX; attempt += 1) {
      if (options.signal?.aborted === true) throw new CancelledError('internal', { detail: 'context canceled' });
      if (Date.now() >= deadline) break;
      const target = options.endpoint !== undefined ? endpointTarget(options.endpoint) : this.currentEndpoint;
      if (options.retry === 'at-most-once' || attempt > 0 || options.endpoint !== undefined) {
        // Connect first so that a dead endpoint is skipped before anything is sent. A call
        // pinned to one endpoint waits for it until the deadline (as etcdctl's dial does).
        const ready = await this.waitForReady(target, options.endpoint !== undefined ? deadline : Math.min(deadline, Date.now() + this.dialTimeoutMs));
        if (!ready) {
          lastError = new UnavailableError('stopped', { detail: `cannot connect to ${target}` });
          if (options.endpoint !== undefined) throw new TimeoutError('timeout', { detail: 'context deadline exceeded', cause: lastError });
          this.reportFailure(target);
          continue;
        }
      }
      const result = await this.#sendUnary(service, method, request, target, deadline, options.signal);
      if (result.ok) return { response: result.response, endpoint: target };
      lastError = result.error;
      if (!isRetryable(lastError) || options.endpoint !== undefined) throw lastError;
      this.reportFailure(target);
      // A write that may have reached the server is never resent: it may have been applied.
      if (options.retry === 'at-most-once' && result.delivery === 'maybe-sent') throw lastError;
      await delay(Math.min(backoffMs(attempt), Math.max(0, deadline - Date.now())), options.signal);
    }
    if (lastError !== undefined && !(lastError instanceof UnavailableError)) throw lastError;
    if (Date.now() >= deadline) throw new TimeoutError('timeout', { detail: 'context deadline exceeded', cause: lastError });
    throw lastError ?? new UnavailableError('stopped', { detail: 'no endpoint available' });
  }

  /** One attempt on `target`; never rejects: failures come back with their {@link Delivery}. */
  #sendUnary(service: ServiceName, method: string, request: unknown, target: string, deadline: number, signal?: AbortSignal): Promise<AttemptResult> {
    const client = this.client(service, target) as unknown as Record<string, UnaryMethod>;
    return new Promise((resolve) => {
      let call: grpc.ClientUnaryCall;
      const onAbort = (): void => call.cancel();
      try {
        call = client[method].call(client, request, new grpc.Metadata(), { deadline: new Date(deadline) }, (error, response) => {
          signal?.removeEventListener('abort', onAbort);
          // grpc-js calls back only after the call ended, so whether it had a stream is settled.
          if (error !== null) resolve({ ok: false, error: toKvError(error), delivery: deliveryOf(call) });
          else resolve({ ok: true, response: response as Record<string, unknown> });
        });
      } catch (error: unknown) {
        // grpc-js refused to create the call (its channel is shut down): nothing was sent.
        resolve({ ok: false, error: toKvError(error), delivery: 'not-sent' });
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Opens a bidirectional stream (`Watch.Watch`, `Lease.LeaseKeepAlive`) on `target`. */
  duplex(service: ServiceName, method: string, target: string, metadata: Record<string, string> = {}): grpc.ClientDuplexStream<unknown, unknown> {
    const client = this.client(service, target) as unknown as Record<string, DuplexMethod>;
    const md = new grpc.Metadata();
    for (const [key, value] of Object.entries(metadata)) md.set(key, value);
    return client[method].call(client, md, {});
  }

  /** Opens a server stream (`Maintenance.Snapshot`) on `target`. */
  serverStream(service: ServiceName, method: string, target: string, request: unknown): grpc.ClientReadableStream<unknown> {
    const client = this.client(service, target) as unknown as Record<string, ServerStreamMethod>;
    return client[method].call(client, request, new grpc.Metadata(), {});
  }

  /** Closes every channel. Calls in flight fail; later calls throw. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const client of this.#clients.values()) client.close();
    for (const channel of this.#channels.values()) channel.close();
    this.#clients.clear();
    this.#channels.clear();
  }

  /** Whether {@link Connection.close} was called. */
  get closed(): boolean {
    return this.#closed;
  }
}

/**
 * The endpoint pool under every client call: one gRPC channel per endpoint (created lazily),
 * a current endpoint that moves on failure, a deadline on every call, and retries with
 * exponential backoff and full jitter: any retryable failure for idempotent calls, and for
 * writes only a failure that proves the request never left the client (see {@link deliveryOf}).
 */
import * as grpc from '@grpc/grpc-js';
import { loadClientServices, type ServiceName } from './proto.js';
import { CancelledError, KvError, TimeoutError, UnavailableError, isRetryable, toKvError } from './errors.js';

/**
 * TLS settings (etcdctl's --cacert, --cert, --key, --insecure-skip-tls-verify): PEM texts or
 * buffers. Endpoints `https://...` (or without a scheme when these are given) use TLS.
 */
export interface TlsOptions {
  /** CA certificates to trust (default: the system's). */
  readonly ca?: string | Buffer;
  /** Client certificate and key (for servers that require one; with --client-cert-auth its CN is the user). */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
  /** Accept any server certificate (etcdctl --insecure-skip-tls-verify). */
  readonly insecureSkipVerify?: boolean;
  /** Name expected in the server's certificate instead of the endpoint's host. */
  readonly serverName?: string;
}

/** User and password: the client gets a token (Auth.Authenticate) and sends it with every call. */
export interface AuthOptions {
  readonly username: string;
  readonly password: string;
}

/** Connection settings (milliseconds). */
export interface ConnectionOptions {
  /** `host:port`, `http://host:port` or `https://host:port` of each member; at least one. */
  readonly endpoints: readonly string[];
  /** TLS settings; see {@link TlsOptions}. */
  readonly tls?: TlsOptions;
  /** Credentials; see {@link AuthOptions}. */
  readonly auth?: AuthOptions;
  /**
   * A token unused this long is renewed before the next call (default 240 s: etcd's simple
   * tokens expire 300 s after their last use), so that writes, which are never retried after an
   * auth failure, do not fail for an expired token.
   */
  readonly tokenIdleRefreshMs?: number;
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
  /** 'none': send no token (Authenticate itself). Default 'token'. */
  readonly credentials?: 'token' | 'none';
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

/** Strips the scheme of an endpoint URL (`http://`, `https://`): `host:port`. */
export function endpointTarget(endpoint: string): string {
  return endpoint.trim().replace(/^https?:\/\//, '').replace(/\/+$/, '');
}

/** Whether an endpoint is dialled with TLS: `https://`, or no scheme while TLS settings are given (as clientv3). */
export function endpointSecure(endpoint: string, tls: TlsOptions | undefined): boolean {
  const trimmed = endpoint.trim();
  if (trimmed.startsWith('https://')) return true;
  if (trimmed.startsWith('http://')) return false;
  return tls !== undefined;
}

/** Errors after which a new token may help: the token expired or was revoked, or auth was turned on. */
function needsNewToken(error: KvError): boolean {
  return error.code === 'invalid-auth-token' || error.code === 'auth-old-revision' || error.code === 'auth-user-empty';
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
  /** Targets dialled with TLS. */
  readonly #secure: ReadonlySet<string>;
  readonly #tls: TlsOptions | undefined;
  readonly #auth: AuthOptions | undefined;
  readonly #tokenIdleRefreshMs: number;
  /** The current token (undefined: none yet, or auth is off). */
  #token: string | undefined;
  #tokenUsedMs = 0;
  /** One Authenticate at a time; every caller waiting for a token shares it. */
  #tokenFlight: Promise<string | undefined> | undefined;
  /** Authenticate said auth is off: calls go without a token until one is refused for that. */
  #authOff = false;
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
    this.#secure = new Set(options.endpoints.filter((endpoint) => endpointSecure(endpoint, options.tls)).map(endpointTarget));
    this.#tls = options.tls;
    this.#auth = options.auth;
    this.#tokenIdleRefreshMs = options.tokenIdleRefreshMs ?? 240_000;
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
      const tls = this.#tls;
      const credentials = this.#secure.has(target) || (tls !== undefined && !this.#targets.includes(target))
        ? grpc.credentials.createSsl(
          tls?.ca === undefined ? null : Buffer.from(tls.ca),
          tls?.key === undefined ? null : Buffer.from(tls.key),
          tls?.cert === undefined ? null : Buffer.from(tls.cert),
          tls?.insecureSkipVerify === true ? { rejectUnauthorized: false, checkServerIdentity: () => undefined } : {},
        )
        : grpc.credentials.createInsecure();
      channel = new grpc.Channel(target, credentials, {
        ...(tls?.serverName === undefined ? {} : { 'grpc.ssl_target_name_override': tls.serverName, 'grpc.default_authority': tls.serverName }),
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
        // No channelz (grpc's introspection, unused here): it tracks every call.
        'grpc.enable_channelz': 0,
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
    let renewedToken = false;
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
      const token = options.credentials === 'none' ? undefined : await this.ensureToken({ deadline });
      const result = await this.#sendUnary(service, method, request, target, deadline, options.signal, token);
      if (result.ok) {
        if (token !== undefined) this.#tokenUsedMs = Date.now();
        return { response: result.response, endpoint: target };
      }
      lastError = result.error;
      if (this.#auth !== undefined && options.credentials !== 'none' && needsNewToken(lastError)) {
        // The token expired or was revoked (or auth was just turned on): the next call gets a new
        // one. An auth failure means nothing was applied, but a write is still never resent.
        this.invalidateToken(token);
        if (options.retry === 'idempotent' && !renewedToken) {
          renewedToken = true;
          continue;
        }
        throw lastError;
      }
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

  /**
   * The token to send (authenticating first when there is none or it sat unused too long), or
   * undefined without credentials or while auth is off. Throws the Authenticate failure
   * (e.g. AuthenticationFailedError).
   */
  async ensureToken(options: { deadline?: number } = {}): Promise<string | undefined> {
    const auth = this.#auth;
    if (auth === undefined || this.#authOff) return undefined;
    if (this.#token !== undefined && Date.now() - this.#tokenUsedMs < this.#tokenIdleRefreshMs) return this.#token;
    if (this.#tokenFlight === undefined) {
      const flight = this.#authenticate(auth, options.deadline ?? Date.now() + this.requestTimeoutMs);
      this.#tokenFlight = flight;
      const clear = (): void => {
        if (this.#tokenFlight === flight) this.#tokenFlight = undefined;
      };
      flight.then(clear, clear);
    }
    return this.#tokenFlight;
  }

  async #authenticate(auth: AuthOptions, deadline: number): Promise<string | undefined> {
    try {
      const { response } = await this.unary('Auth', 'Authenticate', { name: auth.username, password: auth.password }, { retry: 'idempotent', credentials: 'none', timeoutMs: Math.max(1, deadline - Date.now()) });
      this.#token = String(response.token ?? '');
      this.#tokenUsedMs = Date.now();
      return this.#token;
    } catch (error: unknown) {
      // As clientv3: with auth off the client goes on without a token (and asks again if a call
      // later says a user is needed).
      if (error instanceof KvError && error.code === 'auth-not-enabled') {
        this.#token = undefined;
        this.#authOff = true;
        return undefined;
      }
      throw error;
    }
  }

  /** Forgets `token` (if still current): the next call authenticates again. */
  invalidateToken(token: string | undefined): void {
    this.#authOff = false;
    if (this.#token === token) {
      this.#token = undefined;
      this.#tokenUsedMs = 0;
    }
  }

  /** The current token, without authenticating (streams opened right after ensureToken()). */
  get token(): string | undefined {
    return this.#token;
  }

  /** Metadata carrying the current token (if any) plus `extra`. */
  #metadata(extra: Record<string, string> = {}, token: string | undefined = this.#token): grpc.Metadata {
    const md = new grpc.Metadata();
    if (token !== undefined && token !== '') md.set('token', token);
    for (const [key, value] of Object.entries(extra)) md.set(key, value);
    return md;
  }

  /** One attempt on `target`; never rejects: failures come back with their {@link Delivery}. */
  #sendUnary(service: ServiceName, method: string, request: unknown, target: string, deadline: number, signal: AbortSignal | undefined, token: string | undefined): Promise<AttemptResult> {
    const client = this.client(service, target) as unknown as Record<string, UnaryMethod>;
    return new Promise((resolve) => {
      let call: grpc.ClientUnaryCall;
      const onAbort = (): void => call.cancel();
      try {
        call = client[method].call(client, request, this.#metadata({}, token), { deadline: new Date(deadline) }, (error, response) => {
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
    return client[method].call(client, this.#metadata(metadata), {});
  }

  /** Opens a server stream (`Maintenance.Snapshot`) on `target`. */
  serverStream(service: ServiceName, method: string, target: string, request: unknown): grpc.ClientReadableStream<unknown> {
    const client = this.client(service, target) as unknown as Record<string, ServerStreamMethod>;
    return client[method].call(client, request, this.#metadata(), {});
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

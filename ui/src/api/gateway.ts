/**
 * The console's only way to the member: etcd's JSON gateway (POST /v3/<service>/<method>) and
 * its streaming watch, exactly as any other HTTP client would use them. int64 fields arrive as
 * strings and bytes as base64; errors are `{"error","message","code"}` with etcd's text.
 *
 * Auth: a token from POST /v3/auth/authenticate is kept in this module's memory only (never in
 * storage, so a reload logs out) and sent as the Authorization header. A call that answers an
 * auth error tells the listeners (the app then shows the login form).
 */

/** A failed call: etcd's message and gRPC code, and the HTTP status (0 when unreachable). */
export class GatewayError extends Error {
  readonly code: number;
  readonly httpStatus: number;

  constructor(message: string, options: { code: number; httpStatus: number }) {
    super(message);
    this.name = 'GatewayError';
    this.code = options.code;
    this.httpStatus = options.httpStatus;
  }
}

/** gRPC codes the console reacts to. */
export const GRPC = { INVALID_ARGUMENT: 3, NOT_FOUND: 5, PERMISSION_DENIED: 7, FAILED_PRECONDITION: 9, OUT_OF_RANGE: 11, UNAVAILABLE: 14, UNAUTHENTICATED: 16 } as const;

/** Longest a unary call may take before the console gives up on it. */
export const CALL_TIMEOUT_MS = 10_000;
/** Largest single watch message the console reads (a bigger one ends the stream with an error). */
export const STREAM_LINE_BYTES_MAX = 64 * 1024 * 1024;

let token: string | undefined;
let user: string | undefined;
type AuthListener = (reason: 'login-required' | 'changed') => void;
const authListeners = new Set<AuthListener>();

export const session = {
  get token(): string | undefined {
    return token;
  },
  get user(): string | undefined {
    return user;
  },
  set(name: string, value: string): void {
    user = name;
    token = value;
    for (const listener of authListeners) listener('changed');
  },
  clear(): void {
    user = undefined;
    token = undefined;
    for (const listener of authListeners) listener('changed');
  },
  subscribe(listener: AuthListener): () => void {
    authListeners.add(listener);
    return () => authListeners.delete(listener);
  },
};

/** True for etcd's "you must log in" answers (as opposed to "you may not"). */
export function isAuthRequired(error: unknown): boolean {
  return error instanceof GatewayError
    && (error.code === GRPC.UNAUTHENTICATED || /user name is empty|invalid auth token|auth token is expired/.test(error.message));
}

function headers(): Record<string, string> {
  const out: Record<string, string> = { 'Content-Type': 'application/json' };
  if (token !== undefined) out.Authorization = token;
  return out;
}

function signalOf(signal: AbortSignal | undefined, timeoutMs: number): AbortSignal {
  const timeout = AbortSignal.timeout(timeoutMs);
  return signal === undefined ? timeout : AbortSignal.any([signal, timeout]);
}

async function errorOf(response: Response): Promise<GatewayError> {
  const text = await response.text();
  try {
    const body = JSON.parse(text) as { message?: string; error?: string | { message?: string; grpc_code?: number }; code?: number };
    if (typeof body.error === 'object' && body.error !== null) {
      return new GatewayError(body.error.message ?? text, { code: body.error.grpc_code ?? 2, httpStatus: response.status });
    }
    return new GatewayError(body.message ?? body.error ?? text, { code: body.code ?? 2, httpStatus: response.status });
  } catch (error: unknown) {
    void error; // Not JSON (a plain-text 404 or 405): keep the text.
    return new GatewayError(text.trim() || `HTTP ${response.status}`, { code: 2, httpStatus: response.status });
  }
}

function unreachable(error: unknown, base: string): GatewayError {
  if (error instanceof DOMException && error.name === 'TimeoutError') return new GatewayError(`${base || 'this member'}: no answer in time`, { code: 4, httpStatus: 0 });
  if (error instanceof DOMException && error.name === 'AbortError') return new GatewayError('cancelled', { code: 1, httpStatus: 0 });
  return new GatewayError(`${base || 'this member'} is unreachable (${error instanceof Error ? error.message : String(error)})`, { code: GRPC.UNAVAILABLE, httpStatus: 0 });
}

function noteAuth(error: GatewayError): GatewayError {
  if (isAuthRequired(error)) {
    if (/invalid auth token|expired/.test(error.message)) {
      token = undefined;
      user = undefined;
    }
    for (const listener of authListeners) listener('login-required');
  }
  return error;
}

/** Options of {@link call}. */
export interface CallOptions {
  /** Another member's client URL (e.g. http://127.0.0.1:22379); this page's origin when empty. */
  readonly base?: string;
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

/** One unary gateway call: POST `/v3/<path>` with `body`; resolves the JSON answer or throws a {@link GatewayError}. */
export async function call<T>(path: string, body: unknown, options: CallOptions = {}): Promise<T> {
  const base = (options.base ?? '').replace(/\/$/, '');
  let response: Response;
  try {
    response = await fetch(`${base}/v3/${path}`, {
      method: 'POST',
      headers: headers(),
      body: JSON.stringify(body ?? {}),
      signal: signalOf(options.signal, options.timeoutMs ?? CALL_TIMEOUT_MS),
      cache: 'no-store',
    });
  } catch (error: unknown) {
    throw unreachable(error, base);
  }
  if (!response.ok) throw noteAuth(await errorOf(response));
  try {
    return (await response.json()) as T;
  } catch (error: unknown) {
    throw unreachable(error, base);
  }
}

/**
 * A streaming gateway call (`watch`): POSTs the requests back to back and hands every
 * `{"result":…}` message to `onMessage` as it arrives. Resolves when the server ends the stream;
 * rejects with a {@link GatewayError} for an error answer or message; aborting `signal` ends it
 * quietly. One long-lived HTTP/1.1 connection per stream: the pages keep at most two open.
 */
export async function stream<T>(path: string, requests: readonly unknown[], onMessage: (message: T) => void, options: { base?: string; signal: AbortSignal }): Promise<void> {
  const base = (options.base ?? '').replace(/\/$/, '');
  let response: Response;
  try {
    response = await fetch(`${base}/v3/${path}`, { method: 'POST', headers: headers(), body: requests.map((request) => JSON.stringify(request)).join(''), signal: options.signal, cache: 'no-store' });
  } catch (error: unknown) {
    if (options.signal.aborted) return;
    throw unreachable(error, base);
  }
  if (!response.ok || response.body === null) throw noteAuth(await errorOf(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let pending = '';
  const handle = (line: string): void => {
    if (line.trim() === '') return;
    const parsed = JSON.parse(line) as { result?: T; error?: { message?: string; grpc_code?: number; http_code?: number } };
    if (parsed.error !== undefined) throw noteAuth(new GatewayError(parsed.error.message ?? 'stream error', { code: parsed.error.grpc_code ?? 2, httpStatus: parsed.error.http_code ?? 500 }));
    if (parsed.result !== undefined) onMessage(parsed.result);
  };
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<string>;
      try {
        chunk = await reader.read();
      } catch (error: unknown) {
        if (options.signal.aborted) return;
        throw unreachable(error, base);
      }
      if (chunk.done) break;
      pending += chunk.value;
      let newline = pending.indexOf('\n');
      while (newline >= 0) {
        handle(pending.slice(0, newline));
        pending = pending.slice(newline + 1);
        newline = pending.indexOf('\n');
      }
      if (pending.length > STREAM_LINE_BYTES_MAX) throw new GatewayError('a watch message larger than the console reads', { code: 8, httpStatus: 0 });
    }
    handle(pending);
  } catch (error: unknown) {
    // An error answer, a message that does not parse, or the caller's handler refusing: close the
    // connection and pass the error on as it is.
    void reader.cancel().catch((cancelError: unknown) => void cancelError); // Detached: closes the connection.
    if (options.signal.aborted) return;
    throw error;
  }
}

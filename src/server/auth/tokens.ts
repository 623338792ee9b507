/**
 * Auth tokens: etcd's two providers, `--auth-token simple` and `--auth-token jwt,...`.
 *
 * A token names a user and the auth revision at which it was issued. It is valid on every member
 * as long as the user's credentials did not change after that revision (auth-gate.ts checks it
 * against the replicated user record), so a password change or a delete revokes every token of
 * the user at once, on every member, with no token list to replicate.
 *
 * simple: etcd's simple tokens live in each member's memory, created by applying an Authenticate
 * entry through Raft. kvd's are self-verifying instead: `<user>.<revision>.<issued ms>.<nonce>.<mac>`
 * where mac is an HMAC-SHA256 under the token key kept in the replicated auth state (drawn by
 * the member that proposed auth enable, replaced at every enable). Any member can check a token
 * without a proposal, so logging in costs no Raft round and tokens survive leader changes and
 * restarts. As etcd's, a simple token expires `ttl` after its last use (sliding); a member that
 * has not seen the token counts from its issue time. Clients treat tokens as opaque strings.
 *
 * jwt: signed with the configured key (RS/PS/ES/HS 256/384/512 as etcd), claims `username`,
 * `revision`, `exp` exactly as etcd's; verified with the public key (or the HMAC secret).
 *
 * Bounds: {@link TOKENS_TRACKED_MAX} tokens remembered per member (last use, verified claims);
 * the least recently used are forgotten (a forgotten simple token falls back to its issue time).
 */
import { createHmac, createPrivateKey, createPublicKey, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { SignJWT, jwtVerify } from 'jose';

/** Tokens remembered per member. */
export const TOKENS_TRACKED_MAX = 100_000;
/** etcd's default --auth-token-ttl. */
export const DEFAULT_TOKEN_TTL_MS = 300_000;

/** What a valid token says. */
export interface TokenClaims {
  readonly user: string;
  /** The auth revision when it was issued. */
  readonly revision: number;
}

export interface TokenProvider {
  readonly kind: 'simple' | 'jwt';
  /** A new token for `user` at auth revision `revision`. */
  issue(user: string, revision: number): Promise<string>;
  /** The claims of a valid token, else undefined. Synchronous when the token was seen recently. */
  verify(token: string): TokenClaims | undefined | Promise<TokenClaims | undefined>;
}

/** --auth-token as parsed: etcd's syntax `simple` or `jwt,pub-key=P,priv-key=K,sign-method=M,ttl=D`. */
export type TokenSettings =
  | { readonly kind: 'simple' }
  | { readonly kind: 'jwt'; readonly signMethod: string; readonly publicKeyFile: string | undefined; readonly privateKeyFile: string | undefined; readonly ttlMs: number };

const JWT_METHODS = new Set(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'HS256', 'HS384', 'HS512']);

/**
 * Parses --auth-token. Throws with etcd's wording for what etcd refuses (unknown type, bad
 * option syntax, duplicate option, unknown sign method). Unknown JWT options are returned as
 * warnings (etcd logs them and goes on).
 */
export function parseTokenSettings(text: string, parseDurationMs: (text: string) => number): { settings: TokenSettings; warnings: string[] } {
  const [type, ...rest] = text.split(',');
  const options = new Map<string, string>();
  for (const part of rest) {
    const pair = part.split('=');
    if (pair.length !== 2) throw new Error(`--auth-token: auth: invalid auth options (${text})`);
    if (options.has(pair[0])) throw new Error(`--auth-token: auth: invalid auth options (duplicate ${pair[0]})`);
    options.set(pair[0], pair[1]);
  }
  if (type === 'simple') return { settings: { kind: 'simple' }, warnings: [] };
  if (type !== 'jwt') throw new Error(`--auth-token: auth: invalid auth options (unknown token type "${type}")`);
  const signMethod = options.get('sign-method') ?? '';
  if (!JWT_METHODS.has(signMethod)) throw new Error('--auth-token: auth: invalid auth signature method');
  const known = new Set(['sign-method', 'pub-key', 'priv-key', 'ttl']);
  const warnings = [...options.keys()].filter((key) => !known.has(key)).map((key) => `unknown JWT option "${key}"; ignored`);
  const ttl = options.get('ttl');
  return {
    settings: { kind: 'jwt', signMethod, publicKeyFile: options.get('pub-key') || undefined, privateKeyFile: options.get('priv-key') || undefined, ttlMs: ttl === undefined || ttl === '' ? DEFAULT_TOKEN_TTL_MS : parseDurationMs(ttl) },
    warnings,
  };
}

/** A bounded map in recency order (oldest first). */
class Recent<V> {
  readonly #map = new Map<string, V>();
  constructor(readonly max: number) {}
  get(key: string): V | undefined {
    return this.#map.get(key);
  }
  set(key: string, value: V): void {
    this.#map.delete(key);
    this.#map.set(key, value);
    if (this.#map.size > this.max) {
      const oldest = this.#map.keys().next();
      if (oldest.done !== true) this.#map.delete(oldest.value);
    }
  }
  delete(key: string): void {
    this.#map.delete(key);
  }
  get size(): number {
    return this.#map.size;
  }
}

function b64url(bytes: Uint8Array | string): string {
  return Buffer.from(bytes).toString('base64url');
}

/** Simple tokens signed with the replicated token key (see the file comment). */
export class SimpleTokens implements TokenProvider {
  readonly kind = 'simple';
  readonly #tokenKey: () => Uint8Array;
  readonly #ttlMs: number;
  readonly #now: () => number;
  /** token → verified claims, the key they were verified with, last use here. */
  readonly #seen = new Recent<{ claims: TokenClaims; key: Uint8Array; issuedMs: number; lastUsedMs: number }>(TOKENS_TRACKED_MAX);

  constructor(options: { tokenKey: () => Uint8Array; ttlMs: number; now?: () => number }) {
    this.#tokenKey = options.tokenKey;
    this.#ttlMs = options.ttlMs;
    this.#now = options.now ?? Date.now;
  }

  #mac(key: Uint8Array, payload: string): string {
    return createHmac('sha256', key).update(payload, 'utf8').digest().subarray(0, 18).toString('base64url');
  }

  async issue(user: string, revision: number): Promise<string> {
    const key = this.#tokenKey();
    const now = this.#now();
    const payload = `${b64url(user)}.${revision}.${now}.${b64url(randomBytes(9))}`;
    const token = `${payload}.${this.#mac(key, payload)}`;
    this.#seen.set(token, { claims: { user, revision }, key, issuedMs: now, lastUsedMs: now });
    return token;
  }

  verify(token: string): TokenClaims | undefined {
    const key = this.#tokenKey();
    if (key.length === 0) return undefined;
    const now = this.#now();
    const seen = this.#seen.get(token);
    if (seen !== undefined && seen.key === key) {
      if (now - seen.lastUsedMs > this.#ttlMs) {
        this.#seen.delete(token);
        return undefined;
      }
      seen.lastUsedMs = now;
      return seen.claims;
    }
    const parsed = this.#parse(token, key);
    if (parsed === undefined || now - parsed.issuedMs > this.#ttlMs) return undefined;
    this.#seen.set(token, { claims: parsed.claims, key, issuedMs: parsed.issuedMs, lastUsedMs: now });
    return parsed.claims;
  }

  #parse(token: string, key: Uint8Array): { claims: TokenClaims; issuedMs: number } | undefined {
    if (token.length > 1024) return undefined;
    const parts = token.split('.');
    if (parts.length !== 5) return undefined;
    const payload = parts.slice(0, 4).join('.');
    const expected = Buffer.from(this.#mac(key, payload), 'utf8');
    const given = Buffer.from(parts[4], 'utf8');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
    const revision = Number(parts[1]);
    const issuedMs = Number(parts[2]);
    if (!Number.isSafeInteger(revision) || !Number.isSafeInteger(issuedMs)) return undefined;
    return { claims: { user: Buffer.from(parts[0], 'base64url').toString('utf8'), revision }, issuedMs };
  }

  /** Tokens remembered (tests). */
  get tracked(): number {
    return this.#seen.size;
  }
}

/** etcd's JWT tokens. */
export class JwtTokens implements TokenProvider {
  readonly kind = 'jwt';
  readonly #alg: string;
  readonly #signKey: KeyObject | Uint8Array | undefined;
  readonly #verifyKey: KeyObject | Uint8Array;
  readonly #ttlMs: number;
  readonly #verified = new Recent<{ claims: TokenClaims; expMs: number }>(TOKENS_TRACKED_MAX);

  constructor(settings: Extract<TokenSettings, { kind: 'jwt' }>) {
    this.#alg = settings.signMethod;
    this.#ttlMs = settings.ttlMs;
    if (this.#alg.startsWith('HS')) {
      if (settings.privateKeyFile === undefined) throw new Error('--auth-token: auth: missing key data');
      const secret = new Uint8Array(readFileSync(settings.privateKeyFile));
      this.#signKey = secret;
      this.#verifyKey = secret;
      return;
    }
    const privateKey = settings.privateKeyFile === undefined ? undefined : createPrivateKey(readFileSync(settings.privateKeyFile));
    const publicKey = settings.publicKeyFile === undefined ? undefined : createPublicKey(readFileSync(settings.publicKeyFile));
    if (privateKey === undefined && publicKey === undefined) throw new Error('--auth-token: auth: missing key data');
    if (privateKey !== undefined && publicKey !== undefined) {
      const derived = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
      if (!Buffer.from(derived).equals(Buffer.from(publicKey.export({ format: 'der', type: 'spki' })))) throw new Error("--auth-token: auth: public and private keys don't match");
    }
    this.#signKey = privateKey;
    this.#verifyKey = publicKey ?? createPublicKey(privateKey as KeyObject);
  }

  async issue(user: string, revision: number): Promise<string> {
    if (this.#signKey === undefined) throw new Error('auth: token signing attempted with verify-only key');
    return new SignJWT({ username: user, revision })
      .setProtectedHeader({ alg: this.#alg, typ: 'JWT' })
      .setExpirationTime(Math.floor((Date.now() + this.#ttlMs) / 1000))
      .sign(this.#signKey);
  }

  verify(token: string): TokenClaims | undefined | Promise<TokenClaims | undefined> {
    const cached = this.#verified.get(token);
    if (cached !== undefined) {
      if (Date.now() < cached.expMs) return cached.claims;
      this.#verified.delete(token);
      return undefined;
    }
    if (token.length > 8192) return undefined;
    return jwtVerify(token, this.#verifyKey, { algorithms: [this.#alg] }).then(
      ({ payload }) => {
        const user = payload.username;
        const revision = payload.revision;
        if (typeof user !== 'string' || typeof revision !== 'number' || !Number.isSafeInteger(revision)) return undefined;
        const claims = { user, revision };
        this.#verified.set(token, { claims, expMs: typeof payload.exp === 'number' ? payload.exp * 1000 : Date.now() + this.#ttlMs });
        return claims;
      },
      () => undefined,
    );
  }
}

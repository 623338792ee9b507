/**
 * Who is calling and what they may do, for the member's backends (backends.ts): turns a call's
 * credentials (token or TLS common name) into a {@link Principal}, answers Authenticate, and
 * refuses what the replicated auth state does not allow (store/auth/authorize.ts). Writes and
 * auth changes are decided again by the applier, with the principal carried in the entry.
 *
 * Authenticate (etcd's v3_server.go Authenticate, without its Raft round): the caller first
 * passes a linearizable barrier so that a password changed anywhere is seen here; the password
 * is checked against the user's stored hash through the credential cache (a KDF run only for
 * credentials not seen before, shared by concurrent identical logins); the token is issued by
 * this member from replicated state and is valid on every member (tokens.ts).
 */
import type { CallAuth } from '../../api/backend.js';
import { ANONYMOUS, authorize, type AuthNeed, type AuthStore, type Principal } from '../../store/auth/index.js';
import { KvdError } from '../../util/errors.js';
import type { Logger } from '../logger.js';
import { CredentialCache } from './credential-cache.js';
import { verifyPassword } from './passwords.js';
import type { TokenProvider } from './tokens.js';

/** Attempts of Authenticate when the user's credentials change while its password is checked. */
const AUTHENTICATE_ATTEMPTS_MAX = 3;

export interface AuthGateOptions {
  /** The auth state now (replaced by snapshot installs). */
  readonly store: () => AuthStore;
  readonly tokens: TokenProvider;
  readonly logger: Logger;
}

export class AuthGate {
  readonly #store: () => AuthStore;
  readonly #tokens: TokenProvider;
  readonly #logger: Logger;
  readonly credentials = new CredentialCache();

  constructor(options: AuthGateOptions) {
    this.#store = options.store;
    this.#tokens = options.tokens;
    this.#logger = options.logger;
  }

  get tokens(): TokenProvider {
    return this.#tokens;
  }

  /**
   * The principal of a call: its token's user (throws 'invalid-auth-token' for a token that is
   * not valid, and, as etcd, for any simple token while auth is off), else the TLS common name
   * (the api layer passes it only with --client-cert-auth), else anonymous. Synchronous unless
   * a JWT must be verified for the first time.
   */
  principal(auth: CallAuth | undefined): Principal | Promise<Principal> {
    const token = auth?.token;
    if (token !== undefined && token !== '') {
      if (this.#tokens.kind === 'simple' && !this.#store().enabled) throw new KvdError('invalid-auth-token');
      const claims = this.#tokens.verify(token);
      if (claims instanceof Promise) return claims.then((verified) => this.#fromClaims(verified));
      return this.#fromClaims(claims);
    }
    const commonName = auth?.commonName;
    if (commonName !== undefined && commonName !== '') return { user: commonName };
    return ANONYMOUS;
  }

  #fromClaims(claims: { user: string; revision: number } | undefined): Principal {
    if (claims === undefined) throw new KvdError('invalid-auth-token');
    return { user: claims.user, tokenRevision: claims.revision };
  }

  /** Throws the KvdError of a refusal; returns when `principal` may do what `need` says. */
  require(principal: Principal, need: AuthNeed): void {
    const refused = authorize(this.#store(), principal, need);
    if (refused !== undefined) throw new KvdError(refused);
  }

  /** Whether `require` can refuse anything now (auth on): lets callers skip building checks. */
  get active(): boolean {
    return this.#store().enabled;
  }

  /**
   * Checks a user's password and issues a token. The caller has passed a linearizable barrier.
   * Throws 'auth-not-enabled', 'auth-failed' (unknown user or wrong password, one text for
   * both), 'auth-no-password-user', 'too-many-requests' (KDF queue full).
   */
  async authenticate(name: string, password: string): Promise<string> {
    for (let attempt = 0; attempt < AUTHENTICATE_ATTEMPTS_MAX; attempt += 1) {
      const store = this.#store();
      if (!store.enabled) throw new KvdError('auth-not-enabled');
      const user = store.user(name);
      if (user === undefined) throw this.#failed(name, 'no such user');
      if (user.noPassword || user.password === undefined) throw new KvdError('auth-no-password-user');
      const stored = user.password;
      const ok = await this.credentials.check(name, user.credentialRevision, password, () => verifyPassword(stored, password));
      const now = this.#store();
      const current = now.user(name);
      // The credentials changed while the password was checked: check against the new ones.
      if (current === undefined || current.credentialRevision !== user.credentialRevision || !now.enabled) continue;
      if (!ok) throw this.#failed(name, 'invalid password');
      return this.#tokens.issue(name, now.revision);
    }
    throw this.#failed(name, 'credentials kept changing');
  }

  #failed(name: string, why: string): KvdError {
    this.#logger.warn({ event: 'authentication-failed', user: name, why }, 'invalid authentication was requested');
    return new KvdError('auth-failed');
  }
}

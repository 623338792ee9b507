/**
 * The one authorization decision (etcd's isOpPermitted / IsAdminPermitted), a pure function of
 * the auth state, who asks, and what they need. The read path calls it before reading, the
 * applier calls it when applying a write or an auth change, on every member alike: the outcome
 * depends only on replicated state and the request, so all members agree.
 */
import type { ErrorCode } from '../../util/errors.js';
import type { AuthStore } from './auth-store.js';
import type { AccessCheck } from './request-checks.js';

/**
 * Who a request acts for: `user` '' is anonymous. `tokenRevision` is the auth revision the
 * user's token was issued at (undefined for a TLS common-name identity): a user whose
 * credentials changed after it is no longer that token's user.
 */
export interface Principal {
  readonly user: string;
  readonly tokenRevision?: number;
}

/** The anonymous principal. */
export const ANONYMOUS: Principal = Object.freeze({ user: '' });

/** What a request needs. */
export type AuthNeed =
  | { readonly kind: 'access'; readonly checks: readonly AccessCheck[] }
  /** Root role (user and role management, compaction, membership changes, maintenance). */
  | { readonly kind: 'admin' }
  /** Any existing user (kvd: lease grants). */
  | { readonly kind: 'authenticated' };

/**
 * undefined when allowed, else the error: with auth off, or for an internal request
 * (`principal` undefined), everything is allowed.
 */
export function authorize(store: AuthStore, principal: Principal | undefined, need: AuthNeed): ErrorCode | undefined {
  if (!store.enabled || principal === undefined) return undefined;
  if (principal.user === '') return 'auth-user-empty';
  const user = store.user(principal.user);
  if (principal.tokenRevision !== undefined && (user === undefined || user.credentialRevision > principal.tokenRevision)) return 'invalid-auth-token';
  if (need.kind === 'admin') {
    if (user === undefined) return 'auth-user-not-found';
    return store.isRoot(user) ? undefined : 'permission-denied';
  }
  if (user === undefined) return 'permission-denied';
  if (need.kind === 'authenticated') return undefined;
  for (const check of need.checks) {
    if (!store.permits(user, check.access, check.key, check.rangeEnd)) return 'permission-denied';
  }
  return undefined;
}

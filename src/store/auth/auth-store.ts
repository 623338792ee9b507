/**
 * The replicated auth state (etcd's auth/store.go): whether auth is on, the auth revision, users
 * (roles, password hash, no-password option) and roles (key-range permissions).
 *
 * Where it lives: records in the backend's meta namespace, written by the applier in the same
 * LevelDB batch as the entry's applied index, so every member that applied the same entries has
 * byte-identical records:
 *   `auth/state`        {"enabled", "revision", "tokenKey"}
 *   `auth/user/<name>`  {"name", "roles", "password", "noPassword", "credentialRevision"}
 *   `auth/role/<name>`  {"name", "permissions": [{"type", "key", "rangeEnd"}]} (base64 bytes)
 * This class is the in-memory view of those records: it loads them (open, snapshot install) and
 * turns each auth request into its record writes. Mutations are deterministic functions of the
 * request and the state; they read no clock and draw no random numbers (the token key and the
 * password hashes come inside the request, made by the proposing member).
 *
 * The auth revision starts at 1 (etcd commits 1 when it creates its store) and grows by one
 * with every change of users or roles and with auth disable; auth enable keeps it (as etcd).
 * A user's `credentialRevision` is the revision of its last add or password change: tokens
 * issued before it are no longer valid (a password change or a delete revokes them at once).
 *
 * Invariant: #users and #roles mirror the `auth/user/` and `auth/role/` records exactly;
 * #permissionCache holds only entries computed at the current revision.
 */
import type { ErrorCode } from '../../util/errors.js';
import { assert } from '../../util/assert.js';
import { sameRange, sortPermissions, UserPermissions, type KeyPermission, type PermissionType } from './permissions.js';

/** How a password is stored: never the password itself. */
export type PasswordHash =
  /** node:crypto scrypt with these parameters; salt and derived key base64. */
  | { readonly scheme: 'scrypt'; readonly n: number; readonly r: number; readonly p: number; readonly salt: string; readonly hash: string }
  /** A bcrypt hash ("$2a$10$..."), as etcd 3.5+ clients may send in hashedPassword. */
  | { readonly scheme: 'bcrypt'; readonly hash: string };

export interface AuthUser {
  readonly name: string;
  /** Sorted, without duplicates (etcd keeps them sorted). */
  readonly roles: readonly string[];
  /** Absent for a no-password user (TLS common-name login only). */
  readonly password: PasswordHash | undefined;
  readonly noPassword: boolean;
  /** The auth revision of the user's last add or password change. */
  readonly credentialRevision: number;
}

export interface AuthRole {
  readonly name: string;
  /** Sorted by key (etcd's order). */
  readonly permissions: readonly KeyPermission[];
}

/** The root user and role (etcd's). */
export const ROOT = 'root';

/** Meta namespace of the auth records. */
export const AUTH_META_PREFIX = 'auth/';
const STATE_KEY = 'auth/state';
const USER_PREFIX = 'auth/user/';
const ROLE_PREFIX = 'auth/role/';

/** Auth requests applied through the log (the proposer has hashed passwords and drawn the token key). */
export type AuthMutation =
  | { readonly type: 'auth-enable'; readonly tokenKey: Uint8Array }
  | { readonly type: 'auth-disable' }
  | { readonly type: 'auth-user-add'; readonly name: string; readonly password: PasswordHash | undefined; readonly noPassword: boolean }
  | { readonly type: 'auth-user-delete'; readonly name: string }
  | { readonly type: 'auth-user-change-password'; readonly name: string; readonly password: PasswordHash }
  | { readonly type: 'auth-user-grant-role'; readonly user: string; readonly role: string }
  | { readonly type: 'auth-user-revoke-role'; readonly name: string; readonly role: string }
  | { readonly type: 'auth-role-add'; readonly name: string }
  | { readonly type: 'auth-role-delete'; readonly role: string }
  | { readonly type: 'auth-role-grant-permission'; readonly name: string; readonly permission: KeyPermission }
  | { readonly type: 'auth-role-revoke-permission'; readonly role: string; readonly key: Uint8Array; readonly rangeEnd: Uint8Array };

/** Meta writes to persist with the applying entry (null deletes). */
export type MetaWrites = Map<string, Uint8Array | null>;

export type AuthOutcome = { readonly ok: true; readonly writes: MetaWrites } | { readonly ok: false; readonly code: ErrorCode };

interface StateJson { enabled: boolean; revision: number; tokenKey: string }
interface UserJson { name: string; roles: string[]; password: PasswordHash | null; noPassword: boolean; credentialRevision: number }
interface RoleJson { name: string; permissions: Array<{ type: PermissionType; key: string; rangeEnd: string }> }

function encodeJson(value: unknown): Uint8Array {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

function decodeJson<T>(bytes: Uint8Array): T {
  return JSON.parse(Buffer.from(bytes).toString('utf8')) as T;
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

function fromB64(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'base64'));
}

export class AuthStore {
  #enabled = false;
  #revision = 1;
  #tokenKey: Uint8Array = new Uint8Array(0);
  readonly #users = new Map<string, AuthUser>();
  readonly #roles = new Map<string, AuthRole>();
  readonly #permissionCache = new Map<string, UserPermissions>();
  /** Listeners told after every applied change (revision or enabled changed). */
  readonly #listeners = new Set<() => void>();

  /** Builds the view of the records in `meta` (every `auth/` key; others are ignored). */
  static load(meta: ReadonlyMap<string, Uint8Array>): AuthStore {
    const store = new AuthStore();
    store.reload(meta);
    return store;
  }

  /** Replaces the view with the records in `meta` (after a snapshot install). */
  reload(meta: ReadonlyMap<string, Uint8Array>): void {
    this.#enabled = false;
    this.#revision = 1;
    this.#tokenKey = new Uint8Array(0);
    this.#users.clear();
    this.#roles.clear();
    this.#permissionCache.clear();
    for (const [key, value] of meta) {
      if (key === STATE_KEY) {
        const state = decodeJson<StateJson>(value);
        this.#enabled = state.enabled;
        this.#revision = state.revision;
        this.#tokenKey = fromB64(state.tokenKey);
      } else if (key.startsWith(USER_PREFIX)) {
        const user = decodeJson<UserJson>(value);
        this.#users.set(user.name, { name: user.name, roles: user.roles, password: user.password ?? undefined, noPassword: user.noPassword, credentialRevision: user.credentialRevision });
      } else if (key.startsWith(ROLE_PREFIX)) {
        const role = decodeJson<RoleJson>(value);
        this.#roles.set(role.name, { name: role.name, permissions: role.permissions.map((p) => ({ type: p.type, key: fromB64(p.key), rangeEnd: fromB64(p.rangeEnd) })) });
      }
    }
    this.#notify();
  }

  /** Calls `listener` after every change (apply or reload); returns an unsubscribe. */
  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get enabled(): boolean { return this.#enabled; }
  get revision(): number { return this.#revision; }
  /** The key simple tokens are signed with; replaced at every auth enable. Empty while never enabled. */
  get tokenKey(): Uint8Array { return this.#tokenKey; }

  user(name: string): AuthUser | undefined { return this.#users.get(name); }
  role(name: string): AuthRole | undefined { return this.#roles.get(name); }
  /** User names, sorted as etcd lists them (its bucket order: bytes). */
  userNames(): string[] { return [...this.#users.keys()].sort(compareNames); }
  roleNames(): string[] { return [...this.#roles.keys()].sort(compareNames); }

  /** Whether the user has the root role (full access, admin operations). */
  isRoot(user: AuthUser): boolean {
    return user.roles.includes(ROOT);
  }

  /**
   * Whether `user` may `access` the key or range (request conventions for `rangeEnd`). Callers
   * check `enabled` first; a root user may do anything.
   */
  permits(user: AuthUser, access: 'read' | 'write', key: Uint8Array, rangeEnd: Uint8Array): boolean {
    if (this.isRoot(user)) return true;
    let permissions = this.#permissionCache.get(user.name);
    if (permissions === undefined) {
      const granted: KeyPermission[] = [];
      for (const roleName of user.roles) granted.push(...(this.#roles.get(roleName)?.permissions ?? []));
      permissions = new UserPermissions(granted);
      this.#permissionCache.set(user.name, permissions);
    }
    return permissions.permits(access, key, rangeEnd);
  }

  // ───────────────────────────── apply (deterministic) ─────────────────────────────

  /** Applies one auth mutation; on success the view is updated and the writes are returned. */
  apply(mutation: AuthMutation): AuthOutcome {
    const outcome = this.#apply(mutation);
    if (outcome.ok) this.#notify();
    return outcome;
  }

  #apply(mutation: AuthMutation): AuthOutcome {
    switch (mutation.type) {
      case 'auth-enable': return this.#enable(mutation.tokenKey);
      case 'auth-disable': return this.#disable();
      case 'auth-user-add': return this.#userAdd(mutation);
      case 'auth-user-delete': return this.#userDelete(mutation.name);
      case 'auth-user-change-password': return this.#changePassword(mutation.name, mutation.password);
      case 'auth-user-grant-role': return this.#grantRole(mutation.user, mutation.role);
      case 'auth-user-revoke-role': return this.#revokeRole(mutation.name, mutation.role);
      case 'auth-role-add': return this.#roleAdd(mutation.name);
      case 'auth-role-delete': return this.#roleDelete(mutation.role);
      case 'auth-role-grant-permission': return this.#grantPermission(mutation.name, mutation.permission);
      case 'auth-role-revoke-permission': return this.#revokePermission(mutation.role, mutation.key, mutation.rangeEnd);
    }
  }

  #enable(tokenKey: Uint8Array): AuthOutcome {
    if (this.#enabled) return { ok: true, writes: new Map() }; // etcd: already enabled is a no-op
    const root = this.#users.get(ROOT);
    if (root === undefined) return { ok: false, code: 'auth-root-user-missing' };
    if (!this.isRoot(root)) return { ok: false, code: 'auth-root-role-missing' };
    assert(tokenKey.length >= 16, 'an auth enable carries a token key of at least 16 bytes');
    this.#enabled = true;
    this.#tokenKey = new Uint8Array(tokenKey);
    return { ok: true, writes: new Map([this.#stateWrite()]) };
  }

  #disable(): AuthOutcome {
    if (!this.#enabled) return { ok: true, writes: new Map() };
    this.#enabled = false;
    this.#tokenKey = new Uint8Array(0);
    return this.#commit(new Map());
  }

  #userAdd(request: { name: string; password: PasswordHash | undefined; noPassword: boolean }): AuthOutcome {
    if (request.name.length === 0) return { ok: false, code: 'auth-user-empty' };
    if (this.#users.has(request.name)) return { ok: false, code: 'auth-user-exists' };
    const writes: MetaWrites = new Map();
    const revision = this.#revision + 1;
    this.#putUser(writes, { name: request.name, roles: [], password: request.noPassword ? undefined : request.password, noPassword: request.noPassword, credentialRevision: revision });
    return this.#commit(writes);
  }

  #userDelete(name: string): AuthOutcome {
    if (this.#enabled && name === ROOT) return { ok: false, code: 'invalid-auth-mgmt' };
    if (!this.#users.has(name)) return { ok: false, code: 'auth-user-not-found' };
    this.#users.delete(name);
    return this.#commit(new Map([[USER_PREFIX + name, null]]));
  }

  #changePassword(name: string, password: PasswordHash): AuthOutcome {
    const user = this.#users.get(name);
    if (user === undefined) return { ok: false, code: 'auth-user-not-found' };
    const writes: MetaWrites = new Map();
    // etcd keeps the no-password option: such a user still cannot log in with a password.
    this.#putUser(writes, { ...user, password: user.noPassword ? undefined : password, credentialRevision: this.#revision + 1 });
    return this.#commit(writes);
  }

  #grantRole(userName: string, roleName: string): AuthOutcome {
    const user = this.#users.get(userName);
    if (user === undefined) return { ok: false, code: 'auth-user-not-found' };
    if (roleName !== ROOT && !this.#roles.has(roleName)) return { ok: false, code: 'auth-role-not-found' };
    if (user.roles.includes(roleName)) return { ok: true, writes: new Map() }; // etcd ignores a duplicate grant
    const writes: MetaWrites = new Map();
    this.#putUser(writes, { ...user, roles: [...user.roles, roleName].sort(compareNames) });
    return this.#commit(writes);
  }

  #revokeRole(userName: string, roleName: string): AuthOutcome {
    if (this.#enabled && userName === ROOT && roleName === ROOT) return { ok: false, code: 'invalid-auth-mgmt' };
    const user = this.#users.get(userName);
    if (user === undefined) return { ok: false, code: 'auth-user-not-found' };
    if (!user.roles.includes(roleName)) return { ok: false, code: 'role-not-granted' };
    const writes: MetaWrites = new Map();
    this.#putUser(writes, { ...user, roles: user.roles.filter((role) => role !== roleName) });
    return this.#commit(writes);
  }

  #roleAdd(name: string): AuthOutcome {
    if (name.length === 0) return { ok: false, code: 'auth-role-empty' };
    if (this.#roles.has(name)) return { ok: false, code: 'auth-role-exists' };
    const writes: MetaWrites = new Map();
    this.#putRole(writes, { name, permissions: [] });
    return this.#commit(writes);
  }

  #roleDelete(name: string): AuthOutcome {
    if (this.#enabled && name === ROOT) return { ok: false, code: 'invalid-auth-mgmt' };
    if (!this.#roles.has(name)) return { ok: false, code: 'auth-role-not-found' };
    this.#roles.delete(name);
    const writes: MetaWrites = new Map([[ROLE_PREFIX + name, null]]);
    // etcd revokes the deleted role from every user that had it.
    for (const user of [...this.#users.values()]) {
      if (user.roles.includes(name)) this.#putUser(writes, { ...user, roles: user.roles.filter((role) => role !== name) });
    }
    return this.#commit(writes);
  }

  #grantPermission(roleName: string, permission: KeyPermission): AuthOutcome {
    const role = this.#roles.get(roleName);
    if (role === undefined) return { ok: false, code: 'auth-role-not-found' };
    const existing = role.permissions.findIndex((p) => sameRange(p, permission));
    const permissions = existing >= 0
      ? role.permissions.map((p, i) => (i === existing ? { ...p, type: permission.type } : p)) // etcd updates the type in place
      : sortPermissions([...role.permissions, { type: permission.type, key: new Uint8Array(permission.key), rangeEnd: new Uint8Array(permission.rangeEnd) }]);
    const writes: MetaWrites = new Map();
    this.#putRole(writes, { name: roleName, permissions });
    return this.#commit(writes);
  }

  #revokePermission(roleName: string, key: Uint8Array, rangeEnd: Uint8Array): AuthOutcome {
    const role = this.#roles.get(roleName);
    if (role === undefined) return { ok: false, code: 'auth-role-not-found' };
    const permissions = role.permissions.filter((p) => !sameRange(p, { key, rangeEnd }));
    if (permissions.length === role.permissions.length) return { ok: false, code: 'permission-not-granted' };
    const writes: MetaWrites = new Map();
    this.#putRole(writes, { name: roleName, permissions });
    return this.#commit(writes);
  }

  #putUser(writes: MetaWrites, user: AuthUser): void {
    this.#users.set(user.name, user);
    const json: UserJson = { name: user.name, roles: [...user.roles], password: user.password ?? null, noPassword: user.noPassword, credentialRevision: user.credentialRevision };
    writes.set(USER_PREFIX + user.name, encodeJson(json));
  }

  #putRole(writes: MetaWrites, role: AuthRole): void {
    this.#roles.set(role.name, role);
    const json: RoleJson = { name: role.name, permissions: role.permissions.map((p) => ({ type: p.type, key: b64(p.key), rangeEnd: b64(p.rangeEnd) })) };
    writes.set(ROLE_PREFIX + role.name, encodeJson(json));
  }

  /** Bumps the revision, drops the permission cache and adds the state record to `writes`. */
  #commit(writes: MetaWrites): AuthOutcome {
    this.#revision += 1;
    this.#permissionCache.clear();
    const [key, value] = this.#stateWrite();
    writes.set(key, value);
    return { ok: true, writes };
  }

  #stateWrite(): [string, Uint8Array] {
    const json: StateJson = { enabled: this.#enabled, revision: this.#revision, tokenKey: b64(this.#tokenKey) };
    return [STATE_KEY, encodeJson(json)];
  }

  #notify(): void {
    for (const listener of this.#listeners) listener();
  }
}

/** etcd lists names in byte order of their keys. */
function compareNames(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

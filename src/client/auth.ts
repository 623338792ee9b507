/**
 * User, role and auth management (etcd's Auth service), used by kvctl's `user`, `role` and
 * `auth` commands. Reads (get, list, status) are retried across endpoints; changes are sent at
 * most once (a repeated add fails with "already exists"). Refusals carry etcd's messages (see
 * errors.ts: PermissionDeniedError, AuthenticationFailedError, ...).
 */
import { bytesFromWire, decodeHeader, fromWire, toBuffer, type Bytes, type ResponseHeader } from './codec.js';
import type { Connection } from './connection.js';

/** A key permission of a role. `rangeEnd` empty: one key; [0]: every key from `key` on. */
export interface Permission {
  readonly type: 'read' | 'write' | 'readwrite';
  readonly key: Buffer;
  readonly rangeEnd: Buffer;
}

const TYPES: Record<string, Permission['type']> = { READ: 'read', WRITE: 'write', READWRITE: 'readwrite' };
const NAMES: Record<Permission['type'], string> = { read: 'READ', write: 'WRITE', readwrite: 'READWRITE' };

/** Options of the auth calls: a deadline (ms; default the client's). */
export interface AuthCallOptions {
  readonly timeoutMs?: number;
}

export class AuthApi {
  readonly #connection: Connection;

  constructor(connection: Connection) {
    this.#connection = connection;
  }

  async #change(method: string, request: Record<string, unknown>, options: AuthCallOptions): Promise<{ header: ResponseHeader }> {
    const { response } = await this.#connection.unary('Auth', method, request, { retry: 'at-most-once', ...options });
    return { header: decodeHeader(response.header) };
  }

  async #read(method: string, request: Record<string, unknown>, options: AuthCallOptions): Promise<Record<string, unknown>> {
    const { response } = await this.#connection.unary('Auth', method, request, { retry: 'idempotent', ...options });
    return response;
  }

  /** Turns auth on (needs a `root` user with the `root` role). */
  enable(options: AuthCallOptions = {}): Promise<{ header: ResponseHeader }> {
    return this.#change('AuthEnable', {}, options);
  }

  disable(options: AuthCallOptions = {}): Promise<{ header: ResponseHeader }> {
    return this.#change('AuthDisable', {}, options);
  }

  /** Whether auth is on and the auth revision (etcd 3.5+; kvd). */
  async status(options: AuthCallOptions = {}): Promise<{ header: ResponseHeader; enabled: boolean; authRevision: bigint }> {
    const response = await this.#read('AuthStatus', {}, options);
    return { header: decodeHeader(response.header), enabled: response.enabled === true, authRevision: fromWire(response.authRevision) };
  }

  /** Adds a user; `noPassword` users log in only with a TLS client certificate (CN = name). */
  userAdd(name: string, password: string, options: AuthCallOptions & { noPassword?: boolean } = {}): Promise<{ header: ResponseHeader }> {
    return this.#change('UserAdd', { name, password, options: { no_password: options.noPassword === true } }, options);
  }

  async userGet(name: string, options: AuthCallOptions = {}): Promise<{ header: ResponseHeader; roles: string[] }> {
    const response = await this.#read('UserGet', { name }, options);
    return { header: decodeHeader(response.header), roles: [...((response.roles ?? []) as string[])] };
  }

  async userList(options: AuthCallOptions = {}): Promise<{ header: ResponseHeader; users: string[] }> {
    const response = await this.#read('UserList', {}, options);
    return { header: decodeHeader(response.header), users: [...((response.users ?? []) as string[])] };
  }

  userDelete(name: string, options: AuthCallOptions = {}): Promise<{ header: ResponseHeader }> {
    return this.#change('UserDelete', { name }, options);
  }

  /** Changes a password: every token of the user stops working at once (kvd). */
  userChangePassword(name: string, password: string, options: AuthCallOptions = {}): Promise<{ header: ResponseHeader }> {
    return this.#change('UserChangePassword', { name, password }, options);
  }

  userGrantRole(user: string, role: string, options: AuthCallOptions = {}): Promise<{ header: ResponseHeader }> {
    return this.#change('UserGrantRole', { user, role }, options);
  }

  userRevokeRole(name: string, role: string, options: AuthCallOptions = {}): Promise<{ header: ResponseHeader }> {
    return this.#change('UserRevokeRole', { name, role }, options);
  }

  roleAdd(name: string, options: AuthCallOptions = {}): Promise<{ header: ResponseHeader }> {
    return this.#change('RoleAdd', { name }, options);
  }

  async roleGet(role: string, options: AuthCallOptions = {}): Promise<{ header: ResponseHeader; permissions: Permission[] }> {
    const response = await this.#read('RoleGet', { role }, options);
    const permissions = ((response.perm ?? []) as Array<Record<string, unknown>>).map((perm) => ({
      type: TYPES[String(perm.permType)] ?? 'read',
      key: bytesFromWire(perm.key),
      rangeEnd: bytesFromWire(perm.range_end),
    }));
    return { header: decodeHeader(response.header), permissions };
  }

  async roleList(options: AuthCallOptions = {}): Promise<{ header: ResponseHeader; roles: string[] }> {
    const response = await this.#read('RoleList', {}, options);
    return { header: decodeHeader(response.header), roles: [...((response.roles ?? []) as string[])] };
  }

  roleDelete(role: string, options: AuthCallOptions = {}): Promise<{ header: ResponseHeader }> {
    return this.#change('RoleDelete', { role }, options);
  }

  /** Grants `type` on a key (`rangeEnd` empty), a range, or from a key on (`rangeEnd` = "\0"). */
  roleGrantPermission(role: string, permission: { type: Permission['type']; key: Bytes; rangeEnd?: Bytes }, options: AuthCallOptions = {}): Promise<{ header: ResponseHeader }> {
    return this.#change('RoleGrantPermission', { name: role, perm: { permType: NAMES[permission.type], key: toBuffer(permission.key), range_end: toBuffer(permission.rangeEnd ?? '') } }, options);
  }

  roleRevokePermission(role: string, key: Bytes, rangeEnd: Bytes = '', options: AuthCallOptions = {}): Promise<{ header: ResponseHeader }> {
    return this.#change('RoleRevokePermission', { role, key: toBuffer(key), range_end: toBuffer(rangeEnd) }, options);
  }
}

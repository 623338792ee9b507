/**
 * The Auth service. Only AuthStatus is served for now: from the {@link AuthBackend} when there is
 * one, otherwise "disabled"; Authenticate answers etcd's "authentication is not enabled". Every
 * other Auth RPC answers UNIMPLEMENTED.
 */
import type * as grpc from '@grpc/grpc-js';
import type { AuthBackend, ResponseHeader } from './backend.js';
import { unary, unimplementedHandler, type HandlerContext } from './call.js';
import { encodeHeader } from './codec.js';
import { KvdError } from '../util/errors.js';

/** Every RPC of etcdserverpb.Auth. */
export const AUTH_METHODS = [
  'AuthEnable', 'AuthDisable', 'AuthStatus', 'Authenticate', 'UserAdd', 'UserGet', 'UserList', 'UserDelete',
  'UserChangePassword', 'UserGrantRole', 'UserRevokeRole', 'RoleAdd', 'RoleGet', 'RoleList', 'RoleDelete',
  'RoleGrantPermission', 'RoleRevokePermission',
] as const;

/** Options of {@link createAuthService}. */
export interface AuthServiceOptions extends HandlerContext {
  readonly backend: AuthBackend | undefined;
  /** Header for AuthStatus without a backend. */
  readonly header: () => ResponseHeader;
}

/** Builds the handlers of etcdserverpb.Auth. */
export function createAuthService(options: AuthServiceOptions): grpc.UntypedServiceImplementation {
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const method of AUTH_METHODS) handlers[method] = unimplementedHandler(`Auth.${method}`);
  const backend = options.backend;
  // Auth is never on in kvd yet: etcd answers Authenticate so while auth is disabled.
  handlers.Authenticate = unary('Authenticate', options, async () => {
    throw new KvdError('auth-not-enabled');
  });
  handlers.AuthStatus = unary('AuthStatus', options, async (_request, call) => {
    if (backend === undefined) return { header: encodeHeader(options.header()), enabled: false, authRevision: '0' };
    const { header, enabled, authRevision } = await backend.status(call);
    return { header: encodeHeader(header), enabled, authRevision: String(authRevision) };
  });
  return handlers;
}

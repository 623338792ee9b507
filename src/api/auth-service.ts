/**
 * The Auth service (etcd's v3rpc/auth.go): every RPC decoded into an {@link AuthRequest} and
 * handed to the backend, which applies etcd's rules (src/server/auth). AuthStatus answers
 * "disabled" without a backend; the other RPCs answer UNIMPLEMENTED without one.
 */
import type * as grpc from '@grpc/grpc-js';
import type { AuthAnswer, AuthBackend, AuthPermission, AuthRequest, ResponseHeader } from './backend.js';
import { unary, unimplementedHandler, type HandlerContext } from './call.js';
import { encodeHeader, type PbMessage } from './codec.js';
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

const EMPTY = new Uint8Array(0);

function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

function bytes(value: unknown): Uint8Array {
  return value instanceof Uint8Array ? value : EMPTY;
}

const PERMISSION_TYPES: Record<string, AuthPermission['type']> = { READ: 'read', WRITE: 'write', READWRITE: 'readwrite', 0: 'read', 1: 'write', 2: 'readwrite' };
const PERMISSION_NAMES: Record<AuthPermission['type'], string> = { read: 'READ', write: 'WRITE', readwrite: 'READWRITE' };

/** Decodes an authpb.Permission; a missing one is etcd's "permission not given". */
export function decodePermission(pb: unknown): AuthPermission {
  if (pb === null || typeof pb !== 'object') throw new KvdError('permission-not-given');
  const message = pb as PbMessage;
  const type = PERMISSION_TYPES[String(message.permType ?? 'READ')];
  if (type === undefined) throw new KvdError('invalid-argument', { detail: `etcdserver: invalid permission type ${String(message.permType)}` });
  return { type, key: bytes(message.key), rangeEnd: bytes(message.range_end) };
}

/** Encodes an authpb.Permission. */
export function encodePermission(permission: AuthPermission): PbMessage {
  return { permType: PERMISSION_NAMES[permission.type], key: Buffer.from(permission.key), range_end: Buffer.from(permission.rangeEnd) };
}

/** The decoder of each RPC's request. */
const DECODERS: Record<Exclude<(typeof AUTH_METHODS)[number], 'AuthStatus'>, (pb: PbMessage) => AuthRequest> = {
  AuthEnable: () => ({ method: 'enable' }),
  AuthDisable: () => ({ method: 'disable' }),
  Authenticate: (pb) => ({ method: 'authenticate', name: text(pb.name), password: text(pb.password) }),
  UserAdd: (pb) => ({
    method: 'user-add',
    name: text(pb.name),
    password: text(pb.password),
    hashedPassword: text(pb.hashedPassword),
    noPassword: (pb.options as PbMessage | null | undefined)?.no_password === true,
  }),
  UserGet: (pb) => ({ method: 'user-get', name: text(pb.name) }),
  UserList: () => ({ method: 'user-list' }),
  UserDelete: (pb) => ({ method: 'user-delete', name: text(pb.name) }),
  UserChangePassword: (pb) => ({ method: 'user-change-password', name: text(pb.name), password: text(pb.password), hashedPassword: text(pb.hashedPassword) }),
  UserGrantRole: (pb) => ({ method: 'user-grant-role', user: text(pb.user), role: text(pb.role) }),
  UserRevokeRole: (pb) => ({ method: 'user-revoke-role', name: text(pb.name), role: text(pb.role) }),
  RoleAdd: (pb) => ({ method: 'role-add', name: text(pb.name) }),
  RoleGet: (pb) => ({ method: 'role-get', role: text(pb.role) }),
  RoleList: () => ({ method: 'role-list' }),
  RoleDelete: (pb) => ({ method: 'role-delete', role: text(pb.role) }),
  RoleGrantPermission: (pb) => ({ method: 'role-grant-permission', name: text(pb.name), permission: decodePermission(pb.perm) }),
  RoleRevokePermission: (pb) => ({ method: 'role-revoke-permission', role: text(pb.role), key: bytes(pb.key), rangeEnd: bytes(pb.range_end) }),
};

/** The response message of an answer (only the fields the RPC's response has are set). */
function encodeAnswer(answer: AuthAnswer): PbMessage {
  const response: PbMessage = { header: encodeHeader(answer.header) };
  if (answer.token !== undefined) response.token = answer.token;
  if (answer.roles !== undefined) response.roles = [...answer.roles];
  if (answer.users !== undefined) response.users = [...answer.users];
  if (answer.permissions !== undefined) response.perm = answer.permissions.map(encodePermission);
  return response;
}

/** Builds the handlers of etcdserverpb.Auth. */
export function createAuthService(options: AuthServiceOptions): grpc.UntypedServiceImplementation {
  const handlers: grpc.UntypedServiceImplementation = {};
  const backend = options.backend;
  handlers.AuthStatus = unary('AuthStatus', options, async (_request, call) => {
    if (backend === undefined) return { header: encodeHeader(options.header()), enabled: false, authRevision: '0' };
    const { header, enabled, authRevision } = await backend.status(call);
    return { header: encodeHeader(header), enabled, authRevision: String(authRevision) };
  });
  const serve = backend?.call?.bind(backend);
  for (const [method, decode] of Object.entries(DECODERS)) {
    if (serve === undefined) {
      handlers[method] = unimplementedHandler(`Auth.${method}`);
      continue;
    }
    handlers[method] = unary(method, options, async (request, call) => encodeAnswer(await serve(decode(request), call)));
  }
  return handlers;
}

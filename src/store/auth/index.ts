export { AuthStore, AUTH_META_PREFIX, ROOT, type AuthMutation, type AuthOutcome, type AuthRole, type AuthUser, type MetaWrites, type PasswordHash } from './auth-store.js';
export { authorize, ANONYMOUS, type AuthNeed, type Principal } from './authorize.js';
export { UserPermissions, permissionInterval, OPEN_RANGE_END, type KeyPermission, type PermissionType } from './permissions.js';
export { writeChecks, dependsOnLeaseKeys, leaseRevokeChecks, type AccessCheck, type LeaseKeys } from './request-checks.js';

// Goal: the replicated auth state decides as etcd 3.4's auth store does (root rules, duplicate
// and missing names, revisions, revocation by credential revision) and its permission checks
// follow etcd's interval semantics. Method: apply mutations to an AuthStore, reload it from the
// meta writes it produced (as a member restarting or installing a snapshot would), and compare.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AuthStore, authorize, writeChecks, type AuthMutation, type KeyPermission, type PasswordHash } from '../../../../src/store/auth/index.js';
import { UserPermissions } from '../../../../src/store/auth/permissions.js';

const HASH: PasswordHash = { scheme: 'bcrypt', hash: '$2a$10$abcdefghijklmnopqrstuvabcdefghijklmnopqrstuvwxyz01234' };
const bytes = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'latin1'));
const perm = (type: KeyPermission['type'], key: string, rangeEnd = ''): KeyPermission => ({ type, key: bytes(key), rangeEnd: rangeEnd === '\0' ? new Uint8Array([0]) : bytes(rangeEnd) });

/** Applies mutations, keeping the meta records as the backend would; returns the store and records. */
function applyAll(mutations: readonly AuthMutation[], store = new AuthStore(), meta = new Map<string, Uint8Array>()): { store: AuthStore; meta: Map<string, Uint8Array>; codes: (string | 'ok')[] } {
  const codes: (string | 'ok')[] = [];
  for (const mutation of mutations) {
    const outcome = store.apply(mutation);
    codes.push(outcome.ok ? 'ok' : outcome.code);
    if (outcome.ok) for (const [key, value] of outcome.writes) (value === null ? meta.delete(key) : meta.set(key, value));
  }
  return { store, meta, codes };
}

const tokenKey = new Uint8Array(32).fill(7);

test('auth enable needs a root user with the root role (etcd: root user does not exist / does not have root role)', () => {
  const { codes, store } = applyAll([
    { type: 'auth-enable', tokenKey },
    { type: 'auth-user-add', name: 'root', password: HASH, noPassword: false },
    { type: 'auth-enable', tokenKey },
    { type: 'auth-user-grant-role', user: 'root', role: 'root' },
    { type: 'auth-enable', tokenKey },
    { type: 'auth-enable', tokenKey },
  ]);
  assert.deepEqual(codes, ['auth-root-user-missing', 'ok', 'auth-root-role-missing', 'ok', 'ok', 'ok']);
  assert.equal(store.enabled, true);
});

test('revisions: 1 at start, +1 per change, auth enable keeps it, duplicate grants are no-ops', () => {
  const { store, codes } = applyAll([
    { type: 'auth-user-add', name: 'root', password: HASH, noPassword: false },
    { type: 'auth-user-grant-role', user: 'root', role: 'root' },
    { type: 'auth-user-grant-role', user: 'root', role: 'root' },
    { type: 'auth-role-add', name: 'r' },
    { type: 'auth-enable', tokenKey },
  ]);
  assert.deepEqual(codes, ['ok', 'ok', 'ok', 'ok', 'ok']);
  assert.equal(store.revision, 4);
  assert.equal(store.user('root')?.credentialRevision, 2);
});

test('names: empty, duplicate and missing users and roles answer etcd errors', () => {
  const { codes } = applyAll([
    { type: 'auth-user-add', name: '', password: HASH, noPassword: false },
    { type: 'auth-user-add', name: 'a', password: HASH, noPassword: false },
    { type: 'auth-user-add', name: 'a', password: HASH, noPassword: false },
    { type: 'auth-role-add', name: '' },
    { type: 'auth-role-add', name: 'r' },
    { type: 'auth-role-add', name: 'r' },
    { type: 'auth-user-grant-role', user: 'b', role: 'r' },
    { type: 'auth-user-grant-role', user: 'a', role: 'nope' },
    { type: 'auth-user-revoke-role', name: 'a', role: 'r' },
    { type: 'auth-role-revoke-permission', role: 'r', key: bytes('k'), rangeEnd: new Uint8Array(0) },
    { type: 'auth-user-delete', name: 'zz' },
    { type: 'auth-role-delete', role: 'zz' },
    { type: 'auth-role-grant-permission', name: 'zz', permission: perm('read', 'k') },
    { type: 'auth-user-change-password', name: 'zz', password: HASH },
  ]);
  assert.deepEqual(codes, [
    'auth-user-empty', 'ok', 'auth-user-exists', 'auth-role-empty', 'ok', 'auth-role-exists', 'auth-user-not-found', 'auth-role-not-found',
    'role-not-granted', 'permission-not-granted', 'auth-user-not-found', 'auth-role-not-found', 'auth-role-not-found', 'auth-user-not-found',
  ]);
});

test('with auth on, root cannot be deleted nor lose its role, and the root role cannot be deleted (invalid auth management)', () => {
  const { codes } = applyAll([
    { type: 'auth-user-add', name: 'root', password: HASH, noPassword: false },
    { type: 'auth-role-add', name: 'root' },
    { type: 'auth-user-grant-role', user: 'root', role: 'root' },
    { type: 'auth-enable', tokenKey },
    { type: 'auth-user-delete', name: 'root' },
    { type: 'auth-user-revoke-role', name: 'root', role: 'root' },
    { type: 'auth-role-delete', role: 'root' },
    { type: 'auth-disable' },
    { type: 'auth-user-revoke-role', name: 'root', role: 'root' },
  ]);
  assert.deepEqual(codes.slice(4), ['invalid-auth-mgmt', 'invalid-auth-mgmt', 'invalid-auth-mgmt', 'ok', 'ok']);
});

test('a role deleted is revoked from its users; the records reload into the same state', () => {
  const { store, meta } = applyAll([
    { type: 'auth-user-add', name: 'alice', password: HASH, noPassword: false },
    { type: 'auth-role-add', name: 'r' },
    { type: 'auth-role-add', name: 's' },
    { type: 'auth-user-grant-role', user: 'alice', role: 's' },
    { type: 'auth-user-grant-role', user: 'alice', role: 'r' },
    { type: 'auth-role-grant-permission', name: 'r', permission: perm('readwrite', 'b') },
    { type: 'auth-role-grant-permission', name: 'r', permission: perm('read', 'a', 'c') },
    { type: 'auth-role-grant-permission', name: 'r', permission: perm('write', 'b') },
    { type: 'auth-role-delete', role: 's' },
  ]);
  assert.deepEqual(store.user('alice')?.roles, ['r']);
  assert.deepEqual(store.role('r')?.permissions.map((p) => [p.type, Buffer.from(p.key).toString()]), [['read', 'a'], ['write', 'b']]);
  const reloaded = AuthStore.load(meta);
  assert.equal(reloaded.revision, store.revision);
  assert.deepEqual(reloaded.user('alice'), store.user('alice'));
  assert.deepEqual(reloaded.roleNames(), ['r']);
  assert.deepEqual(reloaded.role('r')?.permissions.map((p) => p.type), ['read', 'write']);
});

test('a password change or a delete and re-add makes tokens of the older revision invalid', () => {
  const { store } = applyAll([
    { type: 'auth-user-add', name: 'root', password: HASH, noPassword: false },
    { type: 'auth-user-grant-role', user: 'root', role: 'root' },
    { type: 'auth-user-add', name: 'alice', password: HASH, noPassword: false },
    { type: 'auth-enable', tokenKey },
  ]);
  const issuedAt = store.revision;
  const everything = { kind: 'access', checks: [] } as const;
  assert.equal(authorize(store, { user: 'alice', tokenRevision: issuedAt }, everything), undefined);
  applyAll([{ type: 'auth-user-change-password', name: 'alice', password: HASH }], store);
  assert.equal(authorize(store, { user: 'alice', tokenRevision: issuedAt }, everything), 'invalid-auth-token');
  assert.equal(authorize(store, { user: 'alice', tokenRevision: store.revision }, everything), undefined);
  const later = store.revision;
  applyAll([{ type: 'auth-user-delete', name: 'alice' }, { type: 'auth-user-add', name: 'alice', password: HASH, noPassword: false }], store);
  assert.equal(authorize(store, { user: 'alice', tokenRevision: later }, everything), 'invalid-auth-token');
  assert.equal(authorize(store, { user: '' }, everything), 'auth-user-empty');
  assert.equal(authorize(store, { user: 'ghost' }, everything), 'permission-denied');
  assert.equal(authorize(store, { user: 'ghost' }, { kind: 'admin' }), 'auth-user-not-found');
  assert.equal(authorize(store, { user: 'alice' }, { kind: 'admin' }), 'permission-denied');
  assert.equal(authorize(store, { user: 'root' }, { kind: 'admin' }), undefined);
  assert.equal(authorize(store, undefined, { kind: 'admin' }), undefined, 'the member\'s own requests are never refused');
});

test('permissions: keys, prefixes, ranges, from-key, and coverage by adjacent grants (etcd IntervalTree.Contains)', () => {
  const p = new UserPermissions([perm('read', 'foo'), perm('readwrite', 'app/', 'app0'), perm('read', 'b', 'd'), perm('read', 'd', 'f'), perm('write', 'z', '\0')]);
  const can = (access: 'read' | 'write', key: string, rangeEnd = ''): boolean => p.permits(access, bytes(key), rangeEnd === '\0' ? new Uint8Array([0]) : bytes(rangeEnd));
  assert.equal(can('read', 'foo'), true);
  assert.equal(can('write', 'foo'), false);
  assert.equal(can('read', 'foo', 'fop'), false, 'a prefix is more than the key');
  assert.equal(can('read', 'foo', 'foo\0'), true, 'the single key as a range');
  assert.equal(can('write', 'app/x'), true);
  assert.equal(can('read', 'app/', 'app0'), true);
  assert.equal(can('read', 'app/a', 'app/b'), true);
  assert.equal(can('read', 'app', 'app0'), false);
  assert.equal(can('read', 'b', 'f'), true, '[b,d) and [d,f) cover [b,f)');
  assert.equal(can('read', 'b', 'g'), false);
  assert.equal(can('write', 'zzz'), true);
  assert.equal(can('write', 'z', '\0'), true);
  assert.equal(can('write', 'y', '\0'), false);
  assert.equal(can('read', 'z'), false);
});

test('request checks: txn compares and both branches, nested txns, prev_kv reads, lease keys, compaction is admin', () => {
  const put = (key: string, lease = 0n, prevKv = false) => ({ type: 'put' as const, request: { key: bytes(key), value: bytes('v'), lease, prevKv, ignoreValue: false, ignoreLease: false } });
  const range = (key: string) => ({ type: 'range' as const, request: { key: bytes(key), rangeEnd: new Uint8Array(0), limit: 0, revision: 0, sortOrder: 'none' as const, sortTarget: 'key' as const, serializable: false, keysOnly: false, countOnly: false, minModRevision: 0, maxModRevision: 0, minCreateRevision: 0, maxCreateRevision: 0 } });
  const checks = writeChecks({
    type: 'txn',
    request: {
      compare: [{ result: 'equal', target: 'version', key: bytes('c'), rangeEnd: new Uint8Array(0), value: 0n }],
      success: [put('s', 0n, true)],
      failure: [range('f'), { type: 'txn', request: { compare: [], success: [put('n', 5n)], failure: [] } }],
    },
  }, (lease) => (lease === 5n ? [bytes('held')] : []));
  assert.ok(checks !== 'admin');
  assert.deepEqual(checks.map((c) => `${c.access}:${Buffer.from(c.key).toString()}`), ['read:c', 'write:s', 'read:s', 'read:f', 'write:n', 'write:held']);
  assert.equal(writeChecks({ type: 'compact', request: { revision: 5, physical: false } }, () => []), 'admin');
});

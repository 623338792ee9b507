// Goal: the assertion helper throws on false and passes on true; unreachable always throws.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assert as check, AssertionError, unreachable } from '../../src/util/assert.js';
import { KvdError, ERRORS } from '../../src/util/errors.js';

test('assert throws AssertionError naming the reason', () => {
  assert.throws(() => check(false, 'the reason'), (e: unknown) => e instanceof AssertionError && /the reason/.test(e.message));
  check(true, 'never thrown');
});

test('unreachable always throws', () => {
  assert.throws(() => unreachable('x' as never), AssertionError);
});

test('KvdError carries the catalog status and exact etcd text', () => {
  const error = new KvdError('compacted');
  assert.equal(error.message, 'etcdserver: mvcc: required revision has been compacted');
  assert.equal(error.status, 11);
  assert.equal(ERRORS['no-leader'].message, 'etcdserver: no leader');
});

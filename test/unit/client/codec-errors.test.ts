// Goal: the client's pure pieces are exact: 64-bit conversions never go through lossy numbers,
// prefix range ends follow etcd, request builders never send an empty range_end, errors map by
// etcd's message text, and backoff stays below its maximum, grows with failures and is spread by
// jitter. Method: table-driven checks, and properties over arbitrary attempts and draws
// (fast-check) that never restate the backoff formula.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromWire, prefixEnd, toBigInt, hexId } from '../../../src/client/codec.js';
import { toKvError, CompactedError, FutureRevisionError, LeaseNotFoundError, NoLeaderError, TimeoutError, UnavailableError, KvError, isRetryable } from '../../../src/client/errors.js';
import { compare, deleteRequest, op, rangeRequest } from '../../../src/client/kv.js';
import fc from 'fast-check';
import { BACKOFF_MAX_MS, backoffMs, endpointSecure, endpointTarget } from '../../../src/client/connection.js';

test('int64 conversions are exact and refuse lossy input', () => {
  assert.equal(toBigInt('18446744073709551615'), 18446744073709551615n);
  assert.equal(toBigInt(42), 42n);
  assert.equal(toBigInt(7n), 7n);
  assert.throws(() => toBigInt(2 ** 60));
  assert.throws(() => toBigInt(1.5));
  assert.throws(() => toBigInt('12abc'));
  assert.equal(fromWire('9223372036854775807'), 9223372036854775807n);
  assert.equal(fromWire(undefined), 0n);
  assert.equal(hexId(-1n), 'ffffffffffffffff');
});

test('prefixEnd follows etcd GetPrefixRangeEnd', () => {
  assert.deepEqual(prefixEnd(Buffer.from('aa')), Buffer.from('ab'));
  assert.deepEqual(prefixEnd(Buffer.from([0x61, 0xff])), Buffer.from('b'));
  assert.deepEqual(prefixEnd(Buffer.from([0xff, 0xff])), Buffer.from([0]));
  assert.deepEqual(prefixEnd(Buffer.alloc(0)), Buffer.from([0]));
});

test('requests never carry an empty range_end; empty key + prefix means all keys', () => {
  assert.equal('range_end' in rangeRequest('k'), false);
  assert.equal('range_end' in deleteRequest('k'), false);
  assert.equal('range_end' in compare.value('k', '=', 'v').wire, false);
  assert.deepEqual(rangeRequest('ab', { prefix: true }).range_end, Buffer.from('ac'));
  assert.deepEqual(rangeRequest('', { prefix: true }).key, Buffer.from([0]));
  assert.deepEqual(rangeRequest('', { prefix: true }).range_end, Buffer.from([0]));
  assert.deepEqual(rangeRequest('a', { fromKey: true }).range_end, Buffer.from([0]));
  assert.equal(rangeRequest('a', { revision: 18446744073709551615n }).revision, '18446744073709551615');
  assert.deepEqual(Object.keys(op.put('k', 'v').wire), ['request_put']);
  assert.throws(() => compare.value('k', '=~' as '=', 'v'));
});

test('errors map by etcd message text first, then by gRPC status', () => {
  assert.ok(toKvError({ code: 11, details: 'etcdserver: mvcc: required revision has been compacted' }) instanceof CompactedError);
  assert.ok(toKvError({ code: 11, details: 'etcdserver: mvcc: required revision is a future revision' }) instanceof FutureRevisionError);
  assert.ok(toKvError({ code: 5, details: 'etcdserver: requested lease not found' }) instanceof LeaseNotFoundError);
  assert.ok(toKvError({ code: 14, details: 'etcdserver: no leader' }) instanceof NoLeaderError);
  assert.ok(toKvError({ code: 14, details: 'etcdserver: request timed out' }) instanceof TimeoutError);
  assert.ok(toKvError({ code: 4, details: 'Deadline exceeded' }) instanceof TimeoutError);
  assert.equal(toKvError({ code: 4, details: 'Deadline exceeded' }).message, 'context deadline exceeded');
  const unavailable = toKvError({ code: 14, details: 'No connection established' });
  assert.ok(unavailable instanceof UnavailableError);
  assert.equal(isRetryable(unavailable), true);
  assert.equal(isRetryable(toKvError({ code: 11, details: 'etcdserver: mvcc: required revision has been compacted' })), false);
  const other = toKvError(new Error('boom'));
  assert.ok(other instanceof KvError);
  assert.equal(other.message, 'boom');
});

test('endpoints: http:// is plain, https:// is TLS, no scheme is TLS only when TLS settings are given', () => {
  assert.equal(endpointTarget('http://127.0.0.1:2379/'), '127.0.0.1:2379');
  assert.equal(endpointTarget('127.0.0.1:2379'), '127.0.0.1:2379');
  assert.equal(endpointTarget('https://x:1'), 'x:1');
  assert.equal(endpointSecure('https://x:1', undefined), true);
  assert.equal(endpointSecure('http://x:1', { ca: 'pem' }), false);
  assert.equal(endpointSecure('x:1', { ca: 'pem' }), true);
  assert.equal(endpointSecure('x:1', undefined), false);
});

/** Attempt counts: small ones, and failure streaks far longer than any caller allows. */
const attempts = fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 65, max: 1_000_000 }));
/** A draw of the jitter source, in [0, 1). */
const draws = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });

test('a backoff delay is a whole number of ms below the stated maximum, whatever the attempt or draw', () => {
  fc.assert(
    fc.property(attempts, draws, (attempt, draw) => {
      const delay = backoffMs(attempt, () => draw);
      return Number.isInteger(delay) && delay >= 0 && delay < BACKOFF_MAX_MS;
    }),
  );
});

test('backoff never shrinks as failures go on, for any fixed draw and so in expectation', () => {
  fc.assert(fc.property(attempts, draws, (attempt, draw) => backoffMs(attempt + 1, () => draw) >= backoffMs(attempt, () => draw)));
  const grid = Array.from({ length: 1000 }, (_, i) => i / 1000);
  const mean = (attempt: number): number => grid.reduce((sum, draw) => sum + backoffMs(attempt, () => draw), 0) / grid.length;
  assert.ok(mean(5) >= 10 * mean(0), `mean delay after 5 failures ${mean(5)} ms vs ${mean(0)} ms after one`);
});

test('clients whose draws differ back off for different times, at every attempt', () => {
  fc.assert(
    fc.property(attempts, draws, draws, (attempt, first, second) => {
      fc.pre(Math.abs(first - second) >= 0.1);
      return backoffMs(attempt, () => first) !== backoffMs(attempt, () => second);
    }),
  );
});

// Goal: proposal waiters are bounded, resolve on trigger, and time out when the member's tick
// finds their deadline passed (no timer per request).
// Method: drive Waiters directly with explicit times.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Waiters } from '../../../src/server/waiters.js';
import { KvdError } from '../../../src/util/errors.js';

test('waiters resolve on trigger, expire at their deadline, and refuse beyond the bound', async () => {
  const waiters = new Waiters<string>({ maxPending: 2 });
  const a = waiters.wait(1n, { deadlineMs: 1000 });
  const b = waiters.wait(2n, { deadlineMs: 2000 });
  await assert.rejects(waiters.wait(3n, { deadlineMs: 3000 }), (e: unknown) => e instanceof KvdError && e.code === 'too-many-requests');
  waiters.trigger(1n, 'applied');
  assert.equal(await a, 'applied');
  waiters.expire(1999);
  assert.equal(waiters.size, 1, 'not yet expired');
  waiters.expire(2000);
  await assert.rejects(b, (e: unknown) => e instanceof KvdError && e.code === 'timeout');
  assert.equal(waiters.size, 0);
});

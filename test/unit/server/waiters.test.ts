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

test('a settled hook runs once, before the promise settles, however the waiter ends; at once when none waits', async () => {
  const waiters = new Waiters<string>({ maxPending: 10 });
  const order: string[] = [];
  const watch = (id: bigint, promise: Promise<string>): Promise<void> => {
    waiters.onSettled(id, (settledMs) => {
      assert.ok(settledMs > 0);
      order.push(`hook ${id}`);
    });
    return promise.then(() => { order.push(`resolved ${id}`); }, () => { order.push(`rejected ${id}`); });
  };
  const done = [
    watch(1n, waiters.wait(1n, { deadlineMs: 1000 })),
    watch(2n, waiters.wait(2n, { deadlineMs: 1000 })),
    watch(3n, waiters.wait(3n, { deadlineMs: 50 })),
    watch(4n, waiters.wait(4n, { deadlineMs: 1000 })),
  ];
  waiters.trigger(1n, 'applied');
  assert.deepEqual(order, ['hook 1'], 'synchronously, before any reaction of the promise');
  waiters.fail(2n, new KvdError('canceled'));
  waiters.expire(100);
  waiters.failAll(new KvdError('stopped'));
  waiters.trigger(1n, 'again');
  await Promise.all(done);
  assert.deepEqual(order, ['hook 1', 'hook 2', 'hook 3', 'hook 4', 'resolved 1', 'rejected 2', 'rejected 3', 'rejected 4']);
  let ran = 0;
  waiters.onSettled(9n, () => { ran += 1; });
  assert.equal(ran, 1, 'no waiter: at once');
});

test('a request id already waited for is refused at once (fail-stop), and the first waiter stays', async () => {
  const waiters = new Waiters<string>({ maxPending: 10 });
  const first = waiters.wait(7n, { deadlineMs: 1000 });
  assert.throws(() => waiters.wait(7n, { deadlineMs: 1000 }), /already/);
  assert.equal(waiters.size, 1);
  waiters.trigger(7n, 'applied');
  assert.equal(await first, 'applied');
});

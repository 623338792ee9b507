// Goal: TurnBatch releases every waiter of a turn together, at the end of that turn (after the
// turn's other work, before the next turn's), and never holds more than its bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TurnBatch } from '../../../src/util/turn-batch.js';

test('waiters of one turn are released together after the turn; later ones in the next batch', async () => {
  const batch = new TurnBatch({ maxQueued: 100 });
  const order: string[] = [];
  const first = [1, 2, 3].map((n) => batch.wait()!.then(() => { order.push(`read ${n}`); }));
  order.push('rest of the turn');
  await Promise.resolve();
  assert.deepEqual(order, ['rest of the turn'], 'nothing is released within the turn');
  assert.equal(batch.queued, 3);
  await Promise.all(first);
  assert.deepEqual(order, ['rest of the turn', 'read 1', 'read 2', 'read 3'], 'released in order, back to back');
  assert.equal(batch.queued, 0);
  const second = batch.wait()!.then(() => { order.push('next turn'); });
  assert.equal(batch.queued, 1);
  await second;
  assert.equal(order.at(-1), 'next turn');
});

test('a full batch makes the caller go on at once, and takes waiters again once released', async () => {
  const batch = new TurnBatch({ maxQueued: 2 });
  const held = [batch.wait(), batch.wait()];
  assert.ok(held.every((promise) => promise !== undefined));
  assert.equal(batch.wait(), undefined, 'beyond the bound: no waiting');
  assert.equal(batch.queued, 2);
  await Promise.all(held);
  assert.ok(batch.wait() !== undefined, 'room again after the release');
  assert.throws(() => new TurnBatch({ maxQueued: 0 }), /maxQueued/);
});

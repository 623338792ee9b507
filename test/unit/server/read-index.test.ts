// Goal: the ReadIndex batcher shares one round among reads that arrived before it, answers them
// only once the returned index is applied, and makes contexts unique across members (the leader
// refuses a duplicate context, which once turned a follower's round into a spurious "no leader").
// Method: drive ReadIndexBatcher with a fake host recording issued contexts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReadIndexBatcher } from '../../../src/server/read-index.js';

function host(): { issued: Buffer[]; applied: number; batcher?: ReadIndexBatcher } & { issue(context: Uint8Array): { ok: true }; appliedIndex(): number; nowMs(): number } {
  const state = {
    issued: [] as Buffer[],
    applied: 0,
    issue(context: Uint8Array) { state.issued.push(Buffer.from(context)); return { ok: true as const }; },
    appliedIndex() { return state.applied; },
    nowMs() { return 0; },
  };
  return state;
}

test('contexts of different members never collide', () => {
  const a = host();
  const b = host();
  const first = new ReadIndexBatcher(a, { memberId: 1n, maxPending: 10, retryMs: 1000 });
  const second = new ReadIndexBatcher(b, { memberId: 2n, maxPending: 10, retryMs: 1000 });
  void first.wait({ deadlineMs: 1e12 });
  void second.wait({ deadlineMs: 1e12 });
  assert.equal(a.issued.length, 1);
  assert.equal(b.issued.length, 1);
  assert.notDeepEqual(a.issued[0], b.issued[0]);
});

test('reads arriving during a round share the next round, and resolve only once applied', async () => {
  const h = host();
  const batcher = new ReadIndexBatcher(h, { memberId: 7n, maxPending: 10, retryMs: 1000 });
  const done: string[] = [];
  const r1 = batcher.wait({ deadlineMs: 1e12 }).then(() => done.push('r1'));
  const r2 = batcher.wait({ deadlineMs: 1e12 }).then(() => done.push('r2'));
  const r3 = batcher.wait({ deadlineMs: 1e12 }).then(() => done.push('r3'));
  assert.equal(h.issued.length, 1, 'one round in flight');
  batcher.onReadState({ index: 5, context: h.issued[0] });
  assert.equal(h.issued.length, 2, 'the reads that arrived later get their own round');
  await Promise.resolve();
  assert.deepEqual(done, [], 'not before index 5 is applied');
  h.applied = 5;
  batcher.onApplied(5);
  await r1;
  assert.deepEqual(done, ['r1']);
  batcher.onReadState({ index: 6, context: h.issued[1] });
  h.applied = 6;
  batcher.onApplied(6);
  await Promise.all([r2, r3]);
  assert.deepEqual(done.sort(), ['r1', 'r2', 'r3']);
});

/**
 * Goal: the chaos run's progress checker fails a run that completed nothing or far too little
 * for its length, and passes one that cleared every floor.
 * Method: checkProgress on hand-made counts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PROGRESS_FLOORS, checkProgress } from '../../fault/checker/progress.js';

const counts = (registers: number, set: number) => [
  { name: 'registers', completed: registers, floorPerSecond: PROGRESS_FLOORS.registers },
  { name: 'set', completed: set, floorPerSecond: PROGRESS_FLOORS.set },
];

test('progress: a run that completed nothing fails, naming the workload below its floor', () => {
  const result = checkProgress(counts(0, 0), { workloadMs: 70_000 });
  assert.equal(result.valid, false);
  assert.deepEqual(result.workloads.map((w) => w.cleared), [false, false]);
  assert.match(result.summary, /registers 0 completed .* BELOW FLOOR/);
});

test('progress: one stalled workload fails the run even when the other did well', () => {
  const required = Math.ceil(PROGRESS_FLOORS.set * 70);
  assert.equal(checkProgress(counts(5000, required - 1), { workloadMs: 70_000 }).valid, false);
  assert.equal(checkProgress(counts(5000, required), { workloadMs: 70_000 }).valid, true);
});

test('progress: the floor scales with the run length; a run of no length proves nothing', () => {
  const tenSeconds = Math.ceil(PROGRESS_FLOORS.registers * 10);
  assert.equal(checkProgress(counts(tenSeconds, 100), { workloadMs: 10_000 }).valid, true);
  assert.equal(checkProgress(counts(tenSeconds, 100), { workloadMs: 100_000 }).valid, false, 'the same count over ten times the time is too little');
  assert.equal(checkProgress(counts(10, 10), { workloadMs: 0 }).valid, false);
  assert.equal(checkProgress([], { workloadMs: 70_000 }).valid, false, 'no workload at all is not progress');
});

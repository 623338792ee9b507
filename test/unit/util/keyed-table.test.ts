// Goal: KeyedTable answers exactly as a Map would through any sequence of adds and deletes
// (including runs that wrap around the end of its array and deletions in the middle of a run),
// and a steady load of one add and one delete per step never replaces its array.
// Method: random operations against a Map model with a deliberately poor hash (many collisions),
// checking every key after each step; then a churn loop watched through the table's capacity, and
// the hash evaluations a sliding window of consecutive keys costs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeyedTable } from '../../../src/util/keyed-table.js';

interface Item { readonly key: number; readonly value: string }

function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

for (const [name, hash] of [['a spreading hash', (k: number) => k], ['a hash with many collisions', (k: number) => k % 7], ['one hash for every key', () => 5]] as const) {
  test(`KeyedTable matches a Map through random adds and deletes (${name})`, () => {
    const seed = 1207;
    const next = random(seed);
    const table = new KeyedTable<number, Item>((item) => item.key, hash);
    const model = new Map<number, Item>();
    for (let step = 0; step < 4000; step++) {
      const key = Math.floor(next() * 200);
      if (model.has(key) || next() < 0.3) {
        const expected = model.get(key);
        assert.equal(table.delete(key), expected, `seed ${seed} step ${step}: delete ${key}`);
        model.delete(key);
      } else {
        const item = { key, value: `v${step}` };
        table.add(item);
        model.set(key, item);
      }
      assert.equal(table.size, model.size, `seed ${seed} step ${step}: size`);
      if (step % 50 === 0 || step > 3900) {
        for (let probe = 0; probe < 200; probe++) assert.equal(table.get(probe), model.get(probe), `seed ${seed} step ${step}: get ${probe}`);
        assert.deepEqual(table.values().map((item) => item.key).sort((a, b) => a - b), [...model.keys()].sort((a, b) => a - b));
      }
    }
  });
}

test('KeyedTable refuses a key it holds already', () => {
  const table = new KeyedTable<number, Item>((item) => item.key, (key) => key);
  table.add({ key: 3, value: 'a' });
  assert.throws(() => table.add({ key: 3, value: 'b' }), /in the table already/);
  assert.equal(table.get(3)?.value, 'a');
});

test('a steady load (one add and one delete per step) never replaces the table\'s array', () => {
  const table = new KeyedTable<number, Item>((item) => item.key, (key) => key);
  for (let key = 0; key < 257; key++) table.add({ key, value: '' });
  table.delete(0); // the steady state: 256 entries, 257 for a moment in each step
  const capacity = table.capacity;
  for (let key = 257; key < 100_000; key++) {
    table.add({ key, value: '' });
    assert.ok(table.delete(key - 256) !== undefined);
  }
  assert.equal(table.capacity, capacity, 'the array is the same size: the table never grew or was rebuilt');
  assert.equal(table.size, 256);
});

test('a window of consecutive keys (request ids) costs a few hash evaluations per add and delete, not a walk of the window', () => {
  let evaluations = 0;
  const table = new KeyedTable<number, Item>((item) => item.key, (key) => {
    evaluations += 1;
    return key;
  });
  const window = 256;
  for (let key = 0; key < window; key++) table.add({ key, value: '' });
  evaluations = 0;
  const steps = 20_000;
  for (let key = window; key < window + steps; key++) {
    table.add({ key, value: '' });
    assert.ok(table.delete(key - window) !== undefined);
  }
  // Keys taken as their own slots fill one run of consecutive slots, and each delete's backward
  // shift walked all of it (about 256 evaluations per step, before the table spread its hashes).
  assert.ok(evaluations / steps < 8, `${(evaluations / steps).toFixed(1)} hash evaluations per add and delete`);
});

test('an empty table answers a lookup without hashing the key', () => {
  let evaluations = 0;
  const table = new KeyedTable<number, Item>((item) => item.key, (key) => {
    evaluations += 1;
    return key;
  });
  assert.equal(table.get(7), undefined);
  assert.equal(table.delete(7), undefined);
  assert.equal(evaluations, 0, 'a follower looks every applied entry up among its (no) waiters');
  table.add({ key: 7, value: 'a' });
  assert.equal(table.delete(7)?.value, 'a');
  assert.equal(table.get(7), undefined);
});

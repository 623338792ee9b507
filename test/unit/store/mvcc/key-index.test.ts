// Goal: the key index stays a correct sorted map through inserts, replacements and deletions that
// split and drop chunks, and key histories answer reads and compactions as etcd's keyIndex does.
// Method: random operations against a Map + sorted array reference (fast-check), and the
// generation examples from etcd's key_index.go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { KeyIndex, CHUNK_SIZE_MAX } from '../../../../src/store/mvcc/key-index.js';
import {
  allRevisions, compactHistory, latestState, recordPut, recordTombstone, stateAt, survivesCompaction, type KeyHistory,
} from '../../../../src/store/mvcc/history.js';

test('key index matches a sorted map under random inserts and deletes', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 3000 })), { maxLength: 4000 }), (ops) => {
    const index = new KeyIndex();
    const reference = new Map<string, number>();
    for (const [insert, n] of ops) {
      const key = String.fromCharCode(n >> 8, n & 0xff);
      if (insert) {
        index.set(key, n);
        reference.set(key, n);
      } else {
        assert.equal(index.delete(key), reference.delete(key));
      }
    }
    index.assertInvariants();
    const sorted = [...reference.keys()].sort();
    assert.equal(index.size, sorted.length);
    const seen: string[] = [];
    index.forEachInRange('', undefined, (key) => (seen.push(key), true));
    assert.deepEqual(seen, sorted);
    const start = String.fromCharCode(3, 0);
    const end = String.fromCharCode(7, 128);
    const inRange: string[] = [];
    index.forEachInRange(start, end, (key) => (inRange.push(key), true));
    assert.deepEqual(inRange, sorted.filter((key) => key >= start && key < end));
    let paged: string[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = index.entriesAfter(cursor, 100);
      if (page.length === 0) break;
      paged = paged.concat(page.map(([key]) => key));
      cursor = page[page.length - 1][0];
    }
    assert.deepEqual(paged, sorted);
    for (const key of sorted.slice(0, 50)) assert.equal(index.get(key), reference.get(key));
  }), { numRuns: 20 });
  assert.ok(CHUNK_SIZE_MAX < 4000, 'the property exercises chunk splits');
});

function build(ops: Array<['put' | 'tomb', number]>): KeyHistory {
  let history: KeyHistory | undefined;
  for (const [kind, revision] of ops) {
    if (kind === 'put') history = recordPut(history, revision).history;
    else {
      assert.ok(history !== undefined);
      history = recordTombstone(history, revision);
    }
  }
  assert.ok(history !== undefined);
  return history;
}

test('histories: reads at revisions, versions counting the tombstone, etcd compaction example', () => {
  // etcd key_index.go: put(1) put(2) tomb(3) put(4) tomb(5) → generations {1,2,3t} {4,5t} {}.
  const history = build([['put', 1], ['put', 2], ['tomb', 3], ['put', 4], ['tomb', 5]]);
  assert.deepEqual(stateAt(history, 1), { mod: 1, created: 1, version: 1 });
  assert.deepEqual(stateAt(history, 2), { mod: 2, created: 1, version: 2 });
  assert.equal(stateAt(history, 3), undefined);
  assert.deepEqual(stateAt(history, 4), { mod: 4, created: 4, version: 1 });
  assert.equal(stateAt(history, 9), undefined);
  assert.equal(latestState(history), undefined);
  const compactAt = (at: number): { revisions: number[] | undefined; removed: number[] } => {
    const removed: number[] = [];
    const after = compactHistory(Array.isArray(history) ? history.slice() : history, at, removed);
    return { revisions: after === undefined ? undefined : allRevisions(after), removed: removed.sort((a, b) => a - b) };
  };
  // Examples from etcd's key_index.go comment.
  assert.deepEqual(compactAt(2), { revisions: [2, 3, 4, 5], removed: [1] });
  assert.deepEqual(compactAt(4), { revisions: [4, 5], removed: [1, 2, 3] });
  assert.deepEqual(compactAt(5), { revisions: undefined, removed: [1, 2, 3, 4, 5] });
  assert.deepEqual(compactAt(6), { revisions: undefined, removed: [1, 2, 3, 4, 5] });
  assert.deepEqual(compactAt(3), { revisions: [4, 5], removed: [1, 2, 3] });
  const live = build([['put', 2], ['put', 5], ['put', 9]]);
  const removed: number[] = [];
  const compacted = compactHistory((live as number[]).slice(), 6, removed);
  assert.ok(compacted !== undefined);
  assert.deepEqual(allRevisions(compacted), [5, 9]);
  assert.deepEqual(removed, [2]);
  assert.deepEqual(stateAt(compacted, 6), { mod: 5, created: 2, version: 2 });
  assert.deepEqual(latestState(compacted), { mod: 9, created: 2, version: 3 });
  assert.equal(survivesCompaction(live, 5, 6), true);
  assert.equal(survivesCompaction(live, 2, 6), false);
  assert.equal(survivesCompaction(compacted, 5, 6), true, 'same answer after compaction');
  assert.equal(typeof build([['put', 7]]), 'number', 'a key put once costs no heap object');
});

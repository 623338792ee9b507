// Goal: the key index stays a correct sorted map through inserts, replacements and deletions that
// split and drop chunks, and key histories answer reads and compactions as etcd's keyIndex does.
// Method: random operations against a Map + sorted array reference (fast-check), and the
// generation examples from etcd's key_index.go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { KeyIndex, CHUNK_SIZE_MAX } from '../../../../src/store/mvcc/key-index.js';
import {
  allRevisions, compactHistory, latestState, recordPut, recordTombstone, replayRecord, stateAt, survivesCompaction, type KeyHistory,
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

test('a set right after the get of its key uses where the get looked, and only while no insert or delete moved keys', () => {
  // The write path looks a key up, then sets it: set() reuses get()'s position when nothing moved.
  fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 0, max: 3000 })), { maxLength: 4000 }), (ops) => {
    const index = new KeyIndex();
    const reference = new Map<string, number>();
    const keyOf = (n: number): string => String.fromCharCode(n >> 8, n & 0xff);
    for (const [kind, a, b] of ops) {
      const key = keyOf(a);
      const other = keyOf(b);
      if (kind === 0) {
        assert.equal(index.get(key), reference.get(key));
        index.set(key, a + 1);
        reference.set(key, a + 1);
      } else if (kind === 1) {
        assert.equal(index.get(other), reference.get(other));
        index.set(key, a + 2); // not the key just looked up
        reference.set(key, a + 2);
      } else if (kind === 2) {
        assert.equal(index.get(key), reference.get(key));
        assert.equal(index.delete(other), reference.delete(other)); // may move keys in between
        index.set(key, a + 3);
        reference.set(key, a + 3);
      } else {
        assert.equal(index.get(key), reference.get(key));
        index.set(other, b + 4); // an insert elsewhere, then the looked-up key
        reference.set(other, b + 4);
        index.set(key, a + 5);
        reference.set(key, a + 5);
      }
    }
    index.assertInvariants();
    const seen: Array<[string, number]> = [];
    index.forEachInRange('', undefined, (key, value) => (seen.push([key, value as number]), true));
    assert.deepEqual(seen, [...reference.entries()].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
  }), { numRuns: 20 });
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

test('histories agree with a plain list of versions: reads, compaction, survival, rebuild by replay', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 3 })), { minLength: 1, maxLength: 40 }), fc.integer({ min: 0, max: 130 }), (steps, compactAt) => {
    // Reference: the key's value per revision (undefined = absent), with etcd's create/version.
    const versions: Array<{ revision: number; state: { created: number; version: number } | undefined }> = [];
    let history: KeyHistory | undefined;
    let revision = 0;
    let live: { created: number; version: number } | undefined;
    for (const [wantPut, gap] of steps) {
      revision += gap;
      if (wantPut || live === undefined) {
        const written = recordPut(history, revision);
        history = written.history;
        live = live === undefined ? { created: revision, version: 1 } : { created: live.created, version: live.version + 1 };
        assert.deepEqual(written.state, { mod: revision, ...live });
      } else {
        history = recordTombstone(history as KeyHistory, revision);
        live = undefined;
      }
      versions.push({ revision, state: live });
    }
    assert.ok(history !== undefined);
    const expectedAt = (at: number): { mod: number; created: number; version: number } | undefined => {
      let found: { mod: number; created: number; version: number } | undefined;
      for (const item of versions) if (item.revision <= at) found = item.state === undefined ? undefined : { mod: item.revision, ...item.state };
      return found;
    };
    for (let at = 0; at <= revision + 1; at += 1) assert.deepEqual(stateAt(history, at), expectedAt(at), `at ${at}`);
    assert.deepEqual(latestState(history), expectedAt(revision));
    // Rebuild by replaying records (what open does) gives the same history.
    let replayed: KeyHistory | undefined;
    for (const item of versions) {
      replayed = replayRecord(replayed, item.state === undefined ? { revision: item.revision, kind: 'tombstone' } : { revision: item.revision, kind: 'put', created: item.state.created, version: item.state.version });
    }
    assert.deepEqual(replayed, history);
    // Compaction: reads at or above the compaction revision are unchanged; removed + kept = all.
    const removed: number[] = [];
    const compacted = compactHistory(Array.isArray(history) ? history.slice() : history, compactAt, removed);
    const kept = compacted === undefined ? [] : allRevisions(compacted);
    assert.deepEqual([...kept, ...removed].sort((a, b) => a - b), allRevisions(history));
    for (const rev of removed) assert.ok(rev <= compactAt, 'only revisions at or below the compaction go');
    if (compacted !== undefined) for (let at = compactAt; at <= revision + 1; at += 1) assert.deepEqual(stateAt(compacted, at), expectedAt(at), `compacted, at ${at}`);
    else for (let at = compactAt; at <= revision + 1; at += 1) assert.equal(expectedAt(at), undefined);
    for (const rev of allRevisions(history).filter((rev) => rev <= compactAt)) {
      assert.equal(survivesCompaction(history, rev, compactAt), kept.includes(rev), `survives ${rev}`);
      if (compacted !== undefined) assert.equal(survivesCompaction(compacted, rev, compactAt), kept.includes(rev), `survives ${rev} after`);
    }
    // Rebuild from the records left after compaction gives the compacted history back.
    let rebuilt: KeyHistory | undefined;
    for (const item of versions.filter((v) => kept.includes(v.revision))) {
      rebuilt = replayRecord(rebuilt, item.state === undefined ? { revision: item.revision, kind: 'tombstone' } : { revision: item.revision, kind: 'put', created: item.state.created, version: item.state.version });
    }
    assert.deepEqual(rebuilt, compacted);
  }), { numRuns: 300 });
});

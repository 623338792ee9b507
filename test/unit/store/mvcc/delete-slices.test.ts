// Goal: a large DeleteRange is applied in slices, with the event loop turning in between (a
// member's heartbeats and reads go on: a million-key delete used to hold the leader's loop for
// 3 s and cost a leader change), and nobody sees it half done: until the whole batch is readable,
// reads see the state before the batch (not the entries before the delete in the same batch, not
// some keys deleted), and afterwards exactly the batch's outcome, prevKvs included.
// Method: 1,000 keys, then one batch of a put, a DeleteRange of all 1,000 (slices of 64 keys) and
// a put; a callback rescheduled on every turn of the event loop reads the whole store while the
// batch is applied. Before slicing the batch ran in one pass: no turn happened during it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { MvccStore } from '../../../../src/store/mvcc/index.js';
import { ALL_FROM, cleanup, del, plain, put, rangeRequest, tempDir, text } from './helpers.js';

const KEYS = 1000;
const key = (i: number): string => `k/${String(i).padStart(4, '0')}`;

test('a large DeleteRange yields to the event loop between slices and is seen only whole', async () => {
  const dir = await tempDir();
  const store = await MvccStore.open({ path: join(dir, 'db'), deleteSliceKeys: 64 });
  try {
    for (let batch = 0; batch < KEYS / 100; batch += 1) {
      await store.applyBatch(Array.from({ length: 100 }, (_, i) => ({ index: batch * 100 + i + 1, request: put(key(batch * 100 + i), `v${batch * 100 + i}`) })));
    }
    const before = store.currentRevision;
    const beforeKvs = (await store.range(rangeRequest(ALL_FROM, ALL_FROM))).kvs.map(plain);
    assert.equal(beforeKvs.length, KEYS);

    const seen: Array<Promise<{ revision: number; keys: number; hasA: boolean }>> = [];
    let applying = true;
    const read = (): void => {
      if (!applying) return;
      seen.push(store.range(rangeRequest(ALL_FROM, ALL_FROM)).then((response) => ({
        revision: response.revision,
        keys: response.kvs.length,
        hasA: response.kvs.some((kv) => text(kv.key) === 'a'),
      })));
      setImmediate(read);
    };
    setImmediate(read);
    const outcomes = await store.applyBatch([
      { index: KEYS + 1, request: put('a', 'before the delete') },
      { index: KEYS + 2, request: del('k/', 'k0', { prevKv: true }) },
      { index: KEYS + 3, request: put('z', 'after the delete') },
    ], { onVisible: () => { applying = false; } });
    applying = false;
    const reads = await Promise.all(seen);

    assert.ok(reads.length >= KEYS / 64 - 1, `the event loop turned during the delete (${reads.length} reads ran)`);
    for (const observed of reads) {
      assert.deepEqual(observed, { revision: before, keys: KEYS, hasA: false }, 'a read during the batch sees the state before it');
    }
    const [putA, deleted, putZ] = outcomes;
    assert.ok(putA.ok && deleted.ok && putZ.ok);
    assert.equal(deleted.revision, before + 2);
    assert.ok(deleted.result.type === 'delete-range');
    assert.equal(deleted.result.response.deleted, KEYS);
    assert.deepEqual(deleted.result.response.prevKvs.map(plain), beforeKvs);
    assert.equal(deleted.events.length, KEYS);
    const after = await store.range(rangeRequest(ALL_FROM, ALL_FROM));
    assert.equal(after.revision, before + 3);
    assert.deepEqual(after.kvs.map((kv) => text(kv.key)), ['a', 'z']);
    const atBefore = await store.range(rangeRequest(ALL_FROM, ALL_FROM, { revision: before }));
    assert.deepEqual(atBefore.kvs.map(plain), beforeKvs, 'the history before the delete is intact');
    store.assertInvariants();
  } finally {
    await store.close();
    await cleanup(dir);
  }
});

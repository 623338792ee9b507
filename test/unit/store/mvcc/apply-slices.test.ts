// Goal: a large write is applied in slices, with the event loop turning in between (a member's
// heartbeats and reads go on: a million-key delete used to hold the leader's loop for 3 s and cost
// a leader change; a lease revoke, a txn of one delete per attached key, held it 1.5 s for 300,000
// keys), and nobody sees it half done: until the whole batch is readable, reads see the state
// before the batch (not the entries before the write in the same batch, not some keys deleted),
// and afterwards exactly the batch's outcome, the same as a store that applied it in one pass.
// Method: 1,000 keys, then one batch of a put, the large write (slices of 64 keys) and a put; a
// callback rescheduled on every turn of the event loop reads the whole store while the batch is
// applied. Before slicing each write ran in one pass: no turn happened during it (a DeleteRange on
// its own was sliced first, in 3096e09; a txn, the second test, only later).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { MvccStore } from '../../../../src/store/mvcc/index.js';
import { ALL_FROM, cleanup, del, deleteRequest, plain, put, putRequest, rangeRequest, printable, tempDir, text, txn } from './helpers.js';

const KEYS = 1000;
const key = (i: number): string => `k/${String(i).padStart(4, '0')}`;

test('a large DeleteRange yields to the event loop between slices and is seen only whole', async () => {
  const dir = await tempDir();
  const store = await MvccStore.open({ path: join(dir, 'db'), applySliceKeys: 64 });
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

test('a txn of many operations (a lease revoke\'s shape) yields between slices and ends as one pass would', async () => {
  const dir = await tempDir();
  // A txn of more operations than a client may send (--max-txn-ops): as a revoke's used to be.
  const sliced = await MvccStore.open({ path: join(dir, 'sliced'), applySliceKeys: 64, maxTxnOps: KEYS });
  const whole = await MvccStore.open({ path: join(dir, 'whole'), maxTxnOps: KEYS });
  try {
    const load = Array.from({ length: KEYS / 100 }, (_, batch) => Array.from({ length: 100 }, (_, i) => ({ index: batch * 100 + i + 1, request: put(key(batch * 100 + i), `v${batch * 100 + i}`) })));
    for (const store of [sliced, whole]) for (const entries of load) await store.applyBatch(entries);
    const before = sliced.currentRevision;
    const beforeKvs = (await sliced.range(rangeRequest(ALL_FROM, ALL_FROM))).kvs.map(plain);

    // One delete per key of the first half (as a revoke deletes a lease's keys), then a nested txn
    // that deletes the second half as a range with prevKv, a put, and a read of everything.
    const large = txn([], [
      ...Array.from({ length: KEYS / 2 }, (_, i) => ({ type: 'delete-range' as const, request: deleteRequest(key(i)) })),
      { type: 'txn' as const, request: { compare: [], success: [{ type: 'delete-range' as const, request: deleteRequest(key(KEYS / 2), 'k0', { prevKv: true }) }], failure: [] } },
      { type: 'put' as const, request: putRequest('m', 'in the txn') },
      { type: 'range' as const, request: rangeRequest(ALL_FROM, ALL_FROM) },
    ]);
    const batch = [
      { index: KEYS + 1, request: put('a', 'before the txn') },
      { index: KEYS + 2, request: large },
      { index: KEYS + 3, request: put('z', 'after the txn') },
    ];

    const seen: Array<Promise<{ revision: number; keys: number }>> = [];
    let applying = true;
    const read = (): void => {
      if (!applying) return;
      seen.push(sliced.range(rangeRequest(ALL_FROM, ALL_FROM)).then((response) => ({ revision: response.revision, keys: response.kvs.length })));
      setImmediate(read);
    };
    setImmediate(read);
    const outcomes = await sliced.applyBatch(batch, { onVisible: () => { applying = false; } });
    applying = false;
    const reads = await Promise.all(seen);
    const expected = await whole.applyBatch(batch);

    assert.ok(reads.length >= KEYS / 64 - 1, `the event loop turned during the txn (${reads.length} reads ran)`);
    for (const observed of reads) assert.deepEqual(observed, { revision: before, keys: KEYS }, 'a read during the batch sees the state before it');
    assert.deepEqual(outcomes.map((outcome) => outcome.ok), [true, true, true]);
    assert.deepEqual(printable(outcomes), printable(expected), 'the same outcomes, responses and events as one pass');
    const [, deleted] = outcomes;
    assert.ok(deleted.ok && deleted.result.type === 'txn');
    assert.equal(deleted.events.length, KEYS + 1);
    const nested = deleted.result.response.responses[KEYS / 2];
    assert.ok(nested.type === 'txn' && nested.response.responses[0].type === 'delete-range');
    assert.deepEqual(nested.response.responses[0].response.prevKvs.map(plain), beforeKvs.slice(KEYS / 2));
    const inTxn = deleted.result.response.responses[KEYS / 2 + 2];
    assert.ok(inTxn.type === 'range');
    assert.deepEqual(inTxn.response.kvs.map((kv) => text(kv.key)), ['a', 'm'], 'a read in the txn sees its own writes');
    assert.deepEqual(await sliced.hashKV(0), await whole.hashKV(0));
    const after = await sliced.range(rangeRequest(ALL_FROM, ALL_FROM));
    assert.deepEqual(after.kvs.map((kv) => text(kv.key)), ['a', 'm', 'z']);
    sliced.assertInvariants();
  } finally {
    await sliced.close();
    await whole.close();
    await cleanup(dir);
  }
});

test('a lease\'s keys are deleted in slices, exactly as a txn of one delete per key deleted them', async () => {
  const dir = await tempDir();
  const sliced = await MvccStore.open({ path: join(dir, 'sliced'), applySliceKeys: 64 });
  const asTxn = await MvccStore.open({ path: join(dir, 'txn'), maxTxnOps: KEYS });
  try {
    // Keys attached in an order other than key order, some to another lease, some to none.
    const load = Array.from({ length: KEYS / 100 }, (_, batch) => Array.from({ length: 100 }, (_, i) => {
      const n = (batch * 100 + i) * 7 % KEYS;
      return { index: batch * 100 + i + 1, request: put(key(n), `v${n}`, { lease: n % 10 === 0 ? 8n : n % 10 === 1 ? 0n : 7n }) };
    }));
    for (const store of [sliced, asTxn]) for (const entries of load) await store.applyBatch(entries);
    const attached = asTxn.keysOfLease(7n);
    assert.equal(attached.length, KEYS * 0.8);
    const before = sliced.currentRevision;

    const counts: Array<Promise<number>> = [];
    let applying = true;
    const count = (): void => {
      if (!applying) return;
      counts.push(sliced.range(rangeRequest(ALL_FROM, ALL_FROM, { countOnly: true })).then((response) => response.count));
      setImmediate(count);
    };
    setImmediate(count);
    const [outcome] = await sliced.applyBatch([{ index: KEYS + 1, request: { type: 'delete-lease-keys', lease: 7n } }], { onVisible: () => { applying = false; } });
    applying = false;
    const [expected] = await asTxn.applyBatch([{ index: KEYS + 1, request: txn([], attached.map((k) => ({ type: 'delete-range' as const, request: { key: k, rangeEnd: new Uint8Array(0), prevKv: false } }))) }]);

    assert.ok(counts.length >= attached.length / 64 - 1, `the event loop turned during the revoke (${counts.length} reads ran)`);
    for (const seen of await Promise.all(counts)) assert.equal(seen, KEYS, 'a read during the revoke sees every key');
    assert.ok(outcome.ok && expected.ok);
    assert.equal(outcome.revision, before + 1);
    assert.deepEqual(outcome.result, { type: 'delete-range', response: { deleted: attached.length, prevKvs: [] } });
    assert.deepEqual(printable(outcome.events), printable(expected.events), 'the same deletes in the same (key) order');
    assert.deepEqual(await sliced.hashKV(0), await asTxn.hashKV(0));
    assert.deepEqual(sliced.keysOfLease(7n), []);
    assert.equal(sliced.keysOfLease(8n).length, KEYS / 10);
    assert.equal((await sliced.range(rangeRequest(ALL_FROM, ALL_FROM, { countOnly: true }))).count, KEYS * 0.2);
    const [none] = await sliced.applyBatch([{ index: KEYS + 2, request: { type: 'delete-lease-keys', lease: 7n } }]);
    assert.ok(none.ok);
    assert.equal(none.revision, before + 1, 'a lease without keys makes no revision');
    sliced.assertInvariants();
  } finally {
    await sliced.close();
    await asTxn.close();
    await cleanup(dir);
  }
});

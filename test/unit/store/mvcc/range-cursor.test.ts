// Goal: paged Range reads (MvccStore.openRange) answer exactly what the one-shot Range algorithm
// answers (etcd's rangeKeys + filters, sort, limit, keys_only, count, more) whatever the page
// size, keep reading one revision while writes and compactions run, hold a bounded number of
// values while sorting by value, and release their revision on every way out.
// Method: the reference is a Range inside a read-only Txn, which the store still serves with the
// original algorithm (index walk + finishRange, synchronous during apply). Scenarios compare the
// two over many request shapes and page sizes on a store with history, deletions and leases.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KvdError } from '../../../../src/util/errors.js';
import type { MvccStore } from '../../../../src/store/mvcc/index.js';
import type { RangeRequest, RangeResponse } from '../../../../src/store/mvcc/types.js';
import { RANGE_VISIT_STEP_KEYS } from '../../../../src/store/mvcc/range-cursor.js';
import { ALL_FROM, apply, applyOne, bytes, cleanup, compact, del, openTemp, plain, put, rangeRequest, text } from './helpers.js';

/** The reference answer: the Range as a read-only Txn op (the pre-paging algorithm). */
async function reference(store: MvccStore, request: RangeRequest): Promise<RangeResponse> {
  const outcome = await applyOne(store, { type: 'txn', request: { compare: [], success: [{ type: 'range', request }], failure: [] } });
  assert.ok(outcome.ok && outcome.result.type === 'txn');
  const op = outcome.result.response.responses[0];
  assert.ok(op.type === 'range');
  return op.response;
}

/** Reads a cursor to the end, checking page sizes. */
async function paged(store: MvccStore, request: RangeRequest, pageKeysMax: number): Promise<RangeResponse & { pages: number }> {
  const cursor = store.openRange(request, { pageKeysMax });
  const kvs = [];
  let pages = 0;
  try {
    for await (const page of cursor) {
      assert.ok(page.length > 0 && page.length <= pageKeysMax, `page of ${page.length} keys within 1..${pageKeysMax}`);
      kvs.push(...page);
      pages += 1;
    }
    return { kvs, ...cursor.summary(), pages };
  } finally {
    await cursor.return();
  }
}

function view(response: RangeResponse): unknown {
  return { kvs: response.kvs.map(plain), count: response.count, more: response.more };
}

async function populated(): Promise<{ store: MvccStore; dir: string; revisions: number[] }> {
  const { store, dir } = await openTemp();
  const revisions: number[] = [];
  // 300 keys k/000..k/299 with varied value sizes, created in shuffled order (create revisions
  // differ from key order), then updates, deletions, re-creations and leases.
  const order = Array.from({ length: 300 }, (_, i) => (i * 7919) % 300);
  for (let at = 0; at < order.length; at += 50) {
    await apply(store, ...order.slice(at, at + 50).map((i) => put(`k/${String(i).padStart(3, '0')}`, `v${i}`.repeat(1 + (i % 5)), { lease: i % 11 === 0 ? BigInt(i + 1) : 0n })));
    revisions.push(store.currentRevision);
  }
  await apply(store, ...Array.from({ length: 40 }, (_, i) => put(`k/${String(i * 3).padStart(3, '0')}`, `updated${i % 4}`)));
  revisions.push(store.currentRevision);
  await apply(store, del('k/100', 'k/120'), del('k/250'), put('k/105', 'back'), put('j', 'before'), put('l', 'after'));
  revisions.push(store.currentRevision);
  return { store, dir, revisions };
}

test('paged ranges equal the one-shot algorithm for every request shape and page size', async () => {
  const { store, dir, revisions } = await populated();
  try {
    const shapes: Array<[string, RangeRequest]> = [
      ['prefix', rangeRequest('k/', 'k0')],
      ['all keys', rangeRequest(ALL_FROM, ALL_FROM)],
      ['from key', rangeRequest('k/2', ALL_FROM)],
      ['single key', rangeRequest('k/042')],
      ['single deleted key', rangeRequest('k/110')],
      ['empty range', rangeRequest('x', 'y')],
      ['inverted range', rangeRequest('k/5', 'k/1')],
      ['limit below count', rangeRequest('k/', 'k0', { limit: 17 })],
      ['limit equal to count', rangeRequest('k/', 'k0', { limit: 280 })],
      ['limit above count', rangeRequest('k/', 'k0', { limit: 1000 })],
      ['keys only', rangeRequest('k/', 'k0', { keysOnly: true })],
      ['count only', rangeRequest('k/', 'k0', { countOnly: true, limit: 3 })],
      ['min mod', rangeRequest('k/', 'k0', { minModRevision: revisions[4] })],
      ['max mod + limit', rangeRequest('k/', 'k0', { maxModRevision: revisions[2], limit: 9 })],
      ['create window', rangeRequest('k/', 'k0', { minCreateRevision: revisions[1], maxCreateRevision: revisions[3] })],
      ['filter and limit cut (more from the filtered count)', rangeRequest('k/', 'k0', { minModRevision: revisions[6], limit: 5 })],
      ['past revision', rangeRequest('k/', 'k0', { revision: revisions[2] })],
      ['past revision + limit + keys only', rangeRequest('k/', 'k0', { revision: revisions[3], limit: 40, keysOnly: true })],
    ];
    for (const order of ['ascend', 'descend'] as const) {
      for (const target of ['key', 'version', 'create', 'mod', 'value'] as const) {
        shapes.push([`sort ${target} ${order}`, rangeRequest('k/', 'k0', { sortOrder: order, sortTarget: target })]);
        shapes.push([`sort ${target} ${order} limit 7`, rangeRequest('k/', 'k0', { sortOrder: order, sortTarget: target, limit: 7 })]);
      }
    }
    shapes.push(['sort none with a non-key target sorts ascending', rangeRequest('k/', 'k0', { sortOrder: 'none', sortTarget: 'mod' })]);
    shapes.push(['sort none with a non-key target and a limit sorts the first limit + 1 keys (etcd)', rangeRequest('k/', 'k0', { sortOrder: 'none', sortTarget: 'mod', limit: 12 })]);
    shapes.push(['the same by value', rangeRequest('k/', 'k0', { sortOrder: 'none', sortTarget: 'value', limit: 12 })]);
    shapes.push(['the same with a filter (etcd then sorts everything)', rangeRequest('k/', 'k0', { sortOrder: 'none', sortTarget: 'create', limit: 12, minModRevision: 2 })]);
    shapes.push(['sort value with filters and keys only', rangeRequest('k/', 'k0', { sortOrder: 'descend', sortTarget: 'value', minModRevision: revisions[1], limit: 30, keysOnly: true })]);
    for (const [name, request] of shapes) {
      const expected = view(await reference(store, request));
      for (const pageKeysMax of [1, 3, 64, 256]) {
        const got = await paged(store, request, pageKeysMax);
        assert.deepEqual(view(got), expected, `${name}, pages of ${pageKeysMax}`);
      }
      assert.deepEqual(view(await store.range(request)), expected, `${name}, store.range`);
    }
    assert.equal(store.openRangeCursors, 0, 'every cursor released its revision');
  } finally {
    await store.close();
    await cleanup(dir);
  }
});

test('a one-key range answered at once (rangeKeyNow) equals the one-shot algorithm and the cursor, errors included', async () => {
  const { store, dir, revisions } = await populated();
  try {
    const shapes: Array<[string, RangeRequest]> = [
      ['live key', rangeRequest('k/042')],
      ['updated key', rangeRequest('k/003')],
      ['leased key', rangeRequest('k/011')],
      ['deleted key', rangeRequest('k/110')],
      ['re-created key', rangeRequest('k/105')],
      ['missing key', rangeRequest('zz')],
      ['keys only', rangeRequest('k/042', '', { keysOnly: true })],
      ['count only', rangeRequest('k/042', '', { countOnly: true })],
      ['limit 1', rangeRequest('k/042', '', { limit: 1 })],
      ['past revision, before an update', rangeRequest('k/003', '', { revision: revisions[0] })],
      ['past revision, before the deletion', rangeRequest('k/110', '', { revision: revisions[6] })],
      ['filtered out by min mod (count stays)', rangeRequest('k/042', '', { minModRevision: revisions[7] })],
      ['max create', rangeRequest('k/042', '', { maxCreateRevision: revisions[0] })],
      ['sorted by value, descending', rangeRequest('k/042', '', { sortOrder: 'descend', sortTarget: 'value' })],
    ];
    for (const [name, request] of shapes) {
      const expected = view(await reference(store, request));
      const now = store.rangeKeyNow(request);
      assert.ok(now !== undefined, `${name}: answered at once`);
      assert.deepEqual(view(now), expected, name);
      assert.equal(now.revision, store.currentRevision, `${name}: the header revision is the store's`);
      assert.deepEqual(view(await paged(store, request, 64)), expected, `${name}, cursor`);
    }
    assert.equal(store.rangeKeyNow(rangeRequest('k/', 'k0')), undefined, 'a range of keys is left to the cursor');
    assert.throws(() => store.rangeKeyNow(rangeRequest('k/042', '', { revision: store.currentRevision + 1 })), (error: unknown) => error instanceof KvdError && error.code === 'future-revision');
    assert.throws(() => store.rangeKeyNow(rangeRequest('', '')), (error: unknown) => error instanceof KvdError && error.code === 'empty-key');
    const outcome = await applyOne(store, compact(revisions[3]));
    assert.ok(outcome.ok);
    assert.throws(() => store.rangeKeyNow(rangeRequest('k/042', '', { revision: revisions[2] })), (error: unknown) => error instanceof KvdError && error.code === 'compacted');
    assert.equal(store.openRangeCursors, 0, 'nothing pinned');
  } finally {
    await store.close();
    await cleanup(dir);
  }
  assert.throws(() => store.rangeKeyNow(rangeRequest('k/042')), (error: unknown) => error instanceof KvdError && error.code === 'stopped', 'a closed store refuses');
});

test('a range of more keys than one walk step counts and pages across steps', async () => {
  const { store, dir } = await openTemp();
  try {
    const total = RANGE_VISIT_STEP_KEYS * 2 + 500;
    for (let at = 0; at < total; at += 1000) {
      await apply(store, { type: 'txn', request: { compare: [], failure: [], success: Array.from({ length: Math.min(1000, total - at) }, (_, i) => ({ type: 'put' as const, request: { key: bytes(`p/${String(at + i).padStart(6, '0')}`), value: bytes('x'), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } })) } });
    }
    // Every third key deleted: the walk skips dead keys; a filter leaves only recent ones.
    await apply(store, ...Array.from({ length: 200 }, (_, i) => del(`p/${String(i * 3).padStart(6, '0')}`)));
    for (const request of [rangeRequest('p/', 'p0'), rangeRequest('p/', 'p0', { limit: 10 }), rangeRequest('p/', 'p0', { countOnly: true }), rangeRequest('p/', 'p0', { minModRevision: 3, limit: 100 }), rangeRequest('p/', 'p0', { sortOrder: 'descend', limit: 5 })]) {
      const expected = view(await reference(store, request));
      assert.deepEqual(view(await paged(store, request, 256)), expected);
    }
  } finally {
    await store.close();
    await cleanup(dir);
  }
});

test('a cursor reads one revision while writes and a compaction past it run between its pages', async () => {
  const { store, dir } = await openTemp();
  try {
    await apply(store, ...Array.from({ length: 600 }, (_, i) => put(`c/${String(i).padStart(4, '0')}`, `first${i}`)));
    const readAt = store.currentRevision;
    const request = rangeRequest('c/', 'c0');
    const expected = view(await reference(store, request));
    const cursor = store.openRange(request, { pageKeysMax: 25 });
    const kvs = [];
    let page = 0;
    try {
      for await (const items of cursor) {
        kvs.push(...items);
        page += 1;
        if (page === 2) {
          // Overwrite and delete keys the cursor has not reached, add new ones, then compact past its revision.
          await apply(store, ...Array.from({ length: 300 }, (_, i) => put(`c/${String(300 + i).padStart(4, '0')}`, `second${i}`)));
          await apply(store, del('c/0400', 'c/0500'), put('c/0599x', 'new'), put('c/0000a', 'new'));
          const outcome = await applyOne(store, compact(store.currentRevision));
          assert.ok(outcome.ok, 'compaction scheduled past the cursor');
          await assert.rejects(store.range(rangeRequest('c/', 'c0', { revision: readAt })), (error: unknown) => error instanceof KvdError && error.code === 'compacted', 'new reads at the old revision are refused');
        }
      }
      assert.deepEqual(view({ kvs, ...cursor.summary() }), expected, 'every page is at the cursor revision');
      assert.ok(kvs.every((kv) => kv.modRevision <= readAt));
    } finally {
      await cursor.return();
    }
    // With the cursor gone, physical compaction finishes.
    await store.waitCompacted(store.compactedRevision);
    assert.equal(store.openRangeCursors, 0);
  } finally {
    await store.close();
    await cleanup(dir);
  }
});

test('cursors end on abort, on close of the store, refuse concurrent next(), and release their revision', async () => {
  const { store, dir } = await openTemp();
  try {
    await apply(store, ...Array.from({ length: 100 }, (_, i) => put(`a/${String(i).padStart(3, '0')}`, 'v')));
    const controller = new AbortController();
    const aborted = store.openRange(rangeRequest('a/', 'a0'), { pageKeysMax: 10, signal: controller.signal });
    assert.equal((await aborted.next()).done, false);
    controller.abort(new KvdError('watch-canceled', { detail: 'etcdserver: request canceled' }));
    await assert.rejects(aborted.next(), (error: unknown) => error instanceof KvdError && error.message === 'etcdserver: request canceled');
    assert.equal(store.openRangeCursors, 0, 'an aborted cursor released its revision');

    const concurrent = store.openRange(rangeRequest('a/', 'a0'), { pageKeysMax: 10 });
    const first = concurrent.next();
    await assert.rejects(concurrent.next(), /concurrent next/);
    await first;
    await concurrent.return();
    await concurrent.return();
    assert.equal(store.openRangeCursors, 0, 'return() is idempotent');

    const left = store.openRange(rangeRequest('a/', 'a0'), { pageKeysMax: 10 });
    await left.next();
    await store.close();
    await assert.rejects(left.next(), (error: unknown) => error instanceof KvdError && error.code === 'stopped');
  } finally {
    await store.close();
    await cleanup(dir);
  }
});

test('a VALUE sort holds at most the best candidates, and refuses beyond sortBytesMax', async () => {
  const { store, dir } = await openTemp();
  try {
    await apply(store, ...Array.from({ length: 400 }, (_, i) => put(`s/${String(i).padStart(3, '0')}`, `${String((i * 37) % 400).padStart(3, '0')}${'x'.repeat(1000)}`)));
    const limited = rangeRequest('s/', 's0', { sortOrder: 'descend', sortTarget: 'value', limit: 3 });
    // The best 3 (+ a page of candidates) fit in 20 KB although the range holds 400 KB of values.
    const cursor = store.openRange(limited, { sortBytesMax: 20_000, pageKeysMax: 5 });
    const kvs = [];
    try {
      for await (const page of cursor) kvs.push(...page);
    } finally {
      await cursor.return();
    }
    assert.deepEqual(kvs.map((kv) => text(kv.value).slice(0, 3)), ['399', '398', '397']);
    const unlimited = store.openRange(rangeRequest('s/', 's0', { sortTarget: 'value', sortOrder: 'ascend' }), { sortBytesMax: 20_000, pageKeysMax: 5 });
    await assert.rejects(unlimited.next(), (error: unknown) => error instanceof KvdError && error.code === 'response-too-large' && /^grpc: trying to send message larger than max \(\d+ vs\. 20000\)$/.test(error.message));
    assert.equal(store.openRangeCursors, 0);
  } finally {
    await store.close();
    await cleanup(dir);
  }
});

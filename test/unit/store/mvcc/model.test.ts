// Goal: random sequences of puts, deletes, txns, compactions, reads at past revisions, history
// reads and close+reopen give exactly the results of a tiny reference model of etcd's MVCC, and
// two stores fed the same requests (in different batchings, with compaction progressing at
// different times, one of them applying each DeleteRange in slices) end with identical
// revisions, reads and hashKV. Method: fast-check generates
// the operation list; the model keeps every (key, revision) version in plain maps.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { join } from 'node:path';
import { MvccStore, type ApplyOutcome } from '../../../../src/store/mvcc/index.js';
import type { RequestOp, SortOrder, SortTarget, WriteRequest } from '../../../../src/store/mvcc/types.js';
import { ALL_FROM, bytes, cleanup, cmp, compact, del, deleteRequest, plain, put, putRequest, rangeRequest, tempDir, text, txn, type PlainKv } from './helpers.js';

const KEYS = ['a', 'ab', 'b', 'ba', 'c', 'd'];

interface ModelEvent {
  type: 'put' | 'delete';
  key: string;
  revision: number;
}

/** The reference: every version of every key, plus an event log. */
class Model {
  revision = 1;
  compacted = 0;
  readonly versions = new Map<string, Array<{ revision: number; kv: PlainKv | null }>>();
  readonly events: ModelEvent[] = [];

  at(key: string, revision: number): PlainKv | undefined {
    const list = this.versions.get(key) ?? [];
    let found: PlainKv | null | undefined;
    for (const item of list) if (item.revision <= revision) found = item.kv;
    return found ?? undefined;
  }

  live(start: string, end: string | undefined, revision: number): PlainKv[] {
    const out: PlainKv[] = [];
    for (const key of [...this.versions.keys()].sort()) {
      if (key < start || (end !== undefined && key >= end)) continue;
      const kv = this.at(key, revision);
      if (kv !== undefined) out.push(kv);
    }
    return out;
  }

  #write(key: string, kv: PlainKv | null, revision: number): void {
    const list = this.versions.get(key) ?? [];
    list.push({ revision, kv });
    this.versions.set(key, list);
    this.events.push({ type: kv === null ? 'delete' : 'put', key, revision });
  }

  put(key: string, value: string, revision: number): void {
    const previous = this.at(key, this.revision);
    this.#write(key, { key, value, create: previous?.create ?? revision, mod: revision, version: (previous?.version ?? 0) + 1, lease: 0n }, revision);
  }

  remove(key: string, revision: number): boolean {
    if (this.at(key, this.revision) === undefined) return false;
    this.#write(key, null, revision);
    return true;
  }
}

type Op =
  | { kind: 'put'; key: string; value: string; prevKv: boolean }
  | { kind: 'delete'; key: string; end: string | undefined }
  | { kind: 'txn'; key: string; version: number; result: 'equal' | 'not-equal' | 'greater' | 'less'; success: Branch; failure: Branch }
  | { kind: 'compact'; back: number }
  | { kind: 'range'; key: string; end: string | undefined | 'all'; back: number; limit: number; sortOrder: SortOrder; sortTarget: SortTarget }
  | { kind: 'changes'; back: number; limit: number }
  | { kind: 'reopen' };

const keyArb = fc.constantFrom(...KEYS);
type Branch = Array<{ key: string; action: 'put' | 'delete' | 'range' }>;
const branchArb = fc.uniqueArray(fc.record({ key: keyArb, action: fc.constantFrom('put' as const, 'delete' as const, 'range' as const) }), { selector: (item) => item.key, maxLength: 4 });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('put' as const), key: keyArb, value: fc.constantFrom('x', 'y', 'zz', ''), prevKv: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), key: keyArb, end: fc.option(fc.constantFrom('b', 'c', 'e'), { nil: undefined }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('txn' as const), key: keyArb, version: fc.integer({ min: 0, max: 3 }), result: fc.constantFrom('equal' as const, 'not-equal' as const, 'greater' as const, 'less' as const), success: branchArb, failure: branchArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('compact' as const), back: fc.integer({ min: -1, max: 6 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('range' as const), key: keyArb, end: fc.option(fc.constantFrom('b', 'c', 'e', 'all' as const), { nil: undefined }), back: fc.integer({ min: 0, max: 8 }), limit: fc.integer({ min: 0, max: 3 }), sortOrder: fc.constantFrom<SortOrder>('none', 'ascend', 'descend'), sortTarget: fc.constantFrom<SortTarget>('key', 'version', 'create', 'mod', 'value') }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('changes' as const), back: fc.integer({ min: 0, max: 8 }), limit: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
);

function compareKv(target: SortTarget): (a: PlainKv, b: PlainKv) => number {
  switch (target) {
    case 'key': return (a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
    case 'version': return (a, b) => a.version - b.version;
    case 'create': return (a, b) => a.create - b.create;
    case 'mod': return (a, b) => a.mod - b.mod;
    case 'value': return (a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0);
  }
}

function branchOps(branch: Branch, value: string): RequestOp[] {
  return branch.map(({ key, action }): RequestOp => {
    switch (action) {
      case 'put': return { type: 'put', request: putRequest(key, value) };
      case 'delete': return { type: 'delete-range', request: deleteRequest(key) };
      case 'range': return { type: 'range', request: rangeRequest(key, ALL_FROM) };
    }
  });
}

function okOutcome(outcome: ApplyOutcome): Extract<ApplyOutcome, { ok: true }> {
  if (!outcome.ok) assert.fail(`unexpected failure ${outcome.error.code}`);
  return outcome;
}

async function runScenario(ops: Op[]): Promise<void> {
  const dir = await tempDir();
  const path = join(dir, 'db');
  let store = await MvccStore.open({ path });
  const model = new Model();
  const writes: WriteRequest[] = [];
  const applyWrite = async (request: WriteRequest): Promise<ApplyOutcome> => {
    writes.push(request);
    const [outcome] = await store.applyBatch([{ index: store.consistentIndex + 1, request }]);
    return outcome;
  };
  try {
    for (const [step, op] of ops.entries()) {
      const where = `step ${step} ${JSON.stringify(op)}`;
      switch (op.kind) {
        case 'put': {
          const previous = model.at(op.key, model.revision);
          const outcome = okOutcome(await applyWrite(put(op.key, op.value, { prevKv: op.prevKv })));
          model.revision += 1;
          model.put(op.key, op.value, model.revision);
          assert.equal(outcome.revision, model.revision, where);
          const response = outcome.result.type === 'put' ? outcome.result.response : assert.fail();
          assert.deepEqual(response.prevKv === undefined ? undefined : plain(response.prevKv), op.prevKv ? previous : undefined, where);
          break;
        }
        case 'delete': {
          const victims = op.end === undefined ? [op.key] : model.live(op.key, op.end, model.revision).map((kv) => kv.key);
          const outcome = okOutcome(await applyWrite(del(op.key, op.end ?? '')));
          const live = victims.filter((key) => model.at(key, model.revision) !== undefined);
          if (live.length > 0) model.revision += 1;
          for (const key of live) model.remove(key, model.revision);
          assert.equal(outcome.revision, model.revision, where);
          assert.equal(outcome.result.type === 'delete-range' ? outcome.result.response.deleted : -1, live.length, where);
          break;
        }
        case 'txn': {
          const version = model.at(op.key, model.revision)?.version ?? 0;
          const holds = op.result === 'equal' ? version === op.version : op.result === 'not-equal' ? version !== op.version : op.result === 'greater' ? version > op.version : version < op.version;
          const outcome = okOutcome(await applyWrite(txn([cmp(op.key, 'version', op.result, op.version)], branchOps(op.success, 'then'), branchOps(op.failure, 'else'))));
          const branch = holds ? op.success : op.failure;
          const revision = model.revision + 1;
          let changed = false;
          const expectedRanges: PlainKv[][] = [];
          for (const { key, action } of branch) {
            const readAt = changed ? revision : model.revision;
            if (action === 'put') {
              model.put(key, holds ? 'then' : 'else', revision);
              changed = true;
            } else if (action === 'delete') {
              if (model.at(key, readAt) !== undefined) {
                model.remove(key, revision);
                changed = true;
              }
            } else expectedRanges.push(model.live(key, undefined, readAt));
          }
          if (changed) model.revision = revision;
          const responses = outcome.result.type === 'txn' ? outcome.result.response.responses : [];
          assert.deepEqual(responses.flatMap((response) => (response.type === 'range' ? [response.response.kvs.map(plain)] : [])), expectedRanges, where);
          assert.equal(outcome.revision, model.revision, where);
          assert.equal(outcome.result.type === 'txn' && outcome.result.response.succeeded, holds, where);
          break;
        }
        case 'compact': {
          const target = model.revision - op.back;
          const outcome = await applyWrite(compact(target));
          if (target <= model.compacted) assert.equal(outcome.ok ? 'ok' : outcome.error.code, 'compacted', where);
          else if (target > model.revision) assert.equal(outcome.ok ? 'ok' : outcome.error.code, 'future-revision', where);
          else {
            okOutcome(outcome);
            model.compacted = target;
          }
          break;
        }
        case 'range': {
          const revision = model.revision - op.back;
          const end = op.end === 'all' ? ALL_FROM : op.end ?? '';
          const request = rangeRequest(op.key, end, { revision, limit: op.limit, sortOrder: op.sortOrder, sortTarget: op.sortTarget });
          if (revision > 0 && revision < model.compacted) {
            await assert.rejects(store.range(request), (error: unknown) => (error as { code?: string }).code === 'compacted', where);
            break;
          }
          const at = revision <= 0 ? model.revision : revision;
          const all = op.end === undefined ? [model.at(op.key, at)].filter((kv): kv is PlainKv => kv !== undefined) : model.live(op.key, op.end === 'all' ? undefined : op.end, at);
          // etcd fetches only limit + 1 keys (in key order) when sort_order is NONE and no filter is set,
          // even if a non-key target then sorts them (server/etcdserver/txn/range.go).
          let expected = op.sortOrder === 'none' && op.limit > 0 ? all.slice(0, op.limit + 1) : all.slice();
          const order = op.sortTarget !== 'key' && op.sortOrder === 'none' ? 'ascend' : op.sortOrder;
          if (order !== 'none') expected.sort((a, b) => (order === 'ascend' ? 1 : -1) * compareKv(op.sortTarget)(a, b));
          const more = op.limit > 0 && expected.length > op.limit;
          if (more) expected = expected.slice(0, op.limit);
          const response = await store.range(request);
          assert.deepEqual({ kvs: response.kvs.map(plain), count: response.count, more: response.more, revision: response.revision }, { kvs: expected, count: all.length, more, revision: model.revision }, where);
          break;
        }
        case 'changes': {
          const from = Math.max(1, model.revision - op.back);
          if (from < model.compacted) {
            await assert.rejects(store.changes({ key: ALL_FROM, rangeEnd: ALL_FROM, fromRevision: from, limit: op.limit }), (error: unknown) => (error as { code?: string }).code === 'compacted', where);
            break;
          }
          const got = await store.changes({ key: ALL_FROM, rangeEnd: ALL_FROM, fromRevision: from, limit: op.limit });
          // The compaction revision itself stays readable (etcd), except that its tombstones go
          // once compaction has physically run (whether it has is timing, as in etcd).
          const settled = (event: { type: string; revision: number }): boolean => !(event.revision === model.compacted && event.type === 'delete');
          const expected = model.events.filter((event) => event.revision >= from && event.revision <= got.lastRevision).filter(settled);
          assert.deepEqual(got.events.map((event) => ({ type: event.type, key: text(event.kv.key), revision: event.kv.modRevision })).filter(settled), expected, where);
          assert.ok(got.lastRevision >= from - 1 && got.lastRevision <= model.revision, where);
          if (got.lastRevision < model.revision) assert.ok(got.events.length > 0, `${where}: progress`);
          break;
        }
        case 'reopen': {
          const before = await store.hashKV(0);
          await store.close();
          store = await MvccStore.open({ path });
          assert.deepEqual(await store.hashKV(0), before, where);
          assert.equal(store.currentRevision, model.revision, where);
          assert.equal(store.compactedRevision, model.compacted, where);
          break;
        }
      }
      store.assertInvariants();
    }
    // Determinism: a second store fed the same requests in other batch sizes, applying every
    // large write (a DeleteRange, a txn) one key per turn of the event loop (its compaction running in
    // between), agrees exactly.
    const twinPath = join(dir, 'twin');
    const twin = await MvccStore.open({ path: twinPath, applySliceKeys: 1 });
    try {
      for (let i = 0; i < writes.length; i += 3) {
        const base = twin.consistentIndex;
        await twin.applyBatch(writes.slice(i, i + 3).map((request, j) => ({ index: base + j + 1, request })));
      }
      assert.equal(twin.currentRevision, store.currentRevision);
      assert.equal(twin.compactedRevision, store.compactedRevision);
      assert.deepEqual(await twin.hashKV(0), await store.hashKV(0));
      for (let revision = Math.max(1, store.compactedRevision); revision <= store.currentRevision; revision += 1) {
        const request = rangeRequest(ALL_FROM, ALL_FROM, { revision });
        assert.deepEqual((await twin.range(request)).kvs.map(plain), (await store.range(request)).kvs.map(plain), `revision ${revision}`);
        assert.deepEqual((await twin.range(request)).kvs.map(plain), model.live('', undefined, revision), `model at revision ${revision}`);
      }
    } finally {
      await twin.close();
    }
  } finally {
    await store.close();
    await cleanup(dir);
  }
}

test('random operation sequences match the reference model, across reopen, and replicas agree', async () => {
  await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 80 }), runScenario), { numRuns: Number(process.env.KVD_MVCC_RUNS ?? 80) });
});

test('keys are bytes: order and ranges follow unsigned byte order', async () => {
  const dir = await tempDir();
  const store = await MvccStore.open({ path: join(dir, 'db') });
  try {
    const keys = [new Uint8Array([0x01]), new Uint8Array([0x7f]), new Uint8Array([0x80]), new Uint8Array([0xff]), new Uint8Array([0xff, 0x00]), new Uint8Array([0xc3, 0xa9])];
    await store.applyBatch(keys.map((key, i) => ({ index: i + 1, request: { type: 'put', request: { key, value: bytes(String(i)), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } } })));
    const all = await store.range(rangeRequest(ALL_FROM, ALL_FROM));
    assert.deepEqual(all.kvs.map((kv) => [...kv.key]), [[0x01], [0x7f], [0x80], [0xc3, 0xa9], [0xff], [0xff, 0x00]]);
    const high = await store.range(rangeRequest(new Uint8Array([0x80]), new Uint8Array([0xff])));
    assert.deepEqual(high.kvs.map((kv) => [...kv.key]), [[0x80], [0xc3, 0xa9]]);
  } finally {
    await store.close();
    await cleanup(dir);
  }
});

// Goal: a store dump is one instant of the backend (writes applied after openDump are not in it,
// while they go on), streams exactly the size it announced, and in its snapshot-file form is
// padded to 512 bytes and followed by its SHA-256, which readers verify; a bare dump is
// recognised whatever its size; applyRecorded rolls a restored dump forward so that every read
// at every later revision (and HashKV) equals the source's, and refuses a recording that does
// not fit. Method: real LevelDB stores in temp dirs; a random workload (fast-check) records the
// source's onApply changes; dumps are restored into second stores and compared read for read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { KvdError } from '../../../../src/util/errors.js';
import { MvccStore, checkSnapshotFile, hasSnapshotHash, readDump, type RevisionChanges } from '../../../../src/store/mvcc/index.js';
import type { WriteRequest } from '../../../../src/store/mvcc/types.js';
import { ALL_FROM, apply, cleanup, compact, del, openTemp, plain, put, rangeRequest, tempDir, txn, putRequest, deleteRequest, type PlainKv } from './helpers.js';

async function collect(chunks: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of chunks) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}

async function* once(bytes: Buffer): AsyncGenerator<Uint8Array> {
  yield bytes;
}

async function allAt(store: MvccStore, revision: number): Promise<PlainKv[]> {
  return (await store.range(rangeRequest(ALL_FROM, ALL_FROM, { revision }))).kvs.map(plain);
}

function isCorrupt(error: unknown): boolean {
  return error instanceof KvdError && error.code === 'corrupt';
}

test('a dump holds exactly the batches committed before openDump, and writes go on while it is open', async () => {
  const { store, dir } = await openTemp();
  const target = await tempDir();
  try {
    await apply(store, put('a', '1'), put('b', '2'), put('a', '3'));
    const dump = await store.openDump();
    assert.equal(dump.revision, 4);
    assert.equal(store.openDumps, 1);
    // Writes while the dump is open (and before it is read) succeed and are not in it.
    await apply(store, put('c', '4'), del('a'));
    assert.equal(store.currentRevision, 6);
    const bytes = await collect(dump.framedChunks());
    assert.equal(store.openDumps, 0, 'reading the dump to its end closes it');
    assert.equal(bytes.length, dump.framedSizeBytes);
    assert.ok(hasSnapshotHash(bytes.length), 'size is 32 more than a multiple of 512');
    assert.deepEqual(createHash('sha256').update(bytes.subarray(0, -32)).digest(), bytes.subarray(-32));
    const path = join(target, 'db');
    await MvccStore.restoreSnapshot({ path, chunks: once(bytes), tail: 'snapshot-file' });
    const restored = await MvccStore.open({ path });
    try {
      assert.equal(restored.currentRevision, 4);
      assert.deepEqual(await allAt(restored, 4), await allAt(store, 4));
      assert.equal((await restored.hashKV(4)).hash, (await store.hashKV(4)).hash);
    } finally {
      await restored.close();
    }
  } finally {
    await store.close();
    await cleanup(dir);
    await cleanup(target);
  }
});

test('an unread dump is released by return() and by closing the store', async () => {
  const { store, dir } = await openTemp();
  try {
    await apply(store, put('a', '1'));
    const first = await store.openDump();
    const iterator = first.framedChunks();
    await iterator.return?.();
    assert.equal(store.openDumps, 0, 'return() before the first next() closes the dump');
    await store.openDump();
    assert.equal(store.openDumps, 1);
    await store.close();
    assert.equal(store.openDumps, 0, 'close() closes dumps left open');
  } finally {
    await store.close();
    await cleanup(dir);
  }
});

test('snapshot files: the SHA-256 is verified, a bare dump is accepted only when the check is skipped, and the dump CRC still guards it', async () => {
  const { store, dir } = await openTemp();
  try {
    for (let i = 0; i < 50; i++) await apply(store, put(`key-${i}`, `value-${i}`.repeat(i)));
    const framed = await collect((await store.openDump()).framedChunks());
    const bare = await collect((await store.openDump()).chunks());
    const framedPath = join(dir, 'framed.snap');
    const barePath = join(dir, 'bare.snap');
    await writeFile(framedPath, framed);
    await writeFile(barePath, bare);
    assert.deepEqual(await checkSnapshotFile(framedPath, 'verify'), { sizeBytes: framed.length });
    const read = await readDump(once(framed), async () => {}, { tail: 'snapshot-file' });
    assert.equal(read.form, 'snapshot-file');
    assert.equal(read.dumpBytes, bare.length);
    assert.equal((await readDump(once(bare), async () => {}, { tail: 'snapshot-file' })).form, 'bare');
    await assert.rejects(readDump(once(framed), async () => {}), isCorrupt, 'a peer dump may not carry a file tail');

    if (!hasSnapshotHash(bare.length)) {
      await assert.rejects(checkSnapshotFile(barePath, 'verify'), { message: 'snapshot missing hash but --skip-hash-check=false' });
    }
    assert.deepEqual(await checkSnapshotFile(barePath, 'skip'), { sizeBytes: bare.length });

    const flipped = Buffer.from(framed);
    flipped[100] ^= 0xff;
    const flippedPath = join(dir, 'flipped.snap');
    await writeFile(flippedPath, flipped);
    await assert.rejects(checkSnapshotFile(flippedPath, 'verify'), (error: unknown) => isCorrupt(error) && /^expected sha256 \[[0-9 ]+\], got \[[0-9 ]+\]$/.test((error as Error).message));
    await assert.rejects(readDump(once(await readFile(flippedPath)), async () => {}, { tail: 'snapshot-file' }), isCorrupt, 'skipping the hash check still meets the dump CRC');

    const nonZeroPadding = Buffer.from(framed);
    nonZeroPadding[bare.length] = 1;
    if (bare.length < framed.length - 32) await assert.rejects(readDump(once(nonZeroPadding), async () => {}, { tail: 'snapshot-file' }), isCorrupt);
  } finally {
    await store.close();
    await cleanup(dir);
  }
});

/** A random workload: puts (some leased), deletes, txns touching several keys, compactions. */
const KEYS = ['a', 'b', 'c', 'd', 'e'];
const operation = fc.oneof(
  fc.record({ kind: fc.constant('put' as const), key: fc.constantFrom(...KEYS), value: fc.string({ maxLength: 6 }), lease: fc.constantFrom(0n, 7n, 0xffff_ffff_ffff_fff0n) }),
  fc.record({ kind: fc.constant('delete' as const), key: fc.constantFrom(...KEYS), prefix: fc.boolean() }),
  fc.record({ kind: fc.constant('txn' as const), keys: fc.uniqueArray(fc.constantFrom(...KEYS), { minLength: 1, maxLength: 3 }), value: fc.string({ maxLength: 3 }) }),
  fc.record({ kind: fc.constant('compact' as const) }),
);
type Operation = typeof operation extends fc.Arbitrary<infer T> ? T : never;

function toRequest(op: Operation, store: MvccStore): WriteRequest {
  switch (op.kind) {
    case 'put':
      return put(op.key, op.value, { lease: op.lease });
    case 'delete':
      return op.prefix ? del(op.key, `${op.key}\xff`) : del(op.key);
    case 'txn':
      return txn([], op.keys.map((key, i) => (i % 2 === 0
        ? { type: 'put' as const, request: putRequest(key, op.value) }
        : { type: 'delete-range' as const, request: deleteRequest(key) })));
    case 'compact':
      return compact(Math.max(1, store.currentRevision - 2));
  }
}

test('applyRecorded: a dump rolled forward with the recorded changes answers every later revision as the source did', async () => {
  await fc.assert(fc.asyncProperty(fc.array(operation, { minLength: 2, maxLength: 40 }), fc.nat(), async (ops, cut) => {
    const { store: source, dir } = await openTemp();
    const target = await tempDir();
    const recorded: RevisionChanges[] = [];
    source.onApply((batch) => recorded.push(...batch));
    try {
      const at = cut % ops.length;
      let dumpBytes: Buffer | undefined;
      for (const [i, op] of ops.entries()) {
        if (i === at) dumpBytes = await collect((await source.openDump()).framedChunks());
        await apply(source, toRequest(op, source));
      }
      assert.ok(dumpBytes !== undefined);
      const path = join(target, 'db');
      await MvccStore.restoreSnapshot({ path, chunks: once(dumpBytes), tail: 'snapshot-file' });
      const restored = await MvccStore.open({ path });
      try {
        const from = restored.currentRevision;
        await restored.applyRecorded(recorded.filter((changes) => changes.revision > from));
        restored.assertInvariants();
        assert.equal(restored.currentRevision, source.currentRevision);
        const readable = Math.max(from, source.compactedRevision);
        for (let revision = readable; revision <= source.currentRevision; revision++) {
          assert.deepEqual(await allAt(restored, revision), await allAt(source, revision), `reads at revision ${revision}`);
        }
        assert.deepEqual(restored.listLeasedKeys(), source.listLeasedKeys());
        if (restored.compactedRevision === source.compactedRevision) {
          // (A compaction after the dump is not in the recording: HashKV depends on it.)
          assert.equal((await restored.hashKV(0)).hash, (await source.hashKV(0)).hash, 'same records, same HashKV');
        }
      } finally {
        await restored.close();
      }
    } finally {
      await source.close();
      await cleanup(dir);
      await cleanup(target);
    }
  }), { numRuns: 25 });
});

test('applyRecorded refuses a recording that does not continue the store, and writes nothing of it', async () => {
  const { store, dir } = await openTemp();
  const recorded: RevisionChanges[] = [];
  store.onApply((batch) => recorded.push(...batch));
  try {
    await apply(store, put('a', '1'), put('a', '2'), del('a'), put('b', '1'));
    const { store: copy, dir: copyDir } = await openTemp();
    try {
      await apply(copy, put('a', '1'));
      const rest = recorded.slice(1);
      const tamper = (index: number, change: (changes: RevisionChanges) => RevisionChanges): RevisionChanges[] => rest.map((changes, i) => (i === index ? change(changes) : changes));
      const wrongVersion = tamper(0, (changes) => ({ ...changes, events: [{ ...changes.events[0], kv: { ...changes.events[0].kv, version: 5 } }] }));
      await assert.rejects(copy.applyRecorded(wrongVersion), isCorrupt);
      await assert.rejects(copy.applyRecorded(rest.slice(1)), isCorrupt, 'a gap');
      await assert.rejects(copy.applyRecorded(tamper(2, (changes) => ({ ...changes, events: [] }))), isCorrupt, 'an empty revision');
      await assert.rejects(copy.applyRecorded([rest[1]]), isCorrupt, 'a revision that is not the next one');
      assert.equal(copy.currentRevision, 2, 'nothing of a refused call was applied');
      await copy.applyRecorded(rest);
      assert.deepEqual(await allAt(copy, 5), await allAt(store, 5));
      assert.equal((await copy.hashKV(0)).hash, (await store.hashKV(0)).hash);
    } finally {
      await copy.close();
      await cleanup(copyDir);
    }
  } finally {
    await store.close();
    await cleanup(dir);
  }
});

test('rebaseForRestore lowers the consistent index and rewrites meta durably', async () => {
  const { store, dir, path } = await openTemp();
  try {
    await store.applyBatch([{ index: 500, request: put('k', 'v') }], { meta: new Map([['member/1', Buffer.from('old')], ['confchange/7', Buffer.from('none')]]) });
    await store.rebaseForRestore({ consistentIndex: 3, meta: new Map<string, Uint8Array | null>([['member/1', null], ['confchange/7', null], ['member/2', Buffer.from('new')]]) });
    await store.close();
    const reopened = await MvccStore.open({ path });
    try {
      assert.equal(reopened.consistentIndex, 3);
      assert.deepEqual([...reopened.listMeta('').keys()].sort(), ['member/2']);
      assert.equal(reopened.currentRevision, 2);
    } finally {
      await reopened.close();
    }
  } finally {
    await store.close();
    await cleanup(dir);
  }
});

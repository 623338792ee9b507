/**
 * Snapshot and restore benchmark at the store level: how fast a dump is measured and streamed
 * (the Maintenance.Snapshot path without gRPC), how much memory a dump holds while its reader is
 * slow, whether applies keep their pace while a dump is open, how fast a snapshot file is
 * restored and `snapshot status` computed, and how fast a point-in-time roll-forward applies
 * recorded revisions. KVD_BENCH_KEYS keys (default 200,000) of KVD_BENCH_VALUE_BYTES (256).
 *
 * Run: `npm run bench:snapshot` (= node --expose-gc dist/bench/snapshot.js).
 */
import { createReadStream } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MvccStore, SNAPSHOT_CHUNK_BYTES, type RevisionChanges } from '../src/store/mvcc/index.js';
import type { WriteRequest } from '../src/store/mvcc/types.js';
import { snapshotStatus } from '../src/server/restore.js';

const KEYS = Number(process.env.KVD_BENCH_KEYS ?? 200_000);
const VALUE_BYTES = Number(process.env.KVD_BENCH_VALUE_BYTES ?? 256);
const BATCH = 128;
const gc = (globalThis as { gc?: () => void }).gc;

function put(i: number, round: number): WriteRequest {
  const value = Buffer.alloc(VALUE_BYTES, 97 + (round % 26));
  return { type: 'put', request: { key: Buffer.from(`bench/${String(i).padStart(10, '0')}`), value, lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } };
}

async function fill(store: MvccStore, round: number, from: number, to: number): Promise<void> {
  for (let i = from; i < to; i += BATCH) {
    const base = store.consistentIndex;
    const entries = [];
    for (let j = i; j < Math.min(to, i + BATCH); j++) entries.push({ index: base + entries.length + 1, request: put(j, round) });
    await store.applyBatch(entries);
  }
}

function mib(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

function heap(): number {
  gc?.();
  return process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
}

/** Applied puts/s over `count` puts in batches of 128. */
async function applyRate(store: MvccStore, round: number, count: number): Promise<number> {
  const started = performance.now();
  await fill(store, round, 0, count);
  return count / ((performance.now() - started) / 1000);
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'kvd-bench-snapshot-'));
  try {
    const store = await MvccStore.open({ path: join(dir, 'source') });
    let started = performance.now();
    await fill(store, 0, 0, KEYS);
    console.log(`loaded ${KEYS} keys of ${VALUE_BYTES} B in ${((performance.now() - started) / 1000).toFixed(1)} s`);

    // 1. Measure + stream at full speed into a file.
    started = performance.now();
    const dump = await store.openDump();
    const measuredMs = performance.now() - started;
    const chunks: Buffer[] = [];
    const streamStarted = performance.now();
    for await (const chunk of dump.framedChunks()) chunks.push(Buffer.from(chunk));
    const streamMs = performance.now() - streamStarted;
    const file = join(dir, 'bench.snap');
    await writeFile(file, Buffer.concat(chunks));
    chunks.length = 0;
    const size = (await stat(file)).size;
    console.log(`dump: ${mib(size)}, ${dump.entries} entries; measure pass ${measuredMs.toFixed(0)} ms, stream ${streamMs.toFixed(0)} ms (${mib((size * 1000) / streamMs)}/s)`);

    // 2. Memory held while a slow reader (one chunk per 20 ms) streams a dump, then applies with
    // and without such a reader (the reader does not force GCs in the timed part).
    const heapBefore = heap();
    let peak = 0;
    let seen = 0;
    for await (const chunk of (await store.openDump()).framedChunks()) {
      seen += chunk.length;
      if (seen > 8 * SNAPSHOT_CHUNK_BYTES) break; // a few chunks show the steady state
      peak = Math.max(peak, heap() - heapBefore);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const writes = Math.min(KEYS, 50_000);
    const baseline = await applyRate(store, 1, writes);
    const slow = await store.openDump();
    const reader = (async () => {
      for await (const chunk of slow.framedChunks()) {
        void chunk;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    const during = await applyRate(store, 2, writes);
    await reader;
    console.log(`applied puts/s: ${baseline.toFixed(0)} without a dump, ${during.toFixed(0)} while a slow reader streams one; heap+buffers held by a slowly read dump: peak ${mib(peak)} above baseline`);

    // 3. Restore and status.
    started = performance.now();
    await MvccStore.restoreSnapshot({ path: join(dir, 'restored'), chunks: createReadStream(file), tail: 'snapshot-file' });
    const restored = await MvccStore.open({ path: join(dir, 'restored') });
    console.log(`restore (write + fsync + reopen): ${((performance.now() - started) / 1000).toFixed(2)} s`);
    started = performance.now();
    const status = await snapshotStatus(file);
    console.log(`snapshot status: ${((performance.now() - started) / 1000).toFixed(2)} s (revision ${status.revision}, ${status.totalKey} keys)`);

    // 4. Point-in-time roll-forward of the revisions applied after the dump.
    const recorded: RevisionChanges[] = [];
    const source = await MvccStore.open({ path: join(dir, 'pitr-source') });
    const unsubscribe = source.onApply((batch) => recorded.push(...batch));
    await fill(source, 3, 0, Math.min(KEYS, 100_000));
    unsubscribe();
    const target = await MvccStore.open({ path: join(dir, 'pitr-target') });
    started = performance.now();
    for (let i = 0; i < recorded.length; i += 1000) await target.applyRecorded(recorded.slice(i, i + 1000));
    const replayMs = performance.now() - started;
    console.log(`applyRecorded: ${recorded.length} revisions in ${(replayMs / 1000).toFixed(2)} s (${(recorded.length / (replayMs / 1000)).toFixed(0)} revisions/s)`);
    await Promise.all([store.close(), restored.close(), source.close(), target.close()]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();

/**
 * MVCC store benchmark: applied puts/s in batches of 128, point-get and 100-key range latency,
 * key-index memory per key, and reopen time, at KVD_BENCH_KEYS keys (default 1,000,000).
 *
 * Run: `node --expose-gc dist/bench/store.js` (scale down with KVD_BENCH_KEYS=100000).
 * Targets: >= 100,000 applied puts/s; <= 200 B/key of index memory; reopen of 1M keys <= 10 s.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MvccStore } from '../src/store/mvcc/index.js';
import type { RangeRequest, WriteRequest } from '../src/store/mvcc/types.js';

const KEYS = Number(process.env.KVD_BENCH_KEYS ?? 1_000_000);
const BATCH = 128;
const VALUE_BYTES = Number(process.env.KVD_BENCH_VALUE_BYTES ?? 100);
const SAMPLES = 5000;

const gc = (globalThis as { gc?: () => void }).gc;

function key(i: number): Uint8Array {
  return Buffer.from(`bench/key/${String(i).padStart(10, '0')}`, 'latin1');
}

function heapUsed(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}

function range(start: Uint8Array, limit: number, rangeEnd: Uint8Array): RangeRequest {
  return {
    key: start, rangeEnd, limit, revision: 0, sortOrder: 'none', sortTarget: 'key', serializable: true, keysOnly: false, countOnly: false,
    minModRevision: 0, maxModRevision: 0, minCreateRevision: 0, maxCreateRevision: 0,
  };
}

function percentiles(samples: number[]): { p50: number; p99: number; mean: number } {
  const sorted = samples.slice().sort((a, b) => a - b);
  const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { p50: at(0.5), p99: at(0.99), mean: samples.reduce((a, b) => a + b, 0) / samples.length };
}

/** Deterministic pseudo-random numbers (xorshift32), so runs are comparable. */
function makeRandom(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 2 ** 32;
  };
}

async function applyPuts(store: MvccStore, from: number, to: number, round: number): Promise<number> {
  const value = Buffer.alloc(VALUE_BYTES, 0x61 + round);
  const started = performance.now();
  let index = store.consistentIndex;
  for (let i = from; i < to; i += BATCH) {
    const entries: Array<{ index: number; request: WriteRequest }> = [];
    for (let j = i; j < Math.min(to, i + BATCH); j += 1) {
      index += 1;
      entries.push({ index, request: { type: 'put', request: { key: key(j), value, lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } } });
    }
    await store.applyBatch(entries);
  }
  return ((to - from) / (performance.now() - started)) * 1000;
}

/** Writes KEYS new keys, then updates up to 200,000 of them (in its own scope so the store can be collected). */
async function load(path: string, results: Record<string, unknown>): Promise<void> {
  const store = await MvccStore.open({ path });
  results.putsPerSecondNewKeys = Math.round(await applyPuts(store, 0, KEYS, 0));
  const updates = Math.min(KEYS, 200_000);
  results.putsPerSecondUpdates = Math.round(await applyPuts(store, 0, updates, 1));
  await store.close();
}

async function main(): Promise<void> {
  if (gc === undefined) console.warn('run with --expose-gc for accurate memory figures');
  const dir = await mkdtemp(join(tmpdir(), 'kvd-bench-store-'));
  const path = join(dir, 'db');
  const results: Record<string, unknown> = { keys: KEYS, batch: BATCH, valueBytes: VALUE_BYTES };
  try {
    await load(path, results);

    const baseline = heapUsed();
    const reopenStarted = performance.now();
    const store = await MvccStore.open({ path });
    results.reopenSeconds = Number(((performance.now() - reopenStarted) / 1000).toFixed(2));
    const afterOpen = heapUsed();
    results.indexBytesPerKey = Math.round((afterOpen - baseline) / store.indexedKeys);
    results.indexedKeys = store.indexedKeys;

    const random = makeRandom(42);
    const pointSamples: number[] = [];
    for (let n = 0; n < SAMPLES; n += 1) {
      const k = key(Math.floor(random() * KEYS));
      const started = performance.now();
      const response = await store.range(range(k, 0, new Uint8Array(0)));
      pointSamples.push((performance.now() - started) * 1000);
      if (response.kvs.length !== 1) throw new Error('point get missed');
    }
    results.pointGetMicros = percentiles(pointSamples);

    const rangeSamples: number[] = [];
    for (let n = 0; n < SAMPLES / 5; n += 1) {
      const first = Math.floor(random() * Math.max(1, KEYS - 100));
      const started = performance.now();
      // [key(i), key(i + 100)): 100 keys (count covers the whole range, so the range is what is bounded).
      const response = await store.range(range(key(first), 0, key(first + 100)));
      rangeSamples.push((performance.now() - started) * 1000);
      if (response.kvs.length !== Math.min(100, KEYS)) throw new Error('range came back short');
    }
    results.range100Micros = percentiles(rangeSamples);

    const compactStarted = performance.now();
    const compactIndex = store.consistentIndex + 1;
    await store.applyBatch([{ index: compactIndex, request: { type: 'compact', request: { revision: store.currentRevision, physical: true } } }]);
    await store.waitCompacted(store.currentRevision);
    results.compactSeconds = Number(((performance.now() - compactStarted) / 1000).toFixed(2));
    results.dbSizeBytes = await store.dbSizeBytes();
    await store.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  for (const [name, value] of Object.entries(results)) console.log(`${name}: ${typeof value === 'object' ? JSON.stringify(value, (_, v: unknown) => (typeof v === 'number' ? Math.round(v * 10) / 10 : v)) : String(value)}`);
}

await main();

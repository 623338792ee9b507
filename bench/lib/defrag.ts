/**
 * The `defrag1m` scenario (issue 13, item 6): how much a defragmentation disturbs traffic. A fresh
 * 3-member cluster is loaded with 1,000,000 keys (256-byte values), the first half is deleted and
 * compacted away (physically), so that half the backend is garbage. Then two measured windows of
 * the same traffic, puts of timestamped values from 16 clients and 4 watch streams on their
 * prefix (put latency, and watch delivery latency = put issued → event received):
 *
 * - `baseline`: {@link DEFRAG_SHAPE}.baselineMs of traffic, no defragmentation (once every
 *   member has finished removing the compacted history);
 * - `defrag`: the same traffic while every member is defragmented in turn, one Defragment call
 *   after the other (what `etcdctl defrag --endpoints=a,b,c` does), with leadMs of traffic before
 *   and tailMs after. The window lasts as long as the defragmentations take.
 *
 * etcd's defrag rewrites its bbolt file holding the backend's lock, so the member being
 * defragmented serves nothing meanwhile; kvd's runs in slices beside the traffic.
 */
import * as grpc from '@grpc/grpc-js';
import { loadServices } from '../../src/api/proto.js';
import type { BenchCluster } from './clusters.js';
import { runJob, type RunResult } from './driver.js';
import { keyFor } from './jobs.js';

/** Shape of the scenario. */
export const DEFRAG_SHAPE = {
  /** KVD_BENCH_DEFRAG_KEYS overrides it for a quick trial of the scenario. */
  keys: Number(process.env.KVD_BENCH_DEFRAG_KEYS ?? 1_000_000),
  /** Keys per DeleteRange of the first half, and how many run at once. */
  deleteChunk: 10_000,
  deleteConcurrency: 4,
  clients: 16,
  conns: 4,
  watchStreams: 4,
  /** The put key space of the measured traffic (prefix `w`), apart from the loaded keys (`k`). */
  putKeySpace: 10_000,
  baselineMs: 20_000,
  leadMs: 3_000,
  tailMs: 3_000,
};

/** Backend sizes of one member (Maintenance.Status). */
export interface MemberSizes { readonly name: string; readonly dbSizeBytes: number; readonly dbSizeInUseBytes: number }

/** What one run of the scenario measured. */
export interface DefragScenarioResult {
  readonly loadS: number;
  readonly deleteS: number;
  readonly compactS: number;
  readonly baseline: RunResult;
  readonly defrag: RunResult;
  /** Seconds each member's Defragment call took, in call order. */
  readonly defragSeconds: readonly number[];
  readonly defragErrors: readonly string[];
  readonly sizesBefore: readonly MemberSizes[];
  readonly sizesAfter: readonly MemberSizes[];
}

type Unary = (request: object, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null, response: any) => void) => void;

function call(client: grpc.Client, method: string, request: object, timeoutMs: number): Promise<any> {
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, Unary>)[method].call(client, request, { deadline: Date.now() + timeoutMs }, (error, response) => (error === null ? resolve(response) : reject(error)));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs the scenario on a fresh cluster; `log` reports progress. */
export async function runDefragScenario(cluster: BenchCluster, options: { workers: number; log: (text: string) => void }): Promise<DefragScenarioResult> {
  const services = loadServices();
  const endpoints = cluster.members.map((m) => m.endpoint);
  const kv = new services.KV(endpoints[0], grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
  const maintenance = cluster.members.map((m) => new services.Maintenance(m.endpoint, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }));
  const sizes = async (): Promise<MemberSizes[]> => Promise.all(cluster.members.map(async (m, i) => {
    const status = await call(maintenance[i], 'Status', {}, 10_000);
    return { name: m.name, dbSizeBytes: Number(status.dbSize), dbSizeInUseBytes: Number(status.dbSizeInUse) };
  }));
  try {
    options.log(`defrag1m: loading ${DEFRAG_SHAPE.keys} keys`);
    const load = await runJob({ kind: 'load', from: 0, to: DEFRAG_SHAPE.keys, batch: 100, endpoints, durationMs: 0, totalOps: 0, keySize: 8, valueSize: 256, clients: 16, conns: 4 }, { workers: options.workers, members: cluster.members });
    if (load.errors > 0) throw new Error(`load failed: ${JSON.stringify(load.errorSamples)}`);

    options.log('defrag1m: deleting the first half');
    const deleteStarted = performance.now();
    const half = DEFRAG_SHAPE.keys / 2;
    let next = 0;
    await Promise.all(Array.from({ length: DEFRAG_SHAPE.deleteConcurrency }, async () => {
      while (next < half) {
        const from = next;
        next += DEFRAG_SHAPE.deleteChunk;
        await call(kv, 'DeleteRange', { key: keyFor('k', from, 8), range_end: keyFor('k', Math.min(half, from + DEFRAG_SHAPE.deleteChunk), 8) }, 120_000);
      }
    }));
    const deleteS = (performance.now() - deleteStarted) / 1000;

    options.log('defrag1m: compacting (physical)');
    const compactStarted = performance.now();
    const revision = (await call(kv, 'Range', { key: Buffer.from('none') }, 30_000)).header.revision;
    await call(kv, 'Compact', { revision, physical: true }, 600_000);
    // Every member removes the history in the background: wait until no member's in-use size
    // has moved for 3 readings, so that the baseline is not measured beside a compaction.
    let previous = '';
    for (let stable = 0; stable < 3; ) {
      await sleep(1_000);
      const now = JSON.stringify((await sizes()).map((m) => m.dbSizeInUseBytes));
      stable = now === previous ? stable + 1 : 0;
      previous = now;
    }
    const compactS = (performance.now() - compactStarted) / 1000;
    const sizesBefore = await sizes();

    const spec = { kind: 'putwatch' as const, keySpace: DEFRAG_SHAPE.putKeySpace, prefix: 'w', watchStreams: DEFRAG_SHAPE.watchStreams, endpoints, durationMs: 3_600_000, totalOps: 0, keySize: 8, valueSize: 256, clients: DEFRAG_SHAPE.clients, conns: DEFRAG_SHAPE.conns };
    options.log(`defrag1m: baseline traffic, ${DEFRAG_SHAPE.baselineMs / 1000} s`);
    const baseline = await runJob(spec, { workers: options.workers, members: cluster.members, during: () => sleep(DEFRAG_SHAPE.baselineMs), end: 'stop-after-during' });

    options.log('defrag1m: the same traffic while every member is defragmented in turn');
    const defragSeconds: number[] = [];
    const defragErrors: string[] = [];
    const defrag = await runJob(spec, {
      workers: options.workers,
      members: cluster.members,
      end: 'stop-after-during',
      during: async () => {
        await sleep(DEFRAG_SHAPE.leadMs);
        for (const [i, member] of cluster.members.entries()) {
          const started = performance.now();
          try {
            await call(maintenance[i], 'Defragment', {}, 600_000);
          } catch (error: unknown) {
            defragErrors.push(`${member.name}: ${error instanceof Error ? error.message : String(error)}`);
          }
          defragSeconds.push(Math.round((performance.now() - started) / 10) / 100);
          options.log(`defrag1m: ${member.name} defragmented in ${defragSeconds[defragSeconds.length - 1]} s`);
        }
        await sleep(DEFRAG_SHAPE.tailMs);
      },
    });
    const sizesAfter = await sizes();
    return { loadS: load.elapsedS, deleteS: Math.round(deleteS * 10) / 10, compactS: Math.round(compactS * 10) / 10, baseline, defrag, defragSeconds, defragErrors, sizesBefore, sizesAfter };
  } finally {
    kv.close();
    for (const client of maintenance) client.close();
  }
}

const fmt = (value: number, digits = 2): string => (Number.isFinite(value) ? value.toFixed(digits) : '-');
const mb = (bytes: number): string => (bytes / 2 ** 20).toFixed(0);

/** The scenario's results as a markdown table, one row per system and phase. */
export function defragTable(results: ReadonlyArray<{ system: string; result: DefragScenarioResult }>): string {
  const lines = [
    '| system | phase | put ops/s | put p50 ms | put p99 ms | put max ms | watch p50 ms | watch p99 ms | watch max ms | watch events | errors | defrag s per member | db MB before → after (in use) | other load (cores) |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|',
  ];
  for (const { system, result } of results) {
    for (const phase of ['baseline', 'defrag'] as const) {
      const run = result[phase];
      const watch = run.watch?.latency;
      const defrag = phase === 'defrag' ? result.defragSeconds.join(' / ') : '';
      const sizes = phase === 'defrag' ? result.sizesBefore.map((before, i) => `${mb(before.dbSizeBytes)} → ${mb(result.sizesAfter[i]?.dbSizeBytes ?? 0)} (${mb(result.sizesAfter[i]?.dbSizeInUseBytes ?? 0)})`).join(', ') : '';
      lines.push(`| ${system} | ${phase} | ${run.opsPerS} | ${fmt(run.latency.p50Ms)} | ${fmt(run.latency.p99Ms)} | ${fmt(run.latency.maxMs)} | ${fmt(watch?.p50Ms ?? NaN)} | ${fmt(watch?.p99Ms ?? NaN)} | ${fmt(watch?.maxMs ?? NaN)} | ${run.watch?.events ?? 0} | ${run.errors} | ${defrag} | ${sizes} | ${fmt(run.otherCores)} |`);
    }
  }
  return `${lines.join('\n')}\n`;
}

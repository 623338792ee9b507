/**
 * The named workloads of `bench/run.ts`. Every workload uses 8-byte keys and 256-byte values
 * unless noted, and spreads its connections round-robin over the target endpoints (all members
 * by default, as etcd's `benchmark` tool does).
 */
import type { JobSpec } from './driver.js';

/** Settings a workload takes from the command line. */
export interface WorkloadContext {
  readonly endpoints: readonly string[];
  readonly durationMs: number;
  readonly keySize: number;
  readonly valueSize: number;
}

/** How the runner drives a workload. */
export interface WorkloadDefinition {
  readonly name: string;
  readonly description: string;
  /** Keys k0000000.. that must exist before the run (loaded once per cluster, unmeasured). */
  readonly preloadKeys: number;
  /** 'fresh': needs a newly started cluster per run (rss1m); 'shared': any running cluster. */
  readonly cluster: 'fresh' | 'shared';
  /** Burst writes the runner issues from the main thread after 'go' (watch only). */
  readonly burstWrites: number;
  /** A scenario with phases of its own (bench/lib/defrag.ts) instead of one measured job. */
  readonly scenario?: 'defrag';
  readonly spec: (context: WorkloadContext) => JobSpec;
}

const base = (context: WorkloadContext, clients: number, conns: number): { endpoints: readonly string[]; durationMs: number; totalOps: number; keySize: number; valueSize: number; clients: number; conns: number } => ({
  endpoints: context.endpoints, durationMs: context.durationMs, totalOps: 0, keySize: context.keySize, valueSize: context.valueSize, clients, conns,
});

/** Watch workload shape (10,000 watchers over 100 streams; a burst of 1,000 writes). */
export const WATCH_SHAPE = { streams: 100, watchers: 10_000, writes: 1_000, key: 'watch-key' } as const;
const RANGE_KEY_SPACE = 1_000;
const RSS_KEYS = 1_000_000;

/** Every workload by name. */
export const WORKLOADS: readonly WorkloadDefinition[] = [
  { name: 'put1', description: 'sequential put, 1 client, 1 connection', preloadKeys: 0, cluster: 'shared', burstWrites: 0, spec: (c) => ({ kind: 'put', keySpace: 100_000, ...base(c, 1, 1) }) },
  { name: 'put64', description: 'put, 64 clients over 8 connections, 100k key space', preloadKeys: 0, cluster: 'shared', burstWrites: 0, spec: (c) => ({ kind: 'put', keySpace: 100_000, ...base(c, 64, 8) }) },
  { name: 'put256', description: 'put, 256 clients over 16 connections, 100k key space', preloadKeys: 0, cluster: 'shared', burstWrites: 0, spec: (c) => ({ kind: 'put', keySpace: 100_000, ...base(c, 256, 16) }) },
  { name: 'range-l64', description: 'linearizable single-key range, 64 clients / 8 conns, 1k keys', preloadKeys: RANGE_KEY_SPACE, cluster: 'shared', burstWrites: 0, spec: (c) => ({ kind: 'range', keySpace: RANGE_KEY_SPACE, keysPerRange: 1, consistency: 'linearizable', ...base(c, 64, 8) }) },
  { name: 'range-s64', description: 'serializable single-key range, 64 clients / 8 conns, 1k keys', preloadKeys: RANGE_KEY_SPACE, cluster: 'shared', burstWrites: 0, spec: (c) => ({ kind: 'range', keySpace: RANGE_KEY_SPACE, keysPerRange: 1, consistency: 'serializable', ...base(c, 64, 8) }) },
  { name: 'range10-l64', description: 'linearizable 10-key range, 64 clients / 8 conns', preloadKeys: RANGE_KEY_SPACE, cluster: 'shared', burstWrites: 0, spec: (c) => ({ kind: 'range', keySpace: RANGE_KEY_SPACE, keysPerRange: 10, consistency: 'linearizable', ...base(c, 64, 8) }) },
  { name: 'txn64', description: 'compare-and-swap txn (compare mod_revision, put), key per client, 64 clients / 8 conns', preloadKeys: 0, cluster: 'shared', burstWrites: 0, spec: (c) => ({ kind: 'txn', ...base(c, 64, 8) }) },
  { name: 'lease1k', description: 'lease keep-alive round trips over 1,000 leases, 16 streams / 4 conns', preloadKeys: 0, cluster: 'shared', burstWrites: 0, spec: (c) => ({ kind: 'lease', leases: 1_000, ...base(c, 16, 4) }) },
  {
    name: 'watch', description: `${WATCH_SHAPE.watchers} watchers on one key over ${WATCH_SHAPE.streams} streams (10 conns), burst of ${WATCH_SHAPE.writes} puts; latency = put issued → event received`,
    preloadKeys: 0, cluster: 'shared', burstWrites: WATCH_SHAPE.writes,
    spec: (c) => ({ kind: 'watch', key: WATCH_SHAPE.key, streams: WATCH_SHAPE.streams, watchersPerStream: WATCH_SHAPE.watchers / WATCH_SHAPE.streams, expectedEvents: WATCH_SHAPE.watchers * WATCH_SHAPE.writes, timeoutMs: 15_000, ...base(c, 0, 10) }),
  },
  {
    name: 'defrag1m', description: 'fresh cluster; 1M keys, half deleted and compacted; puts + watchers (latency) without, then during, a defrag of every member in turn (bench/lib/defrag.ts)',
    preloadKeys: 0, cluster: 'fresh', burstWrites: 0, scenario: 'defrag',
    spec: () => { throw new Error('defrag1m is a scenario, not a job'); },
  },
  { name: 'rss1m', description: 'fresh cluster; load 1M keys (txns of 100 puts, 16 clients / 4 conns); peak RSS per member', preloadKeys: 0, cluster: 'fresh', burstWrites: 0, spec: (c) => ({ kind: 'load', from: 0, to: RSS_KEYS, batch: 100, ...base(c, 16, 4) }) },
];

/** The workloads of a plain `--vs-etcd` run (rss1m and defrag1m are separate: `--workloads rss1m`). */
export const DEFAULT_WORKLOADS = ['put1', 'put64', 'put256', 'range-l64', 'range-s64', 'txn64', 'lease1k', 'watch'] as const;

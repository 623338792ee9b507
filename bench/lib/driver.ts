/**
 * The load driver: splits a workload's connections and clients over worker threads, waits for
 * their setup, then measures one run: throughput, merged latency histogram, errors, the
 * generator's own CPU (process-wide, so it includes every worker), and each server member's CPU
 * seconds and peak RSS over the run (peak reset at the start via clear_refs).
 */
import { Worker } from 'node:worker_threads';
import { Histogram, type LatencySummary } from './histogram.js';
import { machineCpu, resetPeakRss, sampleProcess } from './proc.js';
import type { BenchMember } from './clusters.js';
import type { Job, JobBase, WorkerMessage, WorkerResult } from './jobs.js';

const WORKER_URL = new URL('./worker.js', import.meta.url);

/** Job fields without the per-worker split (the driver fills those in). */
export type JobSpec = DistributiveOmit<Job, 'workerIndex' | 'connOffset' | 'clientOffset' | 'shared'>;
type DistributiveOmit<T, K extends keyof any> = T extends unknown ? Omit<T, K> : never;

/** Per-member resource use over one run. */
export interface MemberUsage {
  readonly name: string;
  readonly pid: number;
  readonly cpuSeconds: number;
  readonly peakRssMB: number;
  readonly rssMB: number;
}

/** One measured run. */
export interface RunResult {
  readonly ops: number;
  readonly elapsedS: number;
  readonly opsPerS: number;
  readonly latency: LatencySummary;
  readonly errors: number;
  readonly errorSamples: Record<string, number>;
  /** CPU seconds of this process (driver + workers) during the run. */
  readonly generatorCpuS: number;
  /** Generator CPU as a share of one core over the run. */
  readonly generatorCores: number;
  readonly members: readonly MemberUsage[];
  /** Sum of member CPU seconds. */
  readonly serverCpuS: number;
  /** Largest member peak RSS in MB. */
  readonly maxPeakRssMB: number;
  /** CPU cores busy machine-wide during the run (all processes). */
  readonly machineBusyCores: number;
  /** Busy cores used by processes other than the members and this generator (noise from other work). */
  readonly otherCores: number;
  /** The measured window on CLOCK_MONOTONIC in µs (for trimming server CPU profiles). */
  readonly windowMonotonicUs: { readonly from: number; readonly to: number };
  /** putwatch: events received and their delivery latency. */
  readonly watch?: { readonly events: number; readonly latency: LatencySummary };
}

/** Options for {@link runJob}. */
export interface RunJobOptions {
  /** Worker threads (capped by conns; each gets at least one connection). */
  readonly workers: number;
  /** Server processes to measure. */
  readonly members: readonly BenchMember[];
  /** Runs in the main thread right after 'go' (the watch burst writer); awaited before results. */
  readonly during?: () => Promise<void>;
  /** 'stop-after-during': the workers stop once `during` has finished (their duration is only a cap). */
  readonly end?: 'duration' | 'stop-after-during';
}

/** Runs one job over `options.workers` worker threads and measures it. */
export async function runJob(spec: JobSpec, options: RunJobOptions): Promise<RunResult> {
  const workerCount = Math.max(1, Math.min(options.workers, spec.conns, spec.kind === 'watch' ? spec.streams : spec.clients));
  const shared = new SharedArrayBuffer(8);
  const workers: Worker[] = [];
  const results: Array<Promise<WorkerResult>> = [];
  const readies: Array<Promise<void>> = [];
  let connOffset = 0;
  let clientOffset = 0;
  for (let w = 0; w < workerCount; w++) {
    const conns = share(spec.conns, workerCount, w);
    const clients = share(spec.clients, workerCount, w);
    const base: Partial<JobBase> = { workerIndex: w, connOffset, clientOffset, conns, clients, shared };
    let job: Job;
    if (spec.kind === 'load') {
      const span = spec.to - spec.from;
      job = { ...spec, ...base, from: spec.from + Math.floor((span * w) / workerCount), to: spec.from + Math.floor((span * (w + 1)) / workerCount) } as Job;
    } else if (spec.kind === 'watch') {
      const streams = share(spec.streams, workerCount, w);
      job = { ...spec, ...base, streams, expectedEvents: Math.round((spec.expectedEvents * streams) / spec.streams) } as Job;
    } else if (spec.kind === 'lease') {
      job = { ...spec, ...base, leases: share(spec.leases, workerCount, w) } as Job;
    } else if (spec.kind === 'putwatch') {
      job = { ...spec, ...base, watchStreams: share(spec.watchStreams, workerCount, w) } as Job;
    } else {
      job = { ...spec, ...base } as Job;
    }
    connOffset += conns;
    clientOffset += clients;
    const worker = new Worker(WORKER_URL, { workerData: job });
    workers.push(worker);
    let readyResolve: () => void = () => undefined;
    readies.push(new Promise<void>((resolve) => { readyResolve = resolve; }));
    results.push(new Promise<WorkerResult>((resolve, reject) => {
      worker.on('message', (message: WorkerMessage) => {
        if (message.type === 'ready') readyResolve();
        else if (message.type === 'result') resolve(message.result);
        else reject(new Error(`worker ${w}: ${message.error}`));
      });
      worker.on('error', reject);
      worker.on('exit', (code) => reject(new Error(`worker ${w} exited with ${code}`)));
    }));
  }
  try {
    await Promise.race([Promise.all(readies), Promise.all(results)]);
    for (const member of options.members) resetPeakRss(member.pid);
    const before = new Map(options.members.map((m) => [m.pid, sampleProcess(m.pid)]));
    const cpuBefore = process.cpuUsage();
    const machineBefore = machineCpu();
    const wallBefore = performance.now();
    const monotonicFrom = Number(process.hrtime.bigint() / 1000n);
    for (const worker of workers) worker.postMessage({ type: 'go' });
    if (options.during !== undefined) await options.during();
    if (options.end === 'stop-after-during') Atomics.store(new Int32Array(shared), 1, 1);
    const done = await Promise.all(results);
    const wallS = (performance.now() - wallBefore) / 1000;
    const monotonicTo = Number(process.hrtime.bigint() / 1000n);
    const cpu = process.cpuUsage(cpuBefore);
    const machineAfter = machineCpu();
    const members: MemberUsage[] = options.members.map((m) => {
      const start = before.get(m.pid);
      const end = sampleProcess(m.pid);
      return {
        name: m.name,
        pid: m.pid,
        cpuSeconds: round2((end?.cpuSeconds ?? 0) - (start?.cpuSeconds ?? 0)),
        peakRssMB: round2((end?.peakRssBytes ?? 0) / 2 ** 20),
        rssMB: round2((end?.rssBytes ?? 0) / 2 ** 20),
      };
    });
    const histogram = new Histogram();
    const watchHistogram = new Histogram();
    let watchEvents = 0;
    const errorSamples: Record<string, number> = {};
    let ops = 0;
    let errors = 0;
    let elapsedMs = 0;
    for (const result of done) {
      histogram.merge(result.latency);
      if (result.watch !== undefined) {
        watchHistogram.merge(result.watch.latency);
        watchEvents += result.watch.events;
      }
      ops += result.ops;
      errors += result.errors;
      elapsedMs = Math.max(elapsedMs, result.elapsedMs);
      for (const [text, count] of Object.entries(result.errorSamples)) errorSamples[text] = (errorSamples[text] ?? 0) + count;
    }
    const generatorCpuS = (cpu.user + cpu.system) / 1e6;
    const machineBusyS = machineAfter.busySeconds - machineBefore.busySeconds;
    const serverCpuS = members.reduce((sum, m) => sum + m.cpuSeconds, 0);
    return {
      ops,
      elapsedS: round2(elapsedMs / 1000),
      opsPerS: Math.round(ops / Math.max(elapsedMs / 1000, 1e-3)),
      latency: histogram.summary(),
      errors,
      errorSamples,
      generatorCpuS: round2(generatorCpuS),
      generatorCores: round2(generatorCpuS / Math.max(wallS, 1e-3)),
      members,
      serverCpuS: round2(serverCpuS),
      maxPeakRssMB: Math.max(...members.map((m) => m.peakRssMB)),
      machineBusyCores: round2(machineBusyS / Math.max(wallS, 1e-3)),
      windowMonotonicUs: { from: monotonicFrom, to: monotonicTo },
      otherCores: round2(Math.max(0, machineBusyS - serverCpuS - generatorCpuS) / Math.max(wallS, 1e-3)),
      watch: spec.kind === 'putwatch' ? { events: watchEvents, latency: watchHistogram.summary() } : undefined,
    };
  } finally {
    await Promise.all(workers.map((worker) => worker.terminate()));
  }
}

function share(total: number, parts: number, index: number): number {
  return Math.floor(total / parts) + (index < total % parts ? 1 : 0);
}

function round2(value: number): number { return Math.round(value * 100) / 100; }

#!/usr/bin/env node
/**
 * `npm run bench -- [options]`: runs kvd (and, with --vs-etcd, a real etcd) through the named
 * workloads, alternating the two systems, and prints medians and kvd/etcd ratios as a markdown
 * table; the raw runs go to bench/results/<timestamp>.json.
 *
 * Options:
 *   --vs-etcd            also run a fresh 3-member etcd (/usr/bin/etcd; skipped with a note if absent)
 *   --workloads a,b,c    workloads (default: put1,put64,put256,range-l64,range-s64,txn64,lease1k,watch;
 *                        also range10-l64, rss1m and defrag1m)
 *   --duration <s>       seconds per measured run (default 8)
 *   --reps <n>           repetitions per workload and system (default 3)
 *   --quick              --duration 3 --reps 1
 *   --workers <n>        load generator worker threads (default 2)
 *   --target all|leader  endpoints the clients dial (default all members, round-robin)
 *   --profile            run kvd members under `node --cpu-prof` and summarise the leader's profile
 *   --check-perf         run `etcdctl check perf --load=s|m|l` against fresh kvd (and etcd with --vs-etcd) clusters
 *   --check-perf-loads   loads for --check-perf (default s,m,l)
 *   --watch-reps <n>     repetitions of the watch workload (default 1: one burst takes 1-2 minutes)
 */
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus, totalmem } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { loadServices } from '../src/api/proto.js';
import { ETCDCTL_BIN, haveEtcd, startCluster, type BenchCluster, type SystemName } from './lib/clusters.js';
import { runJob, type RunResult } from './lib/driver.js';
import { median } from './lib/histogram.js';
import { nowMs } from './lib/jobs.js';
import { DEFAULT_WORKLOADS, WORKLOADS, WATCH_SHAPE, type WorkloadDefinition } from './lib/workloads.js';
import { summariseProfile, formatSummary } from './profile-summary.js';
import { defragTable, runDefragScenario, type DefragScenarioResult } from './lib/defrag.js';

/** Directory of result files: <repo>/bench/results (this file compiles to <outDir>/bench/run.js). */
const RESULTS_DIR = fileURLToPath(new URL('../../bench/results/', import.meta.url));

interface Options {
  vsEtcd: boolean; workloads: string[]; durationS: number; reps: number; workers: number;
  target: 'all' | 'leader'; profile: boolean; watchReps: number; checkPerf: boolean; checkPerfLoads: string[];
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      'vs-etcd': { type: 'boolean', default: false },
      workloads: { type: 'string' },
      duration: { type: 'string' },
      reps: { type: 'string' },
      quick: { type: 'boolean', default: false },
      workers: { type: 'string', default: '2' },
      target: { type: 'string', default: 'all' },
      profile: { type: 'boolean', default: false },
      'check-perf': { type: 'boolean', default: false },
      'check-perf-loads': { type: 'string', default: 's,m,l' },
      'watch-reps': { type: 'string', default: '1' },
    },
    strict: true,
  });
  const workloads = values.workloads === undefined ? (values['check-perf'] === true ? [] : [...DEFAULT_WORKLOADS]) : values.workloads.split(',').filter((w) => w !== '');
  for (const name of workloads) if (!WORKLOADS.some((w) => w.name === name)) throw new Error(`unknown workload ${name} (known: ${WORKLOADS.map((w) => w.name).join(', ')})`);
  if (values.target !== 'all' && values.target !== 'leader') throw new Error('--target must be all or leader');
  const quick = values.quick === true;
  return {
    vsEtcd: values['vs-etcd'] === true,
    workloads,
    durationS: Number(values.duration ?? (quick ? 3 : 8)),
    reps: Number(values.reps ?? (quick ? 1 : 3)),
    workers: Number(values.workers),
    target: values.target,
    profile: values.profile === true,
    checkPerf: values['check-perf'] === true,
    checkPerfLoads: (values['check-perf-loads'] ?? 's,m,l').split(','),
    watchReps: Number(values['watch-reps']),
  };
}

function log(text: string): void { process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${text}\n`); }

/** A running cluster plus which key ranges were preloaded into it. */
interface Running { cluster: BenchCluster; preloaded: number }

async function targetEndpoints(running: Running, target: 'all' | 'leader'): Promise<string[]> {
  if (target === 'leader') return [(await running.cluster.leader()).endpoint];
  return running.cluster.members.map((m) => m.endpoint);
}

async function preload(running: Running, keys: number, workers: number): Promise<void> {
  if (running.preloaded >= keys) return;
  const endpoints = running.cluster.members.map((m) => m.endpoint);
  const result = await runJob({ kind: 'load', from: running.preloaded, to: keys, batch: 100, endpoints, durationMs: 0, totalOps: 0, keySize: 8, valueSize: 256, clients: 8, conns: 2 }, { workers, members: running.cluster.members });
  if (result.errors > 0) throw new Error(`preload failed: ${JSON.stringify(result.errorSamples)}`);
  running.preloaded = keys;
}

/** The watch burst: WATCH_SHAPE.writes puts of timestamped values on the watched key, 8 at a time. */
async function watchBurst(endpoint: string): Promise<void> {
  const kv = new (loadServices().KV)(endpoint, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as unknown as grpc.Client & Record<string, (r: object, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => void>;
  let issued = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (issued < WATCH_SHAPE.writes) {
      issued += 1;
      const value = Buffer.alloc(256);
      value.writeDoubleLE(nowMs(), 0);
      await new Promise<void>((resolve, reject) => kv.Put({ key: Buffer.from(WATCH_SHAPE.key), value }, { deadline: Date.now() + 30_000 }, (e) => (e === null ? resolve() : reject(e))));
    }
  }));
  kv.close();
}

async function runOnce(workload: WorkloadDefinition, running: Running, options: Options): Promise<RunResult> {
  if (workload.preloadKeys > 0) await preload(running, workload.preloadKeys, options.workers);
  const endpoints = await targetEndpoints(running, options.target);
  const spec = workload.spec({ endpoints, durationMs: options.durationS * 1000, keySize: 8, valueSize: 256 });
  const leader = await running.cluster.leader();
  return runJob(spec, {
    workers: options.workers,
    members: running.cluster.members,
    during: workload.burstWrites > 0 ? () => watchBurst(leader.endpoint) : undefined,
  });
}

interface Record_ { workload: string; system: SystemName; rep: number; result: RunResult }

function fmt(value: number, digits = 2): string { return Number.isFinite(value) ? value.toFixed(digits) : '-'; }

/** Medians per workload and system, and kvd/etcd ratios, as markdown. */
function table(records: readonly Record_[], workloads: readonly string[], systems: readonly SystemName[]): string {
  const lines = [
    '| workload | system | ops/s | p50 ms | p90 ms | p99 ms | max ms | errors | server CPU s (sum) | max member peak RSS MB | generator CPU (cores) | other load (cores) |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  const ratioLines = ['| workload | throughput kvd/etcd | p50 kvd/etcd | p99 kvd/etcd | CPU per op kvd/etcd | peak RSS kvd/etcd |', '|---|---:|---:|---:|---:|---:|'];
  for (const workload of workloads) {
    const medians = new Map<SystemName, { ops: number; p50: number; p90: number; p99: number; max: number; errors: number; cpu: number; rss: number; gen: number; cpuPerOp: number; other: number }>();
    for (const system of systems) {
      const runs = records.filter((r) => r.workload === workload && r.system === system).map((r) => r.result);
      if (runs.length === 0) continue;
      const m = {
        ops: median(runs.map((r) => r.opsPerS)), p50: median(runs.map((r) => r.latency.p50Ms)), p90: median(runs.map((r) => r.latency.p90Ms)),
        p99: median(runs.map((r) => r.latency.p99Ms)), max: median(runs.map((r) => r.latency.maxMs)), errors: runs.reduce((s, r) => s + r.errors, 0),
        cpu: median(runs.map((r) => r.serverCpuS)), rss: median(runs.map((r) => r.maxPeakRssMB)), gen: median(runs.map((r) => r.generatorCores)),
        cpuPerOp: median(runs.map((r) => r.serverCpuS / Math.max(1, r.ops))),
        other: median(runs.map((r) => r.otherCores)),
      };
      medians.set(system, m);
      lines.push(`| ${workload} | ${system} | ${Math.round(m.ops)} | ${fmt(m.p50)} | ${fmt(m.p90)} | ${fmt(m.p99)} | ${fmt(m.max)} | ${m.errors} | ${fmt(m.cpu, 1)} | ${fmt(m.rss, 0)} | ${fmt(m.gen)} | ${fmt(m.other)} |`);
    }
    const k = medians.get('kvd');
    const e = medians.get('etcd');
    if (k !== undefined && e !== undefined) {
      ratioLines.push(`| ${workload} | ${fmt(k.ops / e.ops)} | ${fmt(k.p50 / e.p50)} | ${fmt(k.p99 / e.p99)} | ${fmt(k.cpuPerOp / e.cpuPerOp)} | ${fmt(k.rss / e.rss)} |`);
    }
  }
  return systems.length > 1 ? `${lines.join('\n')}\n\n${ratioLines.join('\n')}\n` : `${lines.join('\n')}\n`;
}

/** Runs `etcdctl check perf --load=<load>` against a fresh cluster; returns PASS/FAIL and the output tail. */
async function checkPerf(system: SystemName, load: string, workers: number): Promise<{ system: SystemName; load: string; verdict: 'PASS' | 'FAIL'; output: string }> {
  const cluster = await startCluster({ system });
  try {
    void workers;
    const endpoints = cluster.members.map((m) => m.endpoint).join(',');
    log(`etcdctl check perf --load=${load} against ${system}`);
    const result = spawnSync(ETCDCTL_BIN, [`--endpoints=${endpoints}`, 'check', 'perf', `--load=${load}`], { env: { ...process.env, ETCDCTL_API: '3' }, encoding: 'utf8', timeout: 240_000 });
    const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.split('\n').filter((line) => !line.includes('%') || line.includes('PASS') || line.includes('FAIL')).join('\n').trim();
    const verdict = result.status === 0 && !/FAIL/.test(output) ? 'PASS' : 'FAIL';
    return { system, load, verdict, output };
  } finally {
    await cluster.stop();
  }
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const etcdPresent = haveEtcd();
  if (options.vsEtcd && !etcdPresent) log('etcd not found at /usr/bin/etcd (KVD_BENCH_ETCD): running kvd alone');
  const systems: SystemName[] = options.vsEtcd && etcdPresent ? ['kvd', 'etcd'] : ['kvd'];
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  mkdirSync(RESULTS_DIR, { recursive: true });
  const profileDir = join(RESULTS_DIR, `profile-${stamp}`);
  const nodeArgs = options.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '?', memGB: Math.round(totalmem() / 2 ** 30), node: process.version, etcd: etcdPresent ? spawnSync('/usr/bin/etcd', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0] : 'absent' };
  const command = `node dist/bench/run.js ${process.argv.slice(2).join(' ')}`;
  log(`${command}\nmachine: ${JSON.stringify(machine)}`);

  const records: Record_[] = [];
  const defragRecords: Array<{ system: SystemName; rep: number; result: DefragScenarioResult }> = [];
  const shared = new Map<SystemName, Running>();
  const start = async (system: SystemName): Promise<Running> => {
    log(`starting a fresh 3-member ${system}`);
    return { cluster: await startCluster({ system, nodeArgs: system === 'kvd' ? nodeArgs : [] }), preloaded: 0 };
  };
  let profileLeaderPid: number | undefined;
  let profileWindow: { from: number; to: number } | undefined;
  try {
    // The watch burst leaves kvd's heap large, so it runs after every other workload's repetitions.
    const plan: Array<{ name: string; rep: number }> = [];
    for (let rep = 0; rep < options.reps; rep++) for (const name of options.workloads) if (name !== 'watch') plan.push({ name, rep });
    if (options.workloads.includes('watch')) for (let rep = 0; rep < Math.max(1, options.watchReps); rep++) plan.push({ name: 'watch', rep });
    for (const { name, rep } of plan) {
      const workload = WORKLOADS.find((w) => w.name === name) as WorkloadDefinition;
      const order = rep % 2 === 0 ? systems : [...systems].reverse();
      for (const system of order) {
        if (workload.scenario === 'defrag') {
          const running = await start(system);
          try {
            log(`rep ${rep + 1} ${name} on ${system}`);
            const result = await runDefragScenario(running.cluster, { workers: options.workers, log });
            defragRecords.push({ system, rep, result });
          } finally {
            await running.cluster.stop();
          }
          continue;
        }
        let running = workload.cluster === 'fresh' ? await start(system) : shared.get(system);
        if (running === undefined) {
          running = await start(system);
          shared.set(system, running);
        }
        try {
          log(`rep ${rep + 1} ${name} on ${system}`);
          const result = await runOnce(workload, running, options);
          if (system === 'kvd' && options.profile) {
            profileLeaderPid = (await running.cluster.leader()).pid;
            profileWindow = result.windowMonotonicUs;
          }
          records.push({ workload: name, system, rep, result });
          log(`  ${result.opsPerS} ops/s p50 ${result.latency.p50Ms} ms p99 ${result.latency.p99Ms} ms errors ${result.errors} server CPU ${result.serverCpuS} s peak RSS ${result.maxPeakRssMB} MB generator ${result.generatorCores} cores other ${result.otherCores} cores${result.errors > 0 ? ` ${JSON.stringify(result.errorSamples)}` : ''}`);
        } finally {
          if (workload.cluster === 'fresh') await running.cluster.stop();
        }
      }
    }
  } finally {
    for (const running of shared.values()) await running.cluster.stop();
  }

  const checks = [];
  if (options.checkPerf) {
    for (const system of systems) for (const load of options.checkPerfLoads) checks.push(await checkPerf(system, load, options.workers));
  }

  let profile: string | undefined;
  if (options.profile) {
    const files = readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile'));
    const leaderFile = files.find((f) => profileLeaderPid !== undefined && f.includes(`.${profileLeaderPid}.`)) ?? files[0];
    if (leaderFile !== undefined) {
      const window = profileWindow === undefined ? {} : { fromUs: profileWindow.from, toUs: profileWindow.to };
      profile = `leader profile ${join(profileDir, leaderFile)} (window of the last measured kvd run: --from-us ${window.fromUs} --to-us ${window.toUs})\n${formatSummary(summariseProfile(join(profileDir, leaderFile), window), { top: 15 })}`;
    }
  }

  const markdown = records.length > 0 ? table(records, options.workloads.filter((w) => w !== 'defrag1m'), systems) : '';
  const out = join(RESULTS_DIR, `${stamp}.json`);
  writeFileSync(out, `${JSON.stringify({ command, machine, options, records, defragRecords, checks, profile }, null, 2)}\n`);
  process.stdout.write(`\n${command}\nmachine: ${machine.cpus} x ${machine.cpuModel}, ${machine.memGB} GB, node ${machine.node}, ${machine.etcd}\n`);
  if (records.length > 0) process.stdout.write(`medians of ${options.reps} run(s) of ${options.durationS} s (watch: ${Math.max(1, options.watchReps)} burst(s))\n\n${markdown}`);
  if (defragRecords.length > 0) process.stdout.write(`\ndefrag1m (every repetition; see bench/lib/defrag.ts)\n\n${defragTable(defragRecords.map((r) => ({ system: `${r.system} #${r.rep + 1}`, result: r.result })))}`);
  for (const check of checks) process.stdout.write(`\ncheck perf --load=${check.load} on ${check.system}: ${check.verdict}\n${check.output}\n`);
  if (profile !== undefined) process.stdout.write(`\n${profile}\n`);
  process.stdout.write(`\nresults: ${out}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});

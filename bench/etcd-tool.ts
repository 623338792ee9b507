/**
 * kvd against etcd under etcd's own load generator (`benchmark` from etcd 3.4.23, at
 * ../shared/tools/etcd-benchmark or $KVD_BENCH_TOOL). For each workload and repetition it starts
 * a fresh kvd cluster and a fresh etcd cluster (order alternating between repetitions), runs the
 * same benchmark command against each, and reports medians and kvd/etcd ratios of throughput and
 * latency percentiles, with the members' CPU time, peak RSS and the machine's other load.
 *
 *   node dist/bench/etcd-tool.js [--workloads put256,put64,...] [--reps 3] [--size 3|1]
 *                                (put1-warm: put1 after the same 3,000 puts, unmeasured)
 *                                [--kvd-args "--frontends 2"] [--profile] [--json FILE]
 *                                [--systems kvd|etcd|kvd,etcd] [--node-args "--heap-prof"]
 *
 * Workloads follow issue 16's list (the commands etcd's performance docs use).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ETCDCTL_BIN, startCluster, type BenchCluster, type SystemName } from './lib/clusters.js';

const TOOL = process.env.KVD_BENCH_TOOL ?? fileURLToPath(new URL('../../../shared/tools/etcd-benchmark', import.meta.url));

interface Workload {
  readonly name: string;
  /** Global flags before the subcommand (endpoints are added). */
  readonly global: readonly string[];
  readonly command: readonly string[];
  /** Connect to the leader only (etcd's docs do for writes). */
  readonly leader: boolean;
  /** Keys to write before the run (for ranges). */
  readonly preload?: { readonly key: string };
  /**
   * The same command run once before the measured run, its result discarded: the members have
   * served that much load first (for kvd, its JIT compiler has warmed up; a fresh member serves
   * its first 1,000 sequential puts at about half its later rate).
   */
  readonly warmup?: boolean;
}

const FRESH_WORKLOADS: readonly Workload[] = [
  { name: 'put256', leader: true, global: ['--conns=8', '--clients=256'], command: ['put', '--key-size=8', '--val-size=256', '--sequential-keys', '--key-space-size=100000', '--total=60000'] },
  { name: 'put64', leader: true, global: ['--conns=8', '--clients=64'], command: ['put', '--key-size=8', '--val-size=256', '--sequential-keys', '--key-space-size=100000', '--total=40000'] },
  { name: 'put1', leader: true, global: ['--conns=1', '--clients=1'], command: ['put', '--key-size=8', '--val-size=256', '--sequential-keys', '--key-space-size=100000', '--total=3000'] },
  { name: 'range-l64', leader: false, global: ['--conns=8', '--clients=64'], command: ['range', 'bench-key', '--consistency=l', '--total=60000'], preload: { key: 'bench-key' } },
  { name: 'range-s64', leader: false, global: ['--conns=8', '--clients=64'], command: ['range', 'bench-key', '--consistency=s', '--total=60000'], preload: { key: 'bench-key' } },
  { name: 'txn-put64', leader: true, global: ['--conns=8', '--clients=64'], command: ['txn-put', '--key-size=8', '--val-size=256', '--key-space-size=100000', '--total=40000'] },
  { name: 'lease-keepalive64', leader: false, global: ['--conns=8', '--clients=64'], command: ['lease-keepalive', '--total=60000'] },
  { name: 'watch', leader: false, global: ['--conns=8', '--clients=64'], command: ['watch', '--streams=100', '--watch-per-stream=100', '--put-total=2000', '--key-size=8'] },
];

/**
 * The same after one unmeasured run of each (`<name>-warm`): what members that have served for a
 * while do. The workloads above run on fresh clusters, as the issue's targets are judged.
 */
const WARM_OF = ['put256', 'put64', 'put1', 'range-l64'];
const WORKLOADS: readonly Workload[] = [
  ...FRESH_WORKLOADS,
  ...FRESH_WORKLOADS.filter((workload) => WARM_OF.includes(workload.name)).map((workload) => ({ ...workload, name: `${workload.name}-warm`, warmup: true })),
];

interface Result {
  readonly system: SystemName;
  readonly workload: string;
  readonly rep: number;
  readonly opsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly averageMs: number;
  readonly serverCpuSeconds: number;
  readonly peakRssMb: number;
  readonly otherLoadCores: number;
  readonly wallSeconds: number;
  readonly errors: string;
}

function parseArgs(argv: readonly string[]): { workloads: Workload[]; reps: number; size: number; kvdArgs: string[]; profile: boolean; json: string | undefined; systems: SystemName[]; nodeArgs: string[] } {
  const get = (flag: string): string | undefined => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  // An unknown flag (or --help) must not start a run of every default workload.
  const withValue = ['--workloads', '--reps', '--size', '--kvd-args', '--json', '--node-args', '--systems'];
  for (let i = 0; i < argv.length; i++) {
    if (withValue.includes(argv[i])) i++;
    else if (argv[i] !== '--profile') throw new Error(`usage: node dist/bench/etcd-tool.js [--workloads ${WORKLOADS.map((w) => w.name).join(',')}] [--reps 3] [--size 3|1] [--kvd-args ARGS] [--node-args ARGS] [--systems kvd,etcd] [--profile] [--json FILE]${argv[i] === '--help' ? '' : ` (unknown argument ${argv[i]})`}`);
  }
  const names = (get('--workloads') ?? 'put256,put64,put1,range-l64,range-s64,txn-put64,lease-keepalive64').split(',');
  const workloads = names.map((name) => {
    const found = WORKLOADS.find((w) => w.name === name);
    if (found === undefined) throw new Error(`unknown workload ${name} (known: ${WORKLOADS.map((w) => w.name).join(', ')})`);
    return found;
  });
  return {
    workloads,
    reps: Number(get('--reps') ?? '3'),
    size: Number(get('--size') ?? '3'),
    kvdArgs: (get('--kvd-args') ?? '').split(' ').filter((s) => s.length > 0),
    profile: argv.includes('--profile'),
    json: get('--json'),
    // Extra node flags for kvd's processes (e.g. "--heap-prof --heap-prof-dir=DIR").
    nodeArgs: (get('--node-args') ?? '').split(' ').filter((part) => part.length > 0),
    // `--systems kvd` measures kvd alone (while working on it; ratios need both).
    systems: (get('--systems') ?? 'kvd,etcd').split(',').map((name) => {
      if (name !== 'kvd' && name !== 'etcd') throw new Error(`unknown system ${name} (kvd or etcd)`);
      return name;
    }),
  };
}

/** utime+stime of a process in seconds (clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch (error: unknown) {
    void error; // the process is gone: it used nothing more
    return 0;
  }
}

/** Resident set size peak (VmHWM) in MiB, reset with clear_refs first when asked. */
function peakRssMb(pid: number): number {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match === null ? 0 : Number(match[1]) / 1024;
  } catch (error: unknown) {
    void error;
    return 0;
  }
}

function resetPeakRss(pid: number): void {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch (error: unknown) {
    void error; // not allowed or gone: the peak then covers the process's life
  }
}

/** Busy cores machine-wide over an interval, from /proc/stat. */
function machineBusyTicks(): { busy: number; total: number } {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1).map(Number);
  const idle = cpu[3] + cpu[4];
  const total = cpu.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** The processes of a member: its pid and, for kvd, its front-end children. */
function memberPids(pid: number): number[] {
  const pids = [pid];
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((s) => s.length > 0).map(Number);
    pids.push(...children);
  } catch (error: unknown) {
    void error; // no children file: a single process
  }
  return pids;
}

function runTool(args: readonly string[]): Promise<{ stdout: string; stderr: string; code: number | null }> {
  return new Promise((resolve) => {
    const child = spawn(TOOL, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 600_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code });
    });
  });
}

/**
 * The figures of the tool's last summary block: `watch` prints two (creating the watchers, then
 * the events delivered, whose rate and latency are what the workload measures); the others one.
 */
function parseSummary(output: string): { ops: number; average: number; p50: number; p99: number } {
  const blocks = output.split('Summary:');
  const text = blocks[blocks.length - 1];
  const number = (pattern: RegExp): number => {
    const match = pattern.exec(text);
    return match === null ? Number.NaN : Number(match[1]);
  };
  return {
    ops: number(/Requests\/sec:\s+([0-9.]+)/),
    average: number(/Average:\s+([0-9.]+) secs/) * 1000,
    p50: number(/50% in ([0-9.]+) secs/) * 1000,
    p99: number(/99% in ([0-9.]+) secs/) * 1000,
  };
}

async function runOne(system: SystemName, workload: Workload, rep: number, options: ReturnType<typeof parseArgs>): Promise<Result> {
  const profileDir = options.profile && system === 'kvd' ? join('bench', 'results', `etcd-tool-profile-${Date.now()}`) : undefined;
  if (profileDir !== undefined) mkdirSync(profileDir, { recursive: true });
  const cluster: BenchCluster = await startCluster({
    system,
    size: options.size,
    nodeArgs: [...(profileDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`]), ...(system === 'kvd' ? options.nodeArgs : [])],
    ...(system === 'kvd' && options.kvdArgs.length > 0 ? { kvdArgs: options.kvdArgs } : {}),
  });
  try {
    const leader = await cluster.leader();
    const endpoints = workload.leader ? [leader.endpoint] : cluster.members.map((m) => m.endpoint);
    if (workload.preload !== undefined) {
      // etcd's range benchmark reads one key: write it (256-byte value) through the leader.
      spawnSync(ETCDCTL_BIN, [`--endpoints=${leader.endpoint}`, 'put', workload.preload.key, 'v'.repeat(256)], { env: { ...process.env, ETCDCTL_API: '3' }, timeout: 20_000 });
    }
    if (workload.warmup === true) await runTool([`--endpoints=${endpoints.join(',')}`, ...workload.global, ...workload.command]);
    const pids = cluster.members.flatMap((m) => memberPids(m.pid));
    for (const pid of pids) resetPeakRss(pid);
    const cpuBefore = pids.map(cpuSeconds);
    const machineBefore = machineBusyTicks();
    const started = performance.now();
    const args = [`--endpoints=${endpoints.join(',')}`, ...workload.global, ...workload.command];
    const run = await runTool(args);
    const wall = (performance.now() - started) / 1000;
    const pidsAfter = cluster.members.flatMap((m) => memberPids(m.pid));
    const cpu = pidsAfter.reduce((sum, pid) => sum + cpuSeconds(pid), 0) - cpuBefore.reduce((a, b) => a + b, 0);
    const machineAfter = machineBusyTicks();
    const busyCores = ((machineAfter.busy - machineBefore.busy) / Math.max(1, machineAfter.total - machineBefore.total)) * 2;
    const toolCpu = 0; // the tool's own CPU is part of "other" here
    const summary = parseSummary(run.stdout);
    return {
      system,
      workload: workload.name,
      rep,
      opsPerSecond: summary.ops,
      p50Ms: summary.p50,
      p99Ms: summary.p99,
      averageMs: summary.average,
      serverCpuSeconds: cpu,
      peakRssMb: Math.max(...pidsAfter.map(peakRssMb)),
      otherLoadCores: Math.max(0, busyCores - cpu / wall - toolCpu),
      wallSeconds: wall,
      errors: run.code === 0 ? '' : `exit ${run.code}: ${run.stderr.split('\n').slice(-3).join(' ')}`,
    };
  } finally {
    await cluster.stop();
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function main(): Promise<void> {
  if (!existsSync(TOOL)) throw new Error(`etcd's benchmark tool is missing at ${TOOL} (see ../shared/tools/README.md)`);
  const options = parseArgs(process.argv.slice(2));
  const results: Result[] = [];
  for (const workload of options.workloads) {
    for (let rep = 0; rep < options.reps; rep++) {
      const order: SystemName[] = rep % 2 === 0 ? ['kvd', 'etcd'] : ['etcd', 'kvd'];
      for (const system of order.filter((name) => options.systems.includes(name))) {
        const result = await runOne(system, workload, rep, options);
        results.push(result);
        process.stderr.write(`${workload.name} rep ${rep + 1} ${system}: ${result.opsPerSecond.toFixed(0)} ops/s p50 ${result.p50Ms.toFixed(2)} ms p99 ${result.p99Ms.toFixed(2)} ms cpu ${result.serverCpuSeconds.toFixed(1)} s rss ${result.peakRssMb.toFixed(0)} MiB other ${result.otherLoadCores.toFixed(2)}${result.errors === '' ? '' : ` ERR ${result.errors}`}\n`);
      }
    }
  }
  const lines = [
    `| workload | kvd ops/s | etcd ops/s | ratio | kvd p50 ms | etcd p50 ms | kvd p99 ms | etcd p99 ms | kvd CPU ms/op | etcd CPU ms/op | kvd RSS MiB | etcd RSS MiB | other load |`,
    `|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|`,
  ];
  for (const workload of options.workloads) {
    const of = (system: SystemName): Result[] => results.filter((r) => r.workload === workload.name && r.system === system);
    const kvd = of('kvd');
    const etcd = of('etcd');
    const cpuPerOp = (rs: Result[]): number => median(rs.map((r) => (r.serverCpuSeconds * 1000) / (r.opsPerSecond * r.wallSeconds)));
    const k = median(kvd.map((r) => r.opsPerSecond));
    const e = median(etcd.map((r) => r.opsPerSecond));
    lines.push(`| ${workload.name} | ${k.toFixed(0)} | ${e.toFixed(0)} | ${(k / e).toFixed(2)}x | ${median(kvd.map((r) => r.p50Ms)).toFixed(2)} | ${median(etcd.map((r) => r.p50Ms)).toFixed(2)} | ${median(kvd.map((r) => r.p99Ms)).toFixed(1)} | ${median(etcd.map((r) => r.p99Ms)).toFixed(1)} | ${cpuPerOp(kvd).toFixed(3)} | ${cpuPerOp(etcd).toFixed(3)} | ${median(kvd.map((r) => r.peakRssMb)).toFixed(0)} | ${median(etcd.map((r) => r.peakRssMb)).toFixed(0)} | ${median(results.filter((r) => r.workload === workload.name).map((r) => r.otherLoadCores)).toFixed(2)} |`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  if (options.json !== undefined) writeFileSync(options.json, JSON.stringify({ options: { ...options, workloads: options.workloads.map((w) => w.name) }, results }, null, 2));
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});

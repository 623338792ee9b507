#!/usr/bin/env node
/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function (name, file:line)
 * as a share of busy (non-idle) time, each function's dominant caller, and a per-file rollup.
 * An optional window (CLOCK_MONOTONIC microseconds, the clock V8 stamps profiles with and that
 * `process.hrtime.bigint() / 1000n` reads) restricts it to the measured run. Usage:
 *   node dist/bench/profile-summary.js <file.cpuprofile> [--top N] [--from-us T0 --to-us T1]
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number; children?: number[] }
interface CpuProfile { nodes: ProfileNode[]; startTime: number; endTime: number; samples?: number[]; timeDeltas?: number[] }

/** One function's (or file's) self time. */
export interface FunctionCost {
  readonly name: string;
  readonly location: string;
  readonly selfMs: number;
  /** Share of busy (non-idle) samples, in percent. */
  readonly selfPercent: number;
  /** The caller contributing most of this self time ('' for files). */
  readonly topCaller: string;
}

/** A profile's self-time ranking. */
export interface ProfileSummary {
  /** Sampled wall time in the window, ms. */
  readonly totalMs: number;
  /** Sampled time not idle, ms. */
  readonly busyMs: number;
  readonly idlePercent: number;
  readonly functions: readonly FunctionCost[];
  readonly files: readonly FunctionCost[];
}

/** Optional window in CLOCK_MONOTONIC microseconds. */
export interface ProfileWindow { readonly fromUs?: number; readonly toUs?: number }

/** Reads a .cpuprofile and ranks functions and files by self time (sample time deltas). */
export function summariseProfile(path: string, window: ProfileWindow = {}): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parentOf = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let at = profile.startTime;
  for (let i = 0; i < samples.length; i++) {
    at += deltas[i] ?? 0;
    if (window.fromUs !== undefined && at < window.fromUs) continue;
    if (window.toUs !== undefined && at > window.toUs) continue;
    // timeDeltas[i] is the time before sample i; attribute the following delta to sample i.
    const delta = deltas[i + 1] ?? 0;
    selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + Math.max(0, delta));
  }
  const label = (id: number | undefined): { name: string; location: string; file: string } => {
    const node = id === undefined ? undefined : byId.get(id);
    if (node === undefined) return { name: '(root)', location: '', file: '' };
    const { functionName, url, lineNumber } = node.callFrame;
    const file = shortUrl(url);
    return { name: functionName === '' ? '(anonymous)' : functionName, location: file === '' ? '' : `${file}:${lineNumber + 1}`, file };
  };
  let total = 0;
  let idle = 0;
  const functions = new Map<string, { name: string; location: string; us: number; callers: Map<string, number> }>();
  const files = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const { name, location, file } = label(id);
    total += us;
    if (name === '(idle)') { idle += us; continue; }
    const key = `${name}@${location}`;
    const entry = functions.get(key) ?? { name, location, us: 0, callers: new Map<string, number>() };
    entry.us += us;
    const caller = label(parentOf.get(id));
    const callerKey = caller.location === '' ? caller.name : `${caller.name} (${caller.location})`;
    entry.callers.set(callerKey, (entry.callers.get(callerKey) ?? 0) + us);
    functions.set(key, entry);
    const fileKey = file === '' ? name : file;
    files.set(fileKey, (files.get(fileKey) ?? 0) + us);
  }
  const busy = Math.max(total - idle, 1);
  const toCost = (name: string, location: string, us: number, topCaller: string): FunctionCost => ({ name, location, selfMs: Math.round(us / 100) / 10, selfPercent: Math.round((1000 * us) / busy) / 10, topCaller });
  return {
    totalMs: Math.round(total / 1000),
    busyMs: Math.round((total - idle) / 1000),
    idlePercent: Math.round((1000 * idle) / Math.max(total, 1)) / 10,
    functions: [...functions.values()].sort((a, b) => b.us - a.us).map((f) => toCost(f.name, f.location, f.us, [...f.callers.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? '')),
    files: [...files.entries()].sort((a, b) => b[1] - a[1]).map(([file, us]) => toCost(file, '', us, '')),
  };
}

function shortUrl(url: string): string {
  const path = url.replace(/^file:\/\//, '');
  const modules = path.lastIndexOf('node_modules/');
  if (modules >= 0) return path.slice(modules);
  const dist = path.indexOf('/dist');
  if (dist >= 0) return path.slice(path.indexOf('/', dist + 1) + 1);
  return path;
}

/** Markdown tables of the top functions and files (percentages of busy time). */
export function formatSummary(summary: ProfileSummary, options: { top: number }): string {
  const lines = [
    `window ${summary.totalMs} ms sampled, idle ${summary.idlePercent}%, busy ${summary.busyMs} ms (percentages below are of busy time)`,
    '',
    '| # | self % of busy | self ms | function | location | main caller |',
    '|---:|---:|---:|---|---|---|',
  ];
  summary.functions.slice(0, options.top).forEach((f, i) => lines.push(`| ${i + 1} | ${f.selfPercent} | ${f.selfMs} | ${f.name} | ${f.location} | ${f.topCaller} |`));
  lines.push('', '| self % of busy | file |', '|---:|---|');
  summary.files.slice(0, options.top).forEach((f) => lines.push(`| ${f.selfPercent} | ${f.name} |`));
  return lines.join('\n');
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const path = process.argv[2];
  if (path === undefined) {
    process.stderr.write('usage: profile-summary <file.cpuprofile> [--top N] [--from-us T0 --to-us T1]\n');
    process.exit(2);
  }
  const flag = (name: string): number | undefined => {
    const index = process.argv.indexOf(name);
    return index > 0 ? Number(process.argv[index + 1]) : undefined;
  };
  process.stdout.write(`${formatSummary(summariseProfile(path, { fromUs: flag('--from-us'), toUs: flag('--to-us') }), { top: flag('--top') ?? 15 })}\n`);
}

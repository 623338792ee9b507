#!/usr/bin/env node
/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function (name, file:line),
 * as a share of all samples, plus a per-file rollup. Usage:
 *   node dist/bench/profile-summary.js <file.cpuprofile> [--top N]
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number; children?: number[] }
interface CpuProfile { nodes: ProfileNode[]; startTime: number; endTime: number; samples?: number[]; timeDeltas?: number[] }

/** One function's self time. */
export interface FunctionCost { readonly name: string; readonly location: string; readonly selfMs: number; readonly selfPercent: number }

/** A profile's self-time ranking. */
export interface ProfileSummary { readonly totalMs: number; readonly idlePercent: number; readonly functions: readonly FunctionCost[]; readonly files: readonly FunctionCost[] }

/** Reads a .cpuprofile and ranks functions and files by self time (sample time deltas). */
export function summariseProfile(path: string): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    // timeDeltas[i] is the time before sample i; attribute the following delta to sample i.
    const delta = deltas[i + 1] ?? 0;
    selfUs.set(samples[i], (selfUs.get(samples[i]) ?? 0) + Math.max(0, delta));
  }
  let total = 0;
  const functions = new Map<string, { name: string; location: string; us: number }>();
  const files = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (node === undefined) continue;
    total += us;
    const { functionName, url, lineNumber } = node.callFrame;
    const file = shortUrl(url);
    const name = functionName === '' ? '(anonymous)' : functionName;
    const location = file === '' ? '' : `${file}:${lineNumber + 1}`;
    const key = `${name}@${location}`;
    const entry = functions.get(key) ?? { name, location, us: 0 };
    entry.us += us;
    functions.set(key, entry);
    files.set(file === '' ? name : file, (files.get(file === '' ? name : file) ?? 0) + us);
  }
  const toCost = (name: string, location: string, us: number): FunctionCost => ({ name, location, selfMs: Math.round(us / 100) / 10, selfPercent: Math.round((1000 * us) / Math.max(total, 1)) / 10 });
  const idle = [...functions.values()].filter((f) => f.name === '(idle)').reduce((s, f) => s + f.us, 0);
  return {
    totalMs: Math.round(total / 1000),
    idlePercent: Math.round((1000 * idle) / Math.max(total, 1)) / 10,
    functions: [...functions.values()].sort((a, b) => b.us - a.us).map((f) => toCost(f.name, f.location, f.us)),
    files: [...files.entries()].sort((a, b) => b[1] - a[1]).map(([file, us]) => toCost(file, '', us)),
  };
}

function shortUrl(url: string): string {
  const path = url.replace(/^file:\/\//, '');
  const repo = path.indexOf('/dist');
  if (repo >= 0) return path.slice(path.indexOf('/', repo + 1) + 1);
  const modules = path.lastIndexOf('node_modules/');
  if (modules >= 0) return path.slice(modules);
  return path;
}

/** Markdown tables of the top functions and files. */
export function formatSummary(summary: ProfileSummary, options: { top: number }): string {
  const lines = [`total ${summary.totalMs} ms sampled, idle ${summary.idlePercent}%`, '', '| # | self % | self ms | function | location |', '|---:|---:|---:|---|---|'];
  summary.functions.slice(0, options.top).forEach((f, i) => lines.push(`| ${i + 1} | ${f.selfPercent} | ${f.selfMs} | ${f.name} | ${f.location} |`));
  lines.push('', '| self % | file |', '|---:|---|');
  summary.files.slice(0, options.top).forEach((f) => lines.push(`| ${f.selfPercent} | ${f.name} |`));
  return lines.join('\n');
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const path = process.argv[2];
  if (path === undefined) {
    process.stderr.write('usage: profile-summary <file.cpuprofile> [--top N]\n');
    process.exit(2);
  }
  const topIndex = process.argv.indexOf('--top');
  const top = topIndex > 0 ? Number(process.argv[topIndex + 1]) : 15;
  process.stdout.write(`${formatSummary(summariseProfile(path), { top })}\n`);
}

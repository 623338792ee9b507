/**
 * Re-checks a history saved by a chaos run (history.json under the results dir), for analysis
 * after the fact: the linearizability of the registers (optionally one key, with a larger search
 * budget), and the set, watch and lease checkers, printing each verdict. For an illegal key it
 * prints the operations around the point where the search got stuck.
 *
 * Usage: node dist/test/fault/check-history.js <history.json> [--key K] [--max-steps N]
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { checkKey, pruneRegisterHistory, registerModel } from './checker/linearizability.js';
import { checkSet, type SetAdd } from './checker/set.js';
import { checkWatches, type WatchEvent, type AckedWrite } from './checker/watch.js';
import { checkLeases, type LeaseHistory, type Disturbance } from './checker/lease.js';
import { ackedRegisterWrites, type RegisterOp } from './workloads.js';

/** The parts of a saved history this tool reads. */
interface SavedHistory {
  seed: number;
  electionMs: number;
  registers: RegisterOp[];
  set?: { adds: SetAdd[]; acked: AckedWrite[] };
  finalSet?: string[];
  watchers: Array<{ name: string; events: WatchEvent[] }>;
  reference: WatchEvent[];
  leases: LeaseHistory[];
  applied: Array<{ startMs: number; endMs: number | 'Infinity' }>;
  leaderChanges: Array<{ atMs: number }>;
}

function show(op: RegisterOp): string {
  const end = op.returnMs === null ? '∞' : op.returnMs.toFixed(1);
  return `#${op.id} c${op.client} [${op.callMs.toFixed(1)}, ${end}] ${JSON.stringify(op.input)} -> ${JSON.stringify(op.output ?? op.error ?? 'unknown')} via ${op.member}${op.revision === undefined ? '' : ` rev ${op.revision}`}`;
}

/** Re-runs every checker on `history` and prints the results; returns the number of failures. */
export function recheck(history: SavedHistory, options: { key?: string; maxSteps: number; print: (line: string) => void }): number {
  let failures = 0;
  const byKey = new Map<string, RegisterOp[]>();
  for (const op of history.registers) {
    if (options.key !== undefined && op.key !== options.key) continue;
    let list = byKey.get(op.key);
    if (list === undefined) byKey.set(op.key, (list = []));
    list.push(op);
  }
  for (const [key, ops] of [...byKey].sort()) {
    const pruned = pruneRegisterHistory(ops) as RegisterOp[];
    const result = checkKey(registerModel, pruned, { maxStepsPerKey: options.maxSteps });
    options.print(`register ${key}: ${result.verdict} (${ops.length} ops, ${pruned.length} after pruning, ${result.steps} steps)`);
    if (result.verdict === 'illegal' && result.stuckAt !== undefined) {
      failures++;
      const stuck = pruned.find((op) => op.id === result.stuckAt)!;
      options.print(`  stuck at ${show(stuck)}; longest linearizable prefix (${result.longestPrefix?.length} ops) ends with:`);
      for (const id of (result.longestPrefix ?? []).slice(-8)) options.print(`    ${show(pruned.find((op) => op.id === id)!)}`);
      options.print('  operations overlapping the stuck one:');
      for (const op of pruned.filter((o) => o.callMs <= (stuck.returnMs ?? Infinity) && (o.returnMs ?? Infinity) >= stuck.callMs - 2000).slice(0, 30)) options.print(`    ${show(op)}`);
    }
  }
  if (options.key !== undefined) return failures;
  if (history.set !== undefined && history.finalSet !== undefined) {
    const set = checkSet(history.set.adds, new Set(history.finalSet));
    options.print(`set: ${set.valid ? 'ok' : 'INVALID'} (${set.acknowledged} acknowledged, lost ${set.lost.join(',') || 'none'})`);
    if (!set.valid) failures++;
  }
  const acked = [...ackedRegisterWrites(history.registers), ...(history.set?.acked ?? [])];
  const watch = checkWatches(history.watchers, history.reference, acked);
  options.print(`watch: ${watch.valid ? 'ok' : 'INVALID'} (${watch.eventsSeen} events)`);
  for (const anomaly of watch.anomalies) options.print(`  ${anomaly.watcher} ${anomaly.kind} at ${anomaly.index}: ${anomaly.detail}`);
  if (!watch.valid) failures++;
  const disturbances: Disturbance[] = [
    ...history.applied.map((f) => ({ startMs: f.startMs, endMs: f.endMs === 'Infinity' ? Number.POSITIVE_INFINITY : f.endMs })),
    ...history.leaderChanges.map((c) => ({ startMs: c.atMs - 300, endMs: c.atMs })),
  ];
  const lease = checkLeases(history.leases, disturbances, { electionTimeoutMs: history.electionMs });
  options.print(`lease: ${lease.valid ? 'ok' : 'INVALID'} (${lease.leases} leases)`);
  for (const anomaly of lease.anomalies) options.print(`  lease ${anomaly.lease} ${anomaly.kind}: ${anomaly.detail}`);
  if (!lease.valid) failures++;
  return failures;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const argv = process.argv.slice(2);
  const path = argv.find((a) => !a.startsWith('--'));
  if (path === undefined) {
    process.stderr.write('usage: check-history.js <history.json> [--key K] [--max-steps N]\n');
    process.exit(2);
  }
  const keyIndex = argv.indexOf('--key');
  const stepsIndex = argv.indexOf('--max-steps');
  const history = JSON.parse(readFileSync(path, 'utf8')) as SavedHistory;
  const failures = recheck(history, {
    ...(keyIndex >= 0 ? { key: argv[keyIndex + 1] } : {}),
    maxSteps: stepsIndex >= 0 ? Number(argv[stepsIndex + 1]) : 20_000_000,
    print: (line) => process.stdout.write(line + '\n'),
  });
  process.exit(failures === 0 ? 0 : 1);
}

/**
 * Goal: under real faults (partitions by iptables in per-member network namespaces, kill -9,
 * SIGSTOP pauses, delay and loss on peer links), kvd keeps its promises: register operations
 * are linearizable, no acknowledged write is lost, watchers see gap-free prefixes of one order,
 * leases expire within bounds, and members converge to the same HashKV; and the workloads
 * complete enough operations (a floor per second) that those checks did not pass on an empty
 * history.
 * Method: one short chaos run (chaos.ts) with a fixed seed (override with KVD_CHAOS_SEED, length
 * with KVD_CHAOS_SECONDS) on a 3-member cluster; namespaces when `ip netns` works (root),
 * otherwise the loopback fallback (kill, pause and proxy faults only). The whole run, with
 * startup and checking, stays well under 3 minutes; a failing history is saved under
 * $TMPDIR/kvd-chaos and its path printed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runChaos } from './chaos.js';
import { FAULT_KINDS } from './nemesis.js';

const SECONDS = Number(process.env.KVD_CHAOS_SECONDS ?? '70');
const SEED = Number(process.env.KVD_CHAOS_SEED ?? '20261123');

test(`chaos: ${SECONDS} s of partitions, kill -9, pauses and netem; every checker passes and enough work completes (seed ${SEED})`, { timeout: 175_000 }, async (t) => {
  const lines: string[] = [];
  const report = await runChaos({ durationS: SECONDS, seed: SEED, faults: FAULT_KINDS, print: (line) => lines.push(line) });
  const output = lines.join('\n');
  // The counts go to the test output on success too, so the margin over the floor stays visible.
  const { registers, set, workloadMs } = report.completed;
  t.diagnostic(`completed in ${(workloadMs / 1000).toFixed(1)} s of workload: ${registers} register operations (${(registers / (workloadMs / 1000)).toFixed(1)}/s), ${set} acknowledged set adds (${(set / (workloadMs / 1000)).toFixed(1)}/s)`);
  for (const line of lines.filter((l) => /^(PASS|FAIL) |passed, \d+ failed$/.test(l))) t.diagnostic(line);
  assert.ok(report.applied.length > 0, `no fault was applied:\n${output}`);
  assert.ok(report.checks.some((check) => check.name.startsWith('progress') && check.valid), `too little work completed for the run to prove anything:\n${output}`);
  assert.equal(report.failed, 0, output);
});

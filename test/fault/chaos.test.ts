/**
 * Goal: under real faults (partitions by iptables in per-member network namespaces, kill -9,
 * SIGSTOP pauses, delay and loss on peer links), kvd keeps its promises: register operations
 * are linearizable, no acknowledged write is lost, watchers see gap-free prefixes of one order,
 * leases expire within bounds, and members converge to the same HashKV; and the workloads
 * complete enough operations (a floor per second) that those checks did not pass on an empty
 * history.
 * The same holds while the membership changes (issue 12): members added (voters and learners,
 * as new processes), promoted, removed (the leader too) and replaced, the cluster size restored
 * at the end, no removed member left running or able to restart on its data dir.
 * Method: one short chaos run (chaos.ts) with a fixed seed (override with KVD_CHAOS_SEED, length
 * with KVD_CHAOS_SECONDS) on a 3-member cluster; namespaces when `ip netns` works (root),
 * otherwise the loopback fallback (kill, pause and proxy faults only). The whole run, with
 * startup and checking, stays well under 3 minutes; a failing history is saved under
 * $TMPDIR/kvd-chaos and its path printed. Then a shorter run with the membership nemesis
 * (--membership; seed KVD_CHAOS_MEMBERSHIP_SEED, length KVD_CHAOS_MEMBERSHIP_SECONDS), about
 * 60-90 s in all; the tests of a file run one after the other, so the two clusters never share
 * the machine.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runChaos } from './chaos.js';
import { FAULT_KINDS } from './nemesis.js';
import { PROGRESS_FLOORS } from './checker/progress.js';

const SECONDS = Number(process.env.KVD_CHAOS_SECONDS ?? '70');
const SEED = Number(process.env.KVD_CHAOS_SEED ?? '20261123');
const MEMBERSHIP_SECONDS = Number(process.env.KVD_CHAOS_MEMBERSHIP_SECONDS ?? '45');
const MEMBERSHIP_SEED = Number(process.env.KVD_CHAOS_MEMBERSHIP_SEED ?? '20261206');
/**
 * Half the default floors: membership changes cost availability by design (a voter added while
 * another is down or paused stalls commits until it has caught up; a leader removal hands over),
 * and this run is short. Measured on this 2-core machine while other sessions loaded it (load
 * average 20-30): 25 register operations and 9 set adds per second alone, 11-12 and 3.1-3.3 per
 * second inside the whole `npm test`; 132 and 38 with the machine to itself. Half the floors
 * still fail a cluster that was down for most of the run.
 */
const MEMBERSHIP_FLOORS = { registers: PROGRESS_FLOORS.registers / 2, set: PROGRESS_FLOORS.set / 2 } as const;

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

test(`chaos with membership changes: ${MEMBERSHIP_SECONDS} s of members added, promoted, removed and replaced beside the faults; every checker passes and the size is restored (seed ${MEMBERSHIP_SEED})`, { timeout: 240_000 }, async (t) => {
  const lines: string[] = [];
  const report = await runChaos({ durationS: MEMBERSHIP_SECONDS, seed: MEMBERSHIP_SEED, faults: FAULT_KINDS, membership: 'on', progressFloors: MEMBERSHIP_FLOORS, print: (line) => lines.push(line) });
  const output = lines.join('\n');
  const { registers, set, workloadMs } = report.completed;
  t.diagnostic(`completed in ${(workloadMs / 1000).toFixed(1)} s of workload: ${registers} register operations, ${set} acknowledged set adds; fault time ${(report.faultMs / 1000).toFixed(1)} s`);
  for (const line of lines.filter((l) => /^(PASS|FAIL) |passed, \d+ failed$|^membership: /.test(l))) t.diagnostic(line);
  const counts = report.membership?.counts;
  assert.ok(counts !== undefined && counts.adds > 0 && counts.removes > 0, `no member was added and removed:\n${output}`);
  assert.ok(report.checks.some((check) => check.name.startsWith('membership') && check.valid), `the membership was not restored:\n${output}`);
  assert.equal(report.failed, 0, output);
});

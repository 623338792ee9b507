/**
 * Goal: under real faults (partitions by iptables in per-member network namespaces, kill -9,
 * SIGSTOP pauses, delay and loss on peer links), kvd keeps its promises: register operations
 * are linearizable, no acknowledged write is lost, watchers see gap-free prefixes of one order,
 * leases expire within bounds, and members converge to the same HashKV.
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

test(`chaos: ${SECONDS} s of partitions, kill -9, pauses and netem; every checker passes (seed ${SEED})`, { timeout: 175_000 }, async () => {
  const lines: string[] = [];
  const report = await runChaos({ durationS: SECONDS, seed: SEED, faults: FAULT_KINDS, print: (line) => lines.push(line) });
  const output = lines.join('\n');
  assert.ok(report.applied.length > 0, `no fault was applied:\n${output}`);
  assert.equal(report.failed, 0, output);
});

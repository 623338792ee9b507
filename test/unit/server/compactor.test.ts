// Goal: auto-compaction decides as etcd 3.4's v3compactor (periodic: sample every retention/10,
// first compaction one retention after start at the revision of one retention ago, then every
// min(retention, 1 h); revision: every check interval at current − retention, never the same
// revision twice) and parses --auto-compaction-retention as etcd does.
// Method: drive the pure CompactionPlanner with a fake clock and a revision that grows by one per
// 100 ms tick, as a busy leader's would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CompactionPlanner, parseAutoCompaction } from '../../../src/server/compactor.js';
import { parseDurationMs } from '../../../src/server/flags.js';

const TICK_MS = 100;

/** Runs `ms` of ticks from `start`, revision = 1 + ticks so far; returns [time, revision] of every decision. */
function run(planner: CompactionPlanner, options: { fromMs: number; ms: number; leader?: (nowMs: number) => boolean }): Array<[number, number]> {
  const decisions: Array<[number, number]> = [];
  for (let now = options.fromMs; now <= options.fromMs + options.ms; now += TICK_MS) {
    const revision = 1 + Math.floor(now / TICK_MS);
    planner.observe(now, revision);
    if (options.leader !== undefined && !options.leader(now)) continue;
    const decision = planner.decide(now, revision);
    if (decision === undefined) continue;
    decisions.push([now, decision.compact]);
    planner.settled({ revision: decision.compact, result: 'done', nowMs: now });
  }
  return decisions;
}

test('periodic: the first compaction waits one retention, then one per retention, each keeping one retention of history', () => {
  const planner = new CompactionPlanner({ config: { mode: 'periodic', retentionMs: 10_000 }, nowMs: 0 });
  assert.equal(planner.sampleIntervalMs, 1_000);
  const decisions = run(planner, { fromMs: 0, ms: 35_000 });
  assert.deepEqual(decisions.map(([at]) => at), [10_000, 20_000, 30_000]);
  for (const [at, revision] of decisions) {
    const ageMs = at - (revision - 1) * TICK_MS;
    assert.ok(ageMs >= 10_000 && ageMs <= 11_000, `compacted at ${at} the revision of ${ageMs} ms ago`);
  }
});

test('periodic over an hour compacts hourly and still keeps the whole retention', () => {
  const planner = new CompactionPlanner({ config: { mode: 'periodic', retentionMs: 3 * 3_600_000 }, nowMs: 0 });
  assert.equal(planner.sampleIntervalMs, 360_000);
  assert.equal(planner.compactIntervalMs, 3_600_000);
  const decisions: Array<[number, number]> = [];
  for (let now = 0; now <= 5 * 3_600_000; now += 60_000) {
    const revision = 1 + now / 1_000;
    planner.observe(now, revision);
    const decision = planner.decide(now, revision);
    if (decision !== undefined) {
      decisions.push([now, decision.compact]);
      planner.settled({ revision: decision.compact, result: 'done', nowMs: now });
    }
  }
  assert.deepEqual(decisions.map(([at]) => at / 3_600_000), [3, 4, 5]);
  for (const [at, revision] of decisions) assert.ok(at - (revision - 1) * 1_000 >= 3 * 3_600_000, 'three hours of history kept');
});

test('periodic: a failed compaction is retried at the next tick; only the leader decides, but every member samples', () => {
  const planner = new CompactionPlanner({ config: { mode: 'periodic', retentionMs: 2_000 }, nowMs: 0 });
  for (let now = 0; now < 2_000; now += TICK_MS) planner.observe(now, 1 + now / TICK_MS);
  const first = planner.decide(2_000, 21);
  assert.ok(first !== undefined);
  planner.settled({ revision: first.compact, result: 'failed', nowMs: 2_000 });
  assert.ok(planner.decide(2_100, 22) !== undefined, 'retried');
  // A member that only became leader at 5 s compacts the revision of about 2 s before it.
  const late = new CompactionPlanner({ config: { mode: 'periodic', retentionMs: 2_000 }, nowMs: 0 });
  const decisions = run(late, { fromMs: 0, ms: 5_000, leader: (now) => now >= 5_000 });
  assert.equal(decisions.length, 1);
  assert.ok(decisions[0][1] >= 1 + 2_800 / TICK_MS && decisions[0][1] <= 1 + 3_000 / TICK_MS, `compacted ${decisions[0][1]}`);
});

test('revision: every interval at current − retention; not twice the same revision; never at or below 0', () => {
  const planner = new CompactionPlanner({ config: { mode: 'revision', retentionRevisions: 50 }, nowMs: 0, revisionIntervalMs: 1_000 });
  assert.equal(planner.decide(500, 100), undefined, 'waits one interval');
  assert.deepEqual(planner.decide(1_000, 100), { compact: 50 });
  planner.settled({ revision: 50, result: 'done', nowMs: 1_000 });
  assert.equal(planner.decide(2_000, 100), undefined, 'no new revision: nothing to do');
  assert.deepEqual(planner.decide(3_000, 160), { compact: 110 });
  const young = new CompactionPlanner({ config: { mode: 'revision', retentionRevisions: 500 }, nowMs: 0, revisionIntervalMs: 1_000 });
  assert.equal(young.decide(1_000, 400), undefined);
  const etcd = new CompactionPlanner({ config: { mode: 'revision', retentionRevisions: 5 }, nowMs: 0 });
  assert.equal(etcd.decide(299_999, 100), undefined);
  assert.deepEqual(etcd.decide(300_000, 100), { compact: 95 }, 'etcd checks every 5 minutes');
});

test('--auto-compaction-retention parses as etcd: integers are hours (periodic) or revisions; Go durations; 0 is off', () => {
  const parse = (mode: string, retention: string): unknown => parseAutoCompaction(mode, retention, (text) => parseDurationMs(text, 'auto-compaction-retention'));
  assert.deepEqual(parse('periodic', '0'), { mode: 'off' });
  assert.deepEqual(parse('periodic', '1'), { mode: 'periodic', retentionMs: 3_600_000 });
  assert.deepEqual(parse('periodic', '30m'), { mode: 'periodic', retentionMs: 1_800_000 });
  assert.deepEqual(parse('periodic', '1h30m'), { mode: 'periodic', retentionMs: 5_400_000 });
  assert.deepEqual(parse('periodic', '1.5s'), { mode: 'periodic', retentionMs: 1_500 });
  assert.deepEqual(parse('revision', '1000'), { mode: 'revision', retentionRevisions: 1000 });
  assert.deepEqual(parse('revision', '0'), { mode: 'off' });
  assert.throws(() => parse('revision', '1h'), /revision mode takes a number of revisions/);
  assert.throws(() => parse('hourly', '1'), /unknown auto-compaction-mode "hourly"/);
  assert.throws(() => parse('periodic', '1 hour'), /invalid duration/);
});

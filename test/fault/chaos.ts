/**
 * The chaos run: a real kvd cluster (each member in its own network namespace when available),
 * concurrent workloads recording their histories, a seeded fault schedule (partitions, kill -9,
 * SIGSTOP pauses, delay/loss on peer links), then heal and check:
 *
 *   registers     linearizability of read / write / CAS per key
 *   set           no lost acknowledged adds
 *   watch         every watcher saw a gap-free, duplicate-free prefix of one order of revisions,
 *                 and every acknowledged write is in that order at its revision
 *   lease         no key vanished while its lease was kept alive; none outlived its lease by
 *                 more than an election timeout (leader changes accounted for)
 *   convergence   every member reaches the same revision with the same HashKV
 *   processes     no member exited by itself
 *   progress      the workloads completed at least a floor of operations per second, so that
 *                 the checks above did not pass on an (almost) empty history
 *   membership    (with --membership) the run ends with the configured number of started voters,
 *                 each served by a process the harness runs; every removed member stopped by
 *                 itself (exit 0) or was down when removed, and none is running; a removed
 *                 member's data dir refuses to start again
 *
 * With --membership, the membership nemesis (membership.ts) runs beside the fault schedule:
 * it adds (voters and learners), promotes, removes (the leader too) and replaces members, each
 * cycle restoring the cluster size, and the workloads' endpoints follow the member list
 * (EndpointBook). Its operations are printed as they happen and saved in the history.
 *
 * Usage: node dist/test/fault/chaos.js [--duration S] [--seed N] [--faults partition,kill,pause,netem]
 *          [--members N] [--snapshot-count N] [--lease-clients N] [--election-ms N] [--heartbeat-ms N]
 *          [--results DIR] [--loopback] [--save-all] [--serializable-reads] [--membership]
 * Prints the fault schedule, each checker's result and, last, `N passed, M failed`; a failing
 * history (and the member logs) is saved under the results dir. Exit code 1 when anything failed.
 */
import { mkdirSync, writeFileSync, copyFileSync, existsSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { call, closeClients, waitFor, type RangeResponseJs } from '../integration/harness.js';
import { FaultCluster, namespacesAvailable, type NetworkMode } from './cluster.js';
import { FAULT_KINDS, applyFault, describePlanned, healCluster, planFaults, seededRandom, type AppliedFault, type FaultKind } from './nemesis.js';
import { EndpointBook, MembershipNemesis, describeCycle, listMembers, planMembership, type MembershipCounts, type MembershipOp } from './membership.js';
import { REMOVED_MARKER } from '../../src/server/bootstrap.js';
import { hexId } from '../../src/client/index.js';
import { ackedRegisterWrites, closeLeaseClients, pause, PrefixWatcher, readSet, referenceEvents, runLeases, runRegisters, runSet, type RegisterOp, type WorkloadContext } from './workloads.js';
import { checkRegistersOffThread } from './checker/register-check.js';
import { checkSet } from './checker/set.js';
import { checkWatches, type WatchEvent } from './checker/watch.js';
import { checkLeases, type Disturbance, type LeaseHistory } from './checker/lease.js';
import { PROGRESS_FLOORS, checkProgress } from './checker/progress.js';

/** Options of {@link runChaos}. */
export interface ChaosOptions {
  /** Seconds of faults (the workloads run this long, plus a short tail after healing). */
  readonly durationS: number;
  readonly seed: number;
  readonly faults: readonly FaultKind[];
  /** Cluster size; default 3. */
  readonly members?: number;
  /** Where failing histories go; default $TMPDIR/kvd-chaos. */
  readonly resultsDir?: string;
  /** Force the loopback fallback even when namespaces work. */
  readonly network?: NetworkMode | 'auto';
  /** Save the history even when every check passed. */
  readonly save?: 'on-failure' | 'always';
  readonly heartbeatMs?: number;
  readonly electionMs?: number;
  /** Concurrent lease clients; default 2. */
  readonly leaseClients?: number;
  /** kvd --snapshot-count (small values make restarted members catch up by snapshot); default 2,000. */
  readonly snapshotCount?: number;
  /**
   * 'serializable' makes the register reads local (stale reads allowed): a self-test showing the
   * linearizability checker catches them under partitions. Default 'linearizable'.
   */
  readonly registerReads?: 'linearizable' | 'serializable';
  /** Output sink for the report lines; default stdout. */
  readonly print?: (line: string) => void;
  /** Floors of completed operations per second of workload time; default {@link PROGRESS_FLOORS}. */
  readonly progressFloors?: { readonly registers: number; readonly set: number };
  /** 'on' runs the membership nemesis (membership.ts) beside the faults; default 'off'. */
  readonly membership?: 'off' | 'on';
}

/** One checker's verdict. */
export interface CheckOutcome {
  readonly name: string;
  readonly valid: boolean;
  readonly summary: string;
  readonly details?: unknown;
}

/** The run's result. */
export interface ChaosReport {
  readonly seed: number;
  readonly network: string;
  readonly schedule: readonly string[];
  readonly applied: readonly AppliedFault[];
  readonly faultMs: number;
  readonly checks: readonly CheckOutcome[];
  readonly passed: number;
  readonly failed: number;
  /** Completed operations per workload and the workload time they were completed in. */
  readonly completed: { readonly registers: number; readonly set: number; readonly workloadMs: number };
  /** What the membership nemesis did (with --membership). */
  readonly membership?: { readonly counts: MembershipCounts; readonly cycles: number; readonly cyclesFailed: number; readonly ops: readonly MembershipOp[] };
  /** Set when the history was saved. */
  readonly savedTo?: string;
}

const REQUEST_TIMEOUT_MS = 2_000;
const LEASE_TTL_S = 3;
/** How often the workloads' endpoints are refreshed from the member list (with --membership). */
const ENDPOINT_REFRESH_MS = 1_000;
/** Deadline of the reconcile that restores the membership at the end of the run. */
const FINAL_RECONCILE_MS = 60_000;
/** How long removed members still running at the end may take to stop by themselves. */
const REMOVED_EXIT_WAIT_MS = 20_000;
/** How long a removed member's restart may take to be refused. */
const RESTART_PROBE_MS = 15_000;

/** Runs one chaos session and prints its report. */
export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const print = options.print ?? ((line: string) => process.stdout.write(line + '\n'));
  const random = seededRandom(options.seed);
  const faultRandom = seededRandom(options.seed ^ 0x5bd1e995);
  const size = options.members ?? 3;
  const electionMs = options.electionMs ?? 1000;
  const heartbeatMs = options.heartbeatMs ?? 100;
  const mode: NetworkMode = options.network === 'loopback' ? 'loopback' : options.network === 'netns' ? 'netns' : namespacesAvailable() ? 'netns' : 'loopback';
  const durationMs = options.durationS * 1000;
  const plan = planFaults({ random: faultRandom, kinds: options.faults, durationMs, members: size });
  const schedule = plan.map(describePlanned);
  // Its own stream, so that --membership leaves a seed's fault schedule as it was.
  const membershipRandom = seededRandom(options.seed ^ 0x2545f491);
  const membershipPlan = options.membership === 'on' ? planMembership({ random: membershipRandom, durationMs }) : [];
  print(`chaos: seed ${options.seed}, ${size} members, ${options.durationS} s, faults ${options.faults.join(',') || 'none'}${options.membership === 'on' ? ', membership changes' : ''}, election ${electionMs} ms, heartbeat ${heartbeatMs} ms, snapshot-count ${options.snapshotCount ?? 2_000}${options.registerReads === 'serializable' ? ', SERIALIZABLE register reads (checker self-test)' : ''}`);
  print(`schedule (${plan.length} faults):`);
  for (const line of schedule) print(`  ${line}`);
  if (options.membership === 'on') {
    print(`membership schedule (up to ${membershipPlan.length} cycles, none starting in the last 10 s; victims resolved when a cycle starts):`);
    membershipPlan.forEach((cycle, i) => print(`  cycle ${i}: ${describeCycle(cycle)}`));
  }

  const t0 = performance.now();
  const now = (): number => performance.now() - t0;
  const root = await mkdtemp(join(tmpdir(), 'kvd-chaos-'));
  const unexpectedExits: string[] = [];
  const cluster = await FaultCluster.start({
    size, mode, root, heartbeatMs, electionMs, snapshotCount: options.snapshotCount ?? 2_000, random: seededRandom(options.seed ^ 0x1234567), now,
    onUnexpectedExit: (member, code, signal) => {
      unexpectedExits.push(`${now().toFixed(0)} ms: ${member} exited by itself (code ${code}, signal ${signal})`);
    },
  });
  print(`network: ${cluster.describeNetwork()}`);
  const applied: AppliedFault[] = [];
  const leaderChanges: Array<{ atMs: number; leader: string | undefined }> = [];
  const checks: CheckOutcome[] = [];
  let registerHistory: RegisterOp[] = [];
  let setResult: Awaited<ReturnType<typeof runSet>> | undefined;
  let leaseHistories: LeaseHistory[] = [];
  let watchers: PrefixWatcher[] = [];
  let reference: WatchEvent[] = [];
  let finalSet: Set<string> | undefined;
  let savedTo: string | undefined;
  let workloadsStartMs = 0;
  let workloadsStopMs = 0;
  const book = new EndpointBook(cluster.endpoints, { now, random: seededRandom(options.seed ^ 0x68e31da4) });
  const nemesis = options.membership === 'on' ? new MembershipNemesis({ cluster, book, size, random: membershipRandom, now, print }) : undefined;
  const stopMembership = new AbortController();
  const stopWorkloads = new AbortController();
  const stopLeasePolls = new AbortController();
  let membershipRun: Promise<void> = Promise.resolve();
  let membershipError: string | undefined;
  try {
    await cluster.waitForLeader({ timeoutMs: 30_000 });
    const prefix = `chaos-${options.seed}/`;
    const start = await call<RangeResponseJs>(cluster.endpoints[0], 'KV', 'Range', { key: Buffer.from('x') }, { timeoutMs: 5_000 });
    const startRevision = Number(start.header.revision) + 1;
    const ctx: WorkloadContext = { now, random, endpoints: () => book.current(), prefix, stop: stopWorkloads.signal, requestTimeoutMs: REQUEST_TIMEOUT_MS };
    watchers = cluster.members.map((m, i) => new PrefixWatcher(ctx, { name: `watch@${m.name}`, endpointIndex: i, startRevision }));
    for (const watcher of watchers) watcher.open();

    // Leader monitor: records changes of the agreed leader (for the lease checker and the report).
    const monitor = (async () => {
      let last: string | undefined = 'none';
      for (let i = 0; i < 100_000 && !stopLeasePolls.signal.aborted; i++) {
        const leader = await cluster.leader({ timeoutMs: 300 });
        if (leader !== last) {
          leaderChanges.push({ atMs: now(), leader });
          last = leader;
        }
        for (const watcher of watchers) watcher.reconnectIfStale(15_000);
        await pause(300, stopLeasePolls.signal);
      }
    })();
    // The workloads learn the endpoints from the member list while members come and go.
    const endpointRefresh = nemesis === undefined ? Promise.resolve() : (async () => {
      for (let i = 0; i < 100_000 && !stopLeasePolls.signal.aborted; i++) {
        await book.refresh(cluster.activeMembers().map((m) => m.endpoint));
        await pause(ENDPOINT_REFRESH_MS, stopLeasePolls.signal);
      }
    })();
    workloadsStartMs = now();
    const registers = runRegisters(ctx, { clients: 6, keys: 6, thinkMs: 20, reads: options.registerReads ?? 'linearizable' });
    const set = runSet(ctx, { clients: 2, thinkMs: 30 });
    const leases = runLeases(ctx, { clients: options.leaseClients ?? 2, ttlSeconds: LEASE_TTL_S, maxWatchMs: 60_000, finalStop: stopLeasePolls.signal });

    // The nemesis; the schedule's times count from here.
    const workStartMs = now();
    print(`${(workStartMs / 1000).toFixed(1)}s  cluster up, workloads running; schedule times below are absolute`);
    if (nemesis !== undefined) {
      // Runs beside the fault schedule; never rejects (a failure is recorded and checked below).
      membershipRun = nemesis.run(membershipPlan, { endMs: workStartMs + durationMs, stop: stopMembership.signal }).catch((error: unknown) => {
        membershipError = error instanceof Error ? error.stack ?? error.message : String(error);
        print(`membership nemesis failed: ${membershipError}`);
      });
    }
    for (const fault of plan) {
      const startIn = workStartMs + fault.atMs - now();
      if (startIn > 0) await pause(startIn);
      const { description, heal } = await applyFault(cluster, fault, faultRandom);
      const record: AppliedFault = { description, startMs: now(), endMs: Number.POSITIVE_INFINITY };
      applied.push(record);
      print(`  ${(record.startMs / 1000).toFixed(1)}s  ${description}`);
      await pause(fault.durationMs);
      await heal();
      record.endMs = now();
      print(`  ${(record.endMs / 1000).toFixed(1)}s  healed`);
    }
    const remaining = workStartMs + durationMs - now();
    if (remaining > 0) await pause(remaining);
    let restored = true;
    if (nemesis !== undefined) {
      // The fault schedule is over: let the cycle in progress finish (bounded by its deadline),
      // bring every member that should run back, and restore the membership while the
      // workloads still run.
      stopMembership.abort();
      print(`${(now() / 1000).toFixed(1)}s  faults over; waiting for the membership cycle in progress`);
      await membershipRun;
      healCluster(cluster);
      restored = await nemesis.reconcile({ deadline: now() + FINAL_RECONCILE_MS, label: 'at the end of the run' });
      const deadline = now() + REMOVED_EXIT_WAIT_MS;
      while (now() < deadline && cluster.members.some((m) => m.lifecycle === 'removed' && m.process !== undefined)) await pause(200);
    }
    stopWorkloads.abort();
    workloadsStopMs = now();
    print(`${(now() / 1000).toFixed(1)}s  workloads stopping`);
    registerHistory = await registers;
    setResult = await set;
    // The register history needs no live cluster: check it first, so that a run whose cluster is
    // left without a leader still gets this verdict; in a worker thread, so that the proxies and
    // clients of this process keep running meanwhile (register-check.ts).
    const { pruned, result: lin } = await checkRegistersOffThread(registerHistory, { maxStepsPerKey: 5_000_000 });
    const counts = { ok: registerHistory.filter((o) => o.returnMs !== null).length, unknown: registerHistory.filter((o) => o.returnMs === null).length };
    checks.push({
      name: 'registers (linearizability)',
      valid: lin.verdict === 'ok',
      summary: `${lin.verdict}: ${registerHistory.length} ops (${counts.ok} completed, ${counts.unknown} unknown/failed), ${pruned} after pruning, ${lin.keys.length} keys, ${lin.keys.reduce((s, k) => s + k.steps, 0)} search steps` +
        lin.keys.filter((k) => k.verdict !== 'ok').map((k) => `; key ${k.key}: ${k.verdict}${k.stuckAt === undefined ? '' : ` (stuck at op ${k.stuckAt} after ${k.longestPrefix?.length} linearized)`}`).join(''),
      details: lin.keys.filter((k) => k.verdict !== 'ok'),
    });
    print(`${(now() / 1000).toFixed(1)}s  waiting for a leader`);
    await cluster.waitForLeader({ timeoutMs: 60_000 });
    // Lease clients poll their last key until it expires (bounded by maxWatchMs).
    const leaseDeadline = Date.now() + 30_000;
    const leasesDone = leases.then((h) => (leaseHistories = h));
    while (Date.now() < leaseDeadline && leaseHistories.length === 0) await Promise.race([leasesDone, pause(200)]);
    stopLeasePolls.abort();
    leaseHistories = await leases;
    await monitor;
    await endpointRefresh;

    // Final state: a linearizable read of the set and the head revision, then the reference order.
    const readCtx = { now, random, endpoints: () => book.current(), prefix, requestTimeoutMs: REQUEST_TIMEOUT_MS };
    finalSet = await readSet(readCtx, { timeoutMs: 30_000 });
    const head = await waitFor('the head revision', async () => {
      const leader = await cluster.leader({ timeoutMs: 1000 });
      if (leader === undefined) return undefined;
      const response = await call<RangeResponseJs>(cluster.member(leader).endpoint, 'KV', 'Range', { key: Buffer.from(prefix), range_end: Buffer.from([0]), count_only: true }, { timeoutMs: 2000 });
      return Number(response.header.revision);
    }, { timeoutMs: 30_000 });
    reference = await referenceEvents(readCtx, { startRevision, untilRevision: head, timeoutMs: 30_000 });
    const lastPrefixRevision = reference.length === 0 ? startRevision - 1 : reference[reference.length - 1].revision;
    // Give the watchers time to catch up, bounded.
    const catchUpDeadline = Date.now() + 15_000;
    while (Date.now() < catchUpDeadline && watchers.some((w) => w.lastRevision < lastPrefixRevision)) await pause(100);
    for (const watcher of watchers) watcher.close();

    // ── checks ──
    const setCheck = checkSet(setResult.adds, finalSet);
    checks.push({
      name: 'set (lost acknowledged adds)',
      valid: setCheck.valid,
      summary: `${setCheck.attempted} adds, ${setCheck.acknowledged} acknowledged, ${setCheck.unknownPresent} unknown present, ${setCheck.lost.length} lost, ${setCheck.unexpected.length} unexpected` + (setCheck.lost.length > 0 ? `; lost: ${setCheck.lost.slice(0, 10).join(',')}` : ''),
      details: setCheck,
    });
    const acked = [...ackedRegisterWrites(registerHistory), ...setResult.acked];
    const watchCheck = checkWatches(watchers.map((w) => ({ name: w.name, events: w.events })), reference, acked);
    const lagging = watchers.filter((w) => w.lastRevision < lastPrefixRevision).map((w) => `${w.name} at ${w.lastRevision} < ${lastPrefixRevision}`);
    checks.push({
      name: 'watch (gap-free prefixes of one order)',
      valid: watchCheck.valid,
      summary: `${watchCheck.watchers} watchers, ${watchCheck.eventsSeen} events seen, reference ${watchCheck.referenceEvents} events, ${acked.length} acknowledged writes located, reconnects ${watchers.map((w) => w.reconnects).join('/')}` +
        (lagging.length > 0 ? `; lagging (not an error): ${lagging.join(', ')}` : '') + topReasons(watchers) + watchCheck.anomalies.slice(0, 5).map((a) => `; ${a.watcher} ${a.kind} at ${a.index}: ${a.detail}`).join(''),
      details: watchCheck.anomalies,
    });
    const disturbances: Disturbance[] = [
      ...applied.map((f) => ({ startMs: f.startMs, endMs: f.endMs })),
      ...leaderChanges.map((c) => ({ startMs: c.atMs - 300, endMs: c.atMs })),
      // Removing (or replacing) the leader hands leadership over: a leader change the monitor
      // may see late, or not at all when it falls between two polls.
      ...(nemesis?.ops ?? []).filter((op) => op.chosenAsLeader || op.leaderHandedOver).map((op) => ({ startMs: op.startMs, endMs: Number.isNaN(op.endMs) ? Number.POSITIVE_INFINITY : op.endMs })),
    ];
    const leaseCheck = checkLeases(leaseHistories, disturbances, { electionTimeoutMs: electionMs });
    checks.push({
      name: 'lease (expiry bounds)',
      valid: leaseCheck.valid,
      summary: `${leaseCheck.leases} leases, ${leaseCheck.reads} reads, ${leaseCheck.expiriesObserved} expiries observed` + leaseCheck.anomalies.slice(0, 5).map((a) => `; lease ${a.lease} ${a.kind}: ${a.detail}`).join(''),
      details: leaseCheck.anomalies,
    });
    checks.push(await checkConvergence(cluster));
    if (nemesis !== undefined) checks.push(await checkMembership(cluster, nemesis, { size, restored, error: membershipError }));
    checks.push({ name: 'processes (no member exited by itself)', valid: unexpectedExits.length === 0, summary: unexpectedExits.length === 0 ? 'none' : unexpectedExits.join('; ') });
    const floors = options.progressFloors ?? PROGRESS_FLOORS;
    const progress = checkProgress([
      { name: 'registers', completed: counts.ok, floorPerSecond: floors.registers },
      { name: 'set', completed: setCheck.acknowledged, floorPerSecond: floors.set },
    ], { workloadMs: workloadsStopMs - workloadsStartMs });
    checks.push({ name: 'progress (completed operations above the floor)', valid: progress.valid, summary: progress.summary, details: progress.workloads });
  } catch (error: unknown) {
    checks.push({ name: 'run', valid: false, summary: `the run itself failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}` });
  } finally {
    // Also when the run failed half-way: every loop of the run stops (each is bounded anyway).
    stopWorkloads.abort();
    stopLeasePolls.abort();
    stopMembership.abort();
    await membershipRun;
    const failed = checks.filter((c) => !c.valid).length;
    if (failed > 0 || options.save === 'always') {
      const dir = join(options.resultsDir ?? join(tmpdir(), 'kvd-chaos'), `seed-${options.seed}-${new Date().toISOString().replace(/[:.]/g, '-')}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, 'history.json'), JSON.stringify({
        seed: options.seed, durationS: options.durationS, faults: options.faults, members: size, electionMs, heartbeatMs,
        network: cluster.describeNetwork(), schedule, applied, leaderChanges, checks,
        registers: registerHistory, set: setResult, finalSet: finalSet === undefined ? undefined : [...finalSet],
        watchers: watchers.map((w) => ({ name: w.name, reconnects: w.reconnects, reasons: [...w.reasons], notes: w.notes, events: w.events })), reference, leases: leaseHistories,
        membership: nemesis === undefined ? undefined : {
          plan: membershipPlan, cycles: nemesis.cycles, ops: nemesis.ops, opsDropped: nemesis.opsDropped, counts: nemesis.counts,
          endpointChanges: book.changes, members: memberTable(cluster), removedAtMs: Object.fromEntries(nemesis.removedAtMs),
        },
      }, (_key, value: unknown) => (value === Number.POSITIVE_INFINITY ? 'Infinity' : typeof value === 'bigint' ? hexId(value) : value)));
      for (const member of cluster.members.filter((m) => existsSync(m.logPath))) {
        try {
          copyFileSync(member.logPath, join(dir, `${member.name}.log`));
        } catch (error: unknown) {
          print(`could not copy ${member.name}'s log: ${String(error)}`);
        }
      }
      savedTo = dir;
    }
    closeLeaseClients();
    closeClients();
    await cluster.destroy();
  }
  const faultMs = applied.reduce((sum, f) => sum + (Number.isFinite(f.endMs) ? f.endMs - f.startMs : 0), 0);
  print(`fault time ${(faultMs / 1000).toFixed(1)} s in ${applied.length} faults; leader changes observed: ${Math.max(0, leaderChanges.length - 1)}`);
  if (nemesis !== undefined) print(`membership: ${describeMembership(nemesis)}`);
  for (const check of checks) print(`${check.valid ? 'PASS' : 'FAIL'} ${check.name}: ${check.summary}`);
  if (savedTo !== undefined) print(`history saved to ${savedTo}`);
  const failed = checks.filter((c) => !c.valid).length;
  const passed = checks.length - failed;
  print(`${passed} passed, ${failed} failed`);
  const completed = {
    registers: registerHistory.filter((o) => o.returnMs !== null).length,
    set: setResult?.adds.filter((a) => a.outcome === 'ok').length ?? 0,
    workloadMs: workloadsStopMs - workloadsStartMs,
  };
  const membership = nemesis === undefined ? undefined : {
    counts: nemesis.counts,
    cycles: nemesis.cycles.filter((c) => c.kind !== 'reconcile').length,
    cyclesFailed: nemesis.cycles.filter((c) => c.kind !== 'reconcile' && c.outcome !== 'ok').length,
    ops: nemesis.ops,
  };
  return { seed: options.seed, network: mode, schedule, applied, faultMs, checks, passed, failed, completed, ...(membership === undefined ? {} : { membership }), ...(savedTo === undefined ? {} : { savedTo }) };
}

/** One line: cycles and the membership operations that succeeded. */
function describeMembership(nemesis: MembershipNemesis): string {
  const cycles = nemesis.cycles.filter((c) => c.kind !== 'reconcile');
  const c = nemesis.counts;
  return `${cycles.length} cycles (${cycles.filter((x) => x.outcome === 'ok').length} ok), ${c.adds} adds (${c.addsLearner} learners, ${c.addsVoter} voters), ${c.promotes} promotes, ${c.removes} removes (${c.leaderRemovals} of the leader, by the servers' hand-over logs), ${c.replaces} replaces, ${c.reconcileChanges} reconcile changes, ${c.failedOps} operations failed or gave up`;
}

/** Every member slot of the run, for the history: who was which member id, and how it ended. */
function memberTable(cluster: FaultCluster): unknown[] {
  return cluster.members.map((m) => ({
    name: m.name, id: m.id === undefined ? undefined : hexId(m.id), lifecycle: m.lifecycle, endpoint: m.endpoint, peerUrl: m.peerUrl,
    namespace: m.namespace, state: m.state, joined: m.joinInitialCluster !== undefined, exits: m.exits,
  }));
}

/**
 * The membership at the end: `size` started voters, each the id of an active member whose
 * process runs, and no other member; removed members stopped (by themselves with exit 0, or were
 * down when removed) and none still running; one removed member's data dir refuses to start.
 */
async function checkMembership(cluster: FaultCluster, nemesis: MembershipNemesis, options: { size: number; restored: boolean; error: string | undefined }): Promise<CheckOutcome> {
  const problems: string[] = [];
  if (options.error !== undefined) problems.push(`the nemesis failed: ${options.error}`);
  if (!options.restored) problems.push('the final reconcile did not restore the membership');
  const active = cluster.activeMembers();
  const members = await listMembers(active.map((m) => m.endpoint));
  if (members === undefined) problems.push('the member list could not be read');
  else {
    const learners = members.filter((m) => m.isLearner).length;
    const unstarted = members.filter((m) => m.name === '').length;
    if (members.length !== options.size || learners > 0 || unstarted > 0) problems.push(`member list has ${members.length} members (${learners} learners, ${unstarted} unstarted), want ${options.size} started voters`);
    for (const m of members) {
      const member = active.find((a) => a.id === m.id);
      if (member === undefined) problems.push(`member ${m.name} ${hexId(m.id)} is not an active member of the harness`);
      else if (member.state !== 'running') problems.push(`${member.name} ${hexId(m.id)} is a member but its process is ${member.state}`);
    }
    for (const a of active) if (!members.some((m) => m.id === a.id)) problems.push(`${a.name} is active in the harness but not in the member list`);
  }
  const removed = cluster.members.filter((m) => m.lifecycle === 'removed' && (m.index <= options.size || m.joinInitialCluster !== undefined));
  const stoppedThemselves: string[] = [];
  let downWhenRemoved = 0;
  for (const member of removed) {
    const removedAt = nemesis.removedAtMs.get(member.name);
    if (member.process !== undefined) {
      problems.push(`${member.name} was removed${removedAt === undefined ? '' : ` at ${(removedAt / 1000).toFixed(1)} s`} and still runs`);
      continue;
    }
    const last = member.exits[member.exits.length - 1];
    if (last !== undefined && (last.lifecycle === 'leaving' || last.lifecycle === 'removed')) {
      if (last.code !== 0) problems.push(`${member.name} exited with code ${last.code} (signal ${last.signal}) after its removal`);
      else stoppedThemselves.push(`${member.name} at ${(last.atMs / 1000).toFixed(1)} s${removedAt === undefined ? '' : ` (removal answered at ${(removedAt / 1000).toFixed(1)} s)`}`);
    } else downWhenRemoved++;
  }
  // A removed member's data dir must refuse to start again (probe one that left its marker).
  let probe = 'no removed member left a marker to probe';
  const probed = removed.find((m) => existsSync(join(m.dataDir, 'member', REMOVED_MARKER)));
  if (probed !== undefined) {
    const outcome = await cluster.probeRestart(probed.name, { timeoutMs: RESTART_PROBE_MS });
    if (outcome === 'running') problems.push(`${probed.name}'s data dir started again after its removal (killed after ${RESTART_PROBE_MS} ms)`);
    else if (outcome.code === 0 || outcome.code === null) problems.push(`${probed.name}'s restart on its data dir ended with code ${outcome.code} (signal ${outcome.signal}), not a refusal`);
    probe = outcome === 'running' ? `${probed.name} restarted` : `${probed.name} refused to restart (exit ${outcome.code})`;
  }
  // The servers' own word on leader removals: a leader being removed logs its hand-over.
  const handovers = cluster.members.filter((m) => existsSync(m.logPath)).reduce((sum, m) => sum + readFileSync(m.logPath, 'utf8').split('"event":"leader-handover"').length - 1, 0);
  const summary = `${describeMembership(nemesis)}; leader hand-overs logged by the servers: ${handovers}; final member list ${members === undefined ? 'unread' : members.map((m) => `${m.name}:${hexId(m.id)}${m.isLearner ? '(learner)' : ''}`).join(',')}; ` +
    `${removed.length} removed members: ${stoppedThemselves.length} stopped by themselves (exit 0${stoppedThemselves.length > 0 ? `: ${stoppedThemselves.join(', ')}` : ''}), ${downWhenRemoved} were down when removed; ${probe}` +
    (problems.length > 0 ? `; PROBLEMS: ${problems.join('; ')}` : '');
  return { name: 'membership (size restored, removed members gone)', valid: problems.length === 0, summary, details: problems };
}

/** The three most frequent watch reconnect reasons, for the summary. */
function topReasons(watchers: readonly PrefixWatcher[]): string {
  const total = new Map<string, number>();
  for (const watcher of watchers) for (const [reason, count] of watcher.reasons) total.set(reason, (total.get(reason) ?? 0) + count);
  const top = [...total].sort((a, b) => b[1] - a[1]).slice(0, 3);
  return top.length === 0 ? '' : `; reconnect reasons: ${top.map(([reason, count]) => `${count}x ${reason}`).join(' | ')}`;
}

/** Every member reaches the leader's revision and reports the same HashKV there. */
async function checkConvergence(cluster: FaultCluster): Promise<CheckOutcome> {
  try {
    const leader = await cluster.waitForLeader({ timeoutMs: 30_000 });
    const revisionOf = async (endpoint: string): Promise<number> => Number((await call<RangeResponseJs>(endpoint, 'KV', 'Range', { key: Buffer.from('x'), serializable: true }, { timeoutMs: 2000 })).header.revision);
    const target = await revisionOf(cluster.member(leader).endpoint);
    const members = cluster.activeMembers();
    for (const member of members) {
      await waitFor(`${member.name} to reach revision ${target}`, async () => ((await revisionOf(member.endpoint)) >= target ? true : undefined), { timeoutMs: 30_000, intervalMs: 100 });
    }
    const hashes = await Promise.all(members.map(async (m) => `${m.name}:${(await call<{ hash: number }>(m.endpoint, 'Maintenance', 'HashKV', { revision: String(target) }, { timeoutMs: 5000 })).hash}`));
    const distinct = new Set(hashes.map((h) => h.split(':')[1]));
    return { name: 'convergence (HashKV)', valid: distinct.size === 1, summary: `at revision ${target}: ${hashes.join(' ')}` };
  } catch (error: unknown) {
    return { name: 'convergence (HashKV)', valid: false, summary: `members did not converge: ${String(error)}` };
  }
}

/** Parses the command line (see the module comment). */
export function parseArgs(argv: readonly string[]): ChaosOptions {
  const value = (flag: string): string | undefined => {
    const index = argv.indexOf(flag);
    if (index < 0) return undefined;
    const v = argv[index + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`${flag} needs a value`);
    return v;
  };
  const known = new Set(['--duration', '--seed', '--faults', '--members', '--snapshot-count', '--lease-clients', '--election-ms', '--heartbeat-ms', '--results', '--loopback', '--save-all', '--serializable-reads', '--membership']);
  for (const arg of argv) if (arg.startsWith('--') && !known.has(arg)) throw new Error(`unknown flag ${arg}`);
  const faultsText = value('--faults') ?? FAULT_KINDS.join(',');
  const faults = faultsText === '' || faultsText === 'none' ? [] : faultsText.split(',').map((f) => {
    if (!(FAULT_KINDS as readonly string[]).includes(f)) throw new Error(`--faults: unknown fault "${f}" (known: ${FAULT_KINDS.join(', ')})`);
    return f as FaultKind;
  });
  const durationS = Number(value('--duration') ?? '60');
  const seed = Number(value('--seed') ?? String(Date.now() % 1_000_000));
  const members = Number(value('--members') ?? '3');
  const snapshotCount = Number(value('--snapshot-count') ?? '2000');
  const leaseClients = Number(value('--lease-clients') ?? '2');
  const electionMs = Number(value('--election-ms') ?? '1000');
  const heartbeatMs = Number(value('--heartbeat-ms') ?? '100');
  if (!(electionMs > 0) || !(heartbeatMs > 0)) throw new Error('--election-ms and --heartbeat-ms must be positive numbers');
  if (!(leaseClients >= 0)) throw new Error('--lease-clients must be a number >= 0');
  if (!(snapshotCount >= 1)) throw new Error('--snapshot-count must be a positive number');
  if (!(durationS > 0) || !Number.isInteger(seed) || !(members >= 1)) throw new Error('--duration, --seed and --members must be positive numbers (seed an integer)');
  const results = value('--results');
  return {
    durationS, seed, faults, members, snapshotCount, leaseClients, electionMs, heartbeatMs,
    ...(results === undefined ? {} : { resultsDir: results }),
    network: argv.includes('--loopback') ? 'loopback' : 'auto',
    save: argv.includes('--save-all') ? 'always' : 'on-failure',
    registerReads: argv.includes('--serializable-reads') ? 'serializable' : 'linearizable',
    membership: argv.includes('--membership') ? 'on' : 'off',
  };
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  let options: ChaosOptions;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (error: unknown) {
    process.stderr.write(`chaos: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(2);
  }
  // Turn Ctrl-C / SIGTERM into a normal exit so the cluster's exit hook removes the namespaces.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  const report = await runChaos(options);
  process.exit(report.failed === 0 ? 0 : 1);
}

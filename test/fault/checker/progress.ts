/**
 * Checker for the amount of work a chaos run got done. Every other checker passes vacuously on
 * an empty history (no register operation cannot be non-linearizable, no acknowledged add cannot
 * be lost), so a run whose clients completed nothing, or far too little for its length, must
 * fail here: it proves nothing about the others.
 *
 * The floors are rates per second of workload time, far below what a healthy run reaches on a
 * loaded 2-core machine with every fault family active (see PROGRESS_FLOORS), so that only a
 * cluster that is down or stuck for most of the run trips them.
 */

/** Completed operations of one workload over the run. */
export interface WorkloadCount {
  readonly name: string;
  /** Operations that completed with a definite answer (acknowledged writes, answered reads). */
  readonly completed: number;
  /** Least completed operations per second of workload time for the run to count. */
  readonly floorPerSecond: number;
}

/** The progress checker's verdict. */
export interface ProgressResult {
  readonly valid: boolean;
  /** One entry per workload: its count, rate and floor, and whether it cleared the floor. */
  readonly workloads: ReadonlyArray<WorkloadCount & { readonly required: number; readonly perSecond: number; readonly cleared: boolean }>;
  readonly summary: string;
}

/**
 * The default floors, in completed operations per second of workload time. Measured healthy
 * runs (seed 20261123, 70 s, all fault kinds, loopback, a 2-core machine busy with other test
 * runs) complete roughly 60-100 register operations and 15-30 set adds per second; the floors
 * sit at about a tenth of the lowest, so a run must be stuck for ~90 % of its length to fail.
 */
export const PROGRESS_FLOORS = { registers: 10, set: 3 } as const;

/** Checks that each workload completed at least `floorPerSecond` × the workload seconds. */
export function checkProgress(counts: readonly WorkloadCount[], options: { readonly workloadMs: number }): ProgressResult {
  const seconds = options.workloadMs / 1000;
  const workloads = counts.map((count) => {
    const required = Math.ceil(count.floorPerSecond * seconds);
    const perSecond = seconds > 0 ? count.completed / seconds : 0;
    // A run of zero length (or a negative count) cannot clear any floor.
    const cleared = seconds > 0 && count.completed >= Math.max(1, required);
    return { ...count, required, perSecond, cleared };
  });
  const valid = workloads.length > 0 && workloads.every((w) => w.cleared);
  const summary = `${seconds.toFixed(1)} s of workload: ` + workloads
    .map((w) => `${w.name} ${w.completed} completed (${w.perSecond.toFixed(1)}/s; floor ${w.floorPerSecond}/s = ${w.required})${w.cleared ? '' : ' BELOW FLOOR'}`)
    .join(', ');
  return { valid, workloads, summary };
}

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
 * The default floors, in completed operations per second of workload time. A healthy run here
 * (seed 20261123, 70 s, every fault kind, a 2-core machine shared with other test runs)
 * completed 114-190 register operations and 33-53 set adds per second (the lower figures with
 * the whole suite running beside it); the floors are a tenth of the lowest or less, so a run
 * fails only when its cluster was unavailable for nearly all of it (or the machine is ten times
 * slower still), and a run that completes nothing always does.
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

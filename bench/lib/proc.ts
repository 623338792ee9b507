/**
 * Per-process resource readings from Linux /proc: CPU seconds (utime + stime from
 * /proc/<pid>/stat), current and peak resident set size (VmRSS / VmHWM from /proc/<pid>/status),
 * and resetting the peak (writing 5 to /proc/<pid>/clear_refs) so that each workload reports its
 * own peak on a long-lived process.
 */
import { readFileSync, writeFileSync } from 'node:fs';

/** Clock ticks per second for /proc/<pid>/stat times (USER_HZ; 100 on every Linux we target). */
const CLOCK_TICKS_PER_SECOND = 100;

/** One reading of a process. */
export interface ProcSample {
  readonly pid: number;
  /** utime + stime in seconds. */
  readonly cpuSeconds: number;
  /** Current resident set size in bytes. */
  readonly rssBytes: number;
  /** Peak resident set size (VmHWM) in bytes, since start or the last resetPeakRss(). */
  readonly peakRssBytes: number;
}

/** Reads CPU and memory of `pid`; undefined if the process is gone. */
export function sampleProcess(pid: number): ProcSample | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may contain spaces; the rest follows the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    const ticks = Number(fields[11]) + Number(fields[12]);
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return { pid, cpuSeconds: ticks / CLOCK_TICKS_PER_SECOND, rssBytes: statusKb(status, 'VmRSS') * 1024, peakRssBytes: statusKb(status, 'VmHWM') * 1024 };
  } catch (error: unknown) {
    if (error instanceof Error && 'code' in error && error.code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Resets VmHWM of `pid` to its current RSS. Returns false where the kernel refuses. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch (error: unknown) {
    process.stderr.write(`bench: cannot reset peak RSS of ${pid}: ${String(error)}\n`);
    return false;
  }
}

function statusKb(status: string, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
  return match === null ? 0 : Number(match[1]);
}

/** Busy and total CPU seconds of the whole machine so far (from /proc/stat, all CPUs). */
export function machineCpu(): { busySeconds: number; totalSeconds: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
  const ticks = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal ...
  const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
  const total = ticks.slice(0, 8).reduce((sum, value) => sum + value, 0);
  return { busySeconds: (total - idle) / CLOCK_TICKS_PER_SECOND, totalSeconds: total / CLOCK_TICKS_PER_SECOND };
}

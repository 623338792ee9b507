/**
 * Environmental dead-ends (STYLE.md §4): disk full, fsync failure, corruption. The member logs
 * one line and exits with a distinct code per reason, so supervisors and tests can tell them
 * apart. Never used for expected outcomes.
 */
export const FATAL_EXIT_CODES = {
  'disk-full': 10,
  'fsync-failed': 11,
  corrupt: 12,
  'loop-failed': 13,
  /** A broken invariant (an AssertionError from the Raft core, the store or the apply path): a bug. */
  invariant: 14,
  'bad-config': 2,
} as const;

export type FatalReason = keyof typeof FATAL_EXIT_CODES;

/** Writes a JSON line to stderr and exits the process. Never returns. */
export function fatal(reason: FatalReason, detail: string, cause?: unknown): never {
  const line = JSON.stringify({
    level: 'fatal',
    time: new Date().toISOString(),
    event: 'fatal',
    reason,
    msg: detail,
    cause: cause instanceof Error ? cause.stack ?? cause.message : cause === undefined ? undefined : String(cause),
  });
  process.stderr.write(`${line}\n`);
  process.exit(FATAL_EXIT_CODES[reason]);
}

/**
 * Test-only fault injection (etcd's gofail failpoints, in miniature): tests that must reproduce a
 * timing that real clusters only hit under load set `KVD_TEST_FAILPOINTS="name=value,..."` in a
 * member's environment. Unset in production; every failpoint defaults to "no fault". Unknown names
 * are refused so a typo cannot silently disable a test.
 *
 * - `applyDelayMs=N`: each committed batch waits N ms before it is applied (an applier that lags
 *   its commit index, as under a slow disk).
 * - `raftAssertOnTerm=N`: the Raft core's step() throws an AssertionError for any peer message of
 *   term >= N (a stand-in for a broken core invariant, to test that the member fail-stops).
 * - `compactorRevisionIntervalMs=N`: revision-mode auto-compaction checks every N ms instead of
 *   etcd's 5 minutes (0 = etcd's interval), so a test can see it act.
 */
export interface Failpoints {
  readonly applyDelayMs: number;
  readonly raftAssertOnTerm: number;
  readonly compactorRevisionIntervalMs: number;
}

export const NO_FAILPOINTS: Failpoints = Object.freeze({ applyDelayMs: 0, raftAssertOnTerm: 0, compactorRevisionIntervalMs: 0 });

/** Environment variable holding the failpoints. */
export const FAILPOINTS_ENV = 'KVD_TEST_FAILPOINTS';

/** Parses `KVD_TEST_FAILPOINTS`; throws on unknown names or bad values. */
export function readFailpoints(env: NodeJS.ProcessEnv): Failpoints {
  const text = env[FAILPOINTS_ENV];
  if (text === undefined || text.trim() === '') return NO_FAILPOINTS;
  let applyDelayMs = 0;
  let raftAssertOnTerm = 0;
  let compactorRevisionIntervalMs = 0;
  for (const part of text.split(',').map((s) => s.trim()).filter((s) => s.length > 0)) {
    const [name, value] = part.split('=', 2);
    const number = Number(value);
    if (!Number.isSafeInteger(number) || number < 0) throw new Error(`${FAILPOINTS_ENV}: bad value in "${part}"`);
    switch (name) {
      case 'applyDelayMs':
        applyDelayMs = number;
        break;
      case 'raftAssertOnTerm':
        raftAssertOnTerm = number;
        break;
      case 'compactorRevisionIntervalMs':
        compactorRevisionIntervalMs = number;
        break;
      default:
        throw new Error(`${FAILPOINTS_ENV}: unknown failpoint "${name}"`);
    }
  }
  return { applyDelayMs, raftAssertOnTerm, compactorRevisionIntervalMs };
}

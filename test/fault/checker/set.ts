/**
 * Checker for the unique-append set workload: each element is added once (a Put of its own key
 * under the set's prefix); after the faults heal, the whole prefix is read. Every acknowledged
 * add must be present (no lost acknowledged writes), nothing may be present that was never
 * attempted, and failed adds (definite failures) must be absent.
 */

/** One attempted add. */
export interface SetAdd {
  readonly element: string;
  readonly outcome: 'ok' | 'fail' | 'unknown';
}

/** The set checker's findings. */
export interface SetResult {
  readonly valid: boolean;
  readonly attempted: number;
  readonly acknowledged: number;
  /** Acknowledged adds missing from the final read. */
  readonly lost: readonly string[];
  /** Elements present that were never attempted. */
  readonly unexpected: readonly string[];
  /** Adds that definitely failed but are present. */
  readonly failedButPresent: readonly string[];
  /** Adds with unknown outcome that turned out present. */
  readonly unknownPresent: number;
}

/** Compares the attempted adds with the final read (`present`, from a healed cluster). */
export function checkSet(adds: readonly SetAdd[], present: ReadonlySet<string>): SetResult {
  const attempted = new Map(adds.map((add) => [add.element, add.outcome] as const));
  const lost = adds.filter((a) => a.outcome === 'ok' && !present.has(a.element)).map((a) => a.element);
  const failedButPresent = adds.filter((a) => a.outcome === 'fail' && present.has(a.element)).map((a) => a.element);
  const unexpected = [...present].filter((element) => !attempted.has(element)).sort();
  const unknownPresent = adds.filter((a) => a.outcome === 'unknown' && present.has(a.element)).length;
  return {
    valid: lost.length === 0 && unexpected.length === 0 && failedButPresent.length === 0,
    attempted: adds.length,
    acknowledged: adds.filter((a) => a.outcome === 'ok').length,
    lost,
    unexpected,
    failedButPresent,
    unknownPresent,
  };
}

/**
 * Assertions for invariants (bugs), never for expected outcomes. They stay on in production:
 * a broken invariant means state can no longer be trusted, so we stop rather than corrupt data.
 * Never catch an AssertionError.
 */
export class AssertionError extends Error {
  override name = 'AssertionError';
}

/** Throws an {@link AssertionError} with `why` when `condition` is false. */
export function assert(condition: unknown, why: string): asserts condition {
  if (!condition) throw new AssertionError(`assertion failed: ${why}`);
}

/** Marks a switch as exhaustive: a value reaching this is a bug. */
export function unreachable(value: never, why = 'unreachable'): never {
  throw new AssertionError(`assertion failed: ${why}: ${String(value)}`);
}

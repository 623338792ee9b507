/**
 * Holds work until the end of the current event-loop turn and then releases all of it together
 * (one setImmediate for the whole batch). A member answers serializable one-key reads this way:
 * a read used to run its whole path (decode, read, encode, HTTP/2 answer) as soon as its request
 * arrived, interleaved with the parsing of the next requests; released together, the reads of a
 * turn run back to back, as linearizable reads do behind their ReadIndex barrier, and cost less
 * CPU each (measured in bench/README.md, "21:05–21:20").
 *
 * Bound: at most `maxQueued` waiters; beyond that {@link wait} returns undefined and the caller
 * goes on at once.
 */
import { assert } from './assert.js';

export class TurnBatch {
  readonly #maxQueued: number;
  #queued: Array<() => void> = [];
  #scheduled = false;

  constructor(options: { maxQueued: number }) {
    assert(Number.isSafeInteger(options.maxQueued) && options.maxQueued > 0, 'maxQueued is a positive integer');
    this.#maxQueued = options.maxQueued;
  }

  /** Waiters queued now. */
  get queued(): number {
    return this.#queued.length;
  }

  /** Resolves at the end of this turn with every other waiter; undefined when the batch is full (go on at once). */
  wait(): Promise<void> | undefined {
    if (this.#queued.length >= this.#maxQueued) return undefined;
    return new Promise<void>((resolve) => {
      this.#queued.push(resolve);
      if (this.#scheduled) return;
      this.#scheduled = true;
      setImmediate(() => this.#release());
    });
  }

  #release(): void {
    this.#scheduled = false;
    const queued = this.#queued;
    this.#queued = [];
    for (const resolve of queued) resolve();
  }
}

/**
 * Requests waiting for their entry to be applied, keyed by request id. Bounded: beyond
 * `maxPending` a new request is refused with 'too-many-requests' instead of queueing. Each waiter
 * has a deadline; when it passes, the request fails with 'timeout' (the entry may still commit
 * later: like etcd, a timed-out write has an unknown outcome).
 */
import { KvdError } from '../util/errors.js';
import { assert } from '../util/assert.js';
import { KeyedTable } from '../util/keyed-table.js';

interface Pending<T> {
  readonly id: bigint;
  readonly resolve: (value: T) => void;
  readonly reject: (error: KvdError) => void;
  readonly deadlineMs: number;
  readonly timeoutCode: 'timeout' | 'timeout-due-to-leader-fail';
  /** Runs when the waiter settles, however (see {@link Waiters.onSettled}). */
  settled: ((settledMs: number) => void) | undefined;
}

export class Waiters<T> {
  /** Not a Map: one entry in and one out per write (see KeyedTable). */
  readonly #pending = new KeyedTable<bigint, Pending<T>>((pending) => pending.id, (id) => Number(id & 0xffff_ffffn));
  readonly #maxPending: number;

  constructor(options: { maxPending: number }) {
    assert(options.maxPending > 0, 'maxPending is positive');
    this.#maxPending = options.maxPending;
  }

  get size(): number { return this.#pending.size; }

  /** True when one more waiter would exceed the bound. */
  get full(): boolean { return this.#pending.size >= this.#maxPending; }

  /** Registers `id`; the promise settles on {@link trigger}, {@link fail} or the deadline. */
  wait(id: bigint, options: { deadlineMs: number; timeoutCode?: 'timeout' | 'timeout-due-to-leader-fail' }): Promise<T> {
    if (this.full) return Promise.reject(new KvdError('too-many-requests'));
    let resolve!: (value: T) => void;
    let reject!: (error: KvdError) => void;
    const promise = new Promise<T>((resolveWith, rejectWith) => {
      resolve = resolveWith;
      reject = rejectWith;
    });
    // Outside the executor, so that a reused id throws here (request ids are unique): add() asserts
    // it in its own probe, with no second lookup per write.
    this.#pending.add({ id, resolve, reject, deadlineMs: options.deadlineMs, timeoutCode: options.timeoutCode ?? 'timeout', settled: undefined });
    return promise;
  }

  /**
   * Runs `settled` (with performance.now()) when the waiter of `id` settles, before its promise
   * does; at once when none waits. A reaction on the promise instead was a closure, a promise and
   * a microtask turn more for every write.
   */
  onSettled(id: bigint, settled: (settledMs: number) => void): void {
    const pending = this.#pending.get(id);
    if (pending === undefined) {
      settled(performance.now());
      return;
    }
    assert(pending.settled === undefined, 'one settled hook per waiter');
    pending.settled = settled;
  }

  /** Fails every waiter whose deadline is at or before `nowMs`. */
  expire(nowMs: number): void {
    if (this.#pending.size === 0) return;
    for (const pending of this.#pending.values()) {
      if (pending.deadlineMs > nowMs) continue;
      this.#pending.delete(pending.id);
      pending.settled?.(performance.now());
      pending.reject(new KvdError(pending.timeoutCode));
    }
  }

  /** True when `id` is waited for on this member. */
  has(id: bigint): boolean { return this.#pending.get(id) !== undefined; }

  /** Resolves the waiter of `id`, if any. */
  trigger(id: bigint, value: T): void {
    const pending = this.#pending.delete(id);
    if (pending === undefined) return;
    pending.settled?.(performance.now());
    pending.resolve(value);
  }

  /** Rejects the waiter of `id`, if any. */
  fail(id: bigint, error: KvdError): void {
    const pending = this.#pending.delete(id);
    if (pending === undefined) return;
    pending.settled?.(performance.now());
    pending.reject(error);
  }

  /** Rejects every waiter (shutdown). */
  failAll(error: KvdError): void {
    for (const pending of this.#pending.values()) this.fail(pending.id, error);
  }
}

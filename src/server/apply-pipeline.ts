/**
 * The apply pipeline: committed entries handed out by the Ready loop are applied on one serial
 * chain behind it, so a batch's backend write overlaps the next Ready's fdatasync (etcd applies
 * in its own goroutine the same way). Order is kept: one chain, batches in commit order.
 *
 * The pipeline only sequences; what applying means is the injected `apply` (the Applier). After
 * each batch it records the applied index and calls `afterBatch` (the member reports it to Raft,
 * answers reads, resolves lease duty, takes snapshots).
 *
 * Bound: at most `maxBacklogBatches` batches wait; beyond that the Ready loop awaits room()
 * before it asks Raft for more (back-pressure instead of an unbounded queue).
 */
import { assert } from '../util/assert.js';
import type { Entry } from '../raft/types.js';

export interface ApplyPipelineOptions {
  /** Applies one batch, in order; rejects only on a fatal failure (the member stops). */
  readonly apply: (entries: readonly Entry[]) => Promise<void>;
  /** Runs after each applied batch with the new applied index; may be async (awaited in order). */
  readonly afterBatch: (applied: number) => Promise<void>;
  /**
   * Called with any failure of apply/afterBatch. Fail-stop: it returns only while the member is
   * stopping (a batch the member could not apply because its disk is full is then abandoned).
   */
  readonly onFailure: (error: unknown) => void;
  /** Index applied before the first batch (the snapshot or backend index at start). */
  readonly appliedIndex: number;
  readonly maxBacklogBatches: number;
}

export class ApplyPipeline {
  readonly #options: ApplyPipelineOptions;
  #chain: Promise<void> = Promise.resolve();
  #backlog = 0;
  #applied: number;
  #roomWaiters: Array<() => void> = [];

  constructor(options: ApplyPipelineOptions) {
    assert(options.maxBacklogBatches > 0, 'maxBacklogBatches > 0');
    this.#options = options;
    this.#applied = options.appliedIndex;
  }

  /** Highest index applied so far. */
  get applied(): number { return this.#applied; }

  /** Batches queued or being applied. */
  get backlog(): number { return this.#backlog; }

  /** Queues committed entries (contiguous with everything queued before). */
  enqueue(entries: readonly Entry[]): void {
    if (entries.length === 0) return;
    this.#backlog += 1;
    this.#chain = this.#chain.then(async () => {
      try {
        await this.#options.apply(entries);
        const last = entries[entries.length - 1].index;
        assert(last >= this.#applied, 'applied index never goes back');
        this.#applied = last;
        await this.#options.afterBatch(last);
      } catch (error: unknown) {
        this.#options.onFailure(error);
      } finally {
        this.#backlog -= 1;
        if (this.#backlog < this.#options.maxBacklogBatches) for (const wake of this.#roomWaiters.splice(0)) wake();
      }
    });
  }

  /**
   * Runs `task` on the chain, after every batch queued so far and before any queued later (the
   * member reopens a failed store this way). A failure is fatal, as a batch's.
   */
  runExclusive(task: () => Promise<void>): void {
    this.#chain = this.#chain.then(async () => {
      try {
        await task();
      } catch (error: unknown) {
        this.#options.onFailure(error);
      }
    });
  }

  /** Resolves once every batch queued so far is applied. */
  drained(): Promise<void> {
    return this.#chain;
  }

  /** Resolves when fewer than maxBacklogBatches batches wait. */
  room(): Promise<void> {
    if (this.#backlog < this.#options.maxBacklogBatches) return Promise.resolve();
    return new Promise((resolve) => this.#roomWaiters.push(resolve));
  }

  /**
   * Sets the applied index after a snapshot installed state beyond everything queued (the
   * pipeline is drained first by the caller).
   */
  jumpTo(index: number): void {
    assert(this.#backlog === 0, 'the pipeline is drained before a snapshot is installed');
    if (index > this.#applied) this.#applied = index;
  }
}

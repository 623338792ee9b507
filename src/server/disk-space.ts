/**
 * A full disk on one member (ENOSPC/EDQUOT from its WAL, its backend or its snapshot files) is
 * not fatal (etcd exits; a cluster whose members share a full volume would all exit at once).
 * What the member does instead, part by part:
 *
 * - WAL (raft-node.ts): the Ready whose write failed is neither acknowledged nor sent; the loop
 *   retries the same write with a growing pause ({@link retryPauseMs}) until it succeeds. Nothing
 *   leaves the member meanwhile, so its peers go on without it (a leader is replaced after an
 *   election timeout, its core steps down by check-quorum); once space returns it sends what it
 *   held back (stale messages are harmless to Raft) and catches up.
 * - Backend (member.ts): a LevelDB write that fails leaves the in-memory store ahead of the disk,
 *   so the store refuses all use; the member closes it, reopens it from disk (retrying until there
 *   is room for LevelDB to recover its log), re-applies from the Raft log what the reopened store
 *   lacks, and goes on. Waiters of the failed batch get their answers from the re-apply.
 * - Raft snapshots (snapshotter.ts): skipped while the disk is full, taken later.
 *
 * While any part is full the member refuses writes and linearizable reads with `etcdserver: no
 * space left on device` (UNAVAILABLE, so clients fail over to another member), serves
 * serializable reads while its store is usable, and does not act as leader for leases. This class
 * only keeps the state, logs its changes and exports it as a metric.
 */
import { KvdError } from '../util/errors.js';
import type { Logger } from './logger.js';
import type { Gauge } from 'prom-client';

/** The parts of a member that write to its disk. */
export type DiskPart = 'wal' | 'store' | 'snapshot';

/** Pause before retry `attempt` (0-based) of a write that failed for lack of space: 100 ms doubling to 2 s. */
export function retryPauseMs(attempt: number): number {
  return Math.min(2_000, 100 * 2 ** Math.min(attempt, 5));
}

/** Which parts of this member cannot write for lack of space; logs each episode, sets the gauge. */
export class DiskSpace {
  readonly #logger: Logger;
  readonly #gauge: Gauge;
  /** Parts whose last write failed for lack of space, with when and why. */
  readonly #full = new Map<DiskPart, { readonly sinceMs: number; readonly detail: string }>();

  constructor(options: { logger: Logger; gauge: Gauge }) {
    this.#logger = options.logger;
    this.#gauge = options.gauge;
    this.#gauge.set(0);
  }

  /** True while any part cannot write. */
  get full(): boolean {
    return this.#full.size > 0;
  }

  /** True while `part` cannot write. */
  isFull(part: DiskPart): boolean {
    return this.#full.has(part);
  }

  /** The error requests are refused with while the disk is full, or undefined. */
  refusal(): KvdError | undefined {
    return this.full ? new KvdError('disk-full') : undefined;
  }

  /** A write of `part` failed for lack of space (logged once per episode). */
  reportFull(part: DiskPart, detail: string): void {
    if (this.#full.has(part)) return;
    this.#full.set(part, { sinceMs: Date.now(), detail });
    this.#gauge.set(1);
    this.#logger.error({ event: 'disk-full', part, error: detail }, `${part}: no space left on device; refusing writes and retrying until space returns`);
  }

  /** A write of `part` succeeded again. */
  reportRecovered(part: DiskPart): void {
    const episode = this.#full.get(part);
    if (episode === undefined) return;
    this.#full.delete(part);
    this.#gauge.set(this.#full.size > 0 ? 1 : 0);
    this.#logger.warn({ event: 'disk-space-recovered', part, fullForMs: Date.now() - episode.sinceMs }, `${part}: writing again after the disk was full`);
  }
}

/**
 * Auto-compaction (etcd's server/etcdserver/api/v3compactor), leader-driven: the leader proposes
 * Compact requests through Raft, as a client would; followers only keep the samples a future
 * leader needs. Logged ('auto-compaction-started' / -finished / -failed) and counted.
 *
 * - periodic (`--auto-compaction-mode periodic --auto-compaction-retention 1h`): keeps the given
 *   duration of history. The current revision is sampled every retention/10 (at most every 6
 *   minutes); once a full retention has passed since the start (or since the last compaction
 *   that succeeded, every min(retention, 1 h) after the first), the oldest sample, taken about a
 *   retention ago, is compacted. etcd 3.4's periodic.go, tick-driven instead of sleeping.
 * - revision (`--auto-compaction-mode revision --auto-compaction-retention 1000`): every 5 minutes
 *   (etcd's revInterval), compacts at current revision − retention, unless that is <= 0 or was
 *   compacted last time. etcd 3.4's revision.go.
 *
 * The decisions are pure functions of (time, revision) in {@link CompactionPlanner}; the
 * {@link Compactor} feeds it ticks and proposes what it decides.
 */
import { errorMessage, isKvdError } from '../util/errors.js';
import type { Revision } from '../store/mvcc/types.js';
import type { Logger } from './logger.js';

/** `--auto-compaction-mode` and `--auto-compaction-retention`, parsed. */
export type AutoCompactionConfig =
  | { readonly mode: 'off' }
  | { readonly mode: 'periodic'; readonly retentionMs: number }
  | { readonly mode: 'revision'; readonly retentionRevisions: number };

/** etcd's revInterval: how often revision mode checks. */
export const REVISION_CHECK_INTERVAL_MS = 5 * 60 * 1000;
const HOUR_MS = 60 * 60 * 1000;
/** etcd's retryDivisor: periodic mode samples every retention / 10. */
const RETRY_DIVISOR = 10;

/**
 * Parses `--auto-compaction-retention` as etcd does: a plain non-negative integer is hours
 * (periodic) or revisions (revision); periodic also takes a Go duration ("30m", "1h30m", "5s").
 * 0 turns auto-compaction off.
 */
export function parseAutoCompaction(mode: string, retention: string, parseDurationMs: (text: string) => number): AutoCompactionConfig {
  if (mode !== 'periodic' && mode !== 'revision') throw new Error(`unknown auto-compaction-mode "${mode}"`);
  const text = retention.trim() === '' ? '0' : retention.trim();
  const integer = /^\d+$/.test(text) ? Number(text) : undefined;
  if (mode === 'revision') {
    if (integer === undefined || !Number.isSafeInteger(integer)) throw new Error(`--auto-compaction-retention: revision mode takes a number of revisions, got "${retention}"`);
    return integer === 0 ? { mode: 'off' } : { mode: 'revision', retentionRevisions: integer };
  }
  const retentionMs = integer !== undefined ? integer * HOUR_MS : parseDurationMs(text);
  if (!Number.isFinite(retentionMs) || retentionMs < 0) throw new Error(`--auto-compaction-retention: invalid retention "${retention}"`);
  return retentionMs === 0 ? { mode: 'off' } : { mode: 'periodic', retentionMs };
}

/** What the planner decided at a tick. */
export type CompactionDecision = { readonly compact: Revision } | undefined;

/**
 * The pure part: given ticks with the time and the current revision, decides when to compact
 * and at which revision. {@link CompactionPlanner.decide} is asked only while this member leads
 * and no compaction of ours is in flight; {@link CompactionPlanner.observe} on every tick.
 */
export class CompactionPlanner {
  readonly #config: Exclude<AutoCompactionConfig, { mode: 'off' }>;
  readonly #revisionIntervalMs: number;
  /** periodic: revisions sampled every sampleIntervalMs; [0] is about one retention old once full. */
  readonly #samples: Revision[] = [];
  #nextSampleMs: number;
  /** periodic: when the last compaction succeeded (the start, before any). */
  #lastSuccessMs: number;
  /** periodic: wait a whole retention before the first compaction, then compactIntervalMs. */
  #baseIntervalMs: number;
  /** revision: when to check next; the revision compacted last. */
  #nextCheckMs: number;
  #previous: Revision = 0;

  constructor(options: { config: Exclude<AutoCompactionConfig, { mode: 'off' }>; nowMs: number; revisionIntervalMs?: number }) {
    this.#config = options.config;
    this.#revisionIntervalMs = options.revisionIntervalMs ?? REVISION_CHECK_INTERVAL_MS;
    this.#nextSampleMs = options.nowMs;
    this.#lastSuccessMs = options.nowMs;
    this.#baseIntervalMs = options.config.mode === 'periodic' ? options.config.retentionMs : 0;
    this.#nextCheckMs = options.nowMs + this.#revisionIntervalMs;
  }

  /** periodic: the sampling interval (retention / 10, at most 6 minutes). */
  get sampleIntervalMs(): number {
    return this.#config.mode === 'periodic' ? Math.min(this.#config.retentionMs, HOUR_MS) / RETRY_DIVISOR : this.#revisionIntervalMs;
  }

  /** periodic: how often it compacts after the first time (the retention, at most 1 h). */
  get compactIntervalMs(): number {
    return this.#config.mode === 'periodic' ? Math.min(this.#config.retentionMs, HOUR_MS) : this.#revisionIntervalMs;
  }

  /** Every tick, leader or not: periodic mode samples the revision. */
  observe(nowMs: number, revision: Revision): void {
    if (this.#config.mode !== 'periodic' || nowMs < this.#nextSampleMs) return;
    this.#samples.push(revision);
    const keep = Math.floor(this.#config.retentionMs / this.sampleIntervalMs) + 1;
    while (this.#samples.length > keep) this.#samples.shift();
    this.#nextSampleMs = nowMs + this.sampleIntervalMs;
  }

  /** On the leader, with nothing in flight: the revision to compact now, if any. */
  decide(nowMs: number, revision: Revision): CompactionDecision {
    if (this.#config.mode === 'periodic') {
      if (nowMs - this.#lastSuccessMs < this.#baseIntervalMs || this.#samples.length === 0) return undefined;
      this.#baseIntervalMs = this.compactIntervalMs;
      return { compact: this.#samples[0] };
    }
    if (nowMs < this.#nextCheckMs) return undefined;
    this.#nextCheckMs = nowMs + this.#revisionIntervalMs;
    const target = revision - this.#config.retentionRevisions;
    if (target <= 0 || target === this.#previous) return undefined;
    return { compact: target };
  }

  /** The outcome of a compaction decided here ('done' includes "already compacted", as etcd counts it). */
  settled(outcome: { readonly revision: Revision; readonly result: 'done' | 'failed'; readonly nowMs: number }): void {
    if (outcome.result === 'failed') return;
    this.#lastSuccessMs = outcome.nowMs;
    this.#previous = outcome.revision;
  }
}

/** What the compactor needs from the member. */
export interface CompactorHost {
  isLeader(): boolean;
  currentRevision(): Revision;
  compactedRevision(): Revision;
  /** Proposes Compact(revision) through Raft; rejects with the KvdError the applier answered. */
  compact(revision: Revision): Promise<void>;
  readonly logger: Logger;
  /** Counts a finished auto-compaction. */
  onCompacted(): void;
}

/** Feeds the planner every tick and proposes what it decides, one compaction at a time. */
export class Compactor {
  readonly #planner: CompactionPlanner;
  readonly #config: Exclude<AutoCompactionConfig, { mode: 'off' }>;
  readonly #host: CompactorHost;
  #inFlight = false;

  constructor(options: { config: Exclude<AutoCompactionConfig, { mode: 'off' }>; host: CompactorHost; nowMs: number; revisionIntervalMs?: number }) {
    this.#config = options.config;
    this.#host = options.host;
    this.#planner = new CompactionPlanner({ config: options.config, nowMs: options.nowMs, revisionIntervalMs: options.revisionIntervalMs });
  }

  onTick(nowMs: number): void {
    const revision = this.#host.currentRevision();
    this.#planner.observe(nowMs, revision);
    if (this.#inFlight || !this.#host.isLeader()) return;
    const decision = this.#planner.decide(nowMs, revision);
    if (decision === undefined) return;
    const target = decision.compact;
    const fields = { mode: this.#config.mode, revision: target, ...(this.#config.mode === 'periodic' ? { retentionMs: this.#config.retentionMs } : { retentionRevisions: this.#config.retentionRevisions }) };
    if (target <= this.#host.compactedRevision()) {
      // Already compacted there (etcd proposes it and counts ErrCompacted as done).
      this.#planner.settled({ revision: target, result: 'done', nowMs });
      return;
    }
    this.#inFlight = true;
    const started = Date.now();
    this.#host.logger.info({ ...fields, event: 'auto-compaction-started' }, `starting auto ${this.#config.mode} compaction`);
    this.#host.compact(target).then(
      () => {
        this.#inFlight = false;
        this.#planner.settled({ revision: target, result: 'done', nowMs: Date.now() });
        this.#host.onCompacted();
        this.#host.logger.info({ ...fields, event: 'auto-compaction-finished', tookMs: Date.now() - started }, `completed auto ${this.#config.mode} compaction`);
      },
      (error: unknown) => {
        this.#inFlight = false;
        const compacted = isKvdError(error, 'compacted');
        this.#planner.settled({ revision: target, result: compacted ? 'done' : 'failed', nowMs: Date.now() });
        if (!compacted) this.#host.logger.warn({ ...fields, event: 'auto-compaction-failed', error: errorMessage(error) }, `failed auto ${this.#config.mode} compaction; retrying later`);
      },
    );
  }
}

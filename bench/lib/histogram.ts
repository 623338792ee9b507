/**
 * A mergeable log-bucketed latency histogram (about 1% relative precision) so that load workers
 * can record millions of samples in constant memory and ship them to the main thread as one
 * small array. Values are microseconds; the exact maximum is kept beside the buckets.
 */

/** Relative width of a bucket: bucket i covers [GROWTH^i, GROWTH^(i+1)) microseconds. */
const GROWTH = 1.01;
/** Buckets cover 1 µs .. ~100 s; larger samples land in the last bucket (max stays exact). */
const BUCKET_COUNT = 1900;
const LOG_GROWTH = Math.log(GROWTH);

/** Serialisable histogram state (plain arrays, so it crosses worker boundaries by copy). */
export interface HistogramData {
  readonly counts: number[];
  readonly count: number;
  readonly maxUs: number;
  readonly sumUs: number;
}

/** Latency summary in milliseconds. */
export interface LatencySummary {
  readonly count: number;
  readonly meanMs: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** A histogram of microsecond latencies; record() is O(1) and allocation-free. */
export class Histogram {
  #counts = new Float64Array(BUCKET_COUNT);
  #count = 0;
  #maxUs = 0;
  #sumUs = 0;

  /** Records one sample in microseconds (negative samples count as 0). */
  record(us: number): void {
    const value = us < 1 ? 1 : us;
    let index = Math.floor(Math.log(value) / LOG_GROWTH);
    if (index >= BUCKET_COUNT) index = BUCKET_COUNT - 1;
    this.#counts[index] += 1;
    this.#count += 1;
    this.#sumUs += value;
    if (value > this.#maxUs) this.#maxUs = value;
  }

  /** Adds another histogram's samples into this one. */
  merge(data: HistogramData): void {
    for (let i = 0; i < BUCKET_COUNT; i++) this.#counts[i] += data.counts[i] ?? 0;
    this.#count += data.count;
    this.#sumUs += data.sumUs;
    if (data.maxUs > this.#maxUs) this.#maxUs = data.maxUs;
  }

  /** Number of samples recorded. */
  get count(): number { return this.#count; }

  /** A copy of the state for postMessage. */
  toData(): HistogramData {
    return { counts: Array.from(this.#counts), count: this.#count, maxUs: this.#maxUs, sumUs: this.#sumUs };
  }

  /** The value (µs, bucket midpoint) at quantile q in [0, 1]; 0 when empty. */
  quantileUs(q: number): number {
    if (this.#count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.#count));
    let seen = 0;
    for (let i = 0; i < BUCKET_COUNT; i++) {
      seen += this.#counts[i];
      if (seen >= rank) return Math.min(this.#maxUs, Math.pow(GROWTH, i + 0.5));
    }
    return this.#maxUs;
  }

  /** p50/p90/p99/max/mean in milliseconds. */
  summary(): LatencySummary {
    const ms = (us: number): number => Math.round(us) / 1000;
    return {
      count: this.#count,
      meanMs: this.#count === 0 ? 0 : ms(this.#sumUs / this.#count),
      p50Ms: ms(this.quantileUs(0.5)),
      p90Ms: ms(this.quantileUs(0.9)),
      p99Ms: ms(this.quantileUs(0.99)),
      maxMs: ms(this.#maxUs),
    };
  }
}

/** The median of a list of numbers (mean of the middle two for even lengths); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

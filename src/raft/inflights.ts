/**
 * Flow control for one follower: the last indexes of appends sent but not yet acknowledged, in a
 * fixed-size ring. Modelled on etcd-io/raft tracker/inflights.go.
 */
import { assert } from '../util/assert.js';
import type { Index } from './types.js';

/** Invariant: 0 <= count <= capacity; the stored indexes ascend from `start`. */
export class Inflights {
  readonly #capacity: number;
  readonly #buffer: Float64Array;
  #start = 0;
  #count = 0;

  /** `capacity` is the named maximum: maxInflightAppends. */
  constructor(capacity: number) {
    assert(capacity > 0, 'inflights capacity must be positive');
    this.#capacity = capacity;
    this.#buffer = new Float64Array(capacity);
  }

  /** Records an append whose last entry is `lastIndex`. Asserts not full and ascending. */
  add(lastIndex: Index): void {
    assert(this.#count < this.#capacity, 'inflights: add while full');
    if (this.#count > 0) {
      const previous = this.#buffer[(this.#start + this.#count - 1) % this.#capacity];
      if (!(lastIndex > previous)) assert(false, `inflights: ${lastIndex} not above ${previous}`);
    }
    this.#buffer[(this.#start + this.#count) % this.#capacity] = lastIndex;
    this.#count++;
  }

  /** Frees every append whose last index is <= `index` (acknowledged). */
  freeLE(index: Index): void {
    while (this.#count > 0 && this.#buffer[this.#start] <= index) {
      this.#start = (this.#start + 1) % this.#capacity;
      this.#count--;
    }
    if (this.#count === 0) this.#start = 0;
  }

  /** Frees the oldest append (a heartbeat answer shows the follower is alive: unblock a full window). */
  freeFirstOne(): void {
    if (this.#count === 0) return;
    this.freeLE(this.#buffer[this.#start]);
  }

  full(): boolean {
    return this.#count === this.#capacity;
  }

  count(): number {
    return this.#count;
  }

  reset(): void {
    this.#start = 0;
    this.#count = 0;
  }
}

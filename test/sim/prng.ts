/**
 * Seeded pseudo-random streams for the simulator. One root seed is split into independent named
 * streams (network, disk, clients, faults, one per member incarnation) so that changing how much
 * randomness one component draws does not shift what the others see.
 */
import type { Random } from '../../src/raft/random.js';

/** Mixes a 32-bit value (the splitmix32 / murmur3 finaliser). */
export function mix32(value: number): number {
  let z = (value + 0x9e3779b9) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/** Hashes a string to 32 bits (FNV-1a followed by {@link mix32}). */
export function hashString(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return mix32(h);
}

/**
 * A deterministic PRNG (sfc32) with convenience draws. Implements the core's {@link Random}, so a
 * stream can be handed to a RawNode directly.
 */
export class Prng implements Random {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /** Creates the stream named `name` of root seed `seed`. Same (seed, name) → same sequence. */
  constructor(options: { seed: number; name: string }) {
    const base = mix32((options.seed >>> 0) ^ hashString(options.name));
    this.#a = mix32(base ^ 0x1234567);
    this.#b = mix32(this.#a ^ 0x89abcdef);
    this.#c = mix32(this.#b ^ 0x2468ace);
    this.#d = 1;
    for (let i = 0; i < 12; i++) this.next32();
  }

  /** Returns a uniform 32-bit unsigned integer. */
  next32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  /** Uniform integer in [0, maxExclusive). */
  nextInt(maxExclusive: number): number {
    if (!(Number.isInteger(maxExclusive) && maxExclusive > 0)) throw new RangeError(`nextInt: bad bound ${maxExclusive}`);
    return Math.floor((this.next32() / 0x1_0000_0000) * maxExclusive);
  }

  /** Uniform integer in [lo, hi] (inclusive). */
  between(lo: number, hi: number): number {
    return lo + this.nextInt(hi - lo + 1);
  }

  /** Uniform float in [0, 1). */
  float(): number {
    return this.next32() / 0x1_0000_0000;
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return p > 0 && this.float() < p;
  }

  /** A uniformly chosen element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from empty array');
    return items[this.nextInt(items.length)];
  }

  /** Shuffles `items` in place (Fisher–Yates) and returns it. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1);
      const tmp = items[i];
      items[i] = items[j];
      items[j] = tmp;
    }
    return items;
  }
}

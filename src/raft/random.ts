/**
 * The only source of randomness in the Raft core: an injected {@link Random}. Election jitter is
 * drawn from it, so a seeded generator makes a whole cluster's behaviour replayable.
 */

/** A source of uniformly distributed integers. */
export interface Random {
  /** Returns an integer uniform in [0, maxExclusive). `maxExclusive` must be a positive integer <= 2^32. */
  nextInt(maxExclusive: number): number;
}

/**
 * A deterministic PRNG (xoshiro128** seeded through splitmix32). The same seed always yields the
 * same sequence on every platform. Not cryptographically secure.
 */
export function seededRandom(seed: number): Random {
  let s = seed >>> 0;
  const splitmix32 = (): number => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = splitmix32();
  let b = splitmix32();
  let c = splitmix32();
  let d = splitmix32();
  if ((a | b | c | d) === 0) a = 1;
  const next32 = (): number => {
    const result = Math.imul(rotl(Math.imul(b, 5) >>> 0, 7), 9) >>> 0;
    const t = (b << 9) >>> 0;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return result;
  };
  return {
    nextInt(maxExclusive: number): number {
      if (!(Number.isInteger(maxExclusive) && maxExclusive > 0 && maxExclusive <= 0x1_0000_0000)) {
        throw new RangeError(`nextInt: bad bound ${maxExclusive}`);
      }
      return Math.floor((next32() / 0x1_0000_0000) * maxExclusive);
    },
  };
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

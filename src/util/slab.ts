/**
 * Small byte arrays cut from shared slabs, as Node's Buffer pool does for Buffer.allocUnsafe, for
 * data made once per request whose lifetimes follow one another (a leader's entry data lives in
 * its Raft log until the log is compacted, entries of one slab side by side). An array with an
 * ArrayBuffer of its own costs about 2.5 µs to make and collect here, a view into a slab about
 * 0.1 µs (bench/README.md, "2026-12-08, 02:08–"). The price: a slab stays in memory while any
 * array cut from it is referenced, so it is only for arrays that die with their neighbours.
 */
export class Slab {
  readonly #slabBytes: number;
  readonly #largest: number;
  #slab: ArrayBuffer;
  #used = 0;

  /** Slabs of `slabBytes`; arrays over a quarter of that get a buffer of their own. */
  constructor(slabBytes: number) {
    this.#slabBytes = slabBytes;
    this.#largest = slabBytes >>> 2;
    this.#slab = new ArrayBuffer(slabBytes);
  }

  /** `length` zero bytes that no other array shares. */
  alloc(length: number): Uint8Array {
    if (length > this.#largest) return new Uint8Array(length);
    if (this.#used + length > this.#slabBytes) {
      this.#slab = new ArrayBuffer(this.#slabBytes);
      this.#used = 0;
    }
    const out = new Uint8Array(this.#slab, this.#used, length);
    // 8-byte aligned, as Node's pool keeps its slices.
    this.#used += (length + 7) & ~7;
    return out;
  }
}

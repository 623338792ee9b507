/**
 * A hash table of values that carry their own key, for the tables a member adds to and removes
 * from on every request (the writes waiting to be applied, a connection's open streams).
 *
 * Why not a Map: V8's Map appends every entry and leaves a hole where one was deleted, so a Map
 * that takes one entry and drops one per request is rebuilt into a new table every few hundred
 * requests even at a steady size, and the table it leaves behind keeps pointing at every entry
 * that was in it. Once the Map has lived long enough to sit in the old generation, its new tables
 * are made there too: each discarded table then holds the requests that were in flight when it
 * was rebuilt (and all they point to) through every young-generation collection until the next
 * full one, so they are copied and promoted instead of dying young. Under etcd's put benchmark
 * that was most of what a leader's scavenges copied (bench/README.md, "2026-12-07, 16:09–18:15").
 *
 * This table is one array, open addressing with linear probing and backward-shift deletion (no
 * tombstones): it is replaced only when the number of entries reaches a new high (it doubles at
 * half full) and never shrinks, so a steady load never rebuilds it, and a removed value's slot
 * is cleared at once.
 *
 * The caller's hash is spread over the array by Fibonacci hashing (multiply by 2^32 / golden
 * ratio, keep the top bits). The keys here are counters: taken as they are, a window of in-flight
 * ids sits in one run of consecutive slots, and a deletion's backward shift walked the whole run
 * (about 256 slots per answered write under etcd's put benchmark, 5 % of a leader's CPU).
 */
import { assert } from './assert.js';

const INITIAL_CAPACITY = 16;
/** 2^32 divided by the golden ratio, odd: consecutive keys land far apart (Knuth's multiplicative hashing). */
const FIBONACCI = 0x9e37_79b9;

export class KeyedTable<K, V> {
  readonly #keyOf: (value: V) => K;
  readonly #hash: (key: K) => number;
  /** Power-of-two length; at most half of it used. */
  #slots: Array<V | undefined>;
  #mask: number;
  /** 32 - log2(length): a key's home slot is the top bits of its spread hash. */
  #shift: number;
  #size = 0;

  /**
   * `keyOf` gives a value's key (compared with ===); `hash` a key's integer hash (its low 32 bits
   * are used; the table spreads them itself, so a counter is a good hash).
   */
  constructor(keyOf: (value: V) => K, hash: (key: K) => number) {
    this.#keyOf = keyOf;
    this.#hash = hash;
    this.#slots = new Array<V | undefined>(INITIAL_CAPACITY).fill(undefined);
    this.#mask = INITIAL_CAPACITY - 1;
    this.#shift = 32 - Math.log2(INITIAL_CAPACITY);
  }

  get size(): number {
    return this.#size;
  }

  /** Slots in the array (a power of two); it changes only when the table grows. */
  get capacity(): number {
    return this.#slots.length;
  }

  get(key: K): V | undefined {
    // Empty (a follower's waiters, which every applied entry is looked up in): no hash to compute.
    if (this.#size === 0) return undefined;
    return this.#slots[this.#find(key)];
  }

  /** Adds `value`, whose key must not be in the table. */
  add(value: V): void {
    if ((this.#size + 1) * 2 > this.#slots.length) this.#grow();
    const at = this.#find(this.#keyOf(value));
    if (this.#slots[at] !== undefined) assert(false, 'KeyedTable.add: the key is in the table already');
    this.#slots[at] = value;
    this.#size += 1;
  }

  /** Removes and returns the value of `key` (undefined when there is none). */
  delete(key: K): V | undefined {
    if (this.#size === 0) return undefined;
    const slots = this.#slots;
    const mask = this.#mask;
    let hole = this.#find(key);
    const removed = slots[hole];
    if (removed === undefined) return undefined;
    // Backward shift: each later value of the run moves into the hole when the hole lies on its
    // probe path (between its home slot and where it sits), so lookups never cross an empty slot.
    for (let at = (hole + 1) & mask; ; at = (at + 1) & mask) {
      const value = slots[at];
      if (value === undefined) break;
      const home = this.#home(this.#keyOf(value));
      if (((at - home) & mask) >= ((at - hole) & mask)) {
        slots[hole] = value;
        hole = at;
      }
    }
    slots[hole] = undefined;
    this.#size -= 1;
    return removed;
  }

  /** Removes every value (the array stays). */
  clear(): void {
    this.#slots.fill(undefined);
    this.#size = 0;
  }

  /** Every value (a copy, in no particular order: the caller may change the table meanwhile). */
  values(): V[] {
    const out: V[] = [];
    for (const value of this.#slots) if (value !== undefined) out.push(value);
    return out;
  }

  /** The slot that holds `key`, or the empty slot where it would go. */
  #find(key: K): number {
    const slots = this.#slots;
    const mask = this.#mask;
    for (let at = this.#home(key); ; at = (at + 1) & mask) {
      const value = slots[at];
      if (value === undefined || this.#keyOf(value) === key) return at;
    }
  }

  /** The slot where `key`'s probe starts. */
  #home(key: K): number {
    return Math.imul(this.#hash(key), FIBONACCI) >>> this.#shift;
  }

  #grow(): void {
    const old = this.#slots;
    this.#slots = new Array<V | undefined>(old.length * 2).fill(undefined);
    this.#mask = this.#slots.length - 1;
    this.#shift -= 1;
    for (const value of old) if (value !== undefined) this.#slots[this.#find(this.#keyOf(value))] = value;
  }
}

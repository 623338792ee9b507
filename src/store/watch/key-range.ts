/**
 * Key-range matching by etcd's rules (the same as Range and DeleteRange):
 * - empty `rangeEnd`: the single key `key`;
 * - `rangeEnd = [0]`: every key >= `key` ("from key"); with `key = [0]` too, every key;
 * - otherwise the half-open interval `[key, rangeEnd)`.
 * An empty `key` is treated as `[0]`, as etcd's watch server does.
 */

/** How a watcher selects keys, precomputed once so matching costs one or two comparisons. */
export type KeySelector =
  | { readonly kind: 'single'; readonly key: Uint8Array }
  /** `[key, prefixEnd(key))`: exactly the keys starting with `key` (matched by prefix lookups). */
  | { readonly kind: 'prefix'; readonly key: Uint8Array }
  | { readonly kind: 'from-key'; readonly key: Uint8Array }
  | { readonly kind: 'range'; readonly key: Uint8Array; readonly rangeEnd: Uint8Array };

const ZERO_KEY = new Uint8Array([0]);

/** Byte-wise lexicographic comparison (negative, zero, positive), as etcd orders keys. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

/** Builds the selector for a (key, rangeEnd) pair by etcd's conventions (see module doc). */
export function keySelector(options: { key: Uint8Array; rangeEnd: Uint8Array }): KeySelector {
  const key = options.key.length === 0 ? ZERO_KEY : options.key;
  const { rangeEnd } = options;
  if (rangeEnd.length === 0) return { kind: 'single', key };
  if (rangeEnd.length === 1 && rangeEnd[0] === 0) return { kind: 'from-key', key };
  const end = prefixEnd(key);
  if (end !== undefined && compareBytes(end, rangeEnd) === 0) return { kind: 'prefix', key };
  return { kind: 'range', key, rangeEnd };
}

/**
 * etcd's prefix range end: drop trailing 0xff bytes, then add one to the last byte
 * ("aa" → "ab", "a\xff" → "b"); undefined when every byte is 0xff (the range is "from key").
 */
export function prefixEnd(key: Uint8Array): Uint8Array | undefined {
  let length = key.length;
  while (length > 0 && key[length - 1] === 0xff) length--;
  if (length === 0) return undefined;
  // A copy, never a view: Buffer#slice shares memory with the key (Uint8Array#slice does not),
  // and incrementing a view would corrupt the watcher's own key.
  const end = new Uint8Array(key.subarray(0, length));
  end[length - 1]++;
  return end;
}

/** True when `key` is selected by `selector`. */
export function selects(selector: KeySelector, key: Uint8Array): boolean {
  switch (selector.kind) {
    case 'single':
      return compareBytes(selector.key, key) === 0;
    case 'prefix':
      return key.length >= selector.key.length && compareBytes(key.subarray(0, selector.key.length), selector.key) === 0;
    case 'from-key':
      return compareBytes(key, selector.key) >= 0;
    case 'range':
      return compareBytes(key, selector.key) >= 0 && compareBytes(key, selector.rangeEnd) < 0;
  }
}

/** A Map-friendly string for a key: one char per byte (latin1), so equal keys give equal strings. */
export function keyString(key: Uint8Array): string {
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1');
}

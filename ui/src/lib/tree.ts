/**
 * One level of the key space under a prefix, as a file browser shows a folder: each key below
 * `prefix` is either a leaf (no separator after the prefix) or falls into the child "directory"
 * that ends at the first separator after the prefix. Pure functions over keys in etcd's order.
 */
import { indexOfBytes } from './bytes.js';

/** One entry of a level: a key, or a directory holding `count` keys. */
export interface LevelChild {
  readonly kind: 'key' | 'dir';
  /** The whole key (leaf) or the directory's prefix including its separator (dir). */
  readonly key: Uint8Array;
  /** Keys under a directory (1 for a leaf). */
  count: number;
}

/**
 * The child of the level `prefix` that `key` belongs to. `key` must start with `prefix`; an empty
 * separator makes every key a leaf.
 */
export function childOf(key: Uint8Array, prefix: Uint8Array, separator: Uint8Array): { kind: 'key' | 'dir'; key: Uint8Array } {
  const at = indexOfBytes(key, separator, prefix.length);
  if (at < 0) return { kind: 'key', key };
  return { kind: 'dir', key: key.subarray(0, at + separator.length) };
}

/**
 * Appends the keys of one scan batch (in order) to `children`, merging into the last child when a
 * directory continues. Returns how many children were added.
 */
export function groupInto(children: LevelChild[], keys: readonly Uint8Array[], prefix: Uint8Array, separator: Uint8Array): number {
  let added = 0;
  for (const key of keys) {
    const child = childOf(key, prefix, separator);
    const last = children[children.length - 1];
    if (child.kind === 'dir' && last !== undefined && last.kind === 'dir' && sameBytes(last.key, child.key)) {
      last.count += 1;
      continue;
    }
    children.push({ kind: child.kind, key: child.key.slice(), count: 1 });
    added += 1;
  }
  return added;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index++) if (a[index] !== b[index]) return false;
  return true;
}

/**
 * A binary min-heap of (id, atMs) deadlines with lazy deletion: stale entries stay in the heap
 * until popped, and the owner decides whether a popped entry is still current (etcd's
 * LeaseQueue works the same way). The owner rebuilds the heap when stale entries pile up, so its
 * size stays within a constant factor of the live entries.
 */
/** One scheduled check: lease `id` is due at `atMs` (current only if the owner says so). */
export interface Deadline {
  readonly id: bigint;
  readonly atMs: number;
}

/** Min-heap of deadlines ordered by `atMs`; push/pop O(log n), peek O(1). Unbounded by itself: the owner bounds it. */
export class DeadlineHeap {
  #items: Deadline[] = [];

  get size(): number {
    return this.#items.length;
  }

  /** The earliest deadline, or undefined when empty. */
  peek(): Deadline | undefined {
    return this.#items[0];
  }

  push(item: Deadline): void {
    const items = this.#items;
    items.push(item);
    let index = items.length - 1;
    while (index > 0) {
      const parent = (index - 1) >> 1;
      if (items[parent].atMs <= item.atMs) break;
      items[index] = items[parent];
      index = parent;
    }
    items[index] = item;
  }

  pop(): Deadline | undefined {
    const items = this.#items;
    if (items.length === 0) return undefined;
    const top = items[0];
    const last = items.pop()!;
    if (items.length > 0) {
      let index = 0;
      for (;;) {
        const left = 2 * index + 1;
        if (left >= items.length) break;
        const right = left + 1;
        const child = right < items.length && items[right].atMs < items[left].atMs ? right : left;
        if (items[child].atMs >= last.atMs) break;
        items[index] = items[child];
        index = child;
      }
      items[index] = last;
    }
    return top;
  }

  /** Replaces the contents (used to drop stale entries); O(n log n). */
  rebuild(items: Iterable<Deadline>): void {
    this.#items = [];
    for (const item of items) this.push(item);
  }

  clear(): void {
    this.#items = [];
  }
}

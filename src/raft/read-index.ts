/**
 * Pending ReadIndex requests at the leader (thesis 6.4, etcd-io/raft read_only.go). Safe mode:
 * a request records the commit index when it arrived, then waits until a quorum acknowledges a
 * heartbeat round started after it. One round serves every request queued before it.
 */
import { assert } from '../util/assert.js';
import type { Index, NodeId } from './types.js';

/** One pending request. `from` is the requesting member (the leader itself for local reads). */
export interface ReadRequest {
  readonly index: Index;
  readonly from: NodeId;
  readonly context: Uint8Array;
  /** Voters that acknowledged a heartbeat round covering this request (filled for the round's key). */
  readonly acks: Set<NodeId>;
}

/** Named maximum of queued ReadIndex requests at the leader; further ones are refused. */
export const MAX_PENDING_READ_REQUESTS = 65536;

/** A string key for a context (latin1 of the bytes). */
export function contextKey(context: Uint8Array): string {
  let key = '';
  for (let i = 0; i < context.length; i++) key += String.fromCharCode(context[i]);
  return key;
}

/** Invariant: `#queue` and `#byKey` hold the same requests; the queue is in arrival order. */
export class ReadOnlyQueue {
  #queue: ReadRequest[] = [];
  #byKey = new Map<string, ReadRequest>();

  /** Queues a request; returns false if full or if its context is already pending (it is dropped). */
  add(request: { index: Index; from: NodeId; context: Uint8Array }): boolean {
    if (this.#queue.length >= MAX_PENDING_READ_REQUESTS) return false;
    const key = contextKey(request.context);
    if (this.#byKey.has(key)) return false;
    const entry: ReadRequest = { ...request, acks: new Set() };
    this.#queue.push(entry);
    this.#byKey.set(key, entry);
    return true;
  }

  /** Records `from`'s acknowledgement of the round keyed `context`; returns its ack set, or undefined if unknown. */
  recordAck(options: { from: NodeId; context: Uint8Array }): ReadonlySet<NodeId> | undefined {
    const request = this.#byKey.get(contextKey(options.context));
    if (request === undefined) return undefined;
    request.acks.add(options.from);
    return request.acks;
  }

  /** Removes and returns every request up to and including the one keyed `context`. */
  release(context: Uint8Array): ReadRequest[] {
    const key = contextKey(context);
    const target = this.#byKey.get(key);
    if (target === undefined) return [];
    const position = this.#queue.indexOf(target);
    assert(position >= 0, 'read request in map but not in queue');
    const released = this.#queue.splice(0, position + 1);
    for (const request of released) this.#byKey.delete(contextKey(request.context));
    return released;
  }

  /** The most recently queued request's context, if any. */
  lastContext(): Uint8Array | undefined {
    return this.#queue.length === 0 ? undefined : this.#queue[this.#queue.length - 1].context;
  }

  size(): number {
    return this.#queue.length;
  }

  clear(): void {
    this.#queue = [];
    this.#byKey.clear();
  }
}

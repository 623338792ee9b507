// Test support (not a test): an in-memory key space with a revision log that implements the
// watch hub's HistorySource, with seeded random read delays so catch-up reads interleave with
// notify() calls, plus recording sinks and a seeded PRNG.
import type { Event, KeyValue } from '../../../../src/store/mvcc/types.js';
import { KvdError } from '../../../../src/util/errors.js';
import type { HistorySource, RevisionChanges, SendResult, WatchResponse, WatchSink } from '../../../../src/store/watch/watch-hub.js';

/** mulberry32: a tiny seeded PRNG, so every failing seed replays exactly. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const bytes = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'latin1'));
export const text = (key: Uint8Array): string => Buffer.from(key).toString('latin1');

/** Independent reference of etcd's range rule (deliberately not the hub's code). */
export function inRange(options: { key: string; rangeEnd: string }, candidate: string): boolean {
  const key = options.key === '' ? '\u0000' : options.key;
  if (options.rangeEnd === '') return candidate === key;
  if (options.rangeEnd === '\u0000') return candidate >= key;
  return candidate >= key && candidate < options.rangeEnd;
}

export type Write = { type: 'put'; key: string; value: string } | { type: 'delete'; key: string };

export class FakeStore implements HistorySource {
  currentRevision = 1;
  compactedRevision = 0;
  readonly log: RevisionChanges[] = [];
  readonly #kvs = new Map<string, KeyValue>();
  readonly #random: () => number;
  /** Max setImmediate turns a read waits before answering. */
  maxReadDelayTurns: number;
  reads = 0;

  constructor(options: { seed: number; maxReadDelayTurns?: number }) {
    this.#random = prng(options.seed ^ 0x5bd1e995);
    this.maxReadDelayTurns = options.maxReadDelayTurns ?? 3;
  }

  /** Applies one revision of writes (distinct keys) and returns it for notify(). */
  apply(writes: readonly Write[]): RevisionChanges {
    const revision = this.currentRevision + 1;
    const events: Event[] = [];
    for (const write of writes) {
      const previous = this.#kvs.get(write.key);
      if (write.type === 'put') {
        const kv: KeyValue = {
          key: bytes(write.key),
          createRevision: previous?.createRevision ?? revision,
          modRevision: revision,
          version: (previous?.version ?? 0) + 1,
          value: bytes(write.value),
          lease: 0n,
        };
        this.#kvs.set(write.key, kv);
        events.push(previous === undefined ? { type: 'put', kv } : { type: 'put', kv, prevKv: previous });
      } else {
        if (previous === undefined) continue;
        this.#kvs.delete(write.key);
        const kv: KeyValue = { key: bytes(write.key), createRevision: 0, modRevision: revision, version: 0, value: new Uint8Array(), lease: 0n };
        events.push({ type: 'delete', kv, prevKv: previous });
      }
    }
    this.currentRevision = revision;
    const changes = { revision, events };
    this.log.push(changes);
    return changes;
  }

  compact(revision: number): void {
    this.compactedRevision = revision;
  }

  async changes(options: {
    key: Uint8Array;
    rangeEnd: Uint8Array;
    fromRevision: number;
    toRevision?: number;
    limit: number;
    prevKv?: boolean;
  }): Promise<{ events: Event[]; lastRevision: number }> {
    this.reads++;
    const turns = Math.floor(this.#random() * (this.maxReadDelayTurns + 1));
    for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
    if (options.fromRevision < this.compactedRevision) throw new KvdError('compacted');
    const to = Math.min(options.toRevision ?? this.currentRevision, this.currentRevision);
    const range = { key: text(options.key), rangeEnd: text(options.rangeEnd) };
    const events: Event[] = [];
    let lastRevision = options.fromRevision - 1;
    for (const item of this.log) {
      if (item.revision < options.fromRevision) continue;
      if (item.revision > to) break;
      if (events.length >= options.limit) return { events, lastRevision };
      for (const event of item.events) {
        if (inRange(range, text(event.kv.key))) events.push(options.prevKv === true ? event : { type: event.type, kv: event.kv });
      }
      lastRevision = item.revision;
    }
    return { events, lastRevision: Math.max(lastRevision, to) };
  }
}

/** A sink that records everything and answers 'full' with probability `fullRate`. */
export class RecordingSink implements WatchSink {
  readonly events: Event[] = [];
  readonly responses: WatchResponse[] = [];
  readonly progressRevisions: number[] = [];
  canceledWith: { reason: string; compactRevision: number } | undefined;
  fullRate: number;
  fullAnswers = 0;
  readonly #random: () => number;

  constructor(options: { seed?: number; fullRate?: number } = {}) {
    this.#random = prng(options.seed ?? 1);
    this.fullRate = options.fullRate ?? 0;
  }

  send(response: WatchResponse): SendResult {
    if (this.canceledWith !== undefined) throw new Error('send after canceled');
    if (this.fullRate > 0 && this.#random() < this.fullRate) {
      this.fullAnswers++;
      return 'full';
    }
    this.responses.push(response);
    for (const event of response.events) this.events.push(event);
    return 'ok';
  }

  canceled(options: { reason: string; compactRevision: number }): void {
    if (this.canceledWith !== undefined) throw new Error('canceled twice');
    this.canceledWith = options;
  }

  progress(revision: number): void {
    this.progressRevisions.push(revision);
  }
}

/**
 * A recording sink with room that comes and goes, as a stream's bounded queue: without room it
 * answers 'full' and says so through ready() (the hub then should not even try), until `room`
 * is set again.
 */
export class GatedSink extends RecordingSink {
  room = true;
  /** Sends tried while there was no room (the hub should have waited). */
  triedWithoutRoom = 0;

  override send(response: WatchResponse): SendResult {
    if (!this.room) {
      this.triedWithoutRoom++;
      this.fullAnswers++;
      return 'full';
    }
    return super.send(response);
  }

  ready(): boolean {
    return this.room;
  }
}

/** Waits (without fixed sleeps) until `condition` holds, failing after `deadlineMs`. */
export async function until(condition: () => boolean, options: { deadlineMs?: number; what: string }): Promise<void> {
  const deadline = Date.now() + (options.deadlineMs ?? 5000);
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${options.what}`);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** A printable summary of events: "rev:type:key[:prev]". */
export function describe(events: readonly Event[]): string[] {
  return events.map((event) => `${event.kv.modRevision}:${event.type}:${text(event.kv.key)}${event.prevKv === undefined ? '' : `:prev=${text(event.prevKv.value)}`}`);
}

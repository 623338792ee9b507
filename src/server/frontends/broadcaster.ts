/**
 * The core's broadcast of committed revisions to its front-ends' watch hubs (see host.ts): each
 * batch encoded once for all front-ends; a batch of more than BROADCAST_PART_EVENTS events in
 * parts at the front-ends' pace, the broadcasts that come meanwhile held back (bounded) and sent
 * after it, in order.
 *
 * Every broadcast has a sequence number. A front-end starts from the member's state when it is
 * configured, which includes every broadcast up to `sequence` at that moment (the member notifies
 * its subscribers in the same turn it applies a batch); it is sent only the later ones. Held-back
 * broadcasts are older than a front-end (re)started during a broadcast in parts, and its watch hub,
 * already past them, would stop on revisions that do not increase.
 */
import { setImmediate as yieldToEventLoop, setTimeout as sleep } from 'node:timers/promises';
import type { RevisionChanges } from '../../store/mvcc/store.js';
import { Channel, type ChannelMessage } from './channel.js';
import { BROADCAST_PACE_BYTES, BROADCAST_PACE_TIMEOUT_MS, BROADCAST_PART_EVENTS, MAX_CHANNEL_BACKLOG_BYTES, MAX_HELD_BROADCAST_EVENTS, batchEvents, splitRevisions, type MirroredState } from './protocol.js';

/** What the broadcaster needs of a front-end. */
export interface BroadcastTarget {
  readonly channel: Pick<Channel, 'hold' | 'release' | 'sendEncoded' | 'closed' | 'backlogBytes'>;
  /** Broadcaster.sequence when the front-end was sent its first state: it gets only later broadcasts. */
  readonly startSequence: number;
}

/** The bounds of a broadcast (protocol.ts's constants; tests choose smaller ones). */
export interface BroadcastLimits {
  readonly partEvents: number;
  readonly paceBytes: number;
  readonly paceTimeoutMs: number;
  readonly maxHeldEvents: number;
  readonly maxBacklogBytes: number;
}

const DEFAULT_LIMITS: BroadcastLimits = {
  partEvents: BROADCAST_PART_EVENTS,
  paceBytes: BROADCAST_PACE_BYTES,
  paceTimeoutMs: BROADCAST_PACE_TIMEOUT_MS,
  maxHeldEvents: MAX_HELD_BROADCAST_EVENTS,
  maxBacklogBytes: MAX_CHANNEL_BACKLOG_BYTES,
};

export interface BroadcasterOptions<T extends BroadcastTarget> {
  /** The front-ends now (undefined: a slot without one). */
  readonly targets: () => ReadonlyArray<T | undefined>;
  /** A front-end that cannot keep up: the host restarts it (its clients reconnect). */
  readonly restart: (target: T, message: string, heldEvents: number | undefined) => void;
  /** A state went out to the front-ends with a broadcast. */
  readonly stateSent: (state: MirroredState) => void;
  /** A broadcast in parts failed (not expected: it encodes plain records); every front-end is restarted after it. */
  readonly failed: (error: unknown) => void;
  readonly limits?: Partial<BroadcastLimits>;
}

/** A broadcast held back behind a batch being sent in parts. */
type HeldBroadcast = { readonly sequence: number } & ({ readonly batch: readonly RevisionChanges[]; readonly events: number; readonly state: MirroredState } | { readonly replaced: MirroredState });

interface HeldBroadcasts {
  readonly items: HeldBroadcast[];
  /** Events of the batches in `items`. */
  events: number;
}

export class Broadcaster<T extends BroadcastTarget> {
  readonly #options: BroadcasterOptions<T>;
  readonly #limits: BroadcastLimits;
  #sequence = 0;
  /**
   * While a batch goes out in parts (#sendInParts): the broadcasts that came after it, in order,
   * and the events they hold (bounded by maxHeldEvents). undefined otherwise.
   */
  #behind: HeldBroadcasts | undefined;
  /** Resolves when the broadcast in parts under way has gone out. */
  #inParts: Promise<void> = Promise.resolve();
  /** Front-ends given up on (restart asked): not sent to or waited for again. */
  readonly #givenUp = new WeakSet<T>();

  constructor(options: BroadcasterOptions<T>) {
    this.#options = options;
    this.#limits = { ...DEFAULT_LIMITS, ...options.limits };
  }

  /** The number of the latest broadcast: a front-end configured now starts after it. */
  get sequence(): number {
    return this.#sequence;
  }

  /** Resolves once no broadcast is going out in parts (tests). */
  settled(): Promise<void> {
    return this.#inParts;
  }

  /** A committed batch for the front-ends' watch hubs: at once, or in parts (see BroadcastLimits.partEvents). */
  revisions(batch: readonly RevisionChanges[], state: MirroredState): void {
    const sequence = ++this.#sequence;
    const events = batchEvents(batch);
    if (this.#behind !== undefined) {
      this.#behind.items.push({ sequence, batch, events, state });
      this.#behind.events += events;
      if (this.#behind.events > this.#limits.maxHeldEvents) this.#restartAll('front-ends cannot keep up with the revision stream; restarting them');
      return;
    }
    if (events <= this.#limits.partEvents) {
      // Every front-end now started before this broadcast.
      this.#broadcast([{ t: 'revisions', b: batch, s: state }], this.#options.targets());
      return;
    }
    this.#behind = { items: [], events: 0 };
    this.#inParts = this.#sendInParts({ sequence, batch, events, state });
  }

  /** A snapshot replaced the member's store: the front-ends' watchers catch up again. */
  storeReplaced(state: MirroredState): void {
    const sequence = ++this.#sequence;
    if (this.#behind !== undefined) this.#behind.items.push({ sequence, replaced: state });
    else this.#broadcast([{ t: 'store-replaced', s: state }], this.#options.targets());
  }

  /**
   * Sends a large batch in parts, one per turn of the event loop, then the broadcasts that came
   * meanwhile, in order. Every front-end's channel holds its other messages (answers, state)
   * behind them, so a front-end sees nothing between the parts of a batch and gets no answer at a
   * revision its watch hub has not reached. A front-end started meanwhile gets neither the rest of
   * the batch under way nor the broadcasts held before its start: its first state includes them.
   */
  async #sendInParts(first: HeldBroadcast): Promise<void> {
    const held = new Set<T['channel']>();
    const holdAll = (): T[] => {
      const running = this.#running(this.#options.targets());
      for (const { channel } of running) {
        if (held.has(channel)) continue;
        channel.hold();
        held.add(channel);
      }
      return running;
    };
    let item: HeldBroadcast | undefined = first;
    try {
      while (item !== undefined) {
        const to = holdAll().filter((target) => target.startSequence < item!.sequence);
        if ('replaced' in item) this.#broadcast([{ t: 'store-replaced', s: item.replaced }], to);
        else {
          const parts = item.events <= this.#limits.partEvents ? [item.batch] : splitRevisions(item.batch, this.#limits.partEvents);
          for (let i = 0; i < parts.length - 1; i++) {
            this.#broadcast([{ t: 'revisions-part', b: parts[i] }], to);
            await yieldToEventLoop();
            await this.#paced(to);
          }
          this.#broadcast([{ t: 'revisions', b: parts[parts.length - 1], s: item.state }], to);
        }
        const behind = this.#behind ?? { items: [], events: 0 };
        item = behind.items.shift();
        if (item !== undefined && !('replaced' in item)) behind.events -= item.events;
      }
    } catch (error: unknown) {
      this.#options.failed(error);
      this.#restartAll('could not send a large revision to the front-ends; restarting them');
    } finally {
      this.#behind = undefined;
      for (const channel of held) channel.release();
    }
  }

  /** Waits until each front-end has taken all but paceBytes of what it was sent; one that does not in time is restarted. */
  async #paced(to: readonly T[]): Promise<void> {
    const deadline = Date.now() + this.#limits.paceTimeoutMs;
    for (;;) {
      const behind = this.#running(to).filter((target) => target.channel.backlogBytes > this.#limits.paceBytes);
      if (behind.length === 0) return;
      if (Date.now() > deadline) {
        for (const target of behind) this.#restart(target, 'a front-end does not take a large revision in time; restarting it');
        return;
      }
      await sleep(1);
    }
  }

  /** Held-back broadcasts passed their bound (or one failed): the front-ends restart (their clients reconnect) rather than wait for them. */
  #restartAll(message: string): void {
    for (const target of this.#running(this.#options.targets())) this.#restart(target, message);
    if (this.#behind !== undefined) this.#behind = { items: [], events: 0 };
  }

  #restart(target: T, message: string): void {
    this.#givenUp.add(target);
    this.#options.restart(target, message, this.#behind?.events);
  }

  /**
   * Sends the same encoded messages to the running front-ends of `to` (those that started before
   * the broadcast: every one, or #sendInParts's choice); one that cannot keep up is restarted.
   */
  #broadcast(messages: readonly ChannelMessage[], to: ReadonlyArray<T | undefined>): void {
    let encoded: Uint8Array | undefined;
    for (const target of to) {
      if (!this.#isRunning(target)) continue;
      if (target.channel.backlogBytes > this.#limits.maxBacklogBytes) {
        this.#restart(target, 'a front-end cannot keep up with the revision stream; restarting it');
        continue;
      }
      encoded ??= Channel.encode(messages);
      target.channel.sendEncoded(encoded);
    }
    const state = messages[messages.length - 1]?.s as MirroredState | undefined;
    if (state !== undefined) this.#options.stateSent(state);
  }

  #isRunning(target: T | undefined): target is T {
    return target !== undefined && !target.channel.closed && !this.#givenUp.has(target);
  }

  #running(targets: ReadonlyArray<T | undefined>): T[] {
    return targets.filter((target): target is T => this.#isRunning(target));
  }
}

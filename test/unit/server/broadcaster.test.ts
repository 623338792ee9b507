// Goal: the core's broadcast of committed revisions to its front-ends (src/server/frontends/
// broadcaster.ts) gives each front-end every revision after the state it started from, once and in
// order, also when it was (re)started while a large batch went out in parts; and its bounds
// restart a front-end rather than wait or buffer without end.
// Method: front-ends faked as their channels plus the front-end's own handling of the messages
// (worker-main.ts: parts joined, the batch into a real WatchHub, whose assertion stops a front-end
// given a revision it already passed). Parts of 10 events; a batch of 25 events goes out in three
// parts over turns of the event loop while the test commits more and starts a second front-end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Broadcaster, type BroadcastLimits, type BroadcastTarget } from '../../../src/server/frontends/broadcaster.js';
import { Channel, type ChannelMessage } from '../../../src/server/frontends/channel.js';
import { joinRevisionParts, type MirroredState } from '../../../src/server/frontends/protocol.js';
import { WatchHub } from '../../../src/store/watch/watch-hub.js';
import type { RevisionChanges } from '../../../src/store/mvcc/store.js';
import type { Event } from '../../../src/store/mvcc/types.js';
import { KvdError } from '../../../src/util/errors.js';

const state = (revision: number): MirroredState => ({ clusterId: 1n, memberId: 1n, term: 2, leader: 1n, revision, compacted: 0, learner: false });

const revision = (rev: number, events: number): RevisionChanges => ({
  revision: rev,
  events: Array.from({ length: events }, (_, i): Event => ({
    type: 'put',
    kv: { key: Buffer.from(`k${i}`), value: Buffer.from('v'), createRevision: rev, modRevision: rev, version: 1, lease: 0n },
  })),
});

/** A front-end as the broadcaster sees it (its channel) and as it handles what it is sent. */
class FakeFrontend implements BroadcastTarget {
  readonly startSequence: number;
  readonly hub: WatchHub;
  /** Revisions notified to the hub, with their event counts. */
  readonly notified: Array<[number, number]> = [];
  readonly replaced: number[] = [];
  readonly failures: string[] = [];
  #parts: RevisionChanges[][] | undefined;
  #revision: number;
  held = false;
  backlog = 0;
  closed = false;
  readonly channel: BroadcastTarget['channel'];

  constructor(startSequence: number, startRevision: number) {
    this.startSequence = startSequence;
    this.#revision = startRevision;
    this.hub = new WatchHub({
      history: {
        currentRevision: startRevision,
        compactedRevision: 0,
        changes: () => Promise.reject(new KvdError('stopped')),
      },
      progressIntervalMs: 0,
    });
    const self = this;
    this.channel = {
      get backlogBytes() { return self.backlog; },
      get closed() { return self.closed; },
      hold: () => { self.held = true; },
      release: () => { self.held = false; },
      sendEncoded: (body: Uint8Array) => {
        for (const message of Channel.decode(body)) self.#receive(message);
      },
    };
  }

  get revision(): number {
    return this.#revision;
  }

  /** What worker-main.ts does with the broadcast's messages. */
  #receive(message: ChannelMessage): void {
    if (this.closed) return;
    try {
      switch (message.t) {
        case 'revisions-part':
          (this.#parts ??= []).push(message.b as RevisionChanges[]);
          return;
        case 'revisions': {
          let batch = message.b as RevisionChanges[];
          if (this.#parts !== undefined) {
            this.#parts.push(batch);
            batch = joinRevisionParts(this.#parts);
            this.#parts = undefined;
          }
          this.hub.notify(batch);
          for (const item of batch) this.notified.push([item.revision, item.events.length]);
          this.#revision = (message.s as MirroredState).revision;
          return;
        }
        case 'store-replaced':
          this.hub.storeReplaced();
          this.replaced.push((message.s as MirroredState).revision);
          this.#revision = (message.s as MirroredState).revision;
          return;
        default:
          throw new Error(`unexpected message ${String(message.t)}`);
      }
    } catch (error: unknown) {
      // A front-end stops here (fail-stop): the test counts it.
      this.failures.push(error instanceof Error ? error.message : String(error));
      this.closed = true;
    }
  }
}

function broadcaster(frontends: Array<FakeFrontend | undefined>, limits: Partial<BroadcastLimits> = {}) {
  const restarted: Array<{ frontend: FakeFrontend; message: string }> = [];
  const failed: unknown[] = [];
  const instance = new Broadcaster<FakeFrontend>({
    targets: () => frontends,
    restart: (frontend, message) => {
      restarted.push({ frontend, message });
      frontend.closed = true;
    },
    stateSent: () => undefined,
    failed: (error) => failed.push(error),
    limits: { partEvents: 10, ...limits },
  });
  return { instance, restarted, failed };
}

test('a front-end started during a broadcast in parts gets only the revisions after its start, each front-end each revision once', async () => {
  const first = new FakeFrontend(0, 1);
  const frontends: Array<FakeFrontend | undefined> = [first, undefined];
  const { instance, restarted, failed } = broadcaster(frontends);

  instance.revisions([revision(2, 25)], state(2)); // in three parts
  assert.equal(first.held, true, 'the front-end\'s other messages wait behind the parts');
  instance.revisions([revision(3, 1)], state(3)); // held behind it
  instance.storeReplaced(state(3));
  await new Promise((resolve) => setImmediate(resolve)); // one part out, two to go
  // A front-end (re)started now starts from the member's state: revision 3, everything so far.
  const second = new FakeFrontend(instance.sequence, 3);
  frontends[1] = second;
  instance.revisions([revision(4, 2), revision(5, 12)], state(5)); // held, then in two parts
  await instance.settled();
  instance.revisions([revision(6, 1)], state(6)); // at once

  assert.deepEqual(first.failures, []);
  assert.deepEqual(second.failures, [], 'the later front-end\'s hub was given no revision it had passed');
  assert.deepEqual(first.notified, [[2, 25], [3, 1], [4, 2], [5, 12], [6, 1]]);
  assert.deepEqual(first.replaced, [3]);
  assert.deepEqual(second.notified, [[4, 2], [5, 12], [6, 1]]);
  assert.deepEqual(second.replaced, [], 'the snapshot install before its start is in its state');
  assert.equal(second.hub.headRevision, 6);
  assert.equal(first.held || second.held, false, 'both channels released');
  assert.deepEqual(restarted, []);
  assert.deepEqual(failed, []);
});

test('a front-end that does not take a part in time is restarted and sent nothing more; the others get the whole batch', async () => {
  const slow = new FakeFrontend(0, 1);
  const other = new FakeFrontend(0, 1);
  const { instance, restarted } = broadcaster([slow, other], { paceBytes: 100, paceTimeoutMs: 20 });
  slow.backlog = 1_000; // never drains
  instance.revisions([revision(2, 30)], state(2));
  await instance.settled();
  assert.deepEqual(restarted.map(({ frontend, message }) => [frontend === slow, message]), [[true, 'a front-end does not take a large revision in time; restarting it']]);
  assert.deepEqual(slow.notified, [], 'the slow front-end got the first part only, never a whole batch');
  assert.deepEqual(other.notified, [[2, 30]]);
});

test('broadcasts held behind a batch in parts past their bound restart every front-end and are dropped', async () => {
  const frontends = [new FakeFrontend(0, 1), new FakeFrontend(0, 1)];
  const { instance, restarted } = broadcaster(frontends, { maxHeldEvents: 15 });
  instance.revisions([revision(2, 25)], state(2));
  instance.revisions([revision(3, 10)], state(3));
  assert.deepEqual(restarted, [], 'within the bound');
  instance.revisions([revision(4, 10)], state(4));
  assert.deepEqual(restarted.map(({ message }) => message), ['front-ends cannot keep up with the revision stream; restarting them', 'front-ends cannot keep up with the revision stream; restarting them']);
  await instance.settled();
  for (const frontend of frontends) assert.deepEqual(frontend.notified, [], 'a restarted front-end is sent nothing more');
});

test('a front-end whose channel backlog passes its bound is restarted instead of buffered for', () => {
  const stuck = new FakeFrontend(0, 1);
  const other = new FakeFrontend(0, 1);
  const { instance, restarted } = broadcaster([stuck, other], { maxBacklogBytes: 1_000 });
  stuck.backlog = 1_001;
  instance.revisions([revision(2, 1)], state(2));
  assert.equal(restarted.length, 1);
  assert.equal(restarted[0].frontend, stuck);
  assert.deepEqual(other.notified, [[2, 1]]);
  assert.deepEqual(stuck.notified, []);
});

// Goal: the member's watch-stream adapter never loses a cancel (a lost cancel leaves the
// client's watch stalled forever) and tells compaction cancels from other cancels.
// Method: a real WatchHub over the in-memory FakeStore, a HubStream (watch-backend.ts) and a
// recording API sink that can refuse deliveries ('full') like a gRPC stream whose queue is full.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WatchHub, type HistorySource } from '../../../src/store/watch/watch-hub.js';
import { HubStream } from '../../../src/server/watch-backend.js';
import type { WatchDelivery, WatchOptions } from '../../../src/api/backend.js';
import { FakeStore, bytes } from '../store/watch/fake-history.js';

class ApiSink {
  full = false;
  readonly delivered: WatchDelivery[] = [];
  deliver(delivery: WatchDelivery): 'accepted' | 'full' {
    if (this.full) return 'full';
    this.delivered.push(delivery);
    return 'accepted';
  }
}

const watchOf = (key: string, startRevision: number): WatchOptions => ({
  key: bytes(key), rangeEnd: new Uint8Array(0), startRevision, prevKv: false, filters: [], progressNotify: false,
});

const header = { clusterId: 1n, memberId: 1n, revision: 0, raftTerm: 1 };

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

test('cancels held while the stream is full are all delivered once it drains (more than 10,000)', async () => {
  const store = new FakeStore({ seed: 1, maxReadDelayTurns: 0 });
  for (let i = 0; i < 5; i++) store.apply([{ type: 'put', key: 'k', value: String(i) }]);
  store.compact(5);
  const hub = new WatchHub({ history: store, progressIntervalMs: 0 });
  const sink = new ApiSink();
  const stream = new HubStream({ watchHub: hub, currentRevision: () => store.currentRevision, header: () => header }, sink);
  sink.full = true;
  const watchers = 10_050;
  for (let handle = 1; handle <= watchers; handle++) stream.watch(handle, watchOf('k', 2)); // below the compaction: canceled
  await until(() => hub.stats().watchers === 0, 'every watcher canceled by the hub');
  sink.full = false;
  stream.writable();
  const compacted = sink.delivered.filter((delivery) => delivery.type === 'compacted');
  assert.equal(compacted.length, watchers, 'one compaction cancel per watcher, none dropped');
  assert.ok(compacted.every((delivery) => delivery.type === 'compacted' && delivery.compactRevision === 5));
  stream.close();
  hub.close();
});

test('a watcher the hub ends for a reason other than compaction is canceled with that reason, not as compacted', async () => {
  const store = new FakeStore({ seed: 2, maxReadDelayTurns: 0 });
  for (let i = 0; i < 3; i++) store.apply([{ type: 'put', key: 'k', value: String(i) }]);
  const failing: HistorySource = {
    get currentRevision() { return store.currentRevision; },
    get compactedRevision() { return store.compactedRevision; },
    changes: async () => { throw new Error('disk read failed'); },
  };
  const hub = new WatchHub({ history: failing, progressIntervalMs: 0 });
  const sink = new ApiSink();
  const stream = new HubStream({ watchHub: hub, currentRevision: () => store.currentRevision, header: () => header }, sink);
  stream.watch(1, watchOf('k', 2)); // needs history: the read fails
  await until(() => sink.delivered.length > 0, 'the cancel');
  const [delivery] = sink.delivered;
  assert.equal(delivery.type, 'canceled');
  assert.ok(delivery.type === 'canceled' && /history read failed: disk read failed/.test(delivery.reason), JSON.stringify(delivery));
  stream.close();
  hub.close();
});

test('after the stream answers full, the hub\'s catch-up waits for writable() instead of reading history it could not send', async () => {
  const store = new FakeStore({ seed: 3, maxReadDelayTurns: 0 });
  const hub = new WatchHub({ history: store, progressIntervalMs: 0, retryDelayMs: 1, recentRevisionsMax: 1 });
  const sink = new ApiSink();
  const stream = new HubStream({ watchHub: hub, currentRevision: () => store.currentRevision, header: () => header }, sink);
  stream.watch(1, watchOf('k', 0));
  sink.full = true;
  for (let i = 0; i < 5; i++) hub.notify([store.apply([{ type: 'put', key: 'k', value: String(i) }])]); // the first is refused
  const reads = store.reads;
  await new Promise((resolve) => setTimeout(resolve, 40));
  assert.equal(store.reads, reads, 'no read while the stream is full');
  sink.full = false;
  stream.writable();
  await until(() => hub.stats().catchingUp === 0, 'the watcher caught up');
  const revisions = sink.delivered.flatMap((delivery) => (delivery.type === 'events' ? delivery.events.map((event) => event.kv.modRevision) : []));
  assert.deepEqual(revisions, [2, 3, 4, 5, 6]);
  stream.close();
  hub.close();
});

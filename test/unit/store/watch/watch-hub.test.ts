// Goal: the watch hub delivers exactly the matching events from the start revision on, in
// revision order, with no gap and no duplicate, across catch-up from history, live notifies that
// race with catch-up reads, full sinks and pending-buffer overflow; it cancels compacted watchers
// with the compact revision, applies filters and prevKv, sends progress only when synced, and
// handles many watchers. Method: an in-memory FakeStore (history with seeded random read delays)
// drives the hub; RecordingSinks collect output, which is compared with a reference computed
// independently from the store's log. Randomised runs use a seeded PRNG and print the seed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Event } from '../../../../src/store/mvcc/types.js';
import { WatchHub, type WatchRequest, type WatchHubEvent, type WatchSink } from '../../../../src/store/watch/watch-hub.js';
import { keySelector, prefixEnd, selects } from '../../../../src/store/watch/key-range.js';
import { FakeStore, GatedSink, RecordingSink, bytes, describe, inRange, prng, text, until, type Write } from './fake-history.js';

function request(options: Partial<Omit<WatchRequest, 'key' | 'rangeEnd'>> & { key: string; rangeEnd?: string }): WatchRequest {
  return {
    key: bytes(options.key),
    rangeEnd: bytes(options.rangeEnd ?? ''),
    startRevision: options.startRevision ?? 0,
    prevKv: options.prevKv ?? false,
    filters: options.filters ?? { noPut: false, noDelete: false },
    progressNotify: options.progressNotify ?? false,
  };
}

/** The events a watcher must see, from the store's log. */
function expected(store: FakeStore, watch: WatchRequest, fromRevision: number): string[] {
  const range = { key: text(watch.key), rangeEnd: text(watch.rangeEnd) };
  const out: Event[] = [];
  for (const item of store.log) {
    if (item.revision < fromRevision) continue;
    for (const event of item.events) {
      if (!inRange(range, text(event.kv.key))) continue;
      if (event.type === 'put' && watch.filters.noPut) continue;
      if (event.type === 'delete' && watch.filters.noDelete) continue;
      out.push(watch.prevKv ? event : { type: event.type, kv: event.kv });
    }
  }
  return describe(out);
}

function quiet(hub: WatchHub): Promise<void> {
  return until(() => hub.stats().catchingUp === 0, { what: 'every watcher synced' });
}

/**
 * Watches the prefix `k` from `startRevision` (options as {@link request}) until every watcher is
 * synced; the sink must hold exactly what the store's log gives from there. Returns the watch, its
 * sink and how many history reads the catch-up took.
 */
async function catchUp(hub: WatchHub, store: FakeStore, startRevision: number, options: { prevKv?: boolean } = {}): Promise<{ watch: WatchRequest; sink: RecordingSink; reads: number }> {
  const sink = new RecordingSink();
  const watch = request({ key: 'k', rangeEnd: 'l', startRevision, prevKv: options.prevKv });
  const before = store.reads;
  hub.watch(watch, sink);
  await quiet(hub);
  assert.deepEqual(describe(sink.events), expected(store, watch, startRevision));
  return { watch, sink, reads: store.reads - before };
}

test('key selectors follow etcd range rules: single key, range, prefix, from-key, all keys', () => {
  const single = keySelector({ key: bytes('a'), rangeEnd: bytes('') });
  assert.ok(selects(single, bytes('a')) && !selects(single, bytes('a\u0000')) && !selects(single, bytes('b')));
  const prefix = keySelector({ key: bytes('ab'), rangeEnd: bytes('ac') });
  assert.ok(selects(prefix, bytes('ab')) && selects(prefix, bytes('ab\u00ff')) && !selects(prefix, bytes('ac')) && !selects(prefix, bytes('aa')));
  const fromKey = keySelector({ key: bytes('m'), rangeEnd: bytes('\u0000') });
  assert.ok(selects(fromKey, bytes('m')) && selects(fromKey, bytes('\u00ff')) && !selects(fromKey, bytes('l')));
  const all = keySelector({ key: bytes('\u0000'), rangeEnd: bytes('\u0000') });
  assert.ok(selects(all, bytes('\u0000')) && selects(all, bytes('a')));
  const emptyKey = keySelector({ key: bytes(''), rangeEnd: bytes('\u0000') });
  assert.ok(selects(emptyKey, bytes('a')));
  assert.equal(prefix.kind, 'prefix');
  assert.equal(keySelector({ key: bytes('a\u00ff'), rangeEnd: bytes('b') }).kind, 'prefix');
  assert.equal(keySelector({ key: bytes('ab'), rangeEnd: bytes('b') }).kind, 'range');
  assert.equal(keySelector({ key: bytes('\u00ff\u00ff'), rangeEnd: bytes('\u0000') }).kind, 'from-key');
  assert.deepEqual(prefixEnd(bytes('a\u00ff\u00ff')), bytes('b'));
  assert.equal(prefixEnd(bytes('\u00ff')), undefined);
  const highPrefix = keySelector({ key: bytes('a\u00ff'), rangeEnd: bytes('b') });
  assert.ok(selects(highPrefix, bytes('a\u00ff')) && selects(highPrefix, bytes('a\u00ff\u0000')) && !selects(highPrefix, bytes('a\u00fe')) && !selects(highPrefix, bytes('b')));
});

test('start 0 sees only later events; a past start replays history then live events, once each', async () => {
  const store = new FakeStore({ seed: 1 });
  const hub = new WatchHub({ history: store, progressIntervalMs: 0 });
  try {
    hub.notify([store.apply([{ type: 'put', key: 'a', value: '1' }])]); // rev 2
    hub.notify([store.apply([{ type: 'put', key: 'a', value: '2' }])]); // rev 3
    const now = new RecordingSink();
    const past = new RecordingSink();
    hub.watch(request({ key: 'a' }), now);
    hub.watch(request({ key: 'a', startRevision: 2 }), past);
    hub.notify([store.apply([{ type: 'put', key: 'a', value: '3' }])]); // rev 4
    await quiet(hub);
    hub.notify([store.apply([{ type: 'delete', key: 'a' }])]); // rev 5
    assert.deepEqual(describe(now.events), ['4:put:a', '5:delete:a']);
    assert.deepEqual(describe(past.events), ['2:put:a', '3:put:a', '4:put:a', '5:delete:a']);
    hub.assertInvariants();
  } finally {
    hub.close();
  }
});

test('a future start revision filters earlier events', () => {
  const store = new FakeStore({ seed: 2 });
  const hub = new WatchHub({ history: store, progressIntervalMs: 0 });
  const sink = new RecordingSink();
  hub.watch(request({ key: 'k', startRevision: 4 }), sink);
  hub.notify([store.apply([{ type: 'put', key: 'k', value: 'x' }]), store.apply([{ type: 'put', key: 'k', value: 'y' }])]);
  hub.notify([store.apply([{ type: 'put', key: 'k', value: 'z' }])]);
  assert.deepEqual(describe(sink.events), ['4:put:k']);
  hub.close();
});

test('a start revision below the compaction is canceled with the compact revision, after watch() returns; one at it is served (etcd 3.4)', async () => {
  const store = new FakeStore({ seed: 3 });
  for (let i = 0; i < 5; i++) store.apply([{ type: 'put', key: 'k', value: String(i) }]);
  store.compact(4);
  const hub = new WatchHub({ history: store, progressIntervalMs: 0 });
  const atCompaction = new RecordingSink();
  hub.watch(request({ key: 'k', startRevision: 4 }), atCompaction);
  await quiet(hub);
  assert.equal(atCompaction.canceledWith, undefined, 'a watch from the compaction revision is not canceled');
  assert.deepEqual(describe(atCompaction.events), ['4:put:k', '5:put:k', '6:put:k']);
  const sink = new RecordingSink();
  hub.watch(request({ key: 'k', startRevision: 3 }), sink);
  assert.equal(sink.canceledWith, undefined, 'no sink call inside watch()');
  await until(() => sink.canceledWith !== undefined, { what: 'cancel' });
  const canceled = sink.canceledWith as { reason: string; compactRevision: number } | undefined;
  assert.equal(canceled?.compactRevision, 4);
  assert.equal(canceled?.reason, 'etcdserver: mvcc: required revision has been compacted');
  const ok = new RecordingSink();
  hub.watch(request({ key: 'k', startRevision: 5 }), ok);
  await quiet(hub);
  assert.deepEqual(describe(ok.events), ['5:put:k', '6:put:k']);
  assert.equal(hub.stats().watchers, 2);
  hub.close();
});

test('an unsynced watcher whose next revision gets compacted is canceled', async () => {
  const store = new FakeStore({ seed: 4 });
  const hub = new WatchHub({ history: store, progressIntervalMs: 0, retryDelayMs: 1 });
  const sink = new RecordingSink({ fullRate: 1 });
  hub.watch(request({ key: 'k' }), sink);
  hub.notify([store.apply([{ type: 'put', key: 'k', value: '1' }])]);
  assert.equal(hub.stats().catchingUp, 1, 'a full sink makes the watcher unsynced');
  hub.notify([store.apply([{ type: 'put', key: 'k', value: '2' }])]);
  store.compact(3);
  await until(() => sink.canceledWith !== undefined, { what: 'cancel after compaction' });
  assert.equal(sink.canceledWith?.compactRevision, 3);
  assert.equal(hub.stats().watchers, 0);
  hub.close();
});

test('NOPUT / NODELETE filters and prevKv stripping', async () => {
  const store = new FakeStore({ seed: 5 });
  const hub = new WatchHub({ history: store, progressIntervalMs: 0 });
  const noPut = new RecordingSink();
  const noDelete = new RecordingSink();
  const withPrev = new RecordingSink();
  const withoutPrev = new RecordingSink();
  const pastWithPrev = new RecordingSink();
  hub.watch(request({ key: 'k', filters: { noPut: true, noDelete: false } }), noPut);
  hub.watch(request({ key: 'k', filters: { noPut: false, noDelete: true } }), noDelete);
  hub.watch(request({ key: 'k', prevKv: true }), withPrev);
  hub.watch(request({ key: 'k' }), withoutPrev);
  hub.notify([store.apply([{ type: 'put', key: 'k', value: 'a' }])]);
  hub.notify([store.apply([{ type: 'put', key: 'k', value: 'b' }])]);
  hub.notify([store.apply([{ type: 'delete', key: 'k' }])]);
  hub.watch(request({ key: 'k', prevKv: true, startRevision: 2 }), pastWithPrev);
  await quiet(hub);
  assert.deepEqual(describe(noPut.events), ['4:delete:k']);
  assert.deepEqual(describe(noDelete.events), ['2:put:k', '3:put:k']);
  assert.deepEqual(describe(withPrev.events), ['2:put:k', '3:put:k:prev=a', '4:delete:k:prev=b']);
  assert.deepEqual(describe(withoutPrev.events), ['2:put:k', '3:put:k', '4:delete:k']);
  assert.deepEqual(describe(pastWithPrev.events), ['2:put:k', '3:put:k:prev=a', '4:delete:k:prev=b']);
  hub.close();
});

test('a full sink drops the watcher to unsynced; it catches up later with no gap or duplicate', async () => {
  const store = new FakeStore({ seed: 6 });
  const log: WatchHubEvent[] = [];
  const hub = new WatchHub({ history: store, progressIntervalMs: 0, retryDelayMs: 1, onEvent: (event) => log.push(event) });
  const sink = new RecordingSink();
  const watch = request({ key: 'p', rangeEnd: 'q' });
  hub.watch(watch, sink);
  hub.notify([store.apply([{ type: 'put', key: 'p1', value: '1' }])]);
  sink.fullRate = 1;
  for (let i = 0; i < 20; i++) hub.notify([store.apply([{ type: 'put', key: `p${i % 3}`, value: String(i) }])]);
  assert.equal(hub.stats().synced, 0);
  sink.fullRate = 0;
  await quiet(hub);
  for (let i = 0; i < 3; i++) hub.notify([store.apply([{ type: 'delete', key: `p${i}` }])]);
  assert.deepEqual(describe(sink.events), expected(store, watch, 2));
  assert.ok(log.some((event) => event.type === 'unsynced' && event.reason === 'sink-full'));
  assert.ok(log.some((event) => event.type === 'synced'));
  hub.assertInvariants();
  hub.close();
});

test('pending overflow during catch-up falls back to history without losing events (prevKv watchers buffer live events)', async () => {
  const store = new FakeStore({ seed: 7, maxReadDelayTurns: 20 });
  let overflows = 0;
  const hub = new WatchHub({
    history: store,
    progressIntervalMs: 0,
    maxPendingEventsPerWatcher: 3,
    catchUpBatchEvents: 2,
    onEvent: (event) => void (event.type === 'pending-overflow' && overflows++),
  });
  for (let i = 0; i < 10; i++) store.apply([{ type: 'put', key: 'k', value: String(i) }]);
  const sink = new RecordingSink();
  const watch = request({ key: 'k', startRevision: 1, prevKv: true });
  hub.watch(watch, sink);
  for (let i = 0; i < 40; i++) {
    hub.notify([store.apply([{ type: 'put', key: 'k', value: `live${i}` }])]);
    await new Promise<void>((resolve) => setImmediate(resolve));
    hub.assertInvariants();
  }
  await quiet(hub);
  assert.ok(overflows > 0, 'the test exercises overflow');
  assert.deepEqual(describe(sink.events), expected(store, watch, 1));
  hub.close();
});

test('randomised: concurrent notifies, catch-ups and full sinks deliver exact event sequences', async () => {
  const totals = { full: 0, gatedFull: 0, reads: 0, events: 0, overflows: 0 };
  for (let seed = 1; seed <= 25; seed++) {
    const random = prng(seed);
    const store = new FakeStore({ seed, maxReadDelayTurns: 1 + Math.floor(random() * 6) });
    const hub = new WatchHub({
      history: store,
      progressIntervalMs: 0,
      retryDelayMs: 1,
      maxPendingEventsPerWatcher: 1 + Math.floor(random() * 8),
      catchUpBatchEvents: 1 + Math.floor(random() * 10),
      maxConcurrentCatchUps: 1 + Math.floor(random() * 3),
      // Catch-ups from the store (1 revision kept), mixed (5) and from the recent revisions.
      recentRevisionsMax: [1, 5, 10_000][seed % 3],
      onEvent: (event) => void (event.type === 'pending-overflow' && totals.overflows++),
    });
    const keys = ['a', 'ab', 'abc', 'b', 'ba', 'c', '\u00ff', 'a\u00ff', 'a\u00ffx', 'aa'];
    const shapes: Array<{ key: string; rangeEnd?: string }> = [
      { key: 'a' }, { key: 'ab' }, { key: 'a', rangeEnd: 'b' }, { key: 'b', rangeEnd: '\u0000' },
      { key: '\u0000', rangeEnd: '\u0000' }, { key: 'ab', rangeEnd: 'ac' }, { key: '\u00ff' },
      { key: 'ab', rangeEnd: 'b' }, { key: 'a\u00ff', rangeEnd: 'b' }, { key: 'a', rangeEnd: 'ab' }, { key: '', rangeEnd: '\u0000' },
    ];
    const watchers: Array<{ watch: WatchRequest; sink: RecordingSink; from: number }> = [];
    const writeRound = (): void => {
      const batch = [];
      const revisions = 1 + Math.floor(random() * 3);
      for (let r = 0; r < revisions; r++) {
        const chosen = keys.filter(() => random() < 0.3);
        const writes: Write[] = chosen.map((key) => (random() < 0.25 ? { type: 'delete', key } : { type: 'put', key, value: `${seed}-${store.currentRevision}` }));
        batch.push(store.apply(writes));
      }
      hub.notify(batch);
    };
    for (let step = 0; step < 120; step++) {
      const roll = random();
      if (roll < 0.55) writeRound();
      else if (roll < 0.7 && watchers.length < 30) {
        const shape = shapes[Math.floor(random() * shapes.length)];
        const start = random() < 0.3 ? 0 : 1 + Math.floor(random() * store.currentRevision);
        const watch = request({
          ...shape,
          startRevision: start,
          prevKv: random() < 0.5,
          filters: { noPut: random() < 0.1, noDelete: random() < 0.1 },
        });
        // A third of the sinks lose and regain room (and say so through ready()); of the others, some answer 'full' at random.
        const sink = random() < 0.33 ? new GatedSink({ seed: seed * 100 + watchers.length }) : new RecordingSink({ seed: seed * 100 + watchers.length, fullRate: random() < 0.4 ? 0.3 : 0 });
        const from = start === 0 ? store.currentRevision + 1 : start;
        hub.watch(watch, sink);
        watchers.push({ watch, sink, from });
      } else if (roll < 0.8) {
        for (const { sink } of watchers) if (sink instanceof GatedSink && random() < 0.5) sink.room = !sink.room;
      } else {
        const turns = Math.floor(random() * 4);
        for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
      }
      hub.assertInvariants();
    }
    for (const { sink } of watchers) {
      sink.fullRate = 0;
      if (sink instanceof GatedSink) sink.room = true;
    }
    await quiet(hub);
    writeRound();
    hub.assertInvariants();
    for (const [index, { watch, sink, from }] of watchers.entries()) {
      assert.deepEqual(describe(sink.events), expected(store, watch, from), `seed ${seed} watcher ${index}`);
      for (let i = 1; i < sink.responses.length; i++) {
        assert.ok(sink.responses[i].revision >= sink.responses[i - 1].revision, `seed ${seed}: response revisions never go back`);
      }
      for (const response of sink.responses) {
        for (const event of response.events) assert.ok(event.kv.modRevision <= response.revision, `seed ${seed}: response revision covers its events`);
      }
    }
    totals.full += watchers.reduce((sum, { sink }) => sum + sink.fullAnswers, 0);
    totals.gatedFull += watchers.reduce((sum, { sink }) => sum + (sink instanceof GatedSink ? sink.fullAnswers : 0), 0);
    totals.reads += store.reads;
    totals.events += watchers.reduce((sum, { sink }) => sum + sink.events.length, 0);
    hub.close();
  }
  console.log(`# randomised: ${totals.events} events checked, ${totals.full} full answers (${totals.gatedFull} from sinks without room), ${totals.reads} history reads, ${totals.overflows} overflows`);
  assert.ok(totals.full > 0 && totals.gatedFull > 0 && totals.reads > 0 && totals.overflows > 0, 'the run exercises full sinks, sinks without room, catch-up reads and overflow');
});

test('cancel() during an in-flight catch-up read stops all sink calls', async () => {
  const store = new FakeStore({ seed: 8, maxReadDelayTurns: 10 });
  for (let i = 0; i < 5; i++) store.apply([{ type: 'put', key: 'k', value: String(i) }]);
  const hub = new WatchHub({ history: store, progressIntervalMs: 0 });
  const sink = new RecordingSink();
  const watcher = hub.watch(request({ key: 'k', startRevision: 1 }), sink);
  await until(() => store.reads > 0, { what: 'a read in flight' });
  watcher.cancel();
  watcher.cancel();
  hub.notify([store.apply([{ type: 'put', key: 'k', value: 'x' }])]);
  await until(() => hub.stats().watchers === 0, { what: 'removal' });
  for (let i = 0; i < 15; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  assert.equal(sink.events.length, 0);
  assert.equal(sink.canceledWith, undefined);
  hub.assertInvariants();
  hub.close();
});

test('a throwing sink is canceled without disturbing other watchers', () => {
  const store = new FakeStore({ seed: 9 });
  const hub = new WatchHub({ history: store, progressIntervalMs: 0 });
  const good = new RecordingSink();
  let canceled = '';
  hub.watch(request({ key: 'k' }), {
    send: () => {
      throw new Error('boom');
    },
    canceled: (options) => void (canceled = options.reason),
    progress: () => {},
  });
  hub.watch(request({ key: 'k' }), good);
  hub.notify([store.apply([{ type: 'put', key: 'k', value: 'v' }])]);
  assert.match(canceled, /boom/);
  assert.deepEqual(describe(good.events), ['2:put:k']);
  assert.equal(hub.stats().watchers, 1);
  hub.close();
});

test('progress: periodic only for idle synced watchers with progressNotify; requests wait for sync', async () => {
  const store = new FakeStore({ seed: 10 });
  const hub = new WatchHub({ history: store, progressIntervalMs: 0, retryDelayMs: 1 });
  const notifyIdle = new RecordingSink();
  const notifyBusy = new RecordingSink();
  const silent = new RecordingSink();
  hub.watch(request({ key: 'idle', progressNotify: true }), notifyIdle);
  hub.watch(request({ key: 'busy', progressNotify: true }), notifyBusy);
  hub.watch(request({ key: 'idle' }), silent);
  hub.reportProgress();
  assert.deepEqual(notifyIdle.progressRevisions, [1]);
  hub.notify([store.apply([{ type: 'put', key: 'busy', value: '1' }])]);
  hub.reportProgress();
  assert.deepEqual(notifyIdle.progressRevisions, [1, 2]);
  assert.deepEqual(notifyBusy.progressRevisions, [1], 'no progress in an interval with events');
  hub.reportProgress();
  assert.deepEqual(notifyBusy.progressRevisions, [1, 2]);
  assert.deepEqual(silent.progressRevisions, []);

  const lagging = new RecordingSink({ fullRate: 1 });
  const watcher = hub.watch(request({ key: 'busy' }), lagging);
  hub.notify([store.apply([{ type: 'put', key: 'busy', value: '2' }])]);
  watcher.requestProgress();
  assert.deepEqual(lagging.progressRevisions, [], 'no progress while unsynced');
  hub.notify([store.apply([{ type: 'put', key: 'busy', value: '3' }])]);
  lagging.fullRate = 0;
  await quiet(hub);
  assert.deepEqual(describe(lagging.events), ['3:put:busy', '4:put:busy']);
  assert.deepEqual(lagging.progressRevisions, [4], 'the deferred progress follows the events');
  hub.close();
});

test('the progress timer fires on its own when an interval is set', async () => {
  const store = new FakeStore({ seed: 11 });
  const hub = new WatchHub({ history: store, progressIntervalMs: 100 });
  const sink = new RecordingSink();
  hub.watch(request({ key: 'k', progressNotify: true }), sink);
  await until(() => sink.progressRevisions.length > 0, { what: 'a timed progress notification' });
  hub.close();
});

test('many watchers: 10,000 watchers over keys and prefixes, each sees exactly its events', async () => {
  const store = new FakeStore({ seed: 12 });
  const hub = new WatchHub({ history: store, progressIntervalMs: 0 });
  const sinks: Array<{ sink: RecordingSink; watch: WatchRequest }> = [];
  for (let stream = 0; stream < 100; stream++) {
    for (let i = 0; i < 100; i++) {
      const watch = i < 90 ? request({ key: `svc/${stream}/${i}` }) : request({ key: `svc/${stream}/`, rangeEnd: `svc/${stream}0` });
      const sink = new RecordingSink();
      hub.watch(watch, sink);
      sinks.push({ sink, watch });
    }
  }
  const started = performance.now();
  for (let r = 0; r < 1000; r++) {
    const stream = r % 100;
    hub.notify([store.apply([{ type: 'put', key: `svc/${stream}/${r % 90}`, value: String(r) }, { type: 'put', key: `other/${r}`, value: '' }])]);
  }
  const elapsedMs = performance.now() - started;
  console.log(`# 10,000 watchers: 1000 notifies in ${elapsedMs.toFixed(1)} ms`);
  await quiet(hub);
  let delivered = 0;
  for (const { sink, watch } of sinks) {
    const range = { key: text(watch.key), rangeEnd: text(watch.rangeEnd) };
    for (const [i, event] of sink.events.entries()) {
      assert.ok(inRange(range, text(event.kv.key)), 'only matching events');
      if (i > 0) assert.ok(event.kv.modRevision > sink.events[i - 1].kv.modRevision, 'increasing, no duplicates');
    }
    delivered += sink.events.length;
  }
  assert.equal(delivered, 1000 * 11, 'each put reaches its key watcher and the 10 prefix watchers of its stream');
  const stats = hub.stats();
  assert.equal(stats.watchers, 10_000);
  assert.equal(stats.synced, 10_000);
  hub.close();
  assert.equal(hub.stats().watchers, 0);
});

test('maxWatchers refuses new watchers with too-many-requests', () => {
  const store = new FakeStore({ seed: 13 });
  const hub = new WatchHub({ history: store, progressIntervalMs: 0, maxWatchers: 2 });
  hub.watch(request({ key: 'a' }), new RecordingSink());
  const second = hub.watch(request({ key: 'a' }), new RecordingSink());
  assert.throws(() => hub.watch(request({ key: 'a' }), new RecordingSink()), (error: unknown) => (error as { code?: string }).code === 'too-many-requests');
  second.cancel();
  hub.watch(request({ key: 'a' }), new RecordingSink());
  hub.close();
});

test('a sink that cancels its own watcher inside send() is not resurrected', async () => {
  const store = new FakeStore({ seed: 14 });
  for (let i = 0; i < 3; i++) store.apply([{ type: 'put', key: 'k', value: String(i) }]);
  const hub = new WatchHub({ history: store, progressIntervalMs: 0 });
  let calls = 0;
  const sink = new RecordingSink();
  const watcher = hub.watch(request({ key: 'k', startRevision: 2 }), {
    send: (response) => {
      calls++;
      watcher.cancel();
      return sink.send(response);
    },
    canceled: () => assert.fail('not canceled by the hub'),
    progress: () => {},
  });
  assert.equal(watcher.mode, 'catching-up');
  await until(() => calls > 0, { what: 'first delivery' });
  hub.notify([store.apply([{ type: 'put', key: 'k', value: 'x' }])]);
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve));
  assert.equal(calls, 1);
  assert.equal(watcher.mode, 'canceled');
  assert.deepEqual(hub.stats(), { watchers: 0, synced: 0, catchingUp: 0, victims: 0, pendingEvents: 0, headRevision: 5 });
  hub.assertInvariants();
  hub.close();
});

test('storeReplaced(): revisions installed without notify are caught up from history', async () => {
  const store = new FakeStore({ seed: 15 });
  const hub = new WatchHub({ history: store, progressIntervalMs: 0, retryDelayMs: 1 });
  const synced = new RecordingSink();
  const lagging = new RecordingSink({ fullRate: 1 });
  const compactedAway = new RecordingSink();
  const watch = request({ key: 'k' });
  hub.watch(watch, synced);
  hub.watch(watch, lagging);
  const old = hub.watch(request({ key: 'old' }), compactedAway);
  hub.notify([store.apply([{ type: 'put', key: 'k', value: '1' }])]); // rev 2, lagging goes unsynced
  for (let i = 0; i < 5; i++) store.apply([{ type: 'put', key: 'k', value: `snap${i}` }]); // revs 3..7, never notified
  hub.storeReplaced();
  assert.equal(hub.headRevision, 7);
  assert.equal(old.mode, 'catching-up');
  lagging.fullRate = 0;
  hub.notify([store.apply([{ type: 'put', key: 'k', value: 'live' }])]); // rev 8
  await quiet(hub);
  assert.deepEqual(describe(synced.events), expected(store, watch, 2));
  assert.deepEqual(describe(lagging.events), expected(store, watch, 2));
  assert.equal(compactedAway.events.length, 0);
  for (let i = 0; i < 4; i++) store.apply([{ type: 'put', key: 'old', value: `snap${i}` }]); // revs 9..12
  store.compact(11); // the installed snapshot starts past the watchers' position
  hub.storeReplaced();
  await until(() => compactedAway.canceledWith !== undefined, { what: 'cancel of a watcher behind the new compaction' });
  hub.close();
});

test('prefix selectors never mutate a Buffer key (regression: Buffer#slice is a view)', () => {
  const key = Buffer.from('w/');
  const end = prefixEnd(key);
  assert.equal(Buffer.from(end ?? []).toString(), 'w0');
  assert.equal(key.toString(), 'w/', 'the key is unchanged');
  const selector = keySelector({ key: Buffer.from('w/'), rangeEnd: Buffer.from('w0') });
  assert.equal(selector.kind, 'prefix');
  assert.equal(Buffer.from(selector.key).toString(), 'w/');
  assert.ok(selects(selector, Buffer.from('w/k1')));
});

test('live events without prevKv reach prevKv watchers through history, with their previous values', async () => {
  const store = new FakeStore({ seed: 7 });
  const hub = new WatchHub({ history: store, progressIntervalMs: 0 });
  // The real store's live feed carries no prevKv: strip it as the server's feed would.
  const strip = (item: { revision: number; events: readonly Event[] }) => ({ revision: item.revision, events: item.events.map((e) => ({ type: e.type, kv: e.kv })) });
  try {
    hub.notify([strip(store.apply([{ type: 'put', key: 'p', value: '1' }]))]); // rev 2
    const withPrev = new RecordingSink();
    const without = new RecordingSink();
    hub.watch(request({ key: 'p', prevKv: true }), withPrev);
    hub.watch(request({ key: 'p' }), without);
    hub.notify([strip(store.apply([{ type: 'put', key: 'p', value: '2' }]))]); // rev 3
    hub.notify([strip(store.apply([{ type: 'delete', key: 'p' }]))]); // rev 4
    hub.notify([strip(store.apply([{ type: 'put', key: 'p', value: '3' }]))]); // rev 5: a creation, no prevKv needed
    await quiet(hub);
    assert.deepEqual(describe(withPrev.events), ['3:put:p:prev=1', '4:delete:p:prev=2', '5:put:p']);
    // One response per revision, as live delivery would have made them (etcdctl -w json shows it).
    assert.deepEqual(withPrev.responses.map((r) => r.events.length), withPrev.responses.map(() => 1));
    assert.deepEqual(describe(without.events), ['3:put:p', '4:delete:p', '5:put:p']);
    hub.assertInvariants();
  } finally {
    hub.close();
  }
});

test('a catch-up within the recent revisions reads no history and gets the live Event objects; prevKv, older starts and a replaced store read the store', async () => {
  const store = new FakeStore({ seed: 31 });
  const hub = new WatchHub({ history: store, progressIntervalMs: 0, recentRevisionsMax: 20 });
  try {
    const live = new RecordingSink();
    hub.watch(request({ key: 'k', rangeEnd: 'l' }), live);
    for (let i = 0; i < 30; i++) hub.notify([store.apply([{ type: i % 7 === 6 ? 'delete' : 'put', key: `k${i % 4}`, value: `v${i}` }])]); // revs 2..31
    const recent = await catchUp(hub, store, 15);
    assert.equal(recent.reads, 0, 'revisions 15..31 are all kept: no history read');
    for (const event of recent.sink.events) assert.ok(live.events.some((delivered) => delivered.kv === event.kv), 'the key-values the live path delivered, not copies read again');

    assert.ok((await catchUp(hub, store, 3)).reads > 0, 'revision 3 is older than the 20 kept: read from the store');
    assert.ok((await catchUp(hub, store, 25, { prevKv: true })).reads > 0, 'prevKv is not in the live events: read from the store');

    store.apply([{ type: 'put', key: 'k9', value: 'installed' }]); // rev 32, never notified (a snapshot install)
    hub.storeReplaced();
    assert.ok((await catchUp(hub, store, 28)).reads > 0, 'after a replaced store the kept revisions are dropped');
    hub.assertInvariants();
  } finally {
    hub.close();
  }
});

test('with no watcher the hub keeps no recent revisions; a later watcher starting in the past reads them from the store, and what follows is kept again', async () => {
  const store = new FakeStore({ seed: 32 });
  const hub = new WatchHub({ history: store, progressIntervalMs: 0, recentRevisionsMax: 100 });
  try {
    for (let i = 0; i < 10; i++) hub.notify([store.apply([{ type: 'put', key: `k${i % 3}`, value: `v${i}` }])]); // revs 2..11, no watcher
    assert.equal(hub.headRevision, 11);
    const late = await catchUp(hub, store, 4);
    assert.ok(late.reads > 0, 'revisions notified while nobody watched are read from the store');

    for (let i = 10; i < 20; i++) hub.notify([store.apply([{ type: 'put', key: `k${i % 3}`, value: `v${i}` }])]); // revs 12..21, watched
    assert.equal((await catchUp(hub, store, 12)).reads, 0, 'revisions notified while a watcher existed are kept');
    assert.deepEqual(describe(late.sink.events), expected(store, late.watch, 4), 'the first watcher got every revision');
    hub.assertInvariants();
  } finally {
    hub.close();
  }
});

test('a catching-up watcher whose sink has no room reads no history and offers nothing until it has; then it catches up with no gap', async () => {
  const store = new FakeStore({ seed: 34 });
  const hub = new WatchHub({ history: store, progressIntervalMs: 0, retryDelayMs: 1, recentRevisionsMax: 1 });
  try {
    const sink = new RecordingSink();
    let room = true;
    let offers = 0;
    const gated: WatchSink = {
      send: (response) => {
        offers++;
        return room ? sink.send(response) : 'full';
      },
      canceled: (options) => sink.canceled(options),
      progress: (revision) => sink.progress(revision),
      ready: () => room,
    };
    const watch = request({ key: 'k', rangeEnd: 'l' });
    hub.watch(watch, gated);
    hub.notify([store.apply([{ type: 'put', key: 'k1', value: '1' }])]); // rev 2, delivered live
    room = false;
    for (let i = 0; i < 10; i++) hub.notify([store.apply([{ type: 'put', key: `k${i % 3}`, value: `v${i}` }])]); // the first is refused: catching up
    assert.equal(hub.stats().synced, 0);
    const offered = offers;
    const reads = store.reads;
    await new Promise((resolve) => setTimeout(resolve, 40)); // dozens of 1 ms retries
    assert.equal(store.reads, reads, 'no history read while the sink has no room');
    assert.equal(offers, offered, 'and nothing offered');
    room = true;
    await quiet(hub);
    assert.ok(store.reads > reads, 'with room again it reads what it missed');
    assert.deepEqual(describe(sink.events), expected(store, watch, 2));
    hub.assertInvariants();
  } finally {
    hub.close();
  }
});

// Goal: watches deliver every event exactly once and in order, resume from the last seen
// revision after a stream failure, report compaction as WatchCompactedError, refuse concurrent
// next() and release their stream on return(). Method: drive puts/deletes against the server
// under test and compare what the watcher yields with what was written; for resumption, watch
// through a 3-member cluster and kill the member the watch is connected to.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { compare, connect, op, WatchCompactedError, type Client, type WatchEvent, type WatchItem } from '../../../src/client/index.js';
import { serverUnavailable, startServerUnderTest, type ServerUnderTest } from './server-under-test.js';
import { uniquePrefix, waitFor, withTimeout } from './helpers.js';

async function take(iterator: AsyncIterator<WatchItem>, count: number): Promise<WatchEvent[]> {
  const events: WatchEvent[] = [];
  while (events.length < count) {
    const next = await iterator.next();
    if (next.done === true) break;
    if (next.value.type !== 'progress') events.push(next.value);
  }
  return events;
}

describe('client watch', { skip: serverUnavailable }, () => {
  let server: ServerUnderTest;
  let client: Client;
  before(async () => {
    server = await startServerUnderTest();
    client = connect({ endpoints: server.endpoints });
  });
  after(async () => {
    client?.close();
    await server?.stop();
  });

  test('a prefix watch from now sees puts and deletes in order, with prevKv', async () => {
    const p = uniquePrefix('watch');
    const watcher = client.watch(p, { prefix: true, prevKv: true });
    const from = await watcher.ready();
    const first = await client.put(`${p}a`, '1');
    assert.ok(first.header.revision >= from);
    await client.put(`${p}a`, '2');
    await client.delete(`${p}a`);
    await client.put(`${p}b`, '3');
    const iterator = watcher[Symbol.asyncIterator]();
    const events = await take(iterator, 4);
    assert.deepEqual(events.map((event) => [event.type, event.kv.key.toString(), event.kv.value.toString()]), [
      ['put', `${p}a`, '1'],
      ['put', `${p}a`, '2'],
      ['delete', `${p}a`, ''],
      ['put', `${p}b`, '3'],
    ]);
    assert.equal(events[1].prevKv?.value.toString(), '1');
    assert.equal(events[2].prevKv?.value.toString(), '2');
    assert.equal(events[0].revision, first.header.revision);
    await iterator.return?.();
    assert.deepEqual(await iterator.next(), { value: undefined, done: true });
  });

  test('startRevision replays history; a transaction is one batch', async () => {
    const p = uniquePrefix('hist');
    const first = await client.put(`${p}x`, '1');
    await client.txn().then({ wire: { request_put: { key: Buffer.from(`${p}y`), value: Buffer.from('2') } } }, { wire: { request_put: { key: Buffer.from(`${p}z`), value: Buffer.from('3') } } }).commit();
    const watcher = client.watch(p, { prefix: true, startRevision: first.header.revision });
    const batches = watcher.batches();
    const one = await batches.next();
    const seen: WatchEvent[] = one.done === true ? [] : [...one.value.events];
    if (seen.length < 3) {
      const two = await batches.next();
      if (two.done !== true) seen.push(...two.value.events);
    }
    assert.deepEqual(seen.map((event) => event.kv.key.toString()), [`${p}x`, `${p}y`, `${p}z`]);
    assert.equal(seen[1].revision, seen[2].revision);
    await batches.return?.(undefined);
  });

  test('requestProgress yields a progress item at the current revision', async () => {
    const p = uniquePrefix('progress');
    const put = await client.put(`${p}k`, 'v');
    const watcher = client.watch(p, { prefix: true });
    await watcher.ready();
    assert.equal(watcher.requestProgress(), true);
    const iterator = watcher[Symbol.asyncIterator]();
    const next = await iterator.next();
    assert.equal(next.done, false);
    assert.equal(next.value?.type, 'progress');
    assert.ok((next.value?.revision ?? 0n) >= put.header.revision);
    await iterator.return?.();
  });

  test('concurrent next() is refused; the abort signal ends the watch', async () => {
    const p = uniquePrefix('conc');
    const controller = new AbortController();
    const watcher = client.watch(p, { prefix: true, signal: controller.signal });
    const iterator = watcher[Symbol.asyncIterator]();
    const pending = iterator.next();
    await assert.rejects(iterator.next(), /concurrent next/);
    controller.abort();
    await assert.rejects(pending, /aborted/);
    assert.deepEqual(await iterator.next(), { value: undefined, done: true });
  });

  test('a compacted start revision fails with WatchCompactedError carrying compactRevision', async () => {
    const p = uniquePrefix('compact');
    const first = await client.put(`${p}k`, '1');
    const second = await client.put(`${p}k`, '2');
    await client.compact(second.header.revision);
    const watcher = client.watch(p, { prefix: true, startRevision: first.header.revision });
    await assert.rejects(
      (async () => {
        for await (const item of watcher) void item;
      })(),
      (error: unknown) => error instanceof WatchCompactedError && error.compactRevision === second.header.revision,
    );
  });
});

describe('client watch across member failure (3-member cluster)', { skip: serverUnavailable !== false ? serverUnavailable : process.env.KVD_TEST_ENDPOINTS !== undefined ? 'needs a cluster it can kill' : false }, () => {
  let server: ServerUnderTest;
  before(async () => {
    server = await startServerUnderTest({ members: 3 });
  });
  after(async () => {
    await server?.stop();
  });

  test('resumes from the last seen revision + 1 on another endpoint: no event missed or repeated', async () => {
    const watching = connect({ endpoints: server.endpoints, dialTimeout: 300, requestTimeout: 5000 });
    // Writes go through the last member, which is never killed.
    const writer = connect({ endpoints: [server.endpoints[2]] });
    try {
      const p = uniquePrefix('resume');
      const watcher = watching.watch(p, { prefix: true });
      await watcher.ready();
      const iterator = watcher[Symbol.asyncIterator]();
      const total = 40;
      const received: string[] = [];
      const consumer = (async () => {
        while (received.length < total) {
          const next = await iterator.next();
          if (next.done === true) return;
          if (next.value.type !== 'progress') received.push(next.value.kv.value.toString());
        }
      })();
      // Each write is a compare-and-put on the version, so retrying one that timed out during
      // the leader election can never write it twice.
      const write = async (index: number): Promise<void> => {
        const deadline = Date.now() + 15_000;
        for (;;) {
          try {
            await writer.txn().if(compare.version(`${p}k`, '=', index)).then(op.put(`${p}k`, String(index))).commit();
            return;
          } catch (error: unknown) {
            if (Date.now() > deadline) throw error;
          }
        }
      };
      for (let index = 0; index < total / 2; index += 1) await write(index);
      await waitFor(() => received.length >= total / 2, 10_000, 'first half of the events');
      // A lease kept alive through the same client must survive the failover too.
      const lease = await watching.lease(2);
      let renewals = 0;
      lease.on('keepalive', () => (renewals += 1));
      // The watch and the lease stream are on the first endpoint; kill it.
      await server.members[0].kill();
      const renewalsAtKill = renewals;
      for (let index = total / 2; index < total; index += 1) await write(index);
      await withTimeout(consumer, 15_000, () => `only ${received.length} events after failover`);
      assert.deepEqual(received, Array.from({ length: total }, (_, index) => String(index)));
      await waitFor(() => renewals >= renewalsAtKill + 2, 15_000, 'lease renewals through another member');
      assert.equal(lease.state, 'alive');
      await lease.revoke();
      await iterator.return?.();
    } finally {
      watching.close();
      writer.close();
    }
  });
});

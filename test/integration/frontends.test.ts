// Goal: a member whose client port is served by front-end processes (--frontends) keeps serving
// when one of them dies under load: the core restarts it, clients on the dead one reconnect, a
// watcher resumes without missing or repeating an event, and no acknowledged write is lost.
// Method: a real 1-member kvd with 2 front-ends; the TypeScript client writes in a loop and
// watches a prefix; the test kills one front-end process (kill -9, its pid read from /proc) and
// waits, with deadlines, for the restart and for writes and events to continue.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Cluster, waitFor } from './harness.js';
import { connect, op } from '../../src/client/index.js';

function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter((s) => s.length > 0).map(Number);
  } catch (error: unknown) {
    void error; // gone
    return [];
  }
}

test('a front-end killed under load is restarted; writes and a watch go on without loss', async () => {
  const cluster = await Cluster.start({ size: 1, extraArgs: ['--frontends', '2'] });
  after(() => cluster.stop());
  await cluster.waitForLeader({ timeoutMs: 30_000 });
  const corePid = cluster.members[0].process?.pid;
  assert.ok(corePid !== undefined);
  const frontends = await waitFor('two front-end processes', () => (childPids(corePid).length === 2 ? childPids(corePid) : undefined), { timeoutMs: 20_000 });

  const client = connect({ endpoints: [cluster.members[0].endpoint], requestTimeout: 3000 });
  after(() => client.close());
  const watcher = client.watch('/load/', { prefix: true });
  await watcher.ready();
  const seen: number[] = [];
  const watching = (async () => {
    for await (const item of watcher) {
      if (item.type === 'put') seen.push(Number(item.kv.value.toString()));
    }
  })();

  const acknowledged: number[] = [];
  let failures = 0;
  let stop = false;
  const writer = (async () => {
    for (let i = 0; !stop && i < 100_000; i++) {
      try {
        await client.put(`/load/${i % 50}`, String(i));
        acknowledged.push(i);
      } catch (error: unknown) {
        void error; // a write cut with its connection has an unknown outcome; it is not counted
        failures += 1;
      }
    }
  })();
  await waitFor('writes flowing', () => (acknowledged.length >= 50 ? true : undefined), { timeoutMs: 20_000 });
  // Kill both original front-ends, one after the other: the client's connection was on one of them.
  for (const victim of frontends) {
    process.kill(victim, 'SIGKILL');
    const beforeKill = acknowledged.length;
    await waitFor('the front-end restarted', () => {
      const now = childPids(corePid);
      return now.length === 2 && !now.includes(victim) ? true : undefined;
    }, { timeoutMs: 20_000 });
    await waitFor('writes continue after the kill', () => (acknowledged.length >= beforeKill + 100 ? true : undefined), { timeoutMs: 30_000 });
  }
  stop = true;
  await writer;
  const last = acknowledged[acknowledged.length - 1];
  await waitFor('the watcher saw the last acknowledged write', () => (seen.includes(last) ? true : undefined), { timeoutMs: 20_000 });
  watcher.close();
  await watching;
  // Every acknowledged write reached the watcher exactly once, in order (the watcher resumed
  // across the killed front-end from its last revision + 1).
  const seenSet = new Set(seen);
  assert.deepEqual(acknowledged.filter((i) => !seenSet.has(i)), [], 'no acknowledged write missing from the watch');
  assert.equal(new Set(seen).size, seen.length, 'no event repeated');
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i] > seen[i - 1], 'events in order');
  assert.ok(cluster.log('m1').includes('"event":"frontend-exited"'), 'the core logged the exit');
  void failures;
});

// A revision of more deletes than one broadcast frame carries (BROADCAST_PART_EVENTS, 20,000)
// reaches a front-end's watcher whole, in key order, and the next revision after it; the member
// answers meanwhile (its answers wait behind the parts on each front-end's channel).
test('a revision too large for one broadcast frame reaches a front-end\'s watcher whole and in order', { timeout: 120_000 }, async () => {
  const cluster = await Cluster.start({ size: 1, extraArgs: ['--frontends', '2'] });
  after(() => cluster.stop());
  await cluster.waitForLeader({ timeoutMs: 30_000 });
  const client = connect({ endpoints: [cluster.members[0].endpoint], requestTimeout: 20_000 });
  after(() => client.close());
  const KEYS = 25_000;
  const key = (i: number): string => `/big/${String(i).padStart(6, '0')}`;
  for (let from = 0; from < KEYS; from += 125) {
    await client.txn().then(...Array.from({ length: 125 }, (_, i) => op.put(key(from + i), 'v'))).commit();
  }
  const watcher = client.watch('/big/', { prefix: true });
  await watcher.ready();
  const deletes: Array<{ key: string; revision: bigint }> = [];
  let after_: { key: string; revision: bigint } | undefined;
  const watching = (async () => {
    for await (const item of watcher) {
      if (item.type === 'delete') deletes.push({ key: item.kv.key.toString(), revision: item.revision });
      if (item.type === 'put') {
        after_ = { key: item.kv.key.toString(), revision: item.revision };
        return;
      }
    }
  })();
  const deleted = await client.delete('/big/', { prefix: true });
  await client.put('/big/after', 'x');
  await waitFor('the put after the delete, watched', () => (after_ !== undefined ? true : undefined), { timeoutMs: 60_000 });
  await watching;
  assert.equal(deleted.deleted, BigInt(KEYS));
  assert.equal(deletes.length, KEYS, 'every delete, once');
  assert.ok(deletes.every((event) => event.revision === deletes[0].revision), 'all at one revision');
  assert.deepEqual(deletes.map((event) => event.key), Array.from({ length: KEYS }, (_, i) => key(i)), 'in key order');
  assert.equal(after_?.revision, deletes[0].revision + 1n);
  await watcher.close();
});

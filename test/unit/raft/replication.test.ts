// Goal: log replication properties: logs converge (log matching), fast conflict back-off needs
// few round trips, flow control bounds message bytes and in-flight appends, progress moves
// probe → replicate, only current-term entries commit by counting, and proposals between two
// Readies are batched into one append per follower.
// Method: scripted scenarios on the in-memory harness; some messages are injected by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, text } from './harness.js';
import type { AppendMessage, Entry, Message } from '../../../src/raft/types.js';

test('log replication: every member applies the same entries in the same order', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  for (let i = 0; i < 20; i++) cluster.node(1n).propose(text(`e${i}`));
  cluster.stabilize();
  const expected = Array.from({ length: 20 }, (_, i) => `e${i}`);
  for (const id of [1n, 2n, 3n]) assert.deepEqual(cluster.appliedData(id), expected);
});

test('fast conflict back-off: a follower with a long conflicting tail is repaired in one rejection', () => {
  // Member 1 holds 50 entries of term 1; members 2 and 3 share indexes 1..5 of term 1 and then
  // 6..30 of term 3. Without the hint the leader would step back 25 times.
  const entries = (from: number, to: number, term: number): Entry[] =>
    Array.from({ length: to - from + 1 }, (_, i) => ({ term, index: from + i, type: 'normal' as const, data: text(`t${term}i${from + i}`) }));
  const cluster = new Cluster({
    voters: 3,
    prepare: (id, storage) => {
      if (id === 1n) {
        storage.append(entries(1, 50, 1));
        storage.setHardState({ term: 1, vote: 0n, commit: 0 });
      } else {
        storage.append([...entries(1, 5, 1), ...entries(6, 30, 3)]);
        storage.setHardState({ term: 3, vote: 0n, commit: 0 });
      }
    },
  });
  const seen: Message[] = [];
  cluster.drop = (m) => {
    seen.push(m);
    return false;
  };
  assert.equal(cluster.elect(2n), 2n);
  const rejections = seen.filter((m) => m.type === 'append-response' && m.reject && m.from === 1n);
  assert.equal(rejections.length, 1);
  const ids = (id: bigint) => cluster.get(id).applied.map((e) => `${e.index}/${e.term}`);
  assert.deepEqual(ids(1n), ids(2n));
  assert.equal(cluster.node(1n).status().lastIndex, 31);
});

test('flow control: appends respect maxAppendBytes (at least one entry each)', () => {
  const cluster = new Cluster({ voters: 3, overrides: { maxAppendBytes: 1000 } });
  cluster.elect(1n);
  const payload = new Uint8Array(300);
  for (let i = 0; i < 20; i++) cluster.node(1n).propose(payload);
  const appends: AppendMessage[] = [];
  cluster.drop = (m) => {
    if (m.type === 'append') appends.push(m);
    return false;
  };
  cluster.stabilize();
  const withEntries = appends.filter((m) => m.entries.length > 0);
  assert.ok(withEntries.length >= 2 * 7, `appends: ${withEntries.length}`);
  for (const m of withEntries) {
    const bytes = m.entries.reduce((sum, e) => sum + e.data.length, 0);
    assert.ok(m.entries.length === 1 || bytes <= 1000, `append of ${bytes} bytes`);
  }
  assert.equal(cluster.get(2n).applied.filter((e) => e.data.length === 300).length, 20);
});

test('flow control: at most maxInflightAppends unacknowledged appends per follower', () => {
  const cluster = new Cluster({ voters: 3, overrides: { maxInflightAppends: 2 } });
  cluster.elect(1n);
  assert.equal(cluster.node(1n).status().progress.get(3n)?.state, 'replicate');
  // Member 3 stops acknowledging.
  cluster.drop = (m) => m.from === 3n && m.type === 'append-response';
  let toThree = 0;
  for (let round = 0; round < 6; round++) {
    cluster.node(1n).propose(text(`x${round}`));
    cluster.processReady(1n);
    toThree += cluster.network.filter((m) => m.type === 'append' && m.to === 3n && m.entries.length > 0).length;
    cluster.deliver();
    cluster.stabilize();
  }
  assert.equal(toThree, 2);
  // Quorum (1, 2) still commits everything.
  assert.equal(cluster.appliedData(2n).length, 6);
  cluster.heal();
  cluster.run(2);
  assert.equal(cluster.appliedData(3n).length, 6);
});

test('progress: a follower starts in probe and moves to replicate after its first acknowledgement', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.node(1n).campaign();
  for (let i = 0; i < 4; i++) {
    cluster.processAll();
    cluster.deliver();
  }
  assert.equal(cluster.node(1n).status().role, 'leader');
  assert.equal(cluster.node(1n).status().progress.get(2n)?.state, 'probe');
  cluster.stabilize();
  const progress = cluster.node(1n).status().progress;
  assert.equal(progress.get(2n)?.state, 'replicate');
  assert.equal(progress.get(2n)?.match, 1);
  assert.equal(progress.get(1n)?.match, cluster.node(1n).status().lastIndex);
});

test('commit counts replicas of current-term entries only (thesis 3.6.2)', () => {
  const cluster = new Cluster({ voters: 3, overrides: { checkQuorum: 'disabled' } });
  cluster.elect(1n);
  // Entry X reaches everyone but leader 1 never hears the acknowledgements: not committed.
  cluster.drop = (m) => m.type === 'append-response' && m.to === 1n;
  cluster.node(1n).propose(text('X'));
  cluster.stabilize();
  assert.equal(cluster.node(1n).status().commit, 1);
  // 2 takes over; its no-op acknowledgements to it are dropped.
  cluster.drop = (m) => m.type === 'append-response' && m.to === 2n;
  cluster.node(2n).campaign();
  cluster.stabilize();
  assert.equal(cluster.leader(), 2n);
  const term = cluster.node(2n).status().term;
  assert.equal(cluster.node(2n).status().lastIndex, 3);
  // A replica of old-term entry 2 alone must not commit it.
  cluster.node(2n).step({ type: 'append-response', from: 3n, to: 2n, term, index: 2, reject: false, rejectHint: 0, logTerm: 0 });
  assert.equal(cluster.node(2n).status().commit, 1);
  // A replica of the current-term no-op commits both.
  cluster.node(2n).step({ type: 'append-response', from: 3n, to: 2n, term, index: 3, reject: false, rejectHint: 0, logTerm: 0 });
  assert.equal(cluster.node(2n).status().commit, 3);
});

test('batching: many proposals between two Readies give one entries batch and one append per follower', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  for (let i = 0; i < 100; i++) assert.deepEqual(cluster.node(1n).propose(text(`b${i}`)), { ok: true });
  const ready = cluster.node(1n).ready();
  assert.equal(ready.entries.length, 100);
  const appends = ready.messages.filter((m): m is AppendMessage => m.type === 'append');
  assert.equal(appends.length, 2);
  for (const m of appends) assert.equal(m.entries.length, 100);
  for (const m of ready.messages) cluster.network.push(m);
  cluster.get(1n).storage.append(ready.entries);
  cluster.node(1n).advance();
  cluster.deliver();
  const followerReady = cluster.node(2n).ready();
  assert.equal(followerReady.entries.length, 100);
  assert.equal(followerReady.messages.filter((m) => m.type === 'append-response').length, 1);
  cluster.get(2n).storage.append(followerReady.entries);
  for (const m of followerReady.messages) cluster.network.push(m);
  cluster.node(2n).advance();
  cluster.stabilize();
  assert.equal(cluster.appliedData(3n).length, 100);
});

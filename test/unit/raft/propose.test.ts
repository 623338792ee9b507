// Goal: proposal admission: fail fast without a leader, forwarding from followers, bounded
// uncommitted bytes at the leader.
// Method: scripted scenarios on the in-memory harness.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, text } from './harness.js';

test('propose fails fast with no-leader when no leader is known', () => {
  const cluster = new Cluster({ voters: 3 });
  assert.deepEqual(cluster.node(2n).propose(text('x')), { ok: false, reason: 'no-leader' });
  assert.deepEqual(cluster.node(2n).readIndex(text('r')), { ok: false, reason: 'no-leader' });
  assert.equal(cluster.node(2n).hasReady(), false);
});

test('a follower forwards proposals to the leader as a propose message and they commit', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  assert.deepEqual(cluster.node(2n).propose(text('fwd')), { ok: true });
  const ready = cluster.node(2n).ready();
  assert.equal(ready.messages.length, 1);
  assert.equal(ready.messages[0].type, 'propose');
  assert.equal(ready.messages[0].to, 1n);
  for (const m of ready.messages) cluster.network.push(m);
  cluster.node(2n).advance();
  cluster.stabilize();
  for (const id of [1n, 2n, 3n]) assert.deepEqual(cluster.appliedData(id), ['fwd']);
});

test('the leader bounds proposed-but-uncommitted bytes', () => {
  const cluster = new Cluster({ voters: 3, overrides: { maxUncommittedBytes: 4096 } });
  cluster.elect(1n);
  cluster.partition([1n], [2n, 3n]);
  const payload = new Uint8Array(1000);
  const outcomes = Array.from({ length: 8 }, () => cluster.node(1n).propose(payload));
  assert.equal(outcomes.filter((o) => o.ok).length, 4);
  assert.deepEqual(outcomes[7], { ok: false, reason: 'too-many-uncommitted' });
  cluster.heal();
  cluster.run(2);
  assert.deepEqual(cluster.node(1n).propose(payload), { ok: true });
});

test('a single-member cluster commits its own proposals at once', () => {
  const cluster = new Cluster({ voters: 1 });
  assert.equal(cluster.elect(1n), 1n);
  cluster.node(1n).propose(text('solo'));
  cluster.stabilize();
  assert.deepEqual(cluster.appliedData(1n), ['solo']);
});

test('committed entries are handed out at most maxCommittedBytesPerReady per Ready', () => {
  const cluster = new Cluster({ voters: 1, overrides: { maxCommittedBytesPerReady: 350 } });
  cluster.elect(1n);
  for (let i = 0; i < 10; i++) cluster.node(1n).propose(new Uint8Array(100));
  cluster.stabilize();
  const sizes = cluster.get(1n).readies.map((ready) => ready.committedEntries.filter((e) => e.data.length === 100).length).filter((n) => n > 0);
  assert.ok(sizes.length >= 4, `batches: ${sizes.join(',')}`);
  assert.ok(sizes.every((n) => n <= 3));
  assert.equal(sizes.reduce((a, b) => a + b, 0), 10);
});

test('reportUnreachable moves a replicating follower back to probe', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  assert.equal(cluster.node(1n).status().progress.get(2n)?.state, 'replicate');
  cluster.node(1n).reportUnreachable(2n);
  assert.equal(cluster.node(1n).status().progress.get(2n)?.state, 'probe');
  cluster.node(1n).propose(text('again'));
  cluster.run(2);
  assert.equal(cluster.node(1n).status().progress.get(2n)?.state, 'replicate');
  assert.deepEqual(cluster.appliedData(2n), ['again']);
});

test('config validation rejects bad combinations', () => {
  assert.throws(() => new Cluster({ voters: 1, overrides: { electionTicks: 2, heartbeatTicks: 2 } }), RangeError);
  assert.throws(() => new Cluster({ voters: 1, overrides: { maxInflightAppends: 0 } }), RangeError);
});

// Goal: leadership transfer (thesis 3.10): the leader catches the transferee up, then sends
// timeout-now; proposals are refused meanwhile; a transfer that cannot finish is aborted after
// an election timeout.
// Method: scripted scenarios on the in-memory harness.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, text } from './harness.js';

test('transfer to an up-to-date follower makes it leader in a higher term', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  const term = cluster.node(1n).status().term;
  cluster.node(1n).transferLeader(2n);
  cluster.stabilize();
  assert.equal(cluster.leader(), 2n);
  assert.ok(cluster.node(2n).status().term > term);
  assert.equal(cluster.node(1n).status().leader, 2n);
});

test('transfer to a lagging follower catches it up first, then sends timeout-now', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.drop = (m) => m.to === 3n;
  for (let i = 0; i < 10; i++) cluster.node(1n).propose(text(`p${i}`));
  cluster.stabilize();
  assert.equal(cluster.appliedData(3n).length, 0);
  const order: string[] = [];
  cluster.drop = (m) => {
    if (m.to === 3n && (m.type === 'append' || m.type === 'timeout-now')) order.push(m.type);
    return false;
  };
  cluster.node(1n).transferLeader(3n);
  assert.deepEqual(cluster.node(1n).propose(text('refused')), { ok: false, reason: 'transfer-in-progress' });
  cluster.stabilize();
  assert.equal(cluster.leader(), 3n);
  assert.equal(order[order.length - 1], 'timeout-now');
  assert.ok(order.indexOf('append') < order.indexOf('timeout-now'));
  assert.equal(cluster.appliedData(3n).length, 10);
});

test('a follower forwards transferLeader to the leader', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.node(2n).transferLeader(2n);
  cluster.stabilize();
  assert.equal(cluster.leader(), 2n);
});

test('a transfer that cannot finish is aborted after an election timeout and proposals resume', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.drop = (m) => m.to === 3n || m.from === 3n;
  cluster.node(1n).propose(text('a'));
  cluster.stabilize();
  cluster.node(1n).transferLeader(3n);
  assert.deepEqual(cluster.node(1n).propose(text('b')), { ok: false, reason: 'transfer-in-progress' });
  for (let i = 0; i < 10; i++) {
    cluster.node(1n).tick();
    cluster.stabilize();
  }
  assert.ok(cluster.get(1n).events.some((e) => e.kind === 'transfer-aborted'));
  assert.equal(cluster.leader(), 1n);
  assert.deepEqual(cluster.node(1n).propose(text('c')), { ok: true });
});

test('transfer to a learner or a non-member is ignored', () => {
  const cluster = new Cluster({ voters: [1n, 2n], learners: [3n] });
  cluster.elect(1n);
  cluster.node(1n).transferLeader(3n);
  cluster.node(1n).transferLeader(9n);
  assert.deepEqual(cluster.node(1n).propose(text('x')), { ok: true });
  cluster.stabilize();
  assert.equal(cluster.leader(), 1n);
});

// Goal: log compaction and snapshots: a leader whose log no longer holds a follower's next index
// sends a snapshot (progress in snapshot state until reportSnapshot), the follower installs it
// via Ready.snapshot and continues from there; a member restarts from snapshot + remaining log.
// Method: scripted scenarios on the in-memory harness; the test compacts MemoryStorage itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, text } from './harness.js';
import type { NodeId } from '../../../src/raft/types.js';

function compact(cluster: Cluster, id: NodeId): number {
  const member = cluster.get(id);
  const applied = member.node.status().applied;
  member.storage.createSnapshot({ index: applied, confState: member.node.status().confState, data: text(`state@${applied}`) });
  member.storage.compact(applied);
  return applied;
}

test('a follower behind the compacted log gets a snapshot, installs it and catches up', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.drop = (m) => m.to === 3n || m.from === 3n;
  for (let i = 0; i < 20; i++) cluster.node(1n).propose(text(`s${i}`));
  cluster.stabilize();
  const snapshotIndex = compact(cluster, 1n);
  assert.equal(snapshotIndex, 21);
  cluster.node(1n).propose(text('tail'));
  cluster.stabilize();
  const sent: string[] = [];
  cluster.drop = (m) => {
    if (m.to === 3n) sent.push(m.type);
    return false;
  };
  cluster.tickAll();
  for (let i = 0; i < 10 && !cluster.network.some((m) => m.type === 'snapshot'); i++) {
    cluster.processAll();
    if (!cluster.network.some((m) => m.type === 'snapshot')) cluster.deliver();
  }
  assert.equal(cluster.node(1n).status().progress.get(3n)?.state, 'snapshot');
  cluster.stabilize();
  assert.ok(sent.includes('snapshot'), `sent ${sent.join(',')}`);
  const installed = cluster.get(3n).installed;
  assert.equal(installed.length, 1);
  assert.equal(installed[0].metadata.index, 21);
  assert.equal(new TextDecoder().decode(installed[0].data), 'state@21');
  assert.ok(cluster.get(1n).events.some((e) => e.kind === 'snapshot-sent'));
  assert.ok(cluster.get(3n).events.some((e) => e.kind === 'snapshot-installed'));
  cluster.node(1n).reportSnapshot(3n, 'finished'); // already moved on by the follower's answer: a no-op
  cluster.run(2);
  assert.equal(cluster.node(1n).status().progress.get(3n)?.state, 'replicate');
  assert.deepEqual(cluster.appliedData(3n), ['tail']);
  assert.equal(cluster.node(3n).status().commit, cluster.node(1n).status().commit);
  assert.deepEqual(cluster.node(3n).status().confState.voters, [1n, 2n, 3n]);
});

test('a failed snapshot is retried after the follower answers again', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.drop = (m) => m.to === 3n || m.from === 3n;
  for (let i = 0; i < 5; i++) cluster.node(1n).propose(text(`s${i}`));
  cluster.stabilize();
  compact(cluster, 1n);
  let snapshots = 0;
  cluster.drop = (m) => {
    if (m.type === 'snapshot') {
      snapshots++;
      return snapshots === 1; // the first one is lost
    }
    return false;
  };
  cluster.tickAll();
  cluster.stabilize();
  assert.equal(snapshots, 1);
  cluster.node(1n).reportSnapshot(3n, 'failed');
  cluster.run(3);
  assert.equal(snapshots, 2);
  assert.equal(cluster.node(3n).status().commit, cluster.node(1n).status().commit);
});

test('restart from snapshot plus remaining log restores commit, log and membership', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  for (let i = 0; i < 10; i++) cluster.node(1n).propose(text(`r${i}`));
  cluster.stabilize();
  compact(cluster, 2n);
  for (let i = 10; i < 15; i++) cluster.node(1n).propose(text(`r${i}`));
  cluster.stabilize();
  const before = cluster.node(2n).status();
  cluster.restart(2n);
  const after = cluster.node(2n).status();
  assert.equal(after.term, before.term);
  assert.equal(after.commit, before.commit);
  assert.equal(after.lastIndex, before.lastIndex);
  assert.equal(after.applied, before.applied);
  assert.deepEqual(after.confState, before.confState);
  cluster.node(1n).propose(text('after-restart'));
  cluster.run(2);
  assert.equal(cluster.appliedData(2n).at(-1), 'after-restart');
  assert.equal(cluster.appliedData(2n).length, 16);
});

test('a restarted member replays membership changes it had applied beyond its snapshot', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.node(1n).proposeConfChange({ type: 'add-learner-node', nodeId: 7n, context: new Uint8Array(0) });
  cluster.stabilize();
  cluster.restart(2n);
  assert.deepEqual(cluster.node(2n).status().confState.learners, [7n]);
});

test('a whole cluster restarts from storage and elects a leader again', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  for (let i = 0; i < 5; i++) cluster.node(1n).propose(text(`w${i}`));
  cluster.stabilize();
  for (const id of [1n, 2n, 3n]) cluster.restart(id);
  cluster.run(40);
  const leader = cluster.leader();
  assert.notEqual(leader, 0n);
  cluster.node(leader).propose(text('again'));
  cluster.stabilize();
  for (const id of [1n, 2n, 3n]) assert.equal(cluster.appliedData(id).at(-1), 'again');
});

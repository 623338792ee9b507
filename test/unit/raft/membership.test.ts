// Goal: single-step membership changes carried in the log: add/remove voters, add and promote
// learners, one pending change at a time, a removed leader steps down, learners never campaign and
// their votes do not count; and the ConfChange codec round-trips.
// Method: scripted scenarios on the in-memory harness; the harness applies conf-change entries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, text } from './harness.js';
import { decodeConfChange, encodeConfChange } from '../../../src/raft/raw-node.js';
import type { ConfChange } from '../../../src/raft/types.js';

const change = (type: ConfChange['type'], nodeId: bigint, context: Uint8Array = new Uint8Array(0)): ConfChange => ({ type, nodeId, context });

test('conf change codec round-trips every type and rejects garbage', () => {
  for (const type of ['add-node', 'add-learner-node', 'remove-node', 'update-node'] as const) {
    const original = change(type, 0xfedcba9876543210n, text('{"name":"m"}'));
    const decoded = decodeConfChange(encodeConfChange(original));
    assert.equal(decoded.type, type);
    assert.equal(decoded.nodeId, original.nodeId);
    assert.deepEqual([...decoded.context], [...original.context]);
  }
  assert.throws(() => decodeConfChange(new Uint8Array([1, 2])), RangeError);
  assert.throws(() => decodeConfChange(new Uint8Array(14).fill(9)), RangeError);
});

test('adding a voter: the new member starts empty, catches up and counts in the quorum', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.node(1n).propose(text('before'));
  cluster.stabilize();
  cluster.addEmpty(4n);
  assert.deepEqual(cluster.node(1n).proposeConfChange(change('add-node', 4n)), { ok: true });
  cluster.stabilize();
  cluster.run(2);
  for (const id of [1n, 2n, 3n, 4n]) {
    assert.deepEqual(cluster.node(id).status().confState.voters, [1n, 2n, 3n, 4n]);
    assert.deepEqual(cluster.appliedData(id), ['before']);
  }
  // With 4 voters, 2 alone are not a quorum: 1 and 4 together with 2 are.
  cluster.down.add(3n);
  cluster.node(1n).propose(text('after'));
  cluster.stabilize();
  assert.deepEqual(cluster.appliedData(4n), ['before', 'after']);
});

test('only one conf change may be pending at a time', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  assert.deepEqual(cluster.node(1n).proposeConfChange(change('add-learner-node', 4n)), { ok: true });
  assert.deepEqual(cluster.node(1n).proposeConfChange(change('add-learner-node', 5n)), { ok: false, reason: 'conf-change-pending' });
  cluster.stabilize();
  assert.deepEqual(cluster.node(1n).proposeConfChange(change('add-learner-node', 5n)), { ok: true });
});

test('removing a follower shrinks the quorum', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.node(1n).proposeConfChange(change('remove-node', 3n));
  cluster.stabilize();
  assert.deepEqual(cluster.node(1n).status().confState.voters, [1n, 2n]);
  cluster.down.add(3n);
  cluster.node(1n).propose(text('two'));
  cluster.stabilize();
  assert.deepEqual(cluster.appliedData(2n), ['two']);
});

test('a removed leader steps down and the rest elect a new leader', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.node(1n).proposeConfChange(change('remove-node', 1n));
  cluster.stabilize();
  assert.equal(cluster.node(1n).status().role, 'follower');
  assert.ok(cluster.get(1n).events.some((e) => e.kind === 'step-down' && e.reason === 'removed'));
  cluster.run(40);
  const leader = cluster.leader();
  assert.ok(leader === 2n || leader === 3n, `leader ${leader}`);
  assert.deepEqual(cluster.node(leader).status().confState.voters, [2n, 3n]);
  // The removed member hears from no leader any more.
  assert.deepEqual(cluster.node(1n).propose(text('x')), { ok: false, reason: 'no-leader' });
  cluster.node(leader).propose(text('y'));
  cluster.stabilize();
  assert.ok(cluster.appliedData(leader).includes('y'));
});

test('learners receive the log, never campaign, and their votes do not count', () => {
  const cluster = new Cluster({ voters: [1n, 2n], learners: [3n] });
  cluster.elect(1n);
  cluster.node(1n).propose(text('l'));
  cluster.stabilize();
  assert.deepEqual(cluster.appliedData(3n), ['l']);
  // The learner never campaigns, however long it waits without a leader.
  cluster.partition([3n], [1n, 2n]);
  const term = cluster.node(3n).status().term;
  cluster.run(60);
  assert.equal(cluster.node(3n).status().term, term);
  assert.equal(cluster.node(3n).status().role, 'follower');
  cluster.node(3n).campaign();
  assert.equal(cluster.node(3n).status().role, 'follower');
  // A learner answers vote requests like a voter (it may have been promoted without having
  // applied it yet), but candidates ask and count only voters: 2 cannot win with 1 down.
  cluster.heal();
  cluster.down.add(1n);
  cluster.run(60);
  assert.notEqual(cluster.node(2n).status().role, 'leader');
  assert.equal(cluster.node(3n).status().role, 'follower');
});

test('add-node on a learner promotes it to voter', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.addEmpty(4n);
  cluster.node(1n).proposeConfChange(change('add-learner-node', 4n));
  cluster.stabilize();
  cluster.run(2);
  assert.deepEqual(cluster.node(4n).status().confState.learners, [4n]);
  cluster.node(1n).proposeConfChange(change('add-node', 4n));
  cluster.stabilize();
  for (const id of [1n, 2n, 3n, 4n]) {
    const confState = cluster.node(id).status().confState;
    assert.deepEqual(confState.voters, [1n, 2n, 3n, 4n]);
    assert.deepEqual(confState.learners, []);
  }
  assert.ok(cluster.get(4n).events.some((e) => e.kind === 'conf-change-applied'));
  // The promoted member can now lead.
  cluster.node(1n).transferLeader(4n);
  cluster.stabilize();
  assert.equal(cluster.leader(), 4n);
});

test('a member added after compaction gets a snapshot that predates its own addition and then joins', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  for (let i = 0; i < 5; i++) cluster.node(1n).propose(text(`c${i}`));
  cluster.stabilize();
  cluster.compact(1n); // the snapshot's ConfState is {1,2,3}
  cluster.addEmpty(4n);
  cluster.node(1n).proposeConfChange(change('add-node', 4n));
  cluster.stabilize();
  cluster.run(3);
  assert.equal(cluster.get(4n).installed.length, 1);
  assert.deepEqual(cluster.node(4n).status().confState.voters, [1n, 2n, 3n, 4n]);
  assert.deepEqual(cluster.appliedData(4n), ['c0', 'c1', 'c2', 'c3', 'c4']);
  assert.equal(cluster.node(4n).status().commit, cluster.node(1n).status().commit);
});

test('a joining member with an empty log but a configuration (server bootstrap from flags) needs no snapshot', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.node(1n).propose(text('x'));
  cluster.stabilize();
  cluster.addEmpty(4n);
  // As a server joining with --initial-cluster-state existing would: the current members as voters.
  const storage = cluster.get(4n).storage;
  storage.applySnapshot({ metadata: { index: 0, term: 0, confState: { voters: [1n, 2n, 3n, 4n], learners: [] } }, data: new Uint8Array(0) });
  cluster.restart(4n);
  cluster.node(1n).proposeConfChange(change('add-node', 4n));
  cluster.stabilize();
  cluster.run(2);
  assert.equal(cluster.get(4n).installed.length, 0);
  assert.ok(!cluster.get(1n).events.some((e) => e.kind === 'snapshot-sent'));
  assert.deepEqual(cluster.appliedData(4n), ['x']);
});

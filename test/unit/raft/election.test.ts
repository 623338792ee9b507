// Goal: leader election properties: randomized timeouts elect exactly one leader, pre-vote keeps
// a partitioned member from inflating terms, check-quorum steps down an isolated leader, and the
// Ready contract puts hard state with the messages that depend on it.
// Method: scripted scenarios on the in-memory harness (deterministic seeds).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster } from './harness.js';

test('randomized election timeouts elect exactly one leader and all agree', () => {
  for (let seed = 1; seed <= 20; seed++) {
    const cluster = new Cluster({ voters: 3, seed });
    let ticks = 0;
    while (cluster.leader() === 0n && ticks < 100) {
      cluster.run(1);
      ticks++;
    }
    const leader = cluster.leader();
    assert.notEqual(leader, 0n, `seed ${seed}: no leader`);
    const term = cluster.node(leader).status().term;
    for (const member of cluster.members.values()) {
      const status = member.node.status();
      assert.equal(status.leader, leader);
      assert.equal(status.term, term);
    }
  }
});

test('a leader commits its no-op entry on election', () => {
  const cluster = new Cluster({ voters: 3 });
  assert.equal(cluster.elect(1n), 1n);
  for (const member of cluster.members.values()) {
    assert.equal(member.node.status().commit, 1);
    assert.equal(member.applied.length, 1);
  }
});

test('pre-vote: a partitioned member does not raise its term and does not disrupt the leader on rejoin', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  const term = cluster.node(1n).status().term;
  cluster.partition([3n], [1n, 2n]);
  cluster.run(100);
  assert.equal(cluster.node(3n).status().term, term, 'pre-vote never increments the term');
  cluster.heal();
  cluster.run(5);
  assert.equal(cluster.leader(), 1n);
  assert.equal(cluster.node(1n).status().term, term);
});

test('without pre-vote a partitioned member raises its term', () => {
  const cluster = new Cluster({ voters: 3, overrides: { preVote: 'disabled' } });
  cluster.elect(1n);
  const term = cluster.node(1n).status().term;
  cluster.partition([3n], [1n, 2n]);
  cluster.run(50);
  assert.ok(cluster.node(3n).status().term > term);
});

test('check-quorum: a leader that cannot hear from a quorum steps down within an election timeout', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.partition([1n], [2n, 3n]);
  let ticks = 0;
  while (cluster.node(1n).status().role === 'leader' && ticks < 100) {
    cluster.node(1n).tick();
    cluster.stabilize();
    ticks++;
  }
  assert.equal(cluster.node(1n).status().role, 'follower');
  assert.ok(ticks <= 2 * 10, `stepped down after ${ticks} ticks`);
  assert.ok(cluster.get(1n).events.some((e) => e.kind === 'step-down' && e.reason === 'check-quorum'));
});

test('check-quorum lease: followers ignore vote requests while they hear from a leader', () => {
  const cluster = new Cluster({ voters: 3, overrides: { preVote: 'disabled' } });
  cluster.elect(1n);
  const term = cluster.node(1n).status().term;
  // Member 3 campaigns on its own (as after a partition): members 1 and 2 are in lease.
  cluster.node(3n).campaign();
  cluster.stabilize();
  assert.equal(cluster.leader(), 1n);
  assert.equal(cluster.node(2n).status().term, term);
});

test('a minority cannot elect a leader; the majority side elects one', () => {
  const cluster = new Cluster({ voters: 5 });
  cluster.elect(1n);
  cluster.partition([1n, 2n], [3n, 4n, 5n]);
  cluster.run(60);
  const leader = cluster.leader();
  assert.ok([3n, 4n, 5n].includes(leader), `leader ${leader}`);
  assert.notEqual(cluster.node(1n).status().role, 'leader');
});

test('Ready contract: vote messages come in the same Ready as the hard state recording the vote', () => {
  const cluster = new Cluster({ voters: 3, overrides: { preVote: 'disabled' } });
  cluster.node(1n).campaign();
  const ready = cluster.node(1n).ready();
  assert.ok(ready.hardState !== undefined && ready.hardState.term === 1 && ready.hardState.vote === 1n);
  assert.equal(ready.mustSync, true);
  assert.equal(ready.messages.filter((m) => m.type === 'vote').length, 2);
  for (const message of ready.messages) cluster.network.push(message);
  cluster.node(1n).advance();
  cluster.deliver();
  // The voter's grant goes out together with its persisted vote.
  const voterReady = cluster.node(2n).ready();
  assert.equal(voterReady.hardState?.vote, 1n);
  assert.ok(voterReady.messages.some((m) => m.type === 'vote-response' && !m.reject));
  assert.equal(voterReady.mustSync, true);
});

test('Ready contract: append messages travel with the entries they carry', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.node(1n).propose(new Uint8Array([1]));
  const ready = cluster.node(1n).ready();
  assert.equal(ready.entries.length, 1);
  const appends = ready.messages.filter((m) => m.type === 'append');
  assert.equal(appends.length, 2);
  cluster.node(1n).advance();
});

test('events report election, roles and votes', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  const kinds = cluster.get(1n).events.map((e) => e.kind);
  assert.ok(kinds.includes('election-started'));
  assert.ok(kinds.includes('became-pre-candidate'));
  assert.ok(kinds.includes('became-candidate'));
  assert.ok(kinds.includes('became-leader'));
  assert.ok(cluster.get(2n).events.some((e) => e.kind === 'vote-granted'));
});

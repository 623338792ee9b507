// Goal: ReadIndex (thesis 6.4) in safe mode: answered only after the leader committed an entry of
// its term, batched reads share one heartbeat round, followers forward and receive answers, a
// deposed leader cannot answer; lease-based mode answers without a round.
// Method: scripted scenarios on the in-memory harness, counting heartbeats per Ready.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, text } from './harness.js';

const decode = (bytes: Uint8Array): string => new TextDecoder().decode(bytes);

test('a new leader answers ReadIndex only after it committed an entry of its term', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.node(1n).campaign();
  // Run the election until 1 leads, without delivering the no-op acknowledgements.
  for (let i = 0; i < 10 && cluster.node(1n).status().role !== 'leader'; i++) {
    cluster.processAll();
    cluster.deliver();
  }
  assert.equal(cluster.node(1n).status().role, 'leader');
  assert.equal(cluster.node(1n).status().commit, 0);
  assert.deepEqual(cluster.node(1n).readIndex(text('r1')), { ok: true });
  cluster.processReady(1n);
  assert.equal(cluster.get(1n).readStates.length, 0);
  cluster.stabilize();
  const states = cluster.get(1n).readStates;
  assert.equal(states.length, 1);
  assert.equal(decode(states[0].context), 'r1');
  assert.ok(states[0].index >= 1);
});

test('many pending reads share one heartbeat round', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  for (let i = 0; i < 10; i++) cluster.node(1n).readIndex(text(`read${i}`));
  const ready = cluster.node(1n).ready();
  const heartbeats = ready.messages.filter((m) => m.type === 'heartbeat');
  assert.equal(heartbeats.length, 2);
  for (const m of ready.messages) cluster.network.push(m);
  cluster.node(1n).advance();
  cluster.stabilize();
  const contexts = cluster.get(1n).readStates.map((s) => decode(s.context));
  assert.deepEqual(contexts, Array.from({ length: 10 }, (_, i) => `read${i}`));
  for (const state of cluster.get(1n).readStates) assert.equal(state.index, cluster.node(1n).status().commit);
});

test('a follower forwards read-index to the leader and gets read-index-response', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.node(1n).propose(text('w'));
  cluster.stabilize();
  const types: string[] = [];
  cluster.drop = (m) => {
    types.push(m.type);
    return false;
  };
  assert.deepEqual(cluster.node(2n).readIndex(text('f1')), { ok: true });
  cluster.stabilize();
  assert.ok(types.includes('read-index'));
  assert.ok(types.includes('read-index-response'));
  const states = cluster.get(2n).readStates;
  assert.equal(states.length, 1);
  assert.equal(decode(states[0].context), 'f1');
  assert.equal(states[0].index, 2);
});

test('a leader cut off from the quorum never answers a safe read', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.partition([1n], [2n, 3n]);
  cluster.node(1n).readIndex(text('stale'));
  cluster.run(5);
  assert.equal(cluster.get(1n).readStates.length, 0);
});

test('a read round lost in the network is completed by later heartbeats', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.drop = (m) => m.type === 'heartbeat';
  cluster.node(1n).readIndex(text('retry'));
  cluster.stabilize();
  assert.equal(cluster.get(1n).readStates.length, 0);
  cluster.heal();
  cluster.run(2);
  assert.equal(cluster.get(1n).readStates.length, 1);
});

test('lease-based reads are answered without a heartbeat round', () => {
  const cluster = new Cluster({ voters: 3, overrides: { readOnly: 'lease-based' } });
  cluster.elect(1n);
  cluster.node(1n).readIndex(text('lease'));
  const ready = cluster.node(1n).ready();
  assert.equal(ready.readStates.length, 1);
  assert.equal(ready.messages.filter((m) => m.type === 'heartbeat').length, 0);
  cluster.node(1n).advance();
});

test('lease-based reads require check-quorum', () => {
  assert.throws(() => new Cluster({ voters: 1, overrides: { readOnly: 'lease-based', checkQuorum: 'disabled' } }), RangeError);
});

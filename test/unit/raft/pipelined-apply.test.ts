// Goal: an application that applies committed entries behind the Ready loop (kvd's member does:
// its apply chain overlaps the next Ready's persist) keeps the core's membership rules sound:
// the core counts an entry as applied only when appliedTo() says so, skips conf changes that a
// snapshot it restored already covers, and a proposer hears at once when its forwarded proposal
// is refused.
// Method: single RawNodes and the in-memory harness, driven by hand so that the window between
// advance() and appliedTo() is explicit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, text } from './harness.js';
import { RawNode, decodeConfChange } from '../../../src/raft/raw-node.js';
import { MemoryStorage } from '../../../src/raft/storage.js';
import { seededRandom } from '../../../src/raft/random.js';
import type { ConfChange, Entry } from '../../../src/raft/types.js';

const change = (type: ConfChange['type'], nodeId: bigint): ConfChange => ({ type, nodeId, context: new Uint8Array(0) });

function singleLeader(): { node: RawNode; storage: MemoryStorage } {
  const storage = new MemoryStorage();
  storage.applySnapshot({ metadata: { index: 0, term: 0, confState: { voters: [1n], learners: [] } }, data: new Uint8Array(0) });
  const node = new RawNode({ id: 1n, storage, random: seededRandom(1), electionTicks: 10, heartbeatTicks: 1 });
  node.campaign();
  return { node, storage };
}

/** Persists and sends one Ready; returns its committed entries without applying them. */
function persist(node: RawNode, storage: MemoryStorage): Entry[] {
  const ready = node.ready();
  if (ready.snapshot !== undefined) storage.applySnapshot(ready.snapshot);
  if (ready.hardState !== undefined) storage.setHardState(ready.hardState);
  storage.append(ready.entries);
  return [...ready.committedEntries];
}

test('a conf change handed out with apply "pending" still blocks the next one until appliedTo()', () => {
  const { node, storage } = singleLeader();
  while (node.hasReady()) {
    persist(node, storage);
    node.advance();
  }
  assert.deepEqual(node.proposeConfChange(change('add-learner-node', 2n)), { ok: true });
  const queued: Entry[] = [];
  while (node.hasReady()) {
    queued.push(...persist(node, storage));
    node.advance({ apply: 'pending' });
  }
  const conf = queued.find((entry) => entry.type === 'conf-change');
  assert.ok(conf !== undefined, 'the conf change committed and was handed out');
  // Committed and handed out, but not applied: a second change must wait (thesis 4.1).
  assert.deepEqual(node.proposeConfChange(change('add-learner-node', 3n)), { ok: false, reason: 'conf-change-pending' });
  assert.equal(node.hasReady(), false, 'handed-out entries are not handed out again');
  node.applyConfChange(decodeConfChange(conf.data), { index: conf.index });
  node.appliedTo(queued[queued.length - 1].index);
  assert.equal(node.status().applied, queued[queued.length - 1].index);
  assert.deepEqual(node.proposeConfChange(change('add-learner-node', 3n)), { ok: true });
});

test('appliedTo() refuses to go backwards or beyond what was handed out', () => {
  const { node, storage } = singleLeader();
  const queued: Entry[] = [];
  while (node.hasReady()) {
    queued.push(...persist(node, storage));
    node.advance({ apply: 'pending' });
  }
  const last = queued[queued.length - 1].index;
  assert.throws(() => node.appliedTo(last + 1), /appliedTo/);
  node.appliedTo(last);
  assert.throws(() => node.appliedTo(last - 1), /appliedTo/);
});

test('a follower with a conf change still queued for apply does not campaign', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.stabilize();
  // Member 2 handles its Readies by hand from here: it persists but leaves entries queued.
  assert.deepEqual(cluster.node(1n).proposeConfChange(change('add-learner-node', 4n)), { ok: true });
  const queued: Entry[] = [];
  const follower = cluster.get(2n);
  for (let round = 0; round < 20; round++) {
    cluster.processReady(1n);
    cluster.processReady(3n);
    if (follower.node.hasReady()) {
      queued.push(...persist(follower.node, follower.storage));
      follower.node.advance({ apply: 'pending' });
    }
    cluster.deliver();
  }
  assert.ok(queued.some((entry) => entry.type === 'conf-change'), 'the conf change reached member 2 committed');
  follower.node.campaign();
  assert.notEqual(follower.node.status().role, 'candidate', 'campaigning with an unapplied conf change is refused');
  assert.notEqual(follower.node.status().role, 'pre-candidate');
});

test('a conf change older than a snapshot the core restored is skipped, not re-applied', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.node(1n).proposeConfChange(change('add-learner-node', 4n));
  cluster.stabilize();
  cluster.node(1n).proposeConfChange(change('remove-node', 4n));
  cluster.stabilize();
  cluster.node(1n).propose(text('x'));
  cluster.stabilize();
  const leaderConf = cluster.node(1n).status().confState;
  assert.deepEqual(leaderConf.learners, []);
  // A fresh core restored from a snapshot taken after both changes...
  const snapshotIndex = cluster.compact(1n);
  const storage = new MemoryStorage();
  storage.applySnapshot({ metadata: { index: snapshotIndex, term: cluster.node(1n).status().term, confState: leaderConf }, data: new Uint8Array(0) });
  const events: string[] = [];
  const node = new RawNode({ id: 2n, storage, random: seededRandom(2), electionTicks: 10, heartbeatTicks: 1, onEvent: (event) => events.push(event.kind) });
  // ...is handed the first change (index below the snapshot) by an application applying late.
  const confState = node.applyConfChange(change('add-learner-node', 4n), { index: 2 });
  assert.deepEqual(confState.learners, [], 'the configuration is not rewound');
  assert.ok(events.includes('conf-change-skipped'));
});

test('a proposal forwarded to a member that is no longer leader comes back refused at once', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.stabilize();
  // Member 3 forwarded a proposal to 2 on a stale leader hint: 2 is a follower.
  cluster.node(2n).step({ type: 'propose', from: 3n, to: 2n, term: 0, entries: [{ term: 0, index: 0, type: 'normal', data: text('late') }] });
  const ready = cluster.node(2n).ready();
  const refusal = ready.messages.find((message) => message.type === 'propose-refused');
  cluster.node(2n).advance();
  assert.ok(refusal !== undefined && refusal.type === 'propose-refused');
  assert.equal(refusal.to, 3n);
  assert.equal(refusal.reason, 'not-leader');
  cluster.node(3n).step(refusal);
  const proposerReady = cluster.node(3n).ready();
  cluster.node(3n).advance();
  assert.deepEqual(proposerReady.refusedProposals.map((r) => [new TextDecoder().decode(r.data), r.reason]), [['late', 'not-leader']]);
});

test('a leader refuses forwarded proposals during a leadership transfer and says why', () => {
  const cluster = new Cluster({ voters: 3 });
  cluster.elect(1n);
  cluster.stabilize();
  cluster.down.add(3n); // the transferee never catches up: the transfer stays in progress
  cluster.node(1n).transferLeader(3n);
  cluster.stabilize();
  cluster.node(2n).propose(text('during-transfer'));
  cluster.processReady(2n);
  cluster.deliver(); // 1 receives the forwarded proposal and refuses it
  cluster.processReady(1n);
  cluster.deliver(); // 2 receives the refusal
  const ready = cluster.node(2n).ready();
  cluster.node(2n).advance();
  assert.deepEqual(ready.refusedProposals.map((r) => r.reason), ['transfer-in-progress']);
});

// Goal: membership decisions are etcd's: a committed conf change is validated against the
// replicated membership exactly as etcd's ValidateConfigurationChange does (ids, removed ids,
// peer URLs, learner limit, promote only learners), invalid ones become no-ops with etcd's error;
// the quorum checks before proposing match etcd's IsReadyTo* rules; the conf-change context codec
// is exact and refuses what it does not understand.
// Method: pure functions on hand-built memberships.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Membership, planConfChange, type MemberRecord } from '../../../src/server/membership.js';
import { decodeConfContext, encodeConfContext, type ConfContext, type MembershipAction } from '../../../src/server/conf-context.js';
import { readyToAddVoter, readyToPromote, readyToRemoveVoter } from '../../../src/server/membership-ops.js';
import type { ConfChange } from '../../../src/raft/types.js';

const member = (id: bigint, options: Partial<MemberRecord> = {}): MemberRecord => ({
  id, name: `m${id}`, peerUrls: [`http://10.0.0.${id}:2380`], clientUrls: [`http://10.0.0.${id}:2379`], isLearner: false, removed: false, autoPromote: false, ...options,
});

function cluster(records: MemberRecord[]): Membership {
  return new Membership({ clusterId: 0xc1n, initial: records });
}

function change(action: MembershipAction, id: bigint, peerUrls: string[] = [`http://10.0.0.${id}:2380`], autoPromote = false): { change: ConfChange; context: ConfContext } {
  const context: ConfContext = { requestId: 7n, action, member: { id, peerUrls, autoPromote } };
  const type = action === 'add-learner' ? 'add-learner-node' : action === 'remove' ? 'remove-node' : action === 'update' ? 'update-node' : 'add-node';
  return { change: { type, nodeId: id, context: encodeConfContext(context) }, context };
}

const plan = (membership: Membership, action: MembershipAction, id: bigint, peerUrls?: string[], maxLearners = 1) => {
  const { change: c, context } = change(action, id, peerUrls);
  return planConfChange(membership, c, context, { maxLearners });
};

test('adding a voter or a learner: new id, fresh URLs; the record is unstarted (empty name)', () => {
  const membership = cluster([member(1n), member(2n), member(3n)]);
  const voter = plan(membership, 'add', 4n);
  assert.equal(voter.error, undefined);
  assert.equal(voter.raftChange?.type, 'add-node');
  assert.deepEqual(voter.records.map((r) => [r.id, r.name, r.isLearner]), [[4n, '', false]]);
  const learner = plan(membership, 'add-learner', 5n);
  assert.equal(learner.raftChange?.type, 'add-learner-node');
  assert.equal(learner.records[0].isLearner, true);
});

test("invalid adds are refused with etcd's errors and hand nothing to Raft", () => {
  const membership = cluster([member(1n), member(2n), member(3n, { removed: true }), member(4n, { isLearner: true })]);
  assert.equal(plan(membership, 'add', 2n, ['http://new:1']).error?.code, 'member-exists');
  assert.equal(plan(membership, 'add', 9n, ['http://10.0.0.1:2380']).error?.code, 'peer-url-exists');
  assert.equal(plan(membership, 'add', 3n, ['http://new:1']).error?.code, 'member-not-found', 'a removed id is never reused');
  assert.equal(plan(membership, 'add-learner', 9n, ['http://new:1']).error?.code, 'too-many-learners');
  assert.equal(plan(membership, 'add-learner', 9n, ['http://new:1'], 2).error, undefined, '--max-learners raises the limit');
  assert.equal(plan(membership, 'add', 9n, ['http://new:1']).raftChange?.type, 'add-node');
  for (const refused of [plan(membership, 'add', 2n), plan(membership, 'add-learner', 9n, ['http://new:1'])]) {
    assert.equal(refused.raftChange, undefined);
    assert.deepEqual(refused.records, []);
  }
  assert.equal(plan(membership, 'add', 9n, ['http://10.0.0.3:2380']).error, undefined, "a removed member's URLs may be reused");
});

test('promote only a learner; remove and update only a current member; update checks URLs', () => {
  const membership = cluster([member(1n), member(2n), member(4n, { isLearner: true, autoPromote: true })]);
  assert.equal(plan(membership, 'promote', 1n).error?.code, 'member-not-learner');
  assert.equal(plan(membership, 'promote', 9n).error?.code, 'member-not-found');
  const promoted = plan(membership, 'promote', 4n);
  assert.equal(promoted.raftChange?.type, 'add-node');
  assert.deepEqual([promoted.records[0].isLearner, promoted.records[0].autoPromote], [false, false]);
  assert.equal(plan(membership, 'remove', 9n).error?.code, 'member-not-found');
  const removed = plan(membership, 'remove', 2n);
  assert.equal(removed.raftChange?.type, 'remove-node');
  assert.equal(removed.records[0].removed, true);
  assert.equal(plan(membership, 'update', 2n, ['http://10.0.0.1:2380']).error?.code, 'peer-url-exists');
  assert.deepEqual(plan(membership, 'update', 2n, ['http://moved:2380']).records[0].peerUrls, ['http://moved:2380']);
  assert.equal(plan(membership, 'update', 2n, ['http://10.0.0.2:2380']).error, undefined, 'a member may keep its own URLs');
});

test('a conf change without a kvd context is a refused no-op', () => {
  const membership = cluster([member(1n)]);
  const bare = planConfChange(membership, { type: 'add-node', nodeId: 5n, context: new Uint8Array(0) }, undefined, { maxLearners: 1 });
  assert.equal(bare.raftChange, undefined);
  assert.equal(bare.error?.code, 'invalid-argument');
  const { change: mismatched, context } = change('add', 5n);
  const wrongId = planConfChange(membership, { ...mismatched, nodeId: 6n }, context, { maxLearners: 1 });
  assert.equal(wrongId.raftChange, undefined, 'the context must name the same member');
});

test('the conf-change context round-trips exactly and refuses garbage', () => {
  const context: ConfContext = { requestId: 0xffff_ffff_ffff_fff1n, action: 'add-learner', member: { id: 0x8000_0000_0000_0001n, peerUrls: ['http://a:1', 'http://b:2'], autoPromote: true } };
  assert.deepEqual(decodeConfContext(encodeConfContext(context)), context);
  assert.equal(decodeConfContext(new Uint8Array(0)), undefined);
  assert.equal(decodeConfContext(Buffer.from('{"requestId":"zz"}')), undefined);
  assert.equal(decodeConfContext(Buffer.from('not json')), undefined);
  assert.equal(decodeConfContext(Buffer.from('{"requestId":"1","action":"explode","member":{"id":"1","peerUrls":[]}}')), undefined);
});

test("quorum checks before proposing follow etcd's IsReadyTo* rules", () => {
  const started = (id: bigint): MemberRecord => member(id);
  const unstarted = (id: bigint): MemberRecord => member(id, { name: '' });
  // Add a voter: a quorum of the voters after the add must have started.
  assert.equal(readyToAddVoter([started(1n), started(2n), started(3n)]), true);
  assert.equal(readyToAddVoter([started(1n), started(2n), unstarted(3n)]), false, '2 of 3 started: 4 members need 3');
  assert.equal(readyToAddVoter([started(1n), started(2n), started(3n), unstarted(4n)]), true, '3 of 4 started: 5 members need 3');
  assert.equal(readyToAddVoter([started(1n), unstarted(2n), unstarted(3n)]), false);
  assert.equal(readyToAddVoter([started(1n)]), true, 'growing a 1-member cluster');
  assert.equal(readyToAddVoter([started(1n), unstarted(2n)]), false);
  // Remove a voter: the rest keep a started quorum.
  assert.equal(readyToRemoveVoter([started(1n), started(2n), started(3n)], 3n), true);
  assert.equal(readyToRemoveVoter([started(1n), unstarted(2n), started(3n)], 3n), false);
  assert.equal(readyToRemoveVoter([started(1n), unstarted(2n), started(3n)], 2n), true);
  // Promote: counting the learner as started.
  assert.equal(readyToPromote([started(1n), started(2n), started(3n)]), true);
  assert.equal(readyToPromote([started(1n), unstarted(2n), unstarted(3n)]), false);
  assert.equal(readyToPromote([started(1n), unstarted(2n)]), true);
});

test("the conf-change context carries the proposer's --max-learners; a context without it decodes without it", () => {
  const base: ConfContext = { requestId: 7n, action: 'add-learner', member: { id: 9n, peerUrls: ['http://127.0.0.1:1'], autoPromote: false } };
  assert.equal(decodeConfContext(encodeConfContext({ ...base, maxLearners: 3 }))?.maxLearners, 3);
  assert.equal(decodeConfContext(encodeConfContext(base))?.maxLearners, undefined);
  const bogus = Buffer.from(JSON.stringify({ requestId: '7', action: 'add-learner', member: { id: '9', peerUrls: [], autoPromote: false }, maxLearners: -1 }));
  assert.equal(decodeConfContext(bogus)?.maxLearners, undefined, 'a negative limit is ignored');
});

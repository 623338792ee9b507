// Goal: a membership change the leader refuses because its previous change is not applied yet
// ("another membership change is in progress": nothing was appended) is proposed again until it
// goes through, as etcd's clients never see that refusal; any other refusal, and the deadline,
// end the call. Method: MembershipOps over a fake gateway that refuses a given number of times.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MembershipOps } from '../../../src/server/membership-ops.js';
import { KvdError } from '../../../src/util/errors.js';

function opsRefusing(refusals: readonly KvdError[]): { ops: MembershipOps; attempts: () => number } {
  let attempts = 0;
  const added = new Map<bigint, unknown>();
  const membership = {
    clusterId: 7n,
    usingPeerUrls: () => undefined,
    voters: () => [],
    get: (id: bigint) => added.get(id) ?? { id, name: '', peerUrls: ['http://127.0.0.1:1'], clientUrls: [], isLearner: true, autoPromote: false },
    active: () => [],
  };
  const gateway = {
    nextRequestId: () => BigInt(attempts + 1),
    proposeWaiting: async () => {
      const refusal = refusals[attempts];
      attempts += 1;
      if (refusal !== undefined) throw refusal;
      return { ok: true };
    },
  };
  const ops = new MembershipOps({
    node: { leader: 1n } as never,
    gateway: gateway as never,
    state: { membership } as never,
    logger: { info() {}, warn() {}, error() {}, debug() {} } as never,
    strictReconfigCheck: false,
    autoPromoteLearners: false,
    maxLearners: 1,
    requestTimeoutMs: 5_000,
    electionTimeoutMs: 1_000,
    call: async () => new Uint8Array(),
  });
  return { ops, attempts: () => attempts };
}

const pending = (): KvdError => new KvdError('conf-change-in-progress');

test('a learner add refused twice as "another membership change is in progress" is proposed again and succeeds', async () => {
  const { ops, attempts } = opsRefusing([pending(), pending()]);
  const result = await ops.add({ peerUrls: ['http://127.0.0.1:40001'], isLearner: true, autoPromote: false }, { deadlineMs: Date.now() + 5_000 });
  assert.equal(attempts(), 3);
  assert.ok(result.member.id > 0n);
});

test('other refusals are not retried', async () => {
  const { ops, attempts } = opsRefusing([new KvdError('too-many-learners')]);
  await assert.rejects(ops.add({ peerUrls: ['http://127.0.0.1:40002'], isLearner: true, autoPromote: false }, { deadlineMs: Date.now() + 5_000 }), (error: unknown) => error instanceof KvdError && error.code === 'too-many-learners');
  assert.equal(attempts(), 1);
});

test('the pending refusal is given back once the deadline is near', async () => {
  const { ops } = opsRefusing(Array.from({ length: 1_000 }, pending));
  const started = Date.now();
  await assert.rejects(ops.add({ peerUrls: ['http://127.0.0.1:40003'], isLearner: true, autoPromote: false }, { deadlineMs: started + 200 }), (error: unknown) => error instanceof KvdError && error.code === 'conf-change-in-progress');
});

/**
 * The follower's lease forwarder: keep-alives of one event-loop turn travel to the leader as one
 * batch, answers are matched by position, a lease the leader lacks fails only its own request,
 * and a batch that cannot be delivered falls back to one call per keep-alive with retries.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  KEEPALIVE_BATCH_MAX, LEASE_KEEPALIVE_BATCH_CALL, LEASE_KEEPALIVE_CALL, LeaseForwarder, decodeKeepAliveBatch, decodeKeepAliveRequest,
  encodeKeepAliveAnswer, encodeKeepAliveBatch, encodeKeepAliveBatchAnswer,
} from '../../../src/server/lease-forward.js';
import { KvdError, isKvdError } from '../../../src/util/errors.js';
import type { NodeId } from '../../../src/raft/types.js';

interface Sent { readonly to: NodeId; readonly kind: string; readonly payload: Uint8Array }

function forwarder(options: { leader: () => NodeId; answer: (call: Sent) => Promise<Uint8Array> }): { forwarder: LeaseForwarder; sent: Sent[] } {
  const sent: Sent[] = [];
  const forwarder = new LeaseForwarder({
    id: 1n,
    leader: options.leader,
    call: (to, kind, payload) => {
      const call = { to, kind, payload };
      sent.push(call);
      return options.answer(call);
    },
  });
  return { forwarder, sent };
}

/** A leader whose lessor holds `live` (id → TTL). */
function leaderAnswering(live: Map<bigint, number>): (call: Sent) => Promise<Uint8Array> {
  return async (call) => {
    if (call.kind === LEASE_KEEPALIVE_BATCH_CALL) return encodeKeepAliveBatchAnswer(decodeKeepAliveBatch(call.payload).map((id) => live.get(id) ?? -1));
    if (call.kind === LEASE_KEEPALIVE_CALL) {
      const ttl = live.get(decodeKeepAliveRequest(call.payload).id);
      if (ttl === undefined) throw new KvdError('lease-not-found');
      return encodeKeepAliveAnswer({ ttlSeconds: ttl });
    }
    throw new KvdError('unimplemented');
  };
}

describe('LeaseForwarder keep-alive batches', () => {
  it('sends the keep-alives of one turn as one call and matches answers by position', async () => {
    const live = new Map<bigint, number>([[10n, 30], [11n, 60], [13n, 90]]);
    const { forwarder: f, sent } = forwarder({ leader: () => 2n, answer: leaderAnswering(live) });
    const deadlineMs = Date.now() + 5_000;
    const results = await Promise.allSettled([10n, 11n, 12n, 13n].map((id) => f.keepAlive(id, { deadlineMs })));
    assert.equal(sent.length, 1);
    assert.equal(sent[0].kind, LEASE_KEEPALIVE_BATCH_CALL);
    assert.equal(sent[0].to, 2n);
    assert.deepEqual(decodeKeepAliveBatch(sent[0].payload), [10n, 11n, 12n, 13n]);
    assert.deepEqual(results.map((r) => (r.status === 'fulfilled' ? r.value : 'rejected')), [30, 60, 'rejected', 90]);
    const missing = results[2];
    assert.ok(missing.status === 'rejected' && isKvdError(missing.reason, 'lease-not-found'));
  });

  it('splits a turn with more keep-alives than a batch holds', async () => {
    const live = new Map<bigint, number>();
    const count = KEEPALIVE_BATCH_MAX * 2 + 5;
    for (let i = 0; i < count; i++) live.set(BigInt(i + 1), 5);
    const { forwarder: f, sent } = forwarder({ leader: () => 2n, answer: leaderAnswering(live) });
    const deadlineMs = Date.now() + 5_000;
    const ttls = await Promise.all([...live.keys()].map((id) => f.keepAlive(id, { deadlineMs })));
    assert.ok(ttls.every((ttl) => ttl === 5));
    assert.deepEqual(sent.map((call) => decodeKeepAliveBatch(call.payload).length), [KEEPALIVE_BATCH_MAX, KEEPALIVE_BATCH_MAX, 5]);
  });

  it('falls back to one call per keep-alive when the batch cannot be delivered', async () => {
    const live = new Map<bigint, number>([[10n, 30], [11n, 60]]);
    const answer = leaderAnswering(live);
    const { forwarder: f, sent } = forwarder({
      leader: () => 2n,
      answer: (call) => (call.kind === LEASE_KEEPALIVE_BATCH_CALL ? Promise.reject(new KvdError('leader-changed')) : answer(call)),
    });
    const deadlineMs = Date.now() + 5_000;
    assert.deepEqual(await Promise.all([f.keepAlive(10n, { deadlineMs }), f.keepAlive(11n, { deadlineMs })]), [30, 60]);
    assert.deepEqual(sent.map((call) => call.kind), [LEASE_KEEPALIVE_BATCH_CALL, LEASE_KEEPALIVE_CALL, LEASE_KEEPALIVE_CALL]);
  });

  it('sends keep-alives queued for a leader that changed to that leader, and later ones to the new one', async () => {
    let leader: NodeId = 2n;
    const live = new Map<bigint, number>([[10n, 30], [11n, 60]]);
    const { forwarder: f, sent } = forwarder({ leader: () => leader, answer: leaderAnswering(live) });
    const deadlineMs = Date.now() + 5_000;
    const first = f.keepAlive(10n, { deadlineMs });
    leader = 3n;
    const second = f.keepAlive(11n, { deadlineMs });
    assert.deepEqual(await Promise.all([first, second]), [30, 60]);
    assert.deepEqual(sent.map((call) => [call.to, decodeKeepAliveBatch(call.payload)]), [[2n, [10n]], [3n, [11n]]]);
  });

  it('passes a refusal of the leader on without retrying', async () => {
    const { forwarder: f, sent } = forwarder({ leader: () => 2n, answer: () => Promise.reject(new KvdError('too-many-requests')) });
    await assert.rejects(f.keepAlive(10n, { deadlineMs: Date.now() + 5_000 }), (error: unknown) => isKvdError(error, 'too-many-requests'));
    assert.equal(sent.length, 1);
  });

  it('refuses a batch with more ids than allowed and answers that do not match the batch', () => {
    const tooMany = Array.from({ length: KEEPALIVE_BATCH_MAX + 1 }, (_, i) => BigInt(i + 1));
    assert.throws(() => decodeKeepAliveBatch(encodeKeepAliveBatch(tooMany)), (error: unknown) => isKvdError(error, 'invalid-argument'));
    assert.throws(() => decodeKeepAliveBatch(Buffer.from('not msgpack at all')), (error: unknown) => isKvdError(error, 'invalid-argument'));
  });
});

// Goal: the lessor's apply side is deterministic and persists what restarts need (grant, revoke,
// checkpoint, TTL bounds, max leases, restore round trip), and its
// leader side expires leases only on the primary, extends expiries on promote (spreading
// pile-ups), renews, retries unrevoked expiries and schedules checkpoints. Method: drive a Lessor
// with explicit times (no clock), apply the returned meta writes to a Map standing in for the
// store's meta, and compare observable results; the heap bound is checked after many renewals.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Lessor,
  LEASE_RECORD_PREFIX,
  MAX_LEASE_TTL_SECONDS,
  leaseRecordKey,
  minTtlSecondsFor,
  type MetaWrites,
} from '../../../../src/store/lease/lessor.js';

const options = { minTtlSeconds: 2 };

function ok<T extends { ok: boolean }>(result: T): Extract<T, { ok: true }> {
  assert.equal(result.ok, true, `expected ok, got ${JSON.stringify(result, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}`);
  return result as Extract<T, { ok: true }>;
}

function applyMeta(meta: Map<string, Uint8Array>, writes: MetaWrites): void {
  for (const [key, value] of writes) {
    if (value === null) meta.delete(key);
    else meta.set(key, value);
  }
}

test('minimum TTL follows etcd: ceil(floor(3 x election ticks / 2) x heartbeat)', () => {
  assert.equal(minTtlSecondsFor({ electionTicks: 10, heartbeatMs: 100 }), 2);
  assert.equal(minTtlSecondsFor({ electionTicks: 50, heartbeatMs: 100 }), 8);
  assert.equal(minTtlSecondsFor({ electionTicks: 5, heartbeatMs: 1000 }), 7);
});

test('grant clamps TTL up to the minimum, refuses too-large TTLs, duplicates and leases beyond the maximum', () => {
  const lessor = new Lessor({ ...options, maxLeases: 2 });
  assert.equal(ok(lessor.grant({ id: 1n, ttlSeconds: 1, nowMs: 0 })).ttlSeconds, 2);
  assert.deepEqual(lessor.grant({ id: 1n, ttlSeconds: 10, nowMs: 0 }), { ok: false, code: 'lease-exists' });
  assert.deepEqual(lessor.grant({ id: 2n, ttlSeconds: MAX_LEASE_TTL_SECONDS + 1, nowMs: 0 }), { ok: false, code: 'lease-ttl-too-large' });
  assert.equal(ok(lessor.grant({ id: 2n, ttlSeconds: MAX_LEASE_TTL_SECONDS, nowMs: 0 })).ttlSeconds, MAX_LEASE_TTL_SECONDS);
  assert.deepEqual(lessor.grant({ id: 3n, ttlSeconds: 10, nowMs: 0 }), { ok: false, code: 'no-space' });
  assert.deepEqual(lessor.leases(), [{ id: 1n, ttlSeconds: 2 }, { id: 2n, ttlSeconds: MAX_LEASE_TTL_SECONDS }]);
  assert.throws(() => lessor.grant({ id: 0n, ttlSeconds: 10, nowMs: 0 }), /never granted/);
});

test('revoke deletes the record; a second revoke finds nothing', () => {
  const lessor = new Lessor(options);
  const meta = new Map<string, Uint8Array>();
  applyMeta(meta, ok(lessor.grant({ id: 7n, ttlSeconds: 60, nowMs: 0 })).meta);
  assert.ok(meta.has(leaseRecordKey(7n)));
  assert.equal(leaseRecordKey(7n), `${LEASE_RECORD_PREFIX}0000000000000007`);
  const revoked = ok(lessor.revoke(7n));
  applyMeta(meta, revoked.meta);
  assert.equal(meta.size, 0);
  assert.equal(lessor.has(7n), false);
  assert.deepEqual(lessor.revoke(7n), { ok: false, code: 'lease-not-found' });
  lessor.assertInvariants();
});

test('only the primary expires leases; promote extends every expiry by the election timeout', () => {
  const lessor = new Lessor(options);
  ok(lessor.grant({ id: 1n, ttlSeconds: 10, nowMs: 0 }));
  assert.deepEqual(lessor.expired({ nowMs: 1e9, max: 10 }), [], 'a secondary never expires');
  assert.equal(ok(lessor.timeToLive(1n, { nowMs: 1e9 })).ttlSeconds, 10, 'a secondary reports the granted TTL');
  lessor.promote({ nowMs: 1000, extendMs: 1000 });
  assert.equal(lessor.role, 'primary');
  assert.equal(ok(lessor.timeToLive(1n, { nowMs: 1000 })).ttlSeconds, 11);
  assert.deepEqual(lessor.expired({ nowMs: 11_999, max: 10 }), []);
  assert.deepEqual(lessor.expired({ nowMs: 12_000, max: 10 }), [1n]);
  assert.deepEqual(lessor.expired({ nowMs: 12_001, max: 10 }), [], 'reported once per retry interval');
  assert.deepEqual(lessor.timeToLive(1n, { nowMs: 12_000 }), { ok: false, code: 'lease-not-found' });
  assert.deepEqual(lessor.renew(1n, 12_000), { ok: false, code: 'lease-not-found' }, 'an expired lease cannot be renewed');
  assert.deepEqual(lessor.expired({ nowMs: 15_000, max: 10 }), [1n], 'still not revoked: reported again');
  ok(lessor.revoke(1n));
  assert.deepEqual(lessor.expired({ nowMs: 100_000, max: 10 }), []);
  lessor.demote();
  assert.equal(lessor.role, 'secondary');
  lessor.assertInvariants();
});

test('expired() honours max, earliest first; grants on the primary get expiries', () => {
  const lessor = new Lessor(options);
  lessor.promote({ nowMs: 0, extendMs: 0 });
  for (let i = 1; i <= 5; i++) ok(lessor.grant({ id: BigInt(i), ttlSeconds: 10 + i, nowMs: 0 }));
  assert.deepEqual(lessor.expired({ nowMs: 100_000, max: 2 }), [1n, 2n]);
  assert.deepEqual(lessor.expired({ nowMs: 100_000, max: 10 }), [3n, 4n, 5n]);
});

test('renew extends to now + TTL on the leader only, and asks to reset a checkpointed remainder', () => {
  const lessor = new Lessor(options);
  ok(lessor.grant({ id: 1n, ttlSeconds: 10, nowMs: 0 }));
  assert.deepEqual(lessor.renew(1n, 0), { ok: false, code: 'not-leader' });
  lessor.promote({ nowMs: 0, extendMs: 0 });
  assert.deepEqual(lessor.renew(1n, 8000), { ok: true, ttlSeconds: 10, followUp: 'none' });
  assert.deepEqual(lessor.expired({ nowMs: 17_999, max: 10 }), [], 'the old expiry entry is stale');
  assert.deepEqual(lessor.expired({ nowMs: 18_000, max: 10 }), [1n]);
  assert.deepEqual(lessor.renew(2n, 0), { ok: false, code: 'lease-not-found' });
  ok(lessor.grant({ id: 3n, ttlSeconds: 100, nowMs: 20_000 }));
  ok(lessor.checkpoint(3n, 50));
  assert.deepEqual(lessor.renew(3n, 21_000), { ok: true, ttlSeconds: 100, followUp: 'propose-checkpoint-reset' });
});

test('promote spreads expiry pile-ups to 3/4 of the revoke rate per second', () => {
  const lessor = new Lessor({ ...options, revokeRatePerSecond: 100 });
  for (let i = 1; i <= 400; i++) ok(lessor.grant({ id: BigInt(i), ttlSeconds: 10, nowMs: 0 }));
  lessor.promote({ nowMs: 0, extendMs: 1000 });
  const perSecond = new Map<number, number>();
  let total = 0;
  for (let second = 0; second < 60; second++) {
    const ids = lessor.expired({ nowMs: second * 1000 + 999, max: 10_000 });
    for (const id of ids) ok(lessor.revoke(id));
    perSecond.set(second, ids.length);
    total += ids.length;
  }
  assert.equal(total, 400);
  assert.equal(Math.min(...[...perSecond.entries()].filter(([, n]) => n > 0).map(([s]) => s)), 11, 'nothing expires before TTL + extend');
  assert.ok(Math.max(...perSecond.values()) <= 75 + 1, `at most ~75 per second, got ${JSON.stringify([...perSecond])}`);
});

test('checkpoints: long leases get their remaining TTL checkpointed; a restart resumes from it', () => {
  const lessor = new Lessor({ ...options, checkpointIntervalMs: 300_000 });
  const meta = new Map<string, Uint8Array>();
  lessor.promote({ nowMs: 0, extendMs: 0 });
  applyMeta(meta, ok(lessor.grant({ id: 1n, ttlSeconds: 3600, nowMs: 0 })).meta);
  applyMeta(meta, ok(lessor.grant({ id: 2n, ttlSeconds: 60, nowMs: 0 })).meta);
  assert.deepEqual(lessor.checkpointsDue({ nowMs: 299_999 }), []);
  const due = lessor.checkpointsDue({ nowMs: 300_000 });
  assert.deepEqual(due, [{ id: 1n, remainingTtlSeconds: 3300 }], 'short leases are not checkpointed');
  for (const { id, remainingTtlSeconds } of due) applyMeta(meta, ok(lessor.checkpoint(id, remainingTtlSeconds)).meta);
  assert.deepEqual(lessor.checkpointsDue({ nowMs: 599_999 }), []);
  assert.deepEqual(lessor.checkpointsDue({ nowMs: 600_000 }), [{ id: 1n, remainingTtlSeconds: 3000 }]);
  assert.deepEqual(lessor.checkpoint(9n, 1), { ok: false, code: 'lease-not-found' });

  const restored = Lessor.restore(meta, { ...options, checkpointIntervalMs: 300_000 });
  assert.equal(ok(restored.timeToLive(1n, { nowMs: 0 })).ttlSeconds, 3300);
  assert.equal(ok(restored.timeToLive(1n, { nowMs: 0 })).grantedTtlSeconds, 3600);
  restored.promote({ nowMs: 1_000_000, extendMs: 1000 });
  assert.equal(ok(restored.timeToLive(1n, { nowMs: 1_000_000 })).ttlSeconds, 3301, 'remaining + extend, not the granted TTL');
  ok(restored.revoke(2n));
  assert.deepEqual(restored.expired({ nowMs: 1_000_000 + 3_300_999, max: 10 }), []);
  assert.deepEqual(restored.expired({ nowMs: 1_000_000 + 3_301_000, max: 10 }), [1n]);
});

test('restore round trip: records rebuild the same leases', () => {
  const lessor = new Lessor(options);
  const meta = new Map<string, Uint8Array>();
  const ids = [1n, 0x7fff_ffff_ffff_ffffn, -5n, 123_456_789_012_345n];
  for (const [i, id] of ids.entries()) applyMeta(meta, ok(lessor.grant({ id, ttlSeconds: 10 * (i + 1), nowMs: 0 })).meta);
  applyMeta(meta, ok(lessor.checkpoint(ids[3], 17)).meta);
  applyMeta(meta, ok(lessor.revoke(ids[0])).meta);
  assert.deepEqual([...lessor.snapshotRecords().entries()].sort(), [...meta.entries()].sort(), 'snapshot records equal the accumulated meta writes');
  meta.set('other/key', new Uint8Array([1]));
  const restored = Lessor.restore(meta, options);
  assert.deepEqual(restored.leases(), lessor.leases());
  for (const id of ids.slice(1)) {
    assert.deepEqual(restored.timeToLive(id, { nowMs: 0 }), lessor.timeToLive(id, { nowMs: 0 }));
  }
  assert.equal(restored.role, 'secondary');
  restored.assertInvariants();
});

test('stale expiry entries from many renewals stay bounded', () => {
  const lessor = new Lessor(options);
  lessor.promote({ nowMs: 0, extendMs: 0 });
  for (let i = 1; i <= 10; i++) ok(lessor.grant({ id: BigInt(i), ttlSeconds: 5, nowMs: 0 }));
  for (let round = 0; round < 5000; round++) {
    ok(lessor.renew(BigInt(1 + (round % 10)), round));
    lessor.assertInvariants();
  }
  assert.deepEqual(lessor.expired({ nowMs: 5000 + 4989, max: 100 }), []);
  assert.equal(lessor.expired({ nowMs: 5000 + 5000, max: 100 }).length, 10);
});

test('apply is deterministic: two lessors fed the same operations with different clocks agree', () => {
  const a = new Lessor(options);
  const b = new Lessor(options);
  b.promote({ nowMs: 123, extendMs: 1000 });
  const metaA = new Map<string, Uint8Array>();
  const metaB = new Map<string, Uint8Array>();
  for (let i = 1; i <= 50; i++) {
    applyMeta(metaA, ok(a.grant({ id: BigInt(i), ttlSeconds: i, nowMs: i })).meta);
    applyMeta(metaB, ok(b.grant({ id: BigInt(i), ttlSeconds: i, nowMs: 1e6 + i })).meta);
    if (i % 3 === 0) {
      applyMeta(metaA, ok(a.checkpoint(BigInt(i), i - 1)).meta);
      applyMeta(metaB, ok(b.checkpoint(BigInt(i), i - 1)).meta);
    }
    if (i % 5 === 0) {
      assert.deepEqual(a.revoke(BigInt(i - 1)).ok, b.revoke(BigInt(i - 1)).ok);
    }
  }
  assert.deepEqual(a.leases(), b.leases());
  assert.deepEqual([...a.snapshotRecords()].sort(), [...b.snapshotRecords()].sort());
});

/**
 * Goal: the set, watch and lease checkers flag exactly the anomalies they are meant to.
 * Method: small hand-written histories, one per anomaly kind, and a clean one each.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkSet } from '../../fault/checker/set.js';
import { checkWatches, type WatchEvent } from '../../fault/checker/watch.js';
import { checkLeases, expiryDeadlineMs, type LeaseHistory } from '../../fault/checker/lease.js';

test('set: acknowledged adds must survive; unknown ones may go either way', () => {
  const adds = [{ element: 'a', outcome: 'ok' as const }, { element: 'b', outcome: 'unknown' as const }, { element: 'c', outcome: 'fail' as const }, { element: 'd', outcome: 'ok' as const }];
  assert.equal(checkSet(adds, new Set(['a', 'd', 'b'])).valid, true);
  const lost = checkSet(adds, new Set(['a']));
  assert.deepEqual(lost.lost, ['d']);
  assert.equal(lost.valid, false);
  assert.deepEqual(checkSet(adds, new Set(['a', 'd', 'zz'])).unexpected, ['zz']);
  assert.deepEqual(checkSet(adds, new Set(['a', 'd', 'c'])).failedButPresent, ['c']);
});

const ev = (revision: number, key: string, value: string): WatchEvent => ({ revision, key, type: 'PUT', value });

test('watch: prefixes of the reference pass; gaps, duplicates and divergence fail', () => {
  const reference = [ev(2, 'a', '1'), ev(3, 'b', '1'), ev(5, 'a', '2')];
  assert.equal(checkWatches([{ name: 'w1', events: reference.slice(0, 2) }, { name: 'w2', events: reference }], reference, []).valid, true);
  const gap = checkWatches([{ name: 'w1', events: [reference[0], reference[2]] }], reference, []);
  assert.equal(gap.anomalies[0].kind, 'gap');
  const dup = checkWatches([{ name: 'w1', events: [reference[0], reference[0]] }], reference, []);
  assert.equal(dup.anomalies[0].kind, 'duplicate');
  const diverged = checkWatches([{ name: 'w1', events: [reference[0], ev(3, 'b', 'X')] }], reference, []);
  assert.equal(diverged.anomalies[0].kind, 'diverged');
  const beyond = checkWatches([{ name: 'w1', events: [...reference, ev(6, 'c', '1')] }], reference, []);
  assert.equal(beyond.anomalies[0].kind, 'beyond-reference');
});

test('watch: an acknowledged write missing from the history is flagged', () => {
  const reference = [ev(2, 'a', '1')];
  assert.equal(checkWatches([], reference, [{ key: 'a', value: '1', revision: 2 }]).valid, true);
  assert.equal(checkWatches([], reference, [{ key: 'a', value: '2', revision: 3 }]).anomalies[0].kind, 'acked-write-missing');
});

test('lease: a key vanishing while kept alive is flagged', () => {
  const h: LeaseHistory = {
    lease: '1', key: 'l', attachedMs: 100,
    renewals: [{ sentMs: 0, receivedMs: 50, ttlSeconds: 2 }, { sentMs: 1000, receivedMs: 1010, ttlSeconds: 2 }],
    reads: [{ callMs: 200, returnMs: 250, present: true }, { callMs: 2500, returnMs: 2600, present: false }],
  };
  assert.equal(checkLeases([h], [], { electionTimeoutMs: 500 }).anomalies[0].kind, 'vanished-while-alive');
  const fine = { ...h, reads: [{ callMs: 200, returnMs: 250, present: true }, { callMs: 3100, returnMs: 3200, present: false }] };
  const result = checkLeases([fine], [], { electionTimeoutMs: 500 });
  assert.equal(result.valid, true);
  assert.equal(result.expiriesObserved, 1);
});

test('lease: a key outliving TTL + election timeout is flagged, unless a disturbance explains it', () => {
  const h: LeaseHistory = {
    lease: '1', key: 'l', attachedMs: 100,
    renewals: [{ sentMs: 0, receivedMs: 50, ttlSeconds: 2 }],
    reads: [{ callMs: 4000, returnMs: 4010, present: true }],
  };
  assert.equal(checkLeases([h], [], { electionTimeoutMs: 500 }).anomalies[0].kind, 'outlived');
  assert.equal(checkLeases([h], [{ startMs: 1000, endMs: 1500 }], { electionTimeoutMs: 500 }).valid, true);
  assert.equal(expiryDeadlineMs(0, 2000, [], { electionTimeoutMs: 500, slackMs: 0 }), 2500);
  assert.equal(expiryDeadlineMs(0, 2000, [{ startMs: 100, endMs: 200 }], { electionTimeoutMs: 500, slackMs: 0, settleMs: 0 }), 2700);
});

test('lease: a keep-alive answering "not found" while the lease was renewed is flagged', () => {
  const h: LeaseHistory = {
    lease: '1', key: 'l', attachedMs: 100,
    renewals: [{ sentMs: 0, receivedMs: 50, ttlSeconds: 3 }],
    reads: [{ callMs: 3500, returnMs: 3600, present: false }],
    notFound: { sentMs: 1000, receivedMs: 1020 },
  };
  assert.equal(checkLeases([h], [], { electionTimeoutMs: 500 }).anomalies[0].kind, 'keep-alive-not-found-while-alive');
  assert.equal(checkLeases([{ ...h, notFound: { sentMs: 3100, receivedMs: 3120 } }], [], { electionTimeoutMs: 500 }).valid, true);
});

// Goal: the quota measures the backend only when a measurement means something. A measurement
// begun before or during a defragmentation (when the old and the new layout may both be on disk,
// up to twice the size) must not raise NOSPACE or be taken for the size after it: a write right
// after a defragmentation was refused with "database space exceeded" once under a loaded test run.
// Method: drive Quota with a fake store whose size measurements resolve when the test says.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AlarmSet, type AlarmChangeRequest } from '../../../src/server/alarms.js';
import { QUOTA_CHECK_INTERVAL_MS, Quota } from '../../../src/server/quota.js';
import type { MvccStore } from '../../../src/store/mvcc/index.js';
import type { Logger } from '../../../src/server/logger.js';
import type { InternalRequest } from '../../../src/server/requests.js';

const QUOTA = 1_000_000;

function harness() {
  const pending: Array<(bytes: number) => void> = [];
  const store = { bytesWritten: 0, dbSizeBytes: () => new Promise<number>((resolve) => pending.push(resolve)) };
  const alarms = new AlarmSet();
  const proposed: AlarmChangeRequest[] = [];
  const quiet = () => undefined;
  const logger = { warn: quiet, info: quiet } as unknown as Logger;
  const quota = new Quota({
    quotaBytes: QUOTA,
    lowWaterPercent: 80,
    host: {
      memberId: 1n,
      store: () => store as unknown as MvccStore,
      alarms: () => alarms,
      propose: (request) => {
        proposed.push(request);
        alarms.change(request);
        return Promise.resolve();
      },
      logger,
    },
  });
  /** Resolves the oldest measurement in flight with `bytes`, then lets its reaction run. */
  const measured = async (bytes: number): Promise<void> => {
    const resolve = pending.shift();
    assert.ok(resolve !== undefined, 'a measurement is in flight');
    resolve(bytes);
    await new Promise((done) => setImmediate(done));
  };
  return { quota, proposed, pending, measured, alarms };
}

const put = (bytes: number): InternalRequest => ({ type: 'put', request: { key: Buffer.from('k'), value: Buffer.alloc(bytes), lease: 0n, prevKv: false, ignoreValue: false, ignoreLease: false } }) as InternalRequest;

test('a measurement begun before a defragmentation is dropped; none begins during it; the next one after it counts', async () => {
  const { quota, proposed, pending, measured } = harness();
  let now = 10_000;
  quota.onTick(now);
  await measured(500_000);
  assert.equal(quota.sizeBytes(), 500_000);

  now += QUOTA_CHECK_INTERVAL_MS;
  quota.onTick(now); // begins a measurement that will see the files mid-defragmentation
  quota.defragmentStarted();
  now += QUOTA_CHECK_INTERVAL_MS;
  quota.onTick(now);
  assert.equal(pending.length, 1, 'no measurement begins while a defragmentation runs');
  await measured(1_900_000); // old and new layout both on disk
  assert.equal(proposed.length, 0, 'no NOSPACE from a measurement taken mid-defragmentation');
  assert.equal(quota.sizeBytes(), 500_000, 'the size before it still stands');
  assert.equal(quota.admit(put(1000)), undefined, 'a write is let through');

  quota.defragmentEnded();
  quota.onTick(now + 1); // measured again at once, not a check interval later
  await measured(300_000);
  assert.equal(quota.sizeBytes(), 300_000);
  assert.equal(proposed.length, 0);
});

test('a measurement begun during a defragmentation that ends before it lands is dropped too', async () => {
  const { quota, proposed, pending, measured } = harness();
  quota.onTick(10_000);
  quota.defragmentStarted();
  quota.defragmentEnded();
  await measured(2_000_000);
  assert.equal(proposed.length, 0, 'dropped: the defragmentation began and ended while it ran');
  quota.onTick(10_001);
  assert.equal(pending.length, 1, 'measured again at the next tick');
  await measured(2_000_000);
  assert.equal(proposed.length, 1, 'a real measurement past the quota raises NOSPACE');
  assert.equal(proposed[0].action, 'activate');
});

test('the alarm the quota raised clears below the low-water mark once defragmented', async () => {
  const { quota, proposed, measured, alarms } = harness();
  quota.onTick(10_000);
  await measured(QUOTA + 1);
  assert.equal(alarms.get('nospace', 1n)?.raisedBy, 'quota');
  quota.defragmentStarted();
  quota.defragmentEnded();
  quota.onTick(10_001);
  await measured(700_000);
  assert.deepEqual(proposed.map((p) => p.action), ['activate', 'deactivate']);
  assert.equal(alarms.get('nospace', 1n), undefined);
});

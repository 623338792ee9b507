// Goal: reconnect delays grow exponentially from 50 ms to a 2 s ceiling with jitter, so peers that
// lost each other together do not retry in lockstep. Method: evaluate the pure delay function at
// the extremes of its random input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RECONNECT_INITIAL_MS, RECONNECT_MAX_MS, reconnectDelayMs } from '../../../src/transport/peer.js';

test('reconnect delay doubles per attempt within [ceiling/2, ceiling] and caps at the maximum', () => {
  assert.equal(RECONNECT_INITIAL_MS, 50);
  assert.equal(RECONNECT_MAX_MS, 2000);
  for (let attempt = 0; attempt < 40; attempt++) {
    const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_INITIAL_MS * 2 ** attempt);
    const low = reconnectDelayMs(attempt, 0);
    const high = reconnectDelayMs(attempt, 0.999999);
    assert.equal(low, Math.round(ceiling / 2));
    assert.ok(high <= ceiling && high >= ceiling - 1, `attempt ${attempt}: ${high}`);
  }
  assert.equal(reconnectDelayMs(1000, 0.999999), RECONNECT_MAX_MS);
});

// Goal: a member that cannot reach a peer retries with delays that are bounded (never above
// RECONNECT_MAX_MS, however long the outage), grow while the failures go on (for any random draw,
// hence in expectation), are spread by jitter so that members losing a peer together do not
// retry in lockstep, and start again from the shortest delay after a successful connection.
// Method: properties of reconnectDelayMs over every attempt count and arbitrary draws
// (fast-check), then the same behaviour observed through real transports: the `retryInMs` of
// their `peer-disconnected` events against a refused port, and against a peer that stops,
// restarts and stops again. No assertion restates the delay formula.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import fc from 'fast-check';
import { RECONNECT_INITIAL_MS, RECONNECT_MAX_MS, reconnectDelayMs } from '../../../src/transport/peer.js';
import { formatMemberId, type TransportEvent } from '../../../src/transport/events.js';
import { ID_A, ID_B, ID_C } from './messages.js';
import { startMember, stopAll, waitFor, type Member } from './harness.js';

/** Attempt counts: small ones, and outages far longer than any real one. */
const attempts = fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 65, max: Number.MAX_SAFE_INTEGER }));
/** A draw of the jitter source, in [0, 1). */
const draws = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });

test('a reconnect delay is positive and never above the stated maximum, whatever the attempt or draw', () => {
  fc.assert(
    fc.property(attempts, draws, (attempt, draw) => {
      const delay = reconnectDelayMs(attempt, draw);
      return Number.isInteger(delay) && delay > 0 && delay <= RECONNECT_MAX_MS;
    }),
  );
});

test('for any fixed draw, each further failure waits at least as long as the previous one', () => {
  fc.assert(fc.property(attempts, draws, (attempt, draw) => reconnectDelayMs(attempt + 1, draw) >= reconnectDelayMs(attempt, draw)));
});

test('the expected delay grows with the failures until the cap: ten failures in, retries are at least ten times rarer', () => {
  const grid = Array.from({ length: 1000 }, (_, i) => i / 1000);
  const mean = (attempt: number): number => grid.reduce((sum, draw) => sum + reconnectDelayMs(attempt, draw), 0) / grid.length;
  const means = Array.from({ length: 40 }, (_, attempt) => mean(attempt));
  for (let attempt = 1; attempt < means.length; attempt++) assert.ok(means[attempt] >= means[attempt - 1], `mean delay fell at attempt ${attempt}: ${means[attempt - 1]} → ${means[attempt]}`);
  assert.ok(means[10] >= 10 * means[0], `mean delay after 10 failures ${means[10]} ms vs ${means[0]} ms after one`);
});

test('members whose draws differ retry at different times, at every attempt including the cap', () => {
  fc.assert(
    fc.property(attempts, draws, draws, (attempt, first, second) => {
      fc.pre(Math.abs(first - second) >= 0.05);
      return reconnectDelayMs(attempt, first) !== reconnectDelayMs(attempt, second);
    }),
  );
});

/** A URL where nothing listens (connections are refused). */
async function refusedUrl(): Promise<string> {
  const listener = net.createServer();
  const port = await new Promise<number>((resolve) => listener.listen(0, '127.0.0.1', () => resolve((listener.address() as net.AddressInfo).port)));
  await new Promise((resolve) => listener.close(resolve));
  return `http://127.0.0.1:${port}`;
}

/** The `retryInMs` of every `peer-disconnected` event `member` reported about peer B. */
function delaysToB(member: Member): number[] {
  const peer = formatMemberId(ID_B);
  return member.events.flatMap((event: TransportEvent) => (event.kind === 'peer-disconnected' && event.peer === peer ? [event.retryInMs] : []));
}

function isNonDecreasing(values: readonly number[]): boolean {
  return values.every((value, i) => i === 0 || value >= values[i - 1]);
}

test('while a peer stays unreachable, delays grow and stay bounded, and two members do not retry in lockstep', async () => {
  const a = await startMember(ID_A);
  const c = await startMember(ID_C);
  try {
    const url = await refusedUrl();
    a.transport.addPeer(ID_B, [url]);
    c.transport.addPeer(ID_B, [url]);
    const count = 5;
    await waitFor(() => delaysToB(a).length >= count && delaysToB(c).length >= count, `${count} failed attempts each`);
    for (const [name, member] of [['a', a], ['c', c]] as const) {
      const delays = delaysToB(member).slice(0, count);
      assert.ok(delays.every((delay) => delay <= RECONNECT_MAX_MS), `${name}: ${delays.join(', ')}`);
      assert.ok(isNonDecreasing(delays), `${name}: delays shrank during one outage: ${delays.join(', ')}`);
      assert.ok(delays[count - 1] > delays[0], `${name}: no backoff: ${delays.join(', ')}`);
    }
    // Independent draws: identical sequences of five delays would take a coincidence of about
    // one in 10^10 (each delay spreads over at least 25 distinct milliseconds).
    assert.notDeepEqual(delaysToB(a).slice(0, count), delaysToB(c).slice(0, count), 'the two members retried in lockstep');
  } finally {
    await stopAll([a, c]);
  }
});

test('a successful connection makes the next outage start again from the shortest delay', async () => {
  const a = await startMember(ID_A);
  let b = await startMember(ID_B);
  try {
    a.transport.addPeer(ID_B, [b.url]);
    await waitFor(() => a.transport.peerStatus(ID_B).connected, 'first connection');
    const url = b.url;
    await b.transport.stop();
    await waitFor(() => delaysToB(a).length >= 3, 'three failed attempts');
    const beforeReconnect = delaysToB(a);
    const grown = beforeReconnect[beforeReconnect.length - 1];
    assert.ok(grown > RECONNECT_INITIAL_MS, `the delay grew during the first outage: ${beforeReconnect.join(', ')}`);

    b = await startMember(ID_B, { listenUrl: url });
    const connectedBefore = a.events.filter((event) => event.kind === 'peer-connected').length;
    await waitFor(() => a.events.filter((event) => event.kind === 'peer-connected').length > connectedBefore, 'reconnection');
    const seen = delaysToB(a).length;
    await b.transport.stop();
    await waitFor(() => delaysToB(a).length > seen, 'the second outage noticed');
    const first = delaysToB(a)[seen];
    assert.ok(first <= RECONNECT_INITIAL_MS, `first delay of the second outage: ${first} ms (first outage ended at ${grown} ms)`);
  } finally {
    await stopAll([a, b]);
  }
});

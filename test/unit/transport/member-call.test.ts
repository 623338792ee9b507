// Goal: member calls over the peer transport (used to forward lease keep-alives and TTL queries to
// the leader) match every answer to its own request — never by arrival order, so a call that
// times out cannot shift later answers onto the wrong request — carry the callee's error code and
// text back, are refused across clusters, and are bounded. A throwing onMessage is not swallowed.
// Method: two real transports on loopback; the callee's handler answers with controlled delays.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KvdError } from '../../../src/util/errors.js';
import { ID_A, ID_B } from './messages.js';
import { mesh, startMember, stopAll } from './harness.js';

const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString('utf8');
const bytes = (value: string): Uint8Array => new Uint8Array(Buffer.from(value, 'utf8'));

test('answers are matched per call: a timed-out call does not shift later answers (keep-alive forwarding)', async () => {
  const a = await startMember(ID_A);
  const b = await startMember(ID_B, {
    onCall: async (from, kind, payload) => {
      const request = text(payload);
      // The first request is answered late (after its caller gave up), the rest at once.
      if (request === 'lease-1') await new Promise((resolve) => setTimeout(resolve, 400));
      return bytes(`${kind}:${request}:from-${from.toString(16)}`);
    },
  });
  try {
    mesh([a, b]);
    const late = a.transport.call(ID_B, 'lease-keepalive', bytes('lease-1'), { deadlineMs: Date.now() + 100 });
    await assert.rejects(late, (error: unknown) => error instanceof KvdError && error.code === 'timeout');
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => a.transport.call(ID_B, 'lease-keepalive', bytes(`lease-${i + 2}`), { deadlineMs: Date.now() + 5000 })),
    );
    assert.deepEqual(answers.map(text), Array.from({ length: 20 }, (_, i) => `lease-keepalive:lease-${i + 2}:from-${ID_A.toString(16)}`));
    // The late answer to lease-1 arrives now and must not land anywhere.
    await new Promise((resolve) => setTimeout(resolve, 400));
    const after = await a.transport.call(ID_B, 'lease-keepalive', bytes('lease-99'), { deadlineMs: Date.now() + 5000 });
    assert.equal(text(after), `lease-keepalive:lease-99:from-${ID_A.toString(16)}`);
  } finally {
    await stopAll([a, b]);
  }
});

test("the callee's KvdError travels back with its code and etcd's text; other failures are internal", async () => {
  const a = await startMember(ID_A);
  const b = await startMember(ID_B, {
    onCall: async (_from, kind) => {
      if (kind === 'missing') throw new KvdError('lease-not-found');
      throw new Error('boom');
    },
  });
  try {
    mesh([a, b]);
    await assert.rejects(a.transport.call(ID_B, 'missing', new Uint8Array(0), { deadlineMs: Date.now() + 5000 }), (error: unknown) => error instanceof KvdError && error.code === 'lease-not-found' && error.message === 'etcdserver: requested lease not found');
    await assert.rejects(a.transport.call(ID_B, 'other', new Uint8Array(0), { deadlineMs: Date.now() + 5000 }), (error: unknown) => error instanceof KvdError && error.code === 'internal' && /boom/.test(error.message));
  } finally {
    await stopAll([a, b]);
  }
});

test('calls between members of different clusters, or to a member that serves none, are refused', async () => {
  const a = await startMember(ID_A, { clusterId: 0x77n });
  const b = await startMember(ID_B, { onCall: async () => bytes('never') });
  const c = await startMember(ID_A);
  try {
    a.transport.addPeer(ID_B, [b.url]);
    await assert.rejects(a.transport.call(ID_B, 'x', new Uint8Array(0), { deadlineMs: Date.now() + 5000 }), (error: unknown) => error instanceof KvdError && error.code === 'stopped' && /cluster ID mismatch/.test(error.message));
    c.transport.addPeer(ID_B, [b.url]);
    b.transport.addPeer(ID_A, [c.url]);
    // b serves calls; c does not (no onCall): unimplemented.
    await assert.rejects(b.transport.call(ID_A, 'x', new Uint8Array(0), { deadlineMs: Date.now() + 5000 }), (error: unknown) => error instanceof KvdError && error.code === 'unimplemented');
    await assert.rejects(c.transport.call(0x999n, 'x', new Uint8Array(0), { deadlineMs: Date.now() + 5000 }), (error: unknown) => error instanceof KvdError && error.code === 'stopped');
  } finally {
    await stopAll([a, b, c]);
  }
});

test('a throwing onMessage is not swallowed (the receiver fail-stops)', async () => {
  const thrown: unknown[] = [];
  const listener = (error: unknown): void => { thrown.push(error); };
  const previous = process.listeners('uncaughtException');
  process.removeAllListeners('uncaughtException');
  process.on('uncaughtException', listener);
  const a = await startMember(ID_A);
  const b = await startMember(ID_B, { onMessage: () => { throw new Error('broken invariant'); } });
  try {
    mesh([a, b]);
    a.transport.send([{ type: 'heartbeat', from: ID_A, to: ID_B, term: 1, commit: 0, context: null }]);
    const deadline = Date.now() + 10_000;
    while (thrown.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(thrown.length, 1, 'the throw propagated out of the transport');
    assert.match(String((thrown[0] as Error).message), /broken invariant/);
  } finally {
    process.removeListener('uncaughtException', listener);
    for (const handler of previous) process.on('uncaughtException', handler);
    await stopAll([a, b]);
  }
});

// Goal: member calls travel as numbered frames on one long-lived `Calls` stream per callee (not a
// unary gRPC call each, whose setup cost a forwarding follower about a quarter of its CPU under
// etcd's lease benchmark); a callee that does not serve `Calls` (an older member) still gets every
// call, as unary `Call`s; a stream that breaks fails the calls waiting on it as 'stopped' and the
// next call opens a new stream; the callee answers calls beyond its bound 'too-many-requests'.
// Method: a real caller transport against a stand-in callee (a grpc-js server registering the
// peer service's methods with handlers that count what reaches them), so the test sees which
// method each call took; and two real transports for the callee's bound.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { KvdError } from '../../../src/util/errors.js';
import { decodeCallFrame, decodeCallRequest, encodeCallAnswerFrame, encodeCallFrame, encodeCallResponse, decodeCallAnswerFrame } from '../../../src/transport/codec.js';
import { peerServiceDefinition } from '../../../src/transport/service.js';
import { MAX_INBOUND_CALLS } from '../../../src/transport/transport.js';
import { CLUSTER_ID, ID_A, ID_B } from './messages.js';
import { startMember, stopAll } from './harness.js';

const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString('utf8');
const bytes = (value: string): Uint8Array => new Uint8Array(Buffer.from(value, 'utf8'));

interface StandIn {
  readonly url: string;
  readonly counts: { streams: number; streamCalls: number; unary: number };
  stop(): Promise<void>;
}

/**
 * A callee that answers every call with "<kind>:<payload>" and counts how calls arrived. Without
 * `calls`, it does not serve `Calls` (grpc-js answers UNIMPLEMENTED), as a member from before it.
 * `breakFirstStream` ends the first `Calls` stream with UNAVAILABLE when its first call arrives.
 */
async function startStandIn(options: { calls: boolean; breakFirstStream?: boolean }): Promise<StandIn> {
  const counts = { streams: 0, streamCalls: 0, unary: 0 };
  const server = new grpc.Server();
  const { Calls, ...withoutCalls } = peerServiceDefinition;
  const handlers: grpc.UntypedServiceImplementation = {
    Stream: () => undefined, // never acknowledges: the caller's Raft stream just retries
    Snapshot: (_call: unknown, callback: grpc.sendUnaryData<Buffer>) => callback({ code: grpc.status.UNIMPLEMENTED }),
    Members: (_call: unknown, callback: grpc.sendUnaryData<Buffer>) => callback({ code: grpc.status.UNIMPLEMENTED }),
    Call: (call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
      counts.unary += 1;
      const decoded = decodeCallRequest(call.request);
      assert.ok(decoded.ok);
      callback(null, Buffer.from(encodeCallResponse({ ok: true, payload: bytes(`${decoded.value.kind}:${text(decoded.value.payload)}`) })));
    },
  };
  if (options.calls) {
    handlers.Calls = (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
      counts.streams += 1;
      const broken = options.breakFirstStream === true && counts.streams === 1;
      call.on('data', (frame: Buffer) => {
        counts.streamCalls += 1;
        if (broken) {
          call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'stand-in broke the stream' });
          return;
        }
        const decoded = decodeCallFrame(frame);
        assert.ok(decoded.ok);
        const { callId, request } = decoded.value;
        call.write(Buffer.from(encodeCallAnswerFrame(callId, { ok: true, payload: bytes(`${request.kind}:${text(request.payload)}`) })));
      });
      call.on('end', () => call.end());
    };
  }
  server.addService(options.calls ? { ...withoutCalls, Calls } : withoutCalls, handlers);
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error))));
  return { url: `http://127.0.0.1:${port}`, counts, stop: () => new Promise((resolve) => server.tryShutdown(() => resolve())) };
}

/** Runs `body` with a caller transport (member A) that knows a stand-in callee as member B. */
async function withStandIn(options: { calls: boolean; breakFirstStream?: boolean }, body: (call: (payload: string) => Promise<Uint8Array>, standIn: StandIn) => Promise<void>): Promise<void> {
  const standIn = await startStandIn(options);
  const a = await startMember(ID_A);
  try {
    a.transport.addPeer(ID_B, [standIn.url]);
    await body((payload) => a.transport.call(ID_B, 'keepalive', bytes(payload), { deadlineMs: Date.now() + 5000 }), standIn);
  } finally {
    await stopAll([a]);
    await standIn.stop();
  }
}

test('call frames carry the number, the wait and the request; answer frames the number and the answer', () => {
  const frame = decodeCallFrame(encodeCallFrame(7, 1234.5, { clusterId: CLUSTER_ID, from: ID_A, to: ID_B, kind: 'k', payload: bytes('p') }));
  assert.ok(frame.ok);
  assert.equal(frame.value.callId, 7);
  assert.equal(frame.value.waitMs, 1235);
  assert.deepEqual({ ...frame.value.request, payload: text(frame.value.request.payload) }, { clusterId: CLUSTER_ID, from: ID_A, to: ID_B, kind: 'k', payload: 'p' });
  const late = decodeCallFrame(encodeCallFrame(0, -5, { clusterId: CLUSTER_ID, from: ID_A, to: ID_B, kind: 'k', payload: bytes('') }));
  assert.ok(late.ok);
  assert.equal(late.value.waitMs, 0, 'a passed deadline travels as no time left');
  const answer = decodeCallAnswerFrame(encodeCallAnswerFrame(0xffff_ffff, { ok: false, code: 'lease-not-found', message: 'm' }));
  assert.deepEqual(answer, { ok: true, value: { callId: 0xffff_ffff, response: { ok: false, code: 'lease-not-found', message: 'm' } } });
  assert.equal(decodeCallFrame(new Uint8Array([1, 0, 0])).ok, false);
  assert.equal(decodeCallFrame(new Uint8Array([2, 0, 0, 0, 0, 0, 0, 0, 0, 0x90])).ok, false);
  assert.equal(decodeCallAnswerFrame(new Uint8Array([1, 0, 0, 0, 1, 0xc1])).ok, false);
});

test('member calls share one Calls stream, each answer matched to its own call', () => withStandIn({ calls: true }, async (call, standIn) => {
  const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => call(`lease-${i}`)));
  assert.deepEqual(answers.map(text), Array.from({ length: 50 }, (_, i) => `keepalive:lease-${i}`));
  assert.equal(text(await call('lease-x')), 'keepalive:lease-x');
  assert.deepEqual(standIn.counts, { streams: 1, streamCalls: 51, unary: 0 });
}));

test('a callee that does not serve Calls (an older member) gets every call as a unary Call', () => withStandIn({ calls: false }, async (call, standIn) => {
  const first = await Promise.all(Array.from({ length: 5 }, (_, i) => call(`lease-${i}`)));
  assert.deepEqual(first.map(text), Array.from({ length: 5 }, (_, i) => `keepalive:lease-${i}`));
  assert.equal(text(await call('lease-9')), 'keepalive:lease-9');
  assert.equal(standIn.counts.unary, 6);
  assert.equal(standIn.counts.streams, 0);
}));

test("a broken stream fails its waiting calls as 'stopped'; the next call opens a new stream", () => withStandIn({ calls: true, breakFirstStream: true }, async (call, standIn) => {
  await assert.rejects(call('lease-1'), (error: unknown) => error instanceof KvdError && error.code === 'stopped' && /stand-in broke the stream/.test(error.message));
  assert.equal(text(await call('lease-2')), 'keepalive:lease-2');
  assert.equal(standIn.counts.streams, 2);
  assert.equal(standIn.counts.unary, 0);
}));

test("the callee answers calls beyond its bound 'too-many-requests' on the stream, and serves the others", async () => {
  const release: Array<() => void> = [];
  const b = await startMember(ID_B, {
    onCall: (_from, _kind, payload) => new Promise((resolve) => release.push(() => resolve(payload))),
  });
  const a = await startMember(ID_A);
  try {
    a.transport.addPeer(ID_B, [b.url]);
    const deadlineMs = Date.now() + 30_000;
    const held = Array.from({ length: MAX_INBOUND_CALLS }, (_, i) => a.transport.call(ID_B, 'hold', bytes(`h${i}`), { deadlineMs }));
    const start = Date.now();
    while (release.length < MAX_INBOUND_CALLS && Date.now() - start < 20_000) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(release.length, MAX_INBOUND_CALLS);
    await assert.rejects(a.transport.call(ID_B, 'hold', bytes('one-more'), { deadlineMs }), (error: unknown) => error instanceof KvdError && error.code === 'too-many-requests' && error.message === 'etcdserver: too many requests');
    for (const done of release.splice(0)) done();
    const answers = await Promise.all(held);
    assert.equal(text(answers[0]), 'h0');
    assert.equal(text(answers[MAX_INBOUND_CALLS - 1]), `h${MAX_INBOUND_CALLS - 1}`);
  } finally {
    await stopAll([a, b]);
  }
});

// Goal: a front-end never leaves a range cursor open at the core (an open cursor pins its revision
// against physical compaction). Method: remoteBackends over a CoreLink whose channel only records
// what it sends; answers are delivered by hand, as the core's would arrive.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CoreLink, remoteBackends } from '../../../src/server/frontends/remote-backends.js';
import { CoreCall } from '../../../src/server/frontends/host.js';
import type { Channel, ChannelMessage } from '../../../src/server/frontends/channel.js';
import type { MirroredState } from '../../../src/server/frontends/protocol.js';
import { KvdError } from '../../../src/util/errors.js';

function fakeLink(): { link: CoreLink; sent: ChannelMessage[] } {
  const sent: ChannelMessage[] = [];
  const channel = { closed: false, send: (message: ChannelMessage) => { sent.push(message); } } as unknown as Channel;
  const state: MirroredState = { clusterId: 1n, memberId: 2n, term: 3, leader: 2n, revision: 5, compacted: 0, learner: false };
  return { link: new CoreLink(channel, state), sent };
}

const header = { clusterId: 1n, memberId: 2n, revision: 5, raftTerm: 3 };
const request = { key: new TextEncoder().encode('a'), rangeEnd: new Uint8Array(0) } as never;

test('a client gone while its range was being opened closes the cursor the core opened for it', async () => {
  const { link, sent } = fakeLink();
  const { backends } = remoteBackends(link, { watchProgressIntervalMs: 60_000, historyTimeoutMs: 1_000 });
  const controller = new AbortController();
  const opening = backends.kv.openRange!(request, { deadline: Date.now() + 5_000, signal: controller.signal, sortBytesMax: 1 << 20 });
  const open = sent.find((message) => message.t === 'call' && message.m === 'kv.openRange');
  assert.ok(open !== undefined, 'the open went to the core');
  controller.abort(); // the client hangs up; the core's answer is already on its way
  link.settle({ t: 'result', id: open.id, v: { header, cursor: 7, revision: 5, readRevision: 5 } });
  await assert.rejects(opening, (error: unknown) => error instanceof KvdError && error.code === 'canceled');
  const close = sent.find((message) => message.t === 'call' && message.m === 'cursor.close');
  assert.ok(close !== undefined, `the cursor is closed at the core (sent: ${sent.map((m) => `${m.t}:${String(m.m)}`).join(', ')})`);
  assert.deepEqual(close.a, [7]);
  assert.ok(!sent.some((message) => message.t === 'cancel' && message.id === open.id), 'the open itself is not abandoned');
});

test('an open answered normally hands the cursor over; returning it closes it once', async () => {
  const { link, sent } = fakeLink();
  const { backends } = remoteBackends(link, { watchProgressIntervalMs: 60_000, historyTimeoutMs: 1_000 });
  const opening = backends.kv.openRange!(request, { deadline: Date.now() + 5_000, signal: new AbortController().signal, sortBytesMax: 1 << 20 });
  const open = sent.find((message) => message.t === 'call' && message.m === 'kv.openRange')!;
  link.settle({ t: 'result', id: open.id, v: { header, cursor: 9, revision: 5, readRevision: 5 } });
  const { cursor } = await opening;
  assert.equal(sent.filter((message) => message.m === 'cursor.close').length, 0);
  const closing = cursor.return!();
  const close = sent.find((message) => message.t === 'call' && message.m === 'cursor.close')!;
  link.settle({ t: 'result', id: close.id, v: null });
  await closing;
  await cursor.return!();
  assert.equal(sent.filter((message) => message.m === 'cursor.close').length, 1);
});

test('a one-key Range is one call to the core; when the core cannot read it so, the whole Range is asked', async () => {
  const { link, sent } = fakeLink();
  const { backends } = remoteBackends(link, { watchProgressIntervalMs: 60_000, historyTimeoutMs: 1_000 });
  const options = { deadline: Date.now() + 5_000, signal: new AbortController().signal };
  assert.equal(backends.kv.rangeKey!({ ...(request as object), rangeEnd: new TextEncoder().encode('b') } as never, options), undefined, 'a range of keys takes the cursor');
  const response = { kvs: [], more: false, count: 0 };
  const direct = backends.kv.rangeKey!(request, options);
  const first = sent.find((message) => message.t === 'call' && message.m === 'kv.rangeKey')!;
  link.settle({ t: 'result', id: first.id, v: { header, response } });
  assert.deepEqual(await direct, { header, response });
  assert.deepEqual(sent.map((message) => message.m), ['kv.rangeKey'], 'no cursor was opened');

  const refused = backends.kv.rangeKey!(request, options);
  const second = sent.filter((message) => message.t === 'call' && message.m === 'kv.rangeKey')[1]!;
  link.settle({ t: 'result', id: second.id, v: null });
  await new Promise((resolve) => setImmediate(resolve));
  const whole = sent.find((message) => message.t === 'call' && message.m === 'kv.range')!;
  assert.ok(whole !== undefined, 'the whole Range is asked instead');
  link.settle({ t: 'result', id: whole.id, v: { header, response } });
  assert.deepEqual(await refused, { header, response });

  // A caller with credentials: the core would answer null (permissions to check), so the whole
  // Range is asked at once, one call, not two.
  const before = sent.length;
  const withAuth = backends.kv.rangeKey!(request, { ...options, auth: { token: 't' } });
  const asked = sent.slice(before);
  assert.deepEqual(asked.map((message) => message.m), ['kv.range']);
  link.settle({ t: 'result', id: asked[0].id, v: { header, response } });
  assert.deepEqual(await withAuth, { header, response });
});

test('a call cancelled through onCancel is cancelled at the core, and no AbortSignal is built for it', async () => {
  const { link, sent } = fakeLink();
  let cancel: (() => void) | undefined;
  const options = {
    deadline: Date.now() + 5_000,
    get signal(): AbortSignal { throw new Error('the signal was read'); },
    onCancel: (listener: () => void) => {
      cancel = listener;
      return () => { cancel = undefined; };
    },
  };
  const answered = link.call('kv.write', [{}], options);
  const call = sent.find((message) => message.t === 'call');
  assert.ok(call !== undefined && cancel !== undefined, 'sent, with a cancel listener');
  cancel();
  await assert.rejects(answered, (error: unknown) => error instanceof KvdError && error.code === 'canceled');
  assert.deepEqual(sent.filter((message) => message.t === 'cancel').map((message) => message.id), [call.id]);
  // An answered call lets go of its listener.
  const second = link.call('kv.write', [{}], options);
  const secondCall = sent.filter((message) => message.t === 'call')[1];
  link.settle({ t: 'result', id: secondCall.id, v: 'done' });
  assert.equal(await second, 'done');
  assert.equal(cancel, undefined, 'listener removed once answered');
});

test("the core's CoreCall: listeners run once on cancel, removed ones never, late ones at once; its signal is built on demand", () => {
  const call = new CoreCall(Date.now() + 1_000, { startMs: 0 }, undefined);
  const ran: string[] = [];
  call.onCancel(() => ran.push('a'));
  const removeB = call.onCancel(() => ran.push('b'));
  const early = call.signal;
  assert.equal(early.aborted, false);
  removeB();
  call.cancel();
  call.cancel();
  assert.deepEqual(ran, ['a']);
  assert.equal(early.aborted, true);
  assert.ok(early.reason instanceof KvdError && early.reason.code === 'canceled');
  call.onCancel(() => ran.push('late'));
  assert.deepEqual(ran, ['a', 'late']);
  const cancelledFirst = new CoreCall(Date.now() + 1_000, { startMs: 0 }, undefined);
  cancelledFirst.cancel();
  assert.equal(cancelledFirst.signal.aborted, true, 'a signal read after the cancel is aborted');
});

// Goal: a committed batch too large for one broadcast frame (a revision of a million deletes) goes
// to the front-ends in parts that join back into exactly the batch, and a channel holds its other
// messages (answers, state) behind those parts until the batch is whole.
// Method: batches of revisions of 0–9 events and one of 1,000, cut in parts of 1–50 events; every
// part within the limit, the joined parts equal to the batch. Then a channel on a PassThrough: a
// message, hold, a part, an answer, the last part, release: read back in the order message, part,
// last part, answer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { Channel, type ChannelMessage } from '../../../src/server/frontends/channel.js';
import { batchEvents, joinRevisionParts, splitRevisions } from '../../../src/server/frontends/protocol.js';
import type { RevisionChanges } from '../../../src/store/mvcc/store.js';
import type { Event } from '../../../src/store/mvcc/types.js';

const event = (revision: number, i: number): Event => ({
  type: 'put',
  kv: { key: Buffer.from(`k${i}`), value: Buffer.from('v'), createRevision: revision, modRevision: revision, version: 1, lease: 0n },
});

test('a batch cut into parts joins back into the same batch, every part within the limit', () => {
  const batch: RevisionChanges[] = [];
  for (let revision = 10; revision < 40; revision++) batch.push({ revision, events: Array.from({ length: (revision * 7) % 10 }, (_, i) => event(revision, i)) });
  batch.push({ revision: 40, events: Array.from({ length: 1000 }, (_, i) => event(40, i)) });
  for (const max of [1, 3, 7, 50, 2000]) {
    const parts = splitRevisions(batch, max);
    for (const part of parts) assert.ok(batchEvents(part) <= max, `a part of ${batchEvents(part)} events (limit ${max})`);
    assert.equal(parts.length, Math.max(1, Math.ceil(batchEvents(batch) / max)));
    assert.deepEqual(joinRevisionParts(parts), batch);
  }
});

test('a held channel sends its messages after the parts queued meanwhile', async () => {
  // The sender writes into `wire`; what comes out of it is fed to the receiver, as a socketpair would.
  const wire = new PassThrough();
  const sender = new Channel(wire);
  const inbound = new PassThrough();
  const receiver = new Channel(inbound);
  const received: ChannelMessage[] = [];
  receiver.onMessage((message) => received.push(message));
  wire.on('data', (chunk: Buffer) => inbound.emit('data', chunk));

  sender.send({ t: 'state', n: 1 });
  sender.hold();
  sender.sendEncoded(Channel.encode([{ t: 'revisions-part', n: 2 }]));
  sender.send({ t: 'result', n: 4 });
  await new Promise((resolve) => setImmediate(resolve));
  sender.sendEncoded(Channel.encode([{ t: 'revisions', n: 3 }]));
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(received.map((message) => message.n), [1, 2, 3], 'the answer waits while the channel is held');
  sender.release();
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(received.map((message) => message.n), [1, 2, 3, 4]);
});

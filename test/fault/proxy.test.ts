// Goal: the fault proxy delays and "loses" chunks but never reorders a TCP stream's bytes (TCP
// does not). It did: each chunk had its own timer, set for max(arrival + delay, the previous
// chunk's delivery) computed from Date.now(), while Node counts a timer from the loop's cached
// clock, so a chunk queued behind another in the same pass could fire first. The chaos run (seed
// 8484 with front-ends, 2026-12-07) saw it as a snapshot whose dump arrived complete in length
// but failed its check on install.
// Method: a sink behind a PeerProxy with delay, jitter and loss on the link; 600 numbered 1 KiB
// chunks written through it, some back to back, some a pass of the event loop apart; the sink
// must receive exactly the bytes sent, in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createConnection, createServer, type Socket } from 'node:net';
import { once } from 'node:events';
import { PeerProxy } from './proxy.js';
import { seededRandom } from './nemesis.js';

test('the fault proxy keeps a stream in order under delay, jitter and loss', async () => {
  const received: Buffer[] = [];
  let sink: Socket | undefined;
  const server = createServer((socket) => {
    sink = socket;
    socket.on('data', (chunk: Buffer) => received.push(chunk));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  assert.ok(typeof address === 'object' && address !== null);
  const proxy = new PeerProxy({ target: { host: '127.0.0.1', port: address.port }, sourceName: () => 'a', random: seededRandom(8484) });
  const port = await proxy.listen('127.0.0.1');
  proxy.setFault('a', { delayMs: 5, jitterMs: 30, lossRate: 0.2, resetRate: 0 });
  const client = createConnection({ host: '127.0.0.1', port });
  client.setNoDelay(true);
  await once(client, 'connect');
  const chunks = 600;
  const sent: Buffer[] = [];
  try {
    for (let i = 0; i < chunks; i++) {
      const chunk = Buffer.alloc(1024, i % 251);
      chunk.writeUInt32BE(i, 0);
      sent.push(chunk);
      client.write(chunk);
      // Some chunks back to back, some a pass of the loop (or a millisecond) apart.
      if (i % 3 === 0) await new Promise((resolve) => setImmediate(resolve));
      if (i % 7 === 0) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const expected = Buffer.concat(sent);
    const deadline = Date.now() + 30_000;
    while (received.reduce((sum, chunk) => sum + chunk.length, 0) < expected.length && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const got = Buffer.concat(received);
    assert.equal(got.length, expected.length, 'every byte arrived');
    const firstDifference = got.findIndex((byte, at) => byte !== expected[at]);
    assert.equal(firstDifference, -1, `the stream arrived in order (first difference in chunk ${Math.floor(firstDifference / 1024)})`);
  } finally {
    client.destroy();
    sink?.destroy();
    await proxy.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

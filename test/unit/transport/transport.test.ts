// Goal: the gRPC peer transport delivers every Raft message type between members in order,
// reconnects after a peer restarts, refuses streams from other clusters or addressed to other
// members, tells a member removed after its stream was accepted that it was removed, survives garbage on its port, streams large snapshots intact, and bounds its queues.
// Method: real transports on 127.0.0.1 port 0 in one process; raw gRPC calls and raw TCP
// sockets play misbehaving peers; every wait is a condition with a deadline.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { Message, SnapshotMessage } from '../../../src/raft/types.js';
import { encodeFrame, encodeHandshake } from '../../../src/transport/codec.js';
import { formatMemberId } from '../../../src/transport/events.js';
import { PEER_STREAM_PATH, toBuffer } from '../../../src/transport/service.js';
import { ID_A, ID_B, ID_C, CLUSTER_ID, entries, everyMessage } from './messages.js';
import { mesh, startMember, stopAll, waitFor, type Member } from './harness.js';

const sendable = (messages: Message[]): Message[] => messages.filter((m) => m.type !== 'snapshot');

function heartbeat(from: bigint, to: bigint, commit: number): Message {
  return { type: 'heartbeat', from, to, term: 1, commit, context: null };
}

test('two members exchange every message type in order', async () => {
  const a = await startMember(ID_A);
  const b = await startMember(ID_B);
  try {
    mesh([a, b]);
    const toB = everyMessage(ID_A, ID_B);
    const toA = everyMessage(ID_B, ID_A);
    // Sent before the handshake completes: queued, then flushed in order.
    a.transport.send(toB);
    b.transport.send(toA);
    await waitFor(() => b.received.length === sendable(toB).length && a.received.length === sendable(toA).length, 'delivery');
    assert.deepStrictEqual(b.received, sendable(toB));
    assert.deepStrictEqual(a.received, sendable(toA));
    const status = a.transport.peerStatus(ID_B);
    assert.equal(status.connected, true);
    assert.ok(typeof status.connectedSinceMs === 'number' && status.connectedSinceMs <= Date.now(), 'connected since a moment in the past');
    assert.ok(a.events.some((e) => e.kind === 'peer-connected' && e.peer === formatMemberId(ID_B)));
    assert.ok(b.events.some((e) => e.kind === 'inbound-stream-opened' && e.peer === formatMemberId(ID_A)));
  } finally {
    await stopAll([a, b]);
  }
});

test('three members: one send() fans out per peer and per-peer order holds over many calls', async () => {
  const members = [await startMember(ID_A), await startMember(ID_B), await startMember(ID_C)];
  const [a, b, c] = members;
  try {
    mesh(members);
    await waitFor(() => a.transport.peerStatus(ID_B).connected && a.transport.peerStatus(ID_C).connected, 'connections');
    const count = 2000;
    for (let i = 0; i < count; i++) a.transport.send([heartbeat(ID_A, ID_B, i), heartbeat(ID_A, ID_C, i), heartbeat(ID_A, ID_B, count + i)]);
    await waitFor(() => b.received.length === 2 * count && c.received.length === count, 'fan-out delivery');
    const commitsB = b.received.map((m) => (m.type === 'heartbeat' ? m.commit : -1));
    const expectedB: number[] = [];
    for (let i = 0; i < count; i++) expectedB.push(i, count + i);
    assert.deepStrictEqual(commitsB, expectedB);
    assert.deepStrictEqual(
      c.received.map((m) => (m.type === 'heartbeat' ? m.commit : -1)),
      Array.from({ length: count }, (_, i) => i),
    );
  } finally {
    await stopAll(members);
  }
});

test('a 6 MiB append (hundreds of HTTP/2 DATA frames) arrives intact, its entries viewing a buffer of that frame only', async () => {
  const a = await startMember(ID_A);
  const b = await startMember(ID_B);
  try {
    mesh([a, b]);
    const big = entries(1536, 4096, 10);
    const append: Message = { type: 'append', from: ID_A, to: ID_B, term: 7, logTerm: 7, index: 9, commit: 9, entries: big };
    // Small frames around it: the large one is split over many reads and shares them with its neighbours.
    a.transport.send([heartbeat(ID_A, ID_B, 1)]);
    a.transport.send([append]);
    a.transport.send([heartbeat(ID_A, ID_B, 2)]);
    await waitFor(() => b.received.length === 3, 'delivery', 20_000);
    assert.deepStrictEqual(b.received[1], append);
    const received = b.received[1];
    assert.ok(received.type === 'append');
    const buffers = new Set(received.entries.map((e) => e.data.buffer));
    assert.equal(buffers.size, 1, 'the entries view one received frame');
    const [buffer] = buffers;
    assert.ok(buffer.byteLength < 6.5 * 1024 * 1024, `the frame's buffer holds the frame only (${buffer.byteLength} bytes)`);
  } finally {
    await stopAll([a, b]);
  }
});

test('a restarted peer is reconnected and delivery resumes; losses are reported', async () => {
  const a = await startMember(ID_A);
  let b = await startMember(ID_B);
  try {
    mesh([a, b]);
    a.transport.send([heartbeat(ID_A, ID_B, 1)]);
    await waitFor(() => b.received.length === 1, 'first delivery');
    const url = b.url;
    await b.transport.stop();
    await waitFor(() => !a.transport.peerStatus(ID_B).connected, 'disconnect noticed');
    assert.ok(a.transport.peerStatus(ID_B).lastError !== undefined);
    a.transport.send([heartbeat(ID_A, ID_B, 2)]);
    await waitFor(() => a.unreachable.includes(ID_B), 'unreachable reported');
    assert.ok(a.events.some((e) => e.kind === 'peer-disconnected'));
    b = await startMember(ID_B, { listenUrl: url });
    let commit = 3;
    await waitFor(() => {
      a.transport.send([heartbeat(ID_A, ID_B, commit++)]);
      return b.received.length > 0;
    }, 'delivery after restart');
    await waitFor(() => a.transport.peerStatus(ID_B).connected, 'reconnected');
    const commits = b.received.map((m) => (m.type === 'heartbeat' ? m.commit : -1));
    assert.deepStrictEqual(commits, [...commits].sort((x, y) => x - y), 'order preserved after reconnect');
  } finally {
    await stopAll([a, b]);
  }
});

test('streams from another cluster or addressed to another member are refused', async () => {
  const a = await startMember(ID_A);
  const b = await startMember(ID_B);
  const stranger = await startMember(ID_C, { clusterId: CLUSTER_ID + 1n });
  try {
    a.transport.addPeer(ID_C, [stranger.url]);
    a.transport.send([heartbeat(ID_A, ID_C, 1)]);
    await waitFor(() => (a.transport.peerStatus(ID_C).lastError ?? '').includes('cluster ID mismatch'), 'cluster refusal');
    assert.ok(a.transport.peerStatus(ID_C).lastError?.startsWith('FAILED_PRECONDITION'));
    assert.ok(stranger.events.some((e) => e.kind === 'handshake-refused' && e.direction === 'inbound' && e.reason.includes('cluster ID mismatch')));
    assert.ok(a.events.some((e) => e.kind === 'handshake-refused' && e.direction === 'outbound'));
    assert.equal(stranger.received.length, 0);

    // Member C's id but B's address: B refuses a stream meant for someone else.
    const c = await startMember(ID_C);
    try {
      c.transport.addPeer(ID_A, [b.url]);
      await waitFor(() => (c.transport.peerStatus(ID_A).lastError ?? '').includes('member ID mismatch'), 'member refusal');
      assert.equal(b.received.length, 0);
    } finally {
      await c.transport.stop();
    }
  } finally {
    await stopAll([a, b, stranger]);
  }
});

test('a member removed after its stream was accepted is refused at its next frame, with the removal as the reason', async () => {
  // The chaos run's finding (issue 12): a removed member that missed the commit of its own
  // removal hears nothing more from the others; it must learn its removal from the refusal of
  // what it still sends on the stream it opened before, or it campaigns unanswered for ever.
  const removed = new Set<bigint>();
  const a = await startMember(ID_A);
  const b = await startMember(ID_B, { isRemoved: (id) => removed.has(id) });
  try {
    a.transport.addPeer(ID_B, [b.url]);
    a.transport.send([heartbeat(ID_A, ID_B, 1)]);
    await waitFor(() => b.received.length === 1, 'the first heartbeat');
    removed.add(ID_A);
    a.transport.send([heartbeat(ID_A, ID_B, 2)]);
    await waitFor(() => a.events.some((e) => e.kind === 'handshake-refused' && e.direction === 'outbound' && e.reason.includes('member removed')), 'the refusal at the sender');
    assert.equal(b.received.length, 1, 'nothing from a removed member is delivered');
    assert.ok(b.events.some((e) => e.kind === 'handshake-refused' && e.direction === 'inbound' && e.reason.includes('member removed')));
  } finally {
    await stopAll([a, b]);
  }
});

/** Opens a raw Stream call on `url` and writes `frames`; resolves with the final status. */
async function rawStream(url: string, frames: Uint8Array[]): Promise<grpc.StatusObject> {
  const client = new grpc.Client(url.replace('http://', ''), grpc.credentials.createInsecure());
  try {
    const call = client.makeBidiStreamRequest<Uint8Array, Buffer>(PEER_STREAM_PATH, toBuffer, (b) => b);
    call.on('data', () => {});
    call.on('error', () => {});
    const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    for (const frame of frames) call.write(frame);
    return await status;
  } finally {
    client.close();
  }
}

test('garbage on the peer port is refused while the transport keeps serving', async () => {
  const a = await startMember(ID_A);
  const b = await startMember(ID_B);
  try {
    mesh([a, b]);
    // Raw TCP junk (not even HTTP/2).
    const address = new URL(b.url);
    await new Promise<void>((resolve) => {
      const socket = net.connect({ host: address.hostname, port: Number(address.port) }, () => {
        socket.write(Buffer.from('GET / HTTP/1.1\r\n\r\n\x00\xff\xfe garbage garbage'));
      });
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
      socket.setTimeout(2000, () => socket.destroy());
    });
    // A gRPC call whose handshake is junk.
    const junkHandshake = await rawStream(b.url, [new Uint8Array([0xc1, 0xff, 0x00, 0x13])]);
    assert.equal(junkHandshake.code, grpc.status.INVALID_ARGUMENT);
    // A valid handshake, then a junk frame, then a frame with a message for someone else.
    const hello = encodeHandshake({ clusterId: CLUSTER_ID, from: ID_C, to: ID_B });
    const junkFrame = await rawStream(b.url, [hello, new Uint8Array([0x93, 0x01, 0x02])]);
    assert.equal(junkFrame.code, grpc.status.INVALID_ARGUMENT);
    const misaddressed = await rawStream(b.url, [hello, encodeFrame([heartbeat(ID_C, ID_A, 1)])]);
    assert.equal(misaddressed.code, grpc.status.INVALID_ARGUMENT);
    const spoofed = await rawStream(b.url, [hello, encodeFrame([heartbeat(ID_A, ID_B, 1)])]);
    assert.equal(spoofed.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(b.events.filter((e) => e.kind === 'bad-frame').length, 4);
    assert.equal(b.received.length, 0);
    // Still serving.
    a.transport.send([heartbeat(ID_A, ID_B, 42)]);
    await waitFor(() => b.received.length === 1, 'delivery after garbage');
  } finally {
    await stopAll([a, b]);
  }
});

function snapshotMessage(from: bigint, to: bigint): SnapshotMessage {
  return {
    type: 'snapshot',
    from,
    to,
    term: 3,
    snapshot: { metadata: { index: 500, term: 3, confState: { voters: [ID_A, ID_B], learners: [] } }, data: new Uint8Array([1, 2, 3]) },
  };
}

function snapshotData(totalBytes: number): Uint8Array {
  const data = new Uint8Array(totalBytes);
  for (let i = 0; i < totalBytes; i++) data[i] = (i * 2654435761) >>> 24;
  return data;
}

test('a 5 MiB snapshot streams intact in chunks', async () => {
  const a = await startMember(ID_A);
  const b = await startMember(ID_B);
  try {
    mesh([a, b]);
    const data = snapshotData(5 * 1024 * 1024 + 17);
    const message = snapshotMessage(ID_A, ID_B);
    // Uneven chunk sizes, one larger than the transport's chunk limit (split on the way).
    const sizes = [1, 100_000, 3 * 1024 * 1024, 65_536];
    const result = await a.transport.sendSnapshot(message, async function* () {
      let offset = 0;
      for (let i = 0; offset < data.length; i++) {
        const size = sizes[i % sizes.length];
        yield data.subarray(offset, offset + size);
        offset += size;
      }
    });
    assert.equal(result, 'finished');
    assert.equal(b.snapshots.length, 1);
    assert.deepStrictEqual(b.snapshots[0].message, message);
    const digest = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
    assert.equal(b.snapshots[0].data.length, data.length);
    assert.equal(digest(b.snapshots[0].data), digest(data));
    assert.ok(a.events.some((e) => e.kind === 'snapshot-sent' && e.bytes === data.length));
    assert.ok(b.events.some((e) => e.kind === 'snapshot-received' && e.bytes === data.length));
  } finally {
    await stopAll([a, b]);
  }
});

test('a slow snapshot reader pushes back to the sender; an early finish still counts as finished', async () => {
  const a = await startMember(ID_A);
  let slowBytes = 0;
  const slow = await startMember(ID_B, {
    onSnapshot: async (_message, data) => {
      for await (const chunk of data) {
        slowBytes += chunk.byteLength;
        await new Promise((resolve) => setImmediate(resolve));
      }
    },
  });
  const early = await startMember(ID_C, {
    onSnapshot: async (_message, data) => {
      for await (const chunk of data) {
        assert.ok(chunk.byteLength > 0);
        break; // e.g. the receiver already has newer state
      }
    },
  });
  try {
    mesh([a, slow, early]);
    const chunk = new Uint8Array(64 * 1024);
    let produced = 0;
    const source = (count: number) =>
      async function* (): AsyncIterable<Uint8Array> {
        for (let i = 0; i < count; i++) {
          produced++;
          yield chunk;
        }
      };
    assert.equal(await a.transport.sendSnapshot(snapshotMessage(ID_A, ID_B), source(100)), 'finished');
    assert.equal(slowBytes, 100 * chunk.byteLength);
    produced = 0;
    assert.equal(await a.transport.sendSnapshot(snapshotMessage(ID_A, ID_C), source(1000)), 'finished');
    assert.ok(produced < 1000, `the sender stopped reading after the receiver answered (${produced})`);
  } finally {
    await stopAll([a, slow, early]);
  }
});

test('snapshot failures on either side yield failed, never a throw', async () => {
  let receiverError: unknown;
  let firstChunkSeen: () => void = () => {};
  const firstChunk = new Promise<void>((resolve) => {
    firstChunkSeen = resolve;
  });
  const a = await startMember(ID_A);
  const refusing = await startMember(ID_B, {
    onSnapshot: async () => {
      throw new Error('disk full');
    },
  });
  const reading = await startMember(ID_C, {
    onSnapshot: async (_message, data) => {
      try {
        for await (const chunk of data) {
          assert.equal(chunk.byteLength, 1000);
          firstChunkSeen();
        }
      } catch (error: unknown) {
        receiverError = error;
        throw error;
      }
    },
  });
  try {
    mesh([a, refusing, reading]);
    const chunks = async function* (): AsyncIterable<Uint8Array> {
      yield new Uint8Array(1000);
    };
    assert.equal(await a.transport.sendSnapshot(snapshotMessage(ID_A, ID_B), chunks), 'failed');
    assert.ok(a.events.some((e) => e.kind === 'snapshot-send-failed' && e.reason.includes('disk full')));
    // The sender's data source breaks halfway (after the receiver got a chunk): the receiver's
    // iterable throws.
    const broken = async function* (): AsyncIterable<Uint8Array> {
      yield new Uint8Array(1000);
      await firstChunk;
      throw new Error('backend read failed');
    };
    assert.equal(await a.transport.sendSnapshot(snapshotMessage(ID_A, ID_C), broken), 'failed');
    await waitFor(() => receiverError !== undefined, 'receiver notices the broken stream');
    assert.equal(reading.snapshots.length, 0);
    // Unknown peer.
    assert.equal(await a.transport.sendSnapshot(snapshotMessage(ID_A, 0x1234n), chunks), 'failed');
  } finally {
    await stopAll([a, refusing, reading]);
  }
});

test('a full queue drops and reports; a disconnected peer drops and reports unreachable', async () => {
  // A TCP server that accepts and never answers: the handshake stays pending, so messages queue.
  const silent = net.createServer((socket) => socket.on('error', () => {}));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const address = silent.address();
  assert.ok(address !== null && typeof address === 'object');
  const sockets = new Set<net.Socket>();
  silent.on('connection', (socket) => sockets.add(socket));
  const a = await startMember(ID_A, { maxQueuedMessagesPerPeer: 10 });
  try {
    a.transport.addPeer(ID_B, [`http://127.0.0.1:${address.port}`]);
    a.transport.send(Array.from({ length: 15 }, (_, i) => heartbeat(ID_A, ID_B, i)));
    const drop = a.events.find((e) => e.kind === 'messages-dropped');
    assert.deepStrictEqual(drop, { kind: 'messages-dropped', peer: formatMemberId(ID_B), count: 5, reason: 'queue-full' });
    await waitFor(() => a.unreachable.includes(ID_B), 'unreachable after queue-full');

    // A peer nobody listens for: connection refused, then messages are dropped while backing off.
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const closedAddress = closed.address();
    assert.ok(closedAddress !== null && typeof closedAddress === 'object');
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    a.transport.addPeer(ID_C, [`http://127.0.0.1:${closedAddress.port}`]);
    await waitFor(() => a.transport.peerStatus(ID_C).lastError !== undefined, 'connect failure');
    a.unreachable.length = 0;
    a.transport.send([heartbeat(ID_A, ID_C, 1)]);
    await waitFor(() => a.unreachable.includes(ID_C), 'unreachable while disconnected');
    assert.ok(a.events.some((e) => e.kind === 'messages-dropped' && e.reason === 'disconnected'));
    // Unknown peers are reported too.
    a.transport.send([heartbeat(ID_A, 0x77n, 1)]);
    await waitFor(() => a.unreachable.includes(0x77n), 'unreachable for unknown peer');
  } finally {
    await a.transport.stop();
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
  }
});

test('a caller that never sends a handshake is cut off', async () => {
  const b = await startMember(ID_B);
  try {
    const status = await rawStream(b.url, []);
    assert.equal(status.code, grpc.status.DEADLINE_EXCEEDED);
    assert.ok(b.events.some((e) => e.kind === 'handshake-refused' && e.reason === 'no handshake in time'));
  } finally {
    await b.transport.stop();
  }
});

test('stop is idempotent and silences the transport', async () => {
  const a = await startMember(ID_A);
  const b = await startMember(ID_B);
  mesh([a, b]);
  await waitFor(() => a.transport.peerStatus(ID_B).connected, 'connected');
  await a.transport.stop();
  await a.transport.stop();
  a.transport.send([heartbeat(ID_A, ID_B, 1)]);
  assert.equal(await a.transport.sendSnapshot(snapshotMessage(ID_A, ID_B), async function* () {}), 'failed');
  await b.transport.stop();
  assert.equal(b.received.length, 0);
});

test('invalid URLs are refused with member-bad-urls', async () => {
  const a = await startMember(ID_A);
  try {
    assert.throws(() => a.transport.addPeer(ID_B, ['ftp://127.0.0.1:1']), { code: 'member-bad-urls' });
    assert.throws(() => a.transport.addPeer(ID_B, ['not a url']), { code: 'member-bad-urls' });
    assert.deepStrictEqual(a.transport.peerStatus(ID_B), { connected: false, lastError: 'unknown peer' });
  } finally {
    await a.transport.stop();
  }
  await assert.rejects(startWithBadUrl(), { code: 'member-bad-urls' });
});

test('stop settles a snapshot send whose data source hangs', async () => {
  const a = await startMember(ID_A);
  const b = await startMember(ID_B);
  try {
    mesh([a, b]);
    let release: () => void = () => {};
    const hang = new Promise<void>((resolve) => {
      release = resolve;
    });
    let firstSent: () => void = () => {};
    const sentOne = new Promise<void>((resolve) => {
      firstSent = resolve;
    });
    const result = a.transport.sendSnapshot(snapshotMessage(ID_A, ID_B), async function* () {
      yield new Uint8Array(10);
      firstSent();
      await hang;
    });
    await sentOne;
    await a.transport.stop();
    assert.equal(await result, 'failed');
    release();
  } finally {
    await stopAll([a, b]);
  }
});

test('a listen address in use makes start reject', async () => {
  const a = await startMember(ID_A);
  try {
    await assert.rejects(startMember(ID_B, { listenUrl: a.url }), { code: 'EADDRINUSE' });
  } finally {
    await a.transport.stop();
  }
});

async function startWithBadUrl(): Promise<Member> {
  return startMember(ID_A, { listenUrl: 'ftp://127.0.0.1:0' });
}

test('a member answers a member it has no route to at the URLs its handshake advertised (a member that missed that member\'s addition)', async () => {
  // b knows a (a's addition is applied there); a has not applied b's addition yet.
  const a = await startMember(ID_A, { advertise: true });
  const b = await startMember(ID_B, { advertise: true });
  try {
    b.transport.addPeer(ID_A, [a.url]);
    b.transport.send([heartbeat(ID_B, ID_A, 1)]);
    await waitFor(() => a.received.length === 1, 'b reaches a');
    await waitFor(() => a.events.some((e) => e.kind === 'provisional-peer' && e.refused === undefined), 'a learns a route to b');
    // Before: dropped as 'unknown-peer', so b (perhaps the leader) never heard from a.
    a.transport.send([heartbeat(ID_A, ID_B, 2)]);
    await waitFor(() => b.received.length === 1, 'a answers b');
    assert.equal(a.events.filter((e) => e.kind === 'messages-dropped' && e.reason === 'unknown-peer').length, 0);
    // The route is provisional: not among the peers a was told about, and confirmed by addPeer.
    assert.deepEqual(a.transport.peerIds(), []);
    assert.deepEqual(a.transport.provisionalPeerIds(), [ID_B]);
    a.transport.addPeer(ID_B, [b.url]);
    assert.deepEqual(a.transport.peerIds(), [ID_B]);
    assert.deepEqual(a.transport.provisionalPeerIds(), []);
  } finally {
    await stopAll([a, b]);
  }
});

test('a provisional route goes when its member is known to be removed', async () => {
  let removed = false;
  const a = await startMember(ID_A, { advertise: true, isRemoved: (id) => removed && id === ID_B });
  const b = await startMember(ID_B, { advertise: true });
  try {
    b.transport.addPeer(ID_A, [a.url]);
    b.transport.send([heartbeat(ID_B, ID_A, 1)]);
    await waitFor(() => a.transport.provisionalPeerIds().length === 1, 'a learns a route to b');
    removed = true;
    a.transport.pruneProvisional();
    assert.deepEqual(a.transport.provisionalPeerIds(), []);
    a.transport.send([heartbeat(ID_A, ID_B, 2)]);
    await waitFor(() => a.events.some((e) => e.kind === 'messages-dropped' && e.reason === 'unknown-peer'), 'the drop is reported', 5_000);
  } finally {
    await stopAll([a, b]);
  }
});

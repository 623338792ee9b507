// Peer transport benchmark over loopback gRPC: codec throughput, heartbeat round-trip latency,
// and append throughput (messages/s and MB/s of entry payload) for 'append' messages of 64
// entries x 256 B, sent 1 and 8 messages per send() call with a bounded in-flight window.
// The receiving member runs in a worker thread (its own event loop, like a real peer process);
// it counts deliveries in shared memory and answers heartbeats.
// Usage: node dist/bench/transport.js [--seconds <per row>]
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import type { Entry, Message } from '../src/raft/types.js';
import { Transport } from '../src/transport/transport.js';
import { decodeFrame, encodeFrame } from '../src/transport/codec.js';

const SENDER = 0x1111n;
const RECEIVER = 0x2222n;
const CLUSTER = 0x42n;
const ENTRIES_PER_MESSAGE = 64;
const ENTRY_BYTES = 256;
/** Messages sent but not yet delivered, at most (Raft's default maxInflightAppends is 256). */
const WINDOW = Number(argument("--window") ?? "256");

interface WorkerInput {
  senderUrl: string;
  counter: SharedArrayBuffer;
}

function argument(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

function appendMessage(index: number): Message {
  const entries: Entry[] = [];
  for (let i = 0; i < ENTRIES_PER_MESSAGE; i++) {
    entries.push({ term: 1, index: index + i, type: 'normal', data: new Uint8Array(ENTRY_BYTES).fill(i) });
  }
  return { type: 'append', from: SENDER, to: RECEIVER, term: 1, logTerm: 1, index: index - 1, commit: index, entries };
}

async function receiver(): Promise<void> {
  const input = workerData as WorkerInput;
  const delivered = new Int32Array(input.counter);
  let transport: Transport | undefined;
  transport = await Transport.start({
    clusterId: CLUSTER,
    memberId: RECEIVER,
    listenUrls: ['http://127.0.0.1:0'],
    onMessage: (message) => {
      Atomics.add(delivered, 0, 1);
      Atomics.notify(delivered, 0);
      if (message.type === 'heartbeat') {
        transport?.send([{ type: 'heartbeat-response', from: RECEIVER, to: SENDER, term: 1, context: message.context }]);
      }
    },
    onSnapshot: async () => {},
  });
  transport.addPeer(SENDER, [input.senderUrl]);
  parentPort?.postMessage({ url: transport.boundUrls[0] });
  parentPort?.on('message', () => {
    void transport?.stop().then(() => process.exit(0));
  });
}

function codecRow(seconds: number): void {
  const messages = [appendMessage(1)];
  let frames = 0;
  let bytes = 0;
  const started = performance.now();
  const deadline = started + seconds * 1000;
  while (performance.now() < deadline) {
    for (let i = 0; i < 100; i++) {
      const frame = encodeFrame(messages);
      const decoded = decodeFrame(frame);
      if (!decoded.ok) throw new Error(decoded.reason);
      bytes += frame.byteLength;
      frames++;
    }
  }
  const elapsed = (performance.now() - started) / 1000;
  console.log(
    `codec   encode+decode append(64x256B): ${(frames / elapsed).toFixed(0)} msgs/s, ${((frames * ENTRIES_PER_MESSAGE * ENTRY_BYTES) / elapsed / 1e6).toFixed(0)} MB/s payload, frame ${bytes / frames} B`,
  );
}

async function main(): Promise<void> {
  const seconds = Number(argument('--seconds') ?? '3');
  codecRow(seconds);
  const counter = new SharedArrayBuffer(4);
  const delivered = new Int32Array(counter);
  let responses = 0;
  let onResponse: () => void = () => {};
  const sender = await Transport.start({
    clusterId: CLUSTER,
    memberId: SENDER,
    listenUrls: ['http://127.0.0.1:0'],
    onMessage: () => {
      responses++;
      onResponse();
    },
    onSnapshot: async () => {},
    onEvent: (event) => {
      if (event.kind === 'messages-dropped') console.log('DROPPED', event);
    },
  });
  const worker = new Worker(new URL(import.meta.url), { workerData: { senderUrl: sender.boundUrls[0], counter } satisfies WorkerInput });
  const receiverUrl = await new Promise<string>((resolve) => worker.once('message', (message: { url: string }) => resolve(message.url)));
  sender.addPeer(RECEIVER, [receiverUrl]);
  while (!sender.peerStatus(RECEIVER).connected) await new Promise((resolve) => setTimeout(resolve, 5));

  // Round-trip latency: one heartbeat out, one response back, sequentially.
  const samples: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const started = performance.now();
    const answered = new Promise<void>((resolve) => {
      onResponse = resolve;
    });
    sender.send([{ type: 'heartbeat', from: SENDER, to: RECEIVER, term: 1, commit: i, context: null }]);
    await answered;
    samples.push(performance.now() - started);
  }
  samples.sort((x, y) => x - y);
  const pct = (p: number): string => samples[Math.floor((samples.length - 1) * p)].toFixed(3);
  console.log(`latency heartbeat round trip: p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${pct(1)} ms`);

  for (const perSend of [1, 8]) {
    const batch: Message[] = [];
    for (let i = 0; i < perSend; i++) batch.push(appendMessage(1 + i * ENTRIES_PER_MESSAGE));
    const base = Atomics.load(delivered, 0);
    let sent = 0;
    const started = performance.now();
    const deadline = started + seconds * 1000;
    while (performance.now() < deadline) {
      if (sent - (Atomics.load(delivered, 0) - base) + perSend > WINDOW) {
        // Let the sender's event loop run (gRPC writes) while the receiver catches up.
        await new Promise((resolve) => setImmediate(resolve));
        continue;
      }
      sender.send(batch);
      sent += perSend;
      if (sent % Math.max(perSend, 16) === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    while (Atomics.load(delivered, 0) - base < sent) await new Promise((resolve) => setTimeout(resolve, 1));
    const elapsed = (performance.now() - started) / 1000;
    const payloadMb = (sent * ENTRIES_PER_MESSAGE * ENTRY_BYTES) / 1e6;
    console.log(
      `loopback append(64x256B), ${perSend}/send: ${(sent / elapsed).toFixed(0)} msgs/s, ${(payloadMb / elapsed).toFixed(1)} MB/s payload, ${((sent * ENTRIES_PER_MESSAGE) / elapsed).toFixed(0)} entries/s`,
    );
  }
  worker.postMessage('stop');
  await new Promise((resolve) => worker.once('exit', resolve));
  await sender.stop();
}

if (isMainThread) await main();
else await receiver();

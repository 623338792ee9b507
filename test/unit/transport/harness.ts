// Test harness: transports on 127.0.0.1 port 0 that record what they receive and report.
import * as net from 'node:net';
import type { Message, NodeId, SnapshotMessage } from '../../../src/raft/types.js';
import { Transport, type TransportOptions } from '../../../src/transport/transport.js';
import type { TransportEvent } from '../../../src/transport/events.js';
import { CLUSTER_ID } from './messages.js';

/** A transport plus everything its callbacks saw. */
export interface Member {
  readonly id: NodeId;
  readonly transport: Transport;
  readonly url: string;
  readonly received: Message[];
  readonly events: TransportEvent[];
  readonly unreachable: NodeId[];
  readonly snapshots: Array<{ message: SnapshotMessage; data: Uint8Array }>;
}

export interface MemberOptions {
  clusterId?: bigint;
  listenUrl?: string;
  maxQueuedMessagesPerPeer?: number;
  /** Replaces the default onSnapshot (which reads everything into `snapshots`). */
  onSnapshot?: TransportOptions['onSnapshot'];
  /** Serves member calls (default: none, calls are refused as unimplemented). */
  onCall?: TransportOptions['onCall'];
  /** Replaces the default onMessage (which records into `received`). */
  onMessage?: TransportOptions['onMessage'];
  /** Which peer ids were removed (default: none). */
  isRemoved?: TransportOptions['isRemoved'];
  /** Listen on a port picked beforehand and advertise it in handshakes (default: advertise nothing). */
  advertise?: boolean;
  /** Which HTTP/2 the transport speaks (default: the transport's, kvd's own). */
  http2?: TransportOptions['http2'];
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address !== 'object') throw new Error('no port');
  return address.port;
}

export async function startMember(id: NodeId, options: MemberOptions = {}): Promise<Member> {
  const received: Message[] = [];
  const events: TransportEvent[] = [];
  const unreachable: NodeId[] = [];
  const snapshots: Member['snapshots'] = [];
  const listenUrl = options.advertise === true ? `http://127.0.0.1:${await freePort()}` : (options.listenUrl ?? 'http://127.0.0.1:0');
  const transport = await Transport.start({
    clusterId: options.clusterId ?? CLUSTER_ID,
    memberId: id,
    listenUrls: [listenUrl],
    ...(options.advertise === true ? { advertisePeerUrls: [listenUrl] } : {}),
    onMessage: options.onMessage ?? ((message) => received.push(message)),
    ...(options.onCall === undefined ? {} : { onCall: options.onCall }),
    ...(options.isRemoved === undefined ? {} : { isRemoved: options.isRemoved }),
    onSnapshot:
      options.onSnapshot ??
      (async (message, data) => {
        const parts: Uint8Array[] = [];
        for await (const chunk of data) parts.push(chunk.slice());
        snapshots.push({ message, data: Buffer.concat(parts) });
      }),
    onUnreachable: (peer) => unreachable.push(peer),
    onEvent: (event) => events.push(event),
    ...(options.maxQueuedMessagesPerPeer === undefined ? {} : { maxQueuedMessagesPerPeer: options.maxQueuedMessagesPerPeer }),
    ...(options.http2 === undefined ? {} : { http2: options.http2 }),
  });
  return { id, transport, url: transport.boundUrls[0], received, events, unreachable, snapshots };
}

/** Connects every member to every other one. */
export function mesh(members: readonly Member[]): void {
  for (const a of members) for (const b of members) if (a !== b) a.transport.addPeer(b.id, [b.url]);
}

/** Waits until `condition()` holds, polling every few ms, failing after `timeoutMs`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

export async function stopAll(members: readonly Member[]): Promise<void> {
  await Promise.all(members.map((member) => member.transport.stop()));
}

/**
 * Snapshot streaming over the `Snapshot` method: the sender writes a handshake, a header record
 * (the Raft 'snapshot' message), the application's data as chunk records of at most
 * {@link SNAPSHOT_CHUNK_BYTES}, and an end record with the total byte count; the receiver hands
 * the header and an `AsyncIterable` of the chunks to the application and answers once the
 * application's promise settles. Flow control is end to end: the receiver stops reading from
 * the network while the application has {@link MAX_BUFFERED_SNAPSHOT_CHUNKS} chunks unread, and
 * the sender waits for gRPC's 'drain' before reading more data.
 */
import * as grpc from '@grpc/grpc-js';
import { assert } from '../util/assert.js';
import { errorMessage } from '../util/errors.js';
import type { NodeId, SnapshotMessage } from '../raft/types.js';
import { decodeSnapshotRecord, encodeHandshake, encodeSnapshotRecord, type Handshake } from './codec.js';
import { formatMemberId, type TransportEvent } from './events.js';
import { createPeerClient, PEER_SNAPSHOT_PATH, toBuffer, type PeerAddress, type PeerCredentials } from './service.js';

/** Largest chunk record payload; larger application chunks are split. */
export const SNAPSHOT_CHUNK_BYTES = 1024 * 1024;
/** Unread chunks the receiver buffers before it stops reading from the network. */
export const MAX_BUFFERED_SNAPSHOT_CHUNKS = 16;

function identity(bytes: Buffer): Buffer {
  return bytes;
}

/** What sending needs from the transport. */
export interface SnapshotSendContext {
  readonly clusterId: bigint;
  readonly memberId: NodeId;
  readonly maxFrameBytes: number;
  /** Credentials for https peers. */
  readonly credentials?: PeerCredentials;
  emit(event: TransportEvent): void;
}

/** A snapshot transfer in progress, cancellable by the transport's stop(). */
export interface SnapshotSend {
  readonly result: Promise<'finished' | 'failed'>;
  cancel(): void;
}

type CallOutcome = { ok: true } | { ok: false; reason: string };

/**
 * Streams `message` and `data()` to the peer at `address`. Never rejects: any failure
 * (connection, refusal, the data iterator throwing, the receiver's application rejecting, cancel)
 * yields 'failed' and a 'snapshot-send-failed' event.
 */
export function startSnapshotSend(
  context: SnapshotSendContext,
  address: PeerAddress,
  message: SnapshotMessage,
  data: () => AsyncIterable<Uint8Array>,
): SnapshotSend {
  const client = createPeerClient(address, context.maxFrameBytes, context.credentials);
  let outcome: CallOutcome | undefined;
  let settle: (value: CallOutcome) => void = () => {};
  const response = new Promise<CallOutcome>((resolve) => {
    settle = resolve;
  });
  /** Writers waiting for 'drain'; all released when the call ends (nothing more will drain). */
  const drainWaiters = new Set<() => void>();
  const call = client.makeClientStreamRequest<Uint8Array, Buffer>(PEER_SNAPSHOT_PATH, toBuffer, identity, (error) => {
    outcome = error === null || error === undefined ? { ok: true } : { ok: false, reason: `${grpc.status[error.code] ?? error.code}: ${error.details}` };
    for (const wake of drainWaiters) wake();
    drainWaiters.clear();
    settle(outcome);
  });
  call.on('drain', () => {
    for (const wake of drainWaiters) wake();
    drainWaiters.clear();
  });
  const chunkBytes = Math.max(1, Math.min(SNAPSHOT_CHUNK_BYTES, context.maxFrameBytes - 16));

  /** Writes one record; waits for 'drain' (or the call's end) when gRPC pushes back. */
  async function write(bytes: Uint8Array): Promise<void> {
    if (call.write(bytes) || outcome !== undefined) return;
    await new Promise<void>((resolve) => drainWaiters.add(resolve));
  }

  async function run(): Promise<'finished' | 'failed'> {
    const started = performance.now();
    const peer = formatMemberId(message.to);
    let bytes = 0;
    try {
      await write(encodeHandshake({ clusterId: context.clusterId, from: context.memberId, to: message.to }));
      await write(encodeSnapshotRecord({ kind: 'header', message }));
      for await (const chunk of data()) {
        for (let offset = 0; offset < chunk.byteLength && outcome === undefined; offset += chunkBytes) {
          const piece = chunk.subarray(offset, Math.min(chunk.byteLength, offset + chunkBytes));
          bytes += piece.byteLength;
          await write(encodeSnapshotRecord({ kind: 'chunk', data: piece }));
        }
        if (outcome !== undefined) break; // the receiver answered (or the call failed) early
      }
      if (outcome === undefined) {
        await write(encodeSnapshotRecord({ kind: 'end', totalBytes: bytes }));
        call.end();
      }
    } catch (error: unknown) {
      call.cancel();
      context.emit({ kind: 'snapshot-send-failed', peer, reason: `reading snapshot data: ${errorMessage(error)}` });
      await response;
      client.close();
      return 'failed';
    }
    const final = await response;
    client.close();
    if (!final.ok) {
      context.emit({ kind: 'snapshot-send-failed', peer, reason: final.reason });
      return 'failed';
    }
    context.emit({ kind: 'snapshot-sent', peer, bytes, durationMs: Math.round(performance.now() - started) });
    return 'finished';
  }

  // Cancelling settles the result at once, even while run() still awaits a slow data source
  // (it notices the cancelled call when the source next yields, and closes it).
  let cancelled: () => void = () => {};
  const cancellation = new Promise<'failed'>((resolve) => {
    cancelled = () => resolve('failed');
  });
  return {
    result: Promise.race([run(), cancellation]),
    cancel: () => {
      call.cancel();
      cancelled();
    },
  };
}

/**
 * The chunks of one incoming snapshot, as the application reads them. Single use: a second
 * iteration or a concurrent `next()` is refused. Breaking out of the loop early discards the rest.
 */
export class SnapshotChunks implements AsyncIterable<Uint8Array> {
  /** Invariant: length <= MAX_BUFFERED_SNAPSHOT_CHUNKS + 1 (reading pauses at the maximum). */
  #chunks: Uint8Array[] = [];
  #end: { kind: 'open' } | { kind: 'finished' } | { kind: 'failed'; error: Error } | { kind: 'abandoned' } = { kind: 'open' };
  #waiter: { resolve: (result: IteratorResult<Uint8Array>) => void; reject: (error: Error) => void } | undefined;
  #iterated = false;
  readonly #pause: () => void;
  readonly #resume: () => void;

  constructor(flow: { pause: () => void; resume: () => void }) {
    this.#pause = flow.pause;
    this.#resume = flow.resume;
  }

  /** True once the application stopped reading early. */
  get abandoned(): boolean {
    return this.#end.kind === 'abandoned';
  }

  push(chunk: Uint8Array): void {
    if (this.#end.kind !== 'open') return;
    if (this.#waiter !== undefined) {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter.resolve({ done: false, value: chunk });
      return;
    }
    this.#chunks.push(chunk);
    if (this.#chunks.length >= MAX_BUFFERED_SNAPSHOT_CHUNKS) this.#pause();
  }

  finish(): void {
    if (this.#end.kind !== 'open') return;
    this.#end = { kind: 'finished' };
    this.#wake();
  }

  fail(error: Error): void {
    if (this.#end.kind !== 'open') return;
    this.#end = { kind: 'failed', error };
    this.#wake();
  }

  #wake(): void {
    if (this.#waiter === undefined || this.#chunks.length > 0) return;
    const waiter = this.#waiter;
    this.#waiter = undefined;
    if (this.#end.kind === 'failed') waiter.reject(this.#end.error);
    else waiter.resolve({ done: true, value: undefined });
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    assert(!this.#iterated, 'snapshot chunks can be iterated only once');
    this.#iterated = true;
    return {
      next: () => this.#next(),
      return: async () => {
        if (this.#end.kind === 'open') {
          this.#end = { kind: 'abandoned' };
          this.#chunks = [];
          this.#resume();
        }
        return { done: true, value: undefined };
      },
    };
  }

  #next(): Promise<IteratorResult<Uint8Array>> {
    if (this.#waiter !== undefined) return Promise.reject(new Error('concurrent next() on snapshot chunks'));
    const chunk = this.#chunks.shift();
    if (chunk !== undefined) {
      if (this.#chunks.length === MAX_BUFFERED_SNAPSHOT_CHUNKS / 2) this.#resume();
      return Promise.resolve({ done: false, value: chunk });
    }
    switch (this.#end.kind) {
      case 'finished':
      case 'abandoned':
        return Promise.resolve({ done: true, value: undefined });
      case 'failed':
        return Promise.reject(this.#end.error);
      case 'open':
        this.#resume();
        return new Promise((resolve, reject) => {
          this.#waiter = { resolve, reject };
        });
    }
  }
}

/** What receiving needs from the transport. */
export interface SnapshotReceiveContext {
  readonly memberId: NodeId;
  /** Time allowed for the handshake and header records to arrive. */
  readonly handshakeTimeoutMs: number;
  /** Validates a handshake; a refusal ends the call with FAILED_PRECONDITION. */
  checkHandshake(bytes: Uint8Array, remote: string): { ok: true; handshake: Handshake } | { ok: false; code: grpc.status; reason: string };
  onSnapshot(message: SnapshotMessage, data: AsyncIterable<Uint8Array>): Promise<void>;
  emit(event: TransportEvent): void;
}

/** Serves one `Snapshot` call. */
export function serveSnapshotCall(
  context: SnapshotReceiveContext,
  call: grpc.ServerReadableStream<Buffer, Buffer>,
  callback: grpc.sendUnaryData<Buffer>,
): void {
  const remote = call.getPeer();
  const started = performance.now();
  let phase: 'handshake' | 'header' | 'data' | 'ended' | 'answered' = 'handshake';
  let handshake: Handshake | undefined;
  let chunks: SnapshotChunks | undefined;
  let received = 0;

  const answer = (error: { code: grpc.status; reason: string } | undefined): void => {
    if (phase === 'answered') return;
    phase = 'answered';
    clearTimeout(handshakeTimer);
    if (error === undefined) callback(null, Buffer.alloc(0));
    else callback({ code: error.code, details: error.reason, name: 'SnapshotError', message: error.reason, metadata: new grpc.Metadata() });
  };
  const peerName = (): string | undefined => (handshake === undefined ? undefined : formatMemberId(handshake.from));
  const refuse = (code: grpc.status, reason: string): void => {
    if (phase === 'answered') return;
    chunks?.fail(new Error(reason));
    const peer = peerName();
    context.emit(peer === undefined ? { kind: 'snapshot-receive-failed', remote, reason } : { kind: 'snapshot-receive-failed', peer, remote, reason });
    answer({ code, reason });
  };

  const onHeader = (message: SnapshotMessage): void => {
    assert(handshake !== undefined, 'header follows the handshake');
    if (message.from !== handshake.from || message.to !== context.memberId) {
      refuse(grpc.status.INVALID_ARGUMENT, 'snapshot message does not match the stream handshake');
      return;
    }
    phase = 'data';
    const stream = new SnapshotChunks({ pause: () => call.pause(), resume: () => call.resume() });
    chunks = stream;
    const from = formatMemberId(handshake.from);
    let installed: Promise<void>;
    try {
      installed = context.onSnapshot(message, stream);
    } catch (error: unknown) {
      installed = Promise.reject(error);
    }
    installed.then(
      () => {
        if (phase === 'answered') return;
        context.emit({ kind: 'snapshot-received', peer: from, bytes: received, durationMs: Math.round(performance.now() - started) });
        answer(undefined);
        call.resume(); // drain whatever the application did not read
      },
      (error: unknown) => refuse(grpc.status.ABORTED, `snapshot not installed: ${errorMessage(error)}`),
    );
  };

  // A caller that never says hello (or never sends the header) must not hold a snapshot slot.
  const handshakeTimer = setTimeout(() => {
    if (phase === 'handshake' || phase === 'header') refuse(grpc.status.DEADLINE_EXCEEDED, 'no snapshot handshake and header in time');
  }, context.handshakeTimeoutMs);
  call.on('close', () => clearTimeout(handshakeTimer));

  call.on('data', (bytes: Buffer) => {
    switch (phase) {
      case 'handshake': {
        const checked = context.checkHandshake(bytes, remote);
        if (!checked.ok) {
          refuse(checked.code, checked.reason);
          return;
        }
        handshake = checked.handshake;
        phase = 'header';
        context.emit({ kind: 'inbound-stream-opened', peer: formatMemberId(handshake.from), remote, method: 'snapshot' });
        return;
      }
      case 'header': {
        const record = decodeSnapshotRecord(bytes);
        if (!record.ok || record.value.kind !== 'header') {
          const reason = record.ok ? `expected a snapshot header, got ${record.value.kind}` : record.reason;
          context.emit({ kind: 'bad-frame', direction: 'inbound', peer: peerName(), remote, reason });
          refuse(grpc.status.INVALID_ARGUMENT, `bad snapshot header: ${reason}`);
          return;
        }
        clearTimeout(handshakeTimer);
        onHeader(record.value.message);
        return;
      }
      case 'data': {
        assert(chunks !== undefined, 'data phase has a chunk stream');
        const record = decodeSnapshotRecord(bytes);
        if (!record.ok || record.value.kind === 'header') {
          const reason = record.ok ? 'second snapshot header' : record.reason;
          context.emit({ kind: 'bad-frame', direction: 'inbound', peer: peerName(), remote, reason });
          refuse(grpc.status.INVALID_ARGUMENT, `bad snapshot record: ${reason}`);
          return;
        }
        if (record.value.kind === 'chunk') {
          received += record.value.data.byteLength;
          chunks.push(record.value.data);
          return;
        }
        if (record.value.totalBytes !== received) {
          refuse(grpc.status.DATA_LOSS, `snapshot truncated: sender sent ${record.value.totalBytes} bytes, received ${received}`);
          return;
        }
        phase = 'ended';
        chunks.finish();
        return;
      }
      case 'ended':
        refuse(grpc.status.INVALID_ARGUMENT, 'data after the snapshot end record');
        return;
      case 'answered':
        return; // the application already answered; the rest is discarded
    }
  });
  call.on('end', () => {
    if (phase === 'handshake' || phase === 'header' || phase === 'data') refuse(grpc.status.DATA_LOSS, 'snapshot stream ended early');
  });
  call.on('cancelled', () => {
    chunks?.fail(new Error('snapshot stream cancelled by the sender'));
    if (phase !== 'answered') {
      phase = 'answered';
      context.emit({ kind: 'snapshot-receive-failed', peer: peerName(), remote, reason: 'cancelled by the sender' });
    }
  });
  call.on('error', (error: unknown) => {
    refuse(grpc.status.UNAVAILABLE, `snapshot stream failed: ${errorMessage(error)}`);
  });
}

/**
 * The caller's side of member calls on a `Calls` stream (./service.ts): one long-lived
 * bidirectional stream per callee over the caller's client connection, carrying numbered call
 * frames (./codec.ts). An answer is matched to its call by number, never by arrival order, so a
 * call that timed out cannot shift later answers onto the wrong request.
 *
 * Why a stream: a unary gRPC call per member call cost the caller about as much CPU as the work
 * it forwards (grpc-js builds an intercepting call, a resolving call, a load-balancing call, an
 * HTTP/2 stream, a deadline timer and a captured stack for each). Under etcd's lease benchmark a
 * follower forwarding keep-alive batches to the leader spent about a quarter of its time there.
 *
 * A stream that ends or fails rejects every call still waiting with a {@link CallStreamFailure}
 * (the transport turns it into 'stopped', or falls back to unary calls when the callee does not
 * serve `Calls`); the next call opens a new stream. Bounds: the transport admits at most
 * MAX_OUTBOUND_CALLS_PER_PEER calls in flight per callee; each waits for its answer or its deadline.
 */
import { KvdError } from '../util/errors.js';
import { KeyedTable } from '../util/keyed-table.js';
import { decodeCallAnswerFrame, encodeCallFrame, type CallRequest, type CallResponse } from './codec.js';
import { PEER_CALLS_PATH, type PeerChannel, type PeerStreamCall } from './service.js';

/** The stream ended (or failed) before a call's answer came: its gRPC status code when it had one. */
export class CallStreamFailure extends Error {
  readonly code: number | undefined;

  constructor(code: number | undefined, message: string) {
    super(message);
    this.name = 'CallStreamFailure';
    this.code = code;
  }
}

interface Waiting {
  readonly id: number;
  readonly resolve: (response: CallResponse) => void;
  readonly reject: (error: unknown) => void;
  readonly timer: NodeJS.Timeout;
}

const CALL_ID_LIMIT = 0x1_0000_0000;

export class CallStream {
  readonly #call: PeerStreamCall;
  /** Calls waiting for their answer, by call id; not a Map: one in and one out per call (see KeyedTable). */
  readonly #waiting = new KeyedTable<number, Waiting>((waiting) => waiting.id, (id) => id);
  #nextId = 0;
  #failure: CallStreamFailure | undefined;

  constructor(channel: PeerChannel) {
    this.#call = channel.openStream(PEER_CALLS_PATH, {
      onMessage: (bytes) => this.#onAnswer(bytes),
      onDrain: () => undefined, // calls are bounded by the transport's in-flight limit
      onEnd: (code, details) => this.#end(new CallStreamFailure(code, code === undefined ? details : `${code}: ${details}`)),
    });
  }

  /** True once the stream ended: it takes no more calls. */
  get ended(): boolean {
    return this.#failure !== undefined;
  }

  /**
   * Sends one call. Resolves with the callee's answer; rejects with KvdError('timeout') at
   * `deadlineMs`, or with a {@link CallStreamFailure} when the stream ends first.
   */
  send(request: CallRequest, deadlineMs: number): Promise<CallResponse> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure);
    const callId = this.#takeId();
    const frame = encodeCallFrame(callId, deadlineMs - Date.now(), request);
    return new Promise<CallResponse>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.#waiting.delete(callId) !== undefined) reject(new KvdError('timeout'));
      }, Math.max(1, deadlineMs - Date.now()));
      this.#waiting.add({ id: callId, resolve, reject, timer });
      this.#call.write(frame);
    });
  }

  /** Ends the stream: calls still waiting are rejected with `reason`. */
  close(reason: string): void {
    this.#end(new CallStreamFailure(undefined, reason));
    this.#call.cancel();
  }

  /** The next number not in use (numbers wrap; a stream never has 2^32 calls in flight). */
  #takeId(): number {
    let callId = this.#nextId;
    while (this.#waiting.get(callId) !== undefined) callId = (callId + 1) % CALL_ID_LIMIT;
    this.#nextId = (callId + 1) % CALL_ID_LIMIT;
    return callId;
  }

  #onAnswer(bytes: Buffer): void {
    const decoded = decodeCallAnswerFrame(bytes);
    if (!decoded.ok) {
      this.close(`bad member call answer: ${decoded.reason}`);
      return;
    }
    const { callId, response } = decoded.value;
    const waiting = this.#waiting.delete(callId);
    if (waiting === undefined) return; // the call timed out: its late answer goes nowhere
    clearTimeout(waiting.timer);
    waiting.resolve(response);
  }

  #end(failure: CallStreamFailure): void {
    if (this.#failure !== undefined) return;
    this.#failure = failure;
    const waiting = this.#waiting.values();
    this.#waiting.clear();
    for (const { timer, reject } of waiting) {
      clearTimeout(timer);
      reject(failure);
    }
  }
}

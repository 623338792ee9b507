/**
 * The KV service (Range, RangeStream, Put, DeleteRange, Txn, Compact) over a {@link KvBackend}.
 * Requests are decoded and validated once (src/api/codec.ts), write requests are checked
 * against max-request-bytes, and results are encoded back with the backend's header.
 *
 * Range memory (issue 11, item 7). One client must not be able to exhaust the member's memory:
 * - Range reads the result in pages at one revision (KvBackend.openRange) and encodes each page
 *   straight into protobuf wire bytes, dropping the key-value objects. A response over
 *   `maxResponseBytes` fails with RESOURCE_EXHAUSTED and grpc-go's text as etcd sends it,
 *   `grpc: trying to send message larger than max (N vs. M)`, as soon as it would pass the
 *   limit: the rest of the range is then only measured, a page at a time, to report N.
 * - RangeStream sends each page as one chunk, waits until the transport took it (HTTP/2 flow
 *   control, so a client that does not read stops the server), then reads the next page.
 * - Member-wide, the bytes of range responses being built or waiting to be sent (a unary
 *   response until its call ends, a RangeStream chunk until the transport took it) are held in
 *   one {@link ByteBudget}; a Range that would go beyond it fails with `etcdserver: too many
 *   requests` (RESOURCE_EXHAUSTED) instead of buffering.
 *
 * What it costs in memory: the budget's bytes, plus while a unary response is handed to grpc-js
 * one more copy of it (the message is joined into one buffer, which grpc-js copies into its
 * frame), plus a page being read per call. Txn responses (ranges inside a txn) are still built
 * whole and are not counted.
 */
import type * as grpc from '@grpc/grpc-js';
import { KvdError, responseTooLargeMessage } from '../util/errors.js';
import type { KeyValue, RangeCursor, RangeRequest, RangeResponse } from '../store/mvcc/types.js';
import { DerivedCallOptions, type CallOptions, type KvBackend, type RangeReadOptions, type ResponseHeader } from './backend.js';
import { callOptionsOf, requestBytesOf, toStatus, unary, type HandlerContext } from './call.js';
import {
  EncodedMessage,
  passEncodedResponses,
  decodeCompactRequest,
  decodeDeleteRangeRequest,
  decodePutRequest,
  decodePutRequestWire,
  decodeRangeRequest,
  decodeRangeRequestWire,
  decodeTxnRequest,
  readRequestsFromWire,
  encodeDeleteRangeResponse,
  encodeHeader,
  encodePutResponseWire,
  encodeRangeHeaderWire,
  encodeRangeKvsWire,
  encodeRangeStreamChunkWire,
  encodeRangeTailWire,
  encodeTxnResponse,
  rangeKvsWireBytes,
  type PbMessage,
} from './codec.js';
import { assert } from '../util/assert.js';

/** KV methods whose requests are measured against max-request-bytes. */
export const KV_SIZED_METHODS = ['Put', 'DeleteRange', 'Txn'] as const;

/** Target size of one RangeStream chunk's key-values, in bytes (approximate), when the backend cannot page. */
export const RANGE_STREAM_CHUNK_BYTES_MAX = 1024 * 1024;

/**
 * Default largest Range response, encoded (`--max-response-bytes`). A unary response is one
 * buffer in memory and grpc-js copies it once more into its frame, so a member needs about twice
 * this per response being sent. 512 MiB lets through the 1,000,000 keys × 256-byte values of the
 * issue's measurement (about 290 MB encoded); larger results must be paged by the client (limit
 * and range_end) or read with RangeStream. etcd's own limit is grpc-go's 2 GiB − 1, which a Node
 * member could not build twice.
 */
export const DEFAULT_MAX_RESPONSE_BYTES = 512 * 1024 * 1024;

/** Options of {@link createKvService}. */
export interface KvServiceOptions extends HandlerContext {
  readonly backend: KvBackend;
  /** etcd --max-request-bytes: larger writes fail with "request is too large". */
  readonly maxRequestBytes: number;
  /** etcd --max-txn-ops. */
  readonly maxTxnOps: number;
  /** Largest Range response in encoded bytes; default {@link DEFAULT_MAX_RESPONSE_BYTES}. */
  readonly maxResponseBytes?: number;
  /**
   * Member-wide bound on bytes of range responses being built or waiting to be sent; default
   * (and minimum) `maxResponseBytes`, so one maximal response always fits when nothing else is
   * in flight. Beyond it Range fails with "etcdserver: too many requests".
   */
  readonly rangeBytesInflightMax?: number;
  /** The member-wide budget itself, when several services share one (tests); overrides rangeBytesInflightMax. */
  readonly rangeBudget?: ByteBudget;
}

/**
 * Bytes held by range responses across the member (a counting semaphore that refuses instead of
 * queueing). Invariant: 0 <= usedBytes <= maxBytes.
 */
export class ByteBudget {
  readonly maxBytes: number;
  #usedBytes = 0;
  #peakUsedBytes = 0;

  constructor(maxBytes: number) {
    assert(Number.isSafeInteger(maxBytes) && maxBytes > 0, 'a positive byte budget');
    this.maxBytes = maxBytes;
  }

  /** Bytes held now. */
  get usedBytes(): number {
    return this.#usedBytes;
  }

  /** The most bytes ever held at once (for metrics and tests). */
  get peakUsedBytes(): number {
    return this.#peakUsedBytes;
  }

  /** A holder for one call's bytes; release it when the call ends (idempotent). */
  hold(): BudgetHold {
    return new Hold(this);
  }

  /** Takes `bytes` for a holder, or throws KvdError('too-many-requests') when there is no room. */
  take(bytes: number): void {
    assert(bytes >= 0, 'non-negative bytes');
    if (this.#usedBytes + bytes > this.maxBytes) throw new KvdError('too-many-requests');
    this.#usedBytes += bytes;
    if (this.#usedBytes > this.#peakUsedBytes) this.#peakUsedBytes = this.#usedBytes;
  }

  /** Gives back `bytes` a holder took. */
  give(bytes: number): void {
    this.#usedBytes -= bytes;
  }
}

/**
 * One call's share of a budget, an object of a class: an object literal with a getter (as this
 * was) costs V8 a slow runtime path, about 0.3 µs, on every Range.
 */
class Hold implements BudgetHold {
  readonly #budget: ByteBudget;
  #held = 0;

  constructor(budget: ByteBudget) {
    this.#budget = budget;
  }

  add(bytes: number): void {
    this.#budget.take(bytes);
    this.#held += bytes;
  }

  remove(bytes: number): void {
    assert(bytes >= 0 && bytes <= this.#held, 'a holder gives back what it holds');
    this.#budget.give(bytes);
    this.#held -= bytes;
  }

  release(): void {
    this.#budget.give(this.#held);
    this.#held = 0;
  }

  get bytes(): number {
    return this.#held;
  }
}

/** One call's share of a {@link ByteBudget}. */
export interface BudgetHold {
  /** Takes more bytes, or throws KvdError('too-many-requests') when the budget has no room. */
  add(bytes: number): void;
  /** Gives some back. */
  remove(bytes: number): void;
  /** Gives everything back; later adds are held again until the next release. */
  release(): void;
  readonly bytes: number;
}

/**
 * The KV service definition with Range's, RangeStream's and Put's serializers passing pre-encoded
 * responses ({@link EncodedMessage}) through, and their requests read from wire bytes
 * ({@link decodeRangeRequestWire}, {@link decodePutRequestWire}). Register the handlers of {@link createKvService}
 * under this definition.
 */
export function kvServiceDefinition(definition: grpc.ServiceDefinition): grpc.ServiceDefinition {
  return readRequestsFromWire(passEncodedResponses(definition, ['Range', 'RangeStream', 'Put']), {
    Range: decodeRangeRequestWire,
    RangeStream: decodeRangeRequestWire,
    Put: decodePutRequestWire,
  });
}

/** Builds the handlers of etcdserverpb.KV (register them under {@link kvServiceDefinition}). */
export function createKvService(options: KvServiceOptions): grpc.UntypedServiceImplementation {
  const { backend } = options;
  const maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  const budget = options.rangeBudget ?? new ByteBudget(Math.max(options.rangeBytesInflightMax ?? maxResponseBytes, maxResponseBytes));
  const reads: RangeReads = { backend, maxResponseBytes, budget };
  const checkSize = (request: PbMessage): void => {
    if (requestBytesOf(request) > options.maxRequestBytes) throw new KvdError('request-too-large');
  };
  return {
    Range: rangeHandler(options, reads),
    RangeStream: rangeStreamHandler(options, reads),
    // Not async (a promise and a suspended frame more per write): what they throw, unary answers.
    Put: unary('Put', options, (request, call) => {
      checkSize(request);
      return backend.write({ type: 'put', request: decodePutRequest(request) }, call).then(({ header, result }) => {
        assert(result.type === 'put', 'put yields a put result');
        return encodePutResponseWire(header, result.response);
      });
    }),
    DeleteRange: unary('DeleteRange', options, (request, call) => {
      checkSize(request);
      return backend.write({ type: 'delete-range', request: decodeDeleteRangeRequest(request) }, call).then(({ header, result }) => {
        assert(result.type === 'delete-range', 'delete-range yields a delete-range result');
        return encodeDeleteRangeResponse(header, result.response);
      });
    }),
    Txn: unary('Txn', options, (request, call) => {
      checkSize(request);
      const decoded = decodeTxnRequest(request, { maxTxnOps: options.maxTxnOps });
      return backend.write({ type: 'txn', request: decoded }, call).then(({ header, result }) => {
        assert(result.type === 'txn', 'txn yields a txn result');
        return encodeTxnResponse(header, result.response);
      });
    }),
    Compact: unary('Compact', options, (request, call) =>
      backend.write({ type: 'compact', request: decodeCompactRequest(request) }, call).then(({ header, result }) => {
        assert(result.type === 'compact', 'compact yields a compact result');
        return { header: encodeHeader(header) };
      })),
  };
}

/** What the range handlers share. */
interface RangeReads {
  readonly backend: KvBackend;
  readonly maxResponseBytes: number;
  readonly budget: ByteBudget;
}

/** The options of a paged read: the call's deadline, cancellation and credentials, and the sort bound. */
class RangeOpenOptions extends DerivedCallOptions implements RangeReadOptions {
  readonly sortBytesMax: number;

  constructor(call: CallOptions, sortBytesMax: number) {
    super(call);
    this.sortBytesMax = sortBytesMax;
  }
}

/** Opens a paged read, through the backend's cursor or, without one, over a materialised result. */
async function openRange(reads: RangeReads, request: RangeRequest, options: CallOptions): Promise<{ header: ResponseHeader; cursor: RangeCursor }> {
  if (reads.backend.openRange !== undefined) return reads.backend.openRange(request, new RangeOpenOptions(options, reads.maxResponseBytes));
  const { header, response } = await reads.backend.range(request, options);
  return { header, cursor: cursorOver(response, header.revision) };
}

/**
 * Range: pages encoded as they come. The encoded response stays held in the budget until the
 * call ends (grpc-js emits 'cancelled' after every call), because grpc-js keeps its framed copy
 * until HTTP/2 has sent it.
 */
function rangeHandler(options: KvServiceOptions, reads: RangeReads): grpc.handleUnaryCall<PbMessage, unknown> {
  return (call, callback) => {
    const callOptions = callOptionsOf(call as grpc.ServerUnaryCall<unknown, unknown>, options);
    const hold = reads.budget.hold();
    call.once('cancelled', () => hold.release());
    buildRangeResponse(reads, call.request, callOptions, hold).then(
      (response) => {
        callOptions.release();
        if (call.cancelled) hold.release();
        callback(null, response);
      },
      (error: unknown) => {
        callOptions.release();
        hold.release();
        callback(toStatus(error, { method: 'Range', onUnexpectedError: options.onUnexpectedError }));
      },
    );
  };
}

async function buildRangeResponse(reads: RangeReads, pb: PbMessage, options: CallOptions, hold: BudgetHold): Promise<EncodedMessage> {
  const request = decodeRangeRequest(pb);
  const one = reads.backend.rangeKey?.(request, options);
  if (one !== undefined) return encodeWholeRange(reads, one instanceof Promise ? await one : one, hold);
  const { header, cursor } = await openRange(reads, request, options);
  try {
    const max = reads.maxResponseBytes;
    const headerField = encodeRangeHeaderWire(header);
    let parts: Buffer[] | undefined = [headerField];
    let bytes = headerField.length;
    for await (const page of cursor) {
      if (parts === undefined) {
        bytes += rangeKvsWireBytes(page); // over the limit already: only measure, to report N
        continue;
      }
      const encoded = encodeRangeKvsWire(page);
      bytes += encoded.length;
      if (bytes > max) {
        parts = undefined;
        hold.release();
        continue;
      }
      hold.add(encoded.length);
      parts.push(encoded);
    }
    const { count, more } = cursor.summary();
    const tail = encodeRangeTailWire(more, count);
    bytes += tail.length;
    if (parts === undefined || bytes > max) throw new KvdError('response-too-large', { detail: responseTooLargeMessage(bytes, max) });
    parts.push(tail);
    return new EncodedMessage(parts);
  } finally {
    await cursor.return();
  }
}

/** A Range read whole (one key: a record at most), encoded as buildRangeResponse encodes pages. */
function encodeWholeRange(reads: RangeReads, read: { header: ResponseHeader; response: RangeResponse }, hold: BudgetHold): EncodedMessage {
  const headerField = encodeRangeHeaderWire(read.header);
  const kvs = encodeRangeKvsWire(read.response.kvs);
  const tail = encodeRangeTailWire(read.response.more, read.response.count);
  const bytes = headerField.length + kvs.length + tail.length;
  if (bytes > reads.maxResponseBytes) throw new KvdError('response-too-large', { detail: responseTooLargeMessage(bytes, reads.maxResponseBytes) });
  hold.add(kvs.length);
  return new EncodedMessage([headerField, kvs, tail]);
}

/**
 * RangeStream (etcd 3.7): the Range result in chunks at one revision, one page per chunk, header
 * on the first chunk, count and more on the last (the layout this service has always sent).
 * Sorting and min/max filters are refused with UNIMPLEMENTED as in etcd. Each chunk is written
 * only after the previous one was taken by the transport, and the next page is read while one is
 * being sent, so a stream holds at most three pages (being sent, waiting to learn whether it is
 * the last, being read), all counted in the budget; a chunk the client does not
 * take within the request timeout fails the stream with "request timed out" (it would otherwise
 * keep its revision pinned against compaction for as long as the client stalls).
 */
function rangeStreamHandler(options: KvServiceOptions, reads: RangeReads): grpc.handleServerStreamingCall<PbMessage, unknown> {
  return (call) => {
    const callOptions = callOptionsOf(call as grpc.ServerWritableStream<unknown, unknown>, options);
    const hold = reads.budget.hold();
    streamRange(reads, call, callOptions, hold, options.defaultRequestTimeoutMs).then(
      () => {
        hold.release();
        call.end();
      },
      (error: unknown) => {
        hold.release();
        call.emit('error', toStatus(error, { method: 'RangeStream', onUnexpectedError: options.onUnexpectedError }));
      },
    );
  };
}

async function streamRange(reads: RangeReads, call: grpc.ServerWritableStream<PbMessage, unknown>, options: CallOptions, hold: BudgetHold, idleTimeoutMs: number): Promise<void> {
  const request = decodeRangeRequest(call.request);
  const filtered = request.minModRevision !== 0 || request.maxModRevision !== 0 || request.minCreateRevision !== 0 || request.maxCreateRevision !== 0;
  if (request.sortOrder !== 'none' || filtered) throw new KvdError('unimplemented', { detail: 'etcdserver: RangeStream does not support sorting or revision filters' });
  const { header, cursor } = await openRange(reads, request, options);
  try {
    let headerField: Buffer | undefined = encodeRangeHeaderWire(header);
    let sending: Promise<void> | undefined;
    let pending: Buffer | undefined;
    const send = (parts: Buffer[], kvsBytes: number): Promise<void> => {
      const chunk = encodeRangeStreamChunkWire(headerField === undefined ? parts : [headerField, ...parts]);
      headerField = undefined;
      return writeChunk(call, new EncodedMessage([chunk]), options.signal, idleTimeoutMs).then(() => hold.remove(kvsBytes));
    };
    for await (const page of cursor) {
      const encoded = encodeRangeKvsWire(page);
      hold.add(encoded.length);
      // Holds at most the chunk in flight and this page: wait for the previous send first.
      await sending;
      if (pending !== undefined) sending = send([pending], pending.length);
      pending = encoded;
    }
    await sending;
    const { count, more } = cursor.summary();
    const last = pending ?? Buffer.alloc(0);
    await send([last, encodeRangeTailWire(more, count)], last.length);
  } finally {
    await cursor.return();
  }
}

/**
 * Writes one message and resolves once the transport took it (grpc-js calls back after HTTP/2
 * accepted the frame, which its flow control delays while the client does not read). Rejects
 * when the call ends (signal) or after `idleTimeoutMs` without progress.
 */
function writeChunk(call: grpc.ServerWritableStream<PbMessage, unknown>, message: EncodedMessage, signal: AbortSignal, idleTimeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    let settled = false;
    const settle = (error: unknown): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      if (error === undefined || error === null) resolve();
      else reject(error);
    };
    const onAbort = (): void => settle(signal.reason ?? new KvdError('watch-canceled', { detail: 'etcdserver: request canceled' }));
    const timer = setTimeout(() => settle(new KvdError('timeout')), idleTimeoutMs);
    signal.addEventListener('abort', onAbort);
    call.write(message, (error: Error | null | undefined) => settle(error));
  });
}

/** A cursor over a result a backend without openRange built whole (pages of about RANGE_STREAM_CHUNK_BYTES_MAX). */
function cursorOver(response: RangeResponse, revision: number): RangeCursor {
  const pages = response.kvs.length === 0 ? [] : splitRangeResponse(response, RANGE_STREAM_CHUNK_BYTES_MAX).map((chunk) => chunk.kvs);
  let at = 0;
  let state: 'open' | 'done' = 'open';
  const cursor: RangeCursor = {
    revision,
    readRevision: revision,
    [Symbol.asyncIterator]: () => cursor,
    next: async () => {
      if (at < pages.length) return { done: false, value: pages[at++] };
      state = 'done';
      return { done: true, value: undefined };
    },
    return: async () => ({ done: true, value: undefined }),
    summary: () => {
      assert(state === 'done', 'summary() after the last page');
      return { count: response.count, more: response.more };
    },
  };
  return cursor;
}

function kvBytes(kv: KeyValue): number {
  return kv.key.length + kv.value.length + 48;
}

/** Splits a range result into RangeStream chunks; header on the first, count and more on the last (etcd 3.7 layout). */
export function splitRangeResponse(response: RangeResponse, chunkBytesMax: number): RangeResponse[] {
  const chunks: KeyValue[][] = [[]];
  let bytes = 0;
  for (const kv of response.kvs) {
    const size = kvBytes(kv);
    if (bytes + size > chunkBytesMax && chunks[chunks.length - 1].length > 0) {
      chunks.push([]);
      bytes = 0;
    }
    chunks[chunks.length - 1].push(kv);
    bytes += size;
  }
  return chunks.map((kvs, index) => {
    const last = index === chunks.length - 1;
    return { kvs, more: last ? response.more : false, count: last ? response.count : 0 };
  });
}

/**
 * The KV service (Range, RangeStream, Put, DeleteRange, Txn, Compact) over a {@link KvBackend}.
 * Requests are decoded and validated once (src/api/codec.ts), write requests are checked
 * against max-request-bytes, and results are encoded back with the backend's header.
 */
import type * as grpc from '@grpc/grpc-js';
import { KvdError } from '../util/errors.js';
import type { KeyValue, RangeResponse } from '../store/mvcc/types.js';
import type { KvBackend } from './backend.js';
import { callOptionsOf, requestBytesOf, toStatus, unary, waitForDrain, type HandlerContext } from './call.js';
import {
  decodeCompactRequest,
  decodeDeleteRangeRequest,
  decodePutRequest,
  decodeRangeRequest,
  decodeTxnRequest,
  encodeDeleteRangeResponse,
  encodeHeader,
  encodeKeyValue,
  encodePutResponse,
  encodeRangeResponse,
  encodeTxnResponse,
  type PbMessage,
} from './codec.js';
import { assert } from '../util/assert.js';

/** KV methods whose requests are measured against max-request-bytes. */
export const KV_SIZED_METHODS = ['Put', 'DeleteRange', 'Txn'] as const;

/** Target size of one RangeStream chunk's key-values, in bytes (approximate). */
export const RANGE_STREAM_CHUNK_BYTES_MAX = 1024 * 1024;

/** Options of {@link createKvService}. */
export interface KvServiceOptions extends HandlerContext {
  readonly backend: KvBackend;
  /** etcd --max-request-bytes: larger writes fail with "request is too large". */
  readonly maxRequestBytes: number;
  /** etcd --max-txn-ops. */
  readonly maxTxnOps: number;
}

/** Builds the handlers of etcdserverpb.KV. */
export function createKvService(options: KvServiceOptions): grpc.UntypedServiceImplementation {
  const { backend } = options;
  const checkSize = (request: PbMessage): void => {
    if (requestBytesOf(request) > options.maxRequestBytes) throw new KvdError('request-too-large');
  };
  return {
    Range: unary('Range', options, async (request, call) => {
      const decoded = decodeRangeRequest(request);
      const { header, response } = await backend.range(decoded, call);
      return encodeRangeResponse(header, response);
    }),
    RangeStream: rangeStreamHandler(options),
    Put: unary('Put', options, async (request, call) => {
      checkSize(request);
      const { header, result } = await backend.write({ type: 'put', request: decodePutRequest(request) }, call);
      assert(result.type === 'put', 'put yields a put result');
      return encodePutResponse(header, result.response);
    }),
    DeleteRange: unary('DeleteRange', options, async (request, call) => {
      checkSize(request);
      const { header, result } = await backend.write({ type: 'delete-range', request: decodeDeleteRangeRequest(request) }, call);
      assert(result.type === 'delete-range', 'delete-range yields a delete-range result');
      return encodeDeleteRangeResponse(header, result.response);
    }),
    Txn: unary('Txn', options, async (request, call) => {
      checkSize(request);
      const decoded = decodeTxnRequest(request, { maxTxnOps: options.maxTxnOps });
      const { header, result } = await backend.write({ type: 'txn', request: decoded }, call);
      assert(result.type === 'txn', 'txn yields a txn result');
      return encodeTxnResponse(header, result.response);
    }),
    Compact: unary('Compact', options, async (request, call) => {
      const { header, result } = await backend.write({ type: 'compact', request: decodeCompactRequest(request) }, call);
      assert(result.type === 'compact', 'compact yields a compact result');
      return { header: encodeHeader(header) };
    }),
  };
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

/**
 * RangeStream (etcd 3.7): the Range result in chunks at one revision. Sorting and min/max
 * filters are refused with UNIMPLEMENTED as in etcd. This implementation reads the whole range
 * once and streams it in pieces, honouring the stream's flow control.
 */
function rangeStreamHandler(options: KvServiceOptions): grpc.handleServerStreamingCall<PbMessage, PbMessage> {
  return (call) => {
    const callOptions = callOptionsOf(call as grpc.ServerWritableStream<unknown, unknown>, options);
    const run = async (): Promise<void> => {
      const request = decodeRangeRequest(call.request);
      const filtered = request.minModRevision !== 0 || request.maxModRevision !== 0 || request.minCreateRevision !== 0 || request.maxCreateRevision !== 0;
      if (request.sortOrder !== 'none' || filtered) throw new KvdError('unimplemented', { detail: 'etcdserver: RangeStream does not support sorting or revision filters' });
      const { header, response } = await options.backend.range(request, callOptions);
      const chunks = splitRangeResponse(response, RANGE_STREAM_CHUNK_BYTES_MAX);
      for (const [index, chunk] of chunks.entries()) {
        if (callOptions.signal.aborted) return;
        const encoded: PbMessage = { kvs: chunk.kvs.map(encodeKeyValue), more: chunk.more, count: String(chunk.count) };
        if (index === 0) encoded.header = encodeHeader(header);
        if (!call.write({ range_response: encoded })) await waitForDrain(call, callOptions.signal);
      }
      call.end();
    };
    run().catch((error: unknown) => {
      call.emit('error', toStatus(error, { method: 'RangeStream', onUnexpectedError: options.onUnexpectedError }));
    });
  };
}

/**
 * etcd's JSON gateway (grpc-gateway in etcd 3.4): `POST /v3/<service>/<method>` (and the same
 * under `/v3beta/`) with JSON bodies, answered by the very gRPC handlers the client port serves.
 *
 * How a call runs: the JSON body is read with Go's JSON rules (go-json.ts), mapped onto the
 * request message and encoded to protobuf wire bytes (json-codec.ts); the gRPC method's own
 * deserializer turns those bytes into the request object (so request-size accounting, decode
 * timing and validation are the gRPC path's); the registered handler — with its guards and
 * metrics — runs on a small in-process stand-in for a grpc-js call; its response is serialized
 * by the method's serializer and mapped back to JSON. This is grpc-gateway's design (a gRPC
 * client of the server's own services) without the loopback connection.
 *
 * Streams (`/v3/watch`, `/v3/lease/keepalive`, `/v3/maintenance/snapshot`): the body may hold
 * several requests back to back; each response is one chunk `{"result":{...}}\n`; an error after
 * the stream started is one chunk `{"error":{grpc_code, http_code, message, http_status}}`. A
 * first request that does not decode answers HTTP 500 with code 2 (etcd's behaviour); a later one
 * ends the request side quietly. The stream stays open after the body ends while the service keeps
 * it open (a watch with watchers).
 *
 * Bounds: a request body (or one streamed request) larger than {@link bodyBytesMax} is refused
 * with RESOURCE_EXHAUSTED before it is buffered whole; a streamed response is written one message
 * at a time and the next waits until the socket took the previous one, so a client that does not
 * read makes the service's own bounded queue fill up (watch: the hub then holds the watcher back)
 * instead of buffering here.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Duplex } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import * as grpc from '@grpc/grpc-js';
import type protobuf from 'protobufjs';
import { GoJsonSyntaxError, parseGoJsonBody, readGoJson, type GoJsonValue } from './go-json.js';
import { JsonMappingError, jsonToWire, protoRoot, wireToJson } from './json-codec.js';
import type { ServiceEntry } from './server.js';
import { errorMessage } from '../util/errors.js';
import type { UnexpectedErrorHandler } from './call.js';

/** grpc-gateway v1's HTTP status for each gRPC code (etcd 3.4). */
export const HTTP_STATUS_OF_CODE: readonly number[] = [200, 408, 500, 400, 504, 404, 409, 403, 429, 412, 409, 400, 501, 500, 503, 500, 401];

const STATUS_TEXT: Record<number, string> = {
  200: 'OK', 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 408: 'Request Timeout', 409: 'Conflict',
  412: 'Precondition Failed', 429: 'Too Many Requests', 500: 'Internal Server Error', 501: 'Not Implemented', 503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

/** Headers etcd 3.4 puts on every client-port HTTP answer (its CORS wrapper with the default `*`). */
export const CORS_HEADERS: Readonly<Record<string, string>> = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'POST, GET, OPTIONS, PUT, DELETE',
  'Access-Control-Allow-Headers': 'accept, content-type, authorization',
};

/** Gateway paths (after `/v3/` or `/v3beta/`) → service and method. */
export const GATEWAY_ROUTES: Readonly<Record<string, readonly [string, string]>> = {
  'kv/range': ['etcdserverpb.KV', 'Range'],
  'kv/put': ['etcdserverpb.KV', 'Put'],
  'kv/deleterange': ['etcdserverpb.KV', 'DeleteRange'],
  'kv/txn': ['etcdserverpb.KV', 'Txn'],
  'kv/compaction': ['etcdserverpb.KV', 'Compact'],
  watch: ['etcdserverpb.Watch', 'Watch'],
  'lease/grant': ['etcdserverpb.Lease', 'LeaseGrant'],
  'lease/revoke': ['etcdserverpb.Lease', 'LeaseRevoke'],
  'kv/lease/revoke': ['etcdserverpb.Lease', 'LeaseRevoke'],
  'lease/keepalive': ['etcdserverpb.Lease', 'LeaseKeepAlive'],
  'lease/timetolive': ['etcdserverpb.Lease', 'LeaseTimeToLive'],
  'kv/lease/timetolive': ['etcdserverpb.Lease', 'LeaseTimeToLive'],
  'lease/leases': ['etcdserverpb.Lease', 'LeaseLeases'],
  'kv/lease/leases': ['etcdserverpb.Lease', 'LeaseLeases'],
  'cluster/member/add': ['etcdserverpb.Cluster', 'MemberAdd'],
  'cluster/member/remove': ['etcdserverpb.Cluster', 'MemberRemove'],
  'cluster/member/update': ['etcdserverpb.Cluster', 'MemberUpdate'],
  'cluster/member/list': ['etcdserverpb.Cluster', 'MemberList'],
  'cluster/member/promote': ['etcdserverpb.Cluster', 'MemberPromote'],
  'maintenance/alarm': ['etcdserverpb.Maintenance', 'Alarm'],
  'maintenance/status': ['etcdserverpb.Maintenance', 'Status'],
  'maintenance/defragment': ['etcdserverpb.Maintenance', 'Defragment'],
  // etcd 3.4 maps both Hash and HashKV to this path; its router serves Hash.
  'maintenance/hash': ['etcdserverpb.Maintenance', 'Hash'],
  'maintenance/snapshot': ['etcdserverpb.Maintenance', 'Snapshot'],
  'maintenance/transfer-leadership': ['etcdserverpb.Maintenance', 'MoveLeader'],
  'auth/enable': ['etcdserverpb.Auth', 'AuthEnable'],
  'auth/disable': ['etcdserverpb.Auth', 'AuthDisable'],
  'auth/status': ['etcdserverpb.Auth', 'AuthStatus'],
  'auth/authenticate': ['etcdserverpb.Auth', 'Authenticate'],
  'auth/user/add': ['etcdserverpb.Auth', 'UserAdd'],
  'auth/user/get': ['etcdserverpb.Auth', 'UserGet'],
  'auth/user/list': ['etcdserverpb.Auth', 'UserList'],
  'auth/user/delete': ['etcdserverpb.Auth', 'UserDelete'],
  'auth/user/changepw': ['etcdserverpb.Auth', 'UserChangePassword'],
  'auth/user/grant': ['etcdserverpb.Auth', 'UserGrantRole'],
  'auth/user/revoke': ['etcdserverpb.Auth', 'UserRevokeRole'],
  'auth/role/add': ['etcdserverpb.Auth', 'RoleAdd'],
  'auth/role/get': ['etcdserverpb.Auth', 'RoleGet'],
  'auth/role/list': ['etcdserverpb.Auth', 'RoleList'],
  'auth/role/delete': ['etcdserverpb.Auth', 'RoleDelete'],
  'auth/role/grant': ['etcdserverpb.Auth', 'RoleGrantPermission'],
  'auth/role/revoke': ['etcdserverpb.Auth', 'RoleRevokePermission'],
  'lock/lock': ['v3lockpb.Lock', 'Lock'],
  'lock/unlock': ['v3lockpb.Lock', 'Unlock'],
  'election/campaign': ['v3electionpb.Election', 'Campaign'],
  'election/proclaim': ['v3electionpb.Election', 'Proclaim'],
  'election/leader': ['v3electionpb.Election', 'Leader'],
  'election/observe': ['v3electionpb.Election', 'Observe'],
  'election/resign': ['v3electionpb.Election', 'Resign'],
};

/** Options of {@link createJsonGateway}. */
export interface JsonGatewayOptions {
  readonly services: readonly ServiceEntry[];
  /** etcd --max-request-bytes: the gRPC receive limit is this + 512 KiB, as for gRPC clients. */
  readonly maxRequestBytes: number;
  readonly grpcOverheadBytes: number;
  readonly onUnexpectedError: UnexpectedErrorHandler;
}

interface Route {
  readonly method: grpc.MethodDefinition<unknown, unknown>;
  readonly handler: grpc.UntypedHandleCall;
  readonly requestType: protobuf.Type;
  readonly responseType: protobuf.Type;
  readonly name: string;
}

/** A gRPC status as handlers produce it. */
interface Status {
  readonly code: number;
  readonly details: string;
}

/**
 * Largest JSON body read for one request: base64 makes bytes 4/3 larger and JSON adds names and
 * quotes, so 2× the gRPC receive limit (plus 64 KiB) holds any request the gRPC path accepts.
 */
export function bodyBytesMax(options: { maxRequestBytes: number; grpcOverheadBytes: number }): number {
  return 2 * (options.maxRequestBytes + options.grpcOverheadBytes) + 64 * 1024;
}

/**
 * Builds the gateway. The returned function answers requests under `/v3/` and `/v3beta/` and
 * returns true; for other paths it returns false and leaves the response alone.
 */
export function createJsonGateway(options: JsonGatewayOptions): (request: IncomingMessage, response: ServerResponse) => boolean {
  const routes = new Map<string, Route>();
  const root = protoRoot();
  for (const [path, [serviceName, methodName]] of Object.entries(GATEWAY_ROUTES)) {
    const entry = options.services.find((service) => service.name === serviceName);
    const method = entry?.definition[methodName];
    const handler = entry?.handlers[methodName];
    if (entry === undefined || method === undefined || handler === undefined) continue;
    const reflected = root.lookupService(serviceName).methods[methodName];
    reflected.resolve();
    const requestType = reflected.resolvedRequestType;
    const responseType = reflected.resolvedResponseType;
    if (requestType === null || responseType === null) continue;
    routes.set(path, { method, handler, requestType, responseType, name: `${serviceName}/${methodName}` });
  }
  const recvLimit = options.maxRequestBytes + options.grpcOverheadBytes;
  const bodyMax = bodyBytesMax(options);
  return (request, response) => {
    const url = request.url ?? '/';
    const path = url.split('?')[0];
    const match = /^\/v3(?:beta)?\/(.+)$/.exec(path);
    if (match === null) return false;
    const route = routes.get(match[1]);
    if (route === undefined) {
      plainError(response, 404, 'Not Found');
      return true;
    }
    if (request.method !== 'POST') {
      plainError(response, 405, 'Method Not Allowed');
      return true;
    }
    const call = { route, request, response, recvLimit, bodyMax, onUnexpectedError: options.onUnexpectedError };
    if (route.method.requestStream || route.method.responseStream) serveStream(call);
    else serveUnary(call);
    return true;
  };
}

interface GatewayCall {
  readonly route: Route;
  readonly request: IncomingMessage;
  readonly response: ServerResponse;
  readonly recvLimit: number;
  readonly bodyMax: number;
  readonly onUnexpectedError: UnexpectedErrorHandler;
}

/** Go's http.Error: text/plain, nosniff, the text and a newline. */
export function plainError(response: ServerResponse, status: number, text: string): void {
  response.writeHead(status, { ...CORS_HEADERS, 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
  response.end(`${text}\n`);
}

/** grpc-gateway's unary error body: `{"error":M,"message":M,"code":C}` with the mapped HTTP status. */
export function jsonError(response: ServerResponse, status: Status): void {
  if (response.headersSent) {
    response.end();
    return;
  }
  const httpStatus = HTTP_STATUS_OF_CODE[status.code] ?? 500;
  response.writeHead(httpStatus, { ...CORS_HEADERS, 'Content-Type': 'application/json' });
  response.end(JSON.stringify({ error: status.details, message: status.details, code: status.code }));
}

function statusOf(error: unknown): Status {
  if (error instanceof GoJsonSyntaxError || error instanceof JsonMappingError) return { code: grpc.status.INVALID_ARGUMENT, details: error.message };
  const candidate = error as Partial<Status> | null;
  if (candidate !== null && typeof candidate === 'object' && typeof candidate.code === 'number') return { code: candidate.code, details: String(candidate.details ?? '') };
  return { code: grpc.status.UNKNOWN, details: errorMessage(error) };
}

/** gRPC metadata from the HTTP headers, as grpc-gateway forwards them. */
function metadataOf(request: IncomingMessage): grpc.Metadata {
  const metadata = new grpc.Metadata();
  const authorization = request.headers.authorization;
  if (typeof authorization === 'string' && authorization !== '') {
    // A header grpc-js refuses as metadata (bytes outside printable ASCII) cannot be a token:
    // it is passed on in a form that no token matches, so the caller gets etcd's "invalid auth
    // token" instead of the member failing on the throw (found by the fuzzer).
    metadata.set('authorization', PRINTABLE_ASCII.test(authorization) ? authorization : `invalid:${Buffer.from(authorization, 'latin1').toString('base64')}`);
  }
  for (const [name, value] of Object.entries(request.headers)) {
    if (!name.startsWith('grpc-metadata-') || value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value]) {
      try {
        metadata.add(name.slice('grpc-metadata-'.length), item);
      } catch (error: unknown) {
        void error; // a key or value grpc-js cannot carry: dropped, as grpc-gateway drops malformed metadata
      }
    }
  }
  return metadata;
}

/** What grpc-js accepts in an ASCII metadata value. */
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;

function tooLarge(bytes: number, limit: number): Status {
  return { code: grpc.status.RESOURCE_EXHAUSTED, details: `grpc: received message larger than max (${bytes} vs. ${limit})` };
}

/** The request object the gRPC service sees, from one JSON value. Throws Go's errors or a size status. */
function decodeRequest(call: GatewayCall, value: GoJsonValue | undefined): unknown {
  const bytes = jsonToWire(call.route.requestType, value);
  if (bytes.length > call.recvLimit) throw tooLarge(bytes.length, call.recvLimit);
  return call.route.method.requestDeserialize(bytes);
}

/** Reads the whole body (bounded); resolves undefined after answering 429 when it is too large. */
function readBody(call: GatewayCall): Promise<string | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    let done = false;
    call.request.on('data', (chunk: Buffer) => {
      if (done) return;
      bytes += chunk.length;
      if (bytes > call.bodyMax) {
        done = true;
        call.response.setHeader('Connection', 'close');
        jsonError(call.response, tooLarge(bytes, call.recvLimit));
        call.request.destroy();
        resolve(undefined);
        return;
      }
      chunks.push(chunk);
    });
    call.request.on('end', () => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks, bytes).toString('utf8'));
    });
    call.request.on('error', () => {
      if (done) return;
      done = true;
      resolve(undefined);
    });
  });
}

/** An in-process stand-in for grpc-js' server call: what the service handlers use of it. */
class UnaryCallStandIn extends Duplex {
  readonly request: unknown;
  readonly metadata: grpc.Metadata;
  cancelled = false;

  constructor(request: unknown, metadata: grpc.Metadata) {
    super({ objectMode: true, read() { /* requests are pushed */ } });
    this.request = request;
    this.metadata = metadata;
  }

  getDeadline(): grpc.Deadline {
    return Infinity;
  }

  getPeer(): string {
    return 'json-gateway';
  }

  getPath(): string {
    return '';
  }

  sendMetadata(): void {
    // HTTP headers are written by the gateway.
  }
}

function serveUnary(call: GatewayCall): void {
  const { route, response } = call;
  readBody(call).then((text) => {
    if (text === undefined) return;
    let requestObject: unknown;
    try {
      requestObject = decodeRequest(call, parseGoJsonBody(text));
    } catch (error: unknown) {
      jsonError(response, statusOf(error));
      return;
    }
    const stand = new UnaryCallStandIn(requestObject, metadataOf(call.request));
    response.once('close', () => {
      // grpc-js emits 'cancelled' when any call ends; handlers release per-call resources on it.
      stand.cancelled = !response.writableFinished;
      stand.emit('cancelled');
    });
    const callback = (error: unknown, value?: unknown): void => {
      if (error !== null && error !== undefined) {
        jsonError(response, statusOf(error));
        return;
      }
      let body: string;
      try {
        body = wireToJson(route.responseType, route.method.responseSerialize(value));
      } catch (failure: unknown) {
        call.onUnexpectedError(failure, { method: route.name });
        jsonError(response, { code: grpc.status.INTERNAL, details: errorMessage(failure) });
        return;
      }
      response.writeHead(200, { ...CORS_HEADERS, 'Content-Type': 'application/json' });
      response.end(body);
    };
    (route.handler as (call: unknown, callback: unknown) => void)(stand, callback);
  }, (error: unknown) => call.onUnexpectedError(error, { method: route.name }));
}

/**
 * A streaming call: requests are pushed into the readable side as they decode; responses the
 * service writes go out as chunks, one at a time (the write callback waits for the socket).
 */
class StreamCallStandIn extends Duplex {
  readonly request: unknown;
  readonly metadata: grpc.Metadata;
  cancelled = false;
  readonly #send: (message: unknown, done: (error?: Error | null) => void) => void;
  readonly #finish: () => void;

  constructor(options: { request: unknown; metadata: grpc.Metadata; send: (message: unknown, done: (error?: Error | null) => void) => void; finish: () => void; onReadWanted: () => void }) {
    super({ objectMode: true, highWaterMark: 16, read: options.onReadWanted });
    this.request = options.request;
    this.metadata = options.metadata;
    this.#send = options.send;
    this.#finish = options.finish;
  }

  override _write(message: unknown, _encoding: BufferEncoding, done: (error?: Error | null) => void): void {
    this.#send(message, done);
  }

  override _final(done: (error?: Error | null) => void): void {
    this.#finish();
    done();
  }

  getDeadline(): grpc.Deadline {
    return Infinity;
  }

  getPeer(): string {
    return 'json-gateway';
  }

  getPath(): string {
    return '';
  }

  sendMetadata(): void {
    // HTTP headers are written by the gateway.
  }
}

function serveStream(call: GatewayCall): void {
  const { route, request, response } = call;
  const decoder = new StringDecoder('utf8');
  let pending = '';
  let started = false;
  let inputState: 'open' | 'ended' = 'open';
  let stand: StreamCallStandIn | undefined;
  let headersWritten = false;
  let closed = false;

  const writeHeaders = (): void => {
    if (headersWritten) return;
    headersWritten = true;
    response.writeHead(200, { ...CORS_HEADERS, 'Content-Type': 'application/json', 'Grpc-Metadata-Content-Type': 'application/grpc' });
  };
  const send = (message: unknown, done: (error?: Error | null) => void): void => {
    if (closed) {
      done();
      return;
    }
    let line: string;
    try {
      line = `{"result":${wireToJson(route.responseType, route.method.responseSerialize(message))}}\n`;
    } catch (error: unknown) {
      call.onUnexpectedError(error, { method: route.name });
      done();
      return;
    }
    writeHeaders();
    // One write per message: chunked encoding sends it as one chunk (APISIX reads a chunk as a message).
    response.write(line, () => done());
  };
  const finish = (): void => {
    if (closed) return;
    writeHeaders();
    response.end();
  };
  const streamError = (status: Status): void => {
    if (closed || response.writableEnded) return;
    const httpCode = HTTP_STATUS_OF_CODE[status.code] ?? 500;
    if (!headersWritten) {
      headersWritten = true;
      response.writeHead(httpCode, { ...CORS_HEADERS, 'Content-Type': 'application/json' });
    }
    const body = { grpc_code: status.code, http_code: httpCode, message: status.details, http_status: STATUS_TEXT[httpCode] ?? '' };
    response.end(JSON.stringify({ error: body }));
  };
  const endInput = (): void => {
    if (inputState === 'ended') return;
    inputState = 'ended';
    stand?.push(null);
  };

  /** Decodes whole requests from `pending`; the first one starts the call. */
  const drain = (final: boolean): void => {
    for (;;) {
      if (inputState === 'ended') return;
      let read;
      let requestObject: unknown;
      try {
        read = readGoJson(pending);
        if (read.kind === 'empty') {
          pending = '';
          break;
        }
        if (read.kind === 'incomplete') {
          if (!final) {
            if (pending.length > call.bodyMax) throw tooLarge(pending.length, call.recvLimit);
            return;
          }
          throw new GoJsonSyntaxError('unexpected EOF');
        }
        pending = pending.slice(read.end);
        requestObject = decodeRequest(call, read.value);
      } catch (error: unknown) {
        if (!started) {
          // etcd: a first request that does not decode fails the call before the stream starts (code 2, HTTP 500).
          const status = statusOf(error);
          inputState = 'ended';
          request.pause();
          jsonError(response, { code: grpc.status.UNKNOWN, details: status.details });
          return;
        }
        endInput(); // a later bad request closes the sending side, as etcd's gateway does
        return;
      }
      if (!started) start(requestObject);
      else if (!route.method.requestStream) endInput();
      else if (stand?.push(requestObject) === false) request.pause();
      if (!route.method.requestStream) {
        endInput();
        return;
      }
    }
    if (final) {
      if (!started) start(undefined);
      endInput();
    }
  };

  const start = (first: unknown): void => {
    started = true;
    stand = new StreamCallStandIn({
      request: route.method.requestStream ? undefined : (first ?? route.method.requestDeserialize(Buffer.alloc(0))),
      metadata: metadataOf(request),
      send,
      finish,
      onReadWanted: () => request.resume(),
    });
    stand.on('error', (status: unknown) => streamError(statusOf(status)));
    response.once('close', () => {
      const wasClosed = closed;
      closed = true;
      if (stand === undefined || wasClosed) return;
      stand.cancelled = !response.writableFinished;
      stand.emit('cancelled');
      stand.emit('close');
    });
    (route.handler as (call: unknown) => void)(stand);
    if (route.method.requestStream && first !== undefined) stand.push(first);
  };

  request.on('data', (chunk: Buffer) => {
    if (inputState === 'ended') return;
    pending += decoder.write(chunk);
    drain(false);
  });
  request.on('end', () => {
    pending += decoder.end();
    drain(true);
  });
  request.on('error', () => endInput());
}

/**
 * The client port: one TCP listener per client URL that serves gRPC (HTTP/2) and HTTP/1.1 (the
 * JSON gateway, /health, /metrics, ...) on the same port, as etcd does.
 *
 * Each accepted connection is sniffed: its first bytes are read until they either equal the
 * HTTP/2 client preface's start ("PRI * HTTP/2.0") or differ from it. HTTP/2 connections are
 * injected into the grpc-js server (`createConnectionInjector`); anything else is handed to an
 * HTTP/1.1 server (`emit('connection')`). The bytes read to decide are put back (`unshift`)
 * before the hand-over; both Node's HTTP/1 parser and its HTTP/2 session read what a socket has
 * buffered before reading from the handle.
 *
 * Used by the member process (`--frontends 0`, src/server/run.ts) and by every front-end process
 * (src/server/frontends/worker-main.ts); in a node:cluster worker, `listen(port)` shares the
 * primary's listening socket, so every front-end accepts on the same port.
 *
 * Bounds: a connection that sends nothing within {@link SNIFF_TIMEOUT_MS} is closed; at most
 * {@link SNIFF_BYTES_MAX} bytes are looked at.
 */
import * as net from 'node:net';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse, type Server as HttpServer } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { assert } from '../util/assert.js';
import type { BoundUrl } from './server.js';

/** The HTTP/2 connection preface's first line, as far as it needs to be seen to decide. */
const PREFACE = Buffer.from('PRI * HTTP/2.0');
/** Bytes looked at to decide (the preface's first line). */
export const SNIFF_BYTES_MAX = PREFACE.length;
/** A connection silent this long before deciding is closed. */
export const SNIFF_TIMEOUT_MS = 10_000;

/** Options of {@link startClientListener}. */
export interface ClientListenerOptions {
  readonly grpcServer: grpc.Server;
  /** Answers every HTTP/1.1 request (JSON gateway, health, metrics...). */
  readonly http: (request: IncomingMessage, response: ServerResponse) => void;
  /** Largest HTTP/1.1 header block (Node's default 16 KiB). */
  readonly maxHeaderBytes?: number;
}

/** A running client listener. */
export interface ClientListener {
  /** The URLs as given, with the ports actually bound. */
  readonly bound: readonly BoundUrl[];
  /** The HTTP/1.1 server (for tests and shutdown). */
  readonly httpServer: HttpServer;
  /** Stops accepting; open HTTP/1.1 connections are closed once idle (or at once with 'force'). */
  close(mode: 'graceful' | 'force'): Promise<void>;
}

/** Which protocol a connection's first bytes speak: 'undecided' until enough were seen. */
export function sniffProtocol(head: Buffer): 'http2' | 'http1' | 'undecided' {
  const length = Math.min(head.length, PREFACE.length);
  if (head.subarray(0, length).compare(PREFACE, 0, length) !== 0) return 'http1';
  return head.length >= PREFACE.length ? 'http2' : 'undecided';
}

/**
 * Binds a listener on every `http://host:port` URL (port 0 picks a free port; `https` is
 * refused: TLS is not supported yet) and serves gRPC and HTTP/1.1 on each.
 */
export async function startClientListener(urls: readonly string[], options: ClientListenerOptions): Promise<ClientListener> {
  const injector = options.grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const httpServer = createHttpServer({ maxHeaderSize: options.maxHeaderBytes, keepAlive: true }, options.http);
  const listeners: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  const bound: BoundUrl[] = [];
  const onConnection = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    socket.setNoDelay(true);
    let head: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(), SNIFF_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
      const protocol = sniffProtocol(head);
      if (protocol === 'undecided') return;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onEarlyError);
      socket.pause();
      socket.unshift(head);
      if (protocol === 'http2') {
        // The HTTP/2 session reads what the socket holds (socket.read()) on its next tick, then
        // the handle: the socket must stay paused, or the put-back bytes would be emitted to nobody.
        injector.injectConnection(socket);
        return;
      }
      httpServer.emit('connection', socket);
      socket.resume();
    };
    const onEarlyError = (): void => {
      clearTimeout(timer);
      socket.destroy();
    };
    socket.on('data', onData);
    socket.on('error', onEarlyError);
    socket.once('end', () => clearTimeout(timer));
  };
  try {
    for (const url of urls) {
      const parsed = new URL(url);
      if (parsed.protocol !== 'http:') throw new Error(`unsupported client URL ${url}: only http://host:port is supported`);
      const host = parsed.hostname.startsWith('[') ? parsed.hostname.slice(1, -1) : parsed.hostname;
      const port = parsed.port === '' ? 80 : Number(parsed.port);
      const listener = net.createServer({ keepAlive: true }, onConnection);
      listeners.push(listener);
      await new Promise<void>((resolve, reject) => {
        listener.once('error', reject);
        listener.listen({ host, port }, () => {
          listener.off('error', reject);
          resolve();
        });
      });
      const address = listener.address();
      assert(address !== null && typeof address === 'object', 'a TCP listener has an address');
      bound.push({ url, host, port: address.port });
    }
  } catch (error: unknown) {
    for (const listener of listeners) listener.close();
    throw error;
  }
  return {
    bound,
    httpServer,
    close: async (mode) => {
      // net.Server.close() completes only when every connection is gone (gRPC ones end with the
      // grpc-js server's shutdown): stop accepting now, do not wait for it.
      for (const listener of listeners) listener.close();
      if (mode === 'force') {
        injector.destroy();
        for (const socket of sockets) socket.destroy();
        httpServer.closeAllConnections();
      } else {
        httpServer.closeIdleConnections();
      }
    },
  };
}

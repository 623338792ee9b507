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
 * https URLs: the TLS handshake comes first, on the raw socket (`options.secure`, the server's
 * TLS module: certificates, client-certificate checks, refusals logged); then ALPN decides (h2 →
 * grpc-js, http/1.1 → the HTTP/1.1 server), and a client that negotiated no protocol is sniffed
 * as above on the decrypted stream.
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
import { H2GrpcServer, registeredRoutes, type H2GrpcStats } from '../util/h2/grpc-serve.js';
import { PREFACE as H2_PREFACE } from '../util/h2/connection.js';
import type { BoundUrl, SecureAccept } from './server.js';

/** The HTTP/2 connection preface's first line, as far as it needs to be seen to decide. */
const PREFACE = H2_PREFACE.subarray(0, H2_PREFACE.indexOf('\r\n'));
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
  /** TLS handshake of connections on https URLs (required when there is one). */
  readonly secure?: SecureAccept;
  /**
   * Which HTTP/2 serves gRPC: 'kvd' (default), kvd's own (src/util/h2), serving the grpc-js
   * server's registered methods; 'node', grpc-js on Node's HTTP/2 module.
   */
  readonly http2?: Http2Implementation;
  /** The receive limit of one gRPC message (as the grpc-js server's); needed with http2 'kvd'. */
  readonly maxReceiveBytes?: number;
  /** Counts what kvd's HTTP/2 served (tests). */
  readonly http2Stats?: H2GrpcStats;
}

/** Which HTTP/2 implementation serves the client port's gRPC. */
export type Http2Implementation = 'kvd' | 'node';

/** A running client listener. */
export interface ClientListener {
  /** The URLs as given, with the ports actually bound. */
  readonly bound: readonly BoundUrl[];
  /** The HTTP/1.1 server (for tests and shutdown). */
  readonly httpServer: HttpServer;
  /**
   * Stops accepting; open HTTP/1.1 connections are closed once idle (or at once with 'force').
   * 'graceful' also sends GOAWAY on kvd's HTTP/2 connections and waits up to `graceMs` for their
   * calls to end (grpc-js' own are the grpc-js server's to shut down).
   */
  close(mode: 'graceful' | 'force', graceMs?: number): Promise<void>;
}

/** Which protocol a connection's first bytes speak: 'undecided' until enough were seen. */
export function sniffProtocol(head: Buffer): 'http2' | 'http1' | 'undecided' {
  const length = Math.min(head.length, PREFACE.length);
  if (head.subarray(0, length).compare(PREFACE, 0, length) !== 0) return 'http1';
  return head.length >= PREFACE.length ? 'http2' : 'undecided';
}

/**
 * Binds a listener on every `http://host:port` and `https://host:port` URL (port 0 picks a free
 * port) and serves gRPC and HTTP/1.1 on each.
 */
export async function startClientListener(urls: readonly string[], options: ClientListenerOptions): Promise<ClientListener> {
  const injector = options.grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  const routes = options.http2 === 'node' ? undefined : registeredRoutes(options.grpcServer);
  if (options.http2 !== 'node') assert(routes !== undefined, 'grpc-js keeps its registered methods in a map (kvd\'s HTTP/2 serves them)');
  assert(routes === undefined || options.maxReceiveBytes !== undefined, 'kvd\'s HTTP/2 needs the receive limit');
  const h2 = routes === undefined ? undefined : new H2GrpcServer(routes, { maxReceiveBytes: options.maxReceiveBytes ?? 0, stats: options.http2Stats });
  /** Hands an HTTP/2 connection (preface not yet read; a sniffed one paused, its first bytes put back) to its server. */
  const serveHttp2 = (socket: net.Socket): void => {
    if (h2 === undefined) {
      injector.injectConnection(socket);
      return;
    }
    h2.serve(socket);
    socket.resume();
  };
  const httpServer = createHttpServer({ maxHeaderSize: options.maxHeaderBytes, keepAlive: true }, options.http);
  const listeners: net.Server[] = [];
  const sockets = new Set<net.Socket>();
  const bound: BoundUrl[] = [];
  /** Hands a (decrypted) connection to grpc-js or the HTTP/1.1 server, by ALPN or by its first bytes. */
  const serve = (socket: net.Socket, alpn: string | false | undefined): void => {
    if (alpn === 'h2') {
      serveHttp2(socket);
      return;
    }
    if (alpn === 'http/1.1') {
      httpServer.emit('connection', socket);
      return;
    }
    sniff(socket, alpn === false ? 'tls' : 'plain');
  };
  const sniff = (socket: net.Socket, transport: 'tls' | 'plain'): void => {
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
        // Node's HTTP/2 server refuses a TLS socket without ALPN h2: this one spoke HTTP/2 anyway.
        if (transport === 'tls') (socket as net.Socket & { alpnProtocol?: string | false }).alpnProtocol = 'h2';
        // Node's HTTP/2 session reads what the socket holds (socket.read()) on its next tick, then
        // the handle: the socket must stay paused, or the put-back bytes would be emitted to nobody.
        // kvd's attaches its reader first and then resumes the socket.
        serveHttp2(socket);
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
  const track = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  };
  const onConnection = (socket: net.Socket): void => {
    track(socket);
    socket.setNoDelay(true);
    serve(socket, undefined);
  };
  const onSecureConnection = (secure: SecureAccept) => (socket: net.Socket): void => {
    track(socket);
    socket.setNoDelay(true);
    socket.on('error', () => undefined); // handshake failures are reported by `secure`
    secure(socket).then(
      (served) => {
        if (served === undefined) return;
        track(served);
        serve(served, (served as net.Socket & { alpnProtocol?: string | false }).alpnProtocol ?? false);
      },
      () => socket.destroy(),
    );
  };
  try {
    for (const url of urls) {
      const parsed = new URL(url);
      if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error(`unsupported client URL ${url}: only http:// and https://host:port are supported`);
      if (parsed.protocol === 'https:' && options.secure === undefined) throw new Error(`client URL ${url} needs TLS settings (--cert-file and --key-file, or --auto-tls)`);
      const host = parsed.hostname.startsWith('[') ? parsed.hostname.slice(1, -1) : parsed.hostname;
      const port = parsed.port === '' ? (parsed.protocol === 'https:' ? 443 : 80) : Number(parsed.port);
      const listener = net.createServer({ keepAlive: true }, parsed.protocol === 'https:' && options.secure !== undefined ? onSecureConnection(options.secure) : onConnection);
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
    close: async (mode, graceMs = 0) => {
      // net.Server.close() completes only when every connection is gone (gRPC ones end with the
      // grpc-js server's shutdown): stop accepting now, do not wait for it.
      for (const listener of listeners) listener.close();
      h2?.close(mode === 'force');
      if (mode === 'force') {
        injector.destroy();
        for (const socket of sockets) socket.destroy();
        httpServer.closeAllConnections();
      } else {
        httpServer.closeIdleConnections();
        await h2?.whenClosed(graceMs);
      }
    },
  };
}

/**
 * Test doubles for the client's delivery guarantees: a fake etcd gRPC server (KV and Lease
 * services from the project's own protos, src/api/proto.ts) that records every request it
 * receives, and a TCP proxy (node:net) that can cut the client's connection after the server
 * has received a request and before its response gets back.
 *
 * The fake keeps just enough state to make duplicates visible: leases exist until revoked or
 * forgotten (a second revoke fails with etcd's "requested lease not found", a grant of an id in
 * use with "lease already exists"), and each Txn is the compare-and-swap "create the key if
 * absent" (succeeded only for the first one applied). Leases never expire by themselves.
 */
import * as net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { loadServices } from '../../../src/api/proto.js';

/** One request as the fake server received it. */
export interface ReceivedRequest {
  readonly method: string;
  readonly request: Record<string, unknown>;
}

/** The fake server: where it listens, what it received, and the fault switch. */
export interface FakeEtcd {
  /** `127.0.0.1:<port>`. */
  readonly endpoint: string;
  /** Every unary request and every LeaseKeepAlive message, in arrival order. */
  readonly received: ReceivedRequest[];
  /**
   * Arms a one-shot fault: the next request of `method` is received and recorded, then
   * `cut()` runs before the reply is sent (the reply goes to a dead connection).
   */
  cutBeforeReply(method: string, cut: () => void): void;
  /** How many requests of `method` arrived. */
  count(method: string): number;
  /** The ids of the leases that exist now (granted and not revoked or forgotten). */
  leaseIds(): string[];
  /** Drops a lease as if it had expired: its keep-alives are answered with TTL 0. */
  forgetLease(id: string): void;
  /** Stops the server at once. */
  close(): void;
}

const HEADER = { cluster_id: '1', member_id: '1', revision: '1', raft_term: '1' };

type Unary = (call: grpc.ServerUnaryCall<Record<string, unknown>, unknown>, callback: grpc.sendUnaryData<unknown>) => void;

/** Starts a fake etcd on 127.0.0.1 port 0. */
export async function startFakeEtcd(): Promise<FakeEtcd> {
  const services = loadServices();
  const received: ReceivedRequest[] = [];
  const cuts = new Map<string, () => void>();
  /** Lease id → its granted TTL in seconds (as the wire's decimal string). */
  const leases = new Map<string, string>();
  let nextLease = 1000;
  let txnApplied = false;

  /** Records the request, runs an armed cut, then answers with `reply()`. */
  function handle(method: string, reply: (request: Record<string, unknown>) => { error: grpc.ServiceError } | { response: unknown }): Unary {
    return (call, callback) => {
      received.push({ method, request: call.request });
      const cut = cuts.get(method);
      cuts.delete(method);
      cut?.();
      const outcome = reply(call.request);
      if ('error' in outcome) callback(outcome.error);
      else callback(null, outcome.response);
    };
  }

  /** A failure as etcd sends it: status code plus etcd's exact message text. */
  function failure(code: grpc.status, details: string): { error: grpc.ServiceError } {
    return { error: Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() }) };
  }

  const server = new grpc.Server();
  server.addService(services.KV.service, {
    Range: handle('Range', () => ({ response: { header: HEADER, kvs: [], count: '0' } })),
    Put: handle('Put', () => ({ response: { header: HEADER } })),
    DeleteRange: handle('DeleteRange', () => ({ response: { header: HEADER, deleted: '1' } })),
    Txn: handle('Txn', () => {
      const succeeded = !txnApplied;
      txnApplied = true;
      return { response: { header: HEADER, succeeded, responses: [] } };
    }),
    Compact: handle('Compact', () => ({ response: { header: HEADER } })),
  });
  server.addService(services.Lease.service, {
    LeaseGrant: handle('LeaseGrant', (request) => {
      const id = request.ID !== undefined && request.ID !== '0' ? String(request.ID) : String(nextLease++);
      if (leases.has(id)) return failure(grpc.status.FAILED_PRECONDITION, 'etcdserver: lease already exists');
      const ttl = String(request.TTL);
      leases.set(id, ttl);
      return { response: { header: HEADER, ID: id, TTL: ttl } };
    }),
    LeaseRevoke: handle('LeaseRevoke', (request) => (leases.delete(String(request.ID)) ? { response: { header: HEADER } } : failure(grpc.status.NOT_FOUND, 'etcdserver: requested lease not found'))),
    LeaseKeepAlive: (stream: grpc.ServerDuplexStream<Record<string, unknown>, unknown>) => {
      stream.on('data', (request: Record<string, unknown>) => {
        received.push({ method: 'LeaseKeepAlive', request });
        const id = String(request.ID);
        stream.write({ header: HEADER, ID: id, TTL: leases.get(id) ?? '0' });
      });
      stream.on('end', () => stream.end());
      stream.on('error', (error: unknown) => void error); // The client went away: nothing to do.
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error)));
  });
  return {
    endpoint: `127.0.0.1:${port}`,
    received,
    cutBeforeReply(method, cut) {
      cuts.set(method, cut);
    },
    count(method) {
      return received.filter((entry) => entry.method === method).length;
    },
    leaseIds() {
      return [...leases.keys()];
    },
    forgetLease(id) {
      leases.delete(id);
    },
    close() {
      server.forceShutdown();
    },
  };
}

/** A TCP proxy in front of one upstream address whose connections can be cut on demand. */
export interface CuttingProxy {
  /** `127.0.0.1:<port>`. */
  readonly endpoint: string;
  /** Destroys every open connection, both the client's side and the upstream side. */
  cutAll(): void;
  /** How many client connections were accepted so far. */
  readonly accepted: number;
  /** Cuts everything and stops listening. */
  close(): Promise<void>;
}

/** Starts a proxy on 127.0.0.1 port 0 forwarding every byte to `upstream` (`host:port`). */
export async function startCuttingProxy(upstream: string): Promise<CuttingProxy> {
  const [host, portText] = upstream.split(':');
  const pairs = new Set<{ client: net.Socket; server: net.Socket }>();
  let accepted = 0;
  const listener = net.createServer((client) => {
    accepted += 1;
    const server = net.connect(Number(portText), host);
    const pair = { client, server };
    pairs.add(pair);
    const drop = (): void => {
      pairs.delete(pair);
      client.destroy();
      server.destroy();
    };
    client.on('data', (bytes) => server.write(bytes));
    server.on('data', (bytes) => client.write(bytes));
    client.on('error', drop);
    server.on('error', drop);
    client.on('close', drop);
    server.on('close', drop);
  });
  const port = await new Promise<number>((resolve) => {
    listener.listen(0, '127.0.0.1', () => resolve((listener.address() as net.AddressInfo).port));
  });
  function cutAll(): void {
    for (const pair of [...pairs]) {
      pairs.delete(pair);
      pair.client.destroy();
      pair.server.destroy();
    }
  }
  return {
    endpoint: `127.0.0.1:${port}`,
    cutAll,
    get accepted() {
      return accepted;
    },
    close() {
      cutAll();
      return new Promise((resolve) => listener.close(() => resolve()));
    },
  };
}

/** A loopback port with nothing listening on it (connections are refused). */
export async function refusedEndpoint(): Promise<string> {
  const listener = net.createServer();
  const port = await new Promise<number>((resolve) => {
    listener.listen(0, '127.0.0.1', () => resolve((listener.address() as net.AddressInfo).port));
  });
  await new Promise((resolve) => listener.close(resolve));
  return `127.0.0.1:${port}`;
}

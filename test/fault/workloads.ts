/**
 * Concurrent client workloads for the chaos run. Each records every operation's invocation and
 * completion (ok / fail / unknown) on a monotonic clock shared by the whole run (ms since start):
 *
 * - registers: read / write / compare-and-swap (a Txn on the value whose failure branch reads the
 *   key) on a few keys, for the linearizability checker;
 * - set: unique adds (one Put per element under a prefix), read back at the end;
 * - watchers: one watch per member on the run's prefix from the start revision, reconnecting
 *   from last revision + 1 after failures;
 * - leases: grant, attach a key, keep alive for a while, stop, and poll the key until it is gone.
 *
 * Every loop stops when the run's stop signal fires, and every wait is bounded.
 */
import * as grpc from '@grpc/grpc-js';
import { call, watchStream, prefixEnd, type RangeResponseJs, type PutResponseJs, type Header, type KeyValueJs } from '../integration/harness.js';
import { loadServices } from '../../src/api/proto.js';
import type { Operation, RegisterInput, RegisterOutput } from './checker/linearizability.js';
import type { SetAdd } from './checker/set.js';
import type { WatchEvent, AckedWrite } from './checker/watch.js';
import type { LeaseHistory, LeaseRead, Renewal } from './checker/lease.js';

/** Shared context of one run. */
export interface WorkloadContext {
  /** ms since the run started (monotonic). */
  readonly now: () => number;
  readonly random: () => number;
  /**
   * The client endpoints to use now (never empty). Read again at every choice: with the
   * membership nemesis, members come and go and the run keeps this list current from the
   * member list (see chaos.ts, EndpointBook).
   */
  readonly endpoints: () => readonly string[];
  /** Key prefix of this run (ends with '/'). */
  readonly prefix: string;
  /** Aborted when the workloads must stop. */
  readonly stop: AbortSignal;
  /** Per-request deadline. */
  readonly requestTimeoutMs: number;
}

function pick<T>(random: () => number, items: readonly T[]): T {
  return items[Math.floor(random() * items.length)];
}

/** Waits ms, or less if the stop signal fires. */
export function pause(ms: number, stop?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (stop?.aborted === true) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      stop?.removeEventListener('abort', done);
      resolve();
    }
    stop?.addEventListener('abort', done, { once: true });
  });
}

function errorText(error: unknown): string {
  if (typeof error === 'object' && error !== null && 'details' in error) return `${(error as grpc.ServiceError).code}:${(error as grpc.ServiceError).details}`;
  return String(error);
}

// ───────────────────────────── registers ─────────────────────────────

/** One recorded register operation (serialisable). */
export type RegisterOp = Operation<RegisterInput, RegisterOutput> & { readonly member: string; readonly error?: string; readonly revision?: number };

interface TxnResponseJs { header: Header; succeeded: boolean; responses: Array<{ response_range?: RangeResponseJs }> }

/**
 * Runs `clients` register clients over `keys` keys until stopped; returns the history.
 * `reads: 'serializable'` (local, possibly stale reads) exists to show that the checker catches
 * stale reads; kvd promises linearizability only for the default reads.
 */
export async function runRegisters(ctx: WorkloadContext, options: { clients: number; keys: number; thinkMs: number; reads: 'linearizable' | 'serializable' }): Promise<RegisterOp[]> {
  const history: RegisterOp[] = [];
  let nextId = 0;
  const keys = Array.from({ length: options.keys }, (_, i) => `${ctx.prefix}reg/${i}`);
  const lastSeen = new Map<string, string | null>();
  const client = async (id: number): Promise<void> => {
    let counter = 0;
    let endpoint = pick(ctx.random, ctx.endpoints());
    while (!ctx.stop.aborted) {
      const key = pick(ctx.random, keys);
      const dice = ctx.random();
      const input: RegisterInput = dice < 0.4 ? { kind: 'read' }
        : dice < 0.7 ? { kind: 'write', value: `${id}-${counter++}` }
        : { kind: 'cas', from: ctx.random() < 0.8 ? (lastSeen.get(key) ?? null) : `${id}-${counter - 1}`, to: `${id}-${counter++}` };
      const used = endpoint;
      const callMs = ctx.now();
      let output: RegisterOutput | undefined;
      let revision: number | undefined;
      let error: string | undefined;
      try {
        switch (input.kind) {
          case 'read': {
            const response = await call<RangeResponseJs>(endpoint, 'KV', 'Range', { key: Buffer.from(key), serializable: options.reads === 'serializable' }, { timeoutMs: ctx.requestTimeoutMs });
            output = { kind: 'read', value: response.kvs.length === 0 ? null : response.kvs[0].value.toString() };
            break;
          }
          case 'write': {
            const response = await call<PutResponseJs>(endpoint, 'KV', 'Put', { key: Buffer.from(key), value: Buffer.from(input.value) }, { timeoutMs: ctx.requestTimeoutMs });
            output = { kind: 'write' };
            revision = Number(response.header.revision);
            break;
          }
          case 'cas': {
            const compare = input.from === null
              ? { result: 'EQUAL', target: 'VERSION', key: Buffer.from(key), version: '0' }
              : { result: 'EQUAL', target: 'VALUE', key: Buffer.from(key), value: Buffer.from(input.from) };
            const response = await call<TxnResponseJs>(endpoint, 'KV', 'Txn', {
              compare: [compare],
              success: [{ request_put: { key: Buffer.from(key), value: Buffer.from(input.to) } }],
              failure: [{ request_range: { key: Buffer.from(key) } }],
            }, { timeoutMs: ctx.requestTimeoutMs });
            if (response.succeeded) {
              output = { kind: 'cas', succeeded: true };
              revision = Number(response.header.revision);
            } else {
              const kvs = response.responses[0]?.response_range?.kvs ?? [];
              output = { kind: 'cas', succeeded: false, value: kvs.length === 0 ? null : kvs[0].value.toString() };
            }
            break;
          }
        }
      } catch (caught: unknown) {
        error = errorText(caught);
        endpoint = pick(ctx.random, ctx.endpoints());
      }
      const returnMs = ctx.now();
      if (output?.kind === 'read') lastSeen.set(key, output.value);
      if (output?.kind === 'cas' && !output.succeeded) lastSeen.set(key, output.value);
      if (output?.kind === 'cas' && output.succeeded && input.kind === 'cas') lastSeen.set(key, input.to);
      if (output?.kind === 'write' && input.kind === 'write') lastSeen.set(key, input.value);
      history.push({
        id: nextId++, client: id, key, input, output, callMs,
        returnMs: output === undefined ? null : returnMs,
        member: used, ...(error === undefined ? {} : { error }), ...(revision === undefined ? {} : { revision }),
      });
      if (error !== undefined) await pause(100, ctx.stop);
      else await pause(ctx.random() * options.thinkMs, ctx.stop);
    }
  };
  await Promise.all(Array.from({ length: options.clients }, (_, i) => client(i)));
  return history;
}

/** Acknowledged writes of a register history, with the revision their response carried. */
export function ackedRegisterWrites(history: readonly RegisterOp[]): AckedWrite[] {
  const out: AckedWrite[] = [];
  for (const op of history) {
    if (op.revision === undefined) continue;
    if (op.input.kind === 'write') out.push({ key: op.key, value: op.input.value, revision: op.revision });
    if (op.input.kind === 'cas') out.push({ key: op.key, value: op.input.to, revision: op.revision });
  }
  return out;
}

// ───────────────────────────── set ─────────────────────────────

/** Runs `clients` adders until stopped; returns the attempted adds and acked writes. */
export async function runSet(ctx: WorkloadContext, options: { clients: number; thinkMs: number }): Promise<{ adds: SetAdd[]; acked: AckedWrite[] }> {
  const adds: SetAdd[] = [];
  const acked: AckedWrite[] = [];
  const client = async (id: number): Promise<void> => {
    let counter = 0;
    let endpoint = pick(ctx.random, ctx.endpoints());
    while (!ctx.stop.aborted) {
      const element = `${id}-${counter++}`;
      const key = `${ctx.prefix}set/${element}`;
      try {
        const response = await call<PutResponseJs>(endpoint, 'KV', 'Put', { key: Buffer.from(key), value: Buffer.from(element) }, { timeoutMs: ctx.requestTimeoutMs });
        adds.push({ element, outcome: 'ok' });
        acked.push({ key, value: element, revision: Number(response.header.revision) });
        await pause(ctx.random() * options.thinkMs, ctx.stop);
      } catch (error: unknown) {
        void error; // a failed add's outcome is unknown: it may have been committed
        adds.push({ element, outcome: 'unknown' });
        endpoint = pick(ctx.random, ctx.endpoints());
        await pause(100, ctx.stop);
      }
    }
  };
  await Promise.all(Array.from({ length: options.clients }, (_, i) => client(i)));
  return { adds, acked };
}

/** Reads the set's elements (linearizable range over the prefix), retrying for up to `timeoutMs`. */
export async function readSet(ctx: Omit<WorkloadContext, 'stop'>, options: { timeoutMs: number }): Promise<Set<string>> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  for (let attempt = 0; Date.now() < deadline; attempt++) {
    const endpoints = ctx.endpoints();
    const endpoint = endpoints[attempt % endpoints.length];
    try {
      const prefix = `${ctx.prefix}set/`;
      const response = await call<RangeResponseJs>(endpoint, 'KV', 'Range', { key: Buffer.from(prefix), range_end: prefixEnd(prefix) }, { timeoutMs: 5000 });
      return new Set(response.kvs.map((kv) => kv.key.toString().slice(prefix.length)));
    } catch (error: unknown) {
      lastError = error;
      await pause(200);
    }
  }
  throw new Error(`could not read the set: ${errorText(lastError)}`);
}

// ───────────────────────────── watches ─────────────────────────────

type WatchResponse = { header: Header; watch_id: string; created: boolean; canceled: boolean; compact_revision: string; cancel_reason?: string; events: Array<{ type: string; kv: KeyValueJs }> };

/** Distinct reconnect reasons a watcher keeps count of. */
const REASONS_MAX = 20;

/** A watcher on the run's prefix that reconnects after failures. */
export class PrefixWatcher {
  readonly name: string;
  readonly events: WatchEvent[] = [];
  readonly notes: string[] = [];
  reconnects = 0;
  /** Reconnect reasons (digits masked) and their counts, at most {@link REASONS_MAX} distinct. */
  readonly reasons = new Map<string, number>();
  readonly #ctx: Omit<WorkloadContext, 'stop'>;
  readonly #startRevision: number;
  #endpointIndex: number;
  #stream: grpc.ClientDuplexStream<object, WatchResponse> | undefined;
  #closed = false;
  #lastProgressMs = 0;

  constructor(ctx: Omit<WorkloadContext, 'stop'>, options: { name: string; endpointIndex: number; startRevision: number }) {
    this.#ctx = ctx;
    this.name = options.name;
    this.#endpointIndex = options.endpointIndex;
    this.#startRevision = options.startRevision;
  }

  /** The highest revision seen (start revision - 1 if none). */
  get lastRevision(): number {
    return this.events.length === 0 ? this.#startRevision - 1 : this.events[this.events.length - 1].revision;
  }

  /** Opens the stream (again). */
  open(): void {
    if (this.#closed) return;
    const endpoints = this.#ctx.endpoints();
    const endpoint = endpoints[this.#endpointIndex % endpoints.length];
    const stream = watchStream(endpoint) as unknown as grpc.ClientDuplexStream<object, WatchResponse>;
    this.#stream = stream;
    this.#lastProgressMs = this.#ctx.now();
    const from = this.lastRevision + 1;
    let finished = false;
    const retry = (why: string): void => {
      if (finished) return;
      finished = true;
      stream.removeAllListeners('data');
      stream.cancel();
      if (this.#closed) return;
      this.reconnects++;
      const reason = why.replace(/\d+/g, 'N').slice(0, 120);
      if (this.reasons.has(reason) || this.reasons.size < REASONS_MAX) this.reasons.set(reason, (this.reasons.get(reason) ?? 0) + 1);
      if (this.notes.length < 20) this.notes.push(`${this.#ctx.now().toFixed(0)} ms: ${why}; reconnecting from ${this.lastRevision + 1}`);
      this.#endpointIndex++;
      setTimeout(() => this.open(), 200);
    };
    stream.on('data', (response: WatchResponse) => {
      this.#lastProgressMs = this.#ctx.now();
      if (response.canceled) {
        retry(`canceled (${response.cancel_reason ?? ''}, compact ${response.compact_revision})`);
        return;
      }
      for (const event of response.events) {
        this.events.push({ revision: Number(event.kv.mod_revision), key: event.kv.key.toString(), type: event.type === 'DELETE' ? 'DELETE' : 'PUT', value: event.type === 'DELETE' ? '' : event.kv.value.toString() });
      }
    });
    stream.on('error', (error: unknown) => retry(`stream error ${errorText(error)}`));
    stream.on('end', () => retry('stream ended'));
    stream.write({ create_request: { key: Buffer.from(this.#ctx.prefix), range_end: prefixEnd(this.#ctx.prefix), start_revision: String(from), progress_notify: true } });
  }

  /** Reconnects if nothing (not even a progress notification) arrived for `staleMs`. */
  reconnectIfStale(staleMs: number): void {
    if (this.#closed || this.#stream === undefined) return;
    if (this.#ctx.now() - this.#lastProgressMs > staleMs) this.#stream.emit('error', new Error(`no response for ${staleMs} ms`));
  }

  close(): void {
    this.#closed = true;
    this.#stream?.cancel();
  }
}

/** Collects the reference order: a fresh watch from `startRevision` up to `untilRevision`. */
export async function referenceEvents(ctx: Omit<WorkloadContext, 'stop'>, options: { startRevision: number; untilRevision: number; timeoutMs: number }): Promise<WatchEvent[]> {
  const deadline = Date.now() + options.timeoutMs;
  for (let attempt = 0; Date.now() < deadline; attempt++) {
    const watcher = new PrefixWatcher(ctx, { name: 'reference', endpointIndex: attempt, startRevision: options.startRevision });
    watcher.open();
    while (Date.now() < deadline && watcher.lastRevision < options.untilRevision && watcher.reconnects === 0) await pause(50);
    watcher.close();
    if (watcher.lastRevision >= options.untilRevision) return watcher.events.filter((e) => e.revision <= options.untilRevision);
  }
  throw new Error(`could not collect the reference watch history up to revision ${options.untilRevision}`);
}

// ───────────────────────────── leases ─────────────────────────────

interface LeaseClient extends grpc.Client {
  LeaseKeepAlive(options: grpc.CallOptions): grpc.ClientDuplexStream<{ ID: string }, { ID: string; TTL: string }>;
}
const leaseClients = new Map<string, LeaseClient>();

function leaseClient(endpoint: string): LeaseClient {
  let client = leaseClients.get(endpoint);
  if (client === undefined) {
    const services = loadServices();
    client = new services.Lease(endpoint, grpc.credentials.createInsecure()) as unknown as LeaseClient;
    leaseClients.set(endpoint, client);
  }
  return client;
}

/** Closes the keep-alive clients. */
export function closeLeaseClients(): void {
  for (const client of leaseClients.values()) client.close();
  leaseClients.clear();
}

/** One keep-alive round trip; resolves the TTL answered (0: lease gone), rejects on failure. */
function keepAliveOnce(endpoint: string, id: string, timeoutMs: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const stream = leaseClient(endpoint).LeaseKeepAlive({ deadline: Date.now() + timeoutMs });
    let settled = false;
    stream.on('data', (response: { TTL: string }) => {
      if (settled) return;
      settled = true;
      resolve(Number(response.TTL));
      stream.cancel();
    });
    stream.on('error', (error: unknown) => {
      if (settled) return;
      settled = true;
      reject(error);
    });
    stream.on('end', () => {
      if (!settled) {
        settled = true;
        reject(new Error('keep-alive stream ended'));
      }
    });
    stream.write({ ID: id });
  });
}

/**
 * Runs `clients` lease clients until stopped: each grants a lease of `ttlSeconds`, attaches a key,
 * keeps it alive for a random 1-4 s (every 500 ms), stops, and polls the key every 200 ms until
 * it is gone (at most `maxWatchMs` after the last renewal), then starts over.
 */
export async function runLeases(ctx: WorkloadContext, options: { clients: number; ttlSeconds: number; maxWatchMs: number; finalStop: AbortSignal }): Promise<LeaseHistory[]> {
  const histories: LeaseHistory[] = [];
  const client = async (id: number): Promise<void> => {
    let counter = 0;
    let endpoint = pick(ctx.random, ctx.endpoints());
    while (!ctx.stop.aborted) {
      const key = `${ctx.prefix}lease/${id}-${counter++}`;
      const renewals: Renewal[] = [];
      const reads: LeaseRead[] = [];
      let lease: string;
      let attachedMs: number;
      try {
        const sentMs = ctx.now();
        const grant = await call<{ ID: string; TTL: string }>(endpoint, 'Lease', 'LeaseGrant', { TTL: String(options.ttlSeconds) }, { timeoutMs: ctx.requestTimeoutMs });
        renewals.push({ sentMs, receivedMs: ctx.now(), ttlSeconds: Number(grant.TTL) });
        lease = grant.ID;
        await call<PutResponseJs>(endpoint, 'KV', 'Put', { key: Buffer.from(key), value: Buffer.from('x'), lease }, { timeoutMs: ctx.requestTimeoutMs });
        attachedMs = ctx.now();
      } catch (error: unknown) {
        void error; // try again elsewhere; an unattached lease just expires
        endpoint = pick(ctx.random, ctx.endpoints());
        await pause(200, ctx.stop);
        continue;
      }
      const keepUntil = ctx.now() + 1000 + ctx.random() * 3000;
      const readKey = async (): Promise<void> => {
        const callMs = ctx.now();
        try {
          const response = await call<RangeResponseJs>(pick(ctx.random, ctx.endpoints()), 'KV', 'Range', { key: Buffer.from(key) }, { timeoutMs: 1000 });
          reads.push({ callMs, returnMs: ctx.now(), present: response.kvs.length > 0 });
        } catch (error: unknown) {
          void error; // a failed read tells nothing
        }
      };
      let nextKeepAlive = ctx.now() + 500;
      let gone = false;
      let notFound: { sentMs: number; receivedMs: number } | undefined;
      while (!ctx.stop.aborted && ctx.now() < keepUntil && !gone) {
        if (ctx.now() >= nextKeepAlive) {
          nextKeepAlive = ctx.now() + 500;
          const sentMs = ctx.now();
          try {
            const ttl = await keepAliveOnce(endpoint, lease, 1000);
            if (ttl > 0) renewals.push({ sentMs, receivedMs: ctx.now(), ttlSeconds: ttl });
            else {
              gone = true;
              notFound = { sentMs, receivedMs: ctx.now() };
            }
          } catch (error: unknown) {
            void error; // keep-alive failed: try another member next time
            endpoint = pick(ctx.random, ctx.endpoints());
          }
        }
        await readKey();
        await pause(150, ctx.stop);
      }
      // Keep-alives stopped: poll until the key is gone, bounded.
      const lastRenewal = renewals[renewals.length - 1].receivedMs;
      while (!options.finalStop.aborted && ctx.now() < lastRenewal + options.maxWatchMs) {
        await readKey();
        if (reads.length > 0 && !reads[reads.length - 1].present && reads[reads.length - 1].callMs > lastRenewal) break;
        await pause(200, options.finalStop);
      }
      histories.push({ lease, key, attachedMs, renewals, reads, ...(notFound === undefined ? {} : { notFound }) });
    }
  };
  await Promise.all(Array.from({ length: options.clients }, (_, i) => client(i)));
  return histories;
}

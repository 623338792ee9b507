/**
 * Service registry on leases: an instance registers the key `/registry/<service>/<id>` holding
 * JSON `{"id","address","metadata"}` attached to a kept-alive lease, so it disappears when the
 * instance dies. Discovery is one range plus one watch from that range's revision + 1 (never
 * polling); after a compaction the view re-reads and re-watches.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Client } from './index.js';
import { backoffMs } from './connection.js';
import { KvError, toKvError } from './errors.js';
import type { Lease } from './lease.js';
import type { WatchBatch } from './watch.js';
import type { KeyValue } from './kv.js';
import { PrefixMirror } from './prefix-mirror.js';

/** Key prefix of all registrations. */
export const REGISTRY_PREFIX = '/registry/';

/** Options of {@link Registry.register}. */
export interface RegisterOptions {
  /** Service name (no '/'). */
  readonly service: string;
  /** Instance id, unique within the service (no '/'). */
  readonly id: string;
  /** Where the instance is reached, e.g. `10.0.0.5:8080`. */
  readonly address: string;
  /** Lease TTL in seconds: how long a dead instance stays listed at most. */
  readonly ttl: number;
  /** Free-form JSON-serialisable data published with the instance. */
  readonly metadata?: Record<string, unknown>;
}

/** One registered instance as discovered. */
export interface ServiceInstance {
  readonly id: string;
  readonly address: string;
  readonly metadata: Record<string, unknown>;
  /** The registry key. */
  readonly key: string;
}

/** Events of a {@link Registration}. */
export interface RegistrationEvents {
  /** The lease was lost and the instance registered again under a new lease. */
  reregistered: [leaseId: bigint];
  /** The lease was lost (re-registration follows). */
  lost: [error: KvError];
}

/** Events of a {@link ServiceView}. */
export interface ServiceViewEvents {
  /** The set of instances changed (once per watch response). */
  change: [instances: readonly ServiceInstance[]];
}

function registryKey(service: string, id: string): string {
  if (service.includes('/') || id.includes('/') || service === '' || id === '') throw new KvError('invalid-argument', { detail: 'service and id must be non-empty and contain no "/"' });
  return `${REGISTRY_PREFIX}${service}/${id}`;
}

/** 2^63 - 1: lease ids are positive int64s. */
const LEASE_ID_MAX = 0x7fff_ffff_ffff_ffffn;

/**
 * A fresh lease id for one registration attempt: uniform in [1, 2^63 - 1], chosen by the client
 * so that a grant can be repeated (see {@link Registration.publish}). A collision with another
 * client's lease is as likely as two random 63-bit values meeting.
 */
function newLeaseId(): bigint {
  return (randomBytes(8).readBigUInt64BE() % LEASE_ID_MAX) + 1n;
}

/**
 * A live registration. Re-registers by itself after its lease is lost (emitting 'lost' then
 * 'reregistered'); {@link Registration.close} deregisters (revokes the lease).
 */
export class Registration extends EventEmitter<RegistrationEvents> {
  readonly #client: Client;
  readonly #options: RegisterOptions;
  #lease: Lease | undefined;
  #state: 'registered' | 'retrying' | 'closed' = 'registered';
  #retryTimer: NodeJS.Timeout | undefined;
  /** The registry key. */
  readonly key: string;

  /** Use {@link Registry.register}. */
  constructor(client: Client, options: RegisterOptions, lease: Lease) {
    super();
    this.#client = client;
    this.#options = options;
    this.key = registryKey(options.service, options.id);
    this.#attach(lease);
  }

  /** The current lease id. */
  get leaseId(): bigint {
    return this.#lease?.id ?? 0n;
  }

  /** The JSON value published. */
  static value(options: RegisterOptions): string {
    return JSON.stringify({ id: options.id, address: options.address, metadata: options.metadata ?? {} });
  }

  /**
   * Grants the lease `leaseId` (or adopts it, when an earlier attempt with the same id was
   * granted but its answer lost) and writes the key; used at first registration and after a
   * loss. Each request is sent at most once; repeating the whole call with the same `leaseId`
   * is safe: the grant finds its lease, the put writes the same value again. On failure the
   * lease is revoked (best effort) and the error thrown.
   */
  static async publish(client: Client, options: RegisterOptions, leaseId: bigint): Promise<Lease> {
    const lease = await client.lease(options.ttl, { id: leaseId, existing: 'adopt' });
    try {
      await client.put(registryKey(options.service, options.id), Registration.value(options), { lease: lease.id });
    } catch (error: unknown) {
      await lease.revoke().catch((revokeError: unknown) => void revokeError);
      throw error;
    }
    return lease;
  }

  #attach(lease: Lease): void {
    this.#lease = lease;
    lease.once('lost', (error) => {
      if (this.#state === 'closed' || this.#lease !== lease) return;
      this.#state = 'retrying';
      this.emit('lost', error);
      this.#retry(0, newLeaseId());
    });
  }

  /**
   * Publishes again after a loss, until it succeeds or the registration is closed. Every
   * attempt of one re-registration uses the same `leaseId`, so an attempt whose grant was
   * applied but whose answer was lost is continued by the next one instead of leaving an
   * orphan lease behind.
   */
  #retry(attempt: number, leaseId: bigint): void {
    if (this.#state === 'closed') return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      Registration.publish(this.#client, this.#options, leaseId).then(
        (lease) => {
          if (this.#state === 'closed') {
            void lease.revoke().catch((error: unknown) => void error);
            return;
          }
          this.#state = 'registered';
          this.#attach(lease);
          this.emit('reregistered', lease.id);
        },
        (error: unknown) => {
          void toKvError(error); // Keep trying until closed: the cluster may come back.
          this.#retry(attempt + 1, leaseId);
        },
      );
    }, attempt === 0 ? 0 : 100 + backoffMs(Math.min(attempt, 5)));
  }

  #onStop: (() => void) | undefined;

  /** Sets a function called once when the registration stops (used by the client). */
  onStop(listener: () => void): void {
    this.#onStop = listener;
  }

  /** Stops renewing without deregistering (the key expires after the TTL). Used by Client.close(). */
  stop(): void {
    this.#onStop?.();
    this.#onStop = undefined;
    this.#state = 'closed';
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    this.#lease?.close();
  }

  /** Deregisters: stops renewing and revokes the lease, deleting the key. */
  async close(): Promise<void> {
    const lease = this.#lease;
    this.stop();
    await lease?.revoke();
  }
}

function parseInstance(key: Buffer, value: Buffer): ServiceInstance | undefined {
  try {
    const parsed = JSON.parse(value.toString('utf8')) as { id?: unknown; address?: unknown; metadata?: unknown };
    if (typeof parsed.id !== 'string' || typeof parsed.address !== 'string') return undefined;
    const metadata = typeof parsed.metadata === 'object' && parsed.metadata !== null ? (parsed.metadata as Record<string, unknown>) : {};
    return { id: parsed.id, address: parsed.address, metadata, key: key.toString('utf8') };
  } catch (error: unknown) {
    void error; // A value that is not a registration is ignored.
    return undefined;
  }
}

/**
 * The live set of a service's instances: one range, then one watch from the range's revision
 * + 1. Emits 'change' with the new list after each change. {@link ServiceView.close} stops it.
 */
export class ServiceView extends EventEmitter<ServiceViewEvents> {
  readonly #instances = new Map<string, ServiceInstance>();
  readonly #mirror: PrefixMirror;
  /** The service name. */
  readonly service: string;

  /** Use {@link Registry.discover}. */
  constructor(client: Client, service: string) {
    super();
    this.service = service;
    this.#mirror = new PrefixMirror(client, `${REGISTRY_PREFIX}${service}/`, {
      reset: (kvs, _revision, kind) => this.#reset(kvs, kind),
      apply: (batch) => this.#apply(batch),
    });
  }

  /** The instances now, ordered by key. */
  get instances(): readonly ServiceInstance[] {
    return [...this.#instances.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** Reads the current instances and starts the watch; returns the watch's start revision. */
  load(): Promise<bigint> {
    return this.#mirror.load();
  }

  /** Consumes the watch until closed; re-reads after compaction. Runs detached. */
  run(): Promise<void> {
    return this.#mirror.run();
  }

  /** Sets a function called once when the view is closed (used by the client). */
  onStop(listener: () => void): void {
    this.#mirror.onStop(listener);
  }

  /** Stops watching. Idempotent. */
  close(): void {
    this.#mirror.close();
  }

  /** The whole set; after a reload, 'change' is emitted if the instances differ. */
  #reset(kvs: readonly KeyValue[], kind: 'initial' | 'reload'): void {
    const before = this.instances.map((instance) => instance.key).join('\n');
    this.#instances.clear();
    for (const kv of kvs) {
      const instance = parseInstance(kv.key, kv.value);
      if (instance !== undefined) this.#instances.set(instance.key, instance);
    }
    if (kind === 'reload' && this.instances.map((instance) => instance.key).join('\n') !== before) this.emit('change', this.instances);
  }

  #apply(batch: WatchBatch): void {
    let changed = false;
    for (const event of batch.events) {
      const key = event.kv.key.toString('utf8');
      if (event.type === 'delete') changed = this.#instances.delete(key) || changed;
      else {
        const instance = parseInstance(event.kv.key, event.kv.value);
        if (instance !== undefined) {
          this.#instances.set(key, instance);
          changed = true;
        }
      }
    }
    if (changed) this.emit('change', this.instances);
  }
}

/** Service registry calls of a {@link Client} (`client.registry`). */
export class Registry {
  readonly #client: Client;
  readonly #track: (closer: { close(): void }) => () => void;

  /** Created by the client; `track` registers a helper to close with it and returns a forget function. */
  constructor(client: Client, track: (closer: { close(): void }) => () => void) {
    this.#client = client;
    this.#track = track;
  }

  /** Registers an instance; resolves once its key is written. */
  async register(options: RegisterOptions): Promise<Registration> {
    registryKey(options.service, options.id);
    const lease = await Registration.publish(this.#client, options, newLeaseId());
    const registration = new Registration(this.#client, options, lease);
    registration.onStop(this.#track({ close: () => registration.stop() }));
    return registration;
  }

  /** Starts following a service; resolves once the initial instances are loaded. */
  async discover(service: string): Promise<ServiceView> {
    const view = new ServiceView(this.#client, service);
    await view.load();
    view.onStop(this.#track(view));
    void view.run(); // Detached: run() handles its own errors and ends on close().
    return view;
  }
}

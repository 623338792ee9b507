/**
 * Sessions, mutexes and elections with the protocol and key layout of etcd's clientv3
 * `concurrency` package, so they interoperate with `etcdctl lock` / `etcdctl elect` and Go
 * programs: a waiter's key is `<name>/<leaseIdHex>` attached to its session lease; the owner
 * is the key with the lowest create revision; each waiter watches for the deletion of the key
 * with the highest create revision below its own (no thundering herd).
 */
import { hexId, type Bytes } from './codec.js';
import type { Client } from './index.js';
import { CancelledError, ElectionNoLeaderError, ElectionNotLeaderError } from './errors.js';
import { compare, op, type KeyValue } from './kv.js';
import type { Lease } from './lease.js';

/** Options of {@link Client.session}. */
export interface SessionOptions {
  /** Lease TTL in seconds. Default 60 (etcd's default). */
  readonly ttl?: number;
}

/** A lease kept alive for locks and elections. {@link Session.close} revokes it. */
export class Session {
  /** The client the session belongs to. */
  readonly client: Client;
  /** The session's lease. */
  readonly lease: Lease;

  /** Use {@link Client.session}. */
  constructor(client: Client, lease: Lease) {
    this.client = client;
    this.lease = lease;
  }

  /** The lease id. */
  get leaseId(): bigint {
    return this.lease.id;
  }

  /** Resolves when the session's lease is lost (expired or not renewable). */
  done(): Promise<void> {
    if (this.lease.state === 'lost') return Promise.resolve();
    return new Promise((resolve) => this.lease.once('lost', () => resolve()));
  }

  /** Revokes the lease, deleting every key held through the session. */
  async close(): Promise<void> {
    await this.lease.revoke();
  }
}

/**
 * Waits until no key under `prefix` has a create revision ≤ `maxCreateRevision` (etcd
 * concurrency `waitDeletes`): repeatedly finds the newest such key and waits for its deletion.
 */
async function waitDeletes(client: Client, prefix: string, maxCreateRevision: bigint, signal?: AbortSignal): Promise<void> {
  for (;;) {
    if (signal?.aborted === true) throw new CancelledError('internal', { detail: 'context canceled' });
    const result = await client.range(prefix, { prefix: true, sort: { target: 'create', order: 'descend' }, limit: 1, maxCreateRevision });
    if (result.kvs.length === 0) return;
    await waitDelete(client, result.kvs[0].key, result.header.revision, signal);
  }
}

/** Waits for a DELETE event of `key` at or after `revision`. */
async function waitDelete(client: Client, key: Buffer, revision: bigint, signal?: AbortSignal): Promise<void> {
  const watcher = client.watch(key, { startRevision: revision, signal });
  for await (const item of watcher) {
    if (item.type === 'delete') return;
  }
  throw new CancelledError('internal', { detail: 'context canceled' });
}

async function sessionFor(client: Client, options: { session?: Session; ttl?: number }): Promise<{ session: Session; owned: boolean }> {
  if (options.session !== undefined) return { session: options.session, owned: false };
  return { session: await client.session({ ttl: options.ttl }), owned: true };
}

/**
 * A distributed mutex (etcd concurrency `Mutex`). `lock()` waits until this holder owns the
 * lock; `unlock()` deletes its key (and revokes its own session if it made one).
 */
export class Mutex {
  readonly #client: Client;
  readonly #prefix: string;
  readonly #options: { session?: Session; ttl?: number };
  #session: { session: Session; owned: boolean } | undefined;
  #key: string | undefined;
  #revision = -1n;

  /** Use {@link Client.lock}. */
  constructor(client: Client, name: string, options: { session?: Session; ttl?: number }) {
    this.#client = client;
    this.#prefix = `${name}/`;
    this.#options = options;
  }

  /** This holder's key `<name>/<leaseIdHex>` (after lock()). */
  get key(): string {
    return this.#key ?? '';
  }

  /** The create revision of this holder's key (after lock()). */
  get revision(): bigint {
    return this.#revision;
  }

  /** The session the lock is held through (after lock()). */
  get session(): Session | undefined {
    return this.#session?.session;
  }

  /** Enqueues this holder and waits until it owns the lock; abort to give up (the key is removed). */
  async lock(options: { signal?: AbortSignal } = {}): Promise<void> {
    const owned = await this.#enqueue();
    if (owned) return;
    try {
      await waitDeletes(this.#client, this.#prefix, this.#revision - 1n, options.signal);
    } catch (error: unknown) {
      await this.unlock();
      throw error;
    }
  }

  /** Takes the lock if it is free; otherwise removes this holder's key and returns false. */
  async tryLock(): Promise<boolean> {
    const owned = await this.#enqueue();
    if (!owned) await this.unlock();
    return owned;
  }

  /** Puts this holder's key if absent; returns whether it owns the lock at once. */
  async #enqueue(): Promise<boolean> {
    this.#session ??= await sessionFor(this.#client, this.#options);
    const lease = this.#session.session.leaseId;
    const key = `${this.#prefix}${hexId(lease)}`;
    this.#key = key;
    const ownerRead = op.get(this.#prefix, { prefix: true, sort: { target: 'create', order: 'ascend' }, limit: 1 });
    const result = await this.#client
      .txn()
      .if(compare.createRevision(key, '=', 0))
      .then(op.put(key, '', { lease }), ownerRead)
      .else(op.get(key), ownerRead)
      .commit();
    this.#revision = result.header.revision;
    if (!result.succeeded) {
      const own = result.responses[0];
      if (own.type === 'range' && own.kvs.length > 0) this.#revision = own.kvs[0].createRevision;
    }
    const owner = result.responses[1];
    return owner.type === 'range' && (owner.kvs.length === 0 || owner.kvs[0].createRevision === this.#revision);
  }

  /** Releases the lock (deletes the key; revokes the session if the mutex created it). */
  async unlock(): Promise<void> {
    const session = this.#session;
    if (this.#key !== undefined) await this.#client.delete(this.#key);
    this.#key = undefined;
    this.#revision = -1n;
    if (session?.owned === true) {
      this.#session = undefined;
      await session.session.close();
    }
  }
}

/** The current leader's key of an election. */
export interface LeaderKey {
  /** `<name>/<leaseIdHex>`. */
  readonly key: Buffer;
  readonly value: Buffer;
  readonly createRevision: bigint;
  readonly modRevision: bigint;
  readonly lease: bigint;
}

/**
 * A leader election (etcd concurrency `Election`): `campaign(value)` waits until elected,
 * `proclaim(value)` changes the leader's value, `resign()` steps down, `leader()` reads the
 * current leader and `observe()` follows leaders.
 */
export class Election {
  readonly #client: Client;
  readonly #prefix: string;
  readonly #options: { session?: Session; ttl?: number };
  #session: { session: Session; owned: boolean } | undefined;
  #leaderKey: string | undefined;
  #leaderRevision = -1n;

  /** Use {@link Client.election}. */
  constructor(client: Client, name: string, options: { session?: Session; ttl?: number }) {
    this.#client = client;
    this.#prefix = `${name}/`;
    this.#options = options;
  }

  /** This campaigner's key (after campaign()). */
  get key(): string {
    return this.#leaderKey ?? '';
  }

  /** Puts this campaigner's key and waits until it is the leader. */
  async campaign(value: Bytes, options: { signal?: AbortSignal } = {}): Promise<void> {
    this.#session ??= await sessionFor(this.#client, this.#options);
    const lease = this.#session.session.leaseId;
    const key = `${this.#prefix}${hexId(lease)}`;
    const result = await this.#client.txn().if(compare.createRevision(key, '=', 0)).then(op.put(key, value, { lease })).else(op.get(key)).commit();
    this.#leaderKey = key;
    this.#leaderRevision = result.header.revision;
    if (!result.succeeded) {
      const own = result.responses[0];
      if (own.type === 'range' && own.kvs.length > 0) {
        this.#leaderRevision = own.kvs[0].createRevision;
        if (!own.kvs[0].value.equals(Buffer.from(typeof value === 'string' ? Buffer.from(value) : value))) await this.proclaim(value);
      }
    }
    try {
      await waitDeletes(this.#client, this.#prefix, this.#leaderRevision - 1n, options.signal);
    } catch (error: unknown) {
      await this.resign();
      throw error;
    }
  }

  /** Sets the leader's value; throws ElectionNotLeaderError if this campaigner is not leader. */
  async proclaim(value: Bytes): Promise<void> {
    if (this.#leaderKey === undefined || this.#session === undefined) throw new ElectionNotLeaderError();
    const result = await this.#client
      .txn()
      .if(compare.createRevision(this.#leaderKey, '=', this.#leaderRevision))
      .then(op.put(this.#leaderKey, value, { lease: this.#session.session.leaseId }))
      .commit();
    if (!result.succeeded) {
      this.#leaderKey = undefined;
      throw new ElectionNotLeaderError();
    }
  }

  /** Steps down (deletes this campaigner's key if it still holds it); revokes an own session. */
  async resign(): Promise<void> {
    if (this.#leaderKey !== undefined) {
      await this.#client.txn().if(compare.createRevision(this.#leaderKey, '=', this.#leaderRevision)).then(op.delete(this.#leaderKey)).commit();
    }
    this.#leaderKey = undefined;
    const session = this.#session;
    if (session?.owned === true) {
      this.#session = undefined;
      await session.session.close();
    }
  }

  /** The current leader; throws ElectionNoLeaderError when there is none. */
  async leader(): Promise<LeaderKey> {
    const result = await this.#client.range(this.#prefix, { prefix: true, sort: { target: 'create', order: 'ascend' }, limit: 1 });
    if (result.kvs.length === 0) throw new ElectionNoLeaderError();
    return toLeader(result.kvs[0]);
  }

  /**
   * Follows the election: yields the current leader (waiting for one if none), each new value
   * it proclaims and each later leader, until the loop exits or the signal aborts.
   */
  async *observe(options: { signal?: AbortSignal } = {}): AsyncGenerator<LeaderKey, void, undefined> {
    const { signal } = options;
    for (;;) {
      if (signal?.aborted === true) return;
      const result = await this.#client.range(this.#prefix, { prefix: true, sort: { target: 'create', order: 'ascend' }, limit: 1 });
      let leader: KeyValue | undefined = result.kvs[0];
      let revision = result.header.revision;
      if (leader === undefined) {
        const watcher = this.#client.watch(this.#prefix, { prefix: true, startRevision: result.header.revision, signal });
        for await (const item of watcher) {
          if (item.type === 'put') {
            leader = item.kv;
            revision = item.kv.modRevision;
            break;
          }
        }
        if (leader === undefined) return;
      }
      yield toLeader(leader);
      const watcher = this.#client.watch(leader.key, { startRevision: revision + 1n, signal });
      let deleted = false;
      for await (const item of watcher) {
        if (item.type === 'delete') {
          deleted = true;
          break;
        }
        if (item.type === 'put') yield toLeader(item.kv);
      }
      if (!deleted) return;
    }
  }
}

function toLeader(kv: KeyValue): LeaderKey {
  return { key: kv.key, value: kv.value, createRevision: kv.createRevision, modRevision: kv.modRevision, lease: kv.lease };
}

/**
 * A small in-memory implementation of every backend interface of src/api/backend.ts, for the
 * api tests only: a naive MVCC (every version of every key kept in arrays), a naive watch hub
 * (history replay + live fan-out, honouring 'full'), leases without expiry, one member.
 * Correct enough to prove the wire layer; not a model of the real store.
 *
 * Every backend call is recorded in `FakeStore.calls` (method, request as the api layer decoded
 * it, and the CallOptions it passed), and `FakeStore.intercept` runs first when set, so tests
 * can check what reached the backend (or that nothing did), make a call fail with any error,
 * or hold it until the client gives up.
 */
import type {
  Compare,
  DeleteRangeRequest,
  DeleteRangeResponse,
  Event,
  KeyValue,
  LeaseId,
  PutRequest,
  PutResponse,
  RangeRequest,
  RangeResponse,
  RequestOp,
  ResponseOp,
  TxnRequest,
  TxnResponse,
  WriteRequest,
  WriteResult,
} from '../../../src/store/mvcc/types.js';
import type {
  Backends,
  CallOptions,
  ClusterBackend,
  KvBackend,
  LeaseBackend,
  MaintenanceBackend,
  Member,
  MemberStatus,
  ResponseHeader,
  WatchBackend,
  WatchDelivery,
  WatcherHandle,
  WatchOptions,
  WatchSink,
  WatchStream,
} from '../../../src/api/backend.js';
import { KvdError } from '../../../src/util/errors.js';

/** Above 2^63 on purpose: exercises uint64 encoding. */
export const CLUSTER_ID = 0xf234_5678_9abc_def1n;
/** Above 2^63 on purpose: exercises uint64 encoding. */
export const MEMBER_ID = 0xfedc_ba98_7654_3210n;

/** One backend call as the api layer made it. */
export interface RecordedCall {
  /** `<backend>.<method>`, e.g. 'kv.range', 'lease.keepAlive'. */
  readonly method: string;
  /** The decoded request handed to the backend (undefined for methods without one). */
  readonly request: unknown;
  readonly options: CallOptions;
}

interface Version {
  readonly kv: KeyValue;
  readonly deleted: boolean;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

function inRange(key: Uint8Array, start: Uint8Array, end: Uint8Array): boolean {
  if (end.length === 0) return compareBytes(key, start) === 0;
  if (end.length === 1 && end[0] === 0) return compareBytes(key, start) >= 0;
  return compareBytes(key, start) >= 0 && compareBytes(key, end) < 0;
}

function name(key: Uint8Array): string {
  return Buffer.from(key).toString('latin1');
}

/** The fake store shared by the fake backends. */
export class FakeStore {
  revision = 1;
  compactRevision = 0;
  readonly #versions = new Map<string, Version[]>();
  readonly #keys = new Map<string, Uint8Array>();
  /** Events by revision, for watch catch-up. */
  readonly history: { revision: number; events: Event[] }[] = [];
  readonly leases = new Map<LeaseId, { ttl: number; keys: Set<string> }>();
  readonly streams = new Set<FakeWatchStream>();
  nextLeaseId = 0x7000_0000_0000_0001n;
  /** What LeadershipBackend.hasLeader() answers. */
  leaderKnown = true;
  /** Every backend call, oldest first (tests may clear it). */
  readonly calls: RecordedCall[] = [];
  /** Runs at the start of every backend call: may throw (the call fails) or wait. */
  intercept: ((call: RecordedCall) => void | Promise<void>) | undefined;
  /** What MaintenanceBackend.status() answers; tests may replace it. */
  status: MemberStatus = {
    version: '3.4.0', dbSizeBytes: 20480, dbSizeInUseBytes: 16384, leader: MEMBER_ID, raftIndex: 42, raftTerm: 3, raftAppliedIndex: 42,
    errors: [], isLearner: false, storageVersion: '', dbSizeQuotaBytes: 2 * 1024 * 1024 * 1024,
  };
  /** What hashKv() answers as its hash (a signed 32-bit value on purpose: the api layer sends uint32). */
  hashKvValue = 0xdeadbeef | 0;

  /** Records a backend call and runs {@link intercept}. */
  async enter(method: string, request: unknown, options: CallOptions): Promise<void> {
    const call = { method, request, options };
    this.calls.push(call);
    await this.intercept?.(call);
  }

  header(): ResponseHeader {
    return { clusterId: CLUSTER_ID, memberId: MEMBER_ID, revision: this.revision, raftTerm: 3 };
  }

  latest(key: Uint8Array, atRevision = this.revision): KeyValue | undefined {
    const versions = this.#versions.get(name(key)) ?? [];
    for (let index = versions.length - 1; index >= 0; index--) {
      const version = versions[index];
      if (version.kv.modRevision <= atRevision) return version.deleted ? undefined : version.kv;
    }
    return undefined;
  }

  keysIn(start: Uint8Array, end: Uint8Array, atRevision = this.revision): KeyValue[] {
    const found: KeyValue[] = [];
    for (const key of this.#keys.values()) {
      if (!inRange(key, start, end)) continue;
      const kv = this.latest(key, atRevision);
      if (kv !== undefined) found.push(kv);
    }
    return found.sort((a, b) => compareBytes(a.key, b.key));
  }

  /** Reads at `request.revision` (<= 0: `current`, which inside a txn includes its own writes). */
  range(request: RangeRequest, current = this.revision): RangeResponse {
    const revision = request.revision <= 0 ? current : request.revision;
    if (revision > current) throw new KvdError('future-revision');
    if (revision < this.compactRevision) throw new KvdError('compacted');
    let kvs = this.keysIn(request.key, request.rangeEnd, revision);
    const count = kvs.length;
    kvs = kvs.filter(
      (kv) =>
        (request.minModRevision === 0 || kv.modRevision >= request.minModRevision) &&
        (request.maxModRevision === 0 || kv.modRevision <= request.maxModRevision) &&
        (request.minCreateRevision === 0 || kv.createRevision >= request.minCreateRevision) &&
        (request.maxCreateRevision === 0 || kv.createRevision <= request.maxCreateRevision),
    );
    if (request.sortOrder !== 'none') {
      const field = (kv: KeyValue): number | Uint8Array =>
        request.sortTarget === 'key' ? kv.key : request.sortTarget === 'value' ? kv.value : request.sortTarget === 'version' ? kv.version : request.sortTarget === 'create' ? kv.createRevision : kv.modRevision;
      kvs.sort((a, b) => {
        const x = field(a);
        const y = field(b);
        const order = typeof x === 'number' ? x - (y as number) : compareBytes(x, y as Uint8Array);
        return request.sortOrder === 'descend' ? -order : order;
      });
    }
    let more = false;
    if (request.limit > 0 && kvs.length > request.limit) {
      kvs = kvs.slice(0, request.limit);
      more = true;
    }
    if (request.countOnly) kvs = [];
    if (request.keysOnly) kvs = kvs.map((kv) => ({ ...kv, value: new Uint8Array(0) }));
    return { kvs, more, count };
  }

  /** Applies a write at the next revision; returns the result and the events it made. */
  write(request: WriteRequest): WriteResult {
    const events: Event[] = [];
    const next = this.revision + 1;
    let result: WriteResult;
    switch (request.type) {
      case 'put':
        result = { type: 'put', response: this.#put(request.request, next, events) };
        break;
      case 'delete-range':
        result = { type: 'delete-range', response: this.#delete(request.request, next, events) };
        break;
      case 'txn':
        result = { type: 'txn', response: this.#txn(request.request, next, events) };
        break;
      case 'compact':
        if (request.request.revision > this.revision) throw new KvdError('future-revision');
        if (request.request.revision <= this.compactRevision) throw new KvdError('compacted');
        this.compactRevision = request.request.revision;
        return { type: 'compact', response: {} };
    }
    if (events.length > 0) {
      this.revision = next;
      this.history.push({ revision: next, events });
      for (const stream of this.streams) stream.notify(next, events);
    }
    return result;
  }

  #record(kv: KeyValue, deleted: boolean): void {
    const id = name(kv.key);
    this.#keys.set(id, kv.key);
    const versions = this.#versions.get(id) ?? [];
    versions.push({ kv, deleted });
    this.#versions.set(id, versions);
  }

  #put(request: PutRequest, revision: number, events: Event[]): PutResponse {
    const previous = this.latest(request.key);
    if ((request.ignoreValue || request.ignoreLease) && previous === undefined) throw new KvdError('key-not-found');
    const lease = request.ignoreLease ? (previous?.lease ?? 0n) : request.lease;
    if (lease !== 0n && !this.leases.has(lease)) throw new KvdError('lease-not-found');
    const kv: KeyValue = {
      key: request.key,
      value: request.ignoreValue ? (previous?.value ?? new Uint8Array(0)) : request.value,
      createRevision: previous?.createRevision ?? revision,
      modRevision: revision,
      version: (previous?.version ?? 0) + 1,
      lease,
    };
    if (previous !== undefined && previous.lease !== 0n) this.leases.get(previous.lease)?.keys.delete(name(request.key));
    if (lease !== 0n) this.leases.get(lease)?.keys.add(name(request.key));
    this.#record(kv, false);
    events.push({ type: 'put', kv, ...(previous === undefined ? {} : { prevKv: previous }) });
    return request.prevKv && previous !== undefined ? { prevKv: previous } : {};
  }

  #delete(request: DeleteRangeRequest, revision: number, events: Event[]): DeleteRangeResponse {
    const victims = this.keysIn(request.key, request.rangeEnd);
    for (const previous of victims) {
      const tombstone: KeyValue = { key: previous.key, value: new Uint8Array(0), createRevision: 0, modRevision: revision, version: 0, lease: 0n };
      this.#record(tombstone, true);
      if (previous.lease !== 0n) this.leases.get(previous.lease)?.keys.delete(name(previous.key));
      events.push({ type: 'delete', kv: tombstone, prevKv: previous });
    }
    return { deleted: victims.length, prevKvs: request.prevKv ? victims : [] };
  }

  #compare(compare: Compare): boolean {
    const kvs = compare.rangeEnd.length === 0 ? [this.latest(compare.key)] : this.keysIn(compare.key, compare.rangeEnd);
    return kvs.every((kv) => {
      let order: number;
      if (compare.target === 'value') {
        if (kv === undefined) return false;
        order = compareBytes(kv.value, compare.value);
      } else {
        const actual = kv === undefined ? 0n : compare.target === 'version' ? BigInt(kv.version) : compare.target === 'create' ? BigInt(kv.createRevision) : compare.target === 'mod' ? BigInt(kv.modRevision) : kv.lease;
        order = actual < compare.value ? -1 : actual > compare.value ? 1 : 0;
      }
      switch (compare.result) {
        case 'equal':
          return order === 0;
        case 'not-equal':
          return order !== 0;
        case 'greater':
          return order > 0;
        case 'less':
          return order < 0;
      }
    });
  }

  #txn(request: TxnRequest, revision: number, events: Event[]): TxnResponse {
    const succeeded = request.compare.every((compare) => this.#compare(compare));
    const ops = succeeded ? request.success : request.failure;
    const responses = ops.map((op: RequestOp): ResponseOp => {
      switch (op.type) {
        case 'range':
          return { type: 'range', response: this.range(op.request, revision) };
        case 'put':
          return { type: 'put', response: this.#put(op.request, revision, events) };
        case 'delete-range':
          return { type: 'delete-range', response: this.#delete(op.request, revision, events) };
        case 'txn':
          return { type: 'txn', response: this.#txn(op.request, revision, events) };
      }
    });
    return { succeeded, responses };
  }
}

interface FakeWatcher {
  readonly options: WatchOptions;
  /** Next revision to deliver. */
  next: number;
  /** Deliveries refused with 'full', to offer again on writable(). */
  readonly held: WatchDelivery[];
}

/** A naive hub stream: catch-up from FakeStore.history, then live events. */
export class FakeWatchStream implements WatchStream {
  readonly #store: FakeStore;
  readonly #sink: WatchSink;
  readonly watchers = new Map<WatcherHandle, FakeWatcher>();
  closed = false;
  /** How often the sink answered 'full' (tests check that backpressure happened). */
  fullCount = 0;

  constructor(store: FakeStore, sink: WatchSink) {
    this.#store = store;
    this.#sink = sink;
  }

  watch(watcher: WatcherHandle, options: WatchOptions): void {
    const start = options.startRevision === 0 ? this.#store.revision + 1 : options.startRevision;
    if (options.startRevision !== 0 && start < this.#store.compactRevision) {
      this.#offer({ type: 'compacted', watcher, compactRevision: this.#store.compactRevision, revision: this.#store.revision }, undefined);
      return;
    }
    const state: FakeWatcher = { options, next: start, held: [] };
    this.watchers.set(watcher, state);
    for (const { revision, events } of this.#store.history) {
      if (revision >= start) this.#send(watcher, state, revision, events);
    }
  }

  notify(revision: number, events: readonly Event[]): void {
    for (const [handle, state] of this.watchers) this.#send(handle, state, revision, events);
  }

  #send(handle: WatcherHandle, state: FakeWatcher, revision: number, events: readonly Event[]): void {
    if (revision < state.next) return;
    state.next = revision + 1;
    const matching = events
      .filter((event) => inRange(event.kv.key, state.options.key, state.options.rangeEnd))
      .filter((event) => !(event.type === 'put' && state.options.filters.includes('no-put')))
      .filter((event) => !(event.type === 'delete' && state.options.filters.includes('no-delete')))
      .map((event): Event => (state.options.prevKv || event.prevKv === undefined ? event : { type: event.type, kv: event.kv }));
    if (matching.length === 0) return;
    this.#offer({ type: 'events', watcher: handle, revision, events: matching }, state);
  }

  #offer(delivery: WatchDelivery, state: FakeWatcher | undefined): void {
    if (this.closed) return;
    if (state !== undefined && state.held.length > 0) {
      state.held.push(delivery);
      return;
    }
    if (this.#sink.deliver(delivery) === 'full') {
      this.fullCount += 1;
      if (state !== undefined) state.held.push(delivery);
    }
  }

  cancel(watcher: WatcherHandle): void {
    this.watchers.delete(watcher);
  }

  requestProgress(watcher: WatcherHandle): void {
    const state = this.watchers.get(watcher);
    if (state !== undefined && state.held.length === 0) this.#offer({ type: 'progress', watcher, revision: this.#store.revision }, state);
  }

  requestProgressAll(): void {
    this.#sink.deliver({ type: 'progress', watcher: 'all', revision: this.#store.revision });
  }

  writable(): void {
    for (const state of this.watchers.values()) {
      while (state.held.length > 0) {
        if (this.#sink.deliver(state.held[0]) === 'full') return;
        state.held.shift();
      }
    }
  }

  close(): void {
    this.closed = true;
    this.watchers.clear();
    this.#store.streams.delete(this);
  }
}

/** Backends over one FakeStore. `members` and `status` can be tweaked by tests. */
export function createFakeBackends(store = new FakeStore()): { store: FakeStore; backends: Backends; members: Member[] } {
  const members: Member[] = [{ id: MEMBER_ID, name: 'kvd-test', peerUrls: ['http://127.0.0.1:2380'], clientUrls: ['http://127.0.0.1:2379'], isLearner: false, autoPromote: false }];
  const kv: KvBackend = {
    async range(request, options) {
      await store.enter('kv.range', request, options);
      return { header: store.header(), response: store.range(request) };
    },
    async write(request, options) {
      await store.enter('kv.write', request, options);
      const result = store.write(request);
      return { header: store.header(), result };
    },
  };
  const watch: WatchBackend = {
    openWatchStream(sink) {
      const stream = new FakeWatchStream(store, sink);
      store.streams.add(stream);
      return stream;
    },
    header: () => store.header(),
  };
  const lease: LeaseBackend = {
    async grant({ id, ttlSeconds }, options) {
      await store.enter('lease.grant', { id, ttlSeconds }, options);
      const chosen = id === 0n ? store.nextLeaseId++ : id;
      if (store.leases.has(chosen)) throw new KvdError('lease-exists');
      if (ttlSeconds > 9_000_000_000) throw new KvdError('lease-ttl-too-large');
      const ttl = Math.max(ttlSeconds, 2);
      store.leases.set(chosen, { ttl, keys: new Set() });
      return { header: store.header(), id: chosen, ttlSeconds: ttl };
    },
    async revoke(id, options) {
      await store.enter('lease.revoke', id, options);
      const found = store.leases.get(id);
      if (found === undefined) throw new KvdError('lease-not-found');
      for (const key of found.keys) store.write({ type: 'delete-range', request: { key: Buffer.from(key, 'latin1'), rangeEnd: new Uint8Array(0), prevKv: false } });
      store.leases.delete(id);
      return { header: store.header() };
    },
    async keepAlive(id, options) {
      await store.enter('lease.keepAlive', id, options);
      const found = store.leases.get(id);
      if (found === undefined) throw new KvdError('lease-not-found');
      return { header: store.header(), ttlSeconds: found.ttl };
    },
    async timeToLive({ id, keys }, options) {
      await store.enter('lease.timeToLive', { id, keys }, options);
      const found = store.leases.get(id);
      if (found === undefined) throw new KvdError('lease-not-found');
      return {
        header: store.header(),
        lease: { id, ttlSeconds: found.ttl, grantedTtlSeconds: found.ttl, keys: keys ? [...found.keys].map((key) => Buffer.from(key, 'latin1')) : [] },
      };
    },
    async leases(options) {
      await store.enter('lease.leases', undefined, options);
      return { header: store.header(), ids: [...store.leases.keys()] };
    },
    header: () => store.header(),
  };
  const cluster: ClusterBackend = {
    async memberList(request, options) {
      await store.enter('cluster.memberList', request, options);
      return { header: store.header(), members };
    },
  };
  const maintenance: MaintenanceBackend = {
    async status(options) {
      await store.enter('maintenance.status', undefined, options);
      return { header: store.header(), status: store.status };
    },
    async hashKv({ revision }, options) {
      await store.enter('maintenance.hashKv', { revision }, options);
      return { header: store.header(), hash: store.hashKvValue, compactRevision: store.compactRevision, hashRevision: revision === 0 ? store.revision : revision };
    },
  };
  return { store, backends: { kv, watch, lease, cluster, maintenance, leadership: { hasLeader: () => store.leaderKnown } }, members };
}

/**
 * The member's metrics on prom-client, with etcd's names, types, help texts and labels where etcd
 * has the metric (so etcd dashboards and alerts work unchanged), kvd_* names otherwise, units in
 * the names. One registry per process, no global: the core's {@link ServerMetrics}, and in each
 * front-end a {@link FrontendMetrics} (its gRPC counters, watchers and Node's own metrics).
 *
 * With front-ends, /metrics answered anywhere shows the whole member: the core gathers its own
 * registry and every front-end's (as prom-client JSON, over the channel) and merges them with
 * prom-client's AggregatorRegistry (counters and gauges summed, e.g. grpc_server_handled_total
 * across front-ends; front-end process metrics carry the `kvd_frontend_` prefix).
 */
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { CallObserver, GrpcType, SlowRequest } from '../api/instrument.js';

/** Prometheus text format's content type, as etcd sends it. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** etcd's buckets for disk latencies (wal fsync, backend commit): 1 ms .. ~8 s, doubling. */
const DISK_BUCKETS = [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];
/** etcd's buckets for the peer round-trip time: 0.1 ms .. ~0.8 s, doubling. */
const RTT_BUCKETS = [0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048, 0.4096, 0.8192];
const SECONDS_BUCKETS = [0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];

/**
 * Counts per label set kept as plain numbers and added to a prom-client counter when it is
 * scraped: prom-client hashes the labels on every inc, even a labelled child's (about 1 % of a
 * small request's cost). Keyed by service, method and one more label in nested maps, so counting
 * allocates nothing; bounded by the registered methods times that label's values.
 */
class PendingCounts {
  readonly #counts = new Map<string, Map<string, Map<string, { readonly child: { inc(value: number): void }; pending: number }>>>();

  /** Counts one; false when this label set has no entry yet (then call {@link create}). */
  increment(service: string, method: string, last: string): boolean {
    const count = this.#counts.get(service)?.get(method)?.get(last);
    if (count === undefined) return false;
    count.pending += 1;
    return true;
  }

  /** The label set's entry, holding one count. */
  create(service: string, method: string, last: string, child: { inc(value: number): void }): void {
    let methods = this.#counts.get(service);
    if (methods === undefined) this.#counts.set(service, (methods = new Map()));
    let lasts = methods.get(method);
    if (lasts === undefined) methods.set(method, (lasts = new Map()));
    lasts.set(last, { child, pending: 1 });
  }

  flush(): void {
    for (const methods of this.#counts.values()) {
      for (const lasts of methods.values()) {
        for (const count of lasts.values()) {
          if (count.pending === 0) continue;
          count.child.inc(count.pending);
          count.pending = 0;
        }
      }
    }
  }
}

/** Bytes per peer not yet added to their counter; bounded by the number of peers. */
class PeerBytes {
  readonly #pending = new Map<bigint, number>();

  add(peer: bigint, bytes: number): void {
    this.#pending.set(peer, (this.#pending.get(peer) ?? 0) + bytes);
  }

  flush<L extends string>(counter: Counter<L>, label: L): void {
    for (const [peer, bytes] of this.#pending) {
      if (bytes > 0) counter.inc({ [label]: peer.toString(16) } as Partial<Record<L, string>>, bytes);
    }
    this.#pending.clear();
  }
}

/** Metrics of the gRPC services (go-grpc-prometheus' names and labels), counted where calls are served. */
export class GrpcMetrics implements CallObserver {
  readonly #started: Counter<'grpc_type' | 'grpc_service' | 'grpc_method'>;
  readonly #handled: Counter<'grpc_type' | 'grpc_service' | 'grpc_method' | 'grpc_code'>;
  readonly #startedCounts = new PendingCounts();
  readonly #handledCounts = new PendingCounts();
  readonly #onSlow: ((request: SlowRequest) => void) | undefined;

  constructor(registry: Registry, options: { onSlowRequest?: (request: SlowRequest) => void } = {}) {
    this.#started = new Counter({ name: 'grpc_server_started_total', help: 'Total number of RPCs started on the server.', labelNames: ['grpc_type', 'grpc_service', 'grpc_method'], registers: [registry], collect: () => this.#startedCounts.flush() });
    this.#handled = new Counter({ name: 'grpc_server_handled_total', help: 'Total number of RPCs completed on the server, regardless of success or failure.', labelNames: ['grpc_type', 'grpc_service', 'grpc_method', 'grpc_code'], registers: [registry], collect: () => this.#handledCounts.flush() });
    this.#onSlow = options.onSlowRequest;
  }

  // A method's grpc_type follows from the method: the last key is the type for started, the code for handled.
  started(type: GrpcType, service: string, method: string): void {
    if (!this.#startedCounts.increment(service, method, type)) this.#startedCounts.create(service, method, type, this.#started.labels({ grpc_type: type, grpc_service: service, grpc_method: method }));
  }

  handled(type: GrpcType, service: string, method: string, code: string): void {
    if (!this.#handledCounts.increment(service, method, code)) this.#handledCounts.create(service, method, code, this.#handled.labels({ grpc_type: type, grpc_service: service, grpc_method: method, grpc_code: code }));
  }

  slowRequest(request: SlowRequest): void {
    this.#onSlow?.(request);
  }
}

/** What the core's collectors read from the member when scraped. */
export interface MemberGauges {
  dbSizeBytes(): Promise<number>;
  dbSizeInUseBytes(): Promise<number>;
  keys(): number;
  watchers(): number;
}

/** The member's metrics (core process). One instance per member. */
export class ServerMetrics {
  readonly registry = new Registry();
  /** etcd types these two as gauges holding the committed and applied raft index. */
  readonly proposalsCommitted = new Gauge({ name: 'etcd_server_proposals_committed_total', help: 'The total number of consensus proposals committed.', registers: [this.registry] });
  readonly proposalsApplied = new Gauge({ name: 'etcd_server_proposals_applied_total', help: 'The total number of consensus proposals applied.', registers: [this.registry] });
  readonly proposalsFailed = new Counter({ name: 'etcd_server_proposals_failed_total', help: 'The total number of failed proposals seen.', registers: [this.registry] });
  /** Proposals waiting on this member (the request gateway sets the source; read at collection). */
  pendingProposals: () => number = () => 0;
  readonly proposalsPending = new Gauge({
    name: 'etcd_server_proposals_pending',
    help: 'The current number of pending proposals to commit.',
    registers: [this.registry],
    collect: () => {
      this.proposalsPending.set(this.pendingProposals());
    },
  });
  readonly leaderChanges = new Counter({ name: 'etcd_server_leader_changes_seen_total', help: 'The number of leader changes seen.', registers: [this.registry] });
  readonly hasLeader = new Gauge({ name: 'etcd_server_has_leader', help: 'Whether or not a leader exists. 1 is existence, 0 is not.', registers: [this.registry] });
  readonly isLeader = new Gauge({ name: 'etcd_server_is_leader', help: 'Whether or not this member is a leader. 1 if is, 0 otherwise.', registers: [this.registry] });
  readonly slowApplies = new Counter({ name: 'etcd_server_slow_apply_total', help: 'The total number of slow apply requests (likely overloaded from slow disk).', registers: [this.registry] });
  readonly requestsRefused = new Counter({ name: 'kvd_server_requests_refused_total', help: 'Client requests refused early (overload, no leader, too large).', registers: [this.registry] });
  readonly walFsyncSeconds = new Histogram({ name: 'etcd_disk_wal_fsync_duration_seconds', help: 'The latency distributions of fsync called by WAL.', buckets: DISK_BUCKETS, registers: [this.registry] });
  readonly backendCommitSeconds = new Histogram({ name: 'etcd_disk_backend_commit_duration_seconds', help: 'The latency distributions of commit called by backend.', buckets: DISK_BUCKETS, registers: [this.registry] });
  readonly applySeconds = new Histogram({ name: 'kvd_server_apply_batch_duration_seconds', help: 'Time to apply one batch of committed entries to the backend.', buckets: SECONDS_BUCKETS, registers: [this.registry] });
  readonly readIndexSeconds = new Histogram({ name: 'kvd_server_read_index_duration_seconds', help: 'Time from a linearizable read arriving to its read index being applied.', buckets: SECONDS_BUCKETS, registers: [this.registry] });
  readonly snapshotsSaved = new Counter({ name: 'kvd_server_snapshots_saved_total', help: 'Raft snapshots saved.', registers: [this.registry] });
  readonly snapshotsSent = new Counter({ name: 'kvd_server_snapshots_sent_total', help: 'Snapshots streamed to followers.', registers: [this.registry] });
  readonly snapshotsInstalled = new Counter({ name: 'kvd_server_snapshots_installed_total', help: 'Snapshots received and installed.', registers: [this.registry] });
  readonly snapshotsRefused = new Counter({ name: 'kvd_server_snapshots_refused_total', help: 'Snapshots received damaged (their dump failed its check) and refused.', registers: [this.registry] });
  readonly alarmsRaised = new Counter({ name: 'kvd_server_alarms_raised_total', help: 'Alarms raised (any member, any type), as applied by this member.', registers: [this.registry] });
  readonly alarmsCleared = new Counter({ name: 'kvd_server_alarms_cleared_total', help: 'Alarms cleared (any member, any type), as applied by this member.', registers: [this.registry] });
  readonly nospaceClearedLowWater = new Counter({ name: 'kvd_server_nospace_alarms_cleared_low_water_total', help: 'NOSPACE alarms cleared automatically because the backend went below the low-water mark, as applied by this member.', registers: [this.registry] });
  readonly autoCompactions = new Counter({ name: 'kvd_server_auto_compactions_total', help: 'Compactions proposed by auto-compaction (on the leader) and applied.', registers: [this.registry] });
  readonly corruptionChecks = new Counter({ name: 'kvd_server_corruption_checks_total', help: 'Corruption checks (HashKV compared with peers) this member ran.', registers: [this.registry] });
  readonly corruptionMismatches = new Counter({ name: 'kvd_server_corruption_mismatches_total', help: 'Corruption checks of this member that found a HashKV mismatch.', registers: [this.registry] });
  readonly diskFull = new Gauge({ name: 'kvd_server_disk_full', help: 'Whether this member cannot write to its disk for lack of space (1) or can (0).', registers: [this.registry] });
  readonly alarmsNospace = new Gauge({ name: 'kvd_server_alarms_nospace', help: 'Active NOSPACE alarms in the cluster.', registers: [this.registry] });
  readonly alarmsCorrupt = new Gauge({ name: 'kvd_server_alarms_corrupt', help: 'Active CORRUPT alarms in the cluster.', registers: [this.registry] });
  readonly peerRoundTripSeconds = new Histogram({ name: 'etcd_network_peer_round_trip_time_seconds', help: 'Round-Trip-Time histogram between peers', labelNames: ['To'], buckets: RTT_BUCKETS, registers: [this.registry] });
  /** Bytes per peer, counted as plain numbers and added to the counters when scraped (a labelled inc per frame hashed its labels). */
  readonly #peerSent = new PeerBytes();
  readonly #peerReceived = new PeerBytes();
  readonly peerSentBytes: Counter<'To'> = new Counter({ name: 'etcd_network_peer_sent_bytes_total', help: 'The total number of bytes sent to peers.', labelNames: ['To'], registers: [this.registry], collect: (): void => this.#peerSent.flush(this.peerSentBytes, 'To') });
  readonly peerReceivedBytes: Counter<'From'> = new Counter({ name: 'etcd_network_peer_received_bytes_total', help: 'The total number of bytes received from peers.', labelNames: ['From'], registers: [this.registry], collect: (): void => this.#peerReceived.flush(this.peerReceivedBytes, 'From') });

  /** Counts the bytes of a frame sent to or received from `peer`. */
  peerTraffic(direction: 'sent' | 'received', peer: bigint, bytes: number): void {
    (direction === 'sent' ? this.#peerSent : this.#peerReceived).add(peer, bytes);
  }
  #gauges: MemberGauges | undefined;

  constructor() {
    const gauges = (): MemberGauges | undefined => this.#gauges;
    new Gauge({
      name: 'etcd_mvcc_db_total_size_in_bytes', help: 'Total size of the underlying database physically allocated in bytes.', registers: [this.registry],
      async collect() { const source = gauges(); if (source !== undefined) this.set(await source.dbSizeBytes()); },
    });
    new Gauge({
      name: 'etcd_mvcc_db_total_size_in_use_in_bytes', help: 'Total size of the underlying database logically in use in bytes.', registers: [this.registry],
      async collect() { const source = gauges(); if (source !== undefined) this.set(await source.dbSizeInUseBytes()); },
    });
    new Gauge({
      name: 'etcd_debugging_mvcc_keys_total', help: 'Total number of keys.', registers: [this.registry],
      collect() { const source = gauges(); if (source !== undefined) this.set(source.keys()); },
    });
    new Gauge({
      name: 'etcd_debugging_mvcc_watcher_total', help: 'Total number of watchers.', registers: [this.registry],
      collect() { const source = gauges(); if (source !== undefined) this.set(source.watchers()); },
    });
    collectDefaultMetrics({ register: this.registry });
  }

  /** Connects the gauges read at scrape time (the member, once started). */
  setGauges(gauges: MemberGauges): void {
    this.#gauges = gauges;
  }

  /** Prometheus text exposition of this process's metrics. */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}

/** A front-end process's metrics: gRPC counters, its watchers, Node's own (prefixed kvd_frontend_). */
export class FrontendMetrics {
  readonly registry = new Registry();
  readonly grpc: GrpcMetrics;

  constructor(options: { watchers: () => number; onSlowRequest?: (request: SlowRequest) => void }) {
    this.grpc = new GrpcMetrics(this.registry, { onSlowRequest: options.onSlowRequest });
    new Gauge({
      name: 'etcd_debugging_mvcc_watcher_total', help: 'Total number of watchers.', registers: [this.registry],
      collect() { this.set(options.watchers()); },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'kvd_frontend_' });
  }
}

/** prom-client's JSON form of a registry (what front-ends send the core). */
export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/** Merges the core's registry with the front-ends' (sums counters and gauges of the same name and labels) into Prometheus text. */
export async function renderAggregated(core: Registry, frontends: readonly MetricsJson[]): Promise<string> {
  if (frontends.length === 0) return core.metrics();
  const all = [await core.getMetricsAsJSON(), ...frontends];
  return AggregatorRegistry.aggregate(all as Parameters<typeof AggregatorRegistry.aggregate>[0]).metrics();
}

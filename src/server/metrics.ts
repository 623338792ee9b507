/**
 * A small metrics registry with Prometheus text exposition: counters, gauges and histograms,
 * with units in their names (etcd's metric names where one exists). Registered only in
 * src/server and src/api.
 */

interface MetricBase { readonly name: string; readonly help: string }

/** A monotonically increasing count. */
export class Counter implements MetricBase {
  #value = 0;
  constructor(readonly name: string, readonly help: string) {}
  inc(by = 1): void { this.#value += by; }
  get value(): number { return this.#value; }
  render(): string { return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} counter\n${this.name} ${this.#value}\n`; }
}

/** A value that goes up and down, or is computed when scraped. */
export class Gauge implements MetricBase {
  #value = 0;
  constructor(readonly name: string, readonly help: string, readonly read?: () => number) {}
  set(value: number): void { this.#value = value; }
  get value(): number { return this.read ? this.read() : this.#value; }
  render(): string { return `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} gauge\n${this.name} ${this.value}\n`; }
}

/** Observations counted into fixed buckets (upper bounds, in the metric's unit). */
export class Histogram implements MetricBase {
  readonly #bounds: readonly number[];
  readonly #counts: number[];
  #sum = 0;
  #count = 0;
  constructor(readonly name: string, readonly help: string, bounds: readonly number[]) {
    this.#bounds = bounds;
    this.#counts = bounds.map(() => 0);
  }
  observe(value: number): void {
    this.#sum += value;
    this.#count += 1;
    for (let i = 0; i < this.#bounds.length; i++) {
      if (value <= this.#bounds[i]) { this.#counts[i] += 1; break; }
    }
  }
  get count(): number { return this.#count; }
  render(): string {
    let out = `# HELP ${this.name} ${this.help}\n# TYPE ${this.name} histogram\n`;
    let cumulative = 0;
    for (let i = 0; i < this.#bounds.length; i++) {
      cumulative += this.#counts[i];
      out += `${this.name}_bucket{le="${this.#bounds[i]}"} ${cumulative}\n`;
    }
    out += `${this.name}_bucket{le="+Inf"} ${this.#count}\n${this.name}_sum ${this.#sum}\n${this.name}_count ${this.#count}\n`;
    return out;
  }
}

const SECONDS_BUCKETS = [0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];

/** The member's metrics. One instance per member; no global registry. */
export class ServerMetrics {
  /** etcd types these two as gauges holding the committed and applied raft index. */
  readonly proposalsCommitted = new Gauge('etcd_server_proposals_committed_total', 'The total number of consensus proposals committed.');
  readonly proposalsApplied = new Gauge('etcd_server_proposals_applied_total', 'The total number of consensus proposals applied.');
  readonly proposalsFailed = new Counter('etcd_server_proposals_failed_total', 'The total number of failed proposals seen.');
  readonly proposalsPending = new Gauge('etcd_server_proposals_pending', 'The current number of pending proposals to commit.');
  readonly leaderChanges = new Counter('etcd_server_leader_changes_seen_total', 'The number of leader changes seen.');
  readonly hasLeader = new Gauge('etcd_server_has_leader', 'Whether or not a leader exists. 1 is existence, 0 is not.');
  readonly isLeader = new Gauge('etcd_server_is_leader', 'Whether or not this member is a leader. 1 if is, 0 otherwise.');
  readonly requestsRefused = new Counter('kvd_server_requests_refused_total', 'Client requests refused early (overload, no leader, too large).');
  readonly walFsyncSeconds = new Histogram('etcd_disk_wal_fsync_duration_seconds', 'The latency distributions of fsync called by WAL.', SECONDS_BUCKETS);
  readonly applySeconds = new Histogram('kvd_server_apply_batch_duration_seconds', 'Time to apply one batch of committed entries to the backend.', SECONDS_BUCKETS);
  readonly readIndexSeconds = new Histogram('kvd_server_read_index_duration_seconds', 'Time from a linearizable read arriving to its read index being applied.', SECONDS_BUCKETS);
  readonly snapshotsSaved = new Counter('kvd_server_snapshots_saved_total', 'Raft snapshots saved.');
  readonly snapshotsSent = new Counter('kvd_server_snapshots_sent_total', 'Snapshots streamed to followers.');
  readonly snapshotsInstalled = new Counter('kvd_server_snapshots_installed_total', 'Snapshots received and installed.');
  readonly alarmsRaised = new Counter('kvd_server_alarms_raised_total', 'Alarms raised (any member, any type), as applied by this member.');
  readonly alarmsCleared = new Counter('kvd_server_alarms_cleared_total', 'Alarms cleared (any member, any type), as applied by this member.');
  readonly nospaceClearedLowWater = new Counter('kvd_server_nospace_alarms_cleared_low_water_total', 'NOSPACE alarms cleared automatically because the backend went below the low-water mark, as applied by this member.');
  readonly autoCompactions = new Counter('kvd_server_auto_compactions_total', 'Compactions proposed by auto-compaction (on the leader) and applied.');
  readonly corruptionChecks = new Counter('kvd_server_corruption_checks_total', 'Corruption checks (HashKV compared with peers) this member ran.');
  readonly corruptionMismatches = new Counter('kvd_server_corruption_mismatches_total', 'Corruption checks of this member that found a HashKV mismatch.');
  readonly diskFull = new Gauge('kvd_server_disk_full', 'Whether this member cannot write to its disk for lack of space (1) or can (0).');
  readonly alarmsNospace = new Gauge('kvd_server_alarms_nospace', 'Active NOSPACE alarms in the cluster.');
  readonly alarmsCorrupt = new Gauge('kvd_server_alarms_corrupt', 'Active CORRUPT alarms in the cluster.');
  readonly extra: Array<Counter | Gauge | Histogram> = [];

  /** Prometheus text exposition of every metric. */
  render(): string {
    const all: Array<Counter | Gauge | Histogram> = [
      this.proposalsCommitted, this.proposalsApplied, this.proposalsFailed, this.proposalsPending,
      this.leaderChanges, this.hasLeader, this.isLeader, this.requestsRefused, this.walFsyncSeconds,
      this.applySeconds, this.readIndexSeconds, this.snapshotsSaved, this.snapshotsSent, this.snapshotsInstalled,
      this.alarmsRaised, this.alarmsCleared, this.nospaceClearedLowWater, this.alarmsNospace, this.alarmsCorrupt, this.autoCompactions,
      this.corruptionChecks, this.corruptionMismatches, this.diskFull,
      ...this.extra,
    ];
    return all.map((metric) => metric.render()).join('');
  }
}

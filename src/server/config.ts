/**
 * The member's configuration, with etcd's defaults, and its validation. The CLI (cli/kvd.ts)
 * maps etcd's flag names, a config file and KVD_* environment variables onto this record; the
 * server never sees flags.
 */
import { KvdError } from '../util/errors.js';
import type { AutoCompactionConfig } from './compactor.js';
import type { TokenSettings } from './auth/tokens.js';
import { tlsSettingsProblem, tlsWanted, type TlsSettings } from './tls.js';

/** `new` bootstraps a cluster; `existing` joins one that was told about this member (member add). */
export type InitialClusterState = 'new' | 'existing';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface ServerConfig {
  /** Human-readable member name (etcd --name). */
  readonly name: string;
  /** Where WAL, snapshots and the backend live (etcd --data-dir). */
  readonly dataDir: string;
  readonly listenClientUrls: readonly string[];
  readonly advertiseClientUrls: readonly string[];
  readonly listenPeerUrls: readonly string[];
  readonly initialAdvertisePeerUrls: readonly string[];
  /** name → peer URLs of the initial members (etcd --initial-cluster "a=http://..,b=http://.."). */
  readonly initialCluster: ReadonlyMap<string, readonly string[]>;
  readonly initialClusterState: InitialClusterState;
  readonly initialClusterToken: string;
  /** Milliseconds between heartbeats; one Raft tick. etcd default 100. */
  readonly heartbeatIntervalMs: number;
  /** Milliseconds before a follower campaigns; etcd default 1000. */
  readonly electionTimeoutMs: number;
  /** Applied entries between snapshots; etcd 3.4 default 100,000. */
  readonly snapshotCount: number;
  /** Entries kept in the log after a snapshot for slow followers (etcd SnapshotCatchUpEntries). */
  readonly snapshotCatchUpEntries: number;
  /** Backend size that raises the NOSPACE alarm; etcd default 2 GiB. */
  readonly quotaBackendBytes: number;
  /** kvd --quota-low-water-percent: a quota-raised NOSPACE clears itself below this share of the quota; 0 = never (etcd). */
  readonly quotaLowWaterPercent: number;
  /** Largest client request accepted; etcd default 1.5 MiB. */
  readonly maxRequestBytes: number;
  /** Operations per txn; etcd --max-txn-ops default 128. */
  readonly maxTxnOps: number;
  /**
   * Largest Range response built (kvd --max-response-bytes; etcd's gRPC limit is 2 GiB − 1, which a
   * Node member could not build twice). Also the member-wide budget of range bytes in flight.
   */
  readonly maxResponseBytes: number;
  /** Optional HTTP listeners for /metrics, /health and /version (etcd --listen-metrics-urls). */
  readonly listenMetricsUrls: readonly string[];
  readonly logLevel: LogLevel;
  /** Deadline of a client request, from arrival to answer. */
  readonly requestTimeoutMs: number;
  /** Interval of progress notifications for idle watchers asking for them (etcd 10 min). */
  readonly watchProgressNotifyIntervalMs: number;
  /** Bound on proposals waiting to be applied on this member; beyond it: too many requests. */
  readonly maxPendingProposals: number;
  /** Bound on linearizable reads waiting for a read index on this member. */
  readonly maxPendingReads: number;
  /** etcd --strict-reconfig-check: refuse membership changes that would endanger the quorum. */
  readonly strictReconfigCheck: boolean;
  /** etcd --max-learners (3.6; 3.4 fixes it at 1): learners allowed in the membership at once. */
  readonly maxLearners: number;
  /** kvd --auto-promote-learners: learners added without an explicit choice are promoted once in sync. */
  readonly autoPromoteLearners: boolean;
  /**
   * kvd --frontends: processes serving the client port (HTTP/2, gRPC, protobuf, watch fan-out)
   * beside the core (Raft, WAL, apply). 0 serves the client port in the core process itself.
   */
  readonly frontends: number;
  /** kvd --client-http2: which HTTP/2 serves gRPC on the client URLs (src/api/client-listener.ts). */
  readonly clientHttp2: 'kvd' | 'node';
  /** kvd --peer-http2: which HTTP/2 serves the peer URLs and carries Raft messages to peers (src/transport/service.ts). */
  readonly peerHttp2: 'kvd' | 'node';
  /** etcd --auth-token: `simple` (default) or `jwt,...` (see src/server/auth/tokens.ts). */
  readonly authToken: TokenSettings;
  /** etcd --auth-token-ttl: a simple token expires this long after its last use (default 300 s). */
  readonly authTokenTtlMs: number;
  /** TLS of the client port (https:// client URLs); undefined = plain TCP. */
  readonly clientTls?: TlsSettings;
  /** TLS of the peer port (https:// peer URLs); undefined = plain TCP. */
  readonly peerTls?: TlsSettings;
  /** etcd --enable-pprof: serve CPU profiles and heap snapshots at /debug/pprof/ on the client URLs. */
  readonly enablePprof: boolean;
  /** kvd --trace-raft-file: record the Raft pipeline's timeline and write it there on stop ('' = off; src/server/raft-trace.ts). */
  readonly traceRaftFile: string;
  /** etcd --auto-compaction-mode / --auto-compaction-retention (compactor.ts); off by default, as etcd. */
  readonly autoCompaction: AutoCompactionConfig;
  /** etcd --experimental-initial-corrupt-check (corruption.ts); kvd's default is on. */
  readonly initialCorruptCheck: 'enabled' | 'disabled';
  /** etcd --corrupt-check-time: the leader's periodic HashKV comparison; 0 = off. kvd default 5 min. */
  readonly corruptCheckIntervalMs: number;
  /** kvd --enable-ui: serve the web console (dist/console) at /ui/ on the client URLs; off answers 404. */
  readonly enableUi: boolean;
}

export const DEFAULT_CONFIG = {
  name: 'default',
  listenClientUrls: ['http://localhost:2379'],
  advertiseClientUrls: ['http://localhost:2379'],
  listenPeerUrls: ['http://localhost:2380'],
  initialAdvertisePeerUrls: ['http://localhost:2380'],
  initialClusterState: 'new',
  initialClusterToken: 'etcd-cluster',
  heartbeatIntervalMs: 100,
  electionTimeoutMs: 1000,
  snapshotCount: 100_000,
  snapshotCatchUpEntries: 5_000,
  quotaBackendBytes: 2 * 1024 * 1024 * 1024,
  quotaLowWaterPercent: 80,
  maxRequestBytes: 1.5 * 1024 * 1024,
  maxTxnOps: 128,
  maxResponseBytes: 512 * 1024 * 1024,
  listenMetricsUrls: [],
  logLevel: 'info',
  requestTimeoutMs: 7_000,
  watchProgressNotifyIntervalMs: 10 * 60 * 1000,
  maxPendingProposals: 20_000,
  maxPendingReads: 50_000,
  strictReconfigCheck: true,
  maxLearners: 1,
  autoPromoteLearners: false,
  frontends: -1,
  clientHttp2: 'kvd',
  peerHttp2: 'kvd',
  authToken: { kind: 'simple' },
  authTokenTtlMs: 300_000,
  enablePprof: false,
  traceRaftFile: '',
  autoCompaction: { mode: 'off' },
  initialCorruptCheck: 'enabled',
  corruptCheckIntervalMs: 5 * 60 * 1000,
  enableUi: true,
} as const satisfies Partial<ServerConfig>;

/**
 * Parses etcd's `--initial-cluster` syntax: `name=url,name=url2,other=url3`. A name may be empty
 * (`=url`): that is how `member add` prints a member that has not started yet, and a member
 * joining with `--initial-cluster-state existing` is started with what it printed (etcd's
 * NewURLsMap accepts it too; entries with the same name share it, as there).
 */
export function parseInitialCluster(text: string): Map<string, string[]> {
  const cluster = new Map<string, string[]>();
  for (const part of text.split(',').map((s) => s.trim()).filter((s) => s.length > 0)) {
    const eq = part.indexOf('=');
    if (eq < 0 || eq === part.length - 1) {
      throw new KvdError('invalid-argument', { detail: `invalid --initial-cluster entry "${part}" (want name=url)` });
    }
    const name = part.slice(0, eq);
    const url = part.slice(eq + 1);
    checkUrl(url, '--initial-cluster');
    cluster.set(name, [...(cluster.get(name) ?? []), url]);
  }
  return cluster;
}

/** Parses a comma-separated URL list flag and checks each URL. */
export function parseUrls(text: string, flag: string): string[] {
  const urls = text.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  for (const url of urls) checkUrl(url, flag);
  return urls;
}

function checkUrl(url: string, flag: string): void {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (error: unknown) {
    throw new KvdError('invalid-argument', { detail: `${flag}: "${url}" is not a URL`, cause: error });
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:' && parsed.protocol !== 'unix:') {
    throw new KvdError('invalid-argument', { detail: `${flag}: "${url}": only http:// and https:// URLs are supported` });
  }
  if ((parsed.protocol === 'http:' || parsed.protocol === 'https:') && parsed.port === '') {
    throw new KvdError('invalid-argument', { detail: `${flag}: "${url}" has no port` });
  }
}

/** Returns host:port of an http URL, for gRPC binding. */
export function hostPort(url: string): string {
  const parsed = new URL(url);
  return `${parsed.hostname}:${parsed.port}`;
}

/**
 * Checks combinations the flags alone cannot express, as etcd does at start-up. Throws a
 * KvdError('invalid-argument') whose message names the offending flags.
 */
export function validateServerConfig(config: ServerConfig): ServerConfig {
  const fail = (detail: string): never => {
    throw new KvdError('invalid-argument', { detail });
  };
  if (config.name.length === 0) fail('--name must not be empty');
  if (config.dataDir.length === 0) fail('--data-dir must not be empty');
  if (!Number.isInteger(config.heartbeatIntervalMs) || config.heartbeatIntervalMs <= 0) fail('--heartbeat-interval must be a positive integer (ms)');
  if (!Number.isInteger(config.electionTimeoutMs) || config.electionTimeoutMs <= 0) fail('--election-timeout must be a positive integer (ms)');
  if (config.electionTimeoutMs < 5 * config.heartbeatIntervalMs) {
    fail(`--election-timeout[${config.electionTimeoutMs}ms] should be at least as 5 times as --heartbeat-interval[${config.heartbeatIntervalMs}ms]`);
  }
  if (config.electionTimeoutMs > 50_000) fail(`--election-timeout[${config.electionTimeoutMs}ms] is too long, and should be set less than 50000ms`);
  if (!Number.isInteger(config.snapshotCount) || config.snapshotCount <= 0) fail('--snapshot-count must be a positive integer');
  if (!Number.isInteger(config.maxRequestBytes) && config.maxRequestBytes !== DEFAULT_CONFIG.maxRequestBytes) fail('--max-request-bytes must be an integer');
  if (config.maxRequestBytes <= 0) fail('--max-request-bytes must be positive');
  if (config.quotaBackendBytes < 0) fail('--quota-backend-bytes must not be negative');
  if (!Number.isInteger(config.quotaLowWaterPercent) || config.quotaLowWaterPercent < 0 || config.quotaLowWaterPercent >= 100) fail('--quota-low-water-percent must be an integer from 0 to 99');
  if (!Number.isFinite(config.corruptCheckIntervalMs) || config.corruptCheckIntervalMs < 0) fail('--corrupt-check-time must not be negative');
  if (config.maxTxnOps <= 0) fail('--max-txn-ops must be positive');
  if (!Number.isInteger(config.maxResponseBytes) || config.maxResponseBytes < 1024 * 1024) fail('--max-response-bytes must be an integer of at least 1 MiB');
  if (!Number.isInteger(config.frontends) || config.frontends < 0 || config.frontends > 64) fail('--frontends must be an integer from 0 to 64');
  if (config.clientHttp2 !== 'kvd' && config.clientHttp2 !== 'node') fail('--client-http2 must be kvd or node');
  if (config.peerHttp2 !== 'kvd' && config.peerHttp2 !== 'node') fail('--peer-http2 must be kvd or node');
  if (!Number.isInteger(config.maxLearners) || config.maxLearners < 0 || config.maxLearners > 100) fail('--max-learners must be an integer from 0 to 100');
  if (config.listenClientUrls.length === 0) fail('--listen-client-urls must not be empty');
  // etcd (embed/config.go): an https URL needs the port's certificate (or auto TLS).
  for (const url of config.listenClientUrls) {
    if (url.startsWith('https:') && !tlsWanted(config.clientTls)) fail(`TLS key/cert (--cert-file, --key-file) must be provided for client url ${url} with HTTPS scheme`);
  }
  for (const url of config.listenPeerUrls) {
    if (url.startsWith('https:') && !tlsWanted(config.peerTls)) fail(`TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url ${url} with HTTPS scheme`);
  }
  for (const [scope, settings] of [['client', config.clientTls], ['peer', config.peerTls]] as const) {
    const problem = settings === undefined ? undefined : tlsSettingsProblem(settings, scope);
    if (problem !== undefined) fail(problem);
  }
  if (!Number.isInteger(config.authTokenTtlMs) || config.authTokenTtlMs <= 0) fail('--auth-token-ttl must be a positive number of seconds');
  if (config.listenPeerUrls.length === 0) fail('--listen-peer-urls must not be empty');
  if (config.initialClusterState === 'new' || config.initialCluster.size > 0) {
    const mine = config.initialCluster.get(config.name);
    if (mine === undefined) {
      fail(`couldn't find local name "${config.name}" in the initial cluster configuration`);
    } else {
      const advertised = [...config.initialAdvertisePeerUrls].sort().join(',');
      if ([...mine].sort().join(',') !== advertised) {
        fail(`--initial-cluster has ${config.name}=${mine.join(',')} but missing from --initial-advertise-peer-urls=${config.initialAdvertisePeerUrls.join(',')}`);
      }
    }
  }
  return config;
}

/**
 * kvd's settings as etcd spells them: flag names, defaults, the config-file reader and the
 * builder that turns flag-name → text maps (from flags, KVD_* variables or a config file) into a
 * validated {@link ServerConfig}. The CLI only collects the texts and calls {@link buildConfig}.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { LineCounter, isMap, isNode, isScalar, parseDocument } from 'yaml';
import { DEFAULT_CONFIG, parseInitialCluster, parseUrls, validateServerConfig, type ServerConfig, type LogLevel } from './config.js';

/** Every setting: flag name (etcd's), default as text, description. */
export const SETTINGS = [
  ['name', DEFAULT_CONFIG.name, 'Human-readable name for this member.'],
  ['data-dir', '${name}.etcd', 'Path to the data directory.'],
  ['listen-client-urls', DEFAULT_CONFIG.listenClientUrls.join(','), 'List of URLs to listen on for client traffic.'],
  ['advertise-client-urls', DEFAULT_CONFIG.advertiseClientUrls.join(','), 'List of this member\'s client URLs to advertise to the public.'],
  ['listen-peer-urls', DEFAULT_CONFIG.listenPeerUrls.join(','), 'List of URLs to listen on for peer traffic.'],
  ['initial-advertise-peer-urls', DEFAULT_CONFIG.initialAdvertisePeerUrls.join(','), 'List of this member\'s peer URLs to advertise to the rest of the cluster.'],
  ['initial-cluster', '${name}=${initial-advertise-peer-urls}', 'Initial cluster configuration for bootstrapping.'],
  ['initial-cluster-state', DEFAULT_CONFIG.initialClusterState, 'Initial cluster state (\'new\' or \'existing\').'],
  ['initial-cluster-token', DEFAULT_CONFIG.initialClusterToken, 'Initial cluster token for the etcd cluster during bootstrap.'],
  ['heartbeat-interval', String(DEFAULT_CONFIG.heartbeatIntervalMs), 'Time (in milliseconds) of a heartbeat interval.'],
  ['election-timeout', String(DEFAULT_CONFIG.electionTimeoutMs), 'Time (in milliseconds) for an election to timeout.'],
  ['snapshot-count', String(DEFAULT_CONFIG.snapshotCount), 'Number of committed transactions to trigger a snapshot to disk.'],
  ['quota-backend-bytes', '0', 'Raise alarms when backend size exceeds the given quota. 0 means use the default quota.'],
  ['max-request-bytes', String(DEFAULT_CONFIG.maxRequestBytes), 'Maximum client request size in bytes the server will accept.'],
  ['max-txn-ops', String(DEFAULT_CONFIG.maxTxnOps), 'Maximum number of operations permitted in a transaction.'],
  ['max-response-bytes', String(DEFAULT_CONFIG.maxResponseBytes), 'kvd: largest Range response the server builds (RESOURCE_EXHAUSTED beyond it); RangeStream has no such limit.'],
  ['listen-metrics-urls', '', 'List of URLs to listen on for the metrics and health endpoints.'],
  ['log-level', DEFAULT_CONFIG.logLevel, 'Configures log level. Only supports debug, info, warn, error.'],
  ['experimental-watch-progress-notify-interval', `${DEFAULT_CONFIG.watchProgressNotifyIntervalMs}ms`, 'Duration of periodic watch progress notifications.'],
  ['strict-reconfig-check', String(DEFAULT_CONFIG.strictReconfigCheck), 'Reject reconfiguration requests that would cause quorum loss.'],
  ['max-learners', String(DEFAULT_CONFIG.maxLearners), 'Sets the maximum number of learners that can be available in the cluster membership.'],
  ['auto-promote-learners', String(DEFAULT_CONFIG.autoPromoteLearners), 'kvd: promote every learner added without an explicit choice as soon as it is in sync with the leader.'],
  ['enable-pprof', String(DEFAULT_CONFIG.enablePprof), 'Enable runtime profiling data via HTTP server. Address is at client URL + "/debug/pprof/" (kvd: V8 CPU profiles and heap snapshots).'],
  ['enable-ui', String(DEFAULT_CONFIG.enableUi), 'kvd: serve the web console at /ui/ on the client URLs (--enable-ui=false: 404).'],
  ['frontends', 'number of cores', 'kvd: processes serving the client port beside the core process (0: serve it in the core process).'],
] as const;

export type SettingName = (typeof SETTINGS)[number][0];

const settingNames = new Set<string>(SETTINGS.map(([name]) => name));

export function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

export function envName(flag: string): string {
  return `KVD_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/** Settings whose value is a list of URLs: a YAML list or one comma-separated string. */
const URL_LIST_SETTINGS: ReadonlySet<string> = new Set(['listen-client-urls', 'advertise-client-urls', 'listen-peer-urls', 'initial-advertise-peer-urls', 'listen-metrics-urls']);

/** Settings that are durations: a YAML number is nanoseconds (as etcd reads its file), a string a duration text. */
const DURATION_SETTINGS: ReadonlySet<string> = new Set(['experimental-watch-progress-notify-interval']);

/**
 * Top-level keys of etcd's configuration file (its flag names, v3.4 to v3.6) that kvd does not
 * support yet. A config file may carry them: they are ignored with a warning, so that an etcd
 * config file loads. Any other unknown key is an error.
 */
export const ETCD_UNSUPPORTED_KEYS: ReadonlySet<string> = new Set([
  // member and storage
  'wal-dir', 'max-snapshots', 'max-wals', 'snapshot-catchup-entries', 'backend-batch-interval', 'backend-batch-limit',
  'backend-bbolt-freelist-type', 'max-concurrent-streams', 'initial-election-tick-advance', 'pre-vote', 'unsafe-no-fsync',
  'force-new-cluster', 'auto-compaction-mode', 'auto-compaction-retention', 'enable-v2',
  'v2-deprecation', 'memory-mlock', 'bootstrap-defrag-threshold-megabytes', 'feature-gates',
  'socket-reuse-port', 'socket-reuse-address', 'socket-options', 'raft-read-timeout', 'raft-write-timeout',
  'corrupt-check-time', 'compact-hash-check-time', 'compaction-batch-limit', 'compaction-sleep-interval',
  'watch-progress-notify-interval', 'downgrade-check-time', 'warning-apply-duration', 'warning-unary-request-duration',
  // client listeners and HTTP
  'listen-client-http-urls', 'cors', 'host-whitelist', 'enable-grpc-gateway', 'metrics',
  'grpc-keepalive-min-time', 'grpc-keepalive-interval', 'grpc-keepalive-timeout',
  // discovery and proxy
  'discovery', 'discovery-fallback', 'discovery-proxy', 'discovery-srv', 'discovery-srv-name', 'discovery-config',
  'discovery-endpoints', 'discovery-token', 'discovery-dial-timeout', 'discovery-request-timeout', 'discovery-keepalive-time',
  'discovery-keepalive-timeout', 'discovery-insecure-transport', 'discovery-insecure-skip-tls-verify', 'discovery-cert',
  'discovery-key', 'discovery-cacert', 'discovery-user', 'discovery-password',
  'proxy', 'proxy-failure-wait', 'proxy-refresh-interval', 'proxy-dial-timeout', 'proxy-write-timeout', 'proxy-read-timeout',
  // security (TLS flags as top-level keys; the nested sections are below) and auth
  'cert-file', 'key-file', 'client-cert-file', 'client-key-file', 'client-cert-auth', 'client-crl-file', 'trusted-ca-file',
  'auto-tls', 'client-cert-allowed-hostname', 'peer-cert-file', 'peer-key-file', 'peer-client-cert-file', 'peer-client-key-file',
  'peer-client-cert-auth', 'peer-trusted-ca-file', 'peer-auto-tls', 'peer-crl-file', 'peer-cert-allowed-cn',
  'peer-cert-allowed-hostname', 'peer-skip-client-san-verification', 'self-signed-cert-validity', 'cipher-suites',
  'tls-min-version', 'tls-max-version', 'auth-token', 'bcrypt-cost', 'auth-token-ttl',
  // logging and tracing
  'logger', 'log-outputs', 'log-format', 'log-package-levels', 'debug', 'enable-log-rotation', 'log-rotation-config-json',
  'disable-log-sampling', 'enable-distributed-tracing', 'distributed-tracing-address', 'distributed-tracing-service-name',
  'distributed-tracing-instance-id', 'distributed-tracing-sampling-rate',
  // experimental (v3.4/v3.5 names)
  'experimental-initial-corrupt-check', 'experimental-corrupt-check-time', 'experimental-enable-v2v3',
  'experimental-enable-lease-checkpoint', 'experimental-enable-lease-checkpoint-persist', 'experimental-compaction-batch-limit',
  'experimental-compaction-sleep-interval', 'experimental-warning-apply-duration', 'experimental-bootstrap-defrag-threshold-megabytes',
  'experimental-txn-mode-write-with-shared-buffer', 'experimental-max-learners', 'experimental-snapshot-catchup-entries',
  'experimental-downgrade-check-time', 'experimental-memory-mlock', 'experimental-warning-unary-request-duration',
  'experimental-enable-distributed-tracing', 'experimental-distributed-tracing-address',
  'experimental-distributed-tracing-service-name', 'experimental-distributed-tracing-instance-id',
  'experimental-distributed-tracing-sampling-rate', 'experimental-stop-grpc-service-on-defrag',
  'experimental-compact-hash-check-enabled', 'experimental-compact-hash-check-time', 'experimental-wait-cluster-ready-timeout',
  'experimental-peer-skip-client-san-verification', 'experimental-backend-bbolt-freelist-type', 'experimental-local-address',
  'experimental-set-member-localaddr',
]);

/** etcd's nested TLS sections; kvd has no TLS yet, so their keys are ignored with a warning. */
export const ETCD_SECURITY_SECTIONS: ReadonlySet<string> = new Set(['client-transport-security', 'peer-transport-security']);

/** The keys etcd accepts inside a transport-security section. */
export const ETCD_SECURITY_KEYS: ReadonlySet<string> = new Set([
  'cert-file', 'key-file', 'client-cert-file', 'client-key-file', 'client-cert-auth', 'trusted-ca-file', 'auto-tls',
  'allowed-cn', 'allowed-hostname', 'skip-client-san-verification', 'crl-file',
]);

/** What a config file holds for kvd: supported settings as flag texts, and what was ignored. */
export interface ConfigFile {
  /** Flag name → text, as {@link buildConfig} takes them. Null and empty values are left out (defaults apply). */
  readonly values: Map<string, string>;
  /** One line per etcd key that kvd ignores (`path:line: ...`), for the caller to log. */
  readonly warnings: readonly string[];
}

/**
 * Reads a config file in etcd's format: YAML (or JSON, a subset of YAML) whose top-level keys
 * are the flag names, with nested `client-transport-security:` / `peer-transport-security:`
 * sections. URL lists may be YAML lists or comma-separated strings; numbers are taken as
 * written (durations in nanoseconds, as etcd reads them). etcd keys kvd does not support yet
 * produce a warning; any other key, a malformed value or invalid YAML throws an error naming
 * the file and line. Pure apart from reading the file: logging the warnings is the caller's job.
 */
export function readConfigFile(path: string): ConfigFile {
  return parseConfigText(readFileSync(path, 'utf8'), path);
}

/** {@link readConfigFile} on text already read; `source` names it in messages. */
export function parseConfigText(text: string, source: string): ConfigFile {
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { lineCounter, intAsBigInt: true, prettyErrors: true });
  if (document.errors.length > 0) throw new Error(`${source}: invalid YAML: ${document.errors[0].message}`);
  const values = new Map<string, string>();
  const warnings: string[] = [];
  const contents = document.contents;
  if (contents === null || (isScalar(contents) && contents.value === null)) return { values, warnings };
  if (!isMap(contents)) throw new Error(`${source}: expected a mapping of setting names to values at the top level`);
  const lineOf = (node: unknown): number => {
    const offset = isNode(node) ? node.range?.[0] : undefined;
    return offset === undefined ? 0 : lineCounter.linePos(offset).line;
  };
  const plain = document.toJS({ maxAliasCount: 100 }) as Record<string, unknown>;
  for (const pair of contents.items) {
    const where = `${source}:${lineOf(pair.key)}`;
    if (!isScalar(pair.key) || typeof pair.key.value !== 'string') throw new Error(`${where}: setting names must be plain strings`);
    const key = pair.key.value;
    const value = plain[key];
    if (settingNames.has(key)) {
      const textValue = settingText(key, value, where);
      if (textValue !== undefined) values.set(key, textValue);
    } else if (ETCD_SECURITY_SECTIONS.has(key)) {
      warnings.push(...securitySection(key, pair.value, value, { where, lineOf, source }));
    } else if (ETCD_UNSUPPORTED_KEYS.has(key)) {
      if (!isUnset(value)) warnings.push(`${where}: etcd setting "${key}" is not supported by kvd yet; ignored`);
    } else {
      throw new Error(`${where}: unknown setting "${key}"`);
    }
  }
  return { values, warnings };
}

function isUnset(value: unknown): boolean {
  return value === null || value === undefined || value === '';
}

/** The flag text of one supported setting, or undefined when the file leaves it unset. */
function settingText(key: string, value: unknown, where: string): string | undefined {
  if (isUnset(value)) return undefined;
  if (Array.isArray(value)) {
    if (!URL_LIST_SETTINGS.has(key)) throw new Error(`${where}: "${key}" takes one value, not a list`);
    const items = value.map((item: unknown) => {
      if (typeof item !== 'string') throw new Error(`${where}: "${key}" must list URLs as strings`);
      return item;
    });
    return items.join(',');
  }
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return String(value);
  if (typeof value === 'bigint' || (typeof value === 'number' && Number.isFinite(value))) {
    // etcd's file holds durations as Go time.Duration integers: nanoseconds.
    return DURATION_SETTINGS.has(key) ? `${Number(value) / 1e6}ms` : String(value);
  }
  throw new Error(`${where}: "${key}" has an unusable value (${typeof value === 'object' ? 'a mapping' : typeof value})`);
}

/** Checks one transport-security section and returns warnings for the keys it sets. */
function securitySection(section: string, node: unknown, value: unknown, context: { where: string; lineOf: (node: unknown) => number; source: string }): string[] {
  if (isUnset(value)) return [];
  if (!isMap(node) || typeof value !== 'object' || Array.isArray(value)) throw new Error(`${context.where}: "${section}" must be a mapping (cert-file, key-file, ...)`);
  const warnings: string[] = [];
  const fields = value as Record<string, unknown>;
  for (const pair of node.items) {
    const where = `${context.source}:${context.lineOf(pair.key)}`;
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    if (!ETCD_SECURITY_KEYS.has(key)) throw new Error(`${where}: unknown setting "${section}.${key}"`);
    if (!isUnset(fields[key])) warnings.push(`${where}: etcd setting "${section}.${key}" is not supported by kvd yet (no TLS); ignored`);
  }
  return warnings;
}

function parseDurationMs(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (match === null) throw new Error(`--${flag}: invalid duration "${text}"`);
  const value = Number(match[1]);
  const unit = match[2] ?? 'ms';
  return value * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit as 'ms' | 's' | 'm' | 'h'];
}

function parseBoolean(text: string, flag: string): boolean {
  const value = text.trim().toLowerCase();
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new Error(`--${flag}: invalid boolean "${text}" (want true or false)`);
}

function parseInteger(text: string, flag: string): number {
  if (!/^-?\d+$/.test(text.trim())) throw new Error(`--${flag}: invalid integer "${text}"`);
  return Number(text);
}

/** Builds the server config from the merged settings (flag name → text). */
export function buildConfig(values: ReadonlyMap<string, string>): ServerConfig {
  const get = (flag: SettingName): string | undefined => values.get(flag);
  const name = get('name') ?? DEFAULT_CONFIG.name;
  const peerUrls = parseUrls(get('initial-advertise-peer-urls') ?? DEFAULT_CONFIG.initialAdvertisePeerUrls.join(','), '--initial-advertise-peer-urls');
  const state = get('initial-cluster-state') ?? DEFAULT_CONFIG.initialClusterState;
  if (state !== 'new' && state !== 'existing') throw new Error(`--initial-cluster-state: must be "new" or "existing", got "${state}"`);
  const level = get('log-level') ?? DEFAULT_CONFIG.logLevel;
  if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new Error(`--log-level: must be one of debug, info, warn, error; got "${level}"`);
  const quota = parseInteger(get('quota-backend-bytes') ?? '0', 'quota-backend-bytes');
  const config: ServerConfig = {
    name,
    dataDir: get('data-dir') ?? `${name}.etcd`,
    listenClientUrls: parseUrls(get('listen-client-urls') ?? DEFAULT_CONFIG.listenClientUrls.join(','), '--listen-client-urls'),
    advertiseClientUrls: parseUrls(get('advertise-client-urls') ?? DEFAULT_CONFIG.advertiseClientUrls.join(','), '--advertise-client-urls'),
    listenPeerUrls: parseUrls(get('listen-peer-urls') ?? DEFAULT_CONFIG.listenPeerUrls.join(','), '--listen-peer-urls'),
    initialAdvertisePeerUrls: peerUrls,
    initialCluster: parseInitialCluster(get('initial-cluster') ?? `${name}=${peerUrls.join(`,${name}=`)}`),
    initialClusterState: state,
    initialClusterToken: get('initial-cluster-token') ?? DEFAULT_CONFIG.initialClusterToken,
    heartbeatIntervalMs: parseInteger(get('heartbeat-interval') ?? String(DEFAULT_CONFIG.heartbeatIntervalMs), 'heartbeat-interval'),
    electionTimeoutMs: parseInteger(get('election-timeout') ?? String(DEFAULT_CONFIG.electionTimeoutMs), 'election-timeout'),
    snapshotCount: parseInteger(get('snapshot-count') ?? String(DEFAULT_CONFIG.snapshotCount), 'snapshot-count'),
    snapshotCatchUpEntries: DEFAULT_CONFIG.snapshotCatchUpEntries,
    quotaBackendBytes: quota === 0 ? DEFAULT_CONFIG.quotaBackendBytes : quota,
    maxRequestBytes: parseInteger(get('max-request-bytes') ?? String(DEFAULT_CONFIG.maxRequestBytes), 'max-request-bytes'),
    maxTxnOps: parseInteger(get('max-txn-ops') ?? String(DEFAULT_CONFIG.maxTxnOps), 'max-txn-ops'),
    maxResponseBytes: parseInteger(get('max-response-bytes') ?? String(DEFAULT_CONFIG.maxResponseBytes), 'max-response-bytes'),
    listenMetricsUrls: parseUrls(get('listen-metrics-urls') ?? '', '--listen-metrics-urls'),
    logLevel: level as LogLevel,
    requestTimeoutMs: DEFAULT_CONFIG.requestTimeoutMs,
    watchProgressNotifyIntervalMs: parseDurationMs(get('experimental-watch-progress-notify-interval') ?? '600000', 'experimental-watch-progress-notify-interval'),
    maxPendingProposals: DEFAULT_CONFIG.maxPendingProposals,
    maxPendingReads: DEFAULT_CONFIG.maxPendingReads,
    strictReconfigCheck: parseBoolean(get('strict-reconfig-check') ?? String(DEFAULT_CONFIG.strictReconfigCheck), 'strict-reconfig-check'),
    maxLearners: parseInteger(get('max-learners') ?? String(DEFAULT_CONFIG.maxLearners), 'max-learners'),
    autoPromoteLearners: parseBoolean(get('auto-promote-learners') ?? String(DEFAULT_CONFIG.autoPromoteLearners), 'auto-promote-learners'),
    enablePprof: parseBoolean(get('enable-pprof') ?? String(DEFAULT_CONFIG.enablePprof), 'enable-pprof'),
    enableUi: parseBoolean(get('enable-ui') ?? String(DEFAULT_CONFIG.enableUi), 'enable-ui'),
    frontends: get('frontends') === undefined ? availableParallelism() : parseInteger(get('frontends') as string, 'frontends'),
  };
  // Snapshot catch-up cannot exceed the snapshot interval (small --snapshot-count in tests).
  return validateServerConfig({ ...config, snapshotCatchUpEntries: Math.min(config.snapshotCatchUpEntries, Math.max(1, Math.floor(config.snapshotCount / 2))) });
}


/**
 * kvd's settings as etcd spells them: flag names, defaults, the config-file reader and the
 * builder that turns flag-name → text maps (from flags, KVD_* variables or a config file) into a
 * validated {@link ServerConfig}. The CLI only collects the texts and calls {@link buildConfig}.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { LineCounter, isMap, isNode, isScalar, parseDocument } from 'yaml';
import { parseAutoCompaction } from './compactor.js';
import { DEFAULT_CONFIG, parseInitialCluster, parseUrls, validateServerConfig, type ServerConfig, type LogLevel } from './config.js';
import { parseTokenSettings } from './auth/tokens.js';
import { opensslCiphers, type TlsSettings } from './tls.js';

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
  ['quota-low-water-percent', String(DEFAULT_CONFIG.quotaLowWaterPercent), 'kvd: a NOSPACE alarm raised by the quota clears itself once the member\'s backend is below this percentage of the quota (0: only \'alarm disarm\' clears it, as in etcd).'],
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
  ['trace-raft-file', '', 'kvd diagnostics: record when each log entry is appended, sent, persisted, acknowledged, committed, answered and applied (and when commit notices go out), and write it to this file as JSON lines when the member stops (bench/trace-put.ts reads it).'],
  ['enable-ui', String(DEFAULT_CONFIG.enableUi), 'kvd: serve the web console at /ui/ on the client URLs (--enable-ui=false: 404).'],
  ['frontends', 'number of cores (0 on 2 cores or fewer)', 'kvd: processes serving the client port beside the core process (0: serve it in the core process). On 2 cores or fewer the default is 0: measured there, the front-ends\' channel costs more CPU than they take off the core.'],
  ['client-http2', DEFAULT_CONFIG.clientHttp2, 'kvd: which HTTP/2 serves gRPC on the client URLs: kvd (its own, about a fifth of the CPU per call) or node (grpc-js on Node\'s HTTP/2 module).'],
  ['peer-http2', DEFAULT_CONFIG.peerHttp2, 'kvd: which HTTP/2 serves the peer URLs and carries Raft messages and member calls to peers: kvd (its own) or node (grpc-js on Node\'s HTTP/2 module). Members with either setting work together.'],
  ['auto-compaction-mode', 'periodic', 'Interpret \'auto-compaction-retention\' one of: periodic|revision. \'periodic\' for duration based retention, defaulting to hours if no time unit is provided (e.g. \'5m\'). \'revision\' for revision number based retention.'],
  ['auto-compaction-retention', '0', 'Auto compaction retention for mvcc key value store. 0 means disable auto compaction.'],
  ['experimental-initial-corrupt-check', String(DEFAULT_CONFIG.initialCorruptCheck === 'enabled'), 'Compare this member\'s HashKV with its peers\' at start; a mismatch raises a CORRUPT alarm (kvd: on by default).'],
  ['corrupt-check-time', `${DEFAULT_CONFIG.corruptCheckIntervalMs / 60_000}m`, 'Duration of time between the leader\'s cluster corruption checks (0 turns them off).'],
  ['cert-file', '', 'Path to the client server TLS cert file.'],
  ['key-file', '', 'Path to the client server TLS key file.'],
  ['trusted-ca-file', '', 'Path to the client server TLS trusted CA cert file (client certificates are then required).'],
  ['client-cert-auth', 'false', 'Enable client cert authentication (the certificate\'s CN names the user).'],
  ['auto-tls', 'false', 'Client TLS using generated certificates.'],
  ['peer-cert-file', '', 'Path to the peer server TLS cert file.'],
  ['peer-key-file', '', 'Path to the peer server TLS key file.'],
  ['peer-trusted-ca-file', '', 'Path to the peer server TLS trusted CA file.'],
  ['peer-client-cert-auth', 'false', 'Enable peer client cert authentication.'],
  ['peer-auto-tls', 'false', 'Peer TLS using generated certificates.'],
  ['peer-cert-allowed-cn', '', 'Allowed CN for inter peer authentication.'],
  ['cipher-suites', '', 'Comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated by Node).'],
  ['auth-token', 'simple', 'Specify auth token specific options (simple, or jwt,pub-key=...,priv-key=...,sign-method=RS256,ttl=5m).'],
  ['auth-token-ttl', '300', 'The lifetime in seconds of the auth token.'],
] as const;

/**
 * Settings that are switches (those whose default is `true` or `false`): `--auto-tls` alone means
 * true, as etcd's boolean flags.
 */
export const BOOLEAN_SETTINGS: ReadonlySet<string> = new Set(SETTINGS.filter(([, fallback]) => fallback === 'true' || fallback === 'false').map(([name]) => name));

export type SettingName = (typeof SETTINGS)[number][0];

const settingNames = new Set<string>(SETTINGS.map(([name]) => name));

export function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

export function envName(flag: string): string {
  return `KVD_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/** Settings whose value is a list (URLs, cipher suites): a YAML list or one comma-separated string. */
const URL_LIST_SETTINGS: ReadonlySet<string> = new Set(['listen-client-urls', 'advertise-client-urls', 'listen-peer-urls', 'initial-advertise-peer-urls', 'listen-metrics-urls', 'cipher-suites']);

/** Settings that are durations: a YAML number is nanoseconds (as etcd reads its file), a string a duration text. */
const DURATION_SETTINGS: ReadonlySet<string> = new Set(['experimental-watch-progress-notify-interval', 'corrupt-check-time']);

/**
 * Top-level keys of etcd's configuration file (its flag names, v3.4 to v3.6) that kvd does not
 * support yet. A config file may carry them: they are ignored with a warning, so that an etcd
 * config file loads. Any other unknown key is an error.
 */
export const ETCD_UNSUPPORTED_KEYS: ReadonlySet<string> = new Set([
  // member and storage
  'wal-dir', 'max-snapshots', 'max-wals', 'snapshot-catchup-entries', 'backend-batch-interval', 'backend-batch-limit',
  'backend-bbolt-freelist-type', 'max-concurrent-streams', 'initial-election-tick-advance', 'pre-vote', 'unsafe-no-fsync',
  'force-new-cluster', 'enable-v2',
  'v2-deprecation', 'memory-mlock', 'bootstrap-defrag-threshold-megabytes', 'feature-gates',
  'socket-reuse-port', 'socket-reuse-address', 'socket-options', 'raft-read-timeout', 'raft-write-timeout',
  'compact-hash-check-time', 'compaction-batch-limit', 'compaction-sleep-interval',
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
  // security (the supported TLS and auth settings are in SETTINGS; the nested sections are below)
  'client-cert-file', 'client-key-file', 'client-crl-file',
  'client-cert-allowed-hostname', 'peer-client-cert-file', 'peer-client-key-file',
  'peer-crl-file',
  'peer-cert-allowed-hostname', 'peer-skip-client-san-verification', 'self-signed-cert-validity',
  'tls-min-version', 'tls-max-version', 'bcrypt-cost',
  // logging and tracing
  'logger', 'log-outputs', 'log-format', 'log-package-levels', 'debug', 'enable-log-rotation', 'log-rotation-config-json',
  'disable-log-sampling', 'enable-distributed-tracing', 'distributed-tracing-address', 'distributed-tracing-service-name',
  'distributed-tracing-instance-id', 'distributed-tracing-sampling-rate',
  // experimental (v3.4/v3.5 names)
  'experimental-corrupt-check-time', 'experimental-enable-v2v3',
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

/** etcd's nested TLS sections: their supported keys map onto these settings (others: a warning). */
export const ETCD_SECURITY_SECTIONS: ReadonlyMap<string, Readonly<Record<string, SettingName>>> = new Map<string, Readonly<Record<string, SettingName>>>([
  ['client-transport-security', { 'cert-file': 'cert-file', 'key-file': 'key-file', 'trusted-ca-file': 'trusted-ca-file', 'client-cert-auth': 'client-cert-auth', 'auto-tls': 'auto-tls' }],
  ['peer-transport-security', { 'cert-file': 'peer-cert-file', 'key-file': 'peer-key-file', 'trusted-ca-file': 'peer-trusted-ca-file', 'client-cert-auth': 'peer-client-cert-auth', 'auto-tls': 'peer-auto-tls', 'allowed-cn': 'peer-cert-allowed-cn' }],
]);

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
      warnings.push(...securitySection(key, pair.value, value, { where, lineOf, source, values }));
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
      if (typeof item !== 'string') throw new Error(`${where}: "${key}" must list ${key === 'cipher-suites' ? 'suites' : 'URLs'} as strings`);
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

/**
 * Reads one transport-security section: its supported keys become the matching settings in
 * `values` (cert-file → --cert-file or --peer-cert-file, ...); the rest produce warnings.
 */
function securitySection(section: string, node: unknown, value: unknown, context: { where: string; lineOf: (node: unknown) => number; source: string; values: Map<string, string> }): string[] {
  if (isUnset(value)) return [];
  if (!isMap(node) || typeof value !== 'object' || Array.isArray(value)) throw new Error(`${context.where}: "${section}" must be a mapping (cert-file, key-file, ...)`);
  const warnings: string[] = [];
  const fields = value as Record<string, unknown>;
  const mapping = ETCD_SECURITY_SECTIONS.get(section) ?? {};
  for (const pair of node.items) {
    const where = `${context.source}:${context.lineOf(pair.key)}`;
    const key = isScalar(pair.key) ? String(pair.key.value) : '';
    if (!ETCD_SECURITY_KEYS.has(key)) throw new Error(`${where}: unknown setting "${section}.${key}"`);
    if (isUnset(fields[key])) continue;
    const setting = mapping[key];
    if (setting === undefined) {
      warnings.push(`${where}: etcd setting "${section}.${key}" is not supported by kvd yet; ignored`);
      continue;
    }
    const text = settingText(setting, fields[key], where);
    if (text !== undefined) context.values.set(setting, text);
  }
  return warnings;
}

/** Go duration units in milliseconds. */
const DURATION_UNITS_MS: Readonly<Record<string, number>> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * A duration as Go's time.ParseDuration reads it ("300ms", "1.5h", "1h30m"), in milliseconds; a
 * bare number is milliseconds (kvd's older flag texts).
 */
export function parseDurationMs(text: string, flag: string): number {
  const trimmed = text.trim();
  if (/^\d+(?:\.\d+)?$/.test(trimmed)) return Number(trimmed);
  const part = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let consumed = 0;
  for (let match = part.exec(trimmed); match !== null; match = part.exec(trimmed)) {
    total += Number(match[1]) * DURATION_UNITS_MS[match[2]];
    consumed = part.lastIndex;
  }
  if (consumed === 0 || consumed !== trimmed.length) throw new Error(`--${flag}: invalid duration "${text}"`);
  return total;
}

/**
 * The default number of front-end processes for `cores` cores: one per core, except on 2 cores or
 * fewer, where serving the client port in the core process measured faster for every workload
 * (bench/README.md, "Front-ends on 2 cores"): there the front-ends compete with the core for the
 * same cores, and the channel's encoding and syscalls cost more than the gRPC work they take over.
 */
export function defaultFrontends(cores: number): number {
  return cores <= 2 ? 0 : cores;
}

/** One port's TLS settings from the flag texts; undefined when none is set. */
function tlsSettingsOf(texts: { certFile?: string; keyFile?: string; trustedCaFile?: string; clientCertAuth: boolean; autoTls: boolean; allowedCn?: string; cipherSuites?: string }): TlsSettings | undefined {
  const nonEmpty = (text: string | undefined): string | undefined => (text === undefined || text.trim() === '' ? undefined : text.trim());
  const settings: TlsSettings = {
    certFile: nonEmpty(texts.certFile),
    keyFile: nonEmpty(texts.keyFile),
    trustedCaFile: nonEmpty(texts.trustedCaFile),
    clientCertAuth: texts.clientCertAuth,
    autoTls: texts.autoTls,
    allowedCn: nonEmpty(texts.allowedCn),
    cipherSuites: nonEmpty(texts.cipherSuites)?.split(',').map((suite) => suite.trim()).filter((suite) => suite !== ''),
  };
  const empty = settings.certFile === undefined && settings.keyFile === undefined && settings.trustedCaFile === undefined && !settings.clientCertAuth && !settings.autoTls && settings.allowedCn === undefined;
  return empty ? undefined : settings;
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
    quotaLowWaterPercent: parseInteger(get('quota-low-water-percent') ?? String(DEFAULT_CONFIG.quotaLowWaterPercent), 'quota-low-water-percent'),
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
    traceRaftFile: get('trace-raft-file') ?? '',
    enableUi: parseBoolean(get('enable-ui') ?? String(DEFAULT_CONFIG.enableUi), 'enable-ui'),
    clientHttp2: (get('client-http2') ?? DEFAULT_CONFIG.clientHttp2) as ServerConfig['clientHttp2'],
    peerHttp2: (get('peer-http2') ?? DEFAULT_CONFIG.peerHttp2) as ServerConfig['peerHttp2'],
    frontends: get('frontends') === undefined ? defaultFrontends(availableParallelism()) : parseInteger(get('frontends') as string, 'frontends'),
    initialCorruptCheck: parseBoolean(get('experimental-initial-corrupt-check') ?? 'true', 'experimental-initial-corrupt-check') ? 'enabled' : 'disabled',
    corruptCheckIntervalMs: parseDurationMs(get('corrupt-check-time') ?? `${DEFAULT_CONFIG.corruptCheckIntervalMs}ms`, 'corrupt-check-time'),
    autoCompaction: parseAutoCompaction(get('auto-compaction-mode') ?? 'periodic', get('auto-compaction-retention') ?? '0', (text) => parseDurationMs(text, 'auto-compaction-retention')),
    authToken: parseTokenSettings(get('auth-token') ?? 'simple', (text) => parseDurationMs(text, 'auth-token')).settings,
    authTokenTtlMs: parseInteger(get('auth-token-ttl') ?? '300', 'auth-token-ttl') * 1000,
    clientTls: tlsSettingsOf({
      certFile: get('cert-file'),
      keyFile: get('key-file'),
      trustedCaFile: get('trusted-ca-file'),
      clientCertAuth: parseBoolean(get('client-cert-auth') ?? 'false', 'client-cert-auth'),
      autoTls: parseBoolean(get('auto-tls') ?? 'false', 'auto-tls'),
      cipherSuites: get('cipher-suites'),
    }),
    peerTls: tlsSettingsOf({
      certFile: get('peer-cert-file'),
      keyFile: get('peer-key-file'),
      trustedCaFile: get('peer-trusted-ca-file'),
      clientCertAuth: parseBoolean(get('peer-client-cert-auth') ?? 'false', 'peer-client-cert-auth'),
      autoTls: parseBoolean(get('peer-auto-tls') ?? 'false', 'peer-auto-tls'),
      allowedCn: get('peer-cert-allowed-cn'),
      cipherSuites: get('cipher-suites'),
    }),
  };
  const suites = get('cipher-suites');
  if (suites !== undefined && suites.trim() !== '') opensslCiphers(suites.split(',').map((suite) => suite.trim()).filter((suite) => suite !== ''));
  // Snapshot catch-up cannot exceed the snapshot interval (small --snapshot-count in tests).
  return validateServerConfig({ ...config, snapshotCatchUpEntries: Math.min(config.snapshotCatchUpEntries, Math.max(1, Math.floor(config.snapshotCount / 2))) });
}


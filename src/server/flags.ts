/**
 * kvd's settings as etcd spells them: flag names, defaults, the config-file reader and the
 * builder that turns flag-name → text maps (from flags, KVD_* variables or a config file) into a
 * validated {@link ServerConfig}. The CLI only collects the texts and calls {@link buildConfig}.
 */
import { readFileSync } from 'node:fs';
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
  ['listen-metrics-urls', '', 'List of URLs to listen on for the metrics and health endpoints.'],
  ['log-level', DEFAULT_CONFIG.logLevel, 'Configures log level. Only supports debug, info, warn, error.'],
  ['experimental-watch-progress-notify-interval', `${DEFAULT_CONFIG.watchProgressNotifyIntervalMs}ms`, 'Duration of periodic watch progress notifications.'],
] as const;

export type SettingName = (typeof SETTINGS)[number][0];

const settingNames = new Set<string>(SETTINGS.map(([name]) => name));

export function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

export function envName(flag: string): string {
  return `KVD_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/** Reads a config file: YAML `key: value` lines with etcd's flag names as keys, or JSON. */
export function readConfigFile(path: string): Map<string, string> {
  const text = readFileSync(path, 'utf8');
  const values = new Map<string, string>();
  const put = (key: string, value: unknown, where: string): void => {
    if (!settingNames.has(key)) throw new Error(`${where}: unknown setting "${key}"`);
    values.set(key, Array.isArray(value) ? value.join(',') : String(value));
  };
  if (text.trimStart().startsWith('{')) {
    const json = JSON.parse(text) as Record<string, unknown>;
    for (const [key, value] of Object.entries(json)) put(key, value, path);
    return values;
  }
  text.split('\n').forEach((raw, index) => {
    const line = raw.replace(/\s+#.*$/, '').replace(/^#.*$/, '').trimEnd();
    if (line.trim().length === 0) return;
    const match = /^([a-z0-9-]+):\s*(.*)$/.exec(line);
    if (match === null) throw new Error(`${path}:${index + 1}: expected "key: value", got "${raw}"`);
    let value = match[2].trim();
    if ((value.startsWith("'") && value.endsWith("'")) || (value.startsWith('"') && value.endsWith('"'))) value = value.slice(1, -1);
    if (value === 'null' || value === '~') return;
    put(match[1], value, `${path}:${index + 1}`);
  });
  return values;
}

function parseDurationMs(text: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (match === null) throw new Error(`--${flag}: invalid duration "${text}"`);
  const value = Number(match[1]);
  const unit = match[2] ?? 'ms';
  return value * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[unit as 'ms' | 's' | 'm' | 'h'];
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
    listenMetricsUrls: parseUrls(get('listen-metrics-urls') ?? '', '--listen-metrics-urls'),
    logLevel: level as LogLevel,
    requestTimeoutMs: DEFAULT_CONFIG.requestTimeoutMs,
    watchProgressNotifyIntervalMs: parseDurationMs(get('experimental-watch-progress-notify-interval') ?? '600000', 'experimental-watch-progress-notify-interval'),
    maxPendingProposals: DEFAULT_CONFIG.maxPendingProposals,
    maxPendingReads: DEFAULT_CONFIG.maxPendingReads,
  };
  // Snapshot catch-up cannot exceed the snapshot interval (small --snapshot-count in tests).
  return validateServerConfig({ ...config, snapshotCatchUpEntries: Math.min(config.snapshotCatchUpEntries, Math.max(1, Math.floor(config.snapshotCount / 2))) });
}


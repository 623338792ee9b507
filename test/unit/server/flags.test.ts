// Goal: kvd's settings parse like etcd's: defaults, --initial-cluster syntax, config files in
// etcd's format (YAML with nested security sections, or JSON), and clear refusals of bad or
// contradictory settings.
// Method: call buildConfig / readConfigFile directly with maps of flag texts and temp files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildConfig, readConfigFile } from '../../../src/server/flags.js';

test('defaults follow etcd: name default, data dir default.etcd, 100 ms heartbeat, 1 s election', () => {
  const config = buildConfig(new Map());
  assert.equal(config.name, 'default');
  assert.equal(config.dataDir, 'default.etcd');
  assert.equal(config.heartbeatIntervalMs, 100);
  assert.equal(config.electionTimeoutMs, 1000);
  assert.equal(config.snapshotCount, 100_000);
  assert.equal(config.maxRequestBytes, 1.5 * 1024 * 1024);
  assert.deepEqual([...config.initialCluster], [['default', ['http://localhost:2380']]]);
});

test('initial cluster lists every member and must contain this member with its advertised URLs', () => {
  const values = new Map([
    ['name', 'b'],
    ['initial-advertise-peer-urls', 'http://127.0.0.1:2'],
    ['initial-cluster', 'a=http://127.0.0.1:1,b=http://127.0.0.1:2,c=http://127.0.0.1:3'],
  ]);
  assert.equal(buildConfig(values).initialCluster.size, 3);
  assert.throws(() => buildConfig(new Map([...values, ['name', 'x']])), /couldn't find local name "x"/);
  assert.throws(() => buildConfig(new Map([...values, ['initial-advertise-peer-urls', 'http://127.0.0.1:9']])), /missing from --initial-advertise-peer-urls/);
});

test('an unstarted member appears in --initial-cluster without a name (=url), as member add prints it', () => {
  const config = buildConfig(new Map([
    ['name', 'b'],
    ['initial-advertise-peer-urls', 'http://127.0.0.1:2'],
    ['initial-cluster-state', 'existing'],
    ['initial-cluster', 'a=http://127.0.0.1:1,b=http://127.0.0.1:2,=http://127.0.0.1:3'],
  ]));
  assert.deepEqual([...config.initialCluster], [['a', ['http://127.0.0.1:1']], ['b', ['http://127.0.0.1:2']], ['', ['http://127.0.0.1:3']]]);
  assert.throws(() => buildConfig(new Map([['name', 'b'], ['initial-cluster', 'b=']])), /invalid --initial-cluster entry "b="/);
  assert.throws(() => buildConfig(new Map([['name', 'b'], ['initial-cluster', 'b']])), /invalid --initial-cluster entry "b"/);
});

test('contradictory or malformed settings are refused with the flag named', () => {
  assert.throws(() => buildConfig(new Map([['heartbeat-interval', '300'], ['election-timeout', '1000']])), /at least as 5 times/);
  assert.throws(() => buildConfig(new Map([['initial-cluster-state', 'maybe']])), /--initial-cluster-state/);
  assert.throws(() => buildConfig(new Map([['snapshot-count', 'lots']])), /--snapshot-count/);
  assert.throws(() => buildConfig(new Map([['listen-client-urls', 'https://127.0.0.1:1']])), /TLS key\/cert \(--cert-file, --key-file\) must be provided for client url https:\/\/127\.0\.0\.1:1 with HTTPS scheme/);
  assert.throws(() => buildConfig(new Map([['listen-client-urls', 'ftp://127.0.0.1:1']])), /only http:\/\/ and https:\/\//);
  assert.throws(() => buildConfig(new Map([['cert-file', '/a.crt']])), /--cert-file and --key-file must both be given/);
  assert.throws(() => buildConfig(new Map([['cipher-suites', 'TLS_BOGUS']])), /unexpected TLS cipher suite "TLS_BOGUS"/);
  assert.throws(() => buildConfig(new Map([['auth-token', 'jwt,sign-method=NOPE']])), /invalid auth signature method/);
  assert.throws(() => buildConfig(new Map([['log-level', 'loud']])), /--log-level/);
});

test('config files: flag names as keys; unknown keys refused with file and line; JSON still reads', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvd-flags-'));
  const yaml = join(dir, 'kvd.yaml');
  writeFileSync(yaml, "# comment\nname: 'n1'\ndata-dir: /tmp/x\nheartbeat-interval: 50\nelection-timeout: 500 # ms\ninitial-advertise-peer-urls: http://127.0.0.1:7\ninitial-cluster: n1=http://127.0.0.1:7\n");
  const config = buildConfig(readConfigFile(yaml).values);
  assert.equal(config.name, 'n1');
  assert.equal(config.heartbeatIntervalMs, 50);
  assert.equal(config.electionTimeoutMs, 500);
  const json = join(dir, 'kvd.json');
  writeFileSync(json, JSON.stringify({ name: 'j', 'listen-client-urls': ['http://127.0.0.1:1', 'http://127.0.0.1:2'] }));
  assert.deepEqual(readConfigFile(json).values.get('listen-client-urls'), 'http://127.0.0.1:1,http://127.0.0.1:2');
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'name: a\n\nnmae: typo\n');
  assert.throws(() => readConfigFile(bad), (error: Error) => error.message === `${bad}:3: unknown setting "nmae"`);
});

/**
 * An etcd-style config file, shaped like etcd's etcd.conf.yml.sample: comments, quoted values
 * holding '#', URL lists both as YAML lists and as comma strings, null (empty) values, nested
 * transport-security sections, flow sequences over several lines, and a duration in
 * nanoseconds. Line numbers matter: the test checks the warnings point at them.
 */
const ETCD_STYLE_CONFIG = `# Configuration of one member, in etcd's format.

# Human-readable name for this member.
name: 'infra#1'

# Path to the data directory.
data-dir: "/var/lib/kvd # not a comment"
wal-dir:
snapshot-count: 10000
heartbeat-interval: 100
election-timeout: 1000
quota-backend-bytes: 8589934592
listen-peer-urls: http://127.0.0.1:12380
listen-client-urls:
  - http://127.0.0.1:12379   # a comment after a list item
  - http://127.0.0.1:22379
max-snapshots: 5
max-wals: 5
cors:
initial-advertise-peer-urls: http://127.0.0.1:12380
advertise-client-urls: [http://127.0.0.1:12379]
discovery:
discovery-fallback: 'proxy'
initial-cluster: "infra#1=http://127.0.0.1:12380,infra2=http://127.0.0.1:22380"
initial-cluster-token: 'etcd-cluster#7' # the token keeps its '#'
initial-cluster-state: 'new'
strict-reconfig-check: false
enable-pprof: true
proxy: 'off'
client-transport-security:
  # Path to the client server TLS cert file.
  cert-file:
  key-file:
  client-cert-auth: false
  trusted-ca-file:
  auto-tls: false
peer-transport-security:
  cert-file: /etc/kvd/peer.crt
  key-file: /etc/kvd/peer.key
  client-cert-auth: true
  trusted-ca-file: /etc/kvd/ca.crt
  auto-tls: false
self-signed-cert-validity: 1
log-level: debug
logger: zap
log-outputs: [stderr]
force-new-cluster: false
auto-compaction-mode: periodic
auto-compaction-retention: "1"
cipher-suites: [
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
]
tls-min-version: 'TLS1.2'
experimental-watch-progress-notify-interval: 5000000000
`;

test('an etcd-style config file loads: nested security sections, comments, quoted #, lists, nanosecond durations', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvd-flags-'));
  const path = join(dir, 'etcd.conf.yml');
  writeFileSync(path, ETCD_STYLE_CONFIG);
  const { values, warnings } = readConfigFile(path);
  const config = buildConfig(values);
  assert.equal(config.name, 'infra#1');
  assert.equal(config.dataDir, '/var/lib/kvd # not a comment');
  assert.equal(config.initialClusterToken, 'etcd-cluster#7');
  assert.deepEqual(config.listenClientUrls, ['http://127.0.0.1:12379', 'http://127.0.0.1:22379']);
  assert.deepEqual(config.advertiseClientUrls, ['http://127.0.0.1:12379']);
  assert.deepEqual([...config.initialCluster.keys()], ['infra#1', 'infra2']);
  assert.equal(config.snapshotCount, 10_000);
  assert.equal(config.quotaBackendBytes, 8_589_934_592);
  assert.equal(config.logLevel, 'debug');
  assert.equal(config.watchProgressNotifyIntervalMs, 5_000, '5e9 ns is 5 s, as etcd reads a duration from its file');
  assert.equal(config.enablePprof, true, 'enable-pprof is supported (profiles at /debug/pprof)');
  // The transport-security sections and cipher-suites (a YAML list) map onto the TLS settings.
  assert.deepEqual(config.peerTls, {
    certFile: '/etc/kvd/peer.crt', keyFile: '/etc/kvd/peer.key', trustedCaFile: '/etc/kvd/ca.crt', clientCertAuth: true, autoTls: false, allowedCn: undefined,
    cipherSuites: ['TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384'],
  });
  assert.equal(config.clientTls, undefined, 'a client section with only false switches sets nothing');
  // Every etcd key kvd ignores is named with its line; null values set nothing and say nothing.
  assert.ok(warnings.includes(`${path}:43: etcd setting "self-signed-cert-validity" is not supported by kvd yet; ignored`), warnings.join('\n'));
  assert.ok(!warnings.some((line) => /transport-security|cipher-suites/.test(line)), 'the security sections are supported');
  assert.ok(!warnings.some((line) => /"wal-dir"|"cors"|"discovery"|client-transport-security\.cert-file/.test(line)), 'null values are not reported');
  assert.equal(config.strictReconfigCheck, false, 'a YAML boolean reads as the flag text');
  assert.deepEqual(config.autoCompaction, { mode: 'periodic', retentionMs: 3_600_000 }, 'auto-compaction is read ("1" = one hour)');
  assert.equal(warnings.length, 9, warnings.join('\n'));
});

test('config files: bad shapes are refused with the file, line and key named', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvd-flags-'));
  const write = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  const typo = write('typo.yaml', 'name: a\nclient-transport-security:\n  cert-file: /x\n  cert-fiel: /y\n');
  assert.throws(() => readConfigFile(typo), (error: Error) => error.message === `${typo}:4: unknown setting "client-transport-security.cert-fiel"`);
  const flat = write('flat.yaml', 'peer-transport-security: yes\n');
  assert.throws(() => readConfigFile(flat), /flat\.yaml:1: "peer-transport-security" must be a mapping/);
  const list = write('list.yaml', 'name: [a, b]\n');
  assert.throws(() => readConfigFile(list), /list\.yaml:1: "name" takes one value, not a list/);
  const cluster = write('cluster.yaml', 'initial-cluster: [a=http://127.0.0.1:1]\n');
  assert.throws(() => readConfigFile(cluster), /cluster\.yaml:1: "initial-cluster" takes one value, not a list/);
  const nested = write('nested.yaml', 'log-level:\n  level: debug\n');
  assert.throws(() => readConfigFile(nested), /nested\.yaml:1: "log-level" has an unusable value \(a mapping\)/);
  const duplicate = write('duplicate.yaml', 'name: a\nname: b\n');
  assert.throws(() => readConfigFile(duplicate), /duplicate\.yaml: invalid YAML: Map keys must be unique/);
  const broken = write('broken.yaml', 'listen-client-urls: [http://127.0.0.1:1\n');
  assert.throws(() => readConfigFile(broken), /broken\.yaml: invalid YAML/);
  const scalar = write('scalar.yaml', 'just a string\n');
  assert.throws(() => readConfigFile(scalar), /expected a mapping of setting names/);
  assert.deepEqual(readConfigFile(write('empty.yaml', '# nothing but a comment\n')).values, new Map());
});

test('--frontends defaults to one per core, and to 0 on 2 cores or fewer (where the core process serving measured faster)', async () => {
  const { defaultFrontends } = await import('../../../src/server/flags.js');
  assert.equal(defaultFrontends(1), 0);
  assert.equal(defaultFrontends(2), 0);
  assert.equal(defaultFrontends(4), 4);
  assert.equal(defaultFrontends(16), 16);
});

// Goal: kvd's settings parse like etcd's: defaults, --initial-cluster syntax, config files (YAML
// subset and JSON), and clear refusals of bad or contradictory settings.
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

test('contradictory or malformed settings are refused with the flag named', () => {
  assert.throws(() => buildConfig(new Map([['heartbeat-interval', '300'], ['election-timeout', '1000']])), /at least as 5 times/);
  assert.throws(() => buildConfig(new Map([['initial-cluster-state', 'maybe']])), /--initial-cluster-state/);
  assert.throws(() => buildConfig(new Map([['snapshot-count', 'lots']])), /--snapshot-count/);
  assert.throws(() => buildConfig(new Map([['listen-client-urls', 'https://127.0.0.1:1']])), /only http/);
  assert.throws(() => buildConfig(new Map([['log-level', 'loud']])), /--log-level/);
});

test('config files: YAML with flag names as keys, or JSON; unknown keys refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvd-flags-'));
  const yaml = join(dir, 'kvd.yaml');
  writeFileSync(yaml, "# comment\nname: 'n1'\ndata-dir: /tmp/x\nheartbeat-interval: 50\nelection-timeout: 500 # ms\ninitial-advertise-peer-urls: http://127.0.0.1:7\ninitial-cluster: n1=http://127.0.0.1:7\n");
  const config = buildConfig(readConfigFile(yaml));
  assert.equal(config.name, 'n1');
  assert.equal(config.heartbeatIntervalMs, 50);
  const json = join(dir, 'kvd.json');
  writeFileSync(json, JSON.stringify({ name: 'j', 'listen-client-urls': ['http://127.0.0.1:1', 'http://127.0.0.1:2'] }));
  assert.deepEqual(readConfigFile(json).get('listen-client-urls'), 'http://127.0.0.1:1,http://127.0.0.1:2');
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'nmae: typo\n');
  assert.throws(() => readConfigFile(bad), /unknown setting "nmae"/);
});

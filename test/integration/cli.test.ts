// Goal: the `kvd` command starts as etcd would from the same inputs: a stray KVD_* environment
// variable is named in one warning line on stderr and the server serves anyway (etcd only warns
// on unknown ETCD_* variables); an etcd-style config file (nested transport-security sections,
// comments, quoted values holding '#', URL lists) starts a serving member with the settings it
// names, and the etcd keys kvd does not support are warned about, not fatal.
// Method: spawn the real cli/kvd.js on loopback ports with a temporary data dir, wait (with a
// deadline) until it answers gRPC Status, then read its stderr and MemberList.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KVD_BIN, call, closeClients, freePort, waitFor, type StatusResponse } from './harness.js';

interface Started {
  readonly child: ChildProcess;
  readonly stderr: () => string;
  readonly exited: () => { code: number | null } | undefined;
}

const children: ChildProcess[] = [];
const dirs: string[] = [];

after(async () => {
  closeClients();
  await Promise.all(children.map(async (child) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
  }));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function startKvd(args: readonly string[], env: NodeJS.ProcessEnv): Started {
  const child = spawn(process.execPath, [KVD_BIN, ...args], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  let stderr = '';
  let exit: { code: number | null } | undefined;
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.once('exit', (code) => (exit = { code }));
  return { child, stderr: () => stderr, exited: () => exit };
}

/** Waits until the member answers Status and knows a leader (itself); fails early if it exits. */
async function waitServing(started: Started, endpoint: string): Promise<StatusResponse> {
  return waitFor('kvd to serve', async () => {
    const exit = started.exited();
    if (exit !== undefined) throw new Error(`kvd exited with code ${exit.code}: ${started.stderr()}`);
    const status = await call<StatusResponse>(endpoint, 'Maintenance', 'Status', {}, { timeoutMs: 1000 });
    return status.leader !== '0' ? status : undefined;
  }, { timeoutMs: 20_000, intervalMs: 100 }).catch((error: unknown) => {
    // waitFor swallows errors from the check; an early exit must still say why.
    const exit = started.exited();
    throw exit === undefined ? error : new Error(`kvd exited with code ${exit.code}: ${started.stderr()}`);
  });
}

/** The flags of a one-member cluster named `name` on loopback, its data in `dir`. */
function singleMemberArgs(name: string, dir: string, clientPort: number, peerPort: number): string[] {
  return [
    '--name', name,
    '--data-dir', join(dir, name),
    '--listen-client-urls', `http://127.0.0.1:${clientPort}`,
    '--advertise-client-urls', `http://127.0.0.1:${clientPort}`,
    '--listen-peer-urls', `http://127.0.0.1:${peerPort}`,
    '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
    '--initial-cluster', `${name}=http://127.0.0.1:${peerPort}`,
  ];
}

/** The environment of the test runner without any KVD_* setting variables a developer may have set. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith('KVD_')) env[key] = value;
  return env;
}

test('an unknown KVD_* variable is named in one warning on stderr and the server serves', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvd-cli-'));
  dirs.push(dir);
  const clientPort = await freePort();
  const peerPort = await freePort();
  const started = startKvd(singleMemberArgs('env1', dir, clientPort, peerPort), { ...cleanEnv(), KVD_FOO: '1', KVD_SNAPSHOT_COUNT: '5000' });
  const endpoint = `127.0.0.1:${clientPort}`;
  await waitServing(started, endpoint);
  await call(endpoint, 'KV', 'Put', { key: Buffer.from('cli/k'), value: Buffer.from('v') });
  const lines = started.stderr().split('\n').filter((line) => line.length > 0);
  assert.deepEqual(lines, ['kvd: warning: unrecognized environment variable KVD_FOO; ignored'], 'exactly one line, naming the stray variable (known KVD_* variables are silent)');
});

test('switches may be given alone, as etcd takes them: `--enable-pprof` last on the line turns profiling on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvd-cli-'));
  dirs.push(dir);
  const clientPort = await freePort();
  const peerPort = await freePort();
  const started = startKvd([...singleMemberArgs('sw1', dir, clientPort, peerPort), '--enable-ui', '--experimental-initial-corrupt-check', '--enable-pprof'], cleanEnv());
  await waitServing(started, `127.0.0.1:${clientPort}`);
  const index = await fetch(`http://127.0.0.1:${clientPort}/debug/pprof/`);
  assert.equal(index.status, 200, 'profiling is on');
  assert.match(await index.text(), /\/debug\/pprof\/profile/);
});

test('an etcd-style config file with nested security sections starts a serving member; unsupported etcd keys only warn', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvd-cli-'));
  dirs.push(dir);
  const clientPort = await freePort();
  const secondClientPort = await freePort();
  const peerPort = await freePort();
  const dataDir = join(dir, 'data # kept');
  const path = join(dir, 'etcd.conf.yml');
  writeFileSync(path, [
    '# This member, configured as etcd would be.',
    "name: 'member#1'           # the '#' inside quotes is part of the name",
    `data-dir: "${dataDir}"`,
    'wal-dir:',
    'heartbeat-interval: 50',
    'election-timeout: 500',
    `listen-peer-urls: http://127.0.0.1:${peerPort}`,
    'listen-client-urls:',
    `  - http://127.0.0.1:${clientPort}`,
    `  - http://127.0.0.1:${secondClientPort}`,
    `advertise-client-urls: http://127.0.0.1:${clientPort},http://127.0.0.1:${secondClientPort}`,
    `initial-advertise-peer-urls: http://127.0.0.1:${peerPort}`,
    `initial-cluster: "member#1=http://127.0.0.1:${peerPort}"`,
    "initial-cluster-token: 'token#1'",
    "initial-cluster-state: 'new'",
    'client-transport-security:',
    '  cert-file:',
    '  key-file:',
    '  client-cert-auth: false',
    '  auto-tls: false',
    'peer-transport-security:',
    '  # TLS off: the security sections map to the TLS flags (false and empty values set nothing)',
    '  trusted-ca-file:',
    '  auto-tls: false',
    'enable-pprof: true',
    'log-outputs: [stderr]',
    'log-level: info',
    'auto-compaction-retention: "1"',
    'max-wals: 5',
    '',
  ].join('\n'));
  const started = startKvd(['--config-file', path], cleanEnv());
  await waitServing(started, `127.0.0.1:${clientPort}`);
  // Both listeners of the YAML list serve, and the member is named as the quoted value says.
  await waitServing(started, `127.0.0.1:${secondClientPort}`);
  const members = await call<{ members: Array<{ name: string; clientURLs: string[] }> }>(`127.0.0.1:${clientPort}`, 'Cluster', 'MemberList', {});
  assert.deepEqual(members.members.map((m) => m.name), ['member#1']);
  assert.deepEqual(members.members[0].clientURLs, [`http://127.0.0.1:${clientPort}`, `http://127.0.0.1:${secondClientPort}`]);
  const warnings = started.stderr().split('\n').filter((line) => line.startsWith('kvd: warning: '));
  assert.deepEqual(warnings.map((line) => /"([^"]+)" is not supported/.exec(line)?.[1]), [
    'log-outputs',
    'max-wals',
  ], started.stderr());
  assert.match(warnings[0], new RegExp(`^kvd: warning: ${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:26: `));
});

test('a config file with a key etcd does not know stops kvd with the key and line named', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'kvd-cli-'));
  dirs.push(dir);
  const path = join(dir, 'typo.yml');
  writeFileSync(path, 'name: a\nheartbeat-intervall: 50\n');
  const started = startKvd(['--config-file', path], cleanEnv());
  const exit = await waitFor('kvd to exit', () => started.exited(), { timeoutMs: 15_000 });
  assert.equal(exit.code, 2);
  assert.equal(started.stderr(), `kvd: ${path}:2: unknown setting "heartbeat-intervall"\n`);
});

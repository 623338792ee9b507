// Goal: etcdctl 3.4's auth commands behave against kvd exactly as against a real etcd 3.4:
// users, roles, grants on a key, a prefix, a range and from a key, auth enable (etcdctl grants the
// root role itself), permission denied on put/get/txn (compares and both branches)/watch outside
// the grant, wrong passwords, anonymous calls, a password change, revokes, root protections,
// deletes and auth disable; and `etcdctl --cacert --cert --key` against TLS servers that require
// client certificates (the certificate's CN is the user with --client-cert-auth).
// Method: one etcdctl script run against a fresh 3-member kvd and a fresh 3-member etcd, the
// transcripts (exit code, stdout, stderr, normalised for ids, ports and timestamps) compared step
// by step; then a TLS script against a single-member kvd and etcd started with the same test PKI.
// Without etcd, the scripts run against kvd with the expectations written here.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, KVD_BIN, freePort, waitFor } from '../integration/harness.js';
import { ETCDCTL_BIN, ETCD_BIN, etcdctl, haveEtcd, haveEtcdctl, startEtcdCluster } from './etcd-cluster.js';
import { makeTestPki, type TestPki } from '../integration/pki.js';

const ROOT = ['--user', 'root:rootpw'];
const ALICE = ['--user', 'alice:alicepw'];

const TXN_ALLOWED = 'value("foo") = "v1"\n\nput b txn-ok\n\nget foo\n\n';
const TXN_DENIED_COMPARE = 'value("zzz") = "v1"\n\nput b x\n\n\n';
const TXN_DENIED_FAILURE = 'value("foo") = "v1"\n\nput b x\n\nput zzz x\n\n';

/** The auth script: etcdctl arguments, optional stdin. */
const SCRIPT: ReadonlyArray<{ args: string[]; input?: string }> = [
  { args: ['user', 'add', 'root:rootpw'] },
  { args: ['user', 'add', 'alice:alicepw'] },
  { args: ['user', 'add', 'bob', '--new-user-password=bobpw'] },
  { args: ['user', 'add', 'alice:again'] },
  { args: ['role', 'add', 'reader'] },
  { args: ['role', 'add', 'reader'] },
  { args: ['role', 'add', 'writer'] },
  { args: ['role', 'grant-permission', 'reader', 'read', 'foo'] },
  { args: ['role', 'grant-permission', 'reader', 'read', '--prefix', 'app/'] },
  { args: ['role', 'grant-permission', 'reader', 'readwrite', 'a', 'c'] },
  { args: ['role', 'grant-permission', 'writer', 'write', '--from-key', 'z'] },
  { args: ['role', 'grant-permission', 'nosuch', 'read', 'foo'] },
  { args: ['role', 'grant-permission', 'reader', 'bogus', 'foo'] },
  { args: ['role', 'get', 'reader'] },
  { args: ['role', 'get', 'writer'] },
  { args: ['role', 'list'] },
  { args: ['user', 'grant-role', 'alice', 'reader'] },
  { args: ['user', 'grant-role', 'bob', 'writer'] },
  { args: ['user', 'grant-role', 'alice', 'nosuch'] },
  { args: ['user', 'get', 'alice'] },
  { args: ['user', 'list'] },
  { args: ['auth', 'enable'] },
  { args: [...ROOT, 'put', 'foo', 'v1'] },
  { args: [...ROOT, 'put', 'app/x', 'v2'] },
  { args: [...ROOT, 'role', 'get', 'root'] },
  { args: [...ALICE, 'get', 'foo'] },
  { args: [...ALICE, 'get', 'app/', '--prefix'] },
  { args: [...ALICE, 'get', 'app/x'] },
  { args: [...ALICE, 'put', 'foo', 'nope'] },
  { args: [...ALICE, 'get', 'zzz'] },
  { args: [...ALICE, 'del', 'foo'] },
  { args: [...ALICE, 'put', 'b', '1'] },
  { args: [...ALICE, 'get', 'a', 'c'] },
  { args: [...ALICE, 'get', 'a', 'd'] },
  { args: [...ALICE, 'txn'], input: TXN_ALLOWED },
  { args: [...ALICE, 'txn'], input: TXN_DENIED_COMPARE },
  { args: [...ALICE, 'txn'], input: TXN_DENIED_FAILURE },
  { args: [...ALICE, 'watch', 'zzz'] },
  { args: [...ALICE, 'user', 'get', 'alice'] },
  { args: [...ALICE, 'role', 'get', 'reader'] },
  { args: [...ALICE, 'role', 'get', 'writer'] },
  { args: [...ALICE, 'user', 'list'] },
  { args: [...ALICE, 'user', 'add', 'mallory:x'] },
  { args: ['--user', 'bob:bobpw', 'put', 'zzz', '1'] },
  { args: ['--user', 'bob:bobpw', 'get', 'zzz'] },
  { args: ['--user', 'alice:wrong', 'get', 'foo'] },
  { args: ['--user', 'nobody:x', 'get', 'foo'] },
  { args: ['get', 'foo'] },
  { args: ['put', 'foo', 'anonymous'] },
  { args: [...ROOT, 'user', 'passwd', 'alice', '--interactive=false'], input: 'newpw\n' },
  { args: [...ALICE, 'get', 'foo'] },
  { args: ['--user', 'alice:newpw', 'get', 'foo'] },
  { args: [...ROOT, 'role', 'revoke-permission', 'reader', 'foo'] },
  { args: ['--user', 'alice:newpw', 'get', 'foo'] },
  { args: [...ROOT, 'role', 'revoke-permission', 'reader', 'app/', '--prefix'] },
  { args: [...ROOT, 'role', 'revoke-permission', 'reader', 'nothing'] },
  { args: [...ROOT, 'role', 'revoke-permission', 'writer', 'z', '--from-key'] },
  { args: [...ROOT, 'user', 'revoke-role', 'alice', 'reader'] },
  { args: [...ROOT, 'user', 'revoke-role', 'alice', 'reader'] },
  { args: ['--user', 'alice:newpw', 'get', 'b'] },
  { args: [...ROOT, 'user', 'delete', 'root'] },
  { args: [...ROOT, 'user', 'revoke-role', 'root', 'root'] },
  { args: [...ROOT, 'role', 'delete', 'root'] },
  { args: [...ROOT, 'user', 'delete', 'bob'] },
  { args: [...ROOT, 'user', 'delete', 'bob'] },
  { args: ['--user', 'bob:bobpw', 'get', 'zzz'] },
  { args: [...ROOT, 'role', 'delete', 'writer'] },
  { args: [...ROOT, 'role', 'list'] },
  { args: [...ROOT, 'user', 'add', 'carol', '--no-password'] },
  { args: ['--user', 'carol:x', 'get', 'foo'] },
  { args: [...ROOT, 'auth', 'disable'] },
  { args: ['auth', 'disable'] },
  { args: ['get', 'foo'] },
];

function normalise(text: string, endpoints: readonly string[]): string {
  let out = text;
  for (const endpoint of endpoints) out = out.split(endpoint).join('<endpoint>');
  out = out.replace(/"ts":"[^"]*"/g, '"ts":"<t>"').replace(/client-[0-9a-f-]{36}/g, 'client-<uuid>');
  // etcdctl's JSON headers and the watch's retry noise are not part of the comparison.
  return out.replace(/"cluster_id":\d+,"member_id":\d+,"revision":\d+,"raft_term":\d+/g, '<header>');
}

type Step = { status: number; stdout: string; stderr: string };

function runScript(script: typeof SCRIPT, endpoints: readonly string[], extra: readonly string[] = []): Step[] {
  return script.map((step) => {
    const result = etcdctl(endpoints, [...extra, ...step.args], { input: step.input ?? '', timeoutMs: step.args.includes('watch') ? 8_000 : 20_000 });
    return { status: result.status, stdout: normalise(result.stdout, endpoints), stderr: normalise(result.stderr, endpoints) };
  });
}

function compare(script: ReadonlyArray<{ args: string[] }>, kvd: readonly Step[], etcd: readonly Step[]): string[] {
  const differences: string[] = [];
  script.forEach((step, i) => {
    const a = kvd[i];
    const b = etcd[i];
    if (a.status !== b.status || a.stdout !== b.stdout || a.stderr !== b.stderr) {
      differences.push(`etcdctl ${step.args.join(' ')}\n  kvd : [${a.status}] ${JSON.stringify(a.stdout)} ${JSON.stringify(a.stderr)}\n  etcd: [${b.status}] ${JSON.stringify(b.stdout)} ${JSON.stringify(b.stderr)}`);
    }
  });
  return differences;
}

test('etcdctl auth: users, roles, grants, denials, password change, revokes and disable answer as etcd', { skip: haveEtcdctl() ? false : 'etcdctl is not installed', timeout: 240_000 }, async () => {
  const kvd = await Cluster.start({ size: 3 });
  after(() => kvd.stop());
  await kvd.waitForLeader();
  const kvdResults = runScript(SCRIPT, [kvd.endpoints[0]]);
  const at = (args: string[]): Step => kvdResults[SCRIPT.findIndex((s) => s.args.join(' ') === args.join(' '))];
  assert.equal(at(['auth', 'enable']).stdout, 'Authentication Enabled\n');
  assert.equal(at([...ALICE, 'get', 'foo']).stdout, 'foo\nv1\n');
  assert.match(at([...ALICE, 'put', 'foo', 'nope']).stderr, /Error: etcdserver: permission denied/);
  assert.match(at([...ALICE, 'watch', 'zzz']).stdout + at([...ALICE, 'watch', 'zzz']).stderr, /PermissionDenied desc = etcdserver: permission denied/);
  assert.equal(at(['--user', 'alice:wrong', 'get', 'foo']).status, 2);
  assert.match(at(['get', 'foo']).stderr, /user name is empty/);
  assert.equal(at(['--user', 'alice:newpw', 'get', 'foo']).stdout, 'foo\nv1\n');
  assert.equal(at(['auth', 'disable']).stdout, 'Authentication Disabled\n');

  if (!haveEtcd()) return;
  const etcd = await startEtcdCluster({ size: 3 });
  after(() => etcd.stop());
  const etcdResults = runScript(SCRIPT, [etcd.endpoints[0]]);
  const differences = compare(SCRIPT, kvdResults, etcdResults);
  assert.deepEqual(differences, [], differences.join('\n'));
});

/** The TLS script: run with the root certificate unless the step names another identity. */
const TLS_SCRIPT: ReadonlyArray<{ args: string[]; identity: 'root' | 'alice' | 'none' | 'plain' }> = [
  { args: ['user', 'add', 'root:rootpw'], identity: 'root' },
  { args: ['user', 'grant-role', 'root', 'root'], identity: 'root' },
  { args: ['user', 'add', 'alice', '--no-password'], identity: 'root' },
  { args: ['role', 'add', 'app'], identity: 'root' },
  { args: ['role', 'grant-permission', 'app', 'readwrite', '--prefix', 'app/'], identity: 'root' },
  { args: ['user', 'grant-role', 'alice', 'app'], identity: 'root' },
  { args: ['auth', 'enable'], identity: 'root' },
  { args: ['put', 'app/x', '1'], identity: 'alice' },
  { args: ['get', 'app/x'], identity: 'alice' },
  { args: ['put', 'other', '1'], identity: 'alice' },
  { args: ['put', 'other', '2'], identity: 'root' },
  { args: ['--user', 'alice:x', 'get', 'app/x'], identity: 'alice' },
  { args: ['get', 'other'], identity: 'root' },
  { args: ['get', 'other'], identity: 'none' },
  { args: ['get', 'other'], identity: 'plain' },
];

function tlsArgs(pki: TestPki, identity: 'root' | 'alice' | 'none' | 'plain'): string[] {
  switch (identity) {
    case 'root': return ['--cacert', pki.file('ca.crt'), '--cert', pki.file('root.crt'), '--key', pki.file('root.key')];
    case 'alice': return ['--cacert', pki.file('ca.crt'), '--cert', pki.file('alice.crt'), '--key', pki.file('alice.key')];
    case 'none': return ['--cacert', pki.file('ca.crt'), '--dial-timeout=1s', '--command-timeout=2s'];
    case 'plain': return ['--insecure-transport=true', '--dial-timeout=1s', '--command-timeout=2s'];
  }
}

function runTls(pki: TestPki, endpoint: string): Step[] {
  return TLS_SCRIPT.map((step) => {
    // The plain step dials without TLS at all: the endpoint is given as http://.
    const target = step.identity === 'plain' ? `http://${endpoint}` : `https://${endpoint}`;
    const result = spawnSync(ETCDCTL_BIN, [`--endpoints=${target}`, ...tlsArgs(pki, step.identity), ...step.args], { env: { ...process.env, ETCDCTL_API: '3' }, encoding: 'utf8', timeout: 20_000, input: '' });
    return { status: result.status ?? -1, stdout: normalise(result.stdout ?? '', [endpoint]), stderr: normalise(result.stderr ?? '', [endpoint]).replace(/^\{"level":"warn".*\n/gm, '') };
  });
}

/** A single TLS server (kvd or etcd) with client certificates required and --client-cert-auth. */
async function startTlsServer(kind: 'kvd' | 'etcd', pki: TestPki): Promise<{ endpoint: string; log: () => string; stop: () => Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), `kvd-tls-${kind}-`));
  const clientPort = await freePort();
  const peerPort = await freePort();
  const args = [
    '--name', 'm1', '--data-dir', join(root, 'data'),
    '--listen-client-urls', `https://127.0.0.1:${clientPort}`, '--advertise-client-urls', `https://127.0.0.1:${clientPort}`,
    '--listen-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`,
    '--initial-cluster', `m1=http://127.0.0.1:${peerPort}`,
    '--cert-file', pki.file('server.crt'), '--key-file', pki.file('server.key'), '--trusted-ca-file', pki.file('ca.crt'), '--client-cert-auth',
  ];
  const child: ChildProcess = kind === 'kvd' ? spawn(process.execPath, [KVD_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }) : spawn(ETCD_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout?.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-200_000)));
  child.stderr?.on('data', (chunk: Buffer) => (log = (log + chunk.toString()).slice(-200_000)));
  const endpoint = `127.0.0.1:${clientPort}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
    await rm(root, { recursive: true, force: true });
  };
  await waitFor(`${kind} serving TLS`, () => {
    const probe = spawnSync(ETCDCTL_BIN, [`--endpoints=https://${endpoint}`, ...tlsArgs(pki, 'root'), '--dial-timeout=1s', 'endpoint', 'health'], { encoding: 'utf8', timeout: 5_000 });
    return probe.status === 0 ? true : undefined;
  }, { timeoutMs: 30_000, intervalMs: 200 }).catch(async (error: unknown) => {
    await stop();
    throw new Error(`${String(error)}\n${log}`);
  });
  return { endpoint, log: () => log, stop };
}

test('etcdctl --cacert --cert --key against TLS servers requiring client certificates (CN as user) answers as etcd', { skip: haveEtcdctl() ? false : 'etcdctl is not installed', timeout: 120_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'kvd-pki-'));
  after(() => rm(dir, { recursive: true, force: true }));
  const pki = await makeTestPki(dir, { clients: ['root', 'alice'] });
  await writeFile(join(dir, 'unused'), '');
  const kvd = await startTlsServer('kvd', pki);
  after(() => kvd.stop());
  const kvdResults = runTls(pki, kvd.endpoint);
  const at = (index: number): Step => kvdResults[index];
  assert.equal(at(7).stdout, 'OK\n', 'alice (by certificate) may write under app/');
  assert.match(at(9).stderr, /permission denied/);
  assert.notEqual(at(13).status, 0, 'no client certificate: refused');
  assert.notEqual(at(14).status, 0, 'plain text on the TLS port: refused');
  // The front-ends' log lines reach the shared output asynchronously.
  await waitFor('both refusals logged as etcd logs them', () => {
    const log = kvd.log();
    return /rejected connection from \\?"127\.0\.0\.1:\d+\\?" \(error \\?"tls: client didn't provide a certificate\\?"/.test(log) && /tls: first record does not look like a TLS handshake/.test(log) ? true : undefined;
  }, { timeoutMs: 10_000, intervalMs: 100 });

  if (!haveEtcd()) return;
  const etcd = await startTlsServer('etcd', pki);
  after(() => etcd.stop());
  const etcdResults = runTls(pki, etcd.endpoint);
  const differences = compare(TLS_SCRIPT, kvdResults, etcdResults);
  assert.deepEqual(differences, [], differences.join('\n'));
});

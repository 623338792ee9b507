// Goal: the `etcd3` npm client and kvd's own client both connect to a kvd member over TLS with
// user and password, and with a client certificate (its CN is the user with --client-cert-auth):
// they read and write what the user may, are refused what it may not (with etcd's error), and
// watch within their grant.
// Method: one kvd member (front-end processes) with https client URL, --trusted-ca-file and
// --client-cert-auth, certificates from the test PKI; users and a role made over TLS as root (by
// certificate), auth enabled; then each client in each way.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3, EtcdPermissionDeniedError } from 'etcd3';
import { Cluster, waitFor } from '../integration/harness.js';
import { makeTestPki, type TestPki } from '../integration/pki.js';
import { connect, PermissionDeniedError, type Client } from '../../src/client/index.js';

let dir: string;
let pki: TestPki;
let cluster: Cluster;
let endpoint: string;

const pem = (name: string): Buffer => readFileSync(pki.file(name));

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'kvd-clients-tls-'));
  pki = await makeTestPki(dir, { clients: ['root', 'alice', 'carol'] });
  cluster = await Cluster.start({
    size: 1,
    clientScheme: 'https',
    extraArgs: ['--cert-file', pki.file('server.crt'), '--key-file', pki.file('server.key'), '--trusted-ca-file', pki.file('ca.crt'), '--client-cert-auth'],
  });
  endpoint = cluster.endpoints[0];
  const root = kvdClient('root');
  await waitFor('the member serving over TLS', async () => ((await root.cluster.status(endpoint, { timeoutMs: 2_000 })).leader !== 0n ? true : undefined), { timeoutMs: 60_000, intervalMs: 200 });
  await root.auth.userAdd('root', 'rootpw');
  await root.auth.userGrantRole('root', 'root');
  await root.auth.userAdd('alice', 'alicepw');
  await root.auth.userAdd('carol', '', { noPassword: true });
  await root.auth.roleAdd('app');
  await root.auth.roleGrantPermission('app', { type: 'readwrite', key: 'app/', rangeEnd: 'app0' });
  await root.auth.userGrantRole('alice', 'app');
  await root.auth.userGrantRole('carol', 'app');
  await root.auth.enable();
  root.close();
});

after(async () => {
  await cluster.stop();
  await rm(dir, { recursive: true, force: true });
});

function kvdClient(certificate: 'root' | 'carol' | 'alice' | 'none', auth?: { username: string; password: string }): Client {
  return connect({
    endpoints: [`https://${endpoint}`],
    tls: certificate === 'none' ? { ca: pem('ca.crt') } : { ca: pem('ca.crt'), cert: pem(`${certificate}.crt`), key: pem(`${certificate}.key`) },
    auth,
    requestTimeout: 10_000,
  });
}

function etcd3Client(certificate: 'alice' | 'carol', auth?: { username: string; password: string }): Etcd3 {
  return new Etcd3({
    hosts: `https://${endpoint}`,
    credentials: { rootCertificate: pem('ca.crt'), certChain: pem(`${certificate}.crt`), privateKey: pem(`${certificate}.key`) },
    auth,
  });
}

test('kvd client: TLS with user and password, and TLS with a client certificate as the identity', async () => {
  // The server requires a certificate anyway; alice's password login decides the identity.
  const withPassword = kvdClient('alice', { username: 'alice', password: 'alicepw' });
  after(() => withPassword.close());
  await withPassword.put('app/pw', 'by password');
  assert.equal((await withPassword.get('app/pw'))?.value.toString(), 'by password');
  await assert.rejects(withPassword.put('elsewhere', 'x'), PermissionDeniedError);

  const byCertificate = kvdClient('carol');
  after(() => byCertificate.close());
  await byCertificate.put('app/cert', 'by certificate');
  assert.equal((await byCertificate.get('app/pw'))?.value.toString(), 'by password');
  await assert.rejects(byCertificate.get('elsewhere'), /etcdserver: permission denied/);
  const watcher = byCertificate.watch('app/', { prefix: true });
  await watcher.ready();
  await withPassword.put('app/watched', '1');
  for await (const item of watcher) {
    if (item.type !== 'progress' && item.kv.key.toString() === 'app/watched') break;
  }
  watcher.close();
});

test('etcd3 client: TLS with user and password, and TLS with a client certificate as the identity', async () => {
  const withPassword = etcd3Client('alice', { username: 'alice', password: 'alicepw' });
  after(() => withPassword.close());
  await withPassword.put('app/etcd3-pw').value('1');
  assert.equal(await withPassword.get('app/etcd3-pw').string(), '1');
  await assert.rejects(async () => withPassword.put('elsewhere').value('x'), EtcdPermissionDeniedError);

  const byCertificate = etcd3Client('carol');
  after(() => byCertificate.close());
  await byCertificate.put('app/etcd3-cert').value('2');
  assert.deepEqual(await byCertificate.getAll().prefix('app/etcd3-').strings(), { 'app/etcd3-pw': '1', 'app/etcd3-cert': '2' });
  await assert.rejects(byCertificate.get('elsewhere').string(), EtcdPermissionDeniedError);
});

// Goal: a 3-member cluster with TLS on the client and peer ports and client-certificate auth
// works end to end, in both serving modes (front-end processes, and --frontends 0): clients with
// a certificate read and write (the certificate's CN is the user once auth is on); a plaintext
// client on the client port and a plaintext peer on the peer port are refused with a logged
// reason; a certificate swapped on disk is served to new connections without a restart; a member
// whose peer certificate's CN is not --peer-cert-allowed-cn cannot join.
// Method: real kvd processes with certificates from a test PKI (test/integration/pki.ts); the kvd
// client with TLS; raw TLS and plaintext connections for what a client library hides; waits with
// deadlines on member logs and on the certificate a new connection is served.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as tls from 'node:tls';
import { copyFile, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, KVD_BIN, freePort, waitFor, type MemberProcess } from './harness.js';
import { makeTestPki, type TestPki } from './pki.js';
import { connect, type Client } from '../../src/client/index.js';
import { fetchMembers } from '../../src/transport/index.js';

function tlsClient(pki: TestPki, endpoints: readonly string[], identity: 'root' | 'alice'): Client {
  return connect({
    endpoints: endpoints.map((endpoint) => `https://${endpoint}`),
    tls: { ca: pki.ca.certPem, cert: readPem(pki, `${identity}.crt`), key: readPem(pki, `${identity}.key`) },
    dialTimeout: 2_000,
    requestTimeout: 10_000,
  });
}

import { readFileSync } from 'node:fs';
function readPem(pki: TestPki, name: string): string {
  return readFileSync(pki.file(name), 'utf8');
}

/** The certificate a new TLS connection to `port` is served (its subject CN). */
function servedCommonName(pki: TestPki, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca: pki.ca.certPem, cert: readPem(pki, 'root.crt'), key: readPem(pki, 'root.key'), ALPNProtocols: ['h2'] }, () => {
      const subject = socket.getPeerCertificate().subject as Record<string, string> | undefined;
      socket.destroy();
      resolve(subject?.CN ?? '');
    });
    socket.once('error', reject);
  });
}

async function startTlsCluster(mode: 'frontends' | 'in-process', pki: TestPki): Promise<Cluster> {
  const cluster = await Cluster.prepare({
    size: 3,
    clientScheme: 'https',
    peerScheme: 'https',
    extraArgs: [
      ...(mode === 'in-process' ? ['--frontends', '0'] : []),
      '--trusted-ca-file', pki.file('ca.crt'), '--client-cert-auth',
      '--peer-trusted-ca-file', pki.file('ca.crt'), '--peer-client-cert-auth', '--peer-cert-allowed-cn', 'member',
    ],
    // Each member serves its own copy of the certificates, so one can be swapped alone.
    memberArgs: (member: MemberProcess) => [
      '--cert-file', join(member.dataDir, '..', `${member.name}-tls`, 'server.crt'), '--key-file', join(member.dataDir, '..', `${member.name}-tls`, 'server.key'),
      '--peer-cert-file', pki.file('peer-member.crt'), '--peer-key-file', pki.file('peer-member.key'),
    ],
  });
  for (const member of cluster.members) {
    const dir = join(cluster.root, `${member.name}-tls`);
    await mkdir(dir, { recursive: true });
    await copyFile(pki.file('server.crt'), join(dir, 'server.crt'));
    await copyFile(pki.file('server.key'), join(dir, 'server.key'));
  }
  for (const member of cluster.members) cluster.startMember(member.name);
  return cluster;
}

async function waitForLeader(client: Client, endpoints: readonly string[]): Promise<void> {
  await waitFor('a leader seen by every member over TLS', async () => {
    const statuses = await Promise.all(endpoints.map((endpoint) => client.cluster.status(endpoint, { timeoutMs: 2_000 })));
    const leaders = new Set(statuses.map((status) => status.leader));
    return leaders.size === 1 && !leaders.has(0n) ? true : undefined;
  }, { timeoutMs: 60_000, intervalMs: 200 });
}

for (const mode of ['frontends', 'in-process'] as const) {
  test(`TLS cluster (${mode === 'frontends' ? 'front-end processes' : '--frontends 0'}): client certificates, plaintext refused on both ports, certificate reload, peer CN allow-list`, { timeout: 240_000 }, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kvd-tls-it-'));
    after(() => rm(dir, { recursive: true, force: true }));
    const pki = await makeTestPki(dir, { clients: ['root', 'alice'], peers: ['member', 'intruder'] });
    const cluster = await startTlsCluster(mode, pki);
    after(() => cluster.stop({ keepData: process.env.KVD_TEST_KEEP === '1' }));
    const root = tlsClient(pki, cluster.endpoints, 'root');
    after(() => root.close());
    await waitForLeader(root, cluster.endpoints);

    // Writes and reads over TLS, served by every member (peers replicate over TLS).
    await root.put('tls/key', 'v1');
    for (const endpoint of cluster.endpoints) {
      const single = tlsClient(pki, [endpoint], 'root');
      const kv = await waitFor(`tls/key readable on ${endpoint}`, async () => (await single.get('tls/key', { serializable: true }))?.value.toString(), { timeoutMs: 10_000 });
      single.close();
      assert.equal(kv, 'v1');
    }

    // With auth on, the certificate's CN is the user (--client-cert-auth).
    await root.auth.userAdd('root', 'rootpw');
    await root.auth.userGrantRole('root', 'root');
    await root.auth.userAdd('alice', '', { noPassword: true });
    await root.auth.roleAdd('app');
    await root.auth.roleGrantPermission('app', { type: 'readwrite', key: 'app/', rangeEnd: 'app0' });
    await root.auth.userGrantRole('alice', 'app');
    await root.auth.enable();
    const alice = tlsClient(pki, cluster.endpoints, 'alice');
    after(() => alice.close());
    await alice.put('app/a', '1');
    await assert.rejects(alice.put('elsewhere', '1'), /etcdserver: permission denied/);
    await root.put('elsewhere', 'root may');

    // A plaintext client on the TLS client port is refused, and the member says why.
    const first = cluster.members[0];
    const plain = connect({ endpoints: [`http://${first.endpoint}`], dialTimeout: 1_000, requestTimeout: 2_000 });
    await assert.rejects(plain.get('tls/key'));
    plain.close();
    await waitFor('the refused plaintext client in the log', () => (/rejected connection from .*first record does not look like a TLS handshake/.test(cluster.log(first.name)) ? true : undefined), { timeoutMs: 10_000 });
    // A client without a certificate is refused too (etcd: client certificates required).
    const anonymous = connect({ endpoints: [`https://${first.endpoint}`], tls: { ca: pki.ca.certPem }, dialTimeout: 1_000, requestTimeout: 2_000 });
    await assert.rejects(anonymous.get('tls/key'));
    anonymous.close();
    await waitFor('the refused certificate-less client in the log', () => (/tls: client didn't provide a certificate/.test(cluster.log(first.name)) ? true : undefined), { timeoutMs: 10_000 });

    // A plaintext peer on the TLS peer port is refused (the transport's membership fetch).
    await assert.rejects(fetchMembers(`http://127.0.0.1:${first.peerPort}`, { deadlineMs: Date.now() + 2_000 }));
    await waitFor('the refused plaintext peer in the log', () => (/"scope":"peer".*rejected connection from/.test(cluster.log(first.name)) ? true : undefined), { timeoutMs: 10_000 });

    // A certificate swapped on disk (atomically, as cert managers do) is served to new connections.
    assert.equal(await servedCommonName(pki, first.clientPort), 'server');
    const renewed = await pki.issue('server-renewed', { commonName: 'server-renewed', usage: 'server-and-client', hosts: ['127.0.0.1', 'localhost'] });
    const tlsDir = join(cluster.root, `${first.name}-tls`);
    await writeFile(join(tlsDir, 'server.key.new'), renewed.keyPem);
    await writeFile(join(tlsDir, 'server.crt.new'), renewed.certPem);
    await rename(join(tlsDir, 'server.key.new'), join(tlsDir, 'server.key'));
    await rename(join(tlsDir, 'server.crt.new'), join(tlsDir, 'server.crt'));
    await waitFor('the renewed certificate served', async () => ((await servedCommonName(pki, first.clientPort)) === 'server-renewed' ? true : undefined), { timeoutMs: 20_000, intervalMs: 200 });
    const afterSwap = tlsClient(pki, [first.endpoint], 'root');
    assert.equal((await afterSwap.get('tls/key'))?.value.toString(), 'v1');
    afterSwap.close();

    // A member whose peer certificate's CN is not allowed cannot join.
    const intruderPeerPort = await freePort();
    const intruderClientPort = await freePort();
    const peerUrl = `https://127.0.0.1:${intruderPeerPort}`;
    await waitFor('member add accepted', async () => {
      try {
        return await root.cluster.memberAdd({ peerUrls: [peerUrl] });
      } catch (error: unknown) {
        if (/unhealthy cluster/.test(String(error))) return undefined;
        throw error;
      }
    }, { timeoutMs: 30_000, intervalMs: 500 });
    const intruder = spawn(process.execPath, [
      KVD_BIN, '--name', 'intruder', '--data-dir', join(cluster.root, 'intruder'),
      '--listen-client-urls', `https://127.0.0.1:${intruderClientPort}`, '--advertise-client-urls', `https://127.0.0.1:${intruderClientPort}`,
      '--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', `${cluster.initialCluster},intruder=${peerUrl}`, '--initial-cluster-state', 'existing',
      '--cert-file', pki.file('server.crt'), '--key-file', pki.file('server.key'), '--trusted-ca-file', pki.file('ca.crt'),
      '--peer-cert-file', pki.file('peer-intruder.crt'), '--peer-key-file', pki.file('peer-intruder.key'), '--peer-trusted-ca-file', pki.file('ca.crt'),
      '--peer-client-cert-auth', '--frontends', '0',
    ], { stdio: 'ignore' });
    after(() => intruder.kill('SIGKILL'));
    await waitFor('the intruder refused by a member for its CN', () => (cluster.members.some((member) => /client certificate authentication failed \(CN \\"intruder\\"/.test(cluster.log(member.name))) ? true : undefined), { timeoutMs: 20_000, intervalMs: 200 });
    const members = await root.cluster.memberList();
    const added = members.members.find((member) => member.peerUrls.includes(peerUrl));
    assert.ok(added !== undefined);
    assert.equal(added.name, '', 'the intruder never published itself: it never joined');
  });
}

// Goal: auth on a real 3-member cluster, in both serving modes: a token issued by one member is
// valid on every member and survives a leader change (tokens are checked against replicated
// state, no Raft round per login); a password change revokes every token of the user at once on
// every member; a permission granted through one member is used at once through another (writes
// are decided when applied); the kvd client renews its token by itself (reads retried, a write
// refused for its token thrown and not resent); a user deleted loses its tokens.
// Method: real kvd processes; raw gRPC calls with a chosen token (metadata `token`) next to the
// kvd client; waits with deadlines, no sleeps.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { Cluster, waitFor } from './harness.js';
import { loadClientServices } from '../../src/client/proto.js';
import { connect, InvalidAuthTokenError } from '../../src/client/index.js';

type Raw = { error?: { code: number; details: string }; response?: Record<string, unknown> };

/** One raw unary call with an optional token. */
function rawCall(endpoint: string, service: 'KV' | 'Auth', method: string, request: object, token?: string): Promise<Raw> {
  const Service = loadClientServices()[service];
  const client = new Service(endpoint, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set('token', token);
  return new Promise((resolve) => {
    (client as unknown as Record<string, (r: object, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: Record<string, unknown>) => void) => void>)[method](request, metadata, { deadline: new Date(Date.now() + 10_000) }, (error, response) => {
      client.close();
      resolve(error === null ? { response } : { error: { code: error.code, details: error.details } });
    });
  });
}

async function authenticate(endpoint: string, name: string, password: string): Promise<string> {
  const answer = await rawCall(endpoint, 'Auth', 'Authenticate', { name, password });
  assert.equal(answer.error, undefined, JSON.stringify(answer.error));
  return String(answer.response?.token);
}

const get = (endpoint: string, key: string, token?: string): Promise<Raw> => rawCall(endpoint, 'KV', 'Range', { key: Buffer.from(key) }, token);

for (const mode of ['frontends', 'in-process'] as const) {
  test(`auth on a 3-member cluster (${mode === 'frontends' ? 'front-end processes' : '--frontends 0'}): tokens everywhere and across a leader change, revocation, consistent grants, client renewal`, { timeout: 240_000 }, async () => {
    const cluster = await Cluster.start({ size: 3, extraArgs: mode === 'in-process' ? ['--frontends', '0'] : [] });
    after(() => cluster.stop());
    await cluster.waitForLeader({ timeoutMs: 60_000 });
    const [a, b, c] = cluster.endpoints;
    const setup = connect({ endpoints: cluster.endpoints, requestTimeout: 10_000 });
    await setup.auth.userAdd('root', 'rootpw');
    await setup.auth.userGrantRole('root', 'root');
    await setup.auth.userAdd('alice', 'alicepw');
    await setup.auth.roleAdd('app');
    await setup.auth.roleGrantPermission('app', { type: 'readwrite', key: 'app/', rangeEnd: 'app0' });
    await setup.auth.userGrantRole('alice', 'app');
    await setup.auth.enable();
    setup.close();
    // A client that learned auth was off sends no token, and a write refused for that is not
    // resent: the admin client is made once auth is on.
    const admin = connect({ endpoints: cluster.endpoints, auth: { username: 'root', password: 'rootpw' }, requestTimeout: 10_000 });
    after(() => admin.close());
    await admin.put('app/x', '1');

    // A token from member a works on b and c (no Raft round was needed to make it).
    const token = await authenticate(a, 'alice', 'alicepw');
    for (const endpoint of [a, b, c]) {
      const answer = await waitFor(`alice's token accepted by ${endpoint}`, async () => {
        const result = await get(endpoint, 'app/x', token);
        return result.error === undefined ? result : undefined;
      }, { timeoutMs: 10_000 });
      assert.equal(answer.response?.count, '1');
    }
    assert.match((await get(b, 'other', token)).error?.details ?? '', /etcdserver: permission denied/);
    assert.match((await get(b, 'app/x')).error?.details ?? '', /etcdserver: user name is empty/);
    assert.match((await get(b, 'app/x', 'forged.1.2.3.4')).error?.details ?? '', /etcdserver: invalid auth token/);

    // Kill the leader: the token still works on the survivors once a new leader is elected.
    const leader = await cluster.waitForLeader({ timeoutMs: 30_000 });
    await cluster.kill(leader);
    const survivors = cluster.members.filter((member) => member.name !== leader).map((member) => member.endpoint);
    for (const endpoint of survivors) {
      await waitFor(`alice's token accepted by ${endpoint} after the leader change`, async () => ((await get(endpoint, 'app/x', token)).error === undefined ? true : undefined), { timeoutMs: 30_000, intervalMs: 200 });
    }
    cluster.startMember(leader);
    await cluster.waitForLeader({ timeoutMs: 60_000 });

    // A grant made through one member is in force through another at once (decided when applied).
    await admin.auth.roleGrantPermission('app', { type: 'readwrite', key: 'shared' });
    const viaC = connect({ endpoints: [c], auth: { username: 'alice', password: 'alicepw' } });
    after(() => viaC.close());
    await viaC.put('shared', 'granted just now');

    // A password change revokes the old tokens at once, on every member.
    await admin.auth.userChangePassword('alice', 'newpw');
    for (const endpoint of cluster.endpoints) {
      await waitFor(`the old token refused by ${endpoint}`, async () => (/etcdserver: invalid auth token/.test((await get(endpoint, 'app/x', token)).error?.details ?? '') ? true : undefined), { timeoutMs: 10_000 });
    }
    assert.match((await rawCall(a, 'Auth', 'Authenticate', { name: 'alice', password: 'alicepw' })).error?.details ?? '', /authentication failed, invalid user ID or password/);

    // The kvd client renews its token: a read goes on; a write refused for its token is thrown, not resent.
    const client = connect({ endpoints: cluster.endpoints, auth: { username: 'root', password: 'rootpw' }, requestTimeout: 10_000 });
    after(() => client.close());
    await client.put('app/renew', 'before');
    // Off and on again: a new token key, every simple token is void. (A token sent while auth is
    // off is refused as etcd does, so each toggle uses a fresh client: root to disable, anyone to enable.)
    const toggle = async (): Promise<void> => {
      const root = connect({ endpoints: cluster.endpoints, auth: { username: 'root', password: 'rootpw' } });
      await root.auth.disable();
      root.close();
      const anyone = connect({ endpoints: cluster.endpoints });
      await anyone.auth.enable();
      anyone.close();
    };
    await toggle();
    assert.equal((await client.get('app/renew'))?.value.toString(), 'before', 'the read renewed the token and went through');
    await toggle();
    await assert.rejects(client.put('app/renew', 'after'), InvalidAuthTokenError);
    assert.equal((await client.get('app/renew'))?.value.toString(), 'before', 'the refused write was not applied nor resent');
    await client.put('app/renew', 'after');
    assert.equal((await client.get('app/renew'))?.value.toString(), 'after');

    // A deleted user's tokens die with it.
    const bobAdmin = await authenticate(a, 'root', 'rootpw');
    // (admin's token died with the toggles above; `client` has renewed its own.)
    await client.auth.userAdd('bob', 'bobpw');
    await client.auth.userGrantRole('bob', 'app');
    const bobToken = await authenticate(b, 'bob', 'bobpw');
    assert.equal((await get(c, 'app/x', bobToken)).error, undefined);
    await client.auth.userDelete('bob');
    await waitFor('the deleted user\'s token refused', async () => (/invalid auth token/.test((await get(c, 'app/x', bobToken)).error?.details ?? '') ? true : undefined), { timeoutMs: 10_000 });
    assert.equal((await get(a, 'app/x', bobAdmin)).error, undefined, 'other users keep their tokens');

    // A revoke needs write access to every key attached to the lease (etcd's authApplierV3
    // LeaseRevoke): alice (readwrite on app/) revokes a lease that holds only her keys, not one that
    // also holds a key outside her grant.
    const alice = connect({ endpoints: cluster.endpoints, auth: { username: 'alice', password: 'newpw' }, requestTimeout: 10_000 });
    after(() => alice.close());
    const own = await alice.leases.grant(60);
    await alice.put('app/leased', 'x', { lease: own.id });
    await alice.leases.revoke(own.id);
    assert.equal(await client.get('app/leased'), undefined);
    const shared = await alice.leases.grant(60);
    await alice.put('app/leased', 'y', { lease: shared.id });
    await client.put('elsewhere', 'z', { lease: shared.id });
    await assert.rejects(alice.leases.revoke(shared.id), /permission denied/);
    assert.equal((await client.get('elsewhere'))?.value.toString(), 'z', 'the refused revoke deleted nothing');
    await client.leases.revoke(shared.id);
    assert.equal(await client.get('elsewhere'), undefined);
    assert.equal(await client.get('app/leased'), undefined);
  });
}

// Goal: leases keep themselves alive and report loss; the registry registers, discovers,
// re-registers after a lost lease and deregisters; config watches deliver the whole map then
// one callback per revision. Method: exercise each helper against the server under test with
// short TTLs (the test etcd allows 1 s) and wait for observable conditions with deadlines.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, LeaseNotFoundError, type Client, type ConfigChange, type ServiceInstance } from '../../../src/client/index.js';
import { serverUnavailable, startServerUnderTest, type ServerUnderTest } from './server-under-test.js';
import { uniquePrefix, waitFor } from './helpers.js';

describe('client lease, registry and config', { skip: serverUnavailable }, () => {
  let server: ServerUnderTest;
  let client: Client;
  before(async () => {
    server = await startServerUnderTest();
    client = connect({ endpoints: server.endpoints });
  });
  after(async () => {
    client?.close();
    await server?.stop();
  });

  test('a lease keeps itself alive past its TTL and revoke() deletes its keys', async () => {
    const p = uniquePrefix('lease');
    const lease = await client.lease(2);
    assert.equal(typeof lease.id, 'bigint');
    await client.put(`${p}k`, 'v', { lease: lease.id });
    let keepalives = 0;
    lease.on('keepalive', () => (keepalives += 1));
    await waitFor(() => keepalives >= 3, 10_000, 'three keep-alives');
    assert.equal(lease.state, 'alive');
    assert.equal((await client.get(`${p}k`))?.value.toString(), 'v');
    const ttl = await lease.timeToLive({ keys: true });
    assert.deepEqual(ttl.keys.map((key) => key.toString()), [`${p}k`]);
    await lease.revoke();
    assert.equal(await client.get(`${p}k`), undefined);
    assert.equal(lease.state, 'revoked');
  });

  test("a lease revoked behind its back emits 'lost' once", async () => {
    const lease = await client.lease(5);
    const lost: unknown[] = [];
    lease.on('lost', (error) => lost.push(error));
    await client.leases.revoke(lease.id);
    await waitFor(() => lost.length > 0, 10_000, "'lost'");
    assert.ok(lost[0] instanceof LeaseNotFoundError);
    assert.equal(lease.state, 'lost');
    await assert.rejects(client.leases.keepAliveOnce(lease.id), LeaseNotFoundError);
  });

  test('registry: register, discover, change events, re-register after loss, deregister', async () => {
    const service = `svc-${Date.now().toString(36)}`;
    const first = await client.registry.register({ service, id: 'a', address: '10.0.0.1:80', ttl: 5, metadata: { zone: 'z1' } });
    const stored = await client.get(`/registry/${service}/a`);
    assert.deepEqual(JSON.parse(stored?.value.toString() ?? '{}'), { id: 'a', address: '10.0.0.1:80', metadata: { zone: 'z1' } });
    assert.equal(stored?.lease, first.leaseId);
    const view = await client.registry.discover(service);
    assert.deepEqual(view.instances.map((instance) => instance.id), ['a']);
    const changes: Array<readonly ServiceInstance[]> = [];
    view.on('change', (instances) => changes.push(instances));
    const second = await client.registry.register({ service, id: 'b', address: '10.0.0.2:80', ttl: 5 });
    await waitFor(() => view.instances.length === 2, 10_000, 'b to be discovered');
    assert.deepEqual(changes.at(-1)?.map((instance) => instance.address), ['10.0.0.1:80', '10.0.0.2:80']);
    // Lose a's lease: it must come back by itself under a new lease.
    const oldLease = first.leaseId;
    const reregistered = new Promise<bigint>((resolve) => first.once('reregistered', resolve));
    await client.leases.revoke(oldLease);
    const newLease = await reregistered;
    assert.notEqual(newLease, oldLease);
    await waitFor(async () => (await client.get(`/registry/${service}/a`))?.lease === newLease, 10_000, 'a registered again');
    await waitFor(() => view.instances.length === 2, 10_000, 'a back in the view');
    await second.close();
    await waitFor(() => view.instances.map((instance) => instance.id).join() === 'a', 10_000, 'b to leave the view');
    await first.close();
    await waitFor(() => view.instances.length === 0, 10_000, 'the view to empty');
    view.close();
  });

  test('config watch: whole map first, then one callback per revision', async () => {
    const p = uniquePrefix('config');
    await client.put(`${p}a`, '1');
    await client.put(`${p}b`, '2');
    const seen: Array<{ map: Record<string, string>; change: ConfigChange }> = [];
    const handle = await client.config.watch(p, (map, change) => seen.push({ map: Object.fromEntries(map), change }));
    assert.equal(seen.length, 1);
    assert.deepEqual(seen[0].map, { [`${p}a`]: '1', [`${p}b`]: '2' });
    assert.equal(seen[0].change.kind, 'initial');
    await client.put(`${p}a`, '10');
    await client.txn().then({ wire: { request_put: { key: Buffer.from(`${p}c`), value: Buffer.from('3') } } }, { wire: { request_delete_range: { key: Buffer.from(`${p}b`) } } }).commit();
    await waitFor(() => seen.length >= 3, 10_000, 'two updates');
    assert.deepEqual(seen[1].map, { [`${p}a`]: '10', [`${p}b`]: '2' });
    assert.deepEqual(seen[2].map, { [`${p}a`]: '10', [`${p}c`]: '3' });
    assert.deepEqual([seen[2].change.updated, seen[2].change.deleted], [[`${p}c`], [`${p}b`]]);
    assert.ok(seen[2].change.revision > seen[1].change.revision);
    handle.close();
    await client.put(`${p}d`, '4');
    assert.equal(seen.length, 3);
  });
});

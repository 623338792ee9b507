// Goal: the client's KV calls and transaction builder behave as etcd defines them, with exact
// 64-bit revisions and typed errors. Method: run every call against the server under test
// (real etcd by default) and check results field by field.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, compare, op, CompactedError, FutureRevisionError, LeaseNotFoundError, KeyNotFoundError, UnavailableError, TimeoutError, type Client } from '../../../src/client/index.js';
import { serverUnavailable, startServerUnderTest, type ServerUnderTest } from './server-under-test.js';
import { uniquePrefix } from './helpers.js';

describe('client KV', { skip: serverUnavailable }, () => {
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

  test('put then get returns the value with bigint revisions', async () => {
    const p = uniquePrefix('kv');
    const put = await client.put(`${p}a`, 'one');
    assert.equal(typeof put.header.revision, 'bigint');
    assert.ok(put.header.clusterId > 0n);
    const kv = await client.get(`${p}a`);
    assert.ok(kv !== undefined);
    assert.equal(kv.value.toString(), 'one');
    assert.equal(kv.version, 1n);
    assert.equal(kv.createRevision, put.header.revision);
    assert.equal(kv.modRevision, put.header.revision);
    assert.equal(await client.get(`${p}missing`), undefined);
  });

  test('put with prevKv returns the previous value; binary values round-trip', async () => {
    const p = uniquePrefix('kv');
    await client.put(`${p}b`, new Uint8Array([0, 1, 255]));
    const second = await client.put(`${p}b`, 'two', { prevKv: true });
    assert.deepEqual([...(second.prevKv?.value ?? [])], [0, 1, 255]);
    const kv = await client.get(`${p}b`);
    assert.equal(kv?.version, 2n);
  });

  test('range with prefix, limit, sort, keysOnly, countOnly, revision', async () => {
    const p = uniquePrefix('range');
    const first = await client.put(`${p}1`, 'a');
    await client.put(`${p}2`, 'b');
    await client.put(`${p}3`, 'c');
    const all = await client.range(p, { prefix: true });
    assert.deepEqual(all.kvs.map((kv) => kv.value.toString()), ['a', 'b', 'c']);
    assert.equal(all.count, 3n);
    const limited = await client.range(p, { prefix: true, limit: 2, sort: { target: 'key', order: 'descend' } });
    assert.deepEqual(limited.kvs.map((kv) => kv.value.toString()), ['c', 'b']);
    assert.equal(limited.more, true);
    assert.equal(limited.count, 3n);
    const keysOnly = await client.range(p, { prefix: true, keysOnly: true });
    assert.equal(keysOnly.kvs[0].value.length, 0);
    const countOnly = await client.range(p, { prefix: true, countOnly: true });
    assert.equal(countOnly.kvs.length, 0);
    assert.equal(countOnly.count, 3n);
    const old = await client.range(p, { prefix: true, revision: first.header.revision });
    assert.equal(old.kvs.length, 1);
    const serializable = await client.range(p, { prefix: true, serializable: true });
    assert.equal(serializable.count, 3n);
    const fromKey = await client.range(`${p}2`, { rangeEnd: `${p}3` });
    assert.deepEqual(fromKey.kvs.map((kv) => kv.value.toString()), ['b']);
    assert.deepEqual(await client.getAll(p), new Map([[`${p}1`, 'a'], [`${p}2`, 'b'], [`${p}3`, 'c']]));
  });

  test('delete single and prefix with prevKv', async () => {
    const p = uniquePrefix('del');
    await client.put(`${p}x`, '1');
    await client.put(`${p}y`, '2');
    const one = await client.delete(`${p}x`, { prevKv: true });
    assert.equal(one.deleted, 1n);
    assert.equal(one.prevKvs[0].value.toString(), '1');
    const rest = await client.delete(p, { prefix: true });
    assert.equal(rest.deleted, 1n);
    assert.equal((await client.range(p, { prefix: true })).count, 0n);
  });

  test('txn builder: create-if-absent and compare helpers', async () => {
    const p = uniquePrefix('txn');
    const created = await client.txn().if(compare.createRevision(`${p}k`, '=', 0)).then(op.put(`${p}k`, 'v1')).else(op.get(`${p}k`)).commit();
    assert.equal(created.succeeded, true);
    assert.equal(created.responses[0].type, 'put');
    const again = await client.txn().if(compare.createRevision(`${p}k`, '=', 0)).then(op.put(`${p}k`, 'v2')).else(op.get(`${p}k`)).commit();
    assert.equal(again.succeeded, false);
    const read = again.responses[0];
    assert.ok(read.type === 'range');
    assert.equal(read.kvs[0].value.toString(), 'v1');
    const kv = await client.get(`${p}k`);
    assert.ok(kv !== undefined);
    const guarded = await client
      .txn()
      .if(compare.value(`${p}k`, '=', 'v1'), compare.version(`${p}k`, '>', 0n), compare.modRevision(`${p}k`, '=', kv.modRevision), compare.lease(`${p}k`, '=', '0'))
      .then(op.put(`${p}k`, 'v3'), op.delete(`${p}other`), op.txn([compare.value(`${p}k`, '!=', 'zzz')], [op.get(`${p}k`)]))
      .commit();
    assert.equal(guarded.succeeded, true);
    assert.deepEqual(guarded.responses.map((r) => r.type), ['put', 'delete', 'txn']);
    const nested = guarded.responses[2];
    assert.ok(nested.type === 'txn');
    const inner = nested.responses[0];
    assert.ok(inner.type === 'range');
    assert.equal(inner.kvs[0].value.toString(), 'v3');
    const less = await client.txn().if(compare.createRevision(`${p}k`, '<', kv.createRevision)).commit();
    assert.equal(less.succeeded, false);
    assert.throws(() => client.txn().then().if(), /out of order/);
  });

  test('typed errors: future revision, compacted, lease not found, key not found', async () => {
    const p = uniquePrefix('err');
    const first = await client.put(`${p}a`, '1');
    await client.put(`${p}a`, '2');
    await assert.rejects(client.range(p, { prefix: true, revision: first.header.revision + 1_000_000n }), FutureRevisionError);
    await client.compact(first.header.revision);
    await assert.rejects(client.range(p, { prefix: true, revision: first.header.revision - 1n }), CompactedError);
    await assert.rejects(client.put(`${p}b`, 'x', { lease: 12345n }), LeaseNotFoundError);
    await assert.rejects(client.put(`${p}nope`, '', { ignoreValue: true }), KeyNotFoundError);
  });

  test('values beyond 2^53 survive: lease ids as bigint', async () => {
    const grant = await client.leases.grant(30, { id: 0x7fff_ffff_ffff_fff0n });
    assert.equal(grant.id, 0x7fff_ffff_ffff_fff0n);
    const p = uniquePrefix('big');
    await client.put(`${p}k`, 'v', { lease: grant.id });
    assert.equal((await client.get(`${p}k`))?.lease, 0x7fff_ffff_ffff_fff0n);
    await client.leases.revoke(grant.id.toString());
    assert.equal(await client.get(`${p}k`), undefined);
  });

  test('unreachable endpoints fail with a timeout or unavailable error within the deadline', async () => {
    const dead = connect({ endpoints: ['127.0.0.1:1'], dialTimeout: 200, requestTimeout: 600 });
    const started = Date.now();
    await assert.rejects(dead.get('x'), (error: unknown) => error instanceof TimeoutError || error instanceof UnavailableError);
    assert.ok(Date.now() - started < 3000);
    dead.close();
  });

  test('reads fail over from a dead endpoint to a live one', async () => {
    const mixed = connect({ endpoints: ['127.0.0.1:1', ...server.endpoints], dialTimeout: 300, requestTimeout: 3000 });
    const p = uniquePrefix('failover');
    await client.put(`${p}k`, 'v');
    assert.equal((await mixed.get(`${p}k`))?.value.toString(), 'v');
    await mixed.put(`${p}k2`, 'v2');
    assert.equal((await client.get(`${p}k2`))?.value.toString(), 'v2');
    mixed.close();
  });
});

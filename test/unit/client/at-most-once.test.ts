// Goal: the client sends a write at most once. A write whose connection breaks after the request
// left the client fails (UnavailableError) and is not resent, because the server may have
// applied it; a write that provably never left the client (its endpoint refused the
// connection) moves on to the next endpoint and is applied exactly once; reads keep retrying.
// Method: a fake etcd gRPC server that counts requests, behind a TCP proxy that cuts the
// client's connection after the server received a request and before the reply is sent; a
// second endpoint reaches the server directly, so a resend would succeed and be counted.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, UnavailableError, compare, op, type Client } from '../../../src/client/index.js';
import { refusedEndpoint, startCuttingProxy, startFakeEtcd, type CuttingProxy, type FakeEtcd } from './fake-etcd.js';

let fake: FakeEtcd;
let proxy: CuttingProxy;

before(async () => {
  fake = await startFakeEtcd();
  proxy = await startCuttingProxy(fake.endpoint);
});

after(async () => {
  await proxy.close();
  fake.close();
});

/** A client whose first endpoint is the proxy and whose second reaches the server directly. */
function proxiedClient(): Client {
  return connect({ endpoints: [proxy.endpoint, fake.endpoint], dialTimeout: 1000, requestTimeout: 5000 });
}

/** Runs `call` and reports how it settled, so assertions can name what happened. */
async function settle(call: () => Promise<unknown>): Promise<{ kind: 'resolved'; value: unknown } | { kind: 'rejected'; error: unknown }> {
  try {
    return { kind: 'resolved', value: await call() };
  } catch (error: unknown) {
    return { kind: 'rejected', error };
  }
}

function describe(outcome: Awaited<ReturnType<typeof settle>>): string {
  if (outcome.kind === 'rejected') return `rejected with ${String(outcome.error)}`;
  return `resolved with ${JSON.stringify(outcome.value, (_key, value: unknown) => (typeof value === 'bigint' ? String(value) : value))}`;
}

/** Each write, the gRPC method it sends, and any setup it needs on the same client. */
const writes: Array<{ name: string; method: string; prepare?: (client: Client) => Promise<unknown>; run: (client: Client, prepared: unknown) => Promise<unknown> }> = [
  { name: 'put', method: 'Put', run: (client) => client.put('k', 'v') },
  { name: 'delete', method: 'DeleteRange', run: (client) => client.delete('k') },
  {
    name: 'txn (compare-and-swap)',
    method: 'Txn',
    run: (client) => client.txn().if(compare.version('k', '=', 0)).then(op.put('k', 'v')).commit(),
  },
  { name: 'lease grant', method: 'LeaseGrant', run: (client) => client.leases.grant(30) },
  {
    name: 'lease revoke',
    method: 'LeaseRevoke',
    prepare: (client) => client.leases.grant(30),
    run: (client, grant) => client.leases.revoke((grant as { id: bigint }).id),
  },
  { name: 'compact', method: 'Compact', run: (client) => client.compact(1) },
];

for (const write of writes) {
  test(`a ${write.name} whose connection is cut after the request was sent is not resent`, async () => {
    const client = proxiedClient();
    try {
      const prepared = await write.prepare?.(client);
      const before = fake.count(write.method);
      fake.cutBeforeReply(write.method, () => proxy.cutAll());
      const outcome = await settle(() => write.run(client, prepared));
      const sent = fake.count(write.method) - before;
      assert.equal(sent, 1, `${write.method} reached the server ${sent} times; the call ${describe(outcome)}`);
      assert.equal(outcome.kind, 'rejected', `the call ${describe(outcome)}`);
      assert.ok(outcome.kind === 'rejected' && outcome.error instanceof UnavailableError, `the call ${describe(outcome)}`);
    } finally {
      client.close();
    }
  });
}

test('a write whose first endpoint refuses connections goes to the next endpoint and is applied once', async () => {
  const client = connect({ endpoints: [await refusedEndpoint(), fake.endpoint], dialTimeout: 500, requestTimeout: 5000 });
  try {
    const before = fake.count('Put');
    const outcome = await settle(() => client.put('k', 'v'));
    assert.equal(outcome.kind, 'resolved', `the call ${describe(outcome)}`);
    assert.equal(fake.count('Put') - before, 1);
  } finally {
    client.close();
  }
});

test('a read whose connection is cut is retried on the next endpoint', async () => {
  const client = proxiedClient();
  try {
    const before = fake.count('Range');
    fake.cutBeforeReply('Range', () => proxy.cutAll());
    const outcome = await settle(() => client.get('k'));
    assert.equal(outcome.kind, 'resolved', `the call ${describe(outcome)}`);
    assert.equal(fake.count('Range') - before, 2, 'the read was sent again after the cut');
  } finally {
    client.close();
  }
});

test('Lease.revoke(), which accepts a lease already gone, completes across a cut connection', async () => {
  const client = proxiedClient();
  try {
    const lease = await client.lease(30);
    const before = fake.count('LeaseRevoke');
    fake.cutBeforeReply('LeaseRevoke', () => proxy.cutAll());
    const outcome = await settle(() => lease.revoke());
    assert.equal(outcome.kind, 'resolved', `the call ${describe(outcome)}`);
    assert.equal(lease.state, 'revoked');
    assert.equal(fake.count('LeaseRevoke') - before, 2, 'resent: the second revoke is answered "not found", which revoke() accepts');
  } finally {
    client.close();
  }
});

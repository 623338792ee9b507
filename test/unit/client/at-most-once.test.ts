// Goal: the client sends a write at most once. A write whose connection breaks after the request
// left the client fails (UnavailableError) and is not resent, because the server may have
// applied it; a write that provably never left the client (its endpoint refused the
// connection) moves on to the next endpoint and is applied exactly once; reads keep retrying.
// Helpers that must try again (Lease.revoke(), a registration re-registering) do so only with
// requests whose repetition has the same outcome: no orphan lease is left behind.
// Method: a fake etcd gRPC server that counts requests, behind a TCP proxy that cuts the
// client's connection after the server received a request and before the reply is sent; a
// second endpoint reaches the server directly, so a resend would succeed and be counted.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, KvError, UnavailableError, compare, op, type Client } from '../../../src/client/index.js';
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

/** Resolves with `promise`, or fails naming `what` after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

test('a registration that re-registers across a cut lease grant leaves no orphan lease', async () => {
  const client = proxiedClient();
  try {
    const earlier = new Set(fake.leaseIds()); // Left by the tests before.
    const grantsBefore = fake.count('LeaseGrant');
    const registration = await client.registry.register({ service: 'svc', id: 'a', address: '10.0.0.1:80', ttl: 1 });
    const first = registration.leaseId;
    const reregistered = new Promise<bigint>((resolve) => registration.once('reregistered', resolve));
    // The re-registration's grant reaches the server, then its connection is cut.
    fake.cutBeforeReply('LeaseGrant', () => proxy.cutAll());
    fake.forgetLease(String(first)); // As if it expired: the next keep-alive answers TTL 0.
    const leaseId = await within(reregistered, 10_000, 're-registration');
    const puts = fake.received.filter((entry) => entry.method === 'Put');
    assert.equal(String(puts[puts.length - 1].request.lease), String(leaseId), 'the key is attached to the new lease');
    const regrants = fake.received.filter((entry) => entry.method === 'LeaseGrant').slice(grantsBefore + 1);
    assert.ok(regrants.length >= 2, 'the cut grant was followed by another attempt');
    assert.deepEqual(new Set(regrants.map((entry) => String(entry.request.ID))), new Set([String(leaseId)]), 'every attempt asked for the same lease id');
    const granted = fake.leaseIds().filter((id) => !earlier.has(id));
    assert.deepEqual(granted, [String(leaseId)], 'the only lease the registration holds is the one its key is attached to');
    registration.stop();
  } finally {
    client.close();
  }
});

test("a lease granted with the caller's id is adopted, not duplicated, when the grant is repeated", async () => {
  const client = connect({ endpoints: [fake.endpoint] });
  try {
    const id = 4242n;
    const first = await client.lease(5, { id });
    const again = await client.lease(5, { id, existing: 'adopt' });
    assert.equal(again.id, id);
    assert.equal(again.ttl, 5);
    assert.equal(fake.leaseIds().filter((lease) => lease === String(id)).length, 1);
    await assert.rejects(client.lease(5, { id }), (error: unknown) => error instanceof KvError && error.code === 'lease-exists');
    first.close();
    again.close();
  } finally {
    client.close();
  }
});

// Goal: pin down the grpc-js behaviour the client's at-most-once rule stands on: a finished call
// has no transport (deliveryOf 'not-sent') exactly when grpc-js failed it before opening an
// HTTP/2 stream, whatever its error text, and has one ('maybe-sent') once a stream carried the
// request, including when the connection then drops. If a grpc-js upgrade changes this, these
// tests fail before any write is resent. Method: raw grpc-js KV clients (the client's own
// service definitions) against a refused port, a queued call whose channel is closed, and the
// fake etcd behind a proxy that cuts the connection after the server received the request.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { deliveryOf, type Delivery } from '../../../src/client/connection.js';
import { loadClientServices } from '../../../src/client/proto.js';
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

type Put = (request: unknown, metadata: grpc.Metadata, options: grpc.CallOptions, callback: (error: grpc.ServiceError | null) => void) => grpc.ClientUnaryCall;

/**
 * Sends one Put on `client` (queued until connected with `wait: 'for-ready'`, grpc-js's
 * waitForReady); resolves with its status and delivery once the call ended.
 */
function put(client: grpc.Client, options: { deadline: Date; wait?: 'for-ready' }, started?: (call: grpc.ClientUnaryCall) => void): Promise<{ code: number; details: string; delivery: Delivery }> {
  return new Promise((resolve) => {
    const method = (client as unknown as Record<string, Put>).Put;
    const metadata = new grpc.Metadata({ waitForReady: options.wait === 'for-ready' });
    const call = method.call(client, { key: Buffer.from('k'), value: Buffer.from('v') }, metadata, { deadline: options.deadline }, (error) => {
      resolve({ code: error?.code ?? grpc.status.OK, details: error?.details ?? '', delivery: deliveryOf(call) });
    });
    started?.(call);
  });
}

function kvClient(endpoint: string): grpc.Client {
  return new (loadClientServices().KV)(endpoint, grpc.credentials.createInsecure());
}

const soon = (): Date => new Date(Date.now() + 5000);

test('a call to a port that refuses connections fails unsent', async () => {
  const client = kvClient(await refusedEndpoint());
  try {
    const result = await put(client, { deadline: soon() });
    assert.equal(result.code, grpc.status.UNAVAILABLE, result.details);
    assert.equal(result.delivery, 'not-sent', result.details);
  } finally {
    client.close();
  }
});

test('a call still waiting for a connection when its channel closes fails unsent', async () => {
  const client = kvClient(await refusedEndpoint());
  const result = await put(client, { deadline: soon(), wait: 'for-ready' }, () => setImmediate(() => client.close()));
  assert.equal(result.code, grpc.status.UNAVAILABLE, result.details);
  assert.equal(result.delivery, 'not-sent', result.details);
});

test('a call waiting for a connection until its deadline fails unsent', async () => {
  const client = kvClient(await refusedEndpoint());
  try {
    const result = await put(client, { deadline: new Date(Date.now() + 200), wait: 'for-ready' });
    assert.equal(result.code, grpc.status.DEADLINE_EXCEEDED, result.details);
    assert.equal(result.delivery, 'not-sent', result.details);
  } finally {
    client.close();
  }
});

test('a call whose connection drops after the server received it may have been sent', async () => {
  const client = kvClient(proxy.endpoint);
  try {
    const before = fake.count('Put');
    fake.cutBeforeReply('Put', () => proxy.cutAll());
    const result = await put(client, { deadline: soon() });
    assert.equal(fake.count('Put') - before, 1);
    assert.equal(result.code, grpc.status.UNAVAILABLE, result.details);
    assert.equal(result.delivery, 'maybe-sent', result.details);
  } finally {
    client.close();
  }
});

test('a call that succeeded had a stream', async () => {
  const client = kvClient(fake.endpoint);
  try {
    const result = await put(client, { deadline: soon() });
    assert.equal(result.code, grpc.status.OK, result.details);
    assert.equal(result.delivery, 'maybe-sent');
  } finally {
    client.close();
  }
});

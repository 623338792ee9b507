// Goal: client locks and elections follow etcd's concurrency protocol, so they exclude each
// other and interoperate with `etcdctl lock` / `etcdctl elect`. Method: contend for locks
// between two clients and against a real etcdctl process (which prints the lock key only once
// it holds the lock), and run elections with campaign/proclaim/resign/observe.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect, hexId, type Client, type LeaderKey } from '../../../src/client/index.js';
import { serverUnavailable, startServerUnderTest, type ServerUnderTest } from './server-under-test.js';
import { uniquePrefix, waitFor } from './helpers.js';

const ETCDCTL = process.env.ETCDCTL_BINARY ?? '/usr/bin/etcdctl';

function startEtcdctl(endpoints: string[], args: string[]): { child: ChildProcess; output: () => string; stop: () => Promise<void> } {
  const child = spawn(ETCDCTL, ['--endpoints', endpoints.join(','), ...args], { env: { ...process.env, ETCDCTL_API: '3' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return {
    child,
    output: () => output,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGINT');
      }),
  };
}

describe('client lock and election', { skip: serverUnavailable }, () => {
  let server: ServerUnderTest;
  let client: Client;
  let other: Client;
  before(async () => {
    server = await startServerUnderTest();
    client = connect({ endpoints: server.endpoints });
    other = connect({ endpoints: server.endpoints });
  });
  after(async () => {
    client?.close();
    other?.close();
    await server?.stop();
  });

  test('two clients exclude each other; the waiter gets the lock when it is released', async () => {
    const name = uniquePrefix('lock').slice(0, -1);
    const first = client.lock(name);
    await first.lock();
    assert.match(first.key, new RegExp(`^${name}/[0-9a-f]+$`));
    const second = other.lock(name);
    let acquired = false;
    const waiting = second.lock().then(() => (acquired = true));
    // The waiter has queued its key behind ours and must not hold the lock.
    await waitFor(async () => (await client.range(`${name}/`, { prefix: true })).count === 2n, 5000, 'the waiter to queue');
    assert.equal(acquired, false);
    assert.equal(await client.lock(name).tryLock(), false);
    await first.unlock();
    await waiting;
    assert.equal(acquired, true);
    await second.unlock();
    assert.equal((await client.range(`${name}/`, { prefix: true })).count, 0n);
  });

  test('our lock held makes `etcdctl lock` wait; it gets the lock after we unlock', { skip: existsSync(ETCDCTL) ? false : 'etcdctl not installed' }, async () => {
    const name = uniquePrefix('xlock').slice(0, -1);
    const mutex = client.lock(name);
    await mutex.lock();
    const etcdctl = startEtcdctl(server.endpoints, ['lock', name]);
    try {
      await waitFor(async () => (await client.range(`${name}/`, { prefix: true })).count === 2n, 10_000, 'etcdctl to queue');
      assert.equal(etcdctl.output(), '', 'etcdctl must not hold the lock while we do');
      await mutex.unlock();
      await waitFor(() => etcdctl.output().startsWith(`${name}/`), 10_000, 'etcdctl to acquire');
    } finally {
      await etcdctl.stop();
    }
  });

  test('`etcdctl lock` held makes our lock wait until etcdctl releases it', { skip: existsSync(ETCDCTL) ? false : 'etcdctl not installed' }, async () => {
    const name = uniquePrefix('ylock').slice(0, -1);
    const etcdctl = startEtcdctl(server.endpoints, ['lock', name]);
    try {
      await waitFor(() => etcdctl.output().startsWith(`${name}/`), 10_000, 'etcdctl to acquire');
      const mutex = client.lock(name);
      let acquired = false;
      const waiting = mutex.lock().then(() => (acquired = true));
      await waitFor(async () => (await client.range(`${name}/`, { prefix: true })).count === 2n, 10_000, 'our key to queue');
      assert.equal(acquired, false);
      await etcdctl.stop();
      await waiting;
      assert.equal(acquired, true);
      await mutex.unlock();
    } finally {
      await etcdctl.stop();
    }
  });

  test('election: campaign, leader, proclaim, observe, resign hands over', async () => {
    const name = uniquePrefix('elect').slice(0, -1);
    const one = client.election(name);
    await one.campaign('alpha');
    const leader = await one.leader();
    assert.equal(leader.value.toString(), 'alpha');
    const session = await other.session({ ttl: 10 });
    assert.equal(one.key.startsWith(`${name}/`), true);
    const observed: LeaderKey[] = [];
    const controller = new AbortController();
    const observing = (async () => {
      for await (const current of other.election(name, { session }).observe({ signal: controller.signal })) observed.push(current);
    })();
    await waitFor(() => observed.length === 1, 5000, 'the first observation');
    await one.proclaim('alpha2');
    await waitFor(() => observed.some((entry) => entry.value.toString() === 'alpha2'), 5000, 'the proclaimed value');
    const two = other.election(name, { session });
    let elected = false;
    const campaigning = two.campaign('beta').then(() => (elected = true));
    await waitFor(async () => (await client.range(`${name}/`, { prefix: true })).count === 2n, 5000, 'the second candidate');
    assert.equal(elected, false);
    await one.resign();
    await campaigning;
    assert.equal((await two.leader()).value.toString(), 'beta');
    assert.equal(two.key, `${name}/${hexId(session.leaseId)}`);
    await waitFor(() => observed.some((entry) => entry.value.toString() === 'beta'), 5000, 'the new leader observed');
    controller.abort();
    await observing.catch(() => undefined);
    await two.resign();
    await session.close();
  });
});

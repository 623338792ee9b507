// Goal: the two examples work end to end against a real 3-member kvd cluster: the gateway
// spreads `/svc/<name>/...` round-robin over every registered instance of the service; when an
// instance is SIGKILLed no request fails (a refused connection is retried on the next instance)
// and within ttl + 1 s its registry key has expired and the gateway no longer even tries it;
// routes put under /config/gateway/routes/ are applied (added, re-pointed, deleted) without a
// restart; SIGTERM deregisters an instance at once (its key is gone when the process exits,
// long before its TTL) and the gateway answers 502 for a service without instances.
// Method: real kvd processes (harness.ts), the compiled examples as child processes
// (`node dist/examples/.../main.js`), plain HTTP requests to the gateway, and kvd's own client
// to read registry keys and write routes. Waits use deadlines; the only timing assertions are
// the TTL bounds the properties are about.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { fileURLToPath } from 'node:url';
import { Cluster, waitFor } from '../harness.js';
import { connect, type Client } from '../../../src/client/index.js';

const SERVICE_MAIN = fileURLToPath(new URL('../../../examples/service/main.js', import.meta.url));
const GATEWAY_MAIN = fileURLToPath(new URL('../../../examples/gateway/main.js', import.meta.url));
const TTL_SECONDS = 2;
/** The SIGTERM instance gets a long TTL so "gone at once" is clearly not "expired". */
const LONG_TTL_SECONDS = 20;

interface Child {
  readonly name: string;
  readonly process: ChildProcess;
  readonly port: number;
  /** stderr so far (for failure messages). */
  readonly log: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children: ChildProcess[] = [];

/** Starts `node <script> ...args` and waits for its `listening <port>` line. */
async function startChild(name: string, script: string, args: readonly string[]): Promise<Child> {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not print "listening <port>" within 15 s; stderr:\n${stderr}`)), 15_000);
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      const match = /^listening (\d+)$/m.exec(stdout);
      if (match !== null) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited (code ${code}, signal ${signal}) before listening; stderr:\n${stderr}`));
    });
  });
  return { name, process: child, port, log: () => stderr, exited };
}

interface Answer {
  readonly status: number;
  /** The id of the instance that answered (x-gateway-instance), if any. */
  readonly instance: string | undefined;
  /** Upstream attempts the gateway made (x-gateway-attempts). */
  readonly attempts: number;
  readonly body: Record<string, unknown>;
}

/** One GET through the gateway (a fresh connection each time). */
function get(port: number, path: string): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method: 'GET', agent: false, timeout: 5_000 }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => { text += chunk; });
      response.on('end', () => {
        const instance = response.headers['x-gateway-instance'];
        resolve({
          status: response.statusCode ?? 0,
          instance: typeof instance === 'string' ? instance : undefined,
          attempts: Number(response.headers['x-gateway-attempts'] ?? 0),
          body: text === '' ? {} : (JSON.parse(text) as Record<string, unknown>),
        });
      });
      response.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Kills (by PID, SIGKILL) every child this file started that is still running. */
function killChildren(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

test('gateway routes over live registry views and live config', async (t) => {
  const cluster = await Cluster.start({ size: 3 });
  let client: Client | undefined;
  after(async () => {
    killChildren();
    client?.close();
    await cluster.stop();
  });
  // Generous: three cold Node processes electing on a loaded machine can take a while.
  await cluster.waitForLeader({ timeoutMs: 30_000 });
  client = connect({ endpoints: cluster.endpoints });
  const kv = client;
  const endpoints = cluster.endpoints.join(',');

  const [a, b] = await Promise.all(['a', 'b'].map((id) => startChild(`service ${id}`, SERVICE_MAIN, ['--endpoints', endpoints, '--service', 'echo', '--id', id, '--port', '0', '--ttl', String(TTL_SECONDS)])));
  const gateway = await startChild('gateway', GATEWAY_MAIN, ['--endpoints', endpoints, '--port', '0']);
  const diagnostics = (): string => [a, b, gateway].map((c) => `--- ${c.name}\n${c.log()}`).join('\n');

  await t.test('requests through the gateway reach both instances, round-robin', async () => {
    assert.ok(await kv.get('/registry/echo/a') !== undefined, 'instance a registered before printing "listening"');
    assert.ok(await kv.get('/registry/echo/b') !== undefined, 'instance b registered before printing "listening"');
    const counts = new Map<string, number>();
    for (let i = 0; i < 10; i++) {
      const answer = await get(gateway.port, `/svc/echo/hello/${i}?x=1`);
      assert.equal(answer.status, 200, diagnostics());
      assert.equal(answer.body.id, answer.instance, 'the instance named in the header answered');
      assert.equal(answer.body.path, `/hello/${i}?x=1`, 'the /svc/<name> prefix is stripped, the query kept');
      counts.set(String(answer.body.id), (counts.get(String(answer.body.id)) ?? 0) + 1);
    }
    assert.deepEqual([...counts.entries()].sort(), [['a', 5], ['b', 5]]);
    assert.equal((await get(gateway.port, '/svc/unknown/x')).status, 502, 'a service without instances is a 502');
    assert.equal((await get(gateway.port, '/elsewhere')).status, 404);
  });

  await t.test('SIGKILL of an instance: no failed request, and within ttl + 1 s it is no longer tried', async () => {
    const killedAt = Date.now();
    a.process.kill('SIGKILL');
    await a.exited;
    const answers: Answer[] = [];
    // Traffic has moved once the key has expired and the gateway's view dropped it: then
    // several consecutive requests in a row reach b at the first attempt.
    await waitFor('instance a expired and no longer tried', async () => {
      const answer = await get(gateway.port, '/svc/echo/after-kill');
      answers.push(answer);
      const tail = answers.slice(-4);
      if (tail.length < 4 || !tail.every((x) => x.attempts === 1)) return undefined;
      return (await kv.get('/registry/echo/a')) === undefined ? true : undefined;
    }, { timeoutMs: (TTL_SECONDS + 1) * 1000, intervalMs: 20 });
    const elapsedMs = Date.now() - killedAt;
    assert.ok(elapsedMs <= (TTL_SECONDS + 1) * 1000, `moved after ${elapsedMs} ms`);
    for (const answer of answers) {
      assert.equal(answer.status, 200, 'no request fails while a is dead but still listed');
      assert.equal(answer.instance, 'b');
    }
    assert.ok(answers.some((x) => x.attempts === 2), 'while a was still listed, requests picking it were retried on b');
    t.diagnostic(`SIGKILL → traffic only on b after ${elapsedMs} ms (${answers.length} requests, ${answers.filter((x) => x.attempts === 2).length} retried)`);
  });

  const c = await startChild('service c', SERVICE_MAIN, ['--endpoints', endpoints, '--service', 'billing', '--id', 'c', '--port', '0', '--ttl', String(LONG_TTL_SECONDS)]);

  await t.test('routes put under /config/gateway/routes/ apply without a restart', async () => {
    assert.equal((await get(gateway.port, '/api/hello')).status, 404, 'no route yet');
    await kv.put('/config/gateway/routes/api', JSON.stringify({ service: 'echo' }));
    const viaEcho = await waitFor('route /api → echo applied', async () => {
      const answer = await get(gateway.port, '/api/hello');
      return answer.status === 200 ? answer : undefined;
    }, { timeoutMs: 5_000, intervalMs: 20 });
    assert.equal(viaEcho.instance, 'b');
    assert.equal(viaEcho.body.path, '/hello', 'the route prefix is stripped');

    await kv.put('/config/gateway/routes/api', JSON.stringify({ service: 'billing' }));
    await waitFor('route /api re-pointed to billing', async () => ((await get(gateway.port, '/api/hello')).instance === 'c' ? true : undefined), { timeoutMs: 5_000, intervalMs: 20 });

    await kv.put('/config/gateway/routes/api/v2', JSON.stringify({ service: 'echo' }));
    await waitFor('longer prefix /api/v2 → echo wins', async () => ((await get(gateway.port, '/api/v2/x')).instance === 'b' ? true : undefined), { timeoutMs: 5_000, intervalMs: 20 });
    assert.equal((await get(gateway.port, '/api/x')).instance, 'c', '/api/... still goes to billing');
    assert.equal((await get(gateway.port, '/api/v2x')).instance, 'c', 'prefixes match whole segments only');

    await kv.put('/config/gateway/routes/broken', 'not json');
    await kv.delete('/config/gateway/routes/api/v2');
    await waitFor('route /api/v2 deleted', async () => ((await get(gateway.port, '/api/v2/x')).instance === 'c' ? true : undefined), { timeoutMs: 5_000, intervalMs: 20 });
    assert.equal((await get(gateway.port, '/broken/x')).status, 404, 'a malformed route is ignored');
    assert.equal(gateway.process.exitCode, null, 'the gateway was never restarted');
  });

  await t.test('SIGTERM deregisters at once: the key is gone before its TTL, the gateway answers 502', async () => {
    assert.ok(await kv.get('/registry/billing/c') !== undefined);
    const terminatedAt = Date.now();
    c.process.kill('SIGTERM');
    const { code, signal } = await c.exited;
    assert.deepEqual({ code, signal }, { code: 0, signal: null }, c.log());
    assert.equal(await kv.get('/registry/billing/c'), undefined, 'key deleted by the time the process exited');
    const noInstance = await waitFor('gateway sees billing without instances', async () => {
      const answer = await get(gateway.port, '/api/hello');
      return answer.status === 502 && answer.body.error === 'no instance' ? answer : undefined;
    }, { timeoutMs: 5_000, intervalMs: 20 });
    const elapsedMs = Date.now() - terminatedAt;
    assert.equal(noInstance.attempts, 0);
    assert.ok(elapsedMs < LONG_TTL_SECONDS * 1000 / 2, `deregistered after ${elapsedMs} ms, TTL is ${LONG_TTL_SECONDS} s`);
    t.diagnostic(`SIGTERM → key gone and gateway 502 after ${elapsedMs} ms`);
  });

  gateway.process.kill('SIGTERM');
  assert.deepEqual(await gateway.exited, { code: 0, signal: null }, gateway.log());
  b.process.kill('SIGTERM');
  assert.deepEqual(await b.exited, { code: 0, signal: null }, b.log());
});

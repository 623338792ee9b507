// Goal: every member serves the console at /ui/ on its client URL in both serving modes (the
// member process itself with --frontends 0, and front-end processes), and --enable-ui=false
// turns it off (404) without touching the JSON gateway. A browser page served by one member may
// call another (CORS preflight answered as etcd does).
// Method: two one-member clusters of real kvd processes, plain HTTP requests (no browser).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { Cluster } from '../harness.js';

let inProcess: Cluster;
let turnedOff: Cluster;

function http(endpoint: string, path: string, options: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  const [host, port] = endpoint.split(':');
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host, port: Number(port), path, method: options.method ?? 'GET', headers: options.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

before(async () => {
  [inProcess, turnedOff] = await Promise.all([
    Cluster.start({ size: 1, extraArgs: ['--frontends', '0'] }),
    Cluster.start({ size: 1, extraArgs: ['--frontends', '1', '--enable-ui=false'] }),
  ]);
  await Promise.all([inProcess.waitForLeader({ timeoutMs: 60_000 }), turnedOff.waitForLeader({ timeoutMs: 60_000 })]);
});

after(async () => {
  await Promise.all([inProcess?.stop(), turnedOff?.stop()]);
});

test('the member process (--frontends 0) serves /ui/, its assets and client routes', async () => {
  const endpoint = inProcess.endpoints[0];
  const page = await http(endpoint, '/ui/');
  assert.equal(page.status, 200);
  assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
  const script = /src="(\/ui\/assets\/[^"]+\.js)"/.exec(page.body)?.[1];
  assert.ok(script !== undefined, page.body);
  const bundle = await http(endpoint, script, { headers: { 'accept-encoding': 'gzip' } });
  assert.equal(bundle.status, 200);
  assert.equal(bundle.headers['content-type'], 'text/javascript; charset=utf-8');
  assert.equal(bundle.headers['content-encoding'], 'gzip');
  assert.equal(bundle.headers['cache-control'], 'public, max-age=31536000, immutable');
  assert.equal((await http(endpoint, '/ui/keys?prefix=/a/')).body, page.body, 'a client-side route gets the page');
  assert.equal((await http(endpoint, '/ui')).headers.location, '/ui/');
});

test('CORS preflights answer 200 with etcd\'s headers, so a page on one member can call another', async () => {
  const preflight = await http(inProcess.endpoints[0], '/v3/maintenance/status', { method: 'OPTIONS', headers: { origin: 'http://127.0.0.1:1', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,authorization' } });
  assert.equal(preflight.status, 200);
  assert.equal(preflight.headers['access-control-allow-origin'], '*');
  assert.match(String(preflight.headers['access-control-allow-headers']), /authorization/);
  assert.match(String(preflight.headers['access-control-allow-methods']), /POST/);
});

test('--enable-ui=false: /ui/ is 404 (front-end processes) and the gateway still answers', async () => {
  const endpoint = turnedOff.endpoints[0];
  for (const path of ['/ui/', '/ui', '/ui/cluster']) {
    const answer = await http(endpoint, path);
    assert.equal(answer.status, 404, path);
    assert.equal(answer.body, '404 page not found\n', path);
  }
  const status = await http(endpoint, '/v3/maintenance/status', { method: 'POST', body: '{}' });
  assert.equal(status.status, 200);
  assert.match(status.body, /"raftIndex"/);
});

// Goal: /ui/ serves the built console as a static site should: content types, gzip, ETag and
// 304, a year of caching only for hashed assets, index.html for client-side routes, 404 for a
// missing file, 405 for writes, a redirect from /ui, and nothing at all with the console off.
// Method: the handler over a temporary directory shaped like dist/console, on a real HTTP server.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { createUiHandler } from '../../../src/api/ui-assets.js';

const dir = mkdtempSync(join(tmpdir(), 'kvd-ui-assets-'));
mkdirSync(join(dir, 'assets'));
const html = '<!doctype html><title>kvd</title><script type="module" src="/ui/assets/main-ABC.js"></script>';
const js = `console.log(${JSON.stringify('x'.repeat(2000))});`;
writeFileSync(join(dir, 'index.html'), html);
writeFileSync(join(dir, 'assets', 'main-ABC.js'), js);
writeFileSync(join(dir, 'assets', 'main-ABC.css'), 'body{color:red}');

function serve(mode: 'on' | 'off'): Promise<{ port: number; close: () => void }> {
  const handler = createUiHandler({ mode, dir });
  const server = createServer((req, res) => {
    if (!handler(req, res)) {
      res.writeHead(404);
      res.end('declined');
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    resolve({ port: typeof address === 'object' && address !== null ? address.port : 0, close: () => server.close() });
  }));
}

function get(port: number, path: string, options: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method: options.method ?? 'GET', headers: options.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

const on = await serve('on');
const off = await serve('off');
after(() => {
  on.close();
  off.close();
  rmSync(dir, { recursive: true, force: true });
});

test('index.html at /ui/ with no-cache, a CSP and nosniff; /ui redirects there', async () => {
  const page = await get(on.port, '/ui/');
  assert.equal(page.status, 200);
  assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
  assert.equal(page.headers['cache-control'], 'no-cache');
  assert.match(String(page.headers['content-security-policy']), /default-src 'self'/);
  assert.equal(page.headers['x-content-type-options'], 'nosniff');
  assert.equal(page.body.toString(), html);
  const redirect = await get(on.port, '/ui?x=1');
  assert.equal(redirect.status, 301);
  assert.equal(redirect.headers.location, '/ui/?x=1');
});

test('hashed assets: their content type, cached for a year, gzip when asked, 304 on a matching ETag', async () => {
  const plain = await get(on.port, '/ui/assets/main-ABC.js');
  assert.equal(plain.headers['content-type'], 'text/javascript; charset=utf-8');
  assert.equal(plain.headers['cache-control'], 'public, max-age=31536000, immutable');
  assert.equal(plain.headers['content-encoding'], undefined);
  assert.equal(plain.body.toString(), js);
  const zipped = await get(on.port, '/ui/assets/main-ABC.js', { headers: { 'accept-encoding': 'gzip, br' } });
  assert.equal(zipped.headers['content-encoding'], 'gzip');
  assert.equal(zipped.headers.vary, 'Accept-Encoding');
  assert.equal(gunzipSync(zipped.body).toString(), js);
  assert.ok(zipped.body.length < js.length / 4);
  const again = await get(on.port, '/ui/assets/main-ABC.js', { headers: { 'if-none-match': String(plain.headers.etag) } });
  assert.equal(again.status, 304);
  assert.equal(again.body.length, 0);
  assert.equal((await get(on.port, '/ui/assets/main-ABC.css')).headers['content-type'], 'text/css; charset=utf-8');
});

test('client-side routes get index.html; missing files 404; writes 405; other paths are declined', async () => {
  for (const path of ['/ui/keys', '/ui/keys/deep/route?prefix=/a/', '/ui/config']) {
    const page = await get(on.port, path);
    assert.equal(page.status, 200, path);
    assert.equal(page.body.toString(), html, path);
  }
  assert.equal((await get(on.port, '/ui/assets/main-OLD.js')).status, 404);
  assert.equal((await get(on.port, '/ui/favicon.ico')).status, 404);
  assert.equal((await get(on.port, '/ui/assets/nothing')).status, 404, 'assets/ never falls back to the page');
  assert.equal((await get(on.port, '/ui/', { method: 'POST' })).status, 405);
  const head = await get(on.port, '/ui/', { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  assert.equal((await get(on.port, '/v3/kv/range')).body.toString(), 'declined');
  assert.equal((await get(on.port, '/uix')).body.toString(), 'declined');
});

test('with --enable-ui=false every /ui path is declined (the client port answers 404)', async () => {
  for (const path of ['/ui', '/ui/', '/ui/assets/main-ABC.js', '/ui/keys']) {
    const answer = await get(off.port, path);
    assert.equal(answer.status, 404, path);
    assert.equal(answer.body.toString(), 'declined', path);
  }
});

test('a console that was not built answers 404 with how to build it', async () => {
  const handler = createUiHandler({ mode: 'on', dir: join(dir, 'missing') });
  const server = createServer((req, res) => void handler(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const answer = await get(typeof address === 'object' && address !== null ? address.port : 0, '/ui/');
  server.close();
  assert.equal(answer.status, 404);
  assert.match(answer.body.toString(), /npm run build/);
});

/**
 * The bundled member (dist/bin/kvd.js and its front-end, dist/bin/kvd-frontend.js, written by
 * scripts/bundle.mjs): a member started without a code cache writes one for each once it serves,
 * and a member started again with them serves as before (V8 accepts or rejects a cache; either
 * way the process runs).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Cluster, KVD_BIN, call, waitFor, type PutResponseJs, type RangeResponseJs } from './harness.js';

const BIN_DIR = dirname(KVD_BIN);
const caches = (): string[] => readdirSync(BIN_DIR).filter((name) => /^kvd(-frontend)?-[0-9a-f]{16}\.cache$/.test(name)).sort();

test('a bundled member writes its code caches once it serves, and starts again with them', async () => {
  for (const name of caches()) rmSync(join(BIN_DIR, name), { force: true });
  const cluster = await Cluster.start({ size: 1, extraArgs: ['--frontends', '1'] });
  after(() => cluster.stop());
  const [member] = cluster.members;
  await cluster.waitForLeader();
  await call<PutResponseJs>(member.endpoint, 'KV', 'Put', { key: Buffer.from('greeting'), value: Buffer.from('hello') });

  const written = await waitFor('a code cache for the member and one for its front-end', () => {
    const found = caches();
    return found.some((name) => name.startsWith('kvd-frontend-')) && found.some((name) => !name.startsWith('kvd-frontend-')) ? found : undefined;
  }, { timeoutMs: 20_000, intervalMs: 200 });
  assert.equal(written.length, 2, `one cache per bundle (${written.join(', ')})`);

  await cluster.kill(member.name, 'SIGTERM');
  cluster.startMember(member.name);
  await cluster.waitForLeader();
  const read = await call<RangeResponseJs>(member.endpoint, 'KV', 'Range', { key: Buffer.from('greeting') });
  assert.equal(read.kvs[0]?.value.toString(), 'hello', 'the restarted member serves its data');
  assert.deepEqual(caches(), written, 'the same two caches afterwards');
});

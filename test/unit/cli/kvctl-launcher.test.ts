/**
 * kvctl's launcher (dist/bin/kvctl.js, written by scripts/bundle.mjs): the first run leaves a
 * V8 code cache named after the bundle's content, later runs use it, and a cache V8 rejects (here:
 * garbage) is replaced instead of breaking the command.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);
const BIN_DIR = fileURLToPath(new URL('../../../bin/', import.meta.url));
const KVCTL = join(BIN_DIR, 'kvctl.js');

function caches(): string[] {
  return readdirSync(BIN_DIR).filter((name) => /^kvctl-[0-9a-f]{16}\.cache$/.test(name));
}

async function help(): Promise<string> {
  const { stdout } = await run(process.execPath, [KVCTL, '--help'], { timeout: 20_000 });
  return stdout;
}

test('the first kvctl run leaves a code cache; a rejected cache is replaced and the command still works', async () => {
  for (const name of caches()) rmSync(join(BIN_DIR, name), { force: true });
  assert.match(await help(), /Usage: kvctl/);
  const made = caches();
  assert.equal(made.length, 1, `one cache after the first run (${made.join(', ')})`);
  const cacheFile = join(BIN_DIR, made[0]);
  const first = readFileSync(cacheFile);
  assert.ok(first.length > 10_000, `the cache holds compiled code (${first.length} bytes)`);

  writeFileSync(cacheFile, Buffer.alloc(4096, 0x5a));
  assert.match(await help(), /Usage: kvctl/, 'garbage in the cache file does not break kvctl');
  const replaced = readFileSync(cacheFile);
  assert.notDeepEqual(replaced.subarray(0, 64), Buffer.alloc(64, 0x5a), 'the rejected cache was written anew');
  assert.ok(replaced.length > 10_000);
});

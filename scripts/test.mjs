#!/usr/bin/env node
// Runs compiled test files (dist/test/<layer>/**/*.test.js) with Node's built-in test runner.
// Usage: node scripts/test.mjs [layer ...]   (default: unit sim integration compat fault)
// Node 20's `--test` does not expand globs, so the files are listed here and passed explicitly.
import { readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

// --server=etcd runs the chosen layers against a real etcd (the client suite's second pass);
// skipped with a note when /usr/bin/etcd is not installed.
const serverFlag = process.argv.slice(2).find((a) => a.startsWith('--server='));
const layers = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const extra = process.argv.slice(2).filter((a) => a.startsWith('-') && !a.startsWith('--server='));
const server = serverFlag === undefined ? undefined : serverFlag.slice('--server='.length);
if (server === 'etcd' && !existsSync(process.env.KVD_TEST_ETCD ?? '/usr/bin/etcd')) {
  console.log('# skipped: the etcd pass needs /usr/bin/etcd (Debian etcd-server)');
  process.exit(0);
}
const chosen = layers.length > 0 ? layers : ['unit', 'sim', 'integration', 'compat', 'fault'];

function walk(dir, out) {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, out);
    else if (name.endsWith('.test.js')) out.push(path);
  }
  return out;
}

const files = [];
for (const layer of chosen) {
  const dir = join('dist', 'test', layer);
  if (existsSync(dir)) walk(dir, files);
}
if (files.length === 0) {
  console.error(`no test files found for layers: ${chosen.join(', ')} (did you run npm run build?)`);
  process.exit(1);
}
const concurrency = process.env.KVD_TEST_CONCURRENCY ?? '2';
// A test that hangs fails after ten minutes instead of holding CI until its own limit.
const timeout = extra.some((a) => a.startsWith('--test-timeout')) ? [] : ['--test-timeout=600000'];
const result = spawnSync(
  process.execPath,
  ['--test', `--test-concurrency=${concurrency}`, ...timeout, ...extra, ...files],
  { stdio: 'inherit', env: server === undefined ? process.env : { ...process.env, KVD_TEST_SERVER: server } },
);
process.exit(result.status ?? 1);

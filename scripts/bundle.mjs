#!/usr/bin/env node
// Build step: bundles each of the commands below (tsc's output and everything it imports, grpc-js
// and protobufjs included) into one CommonJS file, dist/bin/<name>-bundle.cjs, and writes its
// launcher dist/bin/<name>.js, so that a process starts by loading two files instead of ~150
// (issue 16: kvctl's start-up; a member and each of its front-ends start the same way). Packages
// with native parts stay external.
//
// The launcher compiles the bundle with a V8 code cache (node:vm Script cachedData): parsing and
// compiling ~2-3 MB of JavaScript was the largest part of a start. The cache is made by a run
// without a usable one and stored next to the bundle under the bundle's content hash, so a
// rebuilt bundle never meets a stale cache; V8 itself rejects a cache from another Node version or
// other V8 flags (the launcher then writes a new one). A command (kvctl) writes it when it is
// done, from everything it compiled; a server (kvd, its front-end) a few seconds after its start,
// once it serves. Where dist/bin is not writable, the process runs without a cache.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

/** Seconds after a server's start at which its launcher writes the code cache. */
const SERVER_CACHE_AFTER_SECONDS = 3;

const BUNDLES = [
  // kvctl's entry ends with a top-level `await main()`, which CommonJS cannot have; it is minified
  // (half the bytes to read and hash at every command), the servers are not (readable stacks).
  { name: 'kvctl', entry: 'dist/cli/kvctl.js', finalAwait: true, minify: true, cache: 'exit', what: "kvctl's" },
  { name: 'kvd', entry: 'dist/cli/kvd.js', minify: false, cache: 'uptime', what: "kvd's (a member)" },
  { name: 'kvd-frontend', entry: 'dist/src/server/frontends/worker-main.js', minify: false, cache: 'uptime', what: "a kvd front-end's (forked by the member, src/server/frontends/host.ts)" },
];

rmSync('dist/bin', { recursive: true, force: true });
mkdirSync('dist/bin', { recursive: true });
for (const bundle of BUNDLES) await bundleOne(bundle);

async function bundleOne({ name, entry, finalAwait, minify, cache, what }) {
  let entryPoint = entry;
  if (finalAwait) {
    const source = readFileSync(entry, 'utf8');
    const pattern = /^await main\(\);\s*$/m;
    if (!pattern.test(source)) throw new Error(`${entry} no longer ends with \`await main();\`: update scripts/bundle.mjs`);
    entryPoint = entry.replace(/\.js$/, '-bundle-entry.js');
    writeFileSync(entryPoint, source.replace(pattern, 'void main().catch((error) => { process.exitCode = 1; throw error; });\n'));
  }
  const outfile = `dist/bin/${name}-bundle.cjs`;
  await build({
    entryPoints: [entryPoint],
    outfile,
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    external: ['classic-level', 'msgpackr', 'msgpackr-extract'],
    // import.meta.url of every bundled module is the bundle's own URL: the build's files are found
    // from dist/bin (src/util/bundled.ts).
    define: { KVD_BUNDLED: 'true', 'import.meta.url': '__kvdBundleUrl' },
    banner: { js: "const __kvdBundleUrl = require('node:url').pathToFileURL(__filename).href;" },
    logLevel: 'warning',
    legalComments: 'none',
    minify,
    keepNames: true,
  });
  if (entryPoint !== entry) rmSync(entryPoint);

  // The entry's shebang line would be a syntax error inside the launcher's function wrapper.
  const bundled = readFileSync(outfile, 'utf8').replace(/^#!.*\n/, '');
  writeFileSync(outfile, bundled);
  const hash = createHash('sha256').update(Buffer.from(bundled)).digest('hex').slice(0, 16);
  const writeCache = cache === 'exit'
    ? `  // After the command: the cache then holds every function the command compiled.
  process.once('beforeExit', writeCache);`
    : `  // A server never reaches beforeExit: the cache is written once it has started and serves.
  setTimeout(writeCache, ${SERVER_CACHE_AFTER_SECONDS * 1000}).unref();`;
  const launcher = `#!/usr/bin/env node
// ${what} launcher (written by scripts/bundle.mjs): runs ${name}-bundle.cjs compiled with a
// V8 code cache kept beside it (${name}-${hash}.cache, named after the bundle's content).
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';

const file = fileURLToPath(new URL('./${name}-bundle.cjs', import.meta.url));
const cacheFile = fileURLToPath(new URL('./${name}-${hash}.cache', import.meta.url));
let cachedData;
try {
  cachedData = readFileSync(cacheFile);
} catch {
  cachedData = undefined; // first run, or a directory that could not be written
}
const source = '(function (exports, require, module, __filename, __dirname) { ' + readFileSync(file, 'utf8') + '\\n})';
const script = new Script(source, { filename: file, cachedData });
if (cachedData === undefined || script.cachedDataRejected === true) {
  const writeCache = () => {
    const temporary = \`\${cacheFile}.\${process.pid}.tmp\`;
    try {
      writeFileSync(temporary, script.createCachedData());
      renameSync(temporary, cacheFile);
    } catch {
      // Read-only install: run without a cache.
    }
  };
${writeCache}
}
const module = { exports: {} };
script.runInThisContext()(module.exports, createRequire(file), module, file, dirname(file));
`;
  writeFileSync(`dist/bin/${name}.js`, launcher);
  chmodSync(`dist/bin/${name}.js`, 0o755);
}

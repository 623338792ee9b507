#!/usr/bin/env node
// Build step: bundles kvctl (tsc's dist/cli/kvctl.js and everything it imports, grpc-js and
// protobufjs included) into one CommonJS file, dist/bin/kvctl-bundle.cjs, and writes the launcher
// dist/bin/kvctl.js (the `kvctl` bin), so that a command starts by loading two files instead of
// ~150 (kvctl start-up, issue 16). Packages with native parts stay external.
//
// The launcher compiles the bundle with a V8 code cache (node:vm Script cachedData): parsing and
// compiling ~2 MB of JavaScript was the largest part of a command's start-up. The cache is made
// by the first run (after the command, from everything it compiled) and stored next to the
// bundle under the bundle's content hash, so a rebuilt bundle never meets a stale cache; V8
// itself rejects a cache from another Node version (the launcher then writes a new one). Where
// dist/bin is not writable, kvctl runs without a cache.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { chmodSync, readFileSync, rmSync, writeFileSync } from 'node:fs';

// kvctl's entry ends with a top-level `await main()`, which CommonJS cannot have.
const entry = readFileSync('dist/cli/kvctl.js', 'utf8');
const finalAwait = /^await main\(\);\s*$/m;
if (!finalAwait.test(entry)) throw new Error('dist/cli/kvctl.js no longer ends with `await main();`: update scripts/bundle-kvctl.mjs');
writeFileSync('dist/cli/kvctl-bundle-entry.js', entry.replace(finalAwait, 'void main().catch((error) => { process.exitCode = 1; throw error; });\n'));

rmSync('dist/bin', { recursive: true, force: true });
await build({
  entryPoints: ['dist/cli/kvctl-bundle-entry.js'],
  outfile: 'dist/bin/kvctl-bundle.cjs',
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  external: ['classic-level', 'msgpackr', 'msgpackr-extract'],
  // import.meta.url of every bundled module is the bundle's own URL (paths such as ../proto.json
  // are resolved from dist/bin, see src/client/proto.ts).
  define: { KVD_BUNDLED: 'true', 'import.meta.url': '__kvdBundleUrl' },
  banner: { js: "const __kvdBundleUrl = require('node:url').pathToFileURL(__filename).href;" },
  logLevel: 'warning',
  legalComments: 'none',
  // Half the bytes to read and hash at every start; names kept for stack traces.
  minify: true,
  keepNames: true,
});
rmSync('dist/cli/kvctl-bundle-entry.js');

// The entry's shebang line would be a syntax error inside the launcher's function wrapper.
const bundled = readFileSync('dist/bin/kvctl-bundle.cjs', 'utf8').replace(/^#!.*\n/, '');
writeFileSync('dist/bin/kvctl-bundle.cjs', bundled);
const bundle = Buffer.from(bundled);
const hash = createHash('sha256').update(bundle).digest('hex').slice(0, 16);

const launcher = `#!/usr/bin/env node
// kvctl's launcher (written by scripts/bundle-kvctl.mjs): runs kvctl-bundle.cjs compiled with a
// V8 code cache kept beside it (kvctl-${hash}.cache, named after the bundle's content).
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';

const file = fileURLToPath(new URL('./kvctl-bundle.cjs', import.meta.url));
const cacheFile = fileURLToPath(new URL('./kvctl-${hash}.cache', import.meta.url));
let cachedData;
try {
  cachedData = readFileSync(cacheFile);
} catch {
  cachedData = undefined; // first run, or a directory that could not be written
}
const source = '(function (exports, require, module, __filename, __dirname) { ' + readFileSync(file, 'utf8') + '\\n})';
const script = new Script(source, { filename: file, cachedData });
if (cachedData === undefined || script.cachedDataRejected === true) {
  // After the command: the cache then holds every function the command compiled.
  process.once('beforeExit', () => {
    const temporary = \`\${cacheFile}.\${process.pid}.tmp\`;
    try {
      writeFileSync(temporary, script.createCachedData());
      renameSync(temporary, cacheFile);
    } catch {
      // Read-only install: run without a cache.
    }
  });
}
const module = { exports: {} };
script.runInThisContext()(module.exports, createRequire(file), module, file, dirname(file));
`;
writeFileSync('dist/bin/kvctl.js', launcher);
chmodSync('dist/bin/kvctl.js', 0o755);

#!/usr/bin/env node
// Build step: bundles kvctl (tsc's dist/cli/kvctl.js and everything it imports, grpc-js and
// protobufjs included) into dist/bin/kvctl.js, so that a command starts by loading a handful of
// files instead of ~150 (kvctl start-up, issue 16). Code only some commands need (snapshot
// restore: the store, WAL and raft) stays in chunks loaded on demand; packages with native parts
// stay external.
import { build } from 'esbuild';

await build({
  entryPoints: { kvctl: 'dist/cli/kvctl.js' },
  outdir: 'dist/bin',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['classic-level', 'msgpackr', 'msgpackr-extract'],
  define: { KVD_BUNDLED: 'true' },
  // CommonJS dependencies (grpc-js) require Node's built-in modules: give the bundle a require.
  banner: { js: "import { createRequire as __kvdCreateRequire } from 'node:module'; const require = __kvdCreateRequire(import.meta.url);" },
  logLevel: 'warning',
  legalComments: 'none',
});

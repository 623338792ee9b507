#!/usr/bin/env node
// Builds the web console (ui/ → dist/console): one ES module bundle and one stylesheet with
// content-hashed names under assets/, and index.html pointing at them. Part of `npm run build`;
// type-checking is `tsc -p ui/tsconfig.json` (esbuild only strips types). Prints each file's size
// and its gzip size (what a browser downloads: the server sends the gzip form).
// esbuild's own install script is denied in package.json (allowScripts "esbuild": false): it only
// checks and links the platform binary, which the JS API finds by itself in @esbuild/<platform>.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { gzipSync } from 'node:zlib';

const out = join('dist', 'console');
const result = await build({
  entryPoints: ['ui/src/main.tsx'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir: join(out, 'assets'),
  entryNames: '[name]-[hash]',
  sourcemap: 'linked',
  metafile: true,
  legalComments: 'none',
  logLevel: 'warning',
});
const outputs = Object.keys(result.metafile.outputs);
const js = outputs.find((file) => file.endsWith('.js'));
const css = outputs.find((file) => file.endsWith('.css'));
if (js === undefined || css === undefined) throw new Error(`the console build made no bundle or stylesheet: ${outputs.join(', ')}`);
mkdirSync(out, { recursive: true });
const html = readFileSync('ui/index.html', 'utf8').replace('%JS%', `/ui/assets/${basename(js)}`).replace('%CSS%', `/ui/assets/${basename(css)}`);
writeFileSync(join(out, 'index.html'), html);
let total = 0;
let totalGzip = 0;
for (const file of [join(out, 'index.html'), js, css]) {
  const body = readFileSync(file);
  const gzip = gzipSync(body, { level: 9 }).length;
  total += body.length;
  totalGzip += gzip;
  console.log(`console: ${file} ${(body.length / 1024).toFixed(1)} KiB (gzip ${(gzip / 1024).toFixed(1)} KiB)`);
}
console.log(`console: first load ${(total / 1024).toFixed(1)} KiB, gzip ${(totalGzip / 1024).toFixed(1)} KiB`);

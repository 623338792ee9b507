// Goal: keep the architecture's arrows pointing one way (DESIGN.md "Layout") and the Raft core
// pure (no I/O, clocks, timers or randomness). Method: scan the TypeScript sources' import
// specifiers and, for src/raft, forbidden globals; fail naming file and line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '../../..');

function sources(dir: string, out: string[] = []): string[] {
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) sources(path, out);
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

const importPattern = /^\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/gm;

function importsOf(file: string): Array<{ specifier: string; line: number }> {
  const text = readFileSync(file, 'utf8');
  const found: Array<{ specifier: string; line: number }> = [];
  for (const match of text.matchAll(importPattern)) {
    const specifier = match[1] ?? match[2] ?? match[3];
    if (specifier === undefined) continue;
    found.push({ specifier, line: text.slice(0, match.index).split('\n').length });
  }
  return found;
}

/** Which top-level area of the tree a file belongs to, e.g. "src/raft". */
function area(file: string): string {
  const parts = relative(root, file).split('/');
  return parts[0] === 'src' ? `src/${parts[1]}` : parts[0];
}

/** For each area, the areas it may import from (besides itself and src/util). */
const allowed: Record<string, readonly string[]> = {
  'src/raft': [],
  'src/wal': ['src/raft'],
  'src/store': [],
  'src/transport': ['src/raft'],
  'src/api': ['src/store', 'src/raft'],
  'src/server': ['src/raft', 'src/wal', 'src/store', 'src/transport', 'src/api'],
  'src/client': [],
  'src/util': [],
};

test('imports follow the layer arrows of DESIGN.md', () => {
  const problems: string[] = [];
  for (const file of sources(join(root, 'src'))) {
    const from = area(file);
    for (const { specifier, line } of importsOf(file)) {
      if (!specifier.startsWith('.')) continue;
      const target = area(resolve(dirname(file), specifier));
      if (target === from || target === 'src/util') continue;
      if (!(allowed[from] ?? []).includes(target)) {
        problems.push(`${relative(root, file)}:${line} imports ${specifier} (${from} may not depend on ${target})`);
      }
    }
  }
  assert.deepEqual(problems, []);
});

test('src/raft is pure: no node:* imports, packages, timers, clocks, randomness or console', () => {
  const problems: string[] = [];
  const forbidden = /\b(setTimeout|setInterval|setImmediate|Date|Math\.random|process|console|performance|queueMicrotask)\b/;
  for (const file of sources(join(root, 'src/raft'))) {
    for (const { specifier, line } of importsOf(file)) {
      if (!specifier.startsWith('.')) problems.push(`${relative(root, file)}:${line} imports package ${specifier}`);
    }
    const lines = readFileSync(file, 'utf8').split('\n');
    lines.forEach((text, index) => {
      const code = text.replace(/\/\/.*$/, '').replace(/^\s*\*.*$/, '');
      if (forbidden.test(code)) problems.push(`${relative(root, file)}:${index + 1} uses ${forbidden.exec(code)?.[0]}`);
      if (/\bawait\b|\basync\b/.test(code)) problems.push(`${relative(root, file)}:${index + 1} awaits`);
    });
  }
  assert.deepEqual(problems, []);
});

test('the web console (ui/) imports only itself and preact: it reaches kvd through the JSON gateway alone', () => {
  const problems: string[] = [];
  const uiRoot = join(root, 'ui', 'src');
  const files = readdirSync(uiRoot, { recursive: true }).map(String).filter((name) => /\.tsx?$/.test(name) && !name.endsWith('.d.ts')).map((name) => join(uiRoot, name));
  assert.ok(files.length > 0, 'ui/src holds the console');
  for (const file of files) {
    for (const { specifier, line } of importsOf(file)) {
      const outside = specifier.startsWith('.') && relative(uiRoot, resolve(dirname(file), specifier)).startsWith('..');
      const foreign = !specifier.startsWith('.') && specifier !== 'preact' && !specifier.startsWith('preact/');
      if (outside || foreign) problems.push(`${relative(root, file)}:${line} imports ${specifier}`);
    }
  }
  assert.deepEqual(problems, []);
});

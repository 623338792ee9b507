// Goal: installing a snapshot over the store is crash-safe. After a crash at any step (the process
// killed, or a power failure simulated on top of the kill), reopening the store gives exactly the
// old state or exactly the new one (revision, consistent index, compaction, every key, meta), never
// a mix and never an open failure, and the new one whenever the member's WAL marker is durable.
// The steps make every rename durable in the right order, recovery itself survives a crash, and a
// broken incoming stream leaves no descriptor or directory behind.
// Method: install-child.js runs the install in a child process that records every file-system
// operation and SIGKILLs itself after the k-th one (for every k), or after the j-th dump chunk;
// the test then reopens the directory and compares digests. KVD_STORE_MODULE=<path to a built
// src/store/mvcc/index.js> runs the same checks against another build (e.g. main's, which fails).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { MvccStore as MvccStoreType } from '../../../../src/store/mvcc/index.js';
import { KvdError } from '../../../../src/util/errors.js';
import type { ChildConfig, Op } from './install-child.js';
import { ALL_FROM, apply, bytes, compact, del, plain, put, rangeRequest } from './helpers.js';

const STORE_MODULE = process.env.KVD_STORE_MODULE ?? fileURLToPath(new URL('../../../../src/store/mvcc/index.js', import.meta.url));
const CHILD = fileURLToPath(new URL('./install-child.js', import.meta.url));
const { MvccStore } = (await import(pathToFileURL(STORE_MODULE).href)) as { MvccStore: typeof MvccStoreType };
const splitApi = typeof (MvccStore as { prepareRestore?: unknown }).prepareRestore === 'function';

let fixtures: string;
let templateOld: string;
let dumpPath: string;
let digestOld: string;
let digestNew: string;

async function digest(store: MvccStoreType): Promise<string> {
  const all = await store.range(rangeRequest(ALL_FROM, ALL_FROM));
  return JSON.stringify(
    { revision: store.currentRevision, consistentIndex: store.consistentIndex, compacted: store.compactedRevision, kvs: all.kvs.map(plain), meta: [...store.listMeta('')] },
    (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value instanceof Uint8Array ? Buffer.from(value).toString('hex') : value),
  );
}

before(async () => {
  fixtures = await mkdtemp(join(tmpdir(), 'kvd-install-'));
  // Old state: 150 keys, one deleted, meta 'member/1' = A.
  templateOld = join(fixtures, 'old-db');
  const old = await MvccStore.open({ path: templateOld });
  await old.applyBatch(Array.from({ length: 150 }, (_, i) => ({ index: i + 1, request: put(`a/${String(i).padStart(4, '0')}`, `A${i}`) })), { meta: new Map([['member/1', bytes('A')]]) });
  await apply(old, del('a/0007'));
  digestOld = await digest(old);
  await old.close();
  // New state: 1,200 keys of 1 KiB (a dump of several chunks), deletes, a compaction, meta B.
  const source = await MvccStore.open({ path: join(fixtures, 'new-db') });
  const value = 'v'.repeat(1024);
  for (let batch = 0; batch < 12; batch += 1) {
    await source.applyBatch(Array.from({ length: 100 }, (_, i) => ({ index: 1000 + batch * 100 + i, request: put(`b/${String(batch * 100 + i).padStart(4, '0')}`, `${batch}${value}`) })), { meta: new Map([['member/1', bytes('B')]]) });
  }
  await apply(source, del('b/0000', 'b/0010'), put('b/0500', 'changed'), compact(600));
  await source.waitCompacted(600);
  digestNew = await digest(source);
  const chunks: Buffer[] = [];
  for await (const chunk of source.exportSnapshot()) chunks.push(Buffer.from(chunk));
  dumpPath = join(fixtures, 'dump.bin');
  await writeFile(dumpPath, Buffer.concat(chunks));
  await source.close();
  assert.notEqual(digestOld, digestNew);
});

after(async () => {
  await rm(fixtures, { recursive: true, force: true });
});

interface ChildResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runChild(config: ChildConfig): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data: Buffer) => { stdout += data.toString(); });
    child.stderr.on('data', (data: Buffer) => { stderr += data.toString(); });
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

/** A fresh test directory holding a copy of the old database at `<dir>/db`. */
async function freshCase(): Promise<{ dir: string; path: string; markerPath: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'kvd-install-case-'));
  const path = join(dir, 'db');
  await cp(templateOld, path, { recursive: true });
  return { dir, path, markerPath: join(dir, 'marker') };
}

function configFor(paths: { path: string; markerPath: string }, extra: Partial<ChildConfig>): ChildConfig {
  return { mode: 'install', storeModule: STORE_MODULE, path: paths.path, dumpPath, markerPath: paths.markerPath, crashAfterOp: -1, crashAfterChunk: -1, powerLoss: false, ...extra };
}

/** The operation log of a complete install (no crash). */
async function dryRun(): Promise<Op[]> {
  const paths = await freshCase();
  try {
    const result = await runChild(configFor(paths, {}));
    assert.equal(result.code, 0, `dry run failed: ${result.stderr}`);
    return JSON.parse(result.stdout) as Op[];
  } finally {
    await rm(paths.dir, { recursive: true, force: true });
  }
}

/**
 * Crashes one install as described, optionally crashes the recovery that follows after its first
 * operation, then reopens. Returns a failure description, or undefined when the outcome is right.
 */
async function crashCase(label: string, crash: Partial<ChildConfig>, options: { crashRecovery: boolean }): Promise<string | undefined> {
  const paths = await freshCase();
  try {
    const installed = await runChild(configFor(paths, crash));
    if (installed.signal !== 'SIGKILL' && installed.code !== 0) return `${label}: the install failed: ${installed.stderr.trim()}`;
    if (installed.signal !== 'SIGKILL') return `${label}: the child did not crash where asked`;
    if (options.crashRecovery) {
      const recovered = await runChild(configFor(paths, { mode: 'recover', crashAfterOp: 1, powerLoss: crash.powerLoss ?? false }));
      if (recovered.signal !== 'SIGKILL' && recovered.code !== 0) return `${label}: recovery failed: ${recovered.stderr.trim()}`;
    }
    const markerDurable = existsSync(paths.markerPath) && readFileSync(paths.markerPath).length > 0;
    let store: MvccStoreType;
    try {
      store = await MvccStore.open({ path: paths.path });
    } catch (error: unknown) {
      return `${label}: open failed: ${error instanceof Error ? error.message : String(error)}`;
    }
    let got: string;
    try {
      got = await digest(store);
    } finally {
      await store.close();
    }
    const state = got === digestOld ? 'old' : got === digestNew ? 'new' : 'neither';
    if (state === 'neither') return `${label}: reopened store is neither the old nor the new state: ${got.slice(0, 160)}`;
    if (markerDurable && state !== 'new') return `${label}: the marker is durable but the store is the old state`;
    const leftovers = readdirSync(paths.dir).filter((name) => name !== 'db' && name !== 'marker');
    if (leftovers.length > 0) return `${label}: leftovers after reopening: ${leftovers.join(', ')}`;
    return undefined;
  } finally {
    await rm(paths.dir, { recursive: true, force: true });
  }
}

/** Every crash point: after each recorded operation, and in the middle of the dump. */
async function crashEverywhere(powerLoss: boolean): Promise<{ failures: string[]; points: number }> {
  const ops = await dryRun();
  const cases: Array<{ label: string; crash: Partial<ChildConfig> }> = [
    { label: 'after dump chunk 1', crash: { crashAfterChunk: 1, powerLoss } },
    { label: 'after dump chunk 8', crash: { crashAfterChunk: 8, powerLoss } },
  ];
  ops.forEach((op, at) => {
    const what = op.op === 'rename' ? `rename ${tail(op.from)} -> ${tail(op.to)}` : op.op === 'sync' ? `fsync ${tail(op.path)}` : `${op.op} ${tail(op.path)}`;
    cases.push({ label: `after op ${at + 1} (${what})`, crash: { crashAfterOp: at + 1, powerLoss } });
  });
  const failures: string[] = [];
  for (const { label, crash } of cases) {
    const failure = await crashCase(label, crash, { crashRecovery: false });
    if (failure !== undefined) failures.push(failure);
    if (crash.crashAfterOp !== undefined) {
      const twice = await crashCase(`${label}, then recovery crashed`, crash, { crashRecovery: true });
      if (twice !== undefined) failures.push(twice);
    }
  }
  return { failures, points: cases.length };
}

function tail(path: string): string {
  return path.split('/').slice(-2).join('/');
}

test('install order: a rename only makes fsynced files visible, and the parent is fsynced before the marker and before removal', async () => {
  const ops = await dryRun();
  const synced = (ino: number, before: number): boolean => ops.slice(0, before).some((op) => op.op === 'sync' && op.ino === ino);
  const intoPlace = ops.findIndex((op) => op.op === 'rename' && op.to.endsWith('/db'));
  assert.ok(intoPlace >= 0, 'the new database is renamed into place');
  const rename = ops[intoPlace];
  assert.ok(rename.op === 'rename');
  const unsynced = rename.contents.filter((ino) => !synced(ino, intoPlace));
  assert.deepEqual(unsynced, [], 'every file of the new database is fsynced before it becomes visible');
  assert.ok(synced(rename.ino, intoPlace), 'the new database directory is fsynced before it becomes visible');
  const marker = ops.findIndex((op) => op.op === 'marker');
  assert.ok(marker > intoPlace, 'the marker follows the switch');
  const parentIno = ops.slice(intoPlace + 1, marker).find((op) => op.op === 'sync' && op.directory && op.path === join(rename.to, '..'));
  assert.ok(parentIno !== undefined, 'the parent directory is fsynced between the switch and the marker');
  const removal = ops.findIndex((op, at) => at > intoPlace && op.op === 'rm');
  assert.ok(removal > marker, 'the old database is removed only after the marker');
  const markerDirSync = ops.findIndex((op, at) => at > marker && op.op === 'sync' && op.directory);
  assert.ok(markerDirSync >= 0 && markerDirSync < removal, 'the marker is durable before the old database goes');
});

test('a process crash after any step of the install reopens as exactly the old or the new state', { timeout: 240_000 }, async () => {
  const { failures, points } = await crashEverywhere(false);
  assert.deepEqual(failures, []);
  assert.ok(points >= 10, `enough crash points (${points})`);
});

test('a power failure after any step (unsynced data and directory entries lost) reopens as the old or the new state', { timeout: 240_000 }, async () => {
  const { failures, points } = await crashEverywhere(true);
  assert.deepEqual(failures, []);
  assert.ok(points >= 10, `enough crash points (${points})`);
});

/** Open descriptors of this process. */
function openDescriptors(): number {
  return readdirSync('/proc/self/fd').length;
}

test('a broken or malformed incoming stream leaves no descriptor and no directory, and ends the stream', async () => {
  const dump = readFileSync(dumpPath);
  const paths = await freshCase();
  try {
    const baseline = openDescriptors();
    const attempts: Array<{ name: string; chunks: () => AsyncIterable<Uint8Array>; ended: () => boolean }> = [];
    // A source that fails after two chunks (a peer connection breaking).
    let brokenEnded = false;
    attempts.push({
      name: 'broken',
      chunks: async function* () {
        try {
          yield dump.subarray(0, 100_000);
          yield dump.subarray(100_000, 200_000);
          throw new Error('connection reset');
        } finally {
          brokenEnded = true;
        }
      },
      ended: () => brokenEnded,
    });
    // A source whose bytes are corrupt in the middle: parsing fails while the stream still has data.
    let corruptEnded = false;
    attempts.push({
      name: 'corrupt',
      chunks: async function* () {
        try {
          const bad = Buffer.from(dump);
          bad[12] = 0; // the first record's key leaves the known namespaces
          for (let at = 0; at < bad.length; at += 50_000) yield bad.subarray(at, at + 50_000);
        } finally {
          corruptEnded = true;
        }
      },
      ended: () => corruptEnded,
    });
    // A truncated dump.
    attempts.push({ name: 'truncated', chunks: async function* () { yield dump.subarray(0, dump.length - 5); }, ended: () => true });
    for (const attempt of attempts) {
      const install = splitApi
        ? (MvccStore as unknown as { prepareRestore: (o: { path: string; chunks: AsyncIterable<Uint8Array> }) => Promise<unknown> }).prepareRestore({ path: paths.path, chunks: attempt.chunks() })
        : MvccStore.restoreSnapshot({ path: paths.path, chunks: attempt.chunks() });
      await assert.rejects(install, (error: unknown) => error instanceof Error, attempt.name);
      assert.ok(attempt.ended(), `${attempt.name}: the source was ended`);
      assert.deepEqual(readdirSync(paths.dir), ['db'], `${attempt.name}: no temporary directory is left`);
      assert.equal(openDescriptors(), baseline, `${attempt.name}: no descriptor is left open`);
    }
    const store = await MvccStore.open({ path: paths.path });
    try {
      assert.equal(await digest(store), digestOld, 'the old database is untouched');
    } finally {
      await store.close();
    }
  } finally {
    await rm(paths.dir, { recursive: true, force: true });
  }
});

test('recovery: an interrupted switch is rolled back; leftovers (also of older versions) go; several old copies are refused', { skip: splitApi ? false : 'needs recoverRestore' }, async () => {
  const recover = (MvccStore as unknown as { recoverRestore: (path: string) => Promise<Array<{ action: string }>> }).recoverRestore;
  // Between the renames: no db, a complete db.old, a complete db.restore.
  let paths = await freshCase();
  try {
    await cp(paths.path, `${paths.path}.restore`, { recursive: true });
    await cp(paths.path, `${paths.path}.old`, { recursive: true });
    await rm(paths.path, { recursive: true });
    assert.deepEqual((await recover(paths.path)).map((step) => step.action), ['restored-old', 'removed-leftover']);
    assert.deepEqual(readdirSync(paths.dir), ['db']);
    assert.deepEqual(await recover(paths.path), [], 'idempotent');
  } finally {
    await rm(paths.dir, { recursive: true, force: true });
  }
  // An incomplete db (no CURRENT) next to db.old: db.old wins.
  paths = await freshCase();
  try {
    await cp(paths.path, `${paths.path}.old`, { recursive: true });
    await rm(join(paths.path, 'CURRENT'));
    assert.deepEqual((await recover(paths.path)).map((step) => step.action), ['removed-incomplete', 'restored-old']);
    const store = await MvccStore.open({ path: paths.path });
    try {
      assert.equal(await digest(store), digestOld);
    } finally {
      await store.close();
    }
  } finally {
    await rm(paths.dir, { recursive: true, force: true });
  }
  // Names of older versions: a lone old copy is put back; with a db present, leftovers are removed.
  paths = await freshCase();
  try {
    await cp(paths.path, `${paths.path}.restore-12-34`, { recursive: true });
    await cp(paths.path, `${paths.path}.old-12-35`, { recursive: true });
    await rm(paths.path, { recursive: true });
    const store = await MvccStore.open({ path: paths.path });
    try {
      assert.equal(await digest(store), digestOld, 'open put the lone old copy back');
    } finally {
      await store.close();
    }
    assert.deepEqual(readdirSync(paths.dir), ['db']);
    await mkdir(`${paths.path}.old-1-1`);
    await mkdir(`${paths.path}.old-1-2`);
    await rm(paths.path, { recursive: true });
    await assert.rejects(recover(paths.path), (error: unknown) => error instanceof KvdError && error.code === 'corrupt');
  } finally {
    await rm(paths.dir, { recursive: true, force: true });
  }
});

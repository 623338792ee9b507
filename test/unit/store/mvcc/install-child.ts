/**
 * Child process of install-crash.test.ts: installs a snapshot dump over a store directory and
 * kills itself with SIGKILL right after the k-th file-system operation (or after the j-th dump
 * chunk), optionally first simulating what a power failure would lose at that point.
 *
 * How operations are seen: before the store module is imported, the `rename`, `rm` and `open`
 * functions of node:fs/promises are wrapped (and `syncBuiltinESMExports()` makes the store's named
 * imports see the wrappers), so the same harness drives today's and earlier store code alike.
 * Each operation is recorded as a JSON line: renames with the inodes of what they make visible,
 * fsyncs (FileHandle.sync) with the inode they made durable, removals of existing paths.
 *
 * Power-loss model (`powerLoss: true`), applied just before the kill:
 * - file data: a regular file under the test directory whose inode was neither present at the
 *   start (the initial store counts as durable) nor fsynced is truncated to zero bytes;
 * - directory entries of the test directory: the changes after its last fsync form a suffix of
 *   which a journaling file system may lose any tail; the harness loses the longest tail it can
 *   undo (renames back, the marker file removed), stopping at a removal (which cannot be undone,
 *   and which implies everything before it persisted).
 * Not modelled: torn or partial file contents, lost entries inside the database directories
 * themselves, reordering of metadata operations, and LevelDB's own fsyncs (treated as absent).
 *
 * Usage: node install-child.js '<json ChildConfig>'. With no crash it prints the operation log.
 */
import fsp from 'node:fs/promises';
import { createReadStream, existsSync, readdirSync, renameSync, rmSync, statSync, truncateSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** What the parent asks for. */
export interface ChildConfig {
  readonly mode: 'install' | 'recover';
  /** Absolute path of the store module to test (index.js of src/store/mvcc, from any build). */
  readonly storeModule: string;
  /** The store directory (its parent is the test directory). */
  readonly path: string;
  readonly dumpPath: string;
  /** The marker file standing for the member's WAL snapshot marker. */
  readonly markerPath: string;
  /** Kill after this many recorded operations (-1: never). */
  readonly crashAfterOp: number;
  /** Kill after handing out this many dump chunks (-1: never). */
  readonly crashAfterChunk: number;
  readonly powerLoss: boolean;
}

/** One recorded file-system operation. */
export type Op =
  | { readonly op: 'rename'; readonly from: string; readonly to: string; readonly ino: number; readonly contents: readonly number[] }
  | { readonly op: 'rm'; readonly path: string }
  | { readonly op: 'sync'; readonly path: string; readonly ino: number; readonly directory: boolean }
  | { readonly op: 'marker'; readonly path: string };

const config = JSON.parse(process.argv[2]) as ChildConfig;
const testDir = dirname(config.path);
const ops: Op[] = [];
const initialInodes = new Set<number>();
const syncedInodes = new Set<number>();

function walk(dir: string, visit: (path: string, isDirectory: boolean, ino: number) => void): void {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const info = statSync(path);
    visit(path, entry.isDirectory(), info.ino);
    if (entry.isDirectory()) walk(path, visit);
  }
}

walk(testDir, (_path, _isDirectory, ino) => initialInodes.add(ino));
initialInodes.add(statSync(testDir).ino);

function inTestDir(path: string): boolean {
  return path.startsWith(`${testDir}/`) || path === testDir;
}

/** Simulates a power failure's losses (see the module comment), then returns. */
function losePowerState(): void {
  const testDirIno = statSync(testDir).ino;
  let lastDirSync = -1;
  ops.forEach((op, at) => {
    if (op.op === 'sync' && op.ino === testDirIno) lastDirSync = at;
  });
  for (let at = ops.length - 1; at > lastDirSync; at -= 1) {
    const op = ops[at];
    if (op.op === 'rename') {
      if (dirname(op.to) !== testDir) continue;
      if (existsSync(op.from)) break; // the source name is taken again: cannot undo
      renameSync(op.to, op.from);
    } else if (op.op === 'marker') {
      rmSync(op.path, { force: true });
    } else if (op.op === 'rm') {
      if (dirname(op.path) === testDir) break;
    }
  }
  walk(testDir, (path, isDirectory, ino) => {
    if (!isDirectory && !initialInodes.has(ino) && !syncedInodes.has(ino)) truncateSync(path, 0);
  });
}

function record(op: Op): void {
  ops.push(op);
  if (ops.length === config.crashAfterOp) crash();
}

function crash(): never {
  if (config.powerLoss) losePowerState();
  process.kill(process.pid, 'SIGKILL');
  throw new Error('unreachable: SIGKILL');
}

const real = { rename: fsp.rename, rm: fsp.rm, open: fsp.open };
fsp.rename = async (from, to) => {
  let ino = 0;
  let contents: number[] = [];
  if (inTestDir(String(from))) {
    const info = statSync(from);
    ino = info.ino;
    if (info.isDirectory()) contents = readdirSync(from).map((name) => statSync(join(String(from), name)).ino);
  }
  await real.rename(from, to);
  if (inTestDir(String(from))) record({ op: 'rename', from: String(from), to: String(to), ino, contents });
};
fsp.rm = async (path, options) => {
  // Removing nothing is not an operation worth recording.
  const existed = existsSync(path);
  await real.rm(path, options);
  if (existed && inTestDir(String(path))) record({ op: 'rm', path: String(path) });
};
fsp.open = (async (path: Parameters<typeof fsp.open>[0], flags?: Parameters<typeof fsp.open>[1], mode?: Parameters<typeof fsp.open>[2]) => {
  const handle = await real.open(path, flags, mode);
  if (!inTestDir(String(path))) return handle;
  const sync = handle.sync.bind(handle);
  handle.sync = async () => {
    await sync();
    const info = await handle.stat();
    syncedInodes.add(info.ino);
    record({ op: 'sync', path: String(path), ino: info.ino, directory: info.isDirectory() });
  };
  return handle;
}) as typeof fsp.open;
syncBuiltinESMExports();

interface StoreModule {
  readonly MvccStore: {
    prepareRestore?: (options: { path: string; chunks: AsyncIterable<Uint8Array> }) => Promise<{ switch(): Promise<void>; removeOld(): Promise<void> }>;
    recoverRestore?: (path: string) => Promise<unknown>;
    restoreSnapshot: (options: { path: string; chunks: AsyncIterable<Uint8Array> }) => Promise<void>;
  };
}

const { MvccStore } = (await import(pathToFileURL(config.storeModule).href)) as StoreModule;

async function* chunks(): AsyncIterable<Uint8Array> {
  let handedOut = 0;
  for await (const chunk of createReadStream(config.dumpPath, { highWaterMark: 64 * 1024 })) {
    yield chunk as Buffer;
    handedOut += 1;
    if (handedOut === config.crashAfterChunk) crash();
  }
}

/** Stands for the member's WAL snapshot marker: written and fsynced, then its directory fsynced. */
async function writeMarker(): Promise<void> {
  const handle = await fsp.open(config.markerPath, 'w');
  record({ op: 'marker', path: config.markerPath });
  await handle.writeFile('marker');
  await handle.sync();
  await handle.close();
  const dir = await fsp.open(testDir, 'r');
  await dir.sync();
  await dir.close();
}

if (config.mode === 'recover') {
  await MvccStore.recoverRestore?.(config.path);
} else if (MvccStore.prepareRestore !== undefined) {
  await MvccStore.recoverRestore?.(config.path);
  const prepared = await MvccStore.prepareRestore({ path: config.path, chunks: chunks() });
  await prepared.switch();
  await writeMarker();
  await prepared.removeOld();
} else {
  // The store code from before the split API: one call, then the member's marker.
  await MvccStore.restoreSnapshot({ path: config.path, chunks: chunks() });
  await writeMarker();
}
process.stdout.write(`${JSON.stringify(ops)}\n`);

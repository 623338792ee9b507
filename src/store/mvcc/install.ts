/**
 * Crash-safe replacement of the store's LevelDB directory by a snapshot dump (etcd's
 * "recover the backend from a received snapshot"), in three steps the member calls in order:
 *
 *   prepare (write + sync `<path>.restore`) → switch (rename `<path>`→`<path>.old`,
 *   `<path>.restore`→`<path>`, fsync the parent) → [member: WAL snapshot marker] → removeOld
 *
 * plus {@link recoverInstall}, which {@link MvccStore.open} runs first, so that whatever point an
 * install was interrupted at, the directory at `<path>` is afterwards a complete database: the old
 * one or the new one, never a mix and never a missing one.
 *
 * Names are fixed (`<path>.restore`, `<path>.old`): recovery decides from which of the three
 * directories exist, never from pids or times. At most one install per `<path>` runs at a time
 * (the member installs snapshots one at a time, from its Ready loop).
 *
 * ## Why each step is where it is (crash points)
 *
 * The contract with the member: once the WAL marker for index N is durable, `<path>` must durably
 * hold a database with consistent index >= N. Before the marker, `<path>` may hold the old or the
 * new database: both are states the member can continue from (the old one replays from the WAL
 * or receives the snapshot again; the new one is ahead of the WAL, and entries at or below its
 * consistent index are skipped on apply).
 *
 * Writes that are not fsynced may be lost by a power failure; a directory entry (a rename, a new
 * file) is durable only after the directory itself is fsynced. So:
 *
 * 1. prepare: remove a leftover `<path>.restore` (never part of a valid state, see 5), create it,
 *    write the dump with LevelDB, close LevelDB, then fsync every file in it and the directory.
 *    A crash anywhere here leaves `<path>` untouched and `<path>.restore` garbage.
 * 2. switch, first a leftover `<path>.old` is removed and the parent fsynced (it can only exist
 *    with a complete `<path>` beside it, see 4; the fsync makes sure its removal is durable before
 *    `<path>` takes its name, so `<path>.old` never holds two generations).
 * 3. switch, the two renames. A crash between them leaves no `<path>` but a complete
 *    `<path>.old`: recovery renames it back (the marker cannot have been written: it follows the
 *    parent fsync below). A crash after both, before the fsync, may durably keep none, the first
 *    or both renames (file systems journal metadata in order): recovery sees the old state, the
 *    "between" state or the new state. The data under `<path>.restore` was fsynced in 1, so
 *    whichever name it durably has, its content is complete.
 * 4. switch, fsync of the parent: from here the new database is durably at `<path>`; only now
 *    may the member write its marker. `<path>.old` is garbage from here on (nothing rolls back to
 *    it once `<path>` is complete).
 * 5. removeOld (after the marker): remove `<path>.old`, fsync the parent. A crash before or
 *    during it leaves (part of) `<path>.old` beside a complete `<path>`: recovery removes it.
 *
 * Recovery, from the directories that exist (P = `<path>` is a complete database, that is has its
 * CURRENT file; O = `<path>.old` exists; T = `<path>.restore` exists):
 * - O and not P: an interrupted switch (3). Remove whatever is at `<path>` (an incomplete
 *   directory can only be left by a file system that broke ordering), rename O back, fsync.
 * - T: garbage (1, or 3 before the renames were durable), removed.
 * - O and P: garbage (4, 5), removed.
 * Each action is idempotent, so a crash during recovery is repaired by the next recovery.
 *
 * Older kvd versions used `<path>.restore-<pid>-<time>` and `<path>.old-<pid>-<time>`; recovery
 * removes those too, and puts a single such old database back when `<path>` is missing.
 */
import { newLevel, type Level } from './level.js';
import { readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { assert } from '../../util/assert.js';
import { KvdError } from '../../util/errors.js';
import { syncPath } from '../../util/fsync.js';

/** Suffix of the database being prepared (never opened as the store). */
export const RESTORE_SUFFIX = '.restore';
/** Suffix of the replaced database, between switch and removeOld. */
export const OLD_SUFFIX = '.old';

/** What {@link recoverInstall} did, in order. */
export type InstallRecovery =
  | { readonly action: 'restored-old'; readonly from: string }
  | { readonly action: 'removed-incomplete'; readonly path: string }
  | { readonly action: 'removed-leftover'; readonly path: string };

/** The paths of one install. */
interface InstallPaths {
  readonly path: string;
  readonly temporary: string;
  readonly old: string;
  readonly parent: string;
}

function installPaths(path: string): InstallPaths {
  return { path, temporary: `${path}${RESTORE_SUFFIX}`, old: `${path}${OLD_SUFFIX}`, parent: dirname(path) };
}

type Db = Level;

/**
 * Paths with an install between prepare and its end (removeOld or discard) in this process.
 * Invariant: at most one per path, since `<path>.restore` is a fixed name.
 */
const installing = new Set<string>();

/** Writes a dump into a LevelDB; resolves with what the dump said about itself. */
export type DumpWriter = (chunks: AsyncIterable<Uint8Array>, write: (ops: Array<{ type: 'put'; key: Buffer; value: Buffer }>) => Promise<void>) => Promise<{ consistentIndex: number }>;

/**
 * Writes the dump into `<path>.restore` and makes it durable (every file, then the directory).
 * On failure (a malformed or broken stream, a write error) the temporary database is closed and
 * removed before the error is rethrown; `<path>` is never touched. The chunk iterator is ended
 * (its `return()` called) when parsing fails in the middle of it.
 */
export async function prepareInstall(options: { path: string; chunks: AsyncIterable<Uint8Array>; writeDump: DumpWriter }): Promise<PreparedRestore> {
  const paths = installPaths(options.path);
  assert(!installing.has(paths.path), 'one install per path at a time: finish or discard the previous one first');
  installing.add(paths.path);
  try {
    return await writePrepared(paths, options);
  } catch (error: unknown) {
    installing.delete(paths.path);
    throw error;
  }
}

async function writePrepared(paths: InstallPaths, options: { chunks: AsyncIterable<Uint8Array>; writeDump: DumpWriter }): Promise<PreparedRestore> {
  await rm(paths.temporary, { recursive: true, force: true });
  // The store's own options (no compression): an installed database is sized as one written by apply.
  const db: Db = newLevel(paths.temporary);
  let dbOpen = false;
  try {
    await db.open();
    dbOpen = true;
    const summary = await options.writeDump(options.chunks, (ops) => db.batch(ops));
    dbOpen = false;
    await db.close();
    await syncDirectoryTree(paths.temporary);
    return new PreparedRestore(paths, summary.consistentIndex);
  } catch (error: unknown) {
    if (dbOpen) await db.close();
    await rm(paths.temporary, { recursive: true, force: true });
    throw error;
  }
}

/**
 * A database written and synced next to the store's, waiting to replace it. Steps must be called
 * in order: {@link switch}, then (after the member's WAL marker) {@link removeOld}; or
 * {@link discard} instead of switching. Until then no other install of the same path may be
 * prepared in this process. Opening the store (which runs {@link recoverInstall}) before
 * {@link switch} removes the prepared database: prepare, switch, then open.
 */
export class PreparedRestore {
  readonly #paths: InstallPaths;
  /** Invariant: steps only move forward: prepared → switched → finished, or prepared → discarded. */
  #state: 'prepared' | 'switched' | 'finished' | 'discarded' = 'prepared';
  /** The consistent index recorded in the dump (the last Raft index its data reflects). */
  readonly consistentIndex: number;

  /** @internal Made by {@link prepareInstall}. */
  constructor(paths: InstallPaths, consistentIndex: number) {
    this.#paths = paths;
    this.consistentIndex = consistentIndex;
  }

  /**
   * Atomically makes the prepared database the one at `path` and makes that durable: removes a
   * leftover `<path>.old` (fsyncing the parent), renames `<path>` → `<path>.old` (when there is a
   * `<path>`), `<path>.restore` → `<path>`, and fsyncs the parent directory. The store at `path`
   * must be closed. When this resolves, the member may write its WAL snapshot marker.
   */
  async switch(): Promise<void> {
    assert(this.#state === 'prepared', 'switch() follows prepareRestore() once');
    const { path, temporary, old, parent } = this.#paths;
    if (await exists(old)) {
      await rm(old, { recursive: true, force: true });
      await syncPath(parent);
    }
    try {
      await rename(path, old);
    } catch (error: unknown) {
      if (!isErrno(error, 'ENOENT')) throw error;
    }
    await rename(temporary, path);
    await syncPath(parent);
    this.#state = 'switched';
  }

  /** Removes the replaced database (after the member's WAL marker is durable) and fsyncs the parent. */
  async removeOld(): Promise<void> {
    assert(this.#state === 'switched', 'removeOld() follows switch()');
    await rm(this.#paths.old, { recursive: true, force: true });
    await syncPath(this.#paths.parent);
    this.#state = 'finished';
    installing.delete(this.#paths.path);
  }

  /** Abandons a prepared database that was not switched (removes `<path>.restore`). Idempotent. */
  async discard(): Promise<void> {
    assert(this.#state === 'prepared' || this.#state === 'discarded', 'discard() only before switch()');
    if (this.#state === 'discarded') return;
    this.#state = 'discarded';
    await rm(this.#paths.temporary, { recursive: true, force: true });
    installing.delete(this.#paths.path);
  }
}

/**
 * Repairs an interrupted install at `path` (see the module comment) and returns what it did
 * (empty when nothing was left over). Deterministic and idempotent; safe to call when no install
 * ever happened and when the parent directory does not exist yet. The store must be closed.
 * Throws KvdError('corrupt') if it finds several legacy old databases and no `<path>`.
 */
export async function recoverInstall(path: string): Promise<InstallRecovery[]> {
  const { temporary, old, parent } = installPaths(path);
  const done: InstallRecovery[] = [];
  const legacy = await legacyLeftovers(path);
  const complete = await isCompleteDatabase(path);
  if (!complete) {
    const candidates = (await exists(old)) ? [old] : legacy.olds;
    if (candidates.length > 1) throw new KvdError('corrupt', { detail: `etcdserver: corrupt cluster: ${path} is missing and several old databases exist: ${candidates.join(', ')}` });
    if (candidates.length === 1) {
      if (await exists(path)) {
        await rm(path, { recursive: true, force: true });
        done.push({ action: 'removed-incomplete', path });
        await syncPath(parent);
      }
      await rename(candidates[0], path);
      await syncPath(parent);
      done.push({ action: 'restored-old', from: candidates[0] });
    }
  }
  const leftovers = [temporary, old, ...legacy.temporaries, ...legacy.olds];
  let removed = false;
  for (const leftover of leftovers) {
    if (!(await exists(leftover))) continue;
    await rm(leftover, { recursive: true, force: true });
    done.push({ action: 'removed-leftover', path: leftover });
    removed = true;
  }
  if (removed) await syncPath(parent);
  return done;
}

/** `<path>.restore-*` and `<path>.old-*` directories of older kvd versions. */
async function legacyLeftovers(path: string): Promise<{ temporaries: string[]; olds: string[] }> {
  const parent = dirname(path);
  const name = basename(path);
  let entries: string[];
  try {
    entries = await readdir(parent);
  } catch (error: unknown) {
    if (isErrno(error, 'ENOENT')) return { temporaries: [], olds: [] };
    throw error;
  }
  return {
    temporaries: entries.filter((entry) => entry.startsWith(`${name}${RESTORE_SUFFIX}-`)).map((entry) => join(parent, entry)),
    olds: entries.filter((entry) => entry.startsWith(`${name}${OLD_SUFFIX}-`)).map((entry) => join(parent, entry)),
  };
}

/** Whether `path` is a LevelDB directory with its CURRENT file (written last when LevelDB creates one). */
async function isCompleteDatabase(path: string): Promise<boolean> {
  try {
    return (await stat(join(path, 'CURRENT'))).isFile();
  } catch (error: unknown) {
    if (isErrno(error, 'ENOENT') || isErrno(error, 'ENOTDIR')) return false;
    throw error;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error: unknown) {
    if (isErrno(error, 'ENOENT')) return false;
    throw error;
  }
}

/** fsyncs every regular file directly in `dir` (LevelDB directories are flat), then `dir` itself. */
async function syncDirectoryTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    assert(entry.isFile(), 'a LevelDB directory holds only files');
    await syncPath(join(dir, entry.name));
  }
  await syncPath(dir);
}

function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

/**
 * fsync helpers shared by the store's snapshot install, the offline restore, the member's
 * bootstrap file and received snapshots. (The WAL has its own, which turns failures into its
 * fatal errors: src/wal/fs-util.ts.)
 */
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** fsyncs one file, or one directory so that creations, renames and removals in it are durable. */
export async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** fsyncs every file and directory under `dir`, children first, then `dir` itself. */
export async function syncTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await syncTree(path);
    else await syncPath(path);
  }
  await syncPath(dir);
}

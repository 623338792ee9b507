/** Small filesystem helpers shared by the WAL and the snapshot store. */
import { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { toFatalError } from './errors.js';

/** fsyncs a directory so that creations, renames and deletions in it are durable. */
export async function syncDirectory(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await fs.open(dir, 'r');
    await handle.sync();
  } catch (error: unknown) {
    throw toFatalError(error, `fsync of directory ${dir}`);
  } finally {
    await handle?.close();
  }
}

/**
 * Creates `dir` (and missing parents) if it does not exist, fsyncing each parent whose entries
 * changed. Returns whether it created anything.
 */
export async function ensureDirectory(dir: string): Promise<'created' | 'existed'> {
  const absolute = resolve(dir);
  let first: string | undefined;
  try {
    first = await fs.mkdir(absolute, { recursive: true });
  } catch (error: unknown) {
    throw toFatalError(error, `mkdir ${absolute}`);
  }
  if (first === undefined) return 'existed';
  // Every directory from dirname(first) down to dirname(absolute) gained an entry.
  const toSync: string[] = [];
  for (let at = absolute; ; at = dirname(at)) {
    toSync.push(dirname(at));
    if (at === first || dirname(at) === at) break;
  }
  for (const path of toSync.reverse()) await syncDirectory(path);
  return 'created';
}

/** Writes all of `buffers` at `position`, looping over short writes. Throws the raw fs error. */
export async function writeFully(handle: FileHandle, buffers: readonly Buffer[], position: number): Promise<number> {
  const total = buffers.reduce((sum, buffer) => sum + buffer.length, 0);
  let written =
    buffers.length === 1
      ? (await handle.write(buffers[0], 0, buffers[0].length, position)).bytesWritten
      : (await handle.writev(buffers as Buffer[], position)).bytesWritten;
  if (written < total) {
    const rest = Buffer.concat(buffers as Buffer[]).subarray(written);
    let done = 0;
    while (done < rest.length) {
      const { bytesWritten } = await handle.write(rest, done, rest.length - done, position + written + done);
      if (bytesWritten === 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
      done += bytesWritten;
    }
    written += done;
  }
  return written;
}

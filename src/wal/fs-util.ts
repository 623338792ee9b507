/** Small filesystem helpers shared by the WAL and the snapshot store. */
import { promises as fs, fdatasync, write, writev } from 'node:fs';
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

/**
 * Writes all of `buffers` at `position`, looping over short writes. Throws the raw fs error.
 * Goes through the callback API on the handle's descriptor: the WAL writes once per Ready, and
 * FileHandle's promise methods cost the event loop about 10 µs more per call here (measured,
 * 28 against 18 µs per write). The caller keeps the handle open until the write has finished.
 */
export async function writeFully(handle: FileHandle, buffers: readonly Buffer[], position: number): Promise<number> {
  const fd = handle.fd;
  const total = buffers.reduce((sum, buffer) => sum + buffer.length, 0);
  let written = buffers.length === 1 ? await writeAt(fd, buffers[0], position) : await writevAt(fd, buffers, position);
  if (written < total) {
    const rest = Buffer.concat(buffers as Buffer[]).subarray(written);
    let done = 0;
    while (done < rest.length) {
      const bytesWritten = await writeAt(fd, rest.subarray(done), position + written + done);
      if (bytesWritten === 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
      done += bytesWritten;
    }
    written += done;
  }
  return written;
}

/** fdatasync of the handle's descriptor (the callback API, as {@link writeFully}). Throws the raw fs error. */
export function datasync(handle: FileHandle): Promise<void> {
  const fd = handle.fd;
  return new Promise((resolve, reject) => fdatasync(fd, (error) => (error === null ? resolve() : reject(error))));
}

function writeAt(fd: number, buffer: Buffer, position: number): Promise<number> {
  return new Promise((resolve, reject) => write(fd, buffer, 0, buffer.length, position, (error, bytesWritten) => (error === null ? resolve(bytesWritten) : reject(error))));
}

function writevAt(fd: number, buffers: readonly Buffer[], position: number): Promise<number> {
  return new Promise((resolve, reject) => writev(fd, buffers as Buffer[], position, (error, bytesWritten) => (error === null ? resolve(bytesWritten) : reject(error))));
}

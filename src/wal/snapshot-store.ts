/**
 * Snapshot files: one file per snapshot, `<term:16 hex>-<index:16 hex>.snap`, written atomically
 * (tmp file, fdatasync, rename, directory fsync) and checksummed.
 *
 * File layout: magic "KVSN" (4 bytes), version u8, crc32c u32 of everything after it, then
 * index u64, term u64, voterCount u32, voters u64*, learnerCount u32, learners u64*,
 * dataLength u64, data.
 *
 * Ordering with the WAL (as etcd): save the snapshot file first, then the WAL's snapshot marker.
 * On restart load the newest snapshot at or below the WAL's latest marker
 * (`loadNewest({ maxIndex: state.snapshot.index })`): a file newer than the marker may exist if
 * the process died between the two writes.
 */
import { promises as fs } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Index, NodeId, Snapshot } from '../raft/types.js';
import { assert } from '../util/assert.js';
import { readU64LE, writeU64LE } from '../util/u64.js';
import { crc32c } from './crc32c.js';
import { WalNoSpaceError, isNoSpaceError, toFatalError } from './errors.js';
import { ensureDirectory, syncDirectory, writeFully } from './fs-util.js';

/** Default number of snapshot files kept by {@link SnapshotStore.save}'s purge (etcd keeps 5). */
export const SNAPSHOTS_KEPT_DEFAULT = 5;

const MAGIC = Buffer.from('KVSN', 'latin1');
const FORMAT_VERSION = 1;
const PREAMBLE_BYTES = 9; // magic 4 + version 1 + crc 4
const SNAPSHOT_NAME = /^([0-9a-f]{16})-([0-9a-f]{16})\.snap$/;

/** Structured events for the server's log. */
export type SnapshotEvent =
  | { readonly kind: 'snapshot-saved'; readonly file: string; readonly bytes: number }
  | { readonly kind: 'snapshot-corrupt'; readonly file: string; readonly why: string; readonly movedTo: string }
  | { readonly kind: 'snapshot-purged'; readonly file: string }
  | { readonly kind: 'stale-temp-removed'; readonly file: string };

/** Options of {@link SnapshotStore.open}. */
export interface SnapshotStoreOptions {
  /** The snapshot directory (created, with its parents, if missing). */
  readonly dir: string;
  /** How many snapshot files {@link SnapshotStore.save} keeps (newest by index). Default 5, minimum 1. */
  readonly keep?: number;
  /** Receives structured events. Default: ignore. */
  readonly logger?: (event: SnapshotEvent) => void;
}

interface SnapshotFile {
  readonly name: string;
  readonly term: number;
  readonly index: number;
}

function snapshotName(term: number, index: number): string {
  return `${term.toString(16).padStart(16, '0')}-${index.toString(16).padStart(16, '0')}.snap`;
}

/** Encodes the part of the file before the data (preamble with CRC still zero) and returns it. */
function encodeHead(snapshot: Snapshot): Buffer {
  const { voters, learners } = snapshot.metadata.confState;
  const head = Buffer.alloc(PREAMBLE_BYTES + 16 + 4 + 8 * voters.length + 4 + 8 * learners.length + 8);
  MAGIC.copy(head, 0);
  head[4] = FORMAT_VERSION;
  let at = PREAMBLE_BYTES;
  writeU64LE(head, at, snapshot.metadata.index);
  writeU64LE(head, at + 8, snapshot.metadata.term);
  at += 16;
  for (const ids of [voters, learners]) {
    head.writeUInt32LE(ids.length, at);
    at += 4;
    for (const id of ids) {
      head.writeBigUInt64LE(id, at);
      at += 8;
    }
  }
  writeU64LE(head, at, snapshot.data.length);
  return head;
}

/** Decodes and verifies a snapshot file's bytes; returns a reason string when invalid. */
function decodeSnapshot(bytes: Buffer, expected: SnapshotFile): Snapshot | string {
  if (bytes.length < PREAMBLE_BYTES + 32) return `file of ${bytes.length} bytes is too short`;
  if (!bytes.subarray(0, 4).equals(MAGIC)) return 'bad magic';
  if (bytes[4] !== FORMAT_VERSION) return `unknown format version ${bytes[4]}`;
  if (crc32c(bytes.subarray(PREAMBLE_BYTES)) !== bytes.readUInt32LE(5)) return 'checksum mismatch';
  let at = PREAMBLE_BYTES;
  const index = readU64LE(bytes, at);
  const term = readU64LE(bytes, at + 8);
  at += 16;
  const lists: NodeId[][] = [];
  for (let list = 0; list < 2; list++) {
    if (at + 4 > bytes.length) return 'truncated member list';
    const count = bytes.readUInt32LE(at);
    at += 4;
    if (at + 8 * count > bytes.length) return 'truncated member list';
    const ids: NodeId[] = [];
    for (let i = 0; i < count; i++, at += 8) ids.push(bytes.readBigUInt64LE(at));
    lists.push(ids);
  }
  if (at + 8 > bytes.length) return 'truncated data length';
  const dataLength = readU64LE(bytes, at);
  at += 8;
  if (dataLength < 0 || at + dataLength !== bytes.length) return 'data length does not match the file size';
  if (index !== expected.index || term !== expected.term) return `metadata (${term}, ${index}) does not match the file name`;
  return {
    metadata: { index, term, confState: { voters: lists[0], learners: lists[1] } },
    data: new Uint8Array(bytes.buffer, bytes.byteOffset + at, dataLength),
  };
}

/**
 * The snapshot directory. `save` calls must not overlap each other (asserted). Disk-full and
 * fsync failures throw WalFatalError ('disk-full' | 'fsync-failed').
 */
export class SnapshotStore {
  readonly #dir: string;
  readonly #keep: number;
  readonly #logger: (event: SnapshotEvent) => void;
  #saving: 'idle' | 'busy' = 'idle';

  private constructor(options: { dir: string; keep: number; logger: (event: SnapshotEvent) => void }) {
    this.#dir = options.dir;
    this.#keep = options.keep;
    this.#logger = options.logger;
  }

  /** Opens (creating if needed) the snapshot directory and removes leftover temporary files. */
  static async open(options: SnapshotStoreOptions): Promise<SnapshotStore> {
    const keep = options.keep ?? SNAPSHOTS_KEPT_DEFAULT;
    assert(Number.isSafeInteger(keep) && keep >= 1, 'keep must be a positive integer');
    const logger = options.logger ?? (() => {});
    await ensureDirectory(options.dir);
    let removed = 0;
    for (const name of await fs.readdir(options.dir)) {
      if (!name.endsWith('.snap.tmp')) continue;
      await fs.rm(join(options.dir, name), { force: true });
      logger({ kind: 'stale-temp-removed', file: join(options.dir, name) });
      removed++;
    }
    if (removed > 0) await syncDirectory(options.dir);
    return new SnapshotStore({ dir: options.dir, keep, logger });
  }

  /**
   * Writes `snapshot` durably and atomically (tmp file, fdatasync, rename, directory fsync), then
   * deletes the oldest snapshot files beyond `keep`. Resolves once the file is durable.
   */
  async save(snapshot: Snapshot): Promise<void> {
    assert(this.#saving === 'idle', 'SnapshotStore.save calls must not overlap');
    this.#saving = 'busy';
    try {
      const name = snapshotName(snapshot.metadata.term, snapshot.metadata.index);
      const path = join(this.#dir, name);
      const temporary = `${path}.tmp`;
      const head = encodeHead(snapshot);
      const data = Buffer.from(snapshot.data.buffer, snapshot.data.byteOffset, snapshot.data.length);
      head.writeUInt32LE(crc32c(data, crc32c(head.subarray(PREAMBLE_BYTES))), 5);
      let handle: FileHandle | undefined;
      try {
        handle = await fs.open(temporary, 'w');
        await writeFully(handle, [head, data], 0);
        await handle.datasync();
        await handle.close();
        handle = undefined;
        await fs.rename(temporary, path);
      } catch (error: unknown) {
        await handle?.close();
        // A full disk leaves a partial temporary file: remove it (the save may be retried later).
        if (isNoSpaceError(error)) {
          await fs.rm(temporary, { force: true });
          throw new WalNoSpaceError(`saving snapshot ${path}: no space left on device`, { cause: error });
        }
        throw toFatalError(error, `saving snapshot ${path}`);
      }
      await syncDirectory(this.#dir);
      this.#logger({ kind: 'snapshot-saved', file: path, bytes: head.length + data.length });
      await this.#purge();
    } finally {
      this.#saving = 'idle';
    }
  }

  /**
   * Loads the newest valid snapshot (highest index, then term), considering only those with
   * index <= `options.maxIndex` when given. A corrupt file is reported ('snapshot-corrupt'),
   * renamed to `<name>.broken` and skipped in favour of the next older one. Resolves undefined
   * when there is none.
   */
  async loadNewest(options: { maxIndex?: Index } = {}): Promise<Snapshot | undefined> {
    const files = (await this.#list()).reverse();
    for (const file of files) {
      if (options.maxIndex !== undefined && file.index > options.maxIndex) continue;
      const path = join(this.#dir, file.name);
      let bytes: Buffer;
      try {
        bytes = await fs.readFile(path);
      } catch (error: unknown) {
        throw toFatalError(error, `reading snapshot ${path}`);
      }
      const snapshot = decodeSnapshot(bytes, file);
      if (typeof snapshot !== 'string') return snapshot;
      const movedTo = `${path}.broken`;
      try {
        await fs.rename(path, movedTo);
      } catch (error: unknown) {
        throw toFatalError(error, `setting aside corrupt snapshot ${path}`);
      }
      await syncDirectory(this.#dir);
      this.#logger({ kind: 'snapshot-corrupt', file: path, why: snapshot, movedTo });
    }
    return undefined;
  }

  /** Snapshot files, oldest first (by index, then term). */
  async #list(): Promise<SnapshotFile[]> {
    const files: SnapshotFile[] = [];
    for (const name of await fs.readdir(this.#dir)) {
      const match = SNAPSHOT_NAME.exec(name);
      if (match === null) continue;
      files.push({ name, term: parseInt(match[1], 16), index: parseInt(match[2], 16) });
    }
    return files.sort((a, b) => a.index - b.index || a.term - b.term);
  }

  async #purge(): Promise<void> {
    const files = await this.#list();
    const excess = files.slice(0, Math.max(0, files.length - this.#keep));
    for (const file of excess) {
      const path = join(this.#dir, file.name);
      await fs.rm(path, { force: true });
      this.#logger({ kind: 'snapshot-purged', file: path });
    }
    if (excess.length > 0) await syncDirectory(this.#dir);
  }
}

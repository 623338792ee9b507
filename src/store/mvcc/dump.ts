/**
 * The store's dump: a consistent copy of the whole backend as a byte stream, the one format used
 * to ship a backend to a lagging peer (snapshotter.ts), to answer Maintenance.Snapshot and to
 * restore a member from a file.
 *
 * ## Dump
 *
 * magic `KVDSNAP1` (8 bytes), then every backend entry in LevelDB key order as
 * `u32 BE key length, key, u32 BE value length, value`, then the trailer
 * `u32 0xffffffff, u32 BE entry count, u32 BE CRC-32 (IEEE, zlib's) of every preceding byte`.
 * The entries are the revision records (`r…`), the meta entries (`m…`: leases, members,
 * conf-change outcomes) and the store's own state (`s…`: consistent index, revision, compaction
 * progress): everything a member's backend holds (codec.ts describes the namespaces).
 *
 * ## Snapshot file (also the Maintenance.Snapshot stream)
 *
 * The dump, then zero bytes up to the next multiple of {@link SNAPSHOT_FILE_ALIGN_BYTES} (none
 * when it already is one), then the SHA-256 of everything before it (32 bytes). So a snapshot
 * file's size is always 32 more than a multiple of 512, which is what etcdctl 3.4 requires of a
 * Snapshot stream (`hasChecksum` in clientv3/snapshot: size % 512 == sha256.Size) and the shape
 * of an etcd snapshot file (a page-aligned bbolt file + SHA-256). A reader finds where the dump
 * ends from the dump's own trailer, so a bare dump (no padding, no SHA-256: "a file without a
 * trailer") is recognised whatever its size, and accepted when the hash check is skipped.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import type { Level } from './level.js';
import { assert } from '../../util/assert.js';
import { KvdError } from '../../util/errors.js';
import { PREFIX_META, PREFIX_REVISION, PREFIX_SYSTEM, SYSTEM_KEYS, decodeNumber, parseRevisionKey } from './codec.js';

/** Approximate size of one dump chunk. */
export const SNAPSHOT_CHUNK_BYTES = 1 << 20;
/** A snapshot file's dump is zero-padded to a multiple of this before its SHA-256 (etcdctl's check). */
export const SNAPSHOT_FILE_ALIGN_BYTES = 512;
/** Bytes of the SHA-256 trailer of a snapshot file. */
export const SNAPSHOT_FILE_HASH_BYTES = 32;

const DUMP_MAGIC = Buffer.from('KVDSNAP1', 'latin1');
const DUMP_END = 0xffffffff;
const DUMP_TRAILER_BYTES = 12;
/** Entries per LevelDB read while dumping. */
const SCAN_BATCH_ENTRIES = 1000;
/** Bytes a dump iterator buffers per native round trip. */
const SCAN_HIGH_WATER_BYTES = 1 << 20;
/** Entries (or bytes, whichever comes first) handed to a dump reader's `write` at a time. */
const WRITE_BATCH_ENTRIES = 1000;

type Db = Level;
type Snapshot = ReturnType<Db['snapshot']>;

/** What a dump says about itself (read from the backend entries it holds). */
export interface DumpSummary {
  /** The store revision the dump holds (1 for an empty store). */
  readonly revision: number;
  /** The last Raft index applied to the dumped state (0 when none). */
  readonly consistentIndex: number;
  /** Reads below this revision fail in the dumped state (0 when never compacted). */
  readonly compactRevision: number;
  /** Backend entries in the dump. */
  readonly entries: number;
  /** Bytes of the dump itself (magic to trailer). */
  readonly sizeBytes: number;
}

/**
 * A dump of one store at one instant: a LevelDB snapshot taken when it is opened
 * ({@link MvccStore.openDump}). Writes go on while it is read; it sees none of them. Its size is
 * measured up front (one pass over the snapshot), so a stream of it can announce how many bytes
 * remain. Read it once with {@link chunks} or {@link framedChunks}; the iterator closes the dump
 * when it ends or is returned. Call {@link close} when the dump is not read at all.
 */
export class StoreDump implements DumpSummary {
  readonly revision: number;
  readonly consistentIndex: number;
  readonly compactRevision: number;
  readonly entries: number;
  readonly sizeBytes: number;
  readonly #db: Db;
  readonly #snapshot: Snapshot;
  readonly #onClose: () => void;
  #state: 'open' | 'reading' | 'closed' = 'open';

  private constructor(db: Db, snapshot: Snapshot, summary: DumpSummary, onClose: () => void) {
    this.#db = db;
    this.#snapshot = snapshot;
    this.#onClose = onClose;
    this.revision = summary.revision;
    this.consistentIndex = summary.consistentIndex;
    this.compactRevision = summary.compactRevision;
    this.entries = summary.entries;
    this.sizeBytes = summary.sizeBytes;
  }

  /**
   * Takes the LevelDB snapshot synchronously (the dump's instant is the call), then measures it.
   * `onClose` runs once when the dump is closed (by its reader or by {@link close}).
   */
  static async open(db: Db, onClose: () => void): Promise<StoreDump> {
    const snapshot = db.snapshot();
    try {
      const summary = await measure(db, snapshot);
      return new StoreDump(db, snapshot, summary, onClose);
    } catch (error: unknown) {
      await snapshot.close();
      onClose();
      throw error;
    }
  }

  /** Size of the snapshot file / stream made of this dump: dump + padding + SHA-256. */
  get framedSizeBytes(): number {
    return framedSize(this.sizeBytes);
  }

  /**
   * The dump's bytes in chunks of about {@link SNAPSHOT_CHUNK_BYTES}, exactly {@link sizeBytes}
   * of them. Closes the dump when iteration ends or is abandoned.
   */
  chunks(): AsyncIterableIterator<Uint8Array> {
    assert(this.#state === 'open', 'a dump is read once');
    this.#state = 'reading';
    return closing(this.#read(), () => this.close());
  }

  /**
   * The snapshot-file form (module comment): exactly {@link framedSizeBytes} bytes, the padding
   * and SHA-256 in the last chunk of their own. Closes the dump like {@link chunks}.
   */
  framedChunks(): AsyncIterableIterator<Uint8Array> {
    const dump = this.chunks();
    const sizeBytes = this.sizeBytes;
    async function* frame(): AsyncGenerator<Uint8Array, void, undefined> {
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of dump) {
        hash.update(chunk);
        size += chunk.length;
        yield chunk;
      }
      assert(size === sizeBytes, 'the dump streamed as many bytes as measured');
      const padding = Buffer.alloc(framedSize(size) - SNAPSHOT_FILE_HASH_BYTES - size);
      hash.update(padding);
      yield Buffer.concat([padding, hash.digest()]);
    }
    return closing(frame(), async () => {
      await dump.return?.();
    });
  }

  /** Releases the LevelDB snapshot. Idempotent; a reader in progress fails on its next read. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    await this.#snapshot.close();
    this.#onClose();
  }

  async *#read(): AsyncGenerator<Uint8Array, void, undefined> {
    const iterator = this.#db.iterator({ snapshot: this.#snapshot, highWaterMarkBytes: SCAN_HIGH_WATER_BYTES });
    let crc = 0;
    let count = 0;
    let total = 0;
    let parts: Buffer[] = [DUMP_MAGIC];
    let size = DUMP_MAGIC.length;
    const take = (): Buffer => {
      const chunk = Buffer.concat(parts, size);
      crc = crc32(chunk, crc);
      total += chunk.length;
      parts = [];
      size = 0;
      return chunk;
    };
    try {
      for (;;) {
        const entries = await iterator.nextv(SCAN_BATCH_ENTRIES);
        if (entries.length === 0) break;
        for (const [key, value] of entries) {
          parts.push(lengthPrefix(key.length), key, lengthPrefix(value.length), value);
          size += 8 + key.length + value.length;
          count += 1;
          if (size >= SNAPSHOT_CHUNK_BYTES) yield take();
        }
      }
      const body = take();
      const trailer = Buffer.allocUnsafe(DUMP_TRAILER_BYTES);
      trailer.writeUInt32BE(DUMP_END, 0);
      trailer.writeUInt32BE(count >>> 0, 4);
      trailer.writeUInt32BE(crc32(trailer.subarray(0, 8), crc) >>> 0, 8);
      total += trailer.length;
      // Pair assertion: the same snapshot read twice gives the same entries.
      assert(count === this.entries && total === this.sizeBytes, 'a dump streams exactly what was measured');
      yield Buffer.concat([body, trailer]);
    } finally {
      await iterator.close();
      await this.close();
    }
  }
}

/**
 * An iterator over `source` that runs `close` once it ends, fails or is returned, even when it
 * was never started (an unstarted generator's `return()` skips its `finally`).
 */
function closing(source: AsyncGenerator<Uint8Array, void, undefined>, close: () => Promise<void>): AsyncIterableIterator<Uint8Array> {
  const iterator: AsyncIterableIterator<Uint8Array> = {
    async next(): Promise<IteratorResult<Uint8Array, undefined>> {
      try {
        const result = await source.next();
        if (result.done !== true) return result;
        await close();
        return { done: true, value: undefined };
      } catch (error: unknown) {
        await close();
        throw error;
      }
    },
    async return(): Promise<IteratorResult<Uint8Array, undefined>> {
      await source.return(undefined);
      await close();
      return { done: true, value: undefined };
    },
    [Symbol.asyncIterator](): AsyncIterableIterator<Uint8Array> {
      return iterator;
    },
  };
  return iterator;
}

function lengthPrefix(length: number): Buffer {
  const out = Buffer.allocUnsafe(4);
  out.writeUInt32BE(length, 0);
  return out;
}

/** One pass over the snapshot: entry count, byte size and the state the dump records. */
async function measure(db: Db, snapshot: Snapshot): Promise<DumpSummary> {
  const iterator = db.iterator({ snapshot, highWaterMarkBytes: SCAN_HIGH_WATER_BYTES });
  let entries = 0;
  let sizeBytes = DUMP_MAGIC.length + DUMP_TRAILER_BYTES;
  let lastRevisionKey: Buffer | undefined;
  const system = new Map<string, number>();
  try {
    for (;;) {
      const batch = await iterator.nextv(SCAN_BATCH_ENTRIES);
      if (batch.length === 0) break;
      for (const [key, value] of batch) {
        entries += 1;
        sizeBytes += 8 + key.length + value.length;
        if (key[0] === PREFIX_REVISION) lastRevisionKey = key;
        else if (key[0] === PREFIX_SYSTEM && value.length === 8) system.set(key.toString('latin1'), decodeNumber(value));
      }
    }
  } finally {
    await iterator.close();
  }
  const systemValue = (key: Buffer): number | undefined => system.get(key.toString('latin1'));
  const recorded = systemValue(SYSTEM_KEYS.revision) ?? 1;
  const newestRecord = lastRevisionKey === undefined ? 1 : parseRevisionKey(lastRevisionKey).revision;
  return {
    revision: Math.max(recorded, newestRecord),
    consistentIndex: systemValue(SYSTEM_KEYS.consistentIndex) ?? 0,
    compactRevision: systemValue(SYSTEM_KEYS.compactScheduled) ?? 0,
    entries,
    sizeBytes,
  };
}

/** Size of the snapshot file holding a dump of `dumpBytes` bytes. */
export function framedSize(dumpBytes: number): number {
  return Math.ceil(dumpBytes / SNAPSHOT_FILE_ALIGN_BYTES) * SNAPSHOT_FILE_ALIGN_BYTES + SNAPSHOT_FILE_HASH_BYTES;
}

/** Whether a stream or file of `sizeBytes` carries etcd's SHA-256 trailer (clientv3 `hasChecksum`). */
export function hasSnapshotHash(sizeBytes: number): boolean {
  return sizeBytes % SNAPSHOT_FILE_ALIGN_BYTES === SNAPSHOT_FILE_HASH_BYTES;
}

/** A backend entry parsed from a dump. */
export type DumpEntry = { type: 'put'; key: Buffer; value: Buffer };

/** What may follow a dump's trailer: nothing (a bare dump), or also a snapshot file's padding + SHA-256. */
export type DumpTail = 'none' | 'snapshot-file';

/** What {@link readDump} learned, beyond the entries it handed out. */
export interface DumpRead {
  /** The consistent index the dump records (0 when none). */
  readonly consistentIndex: number;
  readonly entries: number;
  /** Bytes of the dump itself. */
  readonly dumpBytes: number;
  /** 'snapshot-file' when padding and a SHA-256 followed the dump (not verified here). */
  readonly form: 'bare' | 'snapshot-file';
}

function corrupt(why: string): KvdError {
  return new KvdError('corrupt', { detail: `etcdserver: corrupt snapshot: ${why}` });
}

/**
 * Parses a dump, handing bounded batches of entries to `write` (at most
 * {@link WRITE_BATCH_ENTRIES} entries or about {@link SNAPSHOT_CHUNK_BYTES} bytes each). Checks
 * the magic, every length, the entry count and the CRC, and what follows the trailer (`tail`).
 * Throws KvdError('corrupt') on any mismatch; entries already written are then garbage the
 * caller discards.
 */
export async function readDump(
  chunks: AsyncIterable<Uint8Array>,
  write: (entries: DumpEntry[]) => Promise<void>,
  options: { readonly tail?: DumpTail } = {},
): Promise<DumpRead> {
  const tailAllowed = options.tail ?? 'none';
  let buffered = Buffer.alloc(0);
  let crc = 0;
  let count = 0;
  let consumed = 0;
  let sawMagic = false;
  let dumpBytes = -1;
  const tail: Buffer[] = [];
  let tailBytes = 0;
  let batch: DumpEntry[] = [];
  let batchBytes = 0;
  let consistentIndex = 0;
  for await (const chunk of chunks) {
    if (dumpBytes >= 0) {
      tailBytes += chunk.length;
      if (tailAllowed === 'none' || tailBytes >= SNAPSHOT_FILE_ALIGN_BYTES + SNAPSHOT_FILE_HASH_BYTES) throw corrupt('data after the trailer');
      tail.push(Buffer.from(chunk));
      continue;
    }
    buffered = buffered.length === 0 ? Buffer.from(chunk) : Buffer.concat([buffered, chunk]);
    let offset = 0;
    if (!sawMagic) {
      if (buffered.length < DUMP_MAGIC.length) continue;
      if (!buffered.subarray(0, DUMP_MAGIC.length).equals(DUMP_MAGIC)) throw corrupt('bad magic');
      sawMagic = true;
      offset = DUMP_MAGIC.length;
    }
    for (;;) {
      if (buffered.length - offset < 4) break;
      const keyLength = buffered.readUInt32BE(offset);
      if (keyLength === DUMP_END) {
        if (buffered.length - offset < DUMP_TRAILER_BYTES) break;
        crc = crc32(buffered.subarray(0, offset + 8), crc);
        if (buffered.readUInt32BE(offset + 4) !== count >>> 0) throw corrupt('record count mismatch');
        if (buffered.readUInt32BE(offset + 8) !== crc >>> 0) throw corrupt('checksum mismatch');
        dumpBytes = consumed + offset + DUMP_TRAILER_BYTES;
        const rest = buffered.subarray(offset + DUMP_TRAILER_BYTES);
        if (rest.length > 0) {
          if (tailAllowed === 'none' || rest.length >= SNAPSHOT_FILE_ALIGN_BYTES + SNAPSHOT_FILE_HASH_BYTES) throw corrupt('data after the trailer');
          tail.push(Buffer.from(rest));
          tailBytes = rest.length;
        }
        buffered = Buffer.alloc(0);
        offset = 0;
        break;
      }
      if (buffered.length - offset < 8 + keyLength) break;
      const valueLength = buffered.readUInt32BE(offset + 4 + keyLength);
      const end = offset + 8 + keyLength + valueLength;
      if (buffered.length < end) break;
      const key = Buffer.from(buffered.subarray(offset + 4, offset + 4 + keyLength));
      const value = Buffer.from(buffered.subarray(offset + 8 + keyLength, end));
      if (key.length === 0 || (key[0] !== PREFIX_REVISION && key[0] !== PREFIX_META && key[0] !== PREFIX_SYSTEM)) throw corrupt('unknown key namespace');
      if (key.equals(SYSTEM_KEYS.consistentIndex)) {
        if (value.length !== 8) throw corrupt('bad consistent index');
        consistentIndex = decodeNumber(value);
      }
      batch.push({ type: 'put', key, value });
      batchBytes += key.length + value.length;
      count += 1;
      offset = end;
      if (batch.length >= WRITE_BATCH_ENTRIES || batchBytes >= SNAPSHOT_CHUNK_BYTES) {
        await write(batch);
        batch = [];
        batchBytes = 0;
      }
    }
    if (dumpBytes < 0) {
      crc = crc32(buffered.subarray(0, offset), crc);
      consumed += offset;
      buffered = buffered.subarray(offset);
    }
  }
  if (dumpBytes < 0) throw corrupt('truncated');
  const form = checkTail(Buffer.concat(tail, tailBytes), dumpBytes);
  if (batch.length > 0) await write(batch);
  return { consistentIndex, entries: count, dumpBytes, form };
}

/** What may follow a dump: nothing, or zero padding to a 512 multiple and a 32-byte hash. */
function checkTail(tail: Buffer, dumpBytes: number): 'bare' | 'snapshot-file' {
  if (tail.length === 0) return 'bare';
  if (tail.length < SNAPSHOT_FILE_HASH_BYTES || !hasSnapshotHash(dumpBytes + tail.length)) throw corrupt('data after the trailer');
  const padding = tail.subarray(0, tail.length - SNAPSHOT_FILE_HASH_BYTES);
  if (padding.some((byte) => byte !== 0)) throw corrupt('data after the trailer');
  return 'snapshot-file';
}

/** Whether to check a snapshot file's SHA-256 (etcdctl's `--skip-hash-check` is 'skip'). */
export type HashCheck = 'verify' | 'skip';

/**
 * Checks a snapshot file as etcdctl 3.4's restore does, before anything is written: with
 * 'verify' the file must carry a SHA-256 trailer (size % 512 == 32; else "snapshot missing hash
 * but --skip-hash-check=false") that matches the bytes before it (else etcd's "expected sha256
 * [...], got [...]"). With 'skip' nothing is checked here. Returns the file's size. Throws
 * KvdError('corrupt') with etcd's texts; a missing file throws the fs error.
 */
export async function checkSnapshotFile(path: string, hashCheck: HashCheck): Promise<{ sizeBytes: number }> {
  const { size } = await stat(path);
  if (hashCheck === 'skip') return { sizeBytes: size };
  if (!hasSnapshotHash(size)) throw new KvdError('corrupt', { detail: 'snapshot missing hash but --skip-hash-check=false' });
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { start: 0, end: size - SNAPSHOT_FILE_HASH_BYTES - 1 })) hash.update(chunk as Buffer);
  const computed = hash.digest();
  const stored = Buffer.alloc(SNAPSHOT_FILE_HASH_BYTES);
  const handle = await open(path, 'r');
  try {
    await handle.read(stored, 0, SNAPSHOT_FILE_HASH_BYTES, size - SNAPSHOT_FILE_HASH_BYTES);
  } finally {
    await handle.close();
  }
  if (!computed.equals(stored)) throw new KvdError('corrupt', { detail: `expected sha256 ${goBytes(stored)}, got ${goBytes(computed)}` });
  return { sizeBytes: size };
}

/** Go's %v of a []byte: `[1 2 3]`. */
function goBytes(bytes: Buffer): string {
  return `[${[...bytes].join(' ')}]`;
}

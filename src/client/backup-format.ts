/**
 * File formats of an incremental backup directory (backup.ts writes it, `kvctl snapshot restore
 * DIR --to-revision R` reads it).
 *
 * ## Segment file `seg-<chain:4>-<seq:6>.kvseg`
 *
 * A header, then framed records, the last of a finished segment being a seal:
 *
 * ```
 * header  = "KVDBSEG1" | u32 format (1) | u32 chain | u64 firstRevision | u32 CRC-32 of the 24 bytes before
 * record  = u32 bodyLength | u32 CRC-32 of body | body
 * body    = u8 type | payload
 *   type 1, revisions: u32 count, then per revision:
 *           u64 revision | u32 eventCount | events
 *           event = u8 kind (0 put, 1 delete) | u32 keyLength | key
 *                   [put: u64 createRevision | u64 version | u64 lease | u32 valueLength | value]
 *   type 2, leases:    u32 count, then per lease: u64 id | u64 grantedTtlSeconds (0 = unknown)
 *   type 3, seal:      u64 lastRevision | u32 records before the seal | u32 CRC-32 of every byte before the seal
 * ```
 *
 * All integers big-endian; CRC-32 is IEEE (zlib's). A record holds whole revisions only (a
 * revision is never split), revisions follow each other without a gap within a segment and
 * from one segment of a chain to the next, and a segment's first revision is the header's.
 * The modification revision of every event is its revision. A lease record comes before the
 * revisions record of the flush that first saw a key with that lease.
 *
 * A writer appends one flush as one write, fdatasyncs, and only then acknowledges the
 * revisions in the manifest; so after a crash the newest segment may end in a torn record
 * (dropped on resume) but never loses an acknowledged revision.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';

/** Magic of a segment file. */
export const SEGMENT_MAGIC = Buffer.from('KVDBSEG1', 'latin1');
/** Format number in a segment header; readers refuse others. */
export const SEGMENT_FORMAT_VERSION = 1;
/** Bytes of a segment header. */
export const SEGMENT_HEADER_BYTES = 28;
/** Bytes of a record's frame (length, CRC). */
export const RECORD_FRAME_BYTES = 8;
/** A record body longer than this is taken for garbage (a torn or corrupt length). */
export const RECORD_BODY_BYTES_MAX = 512 * 1024 * 1024;

const TYPE_REVISIONS = 1;
const TYPE_LEASES = 2;
const TYPE_SEAL = 3;
const KIND_PUT = 0;
const KIND_DELETE = 1;

/** One change of a revision, with the metadata a Range at that revision reports. */
export interface BackupEvent {
  readonly type: 'put' | 'delete';
  readonly key: Buffer;
  /** Puts only; empty for deletes. */
  readonly value: Buffer;
  /** Puts only; 0n for deletes. */
  readonly createRevision: bigint;
  readonly version: bigint;
  readonly lease: bigint;
}

/** Every change of one revision, in the order the server made them. */
export interface BackupRevision {
  readonly revision: bigint;
  readonly events: readonly BackupEvent[];
}

/** A lease's granted TTL as the backup learned it (0 = unknown: the lease was gone when asked). */
export interface LeaseTtl {
  readonly id: bigint;
  readonly grantedTtlSeconds: number;
}

/** One record of a segment (see the module comment). */
export type SegmentRecord =
  | { readonly type: 'revisions'; readonly revisions: readonly BackupRevision[] }
  | { readonly type: 'leases'; readonly leases: readonly LeaseTtl[] }
  | { readonly type: 'seal'; readonly lastRevision: bigint; readonly records: number; readonly crc: number };

/** A segment's header. */
export interface SegmentHeader {
  readonly chain: number;
  readonly firstRevision: bigint;
}

/** Encodes a segment header (with its CRC). */
export function encodeSegmentHeader(header: SegmentHeader): Buffer {
  const out = Buffer.alloc(SEGMENT_HEADER_BYTES);
  SEGMENT_MAGIC.copy(out, 0);
  out.writeUInt32BE(SEGMENT_FORMAT_VERSION, 8);
  out.writeUInt32BE(header.chain, 12);
  out.writeBigUInt64BE(header.firstRevision, 16);
  out.writeUInt32BE(crc32(out.subarray(0, 24)) >>> 0, 24);
  return out;
}

/** Decodes a header; a string says why it is not one. */
export function decodeSegmentHeader(bytes: Buffer): SegmentHeader | string {
  if (bytes.length < SEGMENT_HEADER_BYTES) return 'file shorter than a segment header';
  if (!bytes.subarray(0, 8).equals(SEGMENT_MAGIC)) return 'bad magic';
  if (bytes.readUInt32BE(24) !== crc32(bytes.subarray(0, 24)) >>> 0) return 'header checksum mismatch';
  if (bytes.readUInt32BE(8) !== SEGMENT_FORMAT_VERSION) return `unknown segment format ${bytes.readUInt32BE(8)}`;
  return { chain: bytes.readUInt32BE(12), firstRevision: bytes.readBigUInt64BE(16) };
}

/** A growable buffer for encoding. */
class Writer {
  #buffer = Buffer.allocUnsafe(256);
  #length = 0;

  #room(bytes: number): void {
    if (this.#length + bytes <= this.#buffer.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buffer.length * 2, this.#length + bytes));
    this.#buffer.copy(next, 0, 0, this.#length);
    this.#buffer = next;
  }

  u8(value: number): void {
    this.#room(1);
    this.#buffer[this.#length++] = value;
  }

  u32(value: number): void {
    this.#room(4);
    this.#buffer.writeUInt32BE(value >>> 0, this.#length);
    this.#length += 4;
  }

  u64(value: bigint): void {
    this.#room(8);
    this.#buffer.writeBigUInt64BE(BigInt.asUintN(64, value), this.#length);
    this.#length += 8;
  }

  bytes(value: Buffer): void {
    this.u32(value.length);
    this.#room(value.length);
    value.copy(this.#buffer, this.#length);
    this.#length += value.length;
  }

  done(): Buffer {
    return this.#buffer.subarray(0, this.#length);
  }
}

/** Encodes one framed record. */
export function encodeRecord(record: SegmentRecord): Buffer {
  const body = new Writer();
  switch (record.type) {
    case 'revisions':
      body.u8(TYPE_REVISIONS);
      body.u32(record.revisions.length);
      for (const revision of record.revisions) {
        body.u64(revision.revision);
        body.u32(revision.events.length);
        for (const event of revision.events) {
          body.u8(event.type === 'put' ? KIND_PUT : KIND_DELETE);
          body.bytes(event.key);
          if (event.type === 'put') {
            body.u64(event.createRevision);
            body.u64(event.version);
            body.u64(event.lease);
            body.bytes(event.value);
          }
        }
      }
      break;
    case 'leases':
      body.u8(TYPE_LEASES);
      body.u32(record.leases.length);
      for (const lease of record.leases) {
        body.u64(lease.id);
        body.u64(BigInt(lease.grantedTtlSeconds));
      }
      break;
    case 'seal':
      body.u8(TYPE_SEAL);
      body.u64(record.lastRevision);
      body.u32(record.records);
      body.u32(record.crc);
      break;
  }
  const payload = body.done();
  const frame = Buffer.allocUnsafe(RECORD_FRAME_BYTES + payload.length);
  frame.writeUInt32BE(payload.length, 0);
  frame.writeUInt32BE(crc32(payload) >>> 0, 4);
  payload.copy(frame, RECORD_FRAME_BYTES);
  return frame;
}

/** Thrown by the body decoder on a malformed (but checksummed) body: a bug or a foreign file. */
class MalformedRecord extends Error {}

/** A bounds-checked reader over one record body. */
class Reader {
  readonly #buffer: Buffer;
  #offset = 0;

  constructor(buffer: Buffer) {
    this.#buffer = buffer;
  }

  #need(bytes: number): void {
    if (this.#offset + bytes > this.#buffer.length) throw new MalformedRecord('record body ends early');
  }

  u8(): number {
    this.#need(1);
    return this.#buffer[this.#offset++];
  }

  u32(): number {
    this.#need(4);
    const value = this.#buffer.readUInt32BE(this.#offset);
    this.#offset += 4;
    return value;
  }

  u64(): bigint {
    this.#need(8);
    const value = this.#buffer.readBigUInt64BE(this.#offset);
    this.#offset += 8;
    return value;
  }

  bytes(): Buffer {
    const length = this.u32();
    this.#need(length);
    const value = Buffer.from(this.#buffer.subarray(this.#offset, this.#offset + length));
    this.#offset += length;
    return value;
  }

  get ended(): boolean {
    return this.#offset === this.#buffer.length;
  }
}

const EMPTY = Buffer.alloc(0);

/** Decodes a record body (its CRC already checked). */
export function decodeRecordBody(body: Buffer): SegmentRecord {
  const reader = new Reader(body);
  const type = reader.u8();
  let record: SegmentRecord;
  switch (type) {
    case TYPE_REVISIONS: {
      const revisions: BackupRevision[] = [];
      for (let count = reader.u32(); count > 0; count--) {
        const revision = reader.u64();
        const events: BackupEvent[] = [];
        for (let eventCount = reader.u32(); eventCount > 0; eventCount--) {
          const kind = reader.u8();
          const key = reader.bytes();
          if (kind === KIND_PUT) {
            const createRevision = reader.u64();
            const version = reader.u64();
            const lease = reader.u64();
            events.push({ type: 'put', key, value: reader.bytes(), createRevision, version, lease });
          } else if (kind === KIND_DELETE) {
            events.push({ type: 'delete', key, value: EMPTY, createRevision: 0n, version: 0n, lease: 0n });
          } else {
            throw new MalformedRecord(`unknown event kind ${kind}`);
          }
        }
        revisions.push({ revision, events });
      }
      record = { type: 'revisions', revisions };
      break;
    }
    case TYPE_LEASES: {
      const leases: LeaseTtl[] = [];
      for (let count = reader.u32(); count > 0; count--) leases.push({ id: reader.u64(), grantedTtlSeconds: Number(reader.u64()) });
      record = { type: 'leases', leases };
      break;
    }
    case TYPE_SEAL:
      record = { type: 'seal', lastRevision: reader.u64(), records: reader.u32(), crc: reader.u32() };
      break;
    default:
      throw new MalformedRecord(`unknown record type ${type}`);
  }
  if (!reader.ended) throw new MalformedRecord('record body has trailing bytes');
  return record;
}

/** Where and why reading a segment stopped before its end. */
export interface SegmentProblem {
  readonly offset: number;
  readonly why: string;
}

/**
 * Reads one segment file record by record (bounded memory: one record at a time), checking
 * every frame's CRC, that revisions follow each other from the header's first revision, and a
 * seal's counts and CRC. {@link next} returns undefined at the end of the valid part; then
 * {@link problem} says why it stopped if the file goes on (a torn tail, or corruption: only the
 * caller knows which is acceptable), and {@link validBytes}, {@link lastRevision},
 * {@link sealed} and {@link crc} describe the valid part.
 */
export class SegmentReader {
  readonly #handle: FileHandle;
  readonly #size: number;
  readonly header: SegmentHeader;
  #offset = SEGMENT_HEADER_BYTES;
  #crc: number;
  #records = 0;
  #lastRevision: bigint;
  #sealed = false;
  #problem: SegmentProblem | undefined;

  private constructor(handle: FileHandle, size: number, header: SegmentHeader, headerBytes: Buffer) {
    this.#handle = handle;
    this.#size = size;
    this.header = header;
    this.#crc = crc32(headerBytes);
    this.#lastRevision = header.firstRevision - 1n;
  }

  /** Opens `path`; throws Error naming the file when its header is not a segment header. */
  static async open(path: string): Promise<SegmentReader> {
    const handle = await open(path, 'r');
    try {
      const { size } = await handle.stat();
      const headerBytes = Buffer.alloc(SEGMENT_HEADER_BYTES);
      const { bytesRead } = await handle.read(headerBytes, 0, SEGMENT_HEADER_BYTES, 0);
      const header = decodeSegmentHeader(headerBytes.subarray(0, bytesRead));
      if (typeof header === 'string') throw new Error(`${path}: not a backup segment (${header})`);
      return new SegmentReader(handle, size, header, headerBytes);
    } catch (error: unknown) {
      await handle.close();
      throw error;
    }
  }

  /** The next valid record, or undefined at the end of the valid part. */
  async next(): Promise<SegmentRecord | undefined> {
    if (this.#sealed || this.#problem !== undefined) {
      if (this.#sealed && this.#problem === undefined && this.#offset < this.#size) this.#problem = { offset: this.#offset, why: 'data after the seal' };
      return undefined;
    }
    if (this.#offset === this.#size) return undefined;
    const stop = (why: string): undefined => {
      this.#problem = { offset: this.#offset, why };
      return undefined;
    };
    if (this.#size - this.#offset < RECORD_FRAME_BYTES) return stop('truncated record frame');
    const frame = Buffer.alloc(RECORD_FRAME_BYTES);
    await this.#handle.read(frame, 0, RECORD_FRAME_BYTES, this.#offset);
    const length = frame.readUInt32BE(0);
    if (length > RECORD_BODY_BYTES_MAX) return stop(`record length ${length} is implausible`);
    if (this.#size - this.#offset - RECORD_FRAME_BYTES < length) return stop('truncated record');
    const body = Buffer.alloc(length);
    await this.#handle.read(body, 0, length, this.#offset + RECORD_FRAME_BYTES);
    if (crc32(body) >>> 0 !== frame.readUInt32BE(4)) return stop('record checksum mismatch');
    let record: SegmentRecord;
    try {
      record = decodeRecordBody(body);
    } catch (error: unknown) {
      if (error instanceof MalformedRecord) return stop(`malformed record: ${error.message}`);
      throw error;
    }
    const invalid = this.#check(record);
    if (invalid !== undefined) return stop(invalid);
    if (record.type === 'seal') this.#sealed = true;
    else this.#records += 1;
    this.#crc = crc32(body, crc32(frame, this.#crc));
    this.#offset += RECORD_FRAME_BYTES + length;
    if (record.type === 'revisions') this.#lastRevision = record.revisions[record.revisions.length - 1].revision;
    return record;
  }

  #check(record: SegmentRecord): string | undefined {
    if (record.type === 'seal') {
      if (record.lastRevision !== this.#lastRevision) return `seal names last revision ${record.lastRevision}, the segment ends at ${this.#lastRevision}`;
      if (record.records !== this.#records) return `seal counts ${record.records} records, the segment has ${this.#records}`;
      if (record.crc !== this.#crc >>> 0) return 'seal checksum mismatch';
      return undefined;
    }
    if (record.type !== 'revisions') return undefined;
    if (record.revisions.length === 0) return 'empty revisions record';
    let expected = this.#lastRevision + 1n;
    for (const revision of record.revisions) {
      if (revision.revision !== expected) return `revision ${revision.revision} where ${expected} was expected`;
      if (revision.events.length === 0) return `revision ${revision.revision} has no events`;
      expected += 1n;
    }
    return undefined;
  }

  /** Bytes of the valid part (header and whole valid records). */
  get validBytes(): number {
    return this.#offset;
  }

  /** The file's size. */
  get sizeBytes(): number {
    return this.#size;
  }

  /** Last revision in the valid part (firstRevision - 1 when it holds none). */
  get lastRevision(): bigint {
    return this.#lastRevision;
  }

  /** Records before the seal in the valid part. */
  get records(): number {
    return this.#records;
  }

  /** Running CRC-32 of the valid part (what a seal written now would carry). */
  get crc(): number {
    return this.#crc >>> 0;
  }

  get sealed(): boolean {
    return this.#sealed;
  }

  /** Why reading stopped before the end of the file (after next() returned undefined). */
  get problem(): SegmentProblem | undefined {
    return this.#problem;
  }

  async close(): Promise<void> {
    await this.#handle.close();
  }
}

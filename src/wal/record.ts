/**
 * The WAL's record framing and payload codecs (binary, little-endian, no msgpackr: entry payloads
 * are copied once into the batch buffer and never re-encoded).
 *
 * Frame: [length u32][type u8][crc32c u32][payload: length bytes]. The CRC covers the length and
 * type bytes followed by the payload, so a torn or flipped length is caught too.
 *
 * Payloads:
 * - segment-header: version u8, seq u64, firstIndex u64
 * - hard-state: term u64, vote u64, commit u64
 * - entry: term u64, index u64, entryType u8 (0 normal, 1 conf-change), data (rest)
 * - snapshot-marker: index u64, term u64, voterCount u32, voters u64*, learnerCount u32, learners u64*
 *
 * Numbers (terms, indexes) are checked to be safe integers when encoded and decoded (types.ts
 * leaves range checks to the codecs).
 */
import type { Entry, EntryType, HardState, SnapshotMetadata, NodeId } from '../raft/types.js';
import { assert } from '../util/assert.js';
import { crc32cRange } from './crc32c.js';
import { readU64LE, writeU64LE } from '../util/u64.js';

/** Bytes before the payload: length u32, type u8, crc u32. */
export const FRAME_HEADER_BYTES = 9;
/** Largest payload accepted on read or write; a larger length field means a corrupt record. */
export const RECORD_PAYLOAD_BYTES_MAX = 256 * 1024 * 1024;
/** Version written in segment headers. */
export const SEGMENT_FORMAT_VERSION = 1;

/** Record type tags as stored on disk. 0 is never valid so zero-filled space never parses. */
export const RecordType = {
  segmentHeader: 1,
  hardState: 2,
  entry: 3,
  snapshotMarker: 4,
} as const;
export type RecordTypeTag = (typeof RecordType)[keyof typeof RecordType];

const ENTRY_FIXED_BYTES = 17;
const HARD_STATE_BYTES = 24;
const SEGMENT_HEADER_BYTES = 17;

/** The decoded segment header record. */
export interface SegmentHeader {
  readonly seq: number;
  readonly firstIndex: number;
}

/**
 * One decoded record. Entry data is a view into the buffer the segment was read into (zero-copy:
 * replay is about twice as fast as copying each entry); nobody writes to that buffer afterwards.
 */
export type WalRecord =
  | { readonly type: 'segment-header'; readonly header: SegmentHeader }
  | { readonly type: 'hard-state'; readonly hardState: HardState }
  | { readonly type: 'entry'; readonly entry: Entry }
  | { readonly type: 'snapshot-marker'; readonly metadata: SnapshotMetadata };

function writeNodeId(buffer: Buffer, offset: number, id: NodeId): void {
  assert(id >= 0n && id < 1n << 64n, 'node id must fit in u64');
  buffer.writeBigUInt64LE(id, offset);
}

function entryTypeTag(type: EntryType): number {
  return type === 'normal' ? 0 : 1;
}

/** CRC of a frame: its length and type bytes, then its payload (up to `end`). */
function frameCrc(buffer: Buffer, offset: number, end: number): number {
  return crc32cRange(buffer, offset + FRAME_HEADER_BYTES, end, crc32cRange(buffer, offset, offset + 5, 0));
}

/** Writes the frame header for a payload already in place at offset+9 and returns the next offset. */
function sealFrame(buffer: Buffer, offset: number, type: RecordTypeTag, payloadBytes: number): number {
  if (!(payloadBytes <= RECORD_PAYLOAD_BYTES_MAX)) assert(false, `record payload of ${payloadBytes} bytes exceeds the maximum`);
  buffer.writeUInt32LE(payloadBytes, offset);
  buffer[offset + 4] = type;
  const payloadStart = offset + FRAME_HEADER_BYTES;
  buffer.writeUInt32LE(frameCrc(buffer, offset, payloadStart + payloadBytes), offset + 5);
  return payloadStart + payloadBytes;
}

/** Framed size of an entry record. */
export function entryRecordBytes(entry: Entry): number {
  return FRAME_HEADER_BYTES + ENTRY_FIXED_BYTES + entry.data.length;
}

/** Framed size of a hard-state record. */
export const HARD_STATE_RECORD_BYTES = FRAME_HEADER_BYTES + HARD_STATE_BYTES;
/** Framed size of a segment-header record. */
export const SEGMENT_HEADER_RECORD_BYTES = FRAME_HEADER_BYTES + SEGMENT_HEADER_BYTES;

/** Framed size of a snapshot-marker record. */
export function snapshotMarkerRecordBytes(metadata: SnapshotMetadata): number {
  return FRAME_HEADER_BYTES + 16 + 4 + 8 * metadata.confState.voters.length + 4 + 8 * metadata.confState.learners.length;
}

/** Encodes an entry record at `offset`; returns the offset after it. */
export function writeEntryRecord(buffer: Buffer, offset: number, entry: Entry): number {
  const payload = offset + FRAME_HEADER_BYTES;
  writeU64LE(buffer, payload, entry.term);
  writeU64LE(buffer, payload + 8, entry.index);
  buffer[payload + 16] = entryTypeTag(entry.type);
  buffer.set(entry.data, payload + ENTRY_FIXED_BYTES);
  return sealFrame(buffer, offset, RecordType.entry, ENTRY_FIXED_BYTES + entry.data.length);
}

/** Encodes a hard-state record at `offset`; returns the offset after it. */
export function writeHardStateRecord(buffer: Buffer, offset: number, hardState: HardState): number {
  const payload = offset + FRAME_HEADER_BYTES;
  writeU64LE(buffer, payload, hardState.term);
  writeNodeId(buffer, payload + 8, hardState.vote);
  writeU64LE(buffer, payload + 16, hardState.commit);
  return sealFrame(buffer, offset, RecordType.hardState, HARD_STATE_BYTES);
}

/** Encodes a segment-header record at `offset`; returns the offset after it. */
export function writeSegmentHeaderRecord(buffer: Buffer, offset: number, header: SegmentHeader): number {
  const payload = offset + FRAME_HEADER_BYTES;
  buffer[payload] = SEGMENT_FORMAT_VERSION;
  writeU64LE(buffer, payload + 1, header.seq);
  writeU64LE(buffer, payload + 9, header.firstIndex);
  return sealFrame(buffer, offset, RecordType.segmentHeader, SEGMENT_HEADER_BYTES);
}

/** Encodes a snapshot-marker record at `offset`; returns the offset after it. */
export function writeSnapshotMarkerRecord(buffer: Buffer, offset: number, metadata: SnapshotMetadata): number {
  const start = offset + FRAME_HEADER_BYTES;
  let at = start;
  writeU64LE(buffer, at, metadata.index);
  writeU64LE(buffer, at + 8, metadata.term);
  at += 16;
  for (const ids of [metadata.confState.voters, metadata.confState.learners]) {
    buffer.writeUInt32LE(ids.length, at);
    at += 4;
    for (const id of ids) {
      writeNodeId(buffer, at, id);
      at += 8;
    }
  }
  return sealFrame(buffer, offset, RecordType.snapshotMarker, at - start);
}

/** Result of reading the frame at an offset. */
export type FrameResult =
  | { readonly ok: true; readonly type: RecordTypeTag; readonly payloadStart: number; readonly end: number }
  | { readonly ok: false; readonly why: 'short-header' | 'bad-length' | 'bad-type' | 'truncated' | 'bad-crc' };

/** Checks the frame at `offset` (length, type, bounds, CRC) without decoding the payload. */
export function readFrame(buffer: Buffer, offset: number): FrameResult {
  if (buffer.length - offset < FRAME_HEADER_BYTES) return { ok: false, why: 'short-header' };
  const length = buffer.readUInt32LE(offset);
  if (length > RECORD_PAYLOAD_BYTES_MAX) return { ok: false, why: 'bad-length' };
  const type = buffer[offset + 4];
  if (type < RecordType.segmentHeader || type > RecordType.snapshotMarker) return { ok: false, why: 'bad-type' };
  const payloadStart = offset + FRAME_HEADER_BYTES;
  const end = payloadStart + length;
  if (end > buffer.length) return { ok: false, why: 'truncated' };
  if (frameCrc(buffer, offset, end) !== buffer.readUInt32LE(offset + 5)) return { ok: false, why: 'bad-crc' };
  return { ok: true, type: type as RecordTypeTag, payloadStart, end };
}

/** Decodes a payload whose frame checked out; returns a reason string when its contents are invalid. */
export function decodePayload(buffer: Buffer, frame: { type: RecordTypeTag; payloadStart: number; end: number }): WalRecord | string {
  const start = frame.payloadStart;
  const length = frame.end - start;
  switch (frame.type) {
    case RecordType.segmentHeader: {
      if (length !== SEGMENT_HEADER_BYTES) return `segment header of ${length} bytes`;
      if (buffer[start] !== SEGMENT_FORMAT_VERSION) return `unknown segment format version ${buffer[start]}`;
      const seq = readU64LE(buffer, start + 1);
      const firstIndex = readU64LE(buffer, start + 9);
      if (seq < 0 || firstIndex < 0) return 'segment header number out of range';
      return { type: 'segment-header', header: { seq, firstIndex } };
    }
    case RecordType.hardState: {
      if (length !== HARD_STATE_BYTES) return `hard state of ${length} bytes`;
      const term = readU64LE(buffer, start);
      const commit = readU64LE(buffer, start + 16);
      if (term < 0 || commit < 0) return 'hard state number out of range';
      return { type: 'hard-state', hardState: { term, vote: buffer.readBigUInt64LE(start + 8), commit } };
    }
    case RecordType.entry: {
      if (length < ENTRY_FIXED_BYTES) return `entry of ${length} bytes`;
      const term = readU64LE(buffer, start);
      const index = readU64LE(buffer, start + 8);
      const tag = buffer[start + 16];
      if (term < 0 || index < 1) return 'entry term/index out of range';
      if (tag > 1) return `unknown entry type ${tag}`;
      const data = new Uint8Array(buffer.buffer, buffer.byteOffset + start + ENTRY_FIXED_BYTES, frame.end - start - ENTRY_FIXED_BYTES);
      return { type: 'entry', entry: { term, index, type: tag === 0 ? 'normal' : 'conf-change', data } };
    }
    case RecordType.snapshotMarker:
      return decodeSnapshotMarker(buffer, start, frame.end);
  }
}

function decodeSnapshotMarker(buffer: Buffer, start: number, end: number): WalRecord | string {
  if (end - start < 24) return 'short snapshot marker';
  const index = readU64LE(buffer, start);
  const term = readU64LE(buffer, start + 8);
  if (index < 0 || term < 0) return 'snapshot marker number out of range';
  let at = start + 16;
  const lists: NodeId[][] = [];
  for (let list = 0; list < 2; list++) {
    if (at + 4 > end) return 'short snapshot marker';
    const count = buffer.readUInt32LE(at);
    at += 4;
    if (at + 8 * count > end) return 'snapshot marker member list overruns the record';
    const ids: NodeId[] = [];
    for (let i = 0; i < count; i++, at += 8) ids.push(buffer.readBigUInt64LE(at));
    lists.push(ids);
  }
  if (at !== end) return 'trailing bytes in snapshot marker';
  return { type: 'snapshot-marker', metadata: { index, term, confState: { voters: lists[0], learners: lists[1] } } };
}

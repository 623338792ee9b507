/**
 * Binary codec for {@link ConfChange} (the data of 'conf-change' entries).
 * Layout (big-endian): version u8 (=1) | type u8 | nodeId u64 | contextLength u32 | context bytes.
 */
import type { ConfChange, ConfChangeType } from './types.js';

const VERSION = 1;
const HEADER_BYTES = 1 + 1 + 8 + 4;
const TYPES: readonly ConfChangeType[] = ['add-node', 'add-learner-node', 'remove-node', 'update-node'];

/** Encodes a conf change for a 'conf-change' entry. Throws RangeError for a node id outside u64. */
export function encodeConfChange(change: ConfChange): Uint8Array {
  if (change.nodeId < 0n || change.nodeId > 0xffff_ffff_ffff_ffffn) throw new RangeError(`conf change: node id out of range`);
  const bytes = new Uint8Array(HEADER_BYTES + change.context.byteLength);
  const view = new DataView(bytes.buffer);
  view.setUint8(0, VERSION);
  view.setUint8(1, TYPES.indexOf(change.type));
  view.setBigUint64(2, change.nodeId);
  view.setUint32(10, change.context.byteLength);
  bytes.set(change.context, HEADER_BYTES);
  return bytes;
}

/** Decodes what {@link encodeConfChange} produced. Throws RangeError on malformed input. */
export function decodeConfChange(data: Uint8Array): ConfChange {
  if (data.byteLength < HEADER_BYTES) throw new RangeError('conf change: truncated');
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (view.getUint8(0) !== VERSION) throw new RangeError(`conf change: unknown version ${view.getUint8(0)}`);
  const type = TYPES[view.getUint8(1)];
  if (type === undefined) throw new RangeError(`conf change: unknown type ${view.getUint8(1)}`);
  const nodeId = view.getBigUint64(2);
  const length = view.getUint32(10);
  if (HEADER_BYTES + length !== data.byteLength) throw new RangeError('conf change: bad context length');
  return { type, nodeId, context: data.slice(HEADER_BYTES) };
}

/**
 * Unsigned 64-bit integers held as JS numbers (Raft terms and indexes, WAL and snapshot fields):
 * at most 2^53 - 1, stored as two 32-bit halves.
 */
import { assert } from './assert.js';

export const TWO_POW_32 = 0x1_0000_0000;

/**
 * The number of halves `high`:`low` (high < 2^21). A value below 2^32 is `low` itself, never the
 * result of floating-point arithmetic: V8 keeps a small integer unboxed, and one object field that
 * once held a floating-point result is boxed in every object of that shape from then on (a decoded
 * Raft entry's term and index made every entry of every member carry two heap numbers).
 */
export function joinU64(high: number, low: number): number {
  return high === 0 ? low : high * TWO_POW_32 + low;
}

/** Writes `value` (a non-negative safe integer) as a little-endian u64. */
export function writeU64LE(buffer: Buffer, offset: number, value: number): void {
  if (!(Number.isSafeInteger(value) && value >= 0)) assert(false, `u64 field must be a non-negative safe integer, got ${value}`);
  buffer.writeUInt32LE(value >>> 0, offset);
  buffer.writeUInt32LE(Math.floor(value / TWO_POW_32), offset + 4);
}

/** Reads a little-endian u64 that must be a safe integer; -1 when it is not (the caller reports corruption). */
export function readU64LE(buffer: Buffer, offset: number): number {
  const high = buffer.readUInt32LE(offset + 4);
  if (high >= 0x20_0000) return -1;
  return joinU64(high, buffer.readUInt32LE(offset));
}

/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI, ext4 and etcd's WAL.
 * Table-driven with slicing-by-8: eight 256-entry tables let the main loop consume eight bytes per
 * iteration with independent lookups, several times faster than the byte-at-a-time loop in V8.
 */

const POLYNOMIAL = 0x82f63b78;
const TABLE_COUNT = 8;

/** TABLES[k][b]: the CRC contribution of byte b followed by k zero bytes. */
const TABLES: readonly Int32Array[] = buildTables();

function buildTables(): Int32Array[] {
  const tables: Int32Array[] = [];
  const first = new Int32Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ POLYNOMIAL : crc >>> 1;
    first[byte] = crc;
  }
  tables.push(first);
  for (let k = 1; k < TABLE_COUNT; k++) {
    const previous = tables[k - 1];
    const table = new Int32Array(256);
    for (let byte = 0; byte < 256; byte++) table[byte] = (previous[byte] >>> 8) ^ first[previous[byte] & 0xff];
    tables.push(table);
  }
  return tables;
}

const [T0, T1, T2, T3, T4, T5, T6, T7] = TABLES;

/**
 * Returns the CRC-32C of `bytes` as an unsigned 32-bit number.
 *
 * `previous` continues a running checksum: `crc32c(b, crc32c(a))` equals the CRC of `a` followed
 * by `b`. The default 0 starts a fresh checksum (the CRC of the empty input is 0).
 */
export function crc32c(bytes: Uint8Array, previous = 0): number {
  return crc32cRange(bytes, 0, bytes.length, previous);
}

/**
 * {@link crc32c} of `bytes[start, end)` without allocating a subarray view. Positional numbers on
 * purpose: this is the WAL's per-record hot path. Requires 0 <= start <= end <= bytes.length.
 */
export function crc32cRange(bytes: Uint8Array, start: number, end: number, previous: number): number {
  let crc = ~previous;
  let i = start;
  const end8 = end - ((end - start) & 7);
  while (i < end8) {
    const low = crc ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    crc =
      T7[low & 0xff] ^
      T6[(low >>> 8) & 0xff] ^
      T5[(low >>> 16) & 0xff] ^
      T4[low >>> 24] ^
      T3[bytes[i + 4]] ^
      T2[bytes[i + 5]] ^
      T1[bytes[i + 6]] ^
      T0[bytes[i + 7]];
    i += 8;
  }
  while (i < end) {
    crc = T0[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
    i++;
  }
  return ~crc >>> 0;
}

/** Byte-at-a-time reference implementation; slower, kept for tests to cross-check {@link crc32c}. */
export function crc32cBytewise(bytes: Uint8Array, previous = 0): number {
  let crc = ~previous;
  for (let i = 0; i < bytes.length; i++) crc = T0[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return ~crc >>> 0;
}

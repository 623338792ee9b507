/**
 * HPACK (RFC 7541) for the client port's own HTTP/2 server (src/util/h2/connection.ts): a decoder
 * with the dynamic table and Huffman strings, and an encoder of header blocks that uses no dynamic
 * table (indexed static entries and literals "without indexing"), so a block that never changes —
 * gRPC's response headers, its OK trailers — is encoded once and sent as the same bytes forever.
 *
 * Bounds: the dynamic table holds at most the size this side advertised (SETTINGS_HEADER_TABLE_SIZE,
 * 4,096 bytes unless told otherwise); a decoded header list at most `maxHeaderListBytes` (names and
 * values plus 32 per field, as RFC 7540 counts it); an integer at most 2^28 (no header field here
 * is longer). Anything malformed throws {@link HpackError} (a COMPRESSION_ERROR for the connection).
 */

/** A malformed header block: the connection must end with COMPRESSION_ERROR (RFC 7540 §4.3). */
export class HpackError extends Error {
  override name = 'HpackError';
}

/** A header list larger than the limit: the stream is refused, the connection stays usable. */
export class HeaderListTooLargeError extends Error {
  override name = 'HeaderListTooLargeError';
}

/** What the decoder holds between blocks instead of the last one. */
const EMPTY = Buffer.alloc(0);

/** RFC 7541 Appendix A: the static table, index 1 first. */
const STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''], ['etag', ''],
  ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
  ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''],
  ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''],
  ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''],
  ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''],
  ['www-authenticate', ''],
];

/**
 * RFC 7541 Appendix B: the Huffman code's length in bits for symbols 0–255, then EOS (256). The
 * code is canonical (codes of one length are consecutive, in symbol order, and each length starts
 * where the shorter ones ended, shifted), so these lengths define it; a test checks known codes.
 */
const HUFFMAN_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  30,
];

const EOS = 256;
const MAX_CODE_BITS = 30;

/** Canonical decoding tables: for each length, its first code, how many codes it has, and where its symbols start. */
interface HuffmanTables {
  readonly firstCode: Int32Array;
  readonly count: Int32Array;
  readonly offset: Int32Array;
  /** Symbols ordered by (length, symbol). */
  readonly symbols: Uint16Array;
  /** The code of each symbol (for tests and the encoder's length check). */
  readonly codes: Uint32Array;
}

function buildHuffman(): HuffmanTables {
  const count = new Int32Array(MAX_CODE_BITS + 1);
  for (const length of HUFFMAN_LENGTHS) count[length] += 1;
  const offset = new Int32Array(MAX_CODE_BITS + 1);
  const firstCode = new Int32Array(MAX_CODE_BITS + 1);
  let code = 0;
  let at = 0;
  for (let length = 1; length <= MAX_CODE_BITS; length += 1) {
    code = (code + count[length - 1]) << 1;
    firstCode[length] = code;
    offset[length] = at;
    at += count[length];
  }
  const symbols = new Uint16Array(HUFFMAN_LENGTHS.length);
  const next = Int32Array.from(offset);
  const codes = new Uint32Array(HUFFMAN_LENGTHS.length);
  const nextCode = Int32Array.from(firstCode);
  for (let length = 1; length <= MAX_CODE_BITS; length += 1) {
    for (let symbol = 0; symbol < HUFFMAN_LENGTHS.length; symbol += 1) {
      if (HUFFMAN_LENGTHS[symbol] !== length) continue;
      symbols[next[length]++] = symbol;
      codes[symbol] = nextCode[length]++;
    }
  }
  return { firstCode, count, offset, symbols, codes };
}

const HUFFMAN = buildHuffman();

/** The Huffman code of `symbol` and its length (tests). */
export function huffmanCode(symbol: number): { code: number; bits: number } {
  return { code: HUFFMAN.codes[symbol], bits: HUFFMAN_LENGTHS[symbol] };
}

/** Decodes a Huffman-coded string (as latin1, one char per byte). */
export function decodeHuffman(bytes: Buffer, start: number, end: number): string {
  const { firstCode, count, offset, symbols } = HUFFMAN;
  const out: number[] = [];
  let code = 0;
  let bits = 0;
  for (let at = start; at < end; at += 1) {
    const byte = bytes[at];
    for (let bit = 7; bit >= 0; bit -= 1) {
      code = (code << 1) | ((byte >> bit) & 1);
      bits += 1;
      const index = code - firstCode[bits];
      if (index >= 0 && index < count[bits]) {
        const symbol = symbols[offset[bits] + index];
        if (symbol === EOS) throw new HpackError('Huffman string contains EOS');
        out.push(symbol);
        code = 0;
        bits = 0;
      } else if (bits >= MAX_CODE_BITS) {
        throw new HpackError('invalid Huffman code');
      }
    }
  }
  // Padding: fewer than 8 bits, all ones (the most significant bits of EOS).
  if (bits > 7 || code !== (1 << bits) - 1) throw new HpackError('invalid Huffman padding');
  return String.fromCharCode(...out);
}

/** Encodes `value` (latin1) with the Huffman code (tests; this server sends literals raw). */
export function encodeHuffman(value: string): Buffer {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < value.length; i += 1) {
    const symbol = value.charCodeAt(i) & 0xff;
    let length = HUFFMAN_LENGTHS[symbol];
    const code = HUFFMAN.codes[symbol];
    while (length > 0) {
      const take = Math.min(length, 8 - bits);
      acc = (acc << take) | ((code >>> (length - take)) & ((1 << take) - 1));
      bits += take;
      length -= take;
      if (bits === 8) {
        out.push(acc & 0xff);
        acc = 0;
        bits = 0;
      }
    }
  }
  if (bits > 0) out.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) & 0xff);
  return Buffer.from(out);
}

/** RFC 7541 §4.1: an entry's size is its name and value lengths plus 32. */
const ENTRY_OVERHEAD = 32;

/**
 * A decoded header list: names lower-case as received, in order. A field taken whole from a table
 * is that table's own pair (shared, never to be modified).
 */
export type HeaderList = Array<readonly [string, string]>;

/**
 * One direction's decoder (the requests a client sends on one connection). Stateful: blocks must
 * be decoded in the order they arrived, each whole (HEADERS plus its CONTINUATIONs).
 */
export class HpackDecoder {
  /** Dynamic table, newest first. */
  #entries: Array<readonly [string, string]> = [];
  #size = 0;
  /** What the peer's size updates may raise the table to (our SETTINGS_HEADER_TABLE_SIZE). */
  readonly #limit: number;
  /** The table's current maximum (the last size update, initially the limit). */
  #max: number;
  /** The block being decoded and the position in it (only during decode()). */
  #block: Buffer = EMPTY;
  #at = 0;

  constructor(limit = 4096) {
    this.#limit = limit;
    this.#max = limit;
  }

  /** Bytes the dynamic table holds (tests). */
  get tableSize(): number {
    return this.#size;
  }

  /**
   * Decodes one header block. A list larger than `maxHeaderListBytes` throws
   * {@link HeaderListTooLargeError} only after the whole block was decoded (the table stays in step).
   */
  decode(block: Buffer, maxHeaderListBytes: number): HeaderList {
    const list: HeaderList = [];
    let listBytes = 0;
    let first = true;
    this.#block = block;
    this.#at = 0;
    try {
      while (this.#at < block.length) {
        const byte = block[this.#at];
        let field: readonly [string, string];
        if ((byte & 0x80) !== 0) {
          field = this.#entry(this.#readInteger(7));
        } else if ((byte & 0xe0) === 0x20) {
          // Dynamic table size update: only at the start of a block (RFC 7541 §4.2).
          if (!first) throw new HpackError('table size update after a field');
          const size = this.#readInteger(5);
          if (size > this.#limit) throw new HpackError(`table size ${size} above the limit ${this.#limit}`);
          this.#max = size;
          this.#evict(0);
          continue;
        } else {
          const indexing = (byte & 0xc0) === 0x40;
          const index = this.#readInteger(indexing ? 6 : 4);
          const name = index === 0 ? this.#readString() : this.#entry(index)[0];
          field = [name, this.#readString()];
          if (indexing) this.#add(field);
        }
        first = false;
        listBytes += field[0].length + field[1].length + ENTRY_OVERHEAD;
        list.push(field);
      }
    } finally {
      this.#block = EMPTY; // the block is not kept alive by the decoder
    }
    if (listBytes > maxHeaderListBytes) throw new HeaderListTooLargeError(`header list of ${listBytes} bytes above ${maxHeaderListBytes}`);
    return list;
  }

  #readInteger(prefixBits: number): number {
    const block = this.#block;
    const mask = (1 << prefixBits) - 1;
    let value = block[this.#at++] & mask;
    if (value < mask) return value;
    let shift = 0;
    for (;;) {
      if (this.#at >= block.length) throw new HpackError('truncated integer');
      const byte = block[this.#at++];
      value += (byte & 0x7f) * 2 ** shift;
      shift += 7;
      if ((byte & 0x80) === 0) break;
      if (shift > 21) throw new HpackError('integer too large');
    }
    return value;
  }

  #readString(): string {
    const block = this.#block;
    if (this.#at >= block.length) throw new HpackError('truncated string');
    const huffman = (block[this.#at] & 0x80) !== 0;
    const length = this.#readInteger(7);
    if (this.#at + length > block.length) throw new HpackError('truncated string');
    const start = this.#at;
    this.#at += length;
    return huffman ? decodeHuffman(block, start, this.#at) : block.toString('latin1', start, this.#at);
  }

  #entry(index: number): readonly [string, string] {
    if (index === 0) throw new HpackError('index 0');
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1];
    const dynamic = this.#entries[index - STATIC_TABLE.length - 1];
    if (dynamic === undefined) throw new HpackError(`index ${index} beyond the tables`);
    return dynamic;
  }

  #add(field: readonly [string, string]): void {
    const size = field[0].length + field[1].length + ENTRY_OVERHEAD;
    if (size > this.#max) {
      // Larger than the table: empties it and is not added (RFC 7541 §4.4).
      this.#entries = [];
      this.#size = 0;
      return;
    }
    this.#evict(size);
    this.#entries.unshift(field);
    this.#size += size;
  }

  /** Evicts the oldest entries until `room` more bytes fit. */
  #evict(room: number): void {
    while (this.#size + room > this.#max) {
      const oldest = this.#entries.pop();
      if (oldest === undefined) break;
      this.#size -= oldest[0].length + oldest[1].length + ENTRY_OVERHEAD;
    }
  }
}

function pushInteger(out: number[], value: number, prefixBits: number, pattern: number): void {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) {
    out.push(pattern | value);
    return;
  }
  out.push(pattern | mask);
  let rest = value - mask;
  while (rest >= 0x80) {
    out.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
}

function pushRawString(out: number[], value: string): void {
  const bytes = Buffer.from(value, 'latin1');
  pushInteger(out, bytes.length, 7, 0);
  for (const byte of bytes) out.push(byte);
}

/** Static-table indexes by name (first) and by name and value. */
const STATIC_BY_NAME = new Map<string, number>();
const STATIC_BY_PAIR = new Map<string, number>();
STATIC_TABLE.forEach(([name, value], i) => {
  if (!STATIC_BY_NAME.has(name)) STATIC_BY_NAME.set(name, i + 1);
  if (value !== '') STATIC_BY_PAIR.set(`${name}\0${value}`, i + 1);
});

/**
 * Encodes a header block without touching the peer's dynamic table: a static entry where one
 * matches exactly, otherwise a literal without indexing (the name indexed when the static table
 * has it). Stateless, so the result can be kept and sent again on any connection.
 */
export function encodeHeaderBlock(fields: Iterable<readonly [string, string]>): Buffer {
  const out: number[] = [];
  for (const [name, value] of fields) {
    const pair = STATIC_BY_PAIR.get(`${name}\0${value}`);
    if (pair !== undefined) {
      pushInteger(out, pair, 7, 0x80);
      continue;
    }
    const nameIndex = STATIC_BY_NAME.get(name);
    if (nameIndex !== undefined) {
      pushInteger(out, nameIndex, 4, 0x00);
    } else {
      out.push(0x00);
      pushRawString(out, name);
    }
    pushRawString(out, value);
  }
  return Buffer.from(out);
}

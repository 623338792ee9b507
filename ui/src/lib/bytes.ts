/**
 * Bytes as the JSON gateway carries them (standard padded base64) and as people read them
 * (UTF-8 text, hex). Keys and values stay bytes end to end: a key that is not UTF-8 is shown
 * lossily but always sent back exactly as read.
 */

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });
const lossyDecoder = new TextDecoder('utf-8');

/** UTF-8 bytes of a text. */
export function utf8(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Standard padded base64 (what etcd's gateway reads) of some bytes. */
export function toBase64(bytes: Uint8Array): string {
  let binary = '';
  for (let at = 0; at < bytes.length; at += 0x8000) binary += String.fromCharCode(...bytes.subarray(at, at + 0x8000));
  return btoa(binary);
}

/** Bytes of a base64 field; a missing field (the gateway omits empty values) is empty. */
export function fromBase64(text: string | undefined): Uint8Array {
  if (text === undefined || text === '') return new Uint8Array(0);
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let index = 0; index < binary.length; index++) bytes[index] = binary.charCodeAt(index);
  return bytes;
}

/** The text of UTF-8 bytes, or undefined when they are not valid UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return strictDecoder.decode(bytes);
  } catch (error: unknown) {
    void error; // Not UTF-8: the caller shows hex.
    return undefined;
  }
}

/** The text of bytes for display (invalid sequences become U+FFFD). */
export function displayText(bytes: Uint8Array): string {
  return lossyDecoder.decode(bytes);
}

/** Lowercase hex, two digits per byte, no separators. */
export function toHex(bytes: Uint8Array): string {
  let out = '';
  for (const byte of bytes) out += byte.toString(16).padStart(2, '0');
  return out;
}

/** Bytes of a hex text (whitespace ignored); throws on odd length or a non-hex digit. */
export function fromHex(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, '');
  if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) throw new Error('hex needs pairs of digits 0-9, a-f');
  const bytes = new Uint8Array(clean.length / 2);
  for (let index = 0; index < bytes.length; index++) bytes[index] = parseInt(clean.slice(index * 2, index * 2 + 2), 16);
  return bytes;
}

/** A hexdump: 16 bytes a line, offset, hex and printable ASCII. */
export function hexDump(bytes: Uint8Array, maxBytes = 64 * 1024): string {
  const lines: string[] = [];
  const shown = bytes.subarray(0, maxBytes);
  for (let at = 0; at < shown.length; at += 16) {
    const row = shown.subarray(at, at + 16);
    const hex = [...row].map((byte) => byte.toString(16).padStart(2, '0')).join(' ');
    const ascii = [...row].map((byte) => (byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : '.')).join('');
    lines.push(`${at.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  if (bytes.length > shown.length) lines.push(`… ${bytes.length - shown.length} more bytes`);
  return lines.join('\n');
}

/**
 * The range end that covers every key starting with `prefix` (etcd's prefix end: the last byte
 * below 0xff incremented, trailing 0xff dropped). The empty prefix, and a prefix of only 0xff
 * bytes, give [0]: with key [0] that is "every key" in etcd's range convention.
 */
export function prefixEnd(prefix: Uint8Array): Uint8Array {
  for (let index = prefix.length - 1; index >= 0; index--) {
    if (prefix[index] < 0xff) {
      const end = prefix.slice(0, index + 1);
      end[index] += 1;
      return end;
    }
  }
  return new Uint8Array([0]);
}

/** Byte-wise order, as etcd sorts keys. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let index = 0; index < length; index++) if (a[index] !== b[index]) return a[index] - b[index];
  return a.length - b.length;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return compareBytes(a, b) === 0;
}

export function startsWith(bytes: Uint8Array, prefix: Uint8Array): boolean {
  if (prefix.length > bytes.length) return false;
  for (let index = 0; index < prefix.length; index++) if (bytes[index] !== prefix[index]) return false;
  return true;
}

/** Where `needle` first occurs in `haystack` at or after `from`, or -1. */
export function indexOfBytes(haystack: Uint8Array, needle: Uint8Array, from = 0): number {
  if (needle.length === 0) return -1;
  outer: for (let at = from; at + needle.length <= haystack.length; at++) {
    for (let index = 0; index < needle.length; index++) if (haystack[at + index] !== needle[index]) continue outer;
    return at;
  }
  return -1;
}

/** The key right after `key` in etcd's order (key + 0x00): where a scan continues. */
export function keySuccessor(key: Uint8Array): Uint8Array {
  const next = new Uint8Array(key.length + 1);
  next.set(key);
  return next;
}

export function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

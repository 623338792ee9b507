/**
 * A JSON reader that fails the way etcd's JSON gateway does. etcd 3.4's grpc-gateway reads
 * request bodies with Go's encoding/json Decoder, so clients see Go's error texts ("invalid
 * character 'b' looking for beginning of object key string", "unexpected EOF"); this reader
 * produces the same texts for the same inputs, keeps numbers as their source text (int64 values
 * must not pass through a double), and reads one value at a time from a buffer that may hold
 * several (a watch body holds requests back to back).
 *
 * Pure: no I/O. Nesting is bounded ({@link GO_JSON_DEPTH_MAX}, Go's limit).
 */

/** A JSON value with numbers kept as their text. */
export type GoJsonValue = null | boolean | string | GoJsonNumber | GoJsonValue[] | GoJsonObject;
export interface GoJsonNumber {
  readonly number: string;
}
/** Object members in source order (a later duplicate key wins when converted). */
export interface GoJsonObject {
  readonly members: ReadonlyArray<readonly [string, GoJsonValue]>;
}

/** Go's encoding/json nesting limit. */
export const GO_JSON_DEPTH_MAX = 10_000;

/** A syntax error with Go's text. */
export class GoJsonSyntaxError extends Error {
  override name = 'GoJsonSyntaxError';
}

/** Outcome of reading one value from the front of a buffer. */
export type GoJsonRead =
  | { readonly kind: 'value'; readonly value: GoJsonValue; readonly end: number }
  /** Only whitespace before the end of the buffer. */
  | { readonly kind: 'empty' }
  /** The value is not complete yet: more bytes may finish it (at the real end: "unexpected EOF"). */
  | { readonly kind: 'incomplete' };

class Incomplete {}
const INCOMPLETE = new Incomplete();

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

/** Go's quoteChar: how a byte appears in a syntax error. */
function quoteChar(c: number): string {
  if (c === 0x27) return "'\\''";
  if (c === 0x22) return '\'"\'';
  const text = JSON.stringify(String.fromCharCode(c)).slice(1, -1);
  return `'${text}'`;
}

/**
 * Reads the first JSON value of `text` starting at `offset` (whitespace first is skipped).
 * Throws GoJsonSyntaxError on a syntax error; answers 'incomplete' when the text ends inside the
 * value.
 */
export function readGoJson(text: string, offset = 0): GoJsonRead {
  let at = offset;
  while (at < text.length && isSpace(text.charCodeAt(at))) at += 1;
  if (at >= text.length) return { kind: 'empty' };
  const parser = new Parser(text, at);
  try {
    const value = parser.value('looking for beginning of value', 0);
    return { kind: 'value', value, end: parser.at };
  } catch (error: unknown) {
    if (error instanceof Incomplete) return { kind: 'incomplete' };
    throw error;
  }
}

/** Reads exactly one value from a whole body as the gateway's unary decoder: empty → undefined. */
export function parseGoJsonBody(text: string): GoJsonValue | undefined {
  const read = readGoJson(text);
  if (read.kind === 'empty') return undefined;
  if (read.kind === 'incomplete') throw new GoJsonSyntaxError('unexpected EOF');
  return read.value;
}

class Parser {
  readonly #text: string;
  at: number;

  constructor(text: string, at: number) {
    this.#text = text;
    this.at = at;
  }

  #peek(): number {
    if (this.at >= this.#text.length) throw INCOMPLETE;
    return this.#text.charCodeAt(this.at);
  }

  #skipSpace(): void {
    while (this.at < this.#text.length && isSpace(this.#text.charCodeAt(this.at))) this.at += 1;
  }

  #fail(c: number, context: string): never {
    throw new GoJsonSyntaxError(`invalid character ${quoteChar(c)} ${context}`);
  }

  value(context: string, depth: number): GoJsonValue {
    this.#skipSpace();
    const c = this.#peek();
    if (depth > GO_JSON_DEPTH_MAX) throw new GoJsonSyntaxError(`exceeded max depth`);
    switch (c) {
      case 0x7b: return this.#object(depth);
      case 0x5b: return this.#array(depth);
      case 0x22: return this.#string();
      case 0x74: this.#literal('true'); return true;
      case 0x66: this.#literal('false'); return false;
      case 0x6e: this.#literal('null'); return null;
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.#number();
        this.#fail(c, context);
    }
  }

  #literal(word: string): void {
    this.at += 1;
    for (let i = 1; i < word.length; i++) {
      const c = this.#peek();
      if (c !== word.charCodeAt(i)) this.#fail(c, `in literal ${word} (expecting ${quoteChar(word.charCodeAt(i))})`);
      this.at += 1;
    }
  }

  #object(depth: number): GoJsonObject {
    this.at += 1;
    const members: Array<[string, GoJsonValue]> = [];
    this.#skipSpace();
    let c = this.#peek();
    if (c === 0x7d) {
      this.at += 1;
      return { members };
    }
    for (;;) {
      this.#skipSpace();
      c = this.#peek();
      if (c !== 0x22) this.#fail(c, 'looking for beginning of object key string');
      const key = this.#string();
      this.#skipSpace();
      c = this.#peek();
      if (c !== 0x3a) this.#fail(c, 'after object key');
      this.at += 1;
      members.push([key, this.value('looking for beginning of value', depth + 1)]);
      this.#skipSpace();
      c = this.#peek();
      this.at += 1;
      if (c === 0x2c) continue;
      if (c === 0x7d) return { members };
      this.at -= 1;
      this.#fail(c, 'after object key:value pair');
    }
  }

  #array(depth: number): GoJsonValue[] {
    this.at += 1;
    const items: GoJsonValue[] = [];
    this.#skipSpace();
    if (this.#peek() === 0x5d) {
      this.at += 1;
      return items;
    }
    for (;;) {
      items.push(this.value('looking for beginning of value', depth + 1));
      this.#skipSpace();
      const c = this.#peek();
      this.at += 1;
      if (c === 0x2c) continue;
      if (c === 0x5d) return items;
      this.at -= 1;
      this.#fail(c, 'after array element');
    }
  }

  #string(): string {
    const start = this.at;
    this.at += 1;
    let plain = true;
    for (;;) {
      const c = this.#peek();
      if (c === 0x22) {
        this.at += 1;
        const raw = this.#text.slice(start, this.at);
        return plain ? raw.slice(1, -1) : (JSON.parse(raw) as string);
      }
      if (c < 0x20) this.#fail(c, 'in string literal');
      if (c === 0x5c) {
        plain = false;
        this.at += 1;
        const e = this.#peek();
        if (e === 0x75) {
          this.at += 1;
          for (let i = 0; i < 4; i++) {
            const h = this.#peek();
            const hex = (h >= 0x30 && h <= 0x39) || (h >= 0x41 && h <= 0x46) || (h >= 0x61 && h <= 0x66);
            if (!hex) this.#fail(h, 'in \\u hexadecimal character escape');
            this.at += 1;
          }
          continue;
        }
        if (!'"\\/bfnrt'.includes(String.fromCharCode(e))) this.#fail(e, 'in string escape code');
      }
      this.at += 1;
    }
  }

  #number(): GoJsonNumber {
    const start = this.at;
    let c = this.#peek();
    if (c === 0x2d) {
      this.at += 1;
      c = this.#peek();
      if (!(c >= 0x30 && c <= 0x39)) this.#fail(c, 'in numeric literal');
    }
    const digits = (): void => {
      while (this.at < this.#text.length) {
        const d = this.#text.charCodeAt(this.at);
        if (d < 0x30 || d > 0x39) return;
        this.at += 1;
      }
    };
    if (c === 0x30) this.at += 1;
    else digits();
    // A number at the very end of the buffer may go on in the next chunk (only matters for
    // top-level numbers, which no request body is).
    if (this.at >= this.#text.length) throw INCOMPLETE;
    c = this.#text.charCodeAt(this.at);
    if (c === 0x2e) {
      this.at += 1;
      c = this.#peek();
      if (!(c >= 0x30 && c <= 0x39)) this.#fail(c, 'after decimal point in numeric literal');
      digits();
      if (this.at >= this.#text.length) throw INCOMPLETE;
      c = this.#text.charCodeAt(this.at);
    }
    if (c === 0x65 || c === 0x45) {
      this.at += 1;
      c = this.#peek();
      if (c === 0x2b || c === 0x2d) {
        this.at += 1;
        c = this.#peek();
      }
      if (!(c >= 0x30 && c <= 0x39)) this.#fail(c, 'in exponent of numeric literal');
      digits();
    }
    return { number: this.#text.slice(start, this.at) };
  }
}

/** Go's base64.StdEncoding.DecodeString, with its error offsets ("illegal base64 data at input byte N"). */
export function decodeGoBase64(text: string): Buffer {
  const out: number[] = [];
  let si = 0;
  const corrupt = (offset: number): never => {
    throw new GoJsonSyntaxError(`illegal base64 data at input byte ${offset}`);
  };
  while (si < text.length) {
    const quantum: number[] = [];
    let dlen = 4;
    for (let j = 0; j < 4; j++) {
      if (si === text.length) {
        if (j === 0) return Buffer.from(out);
        corrupt(si - j);
      }
      const ch = text.charCodeAt(si);
      si += 1;
      const value = BASE64_VALUES[ch] ?? -1;
      if (value >= 0) {
        quantum.push(value);
        continue;
      }
      if (ch === 0x0a || ch === 0x0d) {
        j -= 1;
        continue;
      }
      if (ch !== 0x3d) corrupt(si - 1);
      // padding
      if (j === 0 || j === 1) corrupt(si - 1);
      if (j === 2) {
        while (si < text.length && (text.charCodeAt(si) === 0x0a || text.charCodeAt(si) === 0x0d)) si += 1;
        if (si === text.length) corrupt(text.length);
        if (text.charCodeAt(si) !== 0x3d) corrupt(si - 1);
        si += 1;
      }
      while (si < text.length && (text.charCodeAt(si) === 0x0a || text.charCodeAt(si) === 0x0d)) si += 1;
      if (si < text.length) corrupt(si);
      dlen = j;
      break;
    }
    while (quantum.length < 4) quantum.push(0);
    const val = (quantum[0] << 18) | (quantum[1] << 12) | (quantum[2] << 6) | quantum[3];
    const bytes = [(val >> 16) & 0xff, (val >> 8) & 0xff, val & 0xff];
    for (let i = 0; i < dlen - 1; i++) out.push(bytes[i]);
    if (dlen < 4) break;
  }
  return Buffer.from(out);
}

const BASE64_VALUES: Record<number, number> = {};
'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'.split('').forEach((ch, index) => {
  BASE64_VALUES[ch.charCodeAt(0)] = index;
});

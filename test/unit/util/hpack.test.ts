/**
 * HPACK (src/util/h2/hpack.ts) against RFC 7541: the Huffman code's known codes and the spec's
 * examples (Appendix C), the dynamic table's sizes and evictions, malformed blocks, and blocks this
 * side encodes decoding back.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HeaderListTooLargeError, HpackDecoder, HpackError, decodeHuffman, encodeHeaderBlock, encodeHuffman, huffmanCode } from '../../../src/util/h2/hpack.js';

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');
const BIG = 1 << 20;

test('Huffman codes are RFC 7541 Appendix B\'s', () => {
  assert.deepEqual(huffmanCode(0), { code: 0x1ff8, bits: 13 });
  assert.deepEqual(huffmanCode(32), { code: 0x14, bits: 6 }); // ' '
  assert.deepEqual(huffmanCode(48), { code: 0x0, bits: 5 }); // '0'
  assert.deepEqual(huffmanCode(97), { code: 0x3, bits: 5 }); // 'a'
  assert.deepEqual(huffmanCode(123), { code: 0x7ffe, bits: 15 }); // '{'
  assert.deepEqual(huffmanCode(255), { code: 0x3ffffee, bits: 26 });
  assert.deepEqual(huffmanCode(256), { code: 0x3fffffff, bits: 30 }); // EOS
});

test('Huffman strings: the spec\'s examples and random round trips', () => {
  const examples: Array<[string, string]> = [
    ['www.example.com', 'f1e3 c2e5 f23a 6ba0 ab90 f4ff'],
    ['no-cache', 'a8eb 1064 9cbf'],
    ['custom-key', '25a8 49e9 5ba9 7d7f'],
    ['custom-value', '25a8 49e9 5bb8 e8b4 bf'],
    ['302', '6402'],
    ['private', 'aec3 771a 4b'],
  ];
  for (const [text, coded] of examples) {
    assert.deepEqual(encodeHuffman(text), hex(coded), text);
    const bytes = hex(coded);
    assert.equal(decodeHuffman(bytes, 0, bytes.length), text);
  }
  let seed = 7;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  for (let i = 0; i < 300; i += 1) {
    const text = String.fromCharCode(...Array.from({ length: random() % 40 }, () => random() % 256));
    const coded = encodeHuffman(text);
    assert.equal(decodeHuffman(coded, 0, coded.length), text);
  }
});

test('malformed Huffman strings are refused: EOS inside, padding of zeros or longer than 7 bits', () => {
  // 'a' (00011) then EOS (30 ones): EOS must never be decoded.
  const withEos = Buffer.from([0b00011111, 0xff, 0xff, 0xff, 0b11111111]);
  assert.throws(() => decodeHuffman(withEos, 0, withEos.length), HpackError);
  // 'a' padded with zeros.
  assert.throws(() => decodeHuffman(Buffer.from([0b00011000]), 0, 1), HpackError);
  // 'a' then a whole byte of ones: padding longer than 7 bits.
  assert.throws(() => decodeHuffman(Buffer.from([0b00011111, 0xff]), 0, 2), HpackError);
});

test('RFC 7541 C.3 and C.4: three requests on one connection, with and without Huffman', () => {
  for (const blocks of [
    ['8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d', '8286 84be 5808 6e6f 2d63 6163 6865', '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65'],
    ['8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff', '8286 84be 5886 a8eb 1064 9cbf', '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'],
  ]) {
    const decoder = new HpackDecoder();
    assert.deepEqual(decoder.decode(hex(blocks[0]), BIG), [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com']]);
    assert.equal(decoder.tableSize, 57);
    assert.deepEqual(decoder.decode(hex(blocks[1]), BIG), [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'], ['cache-control', 'no-cache']]);
    assert.equal(decoder.tableSize, 110);
    assert.deepEqual(decoder.decode(hex(blocks[2]), BIG), [[':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'], ['custom-key', 'custom-value']]);
    assert.equal(decoder.tableSize, 164);
  }
});

test('RFC 7541 C.5: responses with a 256-byte table evict the oldest entries', () => {
  const decoder = new HpackDecoder(256);
  decoder.decode(hex('4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d'), BIG);
  assert.equal(decoder.tableSize, 222);
  assert.deepEqual(decoder.decode(hex('4803 3330 37c1 c0bf'), BIG), [[':status', '307'], ['cache-control', 'private'], ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'], ['location', 'https://www.example.com']]);
  assert.equal(decoder.tableSize, 222);
});

test('malformed blocks throw HpackError: index 0, beyond the tables, truncated, a size update above the limit or after a field', () => {
  const decoder = (): HpackDecoder => new HpackDecoder();
  assert.throws(() => decoder().decode(Buffer.from([0x80]), BIG), HpackError);
  assert.throws(() => decoder().decode(Buffer.from([0xbe]), BIG), HpackError); // 62: the dynamic table is empty
  assert.throws(() => decoder().decode(Buffer.from([0x40, 0x05, 0x61]), BIG), HpackError);
  assert.throws(() => decoder().decode(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), BIG), HpackError);
  assert.throws(() => decoder().decode(Buffer.from([0x3f, 0xe2, 0x1f]), BIG), HpackError); // size update to 4,097
  assert.throws(() => decoder().decode(Buffer.from([0x82, 0x20]), BIG), HpackError);
  // A size update to 0 at the start empties the table.
  const shrinking = decoder();
  shrinking.decode(hex('4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf'), BIG);
  assert.equal(shrinking.tableSize, 54);
  shrinking.decode(Buffer.from([0x20, 0x82]), BIG);
  assert.equal(shrinking.tableSize, 0);
});

test('a header list over the limit throws HeaderListTooLargeError after updating the table', () => {
  const decoder = new HpackDecoder();
  const block = hex('4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf');
  assert.throws(() => decoder.decode(block, 50), HeaderListTooLargeError);
  assert.equal(decoder.tableSize, 54, 'the table stays in step with the encoder');
  assert.deepEqual(decoder.decode(Buffer.from([0xbe]), 100), [['custom-key', 'custom-value']]);
});

test('blocks this side encodes decode back, with static entries where they match', () => {
  const fields: Array<[string, string]> = [[':status', '200'], ['content-type', 'application/grpc+proto'], ['grpc-status', '13'], ['grpc-message', 'a%20b'], ['x-long', 'v'.repeat(300)]];
  const block = encodeHeaderBlock(fields);
  assert.equal(block[0], 0x88, ':status 200 is static entry 8');
  assert.deepEqual(new HpackDecoder().decode(block, BIG), fields);
  const decoder = new HpackDecoder();
  decoder.decode(block, BIG);
  assert.equal(decoder.tableSize, 0, 'nothing is added to the peer\'s table');
});

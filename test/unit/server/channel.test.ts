// Goal: the front-end channel reads a large frame without copying it again for every chunk that
// brings it in (an 80 MB revision, a million deletes, arriving in 64 KiB pieces took a front-end
// 80 s, its clients unanswered meanwhile), and still decodes every frame, in order, however the
// bytes are cut: frames split inside their length prefix, several frames in one chunk.
// Method: frames written into a PassThrough that stands for the socket, in chunks of chosen
// sizes; Buffer.concat is counted while they arrive. Before: every chunk of an incomplete frame
// joined everything received so far (about 500 copies of 2 MB on average for a 4 MB frame).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { Channel, type ChannelMessage } from '../../../src/server/frontends/channel.js';

function frame(messages: readonly ChannelMessage[]): Buffer {
  const body = Channel.encode(messages);
  const header = Buffer.alloc(4);
  header.writeUInt32LE(body.byteLength, 0);
  return Buffer.concat([header, body]);
}

function cut(bytes: Buffer, sizes: (at: number) => number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let at = 0; at < bytes.length;) {
    const size = Math.max(1, sizes(at));
    chunks.push(bytes.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

function receive(chunks: readonly Buffer[]): { messages: ChannelMessage[]; copiedBytes: number } {
  const socket = new PassThrough();
  const channel = new Channel(socket);
  const messages: ChannelMessage[] = [];
  channel.onMessage((message) => messages.push(message));
  const concat = Buffer.concat;
  let copiedBytes = 0;
  Buffer.concat = (list: readonly Uint8Array[], totalLength?: number): Buffer<ArrayBuffer> => {
    const joined = concat(list, totalLength);
    copiedBytes += joined.length;
    return joined;
  };
  try {
    for (const chunk of chunks) socket.emit('data', chunk);
  } finally {
    Buffer.concat = concat;
  }
  return { messages, copiedBytes };
}

test('a large frame arriving in small chunks is joined once', () => {
  const payload = new Uint8Array(4 * 1024 * 1024).fill(7);
  const bytes = frame([{ t: 'revisions', b: payload }]);
  const { messages, copiedBytes } = receive(cut(bytes, () => 4096));
  assert.equal(messages.length, 1);
  assert.ok(Buffer.from(messages[0].b as Uint8Array).equals(payload), 'the payload arrives whole');
  assert.ok(copiedBytes <= 2 * bytes.length, `bytes copied while reading: ${copiedBytes} for a frame of ${bytes.length}`);
});

test('frames are decoded in order however the bytes are cut', () => {
  const sent = Array.from({ length: 50 }, (_, i) => ({ t: 'result', id: i, v: 'x'.repeat(i * 37) }));
  const bytes = Buffer.concat(sent.map((message) => frame([message])));
  for (const sizes of [() => 1, () => 3, (at: number) => (at % 7) + 1, () => 1000, () => bytes.length]) {
    const { messages } = receive(cut(bytes, sizes));
    assert.deepEqual(messages, sent);
  }
});

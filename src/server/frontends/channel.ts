/**
 * The channel between a member's core process and one front-end process: a private socketpair
 * (fd 4 of the front-end) carrying length-prefixed msgpack frames.
 *
 * Frame: u32 little-endian length, then one msgpack value: an array of messages (messages sent in
 * one turn of the event loop are coalesced into one frame, and that frame goes out with any
 * pre-encoded broadcast of the same turn in one write, so a burst of requests costs one syscall
 * each way: a write that wakes the other process is dear on a VM). Messages are plain objects
 * with a `t` tag (see protocol.ts). 64-bit values travel as bigint and come back as bigint
 * (msgpackr int64AsType 'bigint'); numbers travel as numbers. Byte arrays travel as msgpack bin and come back as Uint8Array (views into the frame).
 *
 * Bounds: a frame larger than MAX_FRAME_BYTES is a protocol error (the channel closes); the
 * bytes written but not yet taken by the kernel are reported through `backlogBytes` so the owner
 * can refuse or shed load.
 */
import type { Duplex } from 'node:stream';
import { Packr } from 'msgpackr';

/** Largest frame accepted (a RangeStream page or a Range response page stays far below). */
export const MAX_FRAME_BYTES = 256 * 1024 * 1024;

const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true, moreTypes: false, largeBigIntToFloat: false });

/** A tagged message. */
export interface ChannelMessage {
  readonly t: string;
  readonly [field: string]: unknown;
}

export class Channel {
  readonly #socket: Duplex;
  #pending: ChannelMessage[] = [];
  /** Frames (length, body) waiting for the next flush, in order. */
  #frames: Uint8Array[] = [];
  #flushScheduled = false;
  /** Messages sent (send) wait in #pending behind the frames of sendEncoded until release(). */
  #held = false;
  /**
   * Bytes received and not yet decoded, as they came; joined only once they hold #needed bytes.
   * Joining them on every chunk copied a large frame again for each of its chunks: an 80 MB
   * revision (a million deletes) arriving in 64 KiB pieces took a front-end 80 s to read.
   */
  #chunks: Buffer[] = [];
  #chunkBytes = 0;
  /** Bytes the next frame needs in #chunks: its length prefix (4), then the whole frame. */
  #needed = 4;
  #closed = false;
  #onMessage: (message: ChannelMessage) => void = () => undefined;
  #onClose: (reason: string) => void = () => undefined;

  constructor(socket: Duplex) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (error: Error) => this.#close(`channel error: ${error.message}`));
    socket.on('close', () => this.#close('channel closed'));
  }

  /** Handler of every incoming message, in order. */
  onMessage(handler: (message: ChannelMessage) => void): void {
    this.#onMessage = handler;
  }

  /** Called once when the channel closes (peer gone, error, protocol violation). */
  onClose(handler: (reason: string) => void): void {
    this.#onClose = handler;
  }

  /** Bytes handed to the socket and not yet written to the kernel. */
  get backlogBytes(): number {
    return this.#socket.writableLength;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Queues a message; messages queued in one turn go out as one frame. */
  send(message: ChannelMessage): void {
    if (this.#closed) return;
    this.#pending.push(message);
    this.#scheduleFlush();
  }

  #scheduleFlush(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => this.#flush());
  }

  /**
   * Queues an already encoded frame body (an array of messages packed once, e.g. a broadcast),
   * after the messages queued before it (but those held, see hold()); it goes out with them, in the
   * same write.
   */
  sendEncoded(body: Uint8Array): void {
    if (this.#closed) return;
    if (!this.#held) this.#packPending();
    this.#queueFrame(body);
    this.#scheduleFlush();
  }

  /**
   * From now until release(), messages sent with send() wait behind the frames queued with
   * sendEncoded (a broadcast sent in parts over several turns goes out whole before them); what
   * was sent before goes out first.
   */
  hold(): void {
    this.#packPending();
    this.#held = true;
  }

  /** Ends hold(): the messages held go out after the frames queued meanwhile. */
  release(): void {
    this.#held = false;
    this.#scheduleFlush();
  }

  /** Encodes messages as one frame body (for sendEncoded to several channels). */
  static encode(messages: readonly ChannelMessage[]): Uint8Array {
    return packr.pack(messages);
  }

  /** The messages of a frame body (what the receiving channel hands to onMessage; tests). */
  static decode(body: Uint8Array): ChannelMessage[] {
    return packr.unpack(body) as ChannelMessage[];
  }

  close(): void {
    this.#held = false;
    this.#flush();
    this.#close('closed by owner');
    this.#socket.end();
  }

  /** Everything queued in one write (one syscall: a write to the other process wakes it, costly here). */
  #flush(): void {
    this.#flushScheduled = false;
    if (!this.#held) this.#packPending();
    const frames = this.#frames;
    if (frames.length === 0 || this.#closed) return;
    this.#frames = [];
    this.#socket.cork();
    for (const buffer of frames) this.#socket.write(buffer);
    this.#socket.uncork();
  }

  /** The messages sent since the last frame, packed as the next frame. */
  #packPending(): void {
    if (this.#pending.length === 0) return;
    const messages = this.#pending;
    this.#pending = [];
    this.#queueFrame(packr.pack(messages));
  }

  #queueFrame(body: Uint8Array): void {
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32LE(body.byteLength, 0);
    this.#frames.push(header, body);
  }

  #onData(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#chunkBytes += chunk.length;
    if (this.#chunkBytes < this.#needed) return;
    const buffered = this.#chunks.length === 1 ? this.#chunks[0] : Buffer.concat(this.#chunks, this.#chunkBytes);
    let offset = 0;
    let needed = 4;
    while (buffered.length - offset >= 4) {
      const length = buffered.readUInt32LE(offset);
      if (length > MAX_FRAME_BYTES) {
        this.#close(`frame of ${length} bytes exceeds the channel limit`);
        this.#socket.destroy();
        return;
      }
      if (buffered.length - offset - 4 < length) {
        needed = 4 + length;
        break;
      }
      const body = buffered.subarray(offset + 4, offset + 4 + length);
      offset += 4 + length;
      let messages: unknown;
      try {
        messages = packr.unpack(body);
      } catch (error: unknown) {
        this.#close(`undecodable frame: ${error instanceof Error ? error.message : String(error)}`);
        this.#socket.destroy();
        return;
      }
      if (!Array.isArray(messages)) {
        this.#close('frame is not a message list');
        this.#socket.destroy();
        return;
      }
      for (const message of messages) {
        if (this.#closed) return;
        this.#onMessage(message as ChannelMessage);
      }
    }
    const rest = buffered.subarray(offset);
    this.#chunks = rest.length === 0 ? [] : [rest];
    this.#chunkBytes = rest.length;
    this.#needed = needed;
  }

  #close(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#pending = [];
    this.#frames = [];
    this.#onClose(reason);
  }
}

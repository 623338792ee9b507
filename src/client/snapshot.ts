/**
 * Maintenance.Snapshot from the client side (etcd's clientv3 Maintenance.Snapshot and
 * clientv3/snapshot Save): a point-in-time copy of one member's backend, streamed from exactly
 * one endpoint (a snapshot is one member's state; etcdctl refuses several endpoints too).
 *
 * The stream is what etcd's server sends and etcdctl 3.4 expects: the backend bytes, then the
 * SHA-256 of everything before it, the whole being 32 bytes more than a multiple of 512. This
 * module knows nothing of the backend's format (kvd's or bbolt): it checks the framing and the
 * hash, so it works against kvd and etcd alike.
 *
 * Memory: the gRPC stream is read as the consumer pulls, so a slow consumer (a disk) slows the
 * server's reading down; at most the stream's buffer (16 messages) is held.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { bytesFromWire, decodeHeader, fromWire, type ResponseHeader } from './codec.js';
import { endpointTarget, type Connection } from './connection.js';
import { CancelledError, KvError, TimeoutError, toKvError } from './errors.js';

/** The SHA-256 trailer's size; a complete stream is this much more than a multiple of 512. */
export const SNAPSHOT_HASH_BYTES = 32;
const SNAPSHOT_ALIGN_BYTES = 512;

/** Progress of a snapshot download. */
export interface SnapshotProgress {
  readonly receivedBytes: number;
  /** Total announced by the server (first message: remaining + its blob); undefined before it. */
  readonly totalBytes: number | undefined;
  readonly elapsedMs: number;
}

/** Options of {@link SnapshotReader} and {@link saveSnapshot}. */
export interface SnapshotOptions {
  /** Stops the download; iteration then throws CancelledError. */
  readonly signal?: AbortSignal;
  /** Called after every received message. */
  readonly onProgress?: (progress: SnapshotProgress) => void;
  /** How long to wait for the endpoint to accept a connection (ms); default the client's dial timeout. */
  readonly dialTimeoutMs?: number;
}

/** What a finished download was. */
export interface SnapshotSaved {
  readonly path: string;
  readonly sizeBytes: number;
  /** The header of the first message (kvd: revision = the snapshot's point in time); undefined when the server sent none (etcd 3.4). */
  readonly header: ResponseHeader | undefined;
  readonly version: string;
  readonly durationMs: number;
}

/**
 * One Maintenance.Snapshot download, as an async iterable of the stream's bytes (trailer
 * included). When the stream ends, the framing and the SHA-256 are checked: a stream whose size
 * is not a multiple of 512 plus 32 throws etcdctl's `sha256 checksum not found [bytes: N]`, a
 * mismatch throws `expected sha256 …, got …`. Iterate once; breaking out cancels the call.
 */
export class SnapshotReader implements AsyncIterable<Buffer> {
  readonly #connection: Connection;
  readonly #endpoint: string;
  readonly #options: SnapshotOptions;
  #started = false;
  #header: ResponseHeader | undefined;
  #version = '';
  #receivedBytes = 0;
  #totalBytes: number | undefined;

  constructor(connection: Connection, endpoint: string, options: SnapshotOptions = {}) {
    this.#connection = connection;
    this.#endpoint = endpointTarget(endpoint);
    this.#options = options;
  }

  /** The first message's header (after the first chunk). */
  get header(): ResponseHeader | undefined {
    return this.#header;
  }

  /** The server's version (kvd sends it; etcd 3.4 does not). */
  get version(): string {
    return this.#version;
  }

  get receivedBytes(): number {
    return this.#receivedBytes;
  }

  /** Announced total (after the first chunk). */
  get totalBytes(): number | undefined {
    return this.#totalBytes;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer, void, undefined> {
    if (this.#started) throw new TypeError('snapshot: a SnapshotReader is iterated once');
    this.#started = true;
    const started = performance.now();
    const { signal } = this.#options;
    const aborted = (): boolean => signal?.aborted === true;
    if (aborted()) throw new CancelledError('internal', { detail: 'context canceled' });
    const ready = await this.#connection.waitForReady(this.#endpoint, Date.now() + (this.#options.dialTimeoutMs ?? this.#connection.dialTimeoutMs));
    if (!ready) throw new TimeoutError('timeout', { detail: 'context deadline exceeded' });
    await this.#connection.ensureToken();
    const stream = this.#connection.serverStream('Maintenance', 'Snapshot', this.#endpoint, {});
    const onAbort = (): void => stream.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    const hash = createHash('sha256');
    /** The newest bytes, held back from the hash until we know they are not the trailer. */
    let held = Buffer.alloc(0);
    let ended = false;
    try {
      for await (const raw of stream as AsyncIterable<Record<string, unknown>>) {
        const blob = bytesFromWire(raw.blob);
        if (this.#totalBytes === undefined) {
          this.#totalBytes = Number(fromWire(raw.remaining_bytes)) + blob.length;
          this.#header = raw.header == null ? undefined : decodeHeader(raw.header);
          this.#version = typeof raw.version === 'string' ? raw.version : '';
        }
        this.#receivedBytes += blob.length;
        const joined = held.length === 0 ? blob : Buffer.concat([held, blob]);
        const keep = Math.min(SNAPSHOT_HASH_BYTES, joined.length);
        hash.update(joined.subarray(0, joined.length - keep));
        held = Buffer.from(joined.subarray(joined.length - keep));
        this.#options.onProgress?.({ receivedBytes: this.#receivedBytes, totalBytes: this.#totalBytes, elapsedMs: performance.now() - started });
        if (blob.length > 0) yield blob;
      }
      ended = true;
    } catch (error: unknown) {
      if (aborted()) throw new CancelledError('internal', { detail: 'context canceled', cause: error });
      throw toKvError(error);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      if (!ended) (stream as grpc.ClientReadableStream<unknown>).cancel();
    }
    checkTrailer(this.#receivedBytes, hash.digest(), held);
  }
}

/** etcdctl's checks of a finished stream (clientv3/snapshot: hasChecksum), plus the hash itself. */
function checkTrailer(size: number, computed: Buffer, trailer: Buffer): void {
  if (size % SNAPSHOT_ALIGN_BYTES !== SNAPSHOT_HASH_BYTES) throw new KvError('corrupt', { detail: `sha256 checksum not found [bytes: ${size}]` });
  if (!computed.equals(trailer)) throw new KvError('corrupt', { detail: `expected sha256 ${goBytes(trailer)}, got ${goBytes(computed)}` });
}

/** Go's %v of a []byte. */
function goBytes(bytes: Buffer): string {
  return `[${[...bytes].join(' ')}]`;
}

/**
 * Downloads a snapshot into `path` the way etcdctl does (into `<path>.part`, renamed when
 * complete), and more safely: the checksum is verified and the file is fsynced before the
 * rename, and the directory after it, so `path` only ever names a complete, durable snapshot.
 * On failure the partial file is removed.
 */
export async function saveSnapshot(connection: Connection, endpoint: string, path: string, options: SnapshotOptions = {}): Promise<SnapshotSaved> {
  const started = performance.now();
  const partial = `${path}.part`;
  const reader = new SnapshotReader(connection, endpoint, options);
  const out = createWriteStream(partial, { mode: 0o600 });
  try {
    await once(out, 'open');
    for await (const chunk of reader) {
      if (!out.write(chunk)) await once(out, 'drain');
    }
    out.end();
    await once(out, 'finish');
    await syncPath(partial);
    await rename(partial, path);
    await syncPath(dirname(path));
  } catch (error: unknown) {
    out.destroy();
    await rm(partial, { force: true });
    throw error;
  }
  return { path, sizeBytes: reader.receivedBytes, header: reader.header, version: reader.version, durationMs: performance.now() - started };
}

async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

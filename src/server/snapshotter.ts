/**
 * Snapshots of one member (etcd's snapshot trigger, snapshot_merge.go and the receive side of
 * rafthttp): Raft snapshots taken every `--snapshot-count` applied entries (and after every conf
 * change, so a snapshot a leader sends always names the members it replicates to), the backend
 * streamed to a lagging follower, a received backend stored until Raft hands it out, and its
 * crash-safe install.
 *
 * Install order (crash safety): the received backend is written and fsynced next to the live one
 * (prepareRestore) → the live store is closed and the new one switched in (rename + parent
 * fsync) → the WAL snapshot marker is written (the node's persistMarker) → the old backend is
 * removed. A crash anywhere leaves a WAL that never names state the backend lacks; MvccStore.open
 * repairs an interrupted switch.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import type { Snapshot, SnapshotMessage } from '../raft/types.js';
import { MvccStore, readDump } from '../store/mvcc/index.js';
import { Lessor } from '../store/lease/lessor.js';
import { KvdError, errorMessage } from '../util/errors.js';
import { syncPath } from '../util/fsync.js';
import { isNoSpaceError } from '../wal/index.js';
import { isNoSpaceFailure } from '../store/mvcc/index.js';
import { retryPauseMs } from './disk-space.js';
import type { Logger } from './logger.js';
import type { ServerMetrics } from './metrics.js';
import type { MemberState } from './state.js';
import type { RaftNode } from './raft-node.js';
import { idToHex } from './ids.js';
import { fatal } from './fatal.js';

export interface SnapshotterOptions {
  readonly dataDir: string;
  readonly state: MemberState;
  readonly node: RaftNode;
  readonly logger: Logger;
  readonly metrics: ServerMetrics;
  /** Applied entries between two Raft snapshots (etcd --snapshot-count). */
  readonly snapshotCount: number;
  /** Entries kept in the log after a snapshot for slow followers. */
  readonly catchUpEntries: number;
  /** Opens the store at `path` (with the member's logger, limits and watch wiring). */
  readonly openStore: (path: string) => Promise<MvccStore>;
  /** Rebuilds the lessor from a store. */
  readonly restoreLessor: (store: MvccStore) => Lessor;
  /** The store was replaced (watchers, membership reload). */
  readonly onInstalled: (snapshot: Snapshot) => void;
}

/** Pause before a snapshot that failed for lack of space is tried again. */
const SNAPSHOT_RETRY_MS = 5_000;

export class Snapshotter {
  readonly #options: SnapshotterOptions;
  readonly #incoming = new Map<number, string>();
  /** Indexes whose snapshot is being received now (at most MAX_INBOUND_SNAPSHOTS of the transport). */
  readonly #receiving = new Set<number>();
  /** A snapshot is due right after the next applied batch (after a conf change). */
  #due = false;
  /** After a snapshot failed for lack of space: no new attempt before this time. */
  #retryAtMs = 0;

  constructor(options: SnapshotterOptions) {
    this.#options = options;
  }

  get #snapDir(): string {
    return join(this.#options.dataDir, 'member', 'snap');
  }

  get #dbPath(): string {
    return join(this.#options.dataDir, 'member', 'db');
  }

  /** Removes received snapshot data that a previous run never installed (it cannot be any more). */
  static async cleanIncoming(dataDir: string): Promise<void> {
    const dir = join(dataDir, 'member', 'snap');
    for (const name of await readdir(dir)) {
      if (/^incoming-\d+\.db$/.test(name)) await rm(join(dir, name), { force: true });
    }
  }

  /** Asks for a snapshot after the next applied batch (called when a conf change was applied). */
  requestSnapshot(): void {
    this.#due = true;
  }

  /**
   * After an applied batch: takes a Raft snapshot at `applied` when due. On a full disk the
   * snapshot is skipped (logged) and tried again after {@link SNAPSHOT_RETRY_MS}: the WAL keeps
   * every entry until one succeeds.
   */
  async maybeSnapshot(applied: number): Promise<void> {
    const node = this.#options.node;
    if (!this.#due && applied - node.snapshotIndex < this.#options.snapshotCount) return;
    if (applied <= node.snapshotIndex || Date.now() < this.#retryAtMs) return;
    const due = this.#due;
    this.#due = false;
    const store = this.#options.state.store;
    // The snapshot's data is only metadata: the backend itself is streamed when a follower needs it.
    const data = Buffer.from(JSON.stringify({ clusterId: idToHex(node.clusterId), revision: store.currentRevision }));
    let taken: { compactedTo: number; term: number };
    try {
      await store.sync();
      taken = await node.snapshotAt(applied, { data, catchUpEntries: this.#options.catchUpEntries });
    } catch (error: unknown) {
      if (!isNoSpaceError(error) && !isNoSpaceFailure(error)) throw error;
      this.#due = due;
      this.#retryAtMs = Date.now() + SNAPSHOT_RETRY_MS;
      this.#options.logger.warn({ event: 'snapshot-skipped', index: applied, error: errorMessage(error), retryInMs: SNAPSHOT_RETRY_MS }, 'no space left for a snapshot; keeping the log and trying again later');
      return;
    }
    this.#retryAtMs = 0;
    this.#options.metrics.snapshotsSaved.inc();
    this.#options.logger.info({ event: 'snapshot-saved', index: applied, term: taken.term, compactedTo: taken.compactedTo }, 'saved a snapshot and released the WAL below it');
  }

  /** The backend, streamed to a lagging follower (a fresh consistent dump per call). */
  snapshotData(): AsyncIterable<Uint8Array> {
    return this.#options.state.store.exportSnapshot();
  }

  /** Transport callback: stores the streamed backend next to the snapshots, then hands the message to Raft. */
  async receive(message: SnapshotMessage, data: AsyncIterable<Uint8Array>): Promise<void> {
    const index = message.snapshot.metadata.index;
    // Two streams for one index would write the same file: the second is refused.
    if (this.#receiving.has(index)) throw new Error(`a snapshot at index ${index} is already being received`);
    this.#receiving.add(index);
    try {
      await this.#receive(message, index, data);
    } finally {
      this.#receiving.delete(index);
    }
  }

  async #receive(message: SnapshotMessage, index: number, data: AsyncIterable<Uint8Array>): Promise<void> {
    const path = join(this.#snapDir, `incoming-${index}.db`);
    const out = createWriteStream(path);
    // A write still in flight when a broken stream makes us destroy `out` fails with
    // ERR_STREAM_DESTROYED as an 'error' event: without a listener that was an uncaught
    // exception that stopped the member (a truncated snapshot stream, found by the fuzzer).
    let writeError: unknown;
    out.on('error', (error: unknown) => {
      writeError ??= error;
    });
    // The dump is checked as it arrives (its records, count and CRC, as the install will read it):
    // a damaged one is refused here, and the leader sends it again, instead of stopping this
    // member when Raft hands it to install.
    const written = async function* (): AsyncGenerator<Uint8Array> {
      for await (const chunk of data) {
        if (writeError !== undefined) throw writeError;
        if (!out.write(chunk)) await once(out, 'drain');
        yield chunk;
      }
    };
    try {
      const dump = await readDump(written(), async () => undefined);
      if (writeError !== undefined) throw writeError;
      if (dump.consistentIndex < index) throw new KvdError('corrupt', { detail: `etcdserver: corrupt snapshot: backend at index ${dump.consistentIndex} for snapshot ${index}` });
      out.end();
      await once(out, 'finish');
      await syncPath(path);
    } catch (error: unknown) {
      if (error instanceof KvdError && error.code === 'corrupt') {
        this.#options.metrics.snapshotsRefused.inc();
        this.#options.logger.warn({ event: 'snapshot-refused', index, from: idToHex(message.from), term: message.term, error: errorMessage(error) }, 'refused a damaged snapshot; the leader sends it again');
      }
      // A broken or truncated stream: release the descriptor and the partial file.
      out.destroy();
      await rm(path, { force: true });
      throw error;
    }
    const node = this.#options.node;
    if (node.stopping) {
      await rm(path, { force: true });
      return;
    }
    this.#incoming.set(index, path);
    this.#options.logger.info({ event: 'snapshot-received', index, from: idToHex(message.from), term: message.term }, 'received a snapshot');
    if (!node.stepSnapshot(message)) {
      // Raft ignored it (stale, duplicate, or we moved on meanwhile): nothing will install it.
      this.#incoming.delete(index);
      await rm(path, { force: true });
      this.#options.logger.info({ event: 'snapshot-ignored', index, term: node.term }, 'raft ignored the received snapshot; discarded its data');
    }
  }

  /** Installs a snapshot Raft handed out (see the module comment for the order). */
  async install(snapshot: Snapshot, persistMarker: () => Promise<void>): Promise<void> {
    const index = snapshot.metadata.index;
    if (index === 0) {
      // The membership snapshot of a joining member: no backend to install, only the marker.
      await persistMarker();
      this.#options.onInstalled(snapshot);
      return;
    }
    const path = this.#incoming.get(index);
    if (path === undefined) fatal('corrupt', `raft asked to install snapshot ${index} but no backend dump was received for it`);
    // Older received snapshots can never be installed any more.
    for (const [older, olderPath] of [...this.#incoming]) {
      if (older >= index) continue;
      this.#incoming.delete(older);
      await rm(olderPath, { force: true });
    }
    const { state } = this.#options;
    const dbPath = this.#dbPath;
    // On a full disk this throws (the prepared copy is removed) and the node retries the whole
    // install: the received dump stays listed until the copy is in place.
    const prepared = await MvccStore.prepareRestore({ path: dbPath, chunks: createReadStream(path) });
    this.#incoming.delete(index);
    if (prepared.consistentIndex < index) {
      await prepared.discard();
      throw new KvdError('corrupt', { detail: `etcdserver: corrupt snapshot: backend at index ${prepared.consistentIndex} for snapshot ${index}` });
    }
    await state.store.close();
    await prepared.switch();
    await persistMarker();
    await prepared.removeOld();
    const store = await this.#openUntilOpened(dbPath);
    state.replace({ store, lessor: this.#options.restoreLessor(store) });
    await rm(path, { force: true });
    this.#options.onInstalled(snapshot);
    this.#options.metrics.snapshotsInstalled.inc();
    this.#options.logger.info({ event: 'snapshot-installed', index, term: snapshot.metadata.term, revision: store.currentRevision }, 'installed a snapshot from the leader');
  }

  /** Opens the switched-in store, waiting for room while the disk is full (LevelDB writes when it opens). */
  async #openUntilOpened(path: string): Promise<MvccStore> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#options.openStore(path);
      } catch (error: unknown) {
        if (!isNoSpaceFailure(error) || this.#options.node.stopping) throw error;
        this.#options.logger.warn({ event: 'snapshot-open-no-space', attempt, error: errorMessage(error) }, 'no space to open the installed backend; retrying');
        await new Promise((resolve) => setTimeout(resolve, retryPauseMs(attempt)));
      }
    }
  }

  /** Drops received data not installed (shutdown). */
  async close(): Promise<void> {
    for (const path of this.#incoming.values()) await rm(path, { force: true });
    this.#incoming.clear();
  }
}

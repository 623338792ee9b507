/**
 * Bootstrap and recovery of one member (etcd's server/etcdserver/bootstrap.go): from the data
 * dir and the configuration, decide who this member is and rebuild its durable state.
 *
 * - New cluster (`--initial-cluster-state new`, empty data dir): every member derives the same
 *   member and cluster ids from --initial-cluster and --initial-cluster-token (ids.ts), writes
 *   bootstrap.json, and starts from a snapshot marker at index 0 naming the initial voters.
 * - Joining (`existing`, empty data dir): the member must have been added (`member add`). It asks
 *   the running members' peer URLs (from --initial-cluster) for the membership, finds itself by
 *   its peer URLs, and starts with an empty log and no configuration; the leader sends it the
 *   membership snapshot (or a backend snapshot) and the log.
 * - Restart: bootstrap.json, the WAL (hard state, entries, snapshot marker), the newest snapshot
 *   file at or below the marker, and the backend (whose consistent index may be ahead of the
 *   snapshot: entries up to it are skipped when re-applied).
 * - A member that was removed from its cluster leaves a `removed` marker and refuses to start.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MemoryStorage } from '../raft/storage.js';
import type { ConfState, NodeId } from '../raft/types.js';
import { Wal, SnapshotStore } from '../wal/index.js';
import { MvccStore } from '../store/mvcc/index.js';
import type { StoreEvent } from '../store/mvcc/store.js';
import { Lessor, minTtlSecondsFor } from '../store/lease/lessor.js';
import { fetchMembers, type MembersAnswer } from '../transport/index.js';
import { KvdError, errorMessage } from '../util/errors.js';
import type { ServerConfig } from './config.js';
import type { Logger } from './logger.js';
import { computeClusterId, computeMemberId, idToHex } from './ids.js';
import { Membership, readBootstrap, writeBootstrap, type BootstrapInfo, type MemberRecord } from './membership.js';
import { fatal } from './fatal.js';
import { Snapshotter } from './snapshotter.js';

/** Everything a member is built from. */
export interface Recovered {
  readonly id: NodeId;
  readonly clusterId: bigint;
  readonly logger: Logger;
  readonly membership: Membership;
  readonly storage: MemoryStorage;
  readonly wal: Wal;
  readonly snapshots: SnapshotStore;
  readonly store: MvccStore;
  readonly lessor: Lessor;
  readonly confState: ConfState;
  /** Index of the Raft snapshot the log starts after (0 for a new or joining member). */
  readonly snapshotIndex: number;
}

/** Name of the marker a removed member leaves in `<data-dir>/member`. */
export const REMOVED_MARKER = 'removed';

/** How long a joining member keeps asking the cluster for its membership. */
const JOIN_FETCH_TIMEOUT_MS = 30_000;

/** Opens or bootstraps the member in `config.dataDir`. */
export async function recover(config: ServerConfig, rootLogger: Logger): Promise<Recovered> {
  const memberDir = join(config.dataDir, 'member');
  await mkdir(memberDir, { recursive: true });
  if (existsSync(join(memberDir, REMOVED_MARKER))) {
    throw new KvdError('invalid-argument', {
      detail: `the member has been permanently removed from the cluster; its data dir ${config.dataDir} cannot be used again (add a new member with 'member add' and start it with an empty data dir)`,
    });
  }
  let bootstrap = readBootstrap(config.dataDir);
  if (bootstrap === undefined) {
    bootstrap = config.initialClusterState === 'existing' ? await joinExisting(config, rootLogger) : bootstrapNew(config);
    await writeBootstrap(config.dataDir, bootstrap);
  }
  const id = bootstrap.memberId;
  const logger = rootLogger.child({ id: idToHex(id) });
  const membership = new Membership({ clusterId: bootstrap.clusterId, initial: bootstrap.members });

  const { wal, state } = await Wal.open({ dir: join(memberDir, 'wal'), logger: (event) => logger.info({ event: `wal-${event.kind ?? 'event'}`, ...event }, 'wal') });
  const snapshots = await SnapshotStore.open({ dir: join(memberDir, 'snap') });
  await Snapshotter.cleanIncoming(config.dataDir);
  const storage = new MemoryStorage();
  let snapshotIndex = 0;
  let confState: ConfState;
  const nothingDurable = state.snapshot === undefined && state.entries.length === 0 && state.hardState.term === 0;
  if (nothingDurable && bootstrap.joined) {
    // A joining member knows no configuration until the leader sends it one.
    confState = { voters: [], learners: [] };
    logger.info({ event: 'joining', clusterId: idToHex(bootstrap.clusterId), members: bootstrap.members.map((m) => `${m.name}=${idToHex(m.id)}`) }, 'joining a running cluster');
  } else if (nothingDurable) {
    // New member of a new cluster (or a process that died before its first marker).
    confState = { voters: bootstrap.members.filter((m) => !m.isLearner).map((m) => m.id), learners: [] };
    await wal.saveSnapshotMarker({ index: 0, term: 0, confState });
    storage.applySnapshot({ metadata: { index: 0, term: 0, confState }, data: new Uint8Array(0) });
    logger.info({ event: 'bootstrap', clusterId: idToHex(bootstrap.clusterId), members: bootstrap.members.map((m) => `${m.name}=${idToHex(m.id)}`) }, 'bootstrapped a new cluster member');
  } else {
    const marker = state.snapshot;
    if (marker !== undefined && marker.index > 0) {
      // A snapshot file newer than the marker may exist if we died between writing the two.
      const snapshot = await snapshots.loadNewest({ maxIndex: marker.index });
      if (snapshot === undefined || snapshot.metadata.index !== marker.index) {
        fatal('corrupt', `WAL names a snapshot at index ${marker.index} but the newest snapshot file is at ${snapshot?.metadata.index ?? 'none'}`);
      }
      storage.applySnapshot(snapshot);
      snapshotIndex = snapshot.metadata.index;
      confState = snapshot.metadata.confState;
    } else if (marker !== undefined) {
      confState = marker.confState;
      storage.applySnapshot({ metadata: { index: 0, term: 0, confState }, data: new Uint8Array(0) });
    } else {
      confState = { voters: [], learners: [] }; // a joined member that has not received its configuration yet
    }
    storage.setHardState(state.hardState);
    if (state.entries.length > 0) storage.append(state.entries);
    logger.info({ event: 'restart', term: state.hardState.term, commit: state.hardState.commit, snapshotIndex, lastIndex: storage.lastIndex() }, 'restarting member from its data dir');
  }

  const store = await openStore(join(memberDir, 'db'), config, logger);
  membership.load(store.listMeta('member/'));
  const lessor = restoreLessor(store, config);
  return { id, clusterId: bootstrap.clusterId, logger, membership, storage, wal, snapshots, store, lessor, confState, snapshotIndex };
}

/** Opens the member's MVCC store with its limits and logger. */
export function openStore(path: string, config: ServerConfig, logger: Logger): Promise<MvccStore> {
  return MvccStore.open({ path, maxTxnOps: config.maxTxnOps, logger: storeLogger(logger) });
}

/** Rebuilds the lessor from the store's lease records (the keys a lease holds stay the store's). */
export function restoreLessor(store: MvccStore, config: ServerConfig): Lessor {
  return Lessor.restore(store.listMeta('lease/'), { minTtlSeconds: minLeaseTtlSeconds(config) });
}

/** Leaves the marker that makes a removed member refuse to start again. */
export async function markRemoved(dataDir: string): Promise<void> {
  await writeFile(join(dataDir, 'member', REMOVED_MARKER), `removed at ${new Date().toISOString()}\n`);
}

/** etcd's minimum lease TTL for this member's timing (2 s with etcd's defaults). */
export function minLeaseTtlSeconds(config: ServerConfig): number {
  return minTtlSecondsFor({ electionTicks: electionTicksOf(config), heartbeatMs: config.heartbeatIntervalMs });
}

/** Election timeout in ticks (one tick per heartbeat interval). */
export function electionTicksOf(config: ServerConfig): number {
  return Math.max(2, Math.round(config.electionTimeoutMs / config.heartbeatIntervalMs));
}

function bootstrapNew(config: ServerConfig): BootstrapInfo {
  return newClusterBootstrap({
    name: config.name, initialCluster: config.initialCluster, token: config.initialClusterToken,
    advertisePeerUrls: config.initialAdvertisePeerUrls, advertiseClientUrls: config.advertiseClientUrls,
  });
}

/**
 * Who is who in a new cluster (also a cluster restored from a snapshot, see restore.ts): the
 * members of --initial-cluster with the ids every member derives alike (ids.ts), this member
 * among them by its advertised peer URLs, and the cluster id. `advertiseClientUrls` fills this
 * member's client URLs (empty when unknown; a member publishes them when it starts).
 */
export function newClusterBootstrap(options: {
  readonly name: string;
  readonly initialCluster: ReadonlyMap<string, readonly string[]>;
  readonly token: string;
  readonly advertisePeerUrls: readonly string[];
  readonly advertiseClientUrls: readonly string[];
}): BootstrapInfo {
  const members: MemberRecord[] = [...options.initialCluster].map(([name, peerUrls]) => ({
    id: computeMemberId({ peerUrls, token: options.token }),
    name,
    peerUrls,
    clientUrls: name === options.name ? [...options.advertiseClientUrls] : [],
    isLearner: false,
    removed: false,
    autoPromote: false,
  }));
  const memberId = computeMemberId({ peerUrls: options.advertisePeerUrls, token: options.token });
  if (!members.some((m) => m.id === memberId)) {
    throw new KvdError('invalid-argument', { detail: `--initial-cluster has no entry for this member's --initial-advertise-peer-urls (${options.advertisePeerUrls.join(',')})` });
  }
  return { clusterId: computeClusterId(members.map((m) => m.id)), memberId, members, joined: false };
}

/**
 * Learns the running cluster's membership from the other members named in --initial-cluster
 * (etcd's GetClusterFromRemotePeers) and finds this member in it by its advertised peer URLs.
 */
async function joinExisting(config: ServerConfig, logger: Logger): Promise<BootstrapInfo> {
  const own = new Set(config.initialAdvertisePeerUrls);
  const urls = [...config.initialCluster.values()].flat().filter((url) => !own.has(url));
  if (urls.length === 0) {
    throw new KvdError('invalid-argument', { detail: '--initial-cluster-state=existing needs --initial-cluster to name at least one running member besides this one' });
  }
  // A member that has not applied the add yet answers with a membership that lacks this member:
  // ask the others, and again, until one has it or the deadline passes. (Giving up at the first
  // such answer makes `member add` followed at once by the new member's start fail whenever the
  // peer asked first lags behind the leader.)
  const deadline = Date.now() + JOIN_FETCH_TIMEOUT_MS;
  let answer: MembersAnswer | undefined;
  let answeredWithoutThisMember = false;
  const errors: string[] = [];
  for (let attempt = 0; answer === undefined && Date.now() < deadline; attempt++) {
    for (const url of urls) {
      try {
        const fetched = await fetchMembers(url, { deadlineMs: Math.min(deadline, Date.now() + 2_000) });
        if (fetched.members.some((m) => m.peerUrls.some((peerUrl) => own.has(peerUrl)))) {
          answer = fetched;
          break;
        }
        answeredWithoutThisMember = true;
        errors.push(`${url}: its membership does not have this member (yet)`);
      } catch (error: unknown) {
        errors.push(`${url}: ${errorMessage(error)}`);
      }
    }
    if (answer === undefined) await new Promise((resolve) => setTimeout(resolve, Math.min(1_000, 100 * 2 ** attempt)));
  }
  if (answer === undefined && !answeredWithoutThisMember) {
    throw new KvdError('stopped', { detail: `cannot fetch the cluster's membership from the peer URLs in --initial-cluster (${errors.slice(-urls.length).join('; ')})` });
  }
  const members = (answer?.members ?? []).map((m): MemberRecord => ({ ...m, removed: false }));
  const self = members.find((m) => m.peerUrls.some((url) => own.has(url)));
  if (answer === undefined || self === undefined) {
    throw new KvdError('invalid-argument', {
      detail: `this member's peer URLs (${config.initialAdvertisePeerUrls.join(',')}) are not in the cluster's member list: add it first with 'etcdctl member add ${config.name} --peer-urls=${config.initialAdvertisePeerUrls.join(',')}'`,
    });
  }
  logger.info({ event: 'join-membership-fetched', clusterId: idToHex(answer.clusterId), memberId: idToHex(self.id) }, 'fetched the membership of the running cluster');
  return { clusterId: answer.clusterId, memberId: self.id, members, joined: true };
}

/** The store's structured events as log lines; its failures at error level. */
function storeLogger(log: Logger): (event: StoreEvent) => void {
  return (event) => {
    if (event.type === 'failed' || event.type === 'listener-failed') log.error({ event: `store-${event.type}`, ...event }, 'store failure');
    else log.info({ ...event, event: `store-${event.type}` }, 'store');
  };
}

/**
 * Corruption detection (etcd's server/etcdserver/corrupt.go), on by default: members compare
 * HashKV at the same revision and raise a CORRUPT alarm through Raft on a mismatch, after which
 * every member refuses writes with `etcdserver: corrupt cluster` (alarms.ts).
 *
 * - Initial check: once a member has started and knows a leader, it hashes its own key space at
 *   its current revision and asks every peer for HashKV at that revision (the `hashkv` member
 *   call, etcd's /members/hashkv). etcd 3.4 refuses to start on a mismatch; kvd raises the alarm
 *   instead, so operators see it in `alarm list` and the cluster stops taking writes.
 *   `--experimental-initial-corrupt-check=false` turns it off (etcd's flag; etcd's default is off).
 * - Periodic check: every `--corrupt-check-time` (default {@link CORRUPT_CHECK_INTERVAL_DEFAULT_MS};
 *   0 turns it off) the leader does the same at its current revision.
 *
 * Who is blamed ({@link judgeHashes}, pure): only answers with the same compaction revision are
 * comparable (kvd's HashKV depends on it, as etcd's does). When a strict majority of the
 * comparable members (the checker included) agree on a hash, every member with another hash is
 * blamed. Without a majority (two members, or a three-way split), the initial check blames the
 * member checking (etcd: it refuses to start) and the periodic check blames the peers that
 * differ from the leader (etcd's leader does). A blamed member gets a CORRUPT alarm (once), and
 * the finding is logged with the revision, the compaction revision and every hash.
 *
 * Cost: a check reads the whole history up to the revision on every member (LevelDB scans in
 * batches, yielding between them; physical compaction pauses meanwhile), about 0.8 s of CPU per
 * 100 MB of backend here: checked every 5 minutes, a 1 GB backend costs about 3 % of a core.
 */
import { Packr } from 'msgpackr';
import type { NodeId } from '../raft/types.js';
import type { MvccStore } from '../store/mvcc/index.js';
import type { Revision } from '../store/mvcc/types.js';
import { KvdError, errorMessage, isKvdError } from '../util/errors.js';
import type { AlarmSet } from './alarms.js';
import { idToHex } from './ids.js';
import type { Logger } from './logger.js';

/** Member-call kind: HashKV of the callee at a revision. */
export const HASHKV_CALL = 'hashkv';
/** Default of --corrupt-check-time. */
export const CORRUPT_CHECK_INTERVAL_DEFAULT_MS = 5 * 60 * 1000;
/** How long a check waits for a peer that has not applied the revision yet, or is unreachable. */
const PEER_WAIT_MS = 10_000;
const PEER_RETRY_MS = 200;

const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true });

/** One member's HashKV answer. */
export interface HashAnswer {
  readonly memberId: NodeId;
  readonly hashRevision: Revision;
  readonly compactRevision: Revision;
  readonly hash: number;
}

export function encodeHashRequest(revision: Revision): Uint8Array {
  return packr.pack({ revision });
}

export function decodeHashRequest(bytes: Uint8Array): Revision {
  const value = unpack(bytes) as { revision?: unknown };
  if (typeof value.revision !== 'number' || !Number.isSafeInteger(value.revision) || value.revision < 0) throw bad('revision');
  return value.revision;
}

export function encodeHashAnswer(answer: HashAnswer): Uint8Array {
  return packr.pack({ member: BigInt.asUintN(64, answer.memberId), revision: answer.hashRevision, compact: answer.compactRevision, hash: answer.hash });
}

export function decodeHashAnswer(bytes: Uint8Array): HashAnswer {
  const value = unpack(bytes) as { member?: unknown; revision?: unknown; compact?: unknown; hash?: unknown };
  const member = typeof value.member === 'bigint' ? value.member : typeof value.member === 'number' ? BigInt(value.member) : undefined;
  if (member === undefined) throw bad('member');
  for (const field of [value.revision, value.compact, value.hash]) if (typeof field !== 'number' || !Number.isSafeInteger(field)) throw bad('numbers');
  return { memberId: member, hashRevision: value.revision as number, compactRevision: value.compact as number, hash: value.hash as number };
}

function unpack(bytes: Uint8Array): unknown {
  let value: unknown;
  try {
    value = packr.unpack(bytes);
  } catch (error: unknown) {
    throw bad(`not msgpack (${errorMessage(error)})`);
  }
  if (typeof value !== 'object' || value === null) throw bad('not a map');
  return value;
}

function bad(what: string): KvdError {
  return new KvdError('invalid-argument', { detail: `etcdserver: malformed hashkv member call (${what})` });
}

/** What to do without a majority: the initial check blames itself, the periodic one the others. */
export type NoMajority = 'blame-self' | 'blame-others';

/** The verdict of one check. */
export interface Verdict {
  /** Members whose hash was compared with the checker's (the checker included). */
  readonly compared: readonly NodeId[];
  /** Members to raise CORRUPT for. */
  readonly blamed: readonly NodeId[];
}

/** Decides whom a check blames (see the module comment). Pure. */
export function judgeHashes(input: { readonly local: HashAnswer; readonly peers: readonly HashAnswer[]; readonly noMajority: NoMajority }): Verdict {
  const { local } = input;
  const comparable = [local, ...input.peers.filter((peer) => peer.hashRevision === local.hashRevision && peer.compactRevision === local.compactRevision)];
  const compared = comparable.map((answer) => answer.memberId);
  if (comparable.every((answer) => answer.hash === local.hash)) return { compared, blamed: [] };
  const votes = new Map<number, number>();
  for (const answer of comparable) votes.set(answer.hash, (votes.get(answer.hash) ?? 0) + 1);
  const [majorityHash, count] = [...votes].sort((a, b) => b[1] - a[1])[0];
  if (count * 2 > comparable.length) return { compared, blamed: comparable.filter((answer) => answer.hash !== majorityHash).map((answer) => answer.memberId) };
  if (input.noMajority === 'blame-self') return { compared, blamed: [local.memberId] };
  return { compared, blamed: comparable.filter((answer) => answer.hash !== local.hash).map((answer) => answer.memberId) };
}

/** What the checker needs from the member. */
export interface CorruptionHost {
  readonly memberId: NodeId;
  store(): MvccStore;
  alarms(): AlarmSet;
  leader(): NodeId;
  isLeader(): boolean;
  /** The other active members (voters and learners). */
  peers(): NodeId[];
  call(to: NodeId, kind: string, payload: Uint8Array, options: { deadlineMs: number }): Promise<Uint8Array>;
  /** Proposes ACTIVATE CORRUPT for `memberId` (origin corruption-check); resolves once applied. */
  raise(memberId: NodeId): Promise<unknown>;
  readonly logger: Logger;
  /** Counts a finished check and whether it found a mismatch. */
  onChecked(outcome: 'consistent' | 'mismatch' | 'inconclusive'): void;
}

/** Runs the initial and periodic checks (driven by ticks) and serves peers' hashkv calls. */
export class CorruptionChecker {
  readonly #host: CorruptionHost;
  readonly #periodicMs: number;
  #initial: 'pending' | 'running' | 'done';
  #running = false;
  #nextPeriodicMs: number;
  #stopped = false;

  constructor(options: { host: CorruptionHost; initialCheck: 'enabled' | 'disabled'; periodicMs: number; nowMs: number }) {
    this.#host = options.host;
    this.#periodicMs = options.periodicMs;
    this.#initial = options.initialCheck === 'enabled' ? 'pending' : 'done';
    this.#nextPeriodicMs = options.nowMs + options.periodicMs;
  }

  /** Every tick: starts the initial check once a leader is known, and the leader's periodic check when due. */
  onTick(nowMs: number): void {
    if (this.#running || this.#stopped) return;
    if (this.#initial === 'pending' && this.#host.leader() !== 0n) {
      this.#initial = 'running';
      this.#run('initial', 'blame-self', () => {
        this.#initial = 'done';
      });
      return;
    }
    if (this.#periodicMs <= 0 || nowMs < this.#nextPeriodicMs) return;
    this.#nextPeriodicMs = nowMs + this.#periodicMs;
    if (this.#host.isLeader()) this.#run('periodic', 'blame-others', () => undefined);
  }

  stop(): void {
    this.#stopped = true;
  }

  /** Serves a peer's hashkv call: this member's HashKV at the requested revision. */
  async serveCall(payload: Uint8Array): Promise<Uint8Array> {
    const revision = decodeHashRequest(payload);
    const result = await this.#host.store().hashKV(revision);
    return encodeHashAnswer({ memberId: this.#host.memberId, hashRevision: result.hashRevision, compactRevision: result.compactRevision, hash: result.hash });
  }

  #run(kind: 'initial' | 'periodic', noMajority: NoMajority, done: () => void): void {
    this.#running = true;
    // Detached on purpose: a check runs in the background; its outcome is logged and alarmed.
    this.#check(kind, noMajority).then(
      () => {
        this.#running = false;
        done();
      },
      (error: unknown) => {
        this.#running = false;
        done();
        this.#host.onChecked('inconclusive');
        this.#host.logger.warn({ event: 'corruption-check-failed', check: kind, error: errorMessage(error) }, `${kind} corruption check could not run`);
      },
    );
  }

  async #check(kind: 'initial' | 'periodic', noMajority: NoMajority): Promise<void> {
    const host = this.#host;
    const started = Date.now();
    const store = host.store();
    const local = await store.hashKV(store.currentRevision);
    const self: HashAnswer = { memberId: host.memberId, hashRevision: local.hashRevision, compactRevision: local.compactRevision, hash: local.hash };
    const answers = await Promise.all(host.peers().map((peer) => this.#askPeer(peer, self.hashRevision)));
    const peers = answers.filter((answer): answer is HashAnswer => answer !== undefined);
    const verdict = judgeHashes({ local: self, peers, noMajority });
    const fields = {
      check: kind, revision: self.hashRevision, compactRevision: self.compactRevision, localHash: self.hash,
      peerHashes: Object.fromEntries(peers.map((peer) => [idToHex(peer.memberId), { hash: peer.hash, compactRevision: peer.compactRevision }])),
      compared: verdict.compared.map(idToHex), tookMs: Date.now() - started,
    };
    if (verdict.compared.length < 2) {
      host.onChecked('inconclusive');
      host.logger.info({ ...fields, event: 'corruption-check-skipped' }, `${kind} corruption check: no peer hash comparable at revision ${self.hashRevision}`);
      return;
    }
    if (verdict.blamed.length === 0) {
      host.onChecked('consistent');
      host.logger.info({ ...fields, event: 'corruption-check-passed' }, `${kind} corruption check: ${verdict.compared.length} members agree at revision ${self.hashRevision}`);
      return;
    }
    host.onChecked('mismatch');
    host.logger.error({ ...fields, event: 'corruption-detected', blamed: verdict.blamed.map(idToHex) }, `${kind} corruption check: HashKV mismatch at revision ${self.hashRevision}; raising CORRUPT for ${verdict.blamed.map(idToHex).join(', ')}`);
    for (const member of verdict.blamed) {
      if (host.alarms().get('corrupt', member) !== undefined) continue;
      await host.raise(member);
    }
  }

  /** A peer's hash at `revision`; undefined when it cannot give one (compacted past it, unreachable, behind for too long). */
  async #askPeer(peer: NodeId, revision: Revision): Promise<HashAnswer | undefined> {
    const deadline = Date.now() + PEER_WAIT_MS;
    for (;;) {
      try {
        const answer = decodeHashAnswer(await this.#host.call(peer, HASHKV_CALL, encodeHashRequest(revision), { deadlineMs: deadline }));
        return answer.memberId === peer ? answer : undefined;
      } catch (error: unknown) {
        if (isKvdError(error, 'compacted') || isKvdError(error, 'unimplemented') || this.#stopped) return undefined;
        // Behind ('future-revision'), unreachable or busy: ask again until the deadline.
        if (Date.now() + PEER_RETRY_MS >= deadline) {
          this.#host.logger.info({ event: 'corruption-check-peer-unavailable', peer: idToHex(peer), revision, error: errorMessage(error) }, 'a peer gave no hash for the corruption check');
          return undefined;
        }
        await new Promise((resolve) => setTimeout(resolve, PEER_RETRY_MS));
      }
    }
  }
}

/**
 * The cluster's members as the server sees them: id, name, peer and client URLs, learner flag.
 *
 * Where it lives: the initial members of a cluster are written once, at bootstrap, to
 * `<data-dir>/member/bootstrap.json` (every member of a new cluster derives the same list from
 * --initial-cluster). Every later change (conf change entries, attribute publishes) is applied
 * through the log and stored as a record in the backend's meta namespace (`member/<hex id>`),
 * atomically with the applied index. The effective membership is the bootstrap list overlaid
 * with those records, which is identical on every member that applied the same entries.
 */
import { readFileSync, existsSync } from 'node:fs';
import { writeFile, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ConfChange, NodeId } from '../raft/types.js';
import { assert } from '../util/assert.js';
import { KvdError } from '../util/errors.js';
import { syncPath } from '../util/fsync.js';
import { idToHex } from './ids.js';
import type { ConfContext } from './conf-context.js';

/** One member's attributes. */
export interface MemberRecord {
  readonly id: NodeId;
  readonly name: string;
  readonly peerUrls: readonly string[];
  readonly clientUrls: readonly string[];
  readonly isLearner: boolean;
  /** Removed members stay recorded so a removed id is never reused. */
  readonly removed: boolean;
  /** kvd extension: a learner the leader promotes as soon as it is in sync. */
  readonly autoPromote: boolean;
}

interface MemberJson { id: string; name: string; peerUrls: string[]; clientUrls: string[]; isLearner: boolean; removed: boolean; autoPromote?: boolean }

/** What bootstrap.json holds. */
export interface BootstrapInfo {
  readonly clusterId: bigint;
  readonly memberId: NodeId;
  readonly members: readonly MemberRecord[];
  /** True for a member that joined a running cluster (`--initial-cluster-state existing`). */
  readonly joined: boolean;
}

const META_PREFIX = 'member/';

export function encodeMember(member: MemberRecord): Uint8Array {
  const json: MemberJson = { id: idToHex(member.id), name: member.name, peerUrls: [...member.peerUrls], clientUrls: [...member.clientUrls], isLearner: member.isLearner, removed: member.removed, autoPromote: member.autoPromote };
  return Buffer.from(JSON.stringify(json));
}

export function decodeMember(bytes: Uint8Array): MemberRecord {
  const json = JSON.parse(Buffer.from(bytes).toString('utf8')) as MemberJson;
  return { id: BigInt(`0x${json.id}`), name: json.name, peerUrls: json.peerUrls, clientUrls: json.clientUrls, isLearner: json.isLearner, removed: json.removed, autoPromote: json.autoPromote === true };
}

/** Meta key of a member record. */
export function memberMetaKey(id: NodeId): string {
  return `${META_PREFIX}${idToHex(id)}`;
}

/** The effective membership: bootstrap list overlaid with applied records. */
export class Membership {
  readonly clusterId: bigint;
  readonly #initial: readonly MemberRecord[];
  readonly #members = new Map<NodeId, MemberRecord>();

  constructor(options: { clusterId: bigint; initial: readonly MemberRecord[] }) {
    this.clusterId = options.clusterId;
    this.#initial = options.initial;
    for (const member of options.initial) this.#members.set(member.id, member);
  }

  /**
   * Back to the bootstrap list overlaid with exactly `records` (after the store was reopened:
   * records set in memory by an apply whose write failed are forgotten, and re-applied).
   */
  reload(records: ReadonlyMap<string, Uint8Array>): void {
    this.#members.clear();
    for (const member of this.#initial) this.#members.set(member.id, member);
    this.load(records);
  }

  /** Overlays the records found in the backend's meta namespace (on open and after a snapshot install). */
  load(records: ReadonlyMap<string, Uint8Array>): void {
    for (const [key, value] of records) {
      if (!key.startsWith(META_PREFIX)) continue;
      const member = decodeMember(value);
      this.#members.set(member.id, member);
    }
  }

  /** Active members, sorted by id. */
  active(): MemberRecord[] {
    return [...this.#members.values()].filter((m) => !m.removed).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  get(id: NodeId): MemberRecord | undefined {
    const member = this.#members.get(id);
    return member?.removed === true ? undefined : member;
  }

  /** True if `id` was ever a member (removed ids cannot be reused). */
  known(id: NodeId): boolean { return this.#members.has(id); }

  /** Records `member` and returns the meta write to persist with the applying entry. */
  set(member: MemberRecord): [string, Uint8Array] {
    this.#members.set(member.id, member);
    return [memberMetaKey(member.id), encodeMember(member)];
  }

  /** Active learners. */
  learners(): MemberRecord[] {
    return this.active().filter((m) => m.isLearner);
  }

  /** Active voters. */
  voters(): MemberRecord[] {
    return this.active().filter((m) => !m.isLearner);
  }

  /** The active member (other than `except`) using any of `peerUrls`, if one does. */
  usingPeerUrls(peerUrls: readonly string[], except?: NodeId): MemberRecord | undefined {
    const wanted = new Set(peerUrls);
    return this.active().find((m) => m.id !== except && m.peerUrls.some((url) => wanted.has(url)));
  }
}

/**
 * What applying a committed conf change does (etcd's ValidateConfigurationChange + applyConfChange,
 * decided identically on every member because it reads only replicated state): the change to hand
 * to Raft (undefined: the entry is a no-op, as etcd applies an invalid change with NodeID none),
 * the member records to write with the entry, and the answer for the proposer.
 */
export interface ConfChangePlan {
  readonly raftChange: ConfChange | undefined;
  readonly records: readonly MemberRecord[];
  readonly error: KvdError | undefined;
}

/** Decides a committed conf change against the current membership. Pure. */
export function planConfChange(membership: Membership, change: ConfChange, context: ConfContext | undefined, limits: { readonly maxLearners: number }): ConfChangePlan {
  const refuse = (error: KvdError): ConfChangePlan => ({ raftChange: undefined, records: [], error });
  if (context === undefined || context.member.id !== change.nodeId) return refuse(new KvdError('invalid-argument', { detail: 'etcdserver: conf change without a valid membership context' }));
  const id = change.nodeId;
  const current = membership.get(id);
  const removed = membership.known(id) && current === undefined;
  switch (context.action) {
    case 'add':
    case 'add-learner': {
      if (removed) return refuse(new KvdError('member-not-found', { detail: 'etcdserver: member not found (the ID was removed from the cluster and cannot be reused)' }));
      if (current !== undefined) return refuse(new KvdError('member-exists'));
      if (membership.usingPeerUrls(context.member.peerUrls) !== undefined) return refuse(new KvdError('peer-url-exists'));
      const isLearner = context.action === 'add-learner';
      if (isLearner && membership.learners().length + 1 > limits.maxLearners) return refuse(new KvdError('too-many-learners'));
      const record: MemberRecord = { id, name: '', peerUrls: [...context.member.peerUrls], clientUrls: [], isLearner, removed: false, autoPromote: isLearner && context.member.autoPromote };
      return { raftChange: { type: isLearner ? 'add-learner-node' : 'add-node', nodeId: id, context: change.context }, records: [record], error: undefined };
    }
    case 'promote': {
      if (current === undefined) return refuse(new KvdError('member-not-found'));
      if (!current.isLearner) return refuse(new KvdError('member-not-learner'));
      return { raftChange: { type: 'add-node', nodeId: id, context: change.context }, records: [{ ...current, isLearner: false, autoPromote: false }], error: undefined };
    }
    case 'remove': {
      if (current === undefined) return refuse(new KvdError('member-not-found'));
      return { raftChange: { type: 'remove-node', nodeId: id, context: change.context }, records: [{ ...current, removed: true }], error: undefined };
    }
    case 'update': {
      if (current === undefined) return refuse(new KvdError('member-not-found'));
      if (membership.usingPeerUrls(context.member.peerUrls, id) !== undefined) return refuse(new KvdError('peer-url-exists'));
      return { raftChange: { type: 'update-node', nodeId: id, context: change.context }, records: [{ ...current, peerUrls: [...context.member.peerUrls] }], error: undefined };
    }
  }
}

/** Path of bootstrap.json inside a data dir. */
export function bootstrapPath(dataDir: string): string {
  return join(dataDir, 'member', 'bootstrap.json');
}

/** Reads bootstrap.json, or undefined if the member was never bootstrapped. */
export function readBootstrap(dataDir: string): BootstrapInfo | undefined {
  const path = bootstrapPath(dataDir);
  if (!existsSync(path)) return undefined;
  const json = JSON.parse(readFileSync(path, 'utf8')) as { clusterId: string; memberId: string; members: MemberJson[]; joined?: boolean };
  assert(typeof json.clusterId === 'string' && Array.isArray(json.members), 'bootstrap.json is well-formed');
  return {
    clusterId: BigInt(`0x${json.clusterId}`),
    memberId: BigInt(`0x${json.memberId}`),
    members: json.members.map((m) => decodeMember(Buffer.from(JSON.stringify(m)))),
    joined: json.joined === true,
  };
}

/** Writes bootstrap.json durably (temp file, fsync, rename, fsync dir). */
export async function writeBootstrap(dataDir: string, info: BootstrapInfo): Promise<void> {
  const path = bootstrapPath(dataDir);
  const json = {
    clusterId: idToHex(info.clusterId),
    memberId: idToHex(info.memberId),
    members: info.members.map((m) => JSON.parse(Buffer.from(encodeMember(m)).toString('utf8')) as MemberJson),
    joined: info.joined,
  };
  const temp = `${path}.tmp`;
  await writeFile(temp, JSON.stringify(json, null, 2));
  await syncPath(temp);
  await rename(temp, path);
  await syncPath(dirname(path));
}

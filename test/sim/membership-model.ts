/**
 * The replicated membership of one simulated member: the server's own {@link Membership} plus the
 * meta records it is rebuilt from (kvd keeps them in the backend's `member/` namespace, so a
 * snapshot carries them). Conf-change entries are decided by the server's {@link planConfChange},
 * exactly as the member's applier does; this file only adds the simulator's encoding of those
 * records into snapshot data, and the configuration the membership implies.
 *
 * Peer URLs and names are synthetic: the member of id N bootstrapped with the cluster is named
 * `mN` with peer URL `http://mN.sim:2380`; members added later get whatever URLs their conf change
 * carried (see membership-client.ts).
 */
import { Membership, decodeMember, encodeMember, planConfChange, type ConfChangePlan, type MemberRecord } from '../../src/server/membership.js';
import type { ConfContext } from '../../src/server/conf-context.js';
import type { ConfChange, ConfState, NodeId } from '../../src/raft/types.js';

/** The simulated cluster's id (any constant: every member agrees on it). */
export const SIM_CLUSTER_ID = 0x51c0n;

/** Peer URL of a synthetic host name. */
export function peerUrl(host: string): string {
  return `http://${host}.sim:2380`;
}

/** Client URL of a started member named `name`. */
export function clientUrl(name: string): string {
  return `http://${name}.sim:2379`;
}

/** The records of the bootstrapped voters (what every initial member's bootstrap.json lists). */
export function bootstrapRecords(ids: readonly NodeId[]): MemberRecord[] {
  return ids.map((id) => ({ id, name: `m${id}`, peerUrls: [peerUrl(`m${id}`)], clientUrls: [clientUrl(`m${id}`)], isLearner: false, removed: false, autoPromote: false }));
}

/**
 * One member's replicated membership. Invariant: `membership` equals an empty membership loaded
 * with `#meta` (the records are the only state, as in kvd's backend).
 */
export class ReplicatedMembership {
  readonly membership = new Membership({ clusterId: SIM_CLUSTER_ID, initial: [] });
  /** Meta key → encoded record: what a snapshot carries. */
  readonly #meta = new Map<string, Uint8Array>();

  /** From the meta records of a snapshot (none: a member that knows no membership yet). */
  constructor(meta: ReadonlyMap<string, Uint8Array> = new Map()) {
    for (const [key, value] of meta) this.#meta.set(key, value);
    this.membership.load(this.#meta);
  }

  static bootstrap(ids: readonly NodeId[]): ReplicatedMembership {
    const replicated = new ReplicatedMembership();
    replicated.record(bootstrapRecords(ids));
    return replicated;
  }

  /** Decides a committed conf change with the server's planner (pure: nothing recorded yet). */
  plan(change: ConfChange, context: ConfContext | undefined, limits: { maxLearners: number }): ConfChangePlan {
    return planConfChange(this.membership, change, context, limits);
  }

  /** Writes a plan's records (kvd: the meta writes applied with the entry). */
  record(records: readonly MemberRecord[]): void {
    for (const record of records) {
      const [key, value] = this.membership.set(record);
      this.#meta.set(key, value);
    }
  }

  /** The Raft configuration the membership describes. */
  confState(): ConfState {
    return { voters: this.membership.voters().map((m) => m.id), learners: this.membership.learners().map((m) => m.id) };
  }

  /** True if `id` was a member and was removed (its removal was applied here). */
  hasRemoved(id: NodeId): boolean {
    return this.membership.known(id) && this.membership.get(id) === undefined;
  }

  /** Every member ever removed, sorted. */
  removedIds(): NodeId[] {
    const ids: NodeId[] = [];
    for (const value of this.#meta.values()) {
      const record = decodeMember(value);
      if (record.removed) ids.push(record.id);
    }
    return ids.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** The records as text, sorted by key (deterministic snapshot data). */
  toJson(): Array<[string, string]> {
    return [...this.#meta.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, value]) => [key, Buffer.from(value).toString('utf8')]);
  }

  static fromJson(entries: ReadonlyArray<readonly [string, string]>): ReplicatedMembership {
    const meta = new Map<string, Uint8Array>();
    for (const [key, text] of entries) {
      const value = Buffer.from(text, 'utf8');
      // Pair assertion at the boundary: the record decodes and re-encodes to the same bytes.
      if (Buffer.compare(Buffer.from(encodeMember(decodeMember(value))), value) !== 0) throw new Error(`simulator bug: member record ${key} does not round-trip`);
      meta.set(key, value);
    }
    return new ReplicatedMembership(meta);
  }
}

/**
 * A small scenario harness for the Raft core's unit tests: N RawNodes over MemoryStorage, an
 * in-memory network (a FIFO of messages with a drop filter), and the Ready loop the server runs
 * (persist to storage, send, apply, advance). Everything is synchronous and deterministic.
 */
import { RawNode } from '../../../src/raft/raw-node.js';
import { decodeConfChange } from '../../../src/raft/conf-change.js';
import { MemoryStorage } from '../../../src/raft/storage.js';
import { seededRandom } from '../../../src/raft/random.js';
import type { RaftConfigInput, RaftEvent } from '../../../src/raft/config.js';
import type { Entry, Message, NodeId, ReadState, Snapshot } from '../../../src/raft/types.js';
import type { Ready } from '../../../src/raft/ready.js';

export interface Member {
  readonly id: NodeId;
  node: RawNode;
  storage: MemoryStorage;
  /** Every committed entry applied, in order (normal and conf-change). */
  applied: Entry[];
  readStates: ReadState[];
  events: RaftEvent[];
  /** Snapshots installed from Ready.snapshot. */
  installed: Snapshot[];
  /** Every Ready processed (for batching assertions). */
  readies: Ready[];
}

export type Overrides = Partial<Omit<RaftConfigInput, 'id' | 'storage' | 'random'>>;

/** Builds N members with ids 1n..Nn (or the given ids) sharing one initial voter set. */
export class Cluster {
  readonly members = new Map<NodeId, Member>();
  /** Messages sent and not yet delivered, in send order. */
  network: Message[] = [];
  /** Returns true to drop a message. */
  drop: (message: Message) => boolean = () => false;
  /** Members that are down: they neither process nor receive anything. */
  readonly down = new Set<NodeId>();
  /** Snapshot data → the applied entries it stands for (the "state machine" in the snapshot). */
  readonly #snapshotContents = new WeakMap<Uint8Array, Entry[]>();
  readonly #overrides: Overrides;
  readonly #seed: number;

  /** `prepare` may seed each member's storage (entries, hard state) before its node is created. */
  constructor(options: {
    voters: number | NodeId[];
    learners?: NodeId[];
    seed?: number;
    overrides?: Overrides;
    prepare?: (id: NodeId, storage: MemoryStorage) => void;
  }) {
    this.#seed = options.seed ?? 1;
    this.#overrides = options.overrides ?? {};
    const voters = typeof options.voters === 'number' ? Array.from({ length: options.voters }, (_, i) => BigInt(i + 1)) : options.voters;
    const learners = options.learners ?? [];
    for (const id of [...voters, ...learners]) {
      const storage = new MemoryStorage();
      storage.applySnapshot({ metadata: { index: 0, term: 0, confState: { voters, learners } }, data: new Uint8Array(0) });
      options.prepare?.(id, storage);
      this.#add(id, storage);
    }
  }

  #add(id: NodeId, storage: MemoryStorage, extra: Overrides = {}): Member {
    const events: RaftEvent[] = [];
    const member: Member = {
      id,
      storage,
      node: undefined as unknown as RawNode,
      applied: [],
      readStates: [],
      events,
      installed: [],
      readies: [],
    };
    member.node = new RawNode({
      id,
      storage,
      random: seededRandom(this.#seed * 1000 + Number(id)),
      onEvent: (event) => events.push(event),
      ...this.#overrides,
      ...extra,
    });
    this.members.set(id, member);
    return member;
  }

  /** Adds a member with an empty storage and empty ConfState (joins via a conf change). */
  addEmpty(id: NodeId): Member {
    return this.#add(id, new MemoryStorage());
  }

  /** Restarts a member from its storage (volatile state lost; storage kept as durable). */
  restart(id: NodeId, extra: Overrides = {}): Member {
    const old = this.get(id);
    const applied = old.applied.length > 0 ? old.applied[old.applied.length - 1].index : 0;
    const member = this.#add(id, old.storage, { applied: Math.max(applied, old.storage.firstIndex() - 1), ...extra });
    member.applied = old.applied;
    return member;
  }

  get(id: NodeId): Member {
    const member = this.members.get(id);
    if (member === undefined) throw new Error(`no member ${id}`);
    return member;
  }

  node(id: NodeId): RawNode {
    return this.get(id).node;
  }

  /** Processes one Ready of `id` if it has one, the way the server does. Returns whether it did. */
  processReady(id: NodeId): boolean {
    const member = this.get(id);
    if (this.down.has(id) || !member.node.hasReady()) return false;
    const ready = member.node.ready();
    member.readies.push(ready);
    if (ready.snapshot !== undefined) {
      member.storage.applySnapshot(ready.snapshot);
      member.installed.push(ready.snapshot);
      const contents = this.#snapshotContents.get(ready.snapshot.data);
      if (contents !== undefined) member.applied = contents.slice();
    }
    if (ready.hardState !== undefined) member.storage.setHardState(ready.hardState);
    member.storage.append(ready.entries);
    for (const message of ready.messages) this.network.push(message);
    for (const entry of ready.committedEntries) {
      member.applied.push(entry);
      if (entry.type === 'conf-change') member.node.applyConfChange(decodeConfChange(entry.data), { index: entry.index });
    }
    member.readStates.push(...ready.readStates);
    member.node.advance();
    member.node.assertInvariants();
    return true;
  }

  /** Processes Readies of every member once. */
  processAll(): boolean {
    let any = false;
    for (const id of this.members.keys()) any = this.processReady(id) || any;
    return any;
  }

  /** Delivers every message currently in flight (not those sent meanwhile). Returns how many. */
  deliver(): number {
    const batch = this.network;
    this.network = [];
    let delivered = 0;
    for (const message of batch) {
      if (this.drop(message) || this.down.has(message.to) || this.down.has(message.from)) continue;
      const member = this.members.get(message.to);
      if (member === undefined) continue;
      member.node.step(message);
      member.node.assertInvariants();
      delivered++;
    }
    return delivered;
  }

  /** Alternates Ready processing and delivery until nothing is left (bounded). */
  stabilize(maxRounds = 1000): void {
    for (let round = 0; round < maxRounds; round++) {
      const processed = this.processAll();
      if (!processed && this.network.length === 0) return;
      this.deliver();
    }
    throw new Error('cluster did not stabilize');
  }

  /** Ticks every live member once. */
  tickAll(): void {
    for (const [id, member] of this.members) {
      if (this.down.has(id)) continue;
      member.node.tick();
      member.node.assertInvariants();
    }
  }

  /** Ticks and stabilizes `ticks` times. */
  run(ticks: number): void {
    for (let i = 0; i < ticks; i++) {
      this.tickAll();
      this.stabilize();
    }
  }

  /** Makes `id` campaign and stabilizes; returns the leader id afterwards (or 0n). */
  elect(id: NodeId): NodeId {
    this.node(id).campaign();
    this.stabilize();
    return this.leader();
  }

  /** The unique live leader with the highest term, or 0n. */
  leader(): NodeId {
    let best: NodeId = 0n;
    let bestTerm = -1;
    for (const [id, member] of this.members) {
      if (this.down.has(id)) continue;
      const status = member.node.status();
      if (status.role === 'leader' && status.term > bestTerm) {
        best = id;
        bestTerm = status.term;
      }
    }
    return best;
  }

  /** Cuts every link between the two groups (symmetric). */
  partition(groupA: NodeId[], groupB: NodeId[]): void {
    const a = new Set(groupA);
    const b = new Set(groupB);
    this.drop = (m) => (a.has(m.from) && b.has(m.to)) || (b.has(m.from) && a.has(m.to));
  }

  heal(): void {
    this.drop = () => false;
  }

  /** Snapshots `id` at its applied index and compacts its storage there (as the server would). */
  compact(id: NodeId): number {
    const member = this.get(id);
    const status = member.node.status();
    const index = status.applied;
    if (index <= member.storage.firstIndex() - 1) return index;
    const data = new TextEncoder().encode(`state@${index}`);
    this.#snapshotContents.set(data, member.applied.filter((entry) => entry.index <= index));
    member.storage.createSnapshot({ index, confState: status.confState, data });
    member.storage.compact(index);
    return index;
  }

  /** Normal entries with data applied by `id`, decoded as text. */
  appliedData(id: NodeId): string[] {
    return this.get(id)
      .applied.filter((entry) => entry.type === 'normal' && entry.data.length > 0)
      .map((entry) => new TextDecoder().decode(entry.data));
  }
}

export const text = (value: string): Uint8Array => new TextEncoder().encode(value);

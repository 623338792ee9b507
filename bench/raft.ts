// Benchmark of the Raft core alone: entries/s and bytes allocated per entry through a 3-member
// in-memory cluster (MemoryStorage, no I/O, messages handed over directly), proposing batches of
// 1, 16 and 256 entries of 128-byte payloads at the leader and running the Ready loop until every
// member applied the batch.
// Usage: node dist/bench/raft.js   (re-executes itself with --expose-gc and a large young
// generation so allocation can be measured as heap growth without collections).
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { PerformanceObserver } from 'node:perf_hooks';
import { RawNode } from '../src/raft/raw-node.js';
import { MemoryStorage } from '../src/raft/storage.js';
import { seededRandom } from '../src/raft/random.js';
import type { Message, NodeId } from '../src/raft/types.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined && process.env.KVD_BENCH_CHILD === undefined) {
  const result = spawnSync(process.execPath, ['--expose-gc', '--max-semi-space-size=512', fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    env: { ...process.env, KVD_BENCH_CHILD: '1' },
  });
  process.exit(result.status ?? 1);
}

const PAYLOAD_BYTES = 128;
const ids: NodeId[] = [1n, 2n, 3n];

interface Member {
  node: RawNode;
  storage: MemoryStorage;
  applied: number;
}

function makeCluster(): { members: Map<NodeId, Member>; leader: RawNode } {
  const members = new Map<NodeId, Member>();
  for (const id of ids) {
    const storage = new MemoryStorage();
    storage.applySnapshot({ metadata: { index: 0, term: 0, confState: { voters: ids, learners: [] } }, data: new Uint8Array(0) });
    members.set(id, { node: new RawNode({ id, storage, random: seededRandom(Number(id)) }), storage, applied: 0 });
  }
  const leader = members.get(1n)!.node;
  leader.campaign();
  drain(members);
  if (leader.status().role !== 'leader') throw new Error('no leader');
  return { members, leader };
}

let network: Message[] = [];

/** Runs Ready processing and delivery until quiet. */
function drain(members: Map<NodeId, Member>): void {
  for (;;) {
    let work = false;
    for (const member of members.values()) {
      if (!member.node.hasReady()) continue;
      work = true;
      const ready = member.node.ready();
      if (ready.hardState !== undefined) member.storage.setHardState(ready.hardState);
      if (ready.entries.length > 0) member.storage.append(ready.entries);
      for (let i = 0; i < ready.messages.length; i++) network.push(ready.messages[i]);
      member.applied += ready.committedEntries.length;
      member.node.advance();
    }
    if (network.length === 0 && !work) return;
    const batch = network;
    network = [];
    for (let i = 0; i < batch.length; i++) members.get(batch[i].to)!.node.step(batch[i]);
  }
}

function compactAll(members: Map<NodeId, Member>): void {
  // Keep MemoryStorage small, as the server would after snapshots.
  for (const member of members.values()) {
    const applied = member.node.status().applied;
    member.storage.createSnapshot({ index: applied, confState: { voters: ids, learners: [] }, data: new Uint8Array(0) });
    member.storage.compact(applied);
  }
}

function run(options: { batch: number; entries: number }): { seconds: number } {
  const { members, leader } = makeCluster();
  const payload = new Uint8Array(PAYLOAD_BYTES).fill(7);
  const start = process.hrtime.bigint();
  const rounds = Math.ceil(options.entries / options.batch);
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < options.batch; i++) {
      const outcome = leader.propose(payload);
      if (!outcome.ok) throw new Error(`propose refused: ${outcome.reason}`);
    }
    drain(members);
    if (round % 1024 === 1023) compactAll(members);
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const expected = rounds * options.batch + 1;
  for (const member of members.values()) {
    if (member.applied !== expected) throw new Error(`member applied ${member.applied}, expected ${expected}`);
  }
  return { seconds };
}

function measureAllocation(options: { batch: number; entries: number }): { bytesPerEntry: number; collections: number } {
  let collections = 0;
  const observer = new PerformanceObserver((list) => {
    collections += list.getEntries().length;
  });
  const { members, leader } = makeCluster();
  const payload = new Uint8Array(PAYLOAD_BYTES).fill(7);
  gc?.();
  observer.observe({ entryTypes: ['gc'] });
  const before = process.memoryUsage().heapUsed;
  const rounds = Math.ceil(options.entries / options.batch);
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < options.batch; i++) leader.propose(payload);
    drain(members);
  }
  const after = process.memoryUsage().heapUsed;
  observer.disconnect();
  return { bytesPerEntry: (after - before) / (rounds * options.batch), collections };
}

const rows: string[] = [];
for (const batch of [1, 16, 256]) {
  const entries = batch === 1 ? 30_000 : batch === 16 ? 200_000 : 600_000;
  run({ batch, entries: Math.min(entries, 20_000) }); // warm-up
  const { seconds } = run({ batch, entries });
  const allocation = measureAllocation({ batch, entries: 20_000 });
  const rate = Math.round(entries / seconds);
  rows.push(
    `${String(batch).padStart(5)}  ${String(entries).padStart(8)}  ${rate.toLocaleString('en-US').padStart(12)}  ${Math.round(allocation.bytesPerEntry).toLocaleString('en-US').padStart(14)}${allocation.collections > 0 ? ` (${allocation.collections} GCs: lower bound)` : ''}`,
  );
}
console.log(`raft core, 3 members in memory, ${PAYLOAD_BYTES}-byte payloads, node ${process.version}`);
console.log('batch   entries     entries/s  bytes alloc/entry');
for (const row of rows) console.log(row);

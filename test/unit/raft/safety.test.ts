// Goal: the core's safety properties under random faults: at most one leader per term (election
// safety), applied sequences are prefixes of one another (state machine safety), and the
// invariants asserted after every step hold; then, after healing, the cluster makes progress.
// Method: seeded random schedules on the in-memory harness: message loss, duplication and
// reordering, partitions, restarts (a restart keeps only what the Ready loop persisted),
// proposals, reads, transfers, log compaction (so snapshots are sent) and, in one variant,
// adding/promoting/removing two extra members that start empty. Small budgets keep the suite fast.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster, text } from './harness.js';
import { seededRandom } from '../../../src/raft/random.js';
import type { Entry, NodeId } from '../../../src/raft/types.js';

function checkPrefixes(cluster: Cluster, seed: number): void {
  const sequences = [...cluster.members.values()].map((m) => m.applied);
  const longest = sequences.reduce((a, b) => (a.length >= b.length ? a : b));
  const key = (e: Entry): string => `${e.index}/${e.term}/${new TextDecoder().decode(e.data)}`;
  for (const sequence of sequences) {
    for (let i = 0; i < sequence.length; i++) {
      assert.equal(key(sequence[i]), key(longest[i]), `seed ${seed}: applied entry ${i} differs`);
    }
  }
}

for (const [members, membership] of [[3, 'fixed'], [5, 'fixed'], [3, 'changing']] as const) {
  test(`random faults never break election or state machine safety (${members} members, ${membership} membership)`, () => {
    for (let seed = 1; seed <= 15; seed++) {
      const random = seededRandom(seed);
      const cluster = new Cluster({ voters: members, seed });
      if (membership === 'changing') {
        cluster.addEmpty(4n);
        cluster.addEmpty(5n);
      }
      const ids = [...cluster.members.keys()];
      const core = ids.slice(0, members);
      const leaders = new Map<number, NodeId>();
      let proposals = 0;
      for (let step = 0; step < 400; step++) {
        const action = random.nextInt(100);
        if (action < 40) cluster.tickAll();
        else if (action < 60) {
          const leader = cluster.leader();
          if (leader !== 0n) cluster.node(leader).propose(text(`s${seed}p${proposals++}`));
          else cluster.node(ids[random.nextInt(ids.length)]).propose(text(`s${seed}p${proposals++}`));
        } else if (action < 63) {
          const a = ids.filter(() => random.nextInt(2) === 0);
          cluster.partition(a, ids.filter((id) => !a.includes(id)));
        } else if (action < 66) cluster.heal();
        else if (action < 68) cluster.restart(ids[random.nextInt(ids.length)]);
        else if (action < 70) {
          const leader = cluster.leader();
          if (leader !== 0n) cluster.node(leader).transferLeader(ids[random.nextInt(ids.length)]);
        } else if (action < 72) cluster.node(ids[random.nextInt(ids.length)]).readIndex(text(`r${step}`));
        else if (action < 75) cluster.compact(ids[random.nextInt(ids.length)]);
        else if (action < 78 && membership === 'changing') {
          const leader = cluster.leader();
          const types = ['add-node', 'add-learner-node', 'remove-node'] as const;
          const change = { type: types[random.nextInt(3)], nodeId: BigInt(4 + random.nextInt(2)), context: new Uint8Array(0) };
          if (leader !== 0n) cluster.node(leader).proposeConfChange(change);
        }
        cluster.processAll();
        // Deliver a random subset in random order, dropping and duplicating some.
        const inFlight = cluster.network;
        cluster.network = [];
        for (const message of inFlight) {
          const fate = random.nextInt(20);
          if (fate === 0) continue; // lost
          cluster.network.splice(random.nextInt(cluster.network.length + 1), 0, message);
          if (fate === 1) cluster.network.push(message); // duplicated
        }
        const keep = cluster.network.filter(() => random.nextInt(4) === 0);
        cluster.network = cluster.network.filter((m) => !keep.includes(m));
        cluster.deliver();
        cluster.network.push(...keep);
        for (const [id, member] of cluster.members) {
          const status = member.node.status();
          if (status.role !== 'leader') continue;
          const existing = leaders.get(status.term);
          assert.ok(existing === undefined || existing === id, `seed ${seed}: two leaders in term ${status.term}`);
          leaders.set(status.term, id);
        }
      }
      checkPrefixes(cluster, seed);
      // Liveness after healing: a leader emerges and a new proposal is applied everywhere.
      cluster.heal();
      cluster.run(60);
      for (let i = 0; i < 100 && cluster.leader() === 0n; i++) cluster.run(1);
      const leader = cluster.leader();
      assert.notEqual(leader, 0n, `seed ${seed}: no leader after healing`);
      cluster.node(leader).propose(text(`final${seed}`));
      cluster.run(5);
      for (const id of core) assert.equal(cluster.appliedData(id).at(-1), `final${seed}`, `seed ${seed}: member ${id} did not apply`);
      checkPrefixes(cluster, seed);
    }
  });
}

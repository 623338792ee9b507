/**
 * Majority-quorum arithmetic over a voter list (pure functions). Single-step membership changes
 * only, so there is no joint quorum (etcd-io/raft quorum/majority.go).
 */
import type { Index, NodeId } from './types.js';

/** Outcome of counting votes. */
export type VoteResult = 'won' | 'lost' | 'pending';

const scratch: number[] = [];

/**
 * The highest index acknowledged by a majority of `voters`, given each voter's match index
 * (`matchOf` returns 0 for unknown). An empty voter set commits nothing (returns 0).
 */
export function committedIndex(voters: readonly NodeId[], matchOf: (id: NodeId) => Index): Index {
  const n = voters.length;
  if (n === 0) return 0;
  if (n === 1) return matchOf(voters[0]);
  scratch.length = n;
  for (let i = 0; i < n; i++) scratch[i] = matchOf(voters[i]);
  // Insertion sort, descending: n is tiny and this allocates nothing.
  for (let i = 1; i < n; i++) {
    const value = scratch[i];
    let j = i - 1;
    while (j >= 0 && scratch[j] < value) {
      scratch[j + 1] = scratch[j];
      j--;
    }
    scratch[j + 1] = value;
  }
  return scratch[Math.floor(n / 2)];
}

/** Counts `votes` (true = granted) over `voters`: won with a majority granted, lost when a majority is impossible. */
export function voteResult(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  if (voters.length === 0) return 'won';
  let granted = 0;
  let missing = 0;
  for (const id of voters) {
    const vote = votes.get(id);
    if (vote === undefined) missing++;
    else if (vote) granted++;
  }
  const majority = Math.floor(voters.length / 2) + 1;
  if (granted >= majority) return 'won';
  if (granted + missing >= majority) return 'pending';
  return 'lost';
}

/** Whether the members in `active` (plus nothing else) form a majority of `voters`. */
export function isQuorum(voters: readonly NodeId[], active: (id: NodeId) => boolean): boolean {
  let count = 0;
  for (const id of voters) if (active(id)) count++;
  return count >= Math.floor(voters.length / 2) + 1;
}

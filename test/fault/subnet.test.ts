// Goal: fault clusters started one after another in one process never collide on their 10.77
// subnet. A deleted namespace's veth pair is removed by the kernel later, and the subnet was
// picked from the pid alone once its addresses were gone: the second chaos test of chaos.test.ts
// once found the first one's link still there ("ip link add kvf231h3 …: File exists").
// Method: a link with the name the first pick would use stands for a lingering veth; then
// two picks in a row. Needs `ip netns` (root), as the chaos tests do.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { namespacesAvailable, pickSubnet } from './cluster.js';

test('a subnet whose links linger is not picked, nor one this process picked before', { skip: namespacesAvailable() ? false : 'needs ip netns (root)' }, () => {
  const firstCandidate = 1 + (process.pid % 250);
  const lingering = `kvf${firstCandidate}h3`;
  execFileSync('ip', ['link', 'add', lingering, 'type', 'bridge']); // any link type: only the name counts
  try {
    const first = pickSubnet();
    assert.notEqual(first, firstCandidate, `${lingering} still exists: its subnet is not free`);
    const second = pickSubnet();
    assert.notEqual(second, first, 'a second cluster in the same process gets another subnet');
  } finally {
    execFileSync('ip', ['link', 'del', lingering]);
  }
});

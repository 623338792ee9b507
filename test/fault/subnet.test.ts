// Goal: fault clusters started one after another in one process never collide on their 10.77
// subnet. A deleted namespace's veth pair is removed by the kernel later, and the subnet was
// picked from the pid alone once its addresses were gone: the second chaos test of chaos.test.ts
// once found the first one's link still there ("ip link add kvf231h3 …: File exists").
// Method: the choice is a pure function of what `ip` lists (chooseSubnet); listings in `ip -o`'s
// format stand for a lingering veth, a lingering namespace and an address in use.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chooseSubnet } from './cluster.js';

const nothing = { addresses: '', links: '1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN\n', namespaces: '' };
// With pid 1000 the candidates are 1, 8, 15, 22, ...

test('a subnet whose links or namespace linger is not picked, nor one this process picked before', () => {
  assert.equal(chooseSubnet(1000, nothing, new Set()), 1, 'the first candidate when nothing is in use');
  const lingeringLink = { ...nothing, links: `${nothing.links}7: kvf1h3@if6: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN\n` };
  assert.equal(chooseSubnet(1000, lingeringLink, new Set()), 8, 'kvf1h3 still exists: subnet 1 is not free');
  const lingeringNamespace = { ...nothing, namespaces: 'kvf1m2 (id: 3)\n' };
  assert.equal(chooseSubnet(1000, lingeringNamespace, new Set()), 8, 'namespace kvf1m2 still exists');
  const addressInUse = { ...nothing, addresses: '4: eth1    inet 10.77.1.5/24 scope global eth1\n' };
  assert.equal(chooseSubnet(1000, addressInUse, new Set()), 8, 'an address in 10.77.1.0/24 exists');
  assert.equal(chooseSubnet(1000, { ...nothing, links: `${nothing.links}9: kvf15h1: <BROADCAST> mtu 1500\n` }, new Set()), 1, 'kvf15… does not block subnet 1');
  const picked = new Set<number>();
  const first = chooseSubnet(1000, nothing, picked);
  const second = chooseSubnet(1000, nothing, picked);
  assert.notEqual(second, first, 'a second cluster in the same process gets another subnet');
  assert.deepEqual([...picked], [first, second]);
});

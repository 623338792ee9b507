// Goal: a one-key Range served without the cursor (KvBackend.rangeKey) checks permissions when
// auth was enabled while the read waited (its turn's batch, or the linearizable barrier), as the
// cursor path checks after the barrier. Method: kvBackend over a stand-in member whose auth gate
// turns on between the call and the read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kvBackend } from '../../../src/server/backends.js';
import type { KvdMember } from '../../../src/server/member.js';
import { KvdError } from '../../../src/util/errors.js';

function standIn(): { member: KvdMember; gate: { active: boolean }; reads: number[] } {
  const gate = { active: false };
  const reads: number[] = [];
  const member = {
    authGate: {
      get active() { return gate.active; },
      principal: () => ({ name: '' }),
      require: () => { throw new KvdError('permission-denied'); },
    },
    store: {
      rangeKeyNow: () => {
        reads.push(1);
        return { kvs: [], more: false, count: 0, revision: 7 };
      },
    },
    gateway: { linearizableBarrier: () => new Promise<void>((resolve) => setImmediate(resolve)) },
    header: (revision?: number) => ({ clusterId: 1n, memberId: 2n, revision: revision ?? 7, raftTerm: 3 }),
    config: { requestTimeoutMs: 5_000 },
  } as unknown as KvdMember;
  return { member, gate, reads };
}

const request = (serializable: boolean) => ({
  key: new TextEncoder().encode('k'), rangeEnd: new Uint8Array(0), limit: 0, revision: 0, sortOrder: 'none', sortTarget: 'key', serializable,
  keysOnly: false, countOnly: false, minModRevision: 0, maxModRevision: 0, minCreateRevision: 0, maxCreateRevision: 0,
}) as const;

for (const serializable of [true, false]) {
  test(`a ${serializable ? 'serializable' : 'linearizable'} one-key read refuses when auth was enabled while it waited`, async () => {
    const { member, gate, reads } = standIn();
    const backend = kvBackend(member);
    const options = { deadline: Date.now() + 5_000, signal: new AbortController().signal };
    const plain = backend.rangeKey!(request(serializable), options);
    assert.ok(plain !== undefined);
    assert.deepEqual((await plain).response, { kvs: [], more: false, count: 0, revision: 7 }, 'read at once with auth off');
    const waiting = backend.rangeKey!(request(serializable), options);
    assert.ok(waiting !== undefined, 'auth is still off when the read is asked for');
    gate.active = true;
    await assert.rejects(Promise.resolve(waiting), (error: unknown) => error instanceof KvdError && error.code === 'permission-denied');
    assert.equal(reads.length, 1, 'the refused read read nothing');
    assert.equal(backend.rangeKey!(request(serializable), options), undefined, 'with auth on, the cursor path (with its checks) serves it');
  });
}

// Goal: a bounded run of the hostile-input fuzzer (test/fuzz/fuzz.ts) in the default test suite:
// random and mutated protobuf for every RPC, oversized messages, many streams, raw HTTP/2 and
// HTTP/1.1 garbage on the client port; bad handshakes, garbage frames, bad member calls and
// truncated snapshot streams on the peer port. The members must not crash, must keep answering,
// stay under the memory bound, keep serving a legitimate writer, and agree on HashKV at the end.
// Method: a real 3-member cluster (front-end processes) fuzzed for KVD_TEST_FUZZ_SECONDS (default
// 30 s) with a seed printed for replay (`npm run fuzz -- --duration 60 --seed N`).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Cluster } from './harness.js';
import { runFuzz } from '../fuzz/fuzz.js';

test('hostile input on the client and peer ports: no crash, no hang, bounded memory, same data everywhere', { timeout: 240_000 }, async (t) => {
  const cluster = await Cluster.start({ size: 3 });
  after(() => cluster.stop());
  await cluster.waitForLeader({ timeoutMs: 60_000 });
  const seed = Number(process.env.KVD_TEST_FUZZ_SEED ?? String(Date.now() % 1_000_000));
  const report = await runFuzz({
    targets: cluster.members.map((member) => ({ name: member.name, endpoint: member.endpoint, peerPort: member.peerPort, pid: () => member.process?.pid })),
    durationMs: Number(process.env.KVD_TEST_FUZZ_SECONDS ?? '30') * 1000,
    seed,
    rssBoundBytes: 768 * 1024 * 1024,
    log: (line) => t.diagnostic(line),
  });
  t.diagnostic(`seed ${seed}: cases ${JSON.stringify(report.cases)}; outcomes ${JSON.stringify(report.outcomes)}; max RSS ${Math.round(Math.max(...Object.values(report.rssMaxBytes)) / 1048576)} MiB`);
  assert.deepEqual(report.failures, [], `fuzz seed ${seed} broke an invariant:\n${report.failures.join('\n')}`);
  assert.ok(Object.values(report.cases).reduce((a, b) => a + b, 0) > 100, 'the fuzzer ran cases');
});

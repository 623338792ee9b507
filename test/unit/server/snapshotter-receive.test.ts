// Goal: a member refuses a received snapshot whose backend dump is damaged (a record changed, the
// end cut off, or a backend older than the snapshot) when it arrives, before Raft sees it, so the
// leader sends it again; before, Raft installed it and the dump check failed then, which stopped
// the member (chaos run with front-ends, seed 8484, 2026-12-07, through a fault proxy that
// reordered the stream). A sound dump is kept byte for byte and handed to Raft once.
// Method: a real store's dump (3,000 keys of 1 KiB: three chunks) fed to Snapshotter.receive
// with a stand-in Raft node that records what it is handed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MvccStore } from '../../../src/store/mvcc/index.js';
import { Snapshotter } from '../../../src/server/snapshotter.js';
import { ServerMetrics } from '../../../src/server/metrics.js';
import { createLogger } from '../../../src/server/logger.js';
import type { RaftNode } from '../../../src/server/raft-node.js';
import type { MemberState } from '../../../src/server/state.js';
import type { SnapshotMessage } from '../../../src/raft/types.js';
import { KvdError } from '../../../src/util/errors.js';
import { put } from '../store/mvcc/helpers.js';

let root: string;
let chunks: Buffer[];
/** The dump's consistent index (the last applied entry). */
const APPLIED = 3_000;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'kvd-snap-receive-'));
  const store = await MvccStore.open({ path: join(root, 'source-db') });
  const value = 'v'.repeat(1024);
  for (let batch = 0; batch < 30; batch++) {
    await store.applyBatch(Array.from({ length: 100 }, (_, i) => ({ index: batch * 100 + i + 1, request: put(`k/${String(batch * 100 + i).padStart(5, '0')}`, value) })));
  }
  chunks = [];
  for await (const chunk of store.exportSnapshot()) chunks.push(Buffer.from(chunk));
  await store.close();
  assert.ok(chunks.length >= 3, `the dump has several chunks (${chunks.length})`);
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

async function* stream(parts: readonly Buffer[]): AsyncGenerator<Uint8Array> {
  for (const part of parts) yield part;
}

async function receiver(name: string): Promise<{ snapshotter: Snapshotter; stepped: SnapshotMessage[]; snapDir: string; metrics: ServerMetrics }> {
  const dataDir = join(root, name);
  const snapDir = join(dataDir, 'member', 'snap');
  await mkdir(snapDir, { recursive: true });
  const stepped: SnapshotMessage[] = [];
  const node = { stopping: false, term: 2, stepSnapshot: (message: SnapshotMessage) => { stepped.push(message); return true; } } as unknown as RaftNode;
  const metrics = new ServerMetrics();
  const snapshotter = new Snapshotter({
    dataDir,
    state: {} as MemberState,
    node,
    logger: createLogger({ name, level: 'error', destination: new Writable({ write: (_chunk, _encoding, done) => done() }) }),
    metrics,
    snapshotCount: 10_000,
    catchUpEntries: 5_000,
    openStore: () => Promise.reject(new Error('not in this test')),
    restoreLessor: () => { throw new Error('not in this test'); },
    onInstalled: () => undefined,
  });
  return { snapshotter, stepped, snapDir, metrics };
}

function message(index: number): SnapshotMessage {
  return { type: 'snapshot', from: 1n, to: 2n, term: 2, snapshot: { metadata: { index, term: 2, confState: { voters: [1n, 2n, 3n], learners: [] } }, data: new Uint8Array(0) } } as unknown as SnapshotMessage;
}

async function refusedCount(metrics: ServerMetrics): Promise<number> {
  return (await metrics.snapshotsRefused.get()).values[0]?.value ?? 0;
}

test('a sound dump is stored byte for byte and handed to Raft', async () => {
  const { snapshotter, stepped, snapDir } = await receiver('sound');
  await snapshotter.receive(message(APPLIED), stream(chunks));
  assert.equal(stepped.length, 1);
  assert.deepEqual(readFileSync(join(snapDir, `incoming-${APPLIED}.db`)), Buffer.concat(chunks));
});

test('a dump with a changed byte, a cut end or an older backend is refused on arrival and not kept', async () => {
  const flipped = chunks.map((chunk) => Buffer.from(chunk));
  flipped[1][flipped[1].length >> 1] ^= 0xff; // inside a record of the middle chunk: same length
  const swapped = [chunks[1], chunks[0], ...chunks.slice(2)];
  const cases: Array<{ what: string; parts: Buffer[]; index: number }> = [
    { what: 'a changed byte', parts: flipped, index: APPLIED },
    { what: 'two chunks swapped', parts: swapped, index: APPLIED },
    { what: 'the last chunk missing', parts: chunks.slice(0, -1), index: APPLIED },
    { what: 'a backend older than the snapshot', parts: chunks, index: APPLIED + 10 },
  ];
  for (const { what, parts, index } of cases) {
    const { snapshotter, stepped, snapDir, metrics } = await receiver(what.replace(/\W+/g, '-'));
    await assert.rejects(snapshotter.receive(message(index), stream(parts)), (error: unknown) => error instanceof KvdError && error.code === 'corrupt', `${what}: refused as corrupt`);
    assert.equal(stepped.length, 0, `${what}: Raft never saw it`);
    assert.deepEqual(readdirSync(snapDir), [], `${what}: nothing left in the snap dir`);
    assert.equal(existsSync(join(snapDir, `incoming-${index}.db`)), false);
    assert.equal(await refusedCount(metrics), 1, `${what}: counted in kvd_server_snapshots_refused_total`);
  }
});

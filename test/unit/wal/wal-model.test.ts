// Goal: whatever sequence of Raft-shaped writes the server makes (appends that overwrite a
// suffix, hard states, local snapshots that keep the log after them, installed snapshots that
// replace it, releaseTo, rotation, reopen), Wal.open replays exactly the model's log.
// Method: fast-check generates operation scripts; each runs against a real Wal in a temp dir with
// tiny segments (many rotations) and against an in-memory model of the Raft log; after every
// reopen and at the end the replayed WalState must equal the model. Also checks error mapping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import type { Entry, HardState, SnapshotMetadata } from '../../../src/raft/types.js';
import { Wal } from '../../../src/wal/index.js';
import type { WalState } from '../../../src/wal/index.js';
import { toFatalError } from '../../../src/wal/errors.js';

type Op =
  | { kind: 'append'; back: number; count: number; bump: boolean; withHardState: boolean }
  | { kind: 'local-snapshot'; at: number; release: 'none' | 'to-marker' | 'below' }
  | { kind: 'install-snapshot'; ahead: number }
  | { kind: 'reopen' };

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('append' as const), back: fc.nat(6), count: fc.integer({ min: 1, max: 6 }), bump: fc.boolean(), withHardState: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('local-snapshot' as const), at: fc.nat(100), release: fc.constantFrom('none' as const, 'to-marker' as const, 'below' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('install-snapshot' as const), ahead: fc.integer({ min: -3, max: 5 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reopen' as const) }) },
);

class Model {
  snapshot: SnapshotMetadata | undefined;
  entries: Entry[] = [];
  hardState: HardState = { term: 0, vote: 0n, commit: 0 };
  term = 1;

  get snapshotIndex(): number {
    return this.snapshot?.index ?? 0;
  }
  get lastIndex(): number {
    return this.snapshotIndex + this.entries.length;
  }
  termAt(index: number): number {
    return this.entries[index - this.snapshotIndex - 1].term;
  }
}

function check(state: WalState, model: Model, where: string): void {
  assert.deepEqual(state.snapshot, model.snapshot, `${where}: snapshot`);
  assert.deepEqual(state.hardState, model.hardState, `${where}: hard state`);
  assert.deepEqual(
    state.entries.map((e) => [e.index, e.term, Buffer.from(e.data).toString()]),
    model.entries.map((e) => [e.index, e.term, Buffer.from(e.data).toString()]),
    `${where}: entries`,
  );
}

async function runScript(ops: readonly Op[], segmentBytes: number): Promise<void> {
  const dir = await fs.mkdtemp(join(tmpdir(), 'kvd-wal-model-'));
  let opened = await Wal.open({ dir, segmentBytes });
  const model = new Model();
  let counter = 0;
  try {
    for (const [step, op] of ops.entries()) {
      const wal = opened.wal;
      switch (op.kind) {
        case 'append': {
          if (op.bump) model.term++;
          const start = Math.max(model.snapshotIndex + 1, model.lastIndex + 1 - op.back);
          const entries: Entry[] = [];
          for (let i = 0; i < op.count; i++) {
            entries.push({ index: start + i, term: model.term, type: 'normal', data: Buffer.from(`${start + i}/${model.term}/${counter++}`) });
          }
          const hardState = op.withHardState ? { term: model.term, vote: BigInt(model.term % 3), commit: start - 1 } : undefined;
          await wal.save({ entries, ...(hardState === undefined ? {} : { hardState }) });
          model.entries = [...model.entries.slice(0, start - model.snapshotIndex - 1), ...entries];
          if (hardState !== undefined) model.hardState = hardState;
          break;
        }
        case 'local-snapshot': {
          if (model.entries.length === 0) break;
          const index = model.snapshotIndex + 1 + (op.at % model.entries.length);
          const metadata: SnapshotMetadata = { index, term: model.termAt(index), confState: { voters: [1n], learners: [] } };
          await wal.saveSnapshotMarker(metadata);
          model.entries = model.entries.slice(index - model.snapshotIndex);
          model.snapshot = metadata;
          if (op.release === 'to-marker') await wal.releaseTo(index + 1);
          if (op.release === 'below') await wal.releaseTo(Math.max(1, index - 3));
          break;
        }
        case 'install-snapshot': {
          model.term++;
          const index = Math.max(model.snapshotIndex + 1, model.lastIndex + op.ahead);
          const metadata: SnapshotMetadata = { index, term: model.term, confState: { voters: [1n, 2n], learners: [3n] } };
          await wal.saveSnapshotMarker(metadata);
          model.entries = [];
          model.snapshot = metadata;
          break;
        }
        case 'reopen': {
          await wal.close();
          opened = await Wal.open({ dir, segmentBytes });
          check(opened.state, model, `after step ${step}`);
          break;
        }
      }
    }
    await opened.wal.close();
    opened = await Wal.open({ dir, segmentBytes });
    check(opened.state, model, 'at the end');
  } finally {
    await opened.wal.close();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

test('replay equals the model of the Raft log for random operation scripts', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(opArbitrary, { minLength: 1, maxLength: 40 }), fc.constantFrom(200, 400, 1 << 20), async (ops, segmentBytes) => {
      await runScript(ops, segmentBytes);
    }),
    { numRuns: 60 },
  );
});

test('fs errors map to fatal reasons: ENOSPC/EDQUOT are disk-full, the rest fsync-failed', () => {
  const withCode = (code: string): Error => Object.assign(new Error(code), { code });
  assert.equal(toFatalError(withCode('ENOSPC'), 'w').reason, 'disk-full');
  assert.equal(toFatalError(withCode('EDQUOT'), 'w').reason, 'disk-full');
  assert.equal(toFatalError(withCode('EIO'), 'w').reason, 'fsync-failed');
  const mapped = toFatalError(withCode('EIO'), 'w');
  assert.equal(toFatalError(mapped, 'again'), mapped);
});

test('replay keeps entries saved before the marker that anchors them (either write order)', async () => {
  const { LogReplay } = await import('../../../src/wal/replay.js');
  const replay = new LogReplay();
  const at = { file: 'f', offset: 0 };
  for (let i = 1; i <= 3; i++) replay.entry({ index: i, term: 1, type: 'normal', data: new Uint8Array() }, at);
  for (let i = 11; i <= 12; i++) replay.entry({ index: i, term: 2, type: 'normal', data: new Uint8Array() }, at);
  replay.snapshotMarker({ index: 10, term: 2, confState: { voters: [], learners: [] } });
  assert.deepEqual(replay.finish().entries.map((e) => e.index), [11, 12]);
});

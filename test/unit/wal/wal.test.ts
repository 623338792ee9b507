// Goal: the WAL returns exactly what was durably saved, with Raft overwrite semantics, and repairs
// only torn tails: corruption before the tail is a loud WalCorruptError naming file and offset.
// Method: write through Wal into a temp dir, close, reopen and compare the replayed WalState;
// damage files directly (cut the last record at every byte offset, append garbage, flip a byte in
// a middle record); small segment sizes force rotation and exercise releaseTo.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs, readFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Entry, HardState, SnapshotMetadata } from '../../../src/raft/types.js';
import { Wal, WalCorruptError, WalFatalError } from '../../../src/wal/index.js';
import type { WalEvent } from '../../../src/wal/index.js';
import { AssertionError } from '../../../src/util/assert.js';
import { withTempDir } from '../temp-dir.js';

const withDir = (body: (dir: string) => Promise<void>): Promise<void> => withTempDir('kvd-wal-', body);

function entry(index: number, term: number, text = `e${index}t${term}`): Entry {
  return { index, term, type: 'normal', data: Buffer.from(text) };
}

function range(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(entry(i, term));
  return out;
}

function plain(entries: readonly Entry[]): Array<{ index: number; term: number; type: string; data: string }> {
  return entries.map((e) => ({ index: e.index, term: e.term, type: e.type, data: Buffer.from(e.data).toString('latin1') }));
}

function hs(term: number, vote: bigint, commit: number): HardState {
  return { term, vote, commit };
}

/**
 * Options of tests that compare file sizes with the bytes of the records saved: without
 * preallocation (which keeps zeros ahead of the last record) the file ends at the last record.
 * The preallocation tests below run the same damage against preallocated segments.
 */
const APPEND_ONLY = { preallocateBytes: 0 } as const;

const META = (index: number, term: number): SnapshotMetadata => ({ index, term, confState: { voters: [1n, 2n, 3n], learners: [9n] } });

test('a fresh WAL opens empty and exists() turns true', async () => {
  await withDir(async (parent) => {
    const dir = join(parent, 'a', 'wal');
    assert.equal(Wal.exists(dir), false);
    const { wal, state } = await Wal.open({ dir });
    assert.deepEqual(state, { hardState: { term: 0, vote: 0n, commit: 0 }, entries: [] });
    assert.equal(Wal.exists(dir), true);
    await wal.close();
  });
});

test('saved entries, hard state and conf-change type round-trip; latest hard state wins', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir });
    const big = { index: 3, term: 1, type: 'conf-change' as const, data: new Uint8Array(70000).fill(7) };
    await wal.save({ hardState: hs(1, 2n, 0), entries: range(1, 2, 1) });
    await wal.save({ entries: [big] });
    await wal.save({ hardState: hs(2, 0xffffffffffffffffn, 3), entries: [] });
    await wal.close();
    const { wal: again, state } = await Wal.open({ dir });
    assert.deepEqual(state.hardState, hs(2, 0xffffffffffffffffn, 3));
    assert.deepEqual(plain(state.entries), plain([...range(1, 2, 1), big]));
    assert.equal(state.entries[2].type, 'conf-change');
    assert.equal(state.snapshot, undefined);
    await again.close();
  });
});

test('nothing to write is a no-op: no bytes appended', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir, ...APPEND_ONLY });
    await wal.save({ hardState: hs(1, 1n, 0), entries: [] });
    const [segment] = wal.segmentPaths();
    const size = statSync(segment).size;
    await wal.save({ entries: [] });
    await wal.save({ hardState: hs(1, 1n, 0), entries: [] });
    assert.equal(statSync(segment).size, size);
    await wal.close();
  });
});

test('entries at an already-written index overwrite the log from there (also across reopen)', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir });
    await wal.save({ entries: range(1, 10, 1) });
    await wal.save({ entries: range(6, 7, 2) });
    await wal.close();
    const first = await Wal.open({ dir });
    assert.deepEqual(plain(first.state.entries), plain([...range(1, 5, 1), ...range(6, 7, 2)]));
    await first.wal.save({ entries: range(3, 4, 3) });
    await first.wal.save({ entries: range(5, 5, 3) });
    await first.wal.close();
    const second = await Wal.open({ dir });
    assert.deepEqual(plain(second.state.entries), plain([...range(1, 2, 1), ...range(3, 5, 3)]));
    await second.wal.close();
  });
});

test('a batch of 256 entries is encoded into a single record run (one write)', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir, ...APPEND_ONLY });
    const [segment] = wal.segmentPaths();
    const before = statSync(segment).size;
    await wal.save({ hardState: hs(1, 1n, 0), entries: range(1, 256, 1) });
    const bytes = 256 * 9 + 256 * 17 + range(1, 256, 1).reduce((n, e) => n + e.data.length, 0) + 9 + 24;
    assert.equal(statSync(segment).size - before, bytes);
    await wal.close();
  });
});

test('overlapping saves are a bug (assertion)', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir });
    const first = wal.save({ entries: range(1, 1, 1) });
    await assert.rejects(wal.save({ entries: range(2, 2, 1) }), AssertionError);
    await first;
    await assert.rejects(wal.save({ entries: [entry(5, 1), entry(7, 1)] }), AssertionError);
    await wal.close();
  });
});

/** Writes records 1..9 then one last record; returns the file bytes and where the last record starts. */
async function prepareForCut(dir: string): Promise<{ segment: string; bytes: Buffer; lastStart: number }> {
  const { wal } = await Wal.open({ dir, ...APPEND_ONLY });
  await wal.save({ hardState: hs(1, 1n, 0), entries: range(1, 9, 1) });
  const [segment] = wal.segmentPaths();
  const lastStart = statSync(segment).size;
  await wal.save({ entries: [entry(10, 1, 'the last record, long enough to cut in many places')] });
  await wal.close();
  return { segment, bytes: readFileSync(segment), lastStart };
}

test('cutting the last record at every byte offset recovers all previous records', async () => {
  await withDir(async (dir) => {
    const { segment, bytes, lastStart } = await prepareForCut(dir);
    for (let cut = lastStart; cut < bytes.length; cut++) {
      writeFileSync(segment, bytes.subarray(0, cut));
      const events: WalEvent[] = [];
      const { wal, state } = await Wal.open({ dir, ...APPEND_ONLY, logger: (event) => events.push(event) });
      assert.deepEqual(plain(state.entries), plain(range(1, 9, 1)), `cut at ${cut}`);
      assert.deepEqual(state.hardState, hs(1, 1n, 0));
      assert.equal(statSync(segment).size, lastStart, `file truncated on disk (cut ${cut})`);
      assert.equal(events.some((e) => e.kind === 'torn-tail-truncated'), cut > lastStart);
      await wal.close();
    }
    // After a repair, appends land cleanly and replay sees them.
    writeFileSync(segment, bytes.subarray(0, lastStart + 5));
    const reopened = await Wal.open({ dir, ...APPEND_ONLY });
    await reopened.wal.save({ entries: [entry(10, 2)] });
    await reopened.wal.close();
    const final = await Wal.open({ dir, ...APPEND_ONLY });
    assert.deepEqual(plain(final.state.entries), plain([...range(1, 9, 1), entry(10, 2)]));
    await final.wal.close();
  });
});

test('random garbage appended after the last record is truncated', async () => {
  await withDir(async (dir) => {
    const { segment, bytes } = await prepareForCut(dir);
    let seed = 7;
    for (const length of [1, 8, 9, 100, 4096]) {
      const garbage = Buffer.alloc(length);
      for (let i = 0; i < length; i++) {
        seed = (seed * 1103515245 + 12345) >>> 0;
        garbage[i] = seed >>> 24;
      }
      writeFileSync(segment, Buffer.concat([bytes, garbage]));
      const { wal, state } = await Wal.open({ dir, ...APPEND_ONLY });
      assert.equal(state.entries.length, 10, `garbage of ${length}`);
      assert.equal(statSync(segment).size, bytes.length);
      await wal.close();
    }
    writeFileSync(segment, Buffer.concat([bytes, Buffer.alloc(8192)]));
    const zeros = await Wal.open({ dir, ...APPEND_ONLY });
    assert.equal(zeros.state.entries.length, 10, 'zero-filled tail');
    await zeros.wal.close();
  });
});

test('a flipped byte in a middle record is a WalCorruptError naming file and offset', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir, ...APPEND_ONLY });
    const [segment] = wal.segmentPaths();
    const starts: number[] = [];
    for (let i = 1; i <= 5; i++) {
      starts.push(statSync(segment).size);
      await wal.save({ entries: [entry(i, 1, `payload number ${i}`)] });
    }
    await wal.close();
    const bytes = readFileSync(segment);
    for (const where of ['payload', 'length', 'crc', 'type'] as const) {
      const damaged = Buffer.from(bytes);
      const at = starts[2] + { payload: 20, length: 1, crc: 6, type: 4 }[where];
      damaged[at] ^= 0x40;
      writeFileSync(segment, damaged);
      await assert.rejects(Wal.open({ dir, ...APPEND_ONLY }), (error: unknown) => {
        assert.ok(error instanceof WalCorruptError, `${where}: ${String(error)}`);
        assert.ok(error instanceof WalFatalError);
        assert.equal(error.reason, 'corrupt');
        assert.equal(error.file, segment);
        assert.equal(error.offset, starts[2]);
        assert.match(error.message, new RegExp(`offset ${starts[2]}`));
        return true;
      });
      assert.equal(readFileSync(segment).length, bytes.length, 'a corrupt WAL is never truncated');
    }
  });
});

test('segments rotate at segmentBytes and replay across them; each starts with the state', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir, segmentBytes: 1024 });
    await wal.saveSnapshotMarker(META(0, 0));
    for (let i = 1; i <= 60; i++) await wal.save({ hardState: hs(1, 1n, i - 1), entries: [entry(i, 1, 'x'.repeat(40))] });
    await wal.save({ entries: range(50, 55, 2) });
    const segments = wal.segmentPaths();
    assert.ok(segments.length >= 3, `rotated into ${segments.length} segments`);
    await wal.close();
    const names = (await fs.readdir(dir)).filter((n) => n.endsWith('.wal')).sort();
    assert.deepEqual(names.map((n) => join(dir, n)), segments);
    assert.equal(names[0], '0000000000000000-0000000000000001.wal');
    const { wal: again, state } = await Wal.open({ dir, segmentBytes: 1024 });
    assert.deepEqual(plain(state.entries), plain([...range(1, 49, 1).map((e) => entry(e.index, 1, 'x'.repeat(40))), ...range(50, 55, 2)]));
    assert.deepEqual(state.hardState, hs(1, 1n, 59));
    assert.deepEqual(state.snapshot, META(0, 0));
    await again.close();
  });
});

test('a bad record in a segment other than the last is corruption, even at its end', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir, segmentBytes: 512 });
    for (let i = 1; i <= 30; i++) await wal.save({ entries: [entry(i, 1, 'y'.repeat(40))] });
    const [first] = wal.segmentPaths();
    await wal.close();
    const bytes = readFileSync(first);
    writeFileSync(first, bytes.subarray(0, bytes.length - 3));
    await assert.rejects(Wal.open({ dir }), (error: unknown) => error instanceof WalCorruptError && error.file === first);
  });
});

test('a missing middle segment is corruption', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir, segmentBytes: 512 });
    for (let i = 1; i <= 40; i++) await wal.save({ entries: [entry(i, 1, 'z'.repeat(40))] });
    const segments = wal.segmentPaths();
    await wal.close();
    assert.ok(segments.length >= 3);
    await fs.unlink(segments[1]);
    await assert.rejects(Wal.open({ dir }), (error: unknown) => error instanceof WalCorruptError && error.file === segments[2]);
  });
});

test('a last segment whose creation never became durable is removed', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir, segmentBytes: 512 });
    for (let i = 1; i <= 20; i++) await wal.save({ entries: [entry(i, 1, 'w'.repeat(40))] });
    const segments = wal.segmentPaths();
    await wal.close();
    const last = segments[segments.length - 1];
    const lastBytes = readFileSync(last);
    writeFileSync(last, lastBytes.subarray(0, 7));
    const { wal: again, state } = await Wal.open({ dir, segmentBytes: 512 });
    assert.deepEqual(again.segmentPaths(), segments.slice(0, -1));
    assert.ok(state.entries.length > 0);
    await again.save({ entries: [entry(state.entries[state.entries.length - 1].index + 1, 2)] });
    await again.close();
    const final = await Wal.open({ dir, segmentBytes: 512 });
    assert.equal(final.state.entries[final.state.entries.length - 1].term, 2);
    await final.wal.close();
  });
});

test('reopen after a snapshot marker returns only the entries after it', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir });
    await wal.save({ hardState: hs(1, 1n, 10), entries: range(1, 10, 1) });
    await wal.saveSnapshotMarker(META(6, 1));
    await wal.save({ entries: range(11, 12, 1) });
    await wal.close();
    const opened = await Wal.open({ dir });
    assert.deepEqual(plain(opened.state.entries), plain(range(7, 12, 1)));
    assert.deepEqual(opened.state.snapshot, META(6, 1));
    // A snapshot from the leader that does not match the local log replaces it.
    await opened.wal.saveSnapshotMarker(META(20, 3));
    await opened.wal.save({ entries: range(21, 22, 3) });
    await opened.wal.close();
    const installed = await Wal.open({ dir });
    assert.deepEqual(plain(installed.state.entries), plain(range(21, 22, 3)));
    assert.deepEqual(installed.state.snapshot, META(20, 3));
    // A marker whose term does not match the entry at its index discards the log after it too.
    await installed.wal.saveSnapshotMarker(META(22, 4));
    await installed.wal.close();
    const mismatch = await Wal.open({ dir });
    assert.deepEqual(mismatch.state.entries, []);
    await mismatch.wal.close();
  });
});

test('saving entries that would leave a gap is a bug (assertion), so the WAL never holds one', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir });
    await wal.save({ entries: range(1, 3, 2) });
    await assert.rejects(wal.save({ entries: range(5, 6, 2) }), AssertionError);
    await assert.rejects(wal.save({ entries: range(4, 4, 1) }), AssertionError, 'terms never decrease');
    // A snapshot Ready: the marker first, then the entries after it.
    await wal.saveSnapshotMarker(META(10, 3));
    await assert.rejects(wal.save({ entries: range(10, 10, 3) }), AssertionError, 'at or below the marker');
    await wal.save({ entries: range(11, 12, 3) });
    await wal.close();
    const opened = await Wal.open({ dir });
    assert.deepEqual(plain(opened.state.entries), plain(range(11, 12, 3)));
    await opened.wal.close();
  });
});

test('a gap in the log on disk is corruption', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir, segmentBytes: 300 });
    for (let i = 1; i <= 12; i++) await wal.save({ entries: [entry(i, 1, 'g'.repeat(40))] });
    const segments = wal.segmentPaths();
    await wal.close();
    // Remove one entry record from the middle of the first segment by splicing the file.
    const bytes = readFileSync(segments[0]);
    const start = bytes.indexOf(Buffer.from('g'.repeat(40))) - 26;
    const recordBytes = 9 + 17 + 40;
    writeFileSync(segments[0], Buffer.concat([bytes.subarray(0, start), bytes.subarray(start + recordBytes)]));
    await assert.rejects(Wal.open({ dir }), WalCorruptError);
  });
});

test('releaseTo deletes whole segments below the index and keeps state replayable', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir, segmentBytes: 600 });
    for (let i = 1; i <= 100; i++) await wal.save({ hardState: hs(2, 3n, i), entries: [entry(i, 2, 'r'.repeat(30))] });
    await wal.saveSnapshotMarker(META(70, 2));
    const before = wal.segmentPaths();
    await assert.rejects(wal.releaseTo(72), AssertionError, 'beyond the marker is a bug');
    await wal.releaseTo(70);
    const after = wal.segmentPaths();
    assert.ok(after.length < before.length && after.length >= 1, `${before.length} -> ${after.length}`);
    assert.deepEqual(after, before.slice(before.length - after.length));
    await wal.save({ entries: [entry(101, 3)] });
    await wal.close();
    const { wal: again, state } = await Wal.open({ dir, segmentBytes: 600 });
    assert.deepEqual(state.snapshot, META(70, 2));
    assert.deepEqual(state.hardState, hs(2, 3n, 100));
    assert.deepEqual(state.entries.map((e) => e.index), range(71, 101, 0).map((e) => e.index));
    // Releasing everything a later marker covers leaves only the current segment.
    await again.saveSnapshotMarker(META(101, 3));
    await again.releaseTo(102);
    assert.equal(again.segmentPaths().length, 1);
    await again.close();
    const last = await Wal.open({ dir });
    assert.deepEqual(last.state.entries, []);
    assert.deepEqual(last.state.snapshot, META(101, 3));
    assert.deepEqual(last.state.hardState, hs(2, 3n, 100));
    await last.wal.close();
  });
});

test('write failures surface as WalFatalError and stick', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir, segmentBytes: 64 });
    await wal.save({ entries: [entry(1, 1, 'f'.repeat(100))] });
    // Make the next rotation fail: the segment name it will create already exists.
    const taken = join(dir, '0000000000000001-0000000000000002.wal');
    writeFileSync(taken, '');
    await assert.rejects(wal.save({ entries: [entry(2, 1)] }), (error: unknown) => error instanceof WalFatalError && error.reason === 'fsync-failed');
    await assert.rejects(wal.save({ entries: [entry(2, 1)] }), WalFatalError);
    await wal.close();
    await fs.unlink(taken);
  });
});

test('a rotation write cut at every byte offset recovers everything saved before it', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir, segmentBytes: 400 });
    await wal.saveSnapshotMarker(META(0, 0));
    let index = 1;
    while (wal.segmentPaths().length === 1) {
      await wal.save({ hardState: hs(1, 1n, index - 1), entries: [entry(index, 1, 'q'.repeat(30))] });
      index++;
    }
    await wal.close();
    const segments = (await fs.readdir(dir)).filter((n) => n.endsWith('.wal')).sort().map((n) => join(dir, n));
    const newest = segments[segments.length - 1];
    const bytes = readFileSync(newest);
    const before = { entries: range(1, index - 2, 1).map((e) => entry(e.index, 1, 'q'.repeat(30))), hardState: hs(1, 1n, index - 3) };
    for (let cut = 0; cut < bytes.length; cut++) {
      writeFileSync(newest, bytes.subarray(0, cut));
      const opened = await Wal.open({ dir, segmentBytes: 400 });
      // The rotating write ends with [entry record (56 bytes)][hard-state record (33 bytes)].
      const lastEntrySurvives = cut >= bytes.length - 33;
      const expected = lastEntrySurvives ? [...before.entries, entry(index - 1, 1, 'q'.repeat(30))] : before.entries;
      assert.deepEqual(plain(opened.state.entries), plain(expected), `cut at ${cut}`);
      assert.deepEqual(opened.state.hardState, before.hardState, `cut at ${cut}`);
      assert.deepEqual(opened.state.snapshot, META(0, 0), `cut at ${cut}`);
      await opened.wal.close();
      if (cut < 26) assert.equal((await fs.readdir(dir)).filter((n) => n.endsWith('.wal')).length, segments.length - 1);
      else assert.equal(statSync(newest).size <= cut, true);
      // Put the removed or truncated segment back for the next cut.
      writeFileSync(newest, bytes);
    }
  });
});

test("a buffered hard-state save (Raft's mustSync false) is written and read back; entries must be synced", async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir });
    await wal.save({ hardState: hs(1, 1n, 0), entries: range(1, 3, 1) });
    await wal.save({ hardState: hs(1, 1n, 3), entries: [], durability: 'buffered' });
    await assert.rejects(wal.save({ entries: range(4, 4, 1), durability: 'buffered' }), AssertionError);
    await wal.close();
    const reopened = await Wal.open({ dir });
    assert.deepEqual(reopened.state.hardState, hs(1, 1n, 3));
    assert.equal(reopened.state.entries.length, 3);
    await reopened.wal.close();
  });
});

test('a buffered save is held in memory: no I/O until the next durable write; a crash before it replays the older commit, close() writes it', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir, ...APPEND_ONLY });
    await wal.save({ hardState: hs(1, 1n, 0), entries: range(1, 3, 1) });
    const segment = wal.segmentPaths()[0];
    const size = statSync(segment).size;
    await wal.save({ hardState: hs(1, 1n, 3), entries: [], durability: 'buffered' });
    assert.equal(statSync(segment).size, size, 'a commit-only save writes nothing');
    // What a member killed at this point replays: a copy of the directory, opened.
    const replayIfKilledNow = async (): Promise<{ hardState: HardState; entries: number }> => {
      let replayed: { hardState: HardState; entries: number } | undefined;
      await withDir(async (crashed) => {
        await fs.cp(dir, crashed, { recursive: true });
        const replay = await Wal.open({ dir: crashed, ...APPEND_ONLY });
        replayed = { hardState: replay.state.hardState, entries: replay.state.entries.length };
        await replay.wal.close();
      });
      assert.ok(replayed !== undefined);
      return replayed;
    };
    assert.deepEqual(await replayIfKilledNow(), { hardState: hs(1, 1n, 0), entries: 3 }, 'the last durable save');
    // The next durable save carries the held record in front of its own.
    await wal.save({ entries: range(4, 4, 1) });
    assert.deepEqual(await replayIfKilledNow(), { hardState: hs(1, 1n, 3), entries: 4 });
    // Held again, then written by close().
    await wal.save({ hardState: hs(1, 1n, 4), entries: [], durability: 'buffered' });
    await wal.close();
    const reopened = await Wal.open({ dir, ...APPEND_ONLY });
    assert.deepEqual(reopened.state.hardState, hs(1, 1n, 4));
    assert.equal(reopened.state.entries.length, 4);
    await reopened.wal.close();
  });
});

test('durable saves go through an O_DSYNC descriptor and carry the held buffered records in front (no duplicate records)', async () => {
  await withDir(async (dir) => {
    const { wal } = await Wal.open({ dir, ...APPEND_ONLY });
    await wal.save({ hardState: hs(1, 1n, 0), entries: range(1, 3, 1) });
    await wal.save({ hardState: hs(1, 1n, 2), entries: [], durability: 'buffered' });
    await wal.save({ hardState: hs(1, 1n, 3), entries: [], durability: 'buffered' });
    await wal.save({ entries: range(4, 5, 1) });
    // The segment is open a second time with O_DSYNC (Linux: 010000 in /proc's flags, octal).
    const segment = wal.segmentPaths()[0];
    const fds = await fs.readdir('/proc/self/fd');
    const dsync = [];
    for (const fd of fds) {
      const target = await fs.readlink(`/proc/self/fd/${fd}`).catch(() => '');
      if (target !== segment) continue;
      const flags = /flags:\s+([0-7]+)/.exec(await fs.readFile(`/proc/self/fdinfo/${fd}`, 'utf8').catch(() => ''))?.[1];
      if (flags !== undefined && (parseInt(flags, 8) & 0o10000) !== 0) dsync.push(fd);
    }
    assert.equal(dsync.length, 1, 'one O_DSYNC descriptor on the current segment');
    const size = statSync(segment).size;
    await wal.close();
    // Same bytes as writing each save once: a WAL that also saves the same things with only
    // synced saves has the same size (a held buffered record lands where its own write would have).
    await withDir(async (other) => {
      const second = await Wal.open({ dir: other, ...APPEND_ONLY });
      await second.wal.save({ hardState: hs(1, 1n, 0), entries: range(1, 3, 1) });
      await second.wal.save({ hardState: hs(1, 1n, 2), entries: [] });
      await second.wal.save({ hardState: hs(1, 1n, 3), entries: [] });
      await second.wal.save({ entries: range(4, 5, 1) });
      assert.equal(statSync(second.wal.segmentPaths()[0]).size, size);
      await second.wal.close();
    });
    const reopened = await Wal.open({ dir, ...APPEND_ONLY });
    assert.deepEqual(reopened.state.hardState, hs(1, 1n, 3));
    assert.deepEqual(plain(reopened.state.entries), plain(range(1, 5, 1)));
    await reopened.wal.close();
  });
});

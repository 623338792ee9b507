// WAL throughput benchmark: appends/s and fsyncs/s (= Wal.save calls/s, one fdatasync each) for
// batches of 1, 4, 16, 64, 256 and 1024 entries of 256 bytes, next to the raw fdatasync rate of
// the same disk measured in the same run (write 256 bytes + fdatasync in a loop on a plain file in
// the same directory). Usage: node dist/bench/wal.js [--dir <parent dir>] [--seconds <per row>]
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Entry } from '../src/raft/types.js';
import { Wal } from '../src/wal/index.js';

const ENTRY_BYTES = 256;
const BATCH_SIZES = [1, 4, 16, 64, 256, 1024] as const;

function argument(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

const parent = argument('--dir') ?? tmpdir();
const secondsPerRow = Number(argument('--seconds') ?? '2');

async function rawFdatasyncRate(dir: string): Promise<number> {
  const handle = await fs.open(join(dir, 'raw.bin'), 'w');
  const block = Buffer.alloc(ENTRY_BYTES, 0x61);
  let count = 0;
  let position = 0;
  const started = performance.now();
  const deadline = started + secondsPerRow * 1000;
  while (performance.now() < deadline) {
    await handle.write(block, 0, block.length, position);
    await handle.datasync();
    position += block.length;
    count++;
  }
  const elapsed = (performance.now() - started) / 1000;
  await handle.close();
  return count / elapsed;
}

async function walRate(walDir: string, batch: number): Promise<{ savesPerSecond: number; entriesPerSecond: number; mibPerSecond: number }> {
  const { wal } = await Wal.open({ dir: walDir });
  const data = new Uint8Array(ENTRY_BYTES).fill(0x62);
  let index = 1;
  let saves = 0;
  const started = performance.now();
  const deadline = started + secondsPerRow * 1000;
  while (performance.now() < deadline) {
    const entries: Entry[] = new Array(batch);
    for (let i = 0; i < batch; i++) entries[i] = { index: index + i, term: 1, type: 'normal', data };
    await wal.save({ hardState: { term: 1, vote: 1n, commit: index - 1 }, entries });
    index += batch;
    saves++;
  }
  const elapsed = (performance.now() - started) / 1000;
  await wal.close();
  const entriesPerSecond = ((index - 1) / elapsed);
  return { savesPerSecond: saves / elapsed, entriesPerSecond, mibPerSecond: (entriesPerSecond * ENTRY_BYTES) / (1024 * 1024) };
}

async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await fs.readdir(dir)) total += (await fs.stat(join(dir, name))).size;
  return total;
}

async function main(): Promise<void> {
  const dir = await fs.mkdtemp(join(parent, 'kvd-bench-wal-'));
  try {
    console.log(`WAL benchmark in ${dir}: ${ENTRY_BYTES}-byte entries, ${secondsPerRow} s per row, node ${process.version}`);
    const raw = await rawFdatasyncRate(dir);
    const rows: string[][] = [['batch', 'fsyncs/s', 'appends/s', 'MiB/s', 'fsyncs vs raw']];
    rows.push(['raw 256B+fdatasync (before)', raw.toFixed(0), '-', '-', '100%']);
    let replayDir = '';
    for (const batch of BATCH_SIZES) {
      const walDir = join(dir, `wal-${batch}`);
      const result = await walRate(walDir, batch);
      if (replayDir !== '') await fs.rm(replayDir, { recursive: true, force: true });
      replayDir = walDir;
      rows.push([
        String(batch),
        result.savesPerSecond.toFixed(0),
        result.entriesPerSecond.toFixed(0),
        result.mibPerSecond.toFixed(1),
        `${((result.savesPerSecond / raw) * 100).toFixed(0)}%`,
      ]);
    }
    // The disk may be shared: measure the raw rate again so drift during the run is visible.
    const rawAfter = await rawFdatasyncRate(dir);
    rows.push(['raw 256B+fdatasync (after)', rawAfter.toFixed(0), '-', '-', `${((rawAfter / raw) * 100).toFixed(0)}%`]);
    const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
    for (const row of rows) console.log(row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]) : cell.padStart(widths[column]))).join('  '));
    // Restart cost: replay the WAL the largest batch size just wrote.
    const bytes = (await fs.readdir(replayDir)).length > 0 ? await directoryBytes(replayDir) : 0;
    const started = performance.now();
    const { wal, state } = await Wal.open({ dir: replayDir });
    const elapsedMs = performance.now() - started;
    await wal.close();
    console.log(
      `replay on open: ${(bytes / 1048576).toFixed(1)} MiB, ${state.entries.length} entries in ${elapsedMs.toFixed(0)} ms ` +
        `(${((bytes / 1048576) / (elapsedMs / 1000)).toFixed(0)} MiB/s, ${(state.entries.length / (elapsedMs / 1000)).toFixed(0)} entries/s)`,
    );
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

await main();

#!/usr/bin/env node
/**
 * Test tool: silently corrupts one member's backend the way a bad disk or a bug would, keeping
 * the record valid. With the member stopped, it opens `<data-dir>/member/db` as the store does,
 * finds the newest record of `key`, and rewrites it with its value bytes flipped (same length,
 * same header: sub revision, create revision, version, lease), so the store opens and serves
 * it, and only a HashKV comparison can tell.
 *
 * Usage: node dist/test/integration/tools/flip-value.js <data-dir> <key>
 */
import { join } from 'node:path';
import { newLevel } from '../../../src/store/mvcc/level.js';
import { PREFIX_REVISION, decodeRecord, encodePut, parseRevisionKey } from '../../../src/store/mvcc/codec.js';

/** Flips every bit of the newest value of `key` in the stopped member's backend; returns its revision. */
export async function flipValue(dataDir: string, key: string): Promise<number> {
  const db = newLevel(join(dataDir, 'member', 'db')); // the store's own options
  await db.open();
  try {
    let found: { levelKey: Buffer; value: Buffer; revision: number } | undefined;
    for await (const [levelKey, value] of db.iterator({ gte: Buffer.from([PREFIX_REVISION]), lt: Buffer.from([PREFIX_REVISION + 1]) })) {
      const parsed = parseRevisionKey(levelKey);
      if (parsed.key === key) found = { levelKey, value, revision: parsed.revision };
    }
    if (found === undefined) throw new Error(`no record of ${key} in ${dataDir}`);
    const record = decodeRecord(found.value);
    if (record.kind !== 'put') throw new Error(`the newest record of ${key} is a tombstone`);
    const flipped = Buffer.from(record.value.map((byte) => byte ^ 0xff));
    await db.put(found.levelKey, encodePut({ sub: record.sub, created: record.created, version: record.version, lease: record.lease, value: flipped }), { sync: true });
    return found.revision;
  } finally {
    await db.close();
  }
}

if (process.argv[1]?.endsWith('flip-value.js') === true) {
  const [dataDir, key] = process.argv.slice(2);
  if (dataDir === undefined || key === undefined) {
    process.stderr.write('usage: flip-value <data-dir> <key>\n');
    process.exit(2);
  }
  flipValue(dataDir, key).then(
    (revision) => process.stdout.write(`flipped the value of ${key} at revision ${revision}\n`),
    (error: unknown) => {
      process.stderr.write(`flip-value: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}

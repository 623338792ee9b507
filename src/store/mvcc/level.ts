/**
 * The one place the MVCC store's LevelDB is configured, for the store's own database and for one
 * written from a snapshot (install.ts) alike. No Snappy: bytes on disk follow bytes stored, for
 * the quota and for dbSizeInUse (store.ts's module comment), whichever way a member got its data.
 */
import { ClassicLevel } from 'classic-level';

export type Level = ClassicLevel<Buffer, Buffer>;

/** A (not yet opened) LevelDB at `path` with the store's options. */
export function newLevel(path: string): Level {
  return new ClassicLevel<Buffer, Buffer>(path, { keyEncoding: 'buffer', valueEncoding: 'buffer', compression: false });
}

/** Public surface of src/wal: the write-ahead log, snapshot files, their errors and CRC-32C. */
export { Wal, SEGMENT_BYTES_DEFAULT, SLOW_FSYNC_MS } from './wal.js';
export type { WalEvent, WalOptions, WalState } from './wal.js';
export { SnapshotStore, SNAPSHOTS_KEPT_DEFAULT } from './snapshot-store.js';
export type { SnapshotEvent, SnapshotStoreOptions } from './snapshot-store.js';
export { WalFatalError, WalCorruptError, WalNoSpaceError, isNoSpaceError } from './errors.js';
export type { WalFatalReason } from './errors.js';
export { crc32c } from './crc32c.js';

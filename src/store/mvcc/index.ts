/**
 * Public surface of the MVCC store: the store class, its outcome/event types, request
 * validation (for the API edge to reject early, as etcd does before proposing) and the domain types.
 */
export { MvccStore, COMPACTION_STEP_KEYS, RANGE_CURSORS_OPEN_MAX, DEFRAG_SLICE_BYTES, isNoSpaceFailure } from './store.js';
export { SNAPSHOT_CHUNK_BYTES, SNAPSHOT_FILE_ALIGN_BYTES, SNAPSHOT_FILE_HASH_BYTES, StoreDump, checkSnapshotFile, framedSize, hasSnapshotHash, readDump } from './dump.js';
export type { DumpRead, DumpSummary, DumpTail, HashCheck } from './dump.js';
export { RANGE_PAGE_BYTES_TARGET, RANGE_PAGE_KEYS_MAX } from './range-cursor.js';
export type { RangeCursorOptions } from './range-cursor.js';
export type { ApplyEntry, ApplyOptions, ApplyOutcome, DefragResult, MvccStoreOptions, RevisionChanges, StoreEvent } from './store.js';
export { OLD_SUFFIX, RESTORE_SUFFIX, PreparedRestore } from './install.js';
export type { InstallRecovery } from './install.js';
export { DEFAULT_MAX_TXN_OPS, validateRange, validateWriteRequest } from './validate.js';
export type * from './types.js';

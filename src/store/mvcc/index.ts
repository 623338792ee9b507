/**
 * Public surface of the MVCC store: the store class, its outcome/event types, request
 * validation (for the API edge to reject early, as etcd does before proposing) and the domain types.
 */
export { MvccStore, COMPACTION_STEP_KEYS, SNAPSHOT_CHUNK_BYTES } from './store.js';
export type { ApplyEntry, ApplyOptions, ApplyOutcome, MvccStoreOptions, RevisionChanges, StoreEvent } from './store.js';
export { OLD_SUFFIX, RESTORE_SUFFIX, PreparedRestore } from './install.js';
export type { InstallRecovery } from './install.js';
export { DEFAULT_MAX_TXN_OPS, validateRange, validateWriteRequest } from './validate.js';
export type * from './types.js';

/**
 * Environmental dead-ends of the durability layer (STYLE.md §4, kind 3). The server catches
 * {@link WalFatalError}, calls `fatal(error.reason, ...)` and exits: after a failed fsync the page
 * cache may have dropped the dirty pages, so retrying could acknowledge data that is not on disk.
 */

/** Why the WAL or snapshot store cannot continue. */
export type WalFatalReason = 'disk-full' | 'fsync-failed' | 'corrupt';

/**
 * A fatal condition: disk full (ENOSPC/EDQUOT), a failed write or fsync ('fsync-failed'), or
 * corruption ('corrupt', see {@link WalCorruptError}). Once a Wal has thrown one, every later call
 * rethrows it. `cause` holds the underlying error when there is one.
 */
export class WalFatalError extends Error {
  override name = 'WalFatalError';
  readonly reason: WalFatalReason;

  constructor(reason: WalFatalReason, message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.reason = reason;
  }
}

/**
 * A bad record that is not a torn tail (valid records follow it, or it is in a segment other than
 * the last), or a structural problem (missing segment, log gap). `file` is the segment's path and
 * `offset` the byte offset of the offending record within it. Never skipped: the operator decides.
 */
export class WalCorruptError extends WalFatalError {
  override name = 'WalCorruptError';
  readonly file: string;
  readonly offset: number;

  constructor(options: { file: string; offset: number; detail: string }) {
    super('corrupt', `corrupt WAL record in ${options.file} at offset ${options.offset}: ${options.detail}`);
    this.file = options.file;
    this.offset = options.offset;
  }
}

/**
 * The disk is full (ENOSPC, EDQUOT) and nothing was lost: the write or fsync that failed is not
 * acknowledged, and the same call may be retried once space returns (Wal.save,
 * Wal.saveSnapshotMarker, SnapshotStore.save). Unlike {@link WalFatalError} it is not sticky.
 */
export class WalNoSpaceError extends Error {
  override name = 'WalNoSpaceError';
  readonly reason = 'disk-full' as const;

  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
  }
}

/** Whether `error` is the file system saying it is full (ENOSPC, EDQUOT), by code, or a WalNoSpaceError. */
export function isNoSpaceError(error: unknown): boolean {
  if (error instanceof WalNoSpaceError) return true;
  if (error instanceof WalFatalError) return error.reason === 'disk-full';
  const code = typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : '';
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** Maps an error from a write or fsync to the fatal reason the server exits with. */
export function toFatalError(error: unknown, what: string): WalFatalError {
  if (error instanceof WalFatalError) return error;
  const code = typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : '';
  const reason: WalFatalReason = code === 'ENOSPC' || code === 'EDQUOT' ? 'disk-full' : 'fsync-failed';
  const message = error instanceof Error ? error.message : String(error);
  return new WalFatalError(reason, `${what}: ${message}`, { cause: error });
}

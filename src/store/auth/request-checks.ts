/**
 * Which key accesses a KV request needs (etcd's apply_auth.go), as a list of checks, so that the
 * same rules serve the read path (src/server) and the apply path (the applier) alike:
 * - Range: read on [key, range_end).
 * - Put: write on the key; read on it too with prev_kv; with a lease, write on every key the
 *   lease already holds (the user could otherwise revoke the lease and delete those keys).
 * - DeleteRange: write on the range; read too with prev_kv.
 * - Txn: read on every compare's key or range, then the checks of every operation of both
 *   branches (whichever runs), nested txns included (etcd 3.4 skips nested ones; kvd does not).
 * - LeaseRevoke: write on every key the lease holds.
 * Compaction is an admin operation (root only), decided by the caller.
 */
import type { LeaseId, RequestOp, TxnRequest, WriteRequest } from '../mvcc/types.js';

/** One access a request needs. `rangeEnd` follows request conventions (empty: one key). */
export interface AccessCheck {
  readonly access: 'read' | 'write';
  readonly key: Uint8Array;
  readonly rangeEnd: Uint8Array;
}

const NO_END = new Uint8Array(0);

/** The keys a lease holds now (the MVCC store's keysOfLease). */
export type LeaseKeys = (lease: LeaseId) => readonly Uint8Array[];

/**
 * The checks of a KV write (compaction excluded: 'admin'). `leaseKeys` is consulted only for
 * puts with a lease; {@link dependsOnLeaseKeys} tells whether it will be.
 */
export function writeChecks(request: WriteRequest, leaseKeys: LeaseKeys): AccessCheck[] | 'admin' {
  const checks: AccessCheck[] = [];
  switch (request.type) {
    case 'put':
      putChecks(request.request, leaseKeys, checks);
      return checks;
    case 'delete-range':
      deleteChecks(request.request, checks);
      return checks;
    case 'txn':
      txnChecks(request.request, leaseKeys, checks);
      return checks;
    case 'compact':
      return 'admin';
  }
}

/** Whether {@link writeChecks} reads lease attachments (the applier then applies what precedes first). */
export function dependsOnLeaseKeys(request: WriteRequest): boolean {
  if (request.type === 'put') return request.request.lease !== 0n;
  if (request.type === 'txn') return txnUsesLease(request.request);
  return false;
}

function txnUsesLease(txn: TxnRequest): boolean {
  const ops = [...txn.success, ...txn.failure];
  return ops.some((op) => (op.type === 'put' && op.request.lease !== 0n) || (op.type === 'txn' && txnUsesLease(op.request)));
}

/** The checks of a LeaseRevoke: write on every key the lease holds. */
export function leaseRevokeChecks(keys: readonly Uint8Array[]): AccessCheck[] {
  return keys.map((key) => ({ access: 'write' as const, key, rangeEnd: NO_END }));
}

function putChecks(put: { key: Uint8Array; lease: LeaseId; prevKv: boolean }, leaseKeys: LeaseKeys, out: AccessCheck[]): void {
  out.push({ access: 'write', key: put.key, rangeEnd: NO_END });
  if (put.lease !== 0n) for (const key of leaseKeys(put.lease)) out.push({ access: 'write', key, rangeEnd: NO_END });
  if (put.prevKv) out.push({ access: 'read', key: put.key, rangeEnd: NO_END });
}

function deleteChecks(request: { key: Uint8Array; rangeEnd: Uint8Array; prevKv: boolean }, out: AccessCheck[]): void {
  out.push({ access: 'write', key: request.key, rangeEnd: request.rangeEnd });
  if (request.prevKv) out.push({ access: 'read', key: request.key, rangeEnd: request.rangeEnd });
}

function txnChecks(txn: TxnRequest, leaseKeys: LeaseKeys, out: AccessCheck[]): void {
  for (const compare of txn.compare) out.push({ access: 'read', key: compare.key, rangeEnd: compare.rangeEnd });
  for (const op of txn.success) opChecks(op, leaseKeys, out);
  for (const op of txn.failure) opChecks(op, leaseKeys, out);
}

function opChecks(op: RequestOp, leaseKeys: LeaseKeys, out: AccessCheck[]): void {
  switch (op.type) {
    case 'range':
      out.push({ access: 'read', key: op.request.key, rangeEnd: op.request.rangeEnd });
      return;
    case 'put':
      putChecks(op.request, leaseKeys, out);
      return;
    case 'delete-range':
      deleteChecks(op.request, out);
      return;
    case 'txn':
      txnChecks(op.request, leaseKeys, out);
      return;
  }
}

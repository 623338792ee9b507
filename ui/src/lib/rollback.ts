/**
 * Rolling a config prefix back to an earlier revision, as ONE etcd transaction:
 *
 * - success ops: a put of the old value for every key whose value differs now (or that is gone),
 *   and a delete of every key that did not exist at that revision;
 * - compares (all must hold, or etcd answers succeeded=false and writes nothing):
 *   every key as read now still has the mod_revision it was read with (catches a change or a
 *   delete), and no key in the whole prefix has a mod_revision above the revision of that read
 *   (catches a key created meanwhile).
 *
 * Keys and values are base64 strings throughout (the gateway's form), so bytes round-trip exactly.
 */

/** A key as read at the head (base64 key and value, mod_revision as the gateway's int64 string). */
export interface CurrentKv {
  readonly key: string;
  readonly value: string;
  readonly modRevision: string;
}

/** A key as it was at the target revision. */
export interface TargetKv {
  readonly key: string;
  readonly value: string;
}

export interface RollbackPlan {
  /** Keys to write (old value differs from the current one, or the key is gone). */
  readonly puts: readonly TargetKv[];
  /** Keys to delete (they did not exist at the target revision). */
  readonly deletes: readonly string[];
  /** The revision of the read the plan is based on. */
  readonly readRevision: number;
  /** Every key as read, with its mod_revision (the per-key guards). */
  readonly guards: readonly CurrentKv[];
}

export function planRollback(current: readonly CurrentKv[], target: readonly TargetKv[], readRevision: number): RollbackPlan {
  const now = new Map(current.map((kv) => [kv.key, kv]));
  const then = new Map(target.map((kv) => [kv.key, kv]));
  const puts = target.filter((kv) => now.get(kv.key)?.value !== kv.value);
  const deletes = current.filter((kv) => !then.has(kv.key)).map((kv) => kv.key);
  return { puts, deletes, readRevision, guards: current };
}

/** True when the plan changes nothing (the prefix already equals the target). */
export function isNoop(plan: RollbackPlan): boolean {
  return plan.puts.length === 0 && plan.deletes.length === 0;
}

/** The TxnRequest body for POST /v3/kv/txn (JSON gateway). `prefix`/`prefixEnd` are base64. */
export function rollbackTxn(plan: RollbackPlan, range: { prefix: string; prefixEnd: string }): Record<string, unknown> {
  return {
    compare: [
      ...plan.guards.map((kv) => ({ target: 'MOD', result: 'EQUAL', key: kv.key, mod_revision: kv.modRevision })),
      { target: 'MOD', result: 'LESS', key: range.prefix, range_end: range.prefixEnd, mod_revision: String(plan.readRevision + 1) },
    ],
    success: [
      ...plan.puts.map((kv) => ({ request_put: { key: kv.key, value: kv.value } })),
      ...plan.deletes.map((key) => ({ request_delete_range: { key } })),
    ],
    failure: [],
  };
}

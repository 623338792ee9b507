/**
 * Checker for leases. A client grants a lease (TTL seconds), attaches a key, keeps the lease
 * alive for a while, then stops, and meanwhile polls the key with linearizable reads.
 *
 * - Never vanishes while kept alive: a grant or keep-alive sent at time s that answered TTL t
 *   means the lease lives at least until s + t (the leader renews it no earlier than s). A read
 *   that completed before that instant (minus a tolerance) and found the key absent is a
 *   violation.
 * - A keep-alive that answers "not found" (TTL 0) before that instant is the same anomaly as
 *   seen by a client library (it would drop the lease).
 * - Never outlives its lease by more than one election timeout: after the last keep-alive
 *   answer (at time a, TTL t) the lease expires by a + t; a read invoked after
 *   a + t + electionTimeout + slack that still finds the key is a violation. A leader change
 *   extends every lease (to new-leader time + electionTimeout + TTL, as etcd's Promote does), so
 *   when a fault or leader change touches the window the deadline moves to after it:
 *   disturbanceEnd + settle + t + electionTimeout + slack.
 */

/** A grant or keep-alive exchange that succeeded. */
export interface Renewal {
  readonly sentMs: number;
  readonly receivedMs: number;
  readonly ttlSeconds: number;
}

/** A linearizable read of the leased key. */
export interface LeaseRead {
  readonly callMs: number;
  readonly returnMs: number;
  readonly present: boolean;
}

/** Everything recorded about one lease. */
export interface LeaseHistory {
  readonly lease: string;
  readonly key: string;
  /** When the Put attaching the key was acknowledged. */
  readonly attachedMs: number;
  readonly renewals: readonly Renewal[];
  readonly reads: readonly LeaseRead[];
  /** A keep-alive that answered TTL 0 (lease not found), if any. */
  readonly notFound?: { readonly sentMs: number; readonly receivedMs: number };
}

/** A time interval during which leadership may have moved (a fault, or an observed change). */
export interface Disturbance {
  readonly startMs: number;
  readonly endMs: number;
}

/** Parameters of the lease checker. */
export interface LeaseCheckOptions {
  readonly electionTimeoutMs: number;
  /** Tolerance for clock and timer granularity; default 100 ms. */
  readonly toleranceMs?: number;
  /** Slack for the leader's expiry scan and the revoke's commit; default 1,000 ms. */
  readonly slackMs?: number;
  /** Time after a disturbance for a new leader to be elected; default 3 election timeouts. */
  readonly settleMs?: number;
}

/** One anomaly. */
export interface LeaseAnomaly {
  readonly lease: string;
  readonly kind: 'vanished-while-alive' | 'outlived' | 'keep-alive-not-found-while-alive';
  readonly detail: string;
}

/** The lease checker's findings. */
export interface LeaseResult {
  readonly valid: boolean;
  readonly leases: number;
  readonly reads: number;
  /** Leases whose expiry was observed (a read found the key gone after keep-alives stopped). */
  readonly expiriesObserved: number;
  readonly anomalies: readonly LeaseAnomaly[];
}

/** The deadline by which a lease whose last renewal answered at `lastMs` (TTL `ttlMs`) must be gone. */
export function expiryDeadlineMs(lastMs: number, ttlMs: number, disturbances: readonly Disturbance[], options: LeaseCheckOptions): number {
  const slack = options.slackMs ?? 1_000;
  const settle = options.settleMs ?? 3 * options.electionTimeoutMs;
  let deadline = lastMs + ttlMs + options.electionTimeoutMs + slack;
  // Each disturbance overlapping [lastMs, deadline] may promote a new leader that restarts the
  // TTL; iterate until the deadline no longer moves (bounded by the number of disturbances).
  for (let round = 0; round <= disturbances.length; round++) {
    let moved = false;
    for (const d of disturbances) {
      if (d.endMs >= lastMs && d.startMs <= deadline) {
        const candidate = d.endMs + settle + ttlMs + options.electionTimeoutMs + slack;
        if (candidate > deadline) {
          deadline = candidate;
          moved = true;
        }
      }
    }
    if (!moved) break;
  }
  return deadline;
}

/** Checks every lease history. */
export function checkLeases(histories: readonly LeaseHistory[], disturbances: readonly Disturbance[], options: LeaseCheckOptions): LeaseResult {
  const tolerance = options.toleranceMs ?? 100;
  const anomalies: LeaseAnomaly[] = [];
  let expiriesObserved = 0;
  let reads = 0;
  for (const h of histories) {
    reads += h.reads.length;
    const aliveUntil = Math.max(...h.renewals.map((r) => r.sentMs + r.ttlSeconds * 1000));
    for (const read of h.reads) {
      if (!read.present && read.callMs > h.attachedMs && read.returnMs < aliveUntil - tolerance) {
        const renewal = h.renewals.find((r) => r.sentMs + r.ttlSeconds * 1000 > read.returnMs + tolerance);
        anomalies.push({ lease: h.lease, kind: 'vanished-while-alive', detail: `key ${h.key} absent in a read [${read.callMs.toFixed(0)}, ${read.returnMs.toFixed(0)}] ms, but a renewal sent at ${renewal?.sentMs.toFixed(0)} ms answered TTL ${renewal?.ttlSeconds} s` });
        break;
      }
    }
    if (h.notFound !== undefined && h.notFound.receivedMs < aliveUntil - tolerance) {
      anomalies.push({ lease: h.lease, kind: 'keep-alive-not-found-while-alive', detail: `keep-alive sent at ${h.notFound.sentMs.toFixed(0)} ms answered TTL 0 at ${h.notFound.receivedMs.toFixed(0)} ms, but the lease was renewed until at least ${aliveUntil.toFixed(0)} ms` });
    }
    const last = h.renewals.reduce((a, b) => (b.receivedMs > a.receivedMs ? b : a));
    const deadline = expiryDeadlineMs(last.receivedMs, last.ttlSeconds * 1000, disturbances, options);
    const late = h.reads.find((read) => read.present && read.callMs > deadline);
    if (late !== undefined) {
      anomalies.push({ lease: h.lease, kind: 'outlived', detail: `key ${h.key} still present in a read invoked at ${late.callMs.toFixed(0)} ms; last renewal answered at ${last.receivedMs.toFixed(0)} ms with TTL ${last.ttlSeconds} s; deadline ${deadline.toFixed(0)} ms` });
    }
    if (h.reads.some((read) => !read.present && read.callMs > last.receivedMs)) expiriesObserved++;
  }
  return { valid: anomalies.length === 0, leases: histories.length, reads, expiriesObserved, anomalies };
}

/**
 * Checker for watches: every watcher (which reconnects from its last revision + 1 after a
 * failure) must have seen a gap-free, duplicate-free prefix of one total order of revisions.
 * The total order is the reference: the events a fresh watch from the start revision returns
 * once the cluster has healed. Acknowledged writes (with the revision their response header
 * carried) must appear in the reference at that revision with their value.
 */

/** One watch event, flattened. */
export interface WatchEvent {
  readonly revision: number;
  readonly key: string;
  readonly type: 'PUT' | 'DELETE';
  /** Empty for deletes. */
  readonly value: string;
}

/** What one watcher saw. */
export interface WatcherLog {
  readonly name: string;
  readonly events: readonly WatchEvent[];
}

/** An acknowledged write and the revision its response reported. */
export interface AckedWrite {
  readonly key: string;
  readonly value: string;
  readonly revision: number;
}

/** One anomaly. */
export interface WatchAnomaly {
  readonly watcher: string;
  readonly kind: 'gap' | 'duplicate' | 'reordered' | 'diverged' | 'beyond-reference' | 'acked-write-missing';
  readonly index: number;
  readonly detail: string;
}

/** The watch checker's findings. */
export interface WatchResult {
  readonly valid: boolean;
  readonly watchers: number;
  readonly eventsSeen: number;
  readonly referenceEvents: number;
  readonly anomalies: readonly WatchAnomaly[];
}

const ANOMALIES_MAX = 50;

function same(a: WatchEvent, b: WatchEvent): boolean {
  return a.revision === b.revision && a.key === b.key && a.type === b.type && a.value === b.value;
}

function show(event: WatchEvent | undefined): string {
  return event === undefined ? 'nothing' : `${event.type} ${event.key}=${event.value}@${event.revision}`;
}

/** Checks every watcher against the reference order and the acknowledged writes. */
export function checkWatches(watchers: readonly WatcherLog[], reference: readonly WatchEvent[], acked: readonly AckedWrite[]): WatchResult {
  const anomalies: WatchAnomaly[] = [];
  const add = (anomaly: WatchAnomaly): void => {
    if (anomalies.length < ANOMALIES_MAX) anomalies.push(anomaly);
  };
  for (let i = 1; i < reference.length; i++) {
    if (reference[i].revision < reference[i - 1].revision) add({ watcher: 'reference', kind: 'reordered', index: i, detail: `${show(reference[i - 1])} then ${show(reference[i])}` });
  }
  for (const watcher of watchers) {
    const seen = new Set<string>();
    for (let i = 0; i < watcher.events.length; i++) {
      const event = watcher.events[i];
      const id = `${event.revision}\u0000${event.key}`;
      if (seen.has(id)) {
        add({ watcher: watcher.name, kind: 'duplicate', index: i, detail: show(event) });
        break;
      }
      seen.add(id);
      if (i > 0 && event.revision < watcher.events[i - 1].revision) {
        add({ watcher: watcher.name, kind: 'reordered', index: i, detail: `${show(watcher.events[i - 1])} then ${show(event)}` });
        break;
      }
      const expected = reference[i];
      if (expected === undefined) {
        add({ watcher: watcher.name, kind: 'beyond-reference', index: i, detail: `saw ${show(event)} after the reference ended` });
        break;
      }
      if (!same(event, expected)) {
        const kind = event.revision > expected.revision ? 'gap' : 'diverged';
        add({ watcher: watcher.name, kind, index: i, detail: `expected ${show(expected)}, saw ${show(event)}` });
        break;
      }
    }
  }
  const byRevision = new Map<string, WatchEvent>();
  for (const event of reference) byRevision.set(`${event.revision}\u0000${event.key}`, event);
  for (const write of acked) {
    const event = byRevision.get(`${write.revision}\u0000${write.key}`);
    if (event === undefined || event.type !== 'PUT' || event.value !== write.value) {
      add({ watcher: 'reference', kind: 'acked-write-missing', index: -1, detail: `acknowledged ${write.key}=${write.value}@${write.revision}, history has ${show(event)}` });
    }
  }
  return {
    valid: anomalies.length === 0,
    watchers: watchers.length,
    eventsSeen: watchers.reduce((sum, w) => sum + w.events.length, 0),
    referenceEvents: reference.length,
    anomalies,
  };
}

/**
 * A diagnostic trace of the Raft pipeline (`--trace-raft-file PATH`): when each log entry was
 * appended by the leader, sent to and received by each follower, persisted on each member,
 * acknowledged, committed and applied. Records are kept in memory (bounded) and written as JSON
 * lines when the member stops, so that tracing costs the measured path an array push, not a log
 * write. Timestamps are microseconds of the wall clock at high resolution, comparable between
 * the processes of one machine: bench/trace-put.ts merges the files of a cluster with its
 * client's send and receive times into one timeline per put.
 */
import { writeFile } from 'node:fs/promises';

/** Stages of an entry's trip; `first`..`last` are the entry indexes a record covers. */
export type TraceStage =
  | 'appended' // the leader appended proposals to its log (a Ready's entries)
  | 'sent' // an append carrying entries went to `peer`
  | 'received' // an append carrying entries arrived from `peer`
  | 'commit-sent' // an append without entries (a commit notice up to `last`) went to `peer`
  | 'persisted' // the Ready's WAL write holding these entries finished
  | 'ack-sent' // an append acknowledgement (up to `last`) went to `peer`
  | 'ack-received' // an append acknowledgement (up to `last`) arrived from `peer`
  | 'committed' // the commit index moved over these entries
  | 'handed-to-apply' // these committed entries went to the apply pipeline
  | 'answered' // the proposers of these entries were answered (their revisions readable)
  | 'applied'; // the apply pipeline finished these entries

/** At most this many records are kept (about 100 bytes each); later ones are counted, not kept. */
export const MAX_TRACE_RECORDS = 500_000;

type TraceRecord = readonly [tUs: number, stage: TraceStage, first: number, last: number, peer: string];

export class RaftTrace {
  readonly #path: string;
  readonly #member: string;
  readonly #records: TraceRecord[] = [];
  #dropped = 0;

  constructor(path: string, member: string) {
    this.#path = path;
    this.#member = member;
  }

  /** Records a stage for entries first..last (with the peer it concerns, or ''). */
  mark(stage: TraceStage, first: number, last: number, peer = ''): void {
    if (this.#records.length >= MAX_TRACE_RECORDS) {
      this.#dropped += 1;
      return;
    }
    this.#records.push([Math.round((performance.timeOrigin + performance.now()) * 1000), stage, first, last, peer]);
  }

  /** Writes every record as one JSON line ({ t, member, stage, first, last, peer }) to the trace file. */
  async flush(): Promise<void> {
    const lines = this.#records.map(([t, stage, first, last, peer]) => JSON.stringify({ t, member: this.#member, stage, first, last, peer }));
    if (this.#dropped > 0) lines.push(JSON.stringify({ member: this.#member, dropped: this.#dropped }));
    await writeFile(this.#path, lines.length === 0 ? '' : `${lines.join('\n')}\n`);
  }
}

/**
 * Cluster: every member's role, term, raft and applied index, db size and in-use size (polling
 * each member's own client URL from the member list), alarms, learners, and a log of leader
 * changes as they are seen. Move-leader, compact and defrag behind a confirmation.
 *
 * Polling: one loop per member at its own client URL, every POLL_MS normally; while something is
 * off (a member unreachable, no leader, members disagreeing) every loop is woken and polls every
 * POLL_FAST_MS, so a new leader shows soon after an election (a killed leader is seen at its
 * loop's next poll, and its successor within POLL_FAST_MS of winning).
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { alarms as readAlarms, compact, defragment, memberList, moveLeader, status, type Alarm, type Member, type StatusResponse } from '../api/etcd.js';
import { ConfirmDialog, ErrorNote, Panel } from '../components/common.js';
import { usePoll } from '../hooks.js';
import { clockTime, formatSize, hexId, int } from '../lib/format.js';

const POLL_MS = 500;
const POLL_FAST_MS = 100;
/** The member list (and alarms) change rarely: read less often. */
const LIST_POLL_MS = 2000;
const LIST_POLL_FAST_MS = 500;
/** Status calls give up after this (an unreachable member must not stall the others). */
const STATUS_TIMEOUT_MS = 900;
/** Leader changes kept in the log. */
const LEADER_LOG_MAX = 20;

interface MemberRow {
  readonly member: Member;
  readonly base: string;
  readonly status: StatusResponse | undefined;
  readonly error: unknown;
}

interface LeaderChange {
  readonly at: number;
  readonly leader: string;
  readonly name: string;
  readonly term: number;
}

type Role = 'leader' | 'follower' | 'learner' | 'unreachable' | 'no leader' | 'reading';

/** The client URL the console uses for a member: '' (this page's origin) when it is this member. */
function baseOf(member: Member): string {
  const url = member.clientURLs?.[0];
  if (url === undefined) return '';
  try {
    return new URL(url).origin === window.location.origin ? '' : url;
  } catch (error: unknown) {
    void error; // Not a URL: use it as given.
    return url;
  }
}

function roleOf(row: MemberRow, leader: string): Role {
  if (row.status === undefined) return 'unreachable';
  if (row.member.isLearner === true || row.status.isLearner === true) return 'learner';
  if (leader === '0' || leader === '') return 'no leader';
  return row.member.ID === leader ? 'leader' : 'follower';
}

/** The leader as the members with the highest term see it ('0' when none). */
function leaderOf(rows: readonly MemberRow[]): { leader: string; term: number; agreed: boolean } {
  const seen = rows.filter((row) => row.status !== undefined).map((row) => ({ leader: row.status?.leader ?? '0', term: int(row.status?.raftTerm) }));
  if (seen.length === 0) return { leader: '0', term: 0, agreed: false };
  const term = Math.max(...seen.map((item) => item.term));
  const atTerm = seen.filter((item) => item.term === term && item.leader !== '0');
  const leader = atTerm[0]?.leader ?? '0';
  return { leader, term, agreed: seen.every((item) => item.leader === leader) };
}

/** Wakes every sleeping status loop at once (when trouble is seen, all poll fast right away). */
class Waker {
  readonly #sleepers = new Set<() => void>();

  /** Resolves after `ms`, at a wake-up, or when `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#sleepers.delete(done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#sleepers.add(done);
      signal.addEventListener('abort', done);
    });
  }

  wakeAll(): void {
    for (const sleeper of [...this.#sleepers]) sleeper();
  }
}

/** The members' identity as a string: their status loops restart only when it changes. */
function membersKey(members: readonly Member[]): string {
  return JSON.stringify(members.map((member) => [member.ID, member.name, member.clientURLs, member.isLearner]));
}

export function ClusterPage() {
  const [members, setMembers] = useState<Member[] | undefined>(undefined);
  const [statuses, setStatuses] = useState<ReadonlyMap<string, { status: StatusResponse | undefined; error: unknown }>>(new Map());
  const [listError, setListError] = useState<unknown>(undefined);
  const [alarmList, setAlarmList] = useState<Alarm[]>([]);
  const [log, setLog] = useState<LeaderChange[]>([]);
  const [updatedAt, setUpdatedAt] = useState(0);
  const [action, setAction] = useState<{ kind: 'move'; to: MemberRow } | { kind: 'defrag'; on: MemberRow } | { kind: 'compact' } | undefined>(undefined);
  const [compactRevision, setCompactRevision] = useState('');
  const [physical, setPhysical] = useState(true);
  const [done, setDone] = useState<string | undefined>(undefined);
  const troubled = useRef(false);
  const waker = useRef(new Waker());

  // The member list and alarms, from this page's member.
  usePoll(async (signal) => {
    try {
      const list = (await memberList({ signal, timeoutMs: 2000 })).members ?? [];
      setMembers((previous) => (previous !== undefined && membersKey(previous) === membersKey(list) ? previous : list));
      setListError(undefined);
    } catch (error: unknown) {
      if (!signal.aborted) setListError(error);
      return LIST_POLL_FAST_MS;
    }
    try {
      setAlarmList((await readAlarms({ signal, timeoutMs: 2000 })).alarms ?? []);
    } catch (error: unknown) {
      void error; // Alarms stay as last read; the member list error covers reachability.
    }
    return troubled.current ? LIST_POLL_FAST_MS : LIST_POLL_MS;
  }, []);

  // One status loop per member, each at its own client URL, so a slow or dead member never
  // holds back the others' rows.
  useEffect(() => {
    if (members === undefined) return undefined;
    const controller = new AbortController();
    const { signal } = controller;
    for (const member of members) {
      const base = baseOf(member);
      void (async () => { // Detached: ends when the page or the member list changes (abort).
        while (!signal.aborted) {
          let entry: { status: StatusResponse | undefined; error: unknown };
          try {
            entry = { status: await status({ base, signal, timeoutMs: STATUS_TIMEOUT_MS }), error: undefined };
          } catch (error: unknown) {
            entry = { status: undefined, error };
          }
          if (signal.aborted) return;
          setStatuses((previous) => new Map(previous).set(member.ID, entry));
          setUpdatedAt(Date.now());
          await waker.current.sleep(troubled.current ? POLL_FAST_MS : POLL_MS, signal);
        }
      })();
    }
    return () => controller.abort();
  }, [members]);

  const rows: MemberRow[] | undefined = members?.slice().sort((a, b) => (a.name ?? '').localeCompare(b.name ?? '') || a.ID.localeCompare(b.ID)).map((member) => ({ member, base: baseOf(member), status: statuses.get(member.ID)?.status, error: statuses.get(member.ID)?.error }));
  const answered = rows !== undefined && rows.every((row) => statuses.has(row.member.ID));
  useEffect(() => {
    if (rows === undefined || !answered) return;
    const seen = leaderOf(rows);
    const now = seen.leader === '0' || !seen.agreed || rows.some((row) => row.status === undefined);
    if (now && !troubled.current) waker.current.wakeAll();
    troubled.current = now;
    if (seen.leader === '0') return;
    setLog((previous) => {
      if (previous[0]?.leader === seen.leader) return previous;
      const name = rows.find((row) => row.member.ID === seen.leader)?.member.name ?? hexId(seen.leader);
      return [{ at: Date.now(), leader: seen.leader, name, term: seen.term }, ...previous].slice(0, LEADER_LOG_MAX);
    });
  });

  const seen = rows === undefined || !answered ? { leader: '0', term: 0, agreed: false } : leaderOf(rows);
  const leaderRow = rows?.find((row) => row.member.ID === seen.leader);
  const headRevision = Math.max(0, ...(rows ?? []).map((row) => int(row.status?.header.revision)));
  const learners = (rows ?? []).filter((row) => row.member.isLearner === true);
  const memberName = (id: string | undefined): string => rows?.find((row) => row.member.ID === id)?.member.name ?? hexId(id);

  return (
    <div class="page">
      <h1>Cluster</h1>
      <p class="summary" aria-live="polite" data-testid="leader-summary">
        {!answered ? 'Reading the members…' : seen.leader === '0' ? 'No leader right now' : <>Leader: <strong data-testid="leader-name">{leaderRow?.member.name ?? hexId(seen.leader)}</strong> · term {seen.term}</>}
        <span class="muted"> · revision {headRevision || '–'} · updated {updatedAt === 0 ? '–' : clockTime(updatedAt)}</span>
      </p>
      <ErrorNote error={listError} prefix="Member list" />
      {done === undefined ? null : <p class="note ok" role="status">{done}</p>}
      <Panel title="Members" id="members-title">
        <div class="table-wrap">
          <table class="members" data-testid="members">
            <thead>
              <tr>
                <th scope="col">Name</th><th scope="col">ID</th><th scope="col">Role</th><th scope="col">Client URL</th>
                <th scope="col" class="num">Term</th><th scope="col" class="num">Raft index</th><th scope="col" class="num">Applied</th>
                <th scope="col" class="num">DB size</th><th scope="col" class="num">In use</th><th scope="col">Version</th><th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {(rows ?? []).map((row) => {
                const role: Role = statuses.has(row.member.ID) ? roleOf(row, seen.leader) : 'reading';
                return (
                  <tr key={row.member.ID} data-member={row.member.name} data-role={role}>
                    <th scope="row">{row.member.name || '(unstarted)'}</th>
                    <td class="mono">{hexId(row.member.ID)}</td>
                    <td><span class={`badge role-${role.replace(' ', '-')}`}>{role}</span>{row.status?.errors?.length ? <span class="badge warn" title={row.status.errors.join('\n')}>errors</span> : null}</td>
                    <td class="mono ellipsis" title={row.member.clientURLs?.join(', ')}>{row.member.clientURLs?.[0] ?? '–'}</td>
                    <td class="num">{row.status?.raftTerm ?? '–'}</td>
                    <td class="num">{row.status?.raftIndex ?? '–'}</td>
                    <td class="num">{row.status?.raftAppliedIndex ?? '–'}</td>
                    <td class="num">{row.status === undefined ? '–' : formatSize(int(row.status.dbSize))}</td>
                    <td class="num">{row.status === undefined ? '–' : formatSize(int(row.status.dbSizeInUse))}</td>
                    <td>{row.status?.version ?? '–'}</td>
                    <td>
                      <div class="actions-cell">
                      <button type="button" disabled={role !== 'follower' || leaderRow === undefined} onClick={() => setAction({ kind: 'move', to: row })} aria-label={`Make ${row.member.name} the leader`}>Make leader</button>
                      <button type="button" disabled={row.status === undefined} onClick={() => setAction({ kind: 'defrag', on: row })} aria-label={`Defragment ${row.member.name}`}>Defrag</button>
                      </div>
                    </td>
                  </tr>
                );
              })}
              {rows === undefined ? <tr><td colSpan={11} class="muted">Loading…</td></tr> : null}
            </tbody>
          </table>
        </div>
        {(rows ?? []).filter((row) => row.error !== undefined).map((row) => <ErrorNote key={row.member.ID} error={row.error} prefix={row.member.name} />)}
      </Panel>
      <div class="grid-2">
        <Panel title="Alarms" id="alarms-title">
          {alarmList.length === 0 ? <p class="muted" data-testid="alarms">No alarms.</p> : (
            <ul data-testid="alarms">{alarmList.map((alarm, index) => <li key={index}><span class="badge warn">{alarm.alarm}</span> on {memberName(alarm.memberID)}</li>)}</ul>
          )}
        </Panel>
        <Panel title="Learners" id="learners-title">
          {learners.length === 0 ? <p class="muted">No learners.</p> : <ul>{learners.map((row) => <li key={row.member.ID}>{row.member.name || hexId(row.member.ID)} ({row.member.peerURLs?.join(', ')})</li>)}</ul>}
        </Panel>
        <Panel title="Leader changes" id="leader-log-title">
          <ol class="log" data-testid="leader-log">
            {log.length === 0 ? <li class="muted">None seen yet.</li> : log.map((entry) => <li key={`${entry.at}-${entry.leader}`}><time>{clockTime(entry.at)}</time> {entry.name} (term {entry.term})</li>)}
          </ol>
        </Panel>
        <Panel title="Compaction" id="compact-title">
          <form class="form-row" onSubmit={(event) => { event.preventDefault(); setAction({ kind: 'compact' }); }}>
            <label>Up to revision <input inputMode="numeric" pattern="[0-9]+" required value={compactRevision} placeholder={String(headRevision || '')} onInput={(event) => setCompactRevision(event.currentTarget.value)} /></label>
            <label class="check"><input type="checkbox" checked={physical} onChange={(event) => setPhysical(event.currentTarget.checked)} /> physical</label>
            <button type="submit">Compact…</button>
          </form>
        </Panel>
      </div>
      {action?.kind === 'move' ? (
        <ConfirmDialog title="Move leadership" confirmLabel="Move leader" onClose={() => setAction(undefined)} onConfirm={async () => {
          await moveLeader(action.to.member.ID, { base: leaderRow?.base ?? '' });
          setDone(`Leadership moved to ${action.to.member.name}.`);
        }}>
          <p>Transfer leadership from <strong>{leaderRow?.member.name}</strong> to <strong>{action.to.member.name}</strong>? Writes pause for a moment while it happens.</p>
        </ConfirmDialog>
      ) : null}
      {action?.kind === 'defrag' ? (
        <ConfirmDialog title="Defragment" confirmLabel="Defragment" onClose={() => setAction(undefined)} onConfirm={async () => {
          await defragment({ base: action.on.base, timeoutMs: 60_000 });
          setDone(`${action.on.member.name} defragmented.`);
        }}>
          <p>Defragment <strong>{action.on.member.name}</strong>? The member rewrites its backend and answers slower while it runs.</p>
        </ConfirmDialog>
      ) : null}
      {action?.kind === 'compact' ? (
        <ConfirmDialog title="Compact history" confirmLabel="Compact" tone="danger" onClose={() => setAction(undefined)} onConfirm={async () => {
          await compact(Number(compactRevision), physical);
          setDone(`History compacted up to revision ${compactRevision}.`);
        }}>
          <p>Compact the history up to revision <strong>{compactRevision}</strong>{physical ? ' (physical)' : ''}? Reads and watches at older revisions will fail with "required revision has been compacted". This cannot be undone.</p>
        </ConfirmDialog>
      ) : null}
    </div>
  );
}

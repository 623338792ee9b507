/**
 * Cluster: every member's role, term, raft and applied index, db size and in-use size (polling
 * each member's own client URL from the member list), alarms, learners, and a log of leader
 * changes as they are seen. Move-leader, compact and defrag behind a confirmation.
 *
 * Polling: every POLL_MS normally; every POLL_FAST_MS while something is off (a member
 * unreachable, no leader, members disagreeing), so a new leader shows soon after an election
 * (a killed leader is seen at the next poll, and its successor within POLL_FAST_MS of winning).
 */
import { useState } from 'preact/hooks';
import { alarms as readAlarms, compact, defragment, memberList, moveLeader, status, type Alarm, type Member, type StatusResponse } from '../api/etcd.js';
import { ConfirmDialog, ErrorNote, Panel } from '../components/common.js';
import { usePoll } from '../hooks.js';
import { clockTime, formatSize, hexId, int } from '../lib/format.js';

const POLL_MS = 1000;
const POLL_FAST_MS = 100;
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

type Role = 'leader' | 'follower' | 'learner' | 'unreachable' | 'no leader';

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

export function ClusterPage() {
  const [rows, setRows] = useState<MemberRow[] | undefined>(undefined);
  const [listError, setListError] = useState<unknown>(undefined);
  const [alarmList, setAlarmList] = useState<Alarm[]>([]);
  const [log, setLog] = useState<LeaderChange[]>([]);
  const [updatedAt, setUpdatedAt] = useState(0);
  const [action, setAction] = useState<{ kind: 'move'; to: MemberRow } | { kind: 'defrag'; on: MemberRow } | { kind: 'compact' } | undefined>(undefined);
  const [compactRevision, setCompactRevision] = useState('');
  const [physical, setPhysical] = useState(true);
  const [done, setDone] = useState<string | undefined>(undefined);

  usePoll(async (signal) => {
    let members: Member[];
    try {
      members = (await memberList({ signal, timeoutMs: 2000 })).members ?? [];
      setListError(undefined);
    } catch (error: unknown) {
      setListError(error);
      return POLL_FAST_MS * 2;
    }
    const next = await Promise.all(members.map(async (member): Promise<MemberRow> => {
      const base = baseOf(member);
      try {
        return { member, base, status: await status({ base, signal, timeoutMs: STATUS_TIMEOUT_MS }), error: undefined };
      } catch (error: unknown) {
        return { member, base, status: undefined, error };
      }
    }));
    if (signal.aborted) return POLL_MS;
    setRows(next);
    setUpdatedAt(Date.now());
    const seen = leaderOf(next);
    if (seen.leader !== '0') {
      setLog((previous) => {
        if (previous[0]?.leader === seen.leader) return previous;
        const name = next.find((row) => row.member.ID === seen.leader)?.member.name ?? hexId(seen.leader);
        return [{ at: Date.now(), leader: seen.leader, name, term: seen.term }, ...previous].slice(0, LEADER_LOG_MAX);
      });
    }
    const troubled = seen.leader === '0' || !seen.agreed || next.some((row) => row.status === undefined);
    if (!troubled) {
      try {
        setAlarmList((await readAlarms({ signal, timeoutMs: 2000 })).alarms ?? []);
      } catch (error: unknown) {
        void error; // Alarms stay as last read; the member list error covers reachability.
      }
    }
    return troubled ? POLL_FAST_MS : POLL_MS;
  }, []);

  const seen = rows === undefined ? { leader: '0', term: 0, agreed: false } : leaderOf(rows);
  const leaderRow = rows?.find((row) => row.member.ID === seen.leader);
  const headRevision = Math.max(0, ...(rows ?? []).map((row) => int(row.status?.header.revision)));
  const learners = (rows ?? []).filter((row) => row.member.isLearner === true);
  const memberName = (id: string | undefined): string => rows?.find((row) => row.member.ID === id)?.member.name ?? hexId(id);

  return (
    <div class="page">
      <h1>Cluster</h1>
      <p class="summary" aria-live="polite" data-testid="leader-summary">
        {rows === undefined ? 'Reading the members…' : seen.leader === '0' ? 'No leader right now' : <>Leader: <strong data-testid="leader-name">{leaderRow?.member.name ?? hexId(seen.leader)}</strong> · term {seen.term}</>}
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
                const role = roleOf(row, seen.leader);
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
                    <td class="actions-cell">
                      <button type="button" disabled={role !== 'follower' || leaderRow === undefined} onClick={() => setAction({ kind: 'move', to: row })} aria-label={`Make ${row.member.name} the leader`}>Make leader</button>
                      <button type="button" disabled={row.status === undefined} onClick={() => setAction({ kind: 'defrag', on: row })} aria-label={`Defragment ${row.member.name}`}>Defrag</button>
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

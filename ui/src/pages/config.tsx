/**
 * Config: a prefix shown as one document (key → value), its history by revision (from a watch
 * with prev_kv, see readHistory), the difference between any two revisions (each read whole with
 * a range at that revision), and rollback to a revision as ONE guarded transaction
 * (lib/rollback.ts): if anything under the prefix changed after the rollback was planned, etcd
 * refuses it (succeeded=false) and the page says so.
 */
import { useState } from 'preact/hooks';
import { range, readHistory, txn, b64, b64PrefixEnd, type History, type Kv } from '../api/etcd.js';
import { ConfirmDialog, DiffView, ErrorNote, Loading, Panel } from '../components/common.js';
import { useLoad } from '../hooks.js';
import { displayText, fromBase64 } from '../lib/bytes.js';
import { diffMaps } from '../lib/diff.js';
import { detectKind, int, renderValue } from '../lib/format.js';
import { isNoop, planRollback, rollbackTxn, type RollbackPlan } from '../lib/rollback.js';
import { setParams, useLocation } from '../router.js';

/** Events of the prefix's history read at most (the newest). */
const HISTORY_MAX = 5000;
/** Revisions listed at most. */
const REVISIONS_SHOWN_MAX = 200;

interface Revision {
  readonly revision: number;
  readonly puts: readonly string[];
  readonly deletes: readonly string[];
}

/** Revisions at which the prefix changed, newest first, from its history. */
export function revisionsOf(history: History, prefix: string): Revision[] {
  const byRevision = new Map<number, { puts: string[]; deletes: string[] }>();
  for (const event of history.events) {
    const revision = int(event.kv.mod_revision);
    const entry = byRevision.get(revision) ?? { puts: [], deletes: [] };
    const key = displayText(fromBase64(event.kv.key)).slice(prefix.length);
    (event.type === 'DELETE' ? entry.deletes : entry.puts).push(key);
    byRevision.set(revision, entry);
  }
  const out = [...byRevision.entries()].map(([revision, entry]) => ({ revision, ...entry }));
  if (history.baseRevision > 0) out.push({ revision: history.baseRevision, puts: history.base.map((kv) => displayText(fromBase64(kv.key)).slice(prefix.length)), deletes: [] });
  return out.sort((a, b) => b.revision - a.revision);
}

function documentOf(kvs: readonly Kv[], prefix: string): Map<string, string> {
  return new Map(kvs.map((kv) => [displayText(fromBase64(kv.key)).slice(prefix.length), displayText(fromBase64(kv.value))]));
}

async function readDocument(prefix: string, revision: number, signal?: AbortSignal): Promise<{ kvs: Kv[]; revision: number }> {
  const key = b64(prefix);
  const answer = await range({ key, range_end: b64PrefixEnd(key), revision }, { signal });
  return { kvs: answer.kvs ?? [], revision: revision > 0 ? revision : int(answer.header.revision) };
}

export function ConfigPage() {
  const { params } = useLocation();
  const prefix = params.get('prefix') ?? '/config/';
  const [prefixText, setPrefixText] = useState(prefix);
  const [view, setView] = useState<'table' | 'json'>('table');
  const [generation, setGeneration] = useState(0);
  const [from, setFrom] = useState<number | undefined>(undefined);
  const [to, setTo] = useState<number | undefined>(undefined);
  const [rollback, setRollback] = useState<{ target: number; plan: RollbackPlan | undefined; error: unknown } | undefined>(undefined);
  const [done, setDone] = useState<string | undefined>(undefined);

  const current = useLoad((signal) => readDocument(prefix, 0, signal), [prefix, generation]);
  const history = useLoad((signal) => readHistory({ key: b64(prefix), rangeEnd: b64PrefixEnd(b64(prefix)), maxEvents: HISTORY_MAX, signal }), [prefix, generation]);
  const revisions = history.data === undefined ? [] : revisionsOf(history.data, prefix);
  const a = from ?? revisions[1]?.revision;
  const b = to ?? revisions[0]?.revision;
  const diff = useLoad(async (signal) => {
    if (a === undefined || b === undefined) return undefined;
    const [before, after] = await Promise.all([readDocument(prefix, a, signal), readDocument(prefix, b, signal)]);
    return diffMaps(documentOf(before.kvs, prefix), documentOf(after.kvs, prefix)).filter((row) => row.op !== 'same');
  }, [prefix, a, b, generation]);
  const doc = current.data === undefined ? undefined : documentOf(current.data.kvs, prefix);

  const planTo = async (target: number): Promise<void> => {
    setRollback({ target, plan: undefined, error: undefined });
    try {
      const [now, then] = await Promise.all([readDocument(prefix, 0), readDocument(prefix, target)]);
      const plan = planRollback(now.kvs.map((kv) => ({ key: kv.key, value: kv.value ?? '', modRevision: kv.mod_revision ?? '0' })), then.kvs.map((kv) => ({ key: kv.key, value: kv.value ?? '' })), now.revision);
      setRollback({ target, plan, error: undefined });
    } catch (error: unknown) {
      setRollback({ target, plan: undefined, error });
    }
  };

  return (
    <div class="page">
      <h1>Config</h1>
      <form class="toolbar" onSubmit={(event) => { event.preventDefault(); setFrom(undefined); setTo(undefined); setParams({ prefix: prefixText }); }}>
        <label class="grow">Prefix <input name="prefix" value={prefixText} onInput={(event) => setPrefixText(event.currentTarget.value)} spellcheck={false} required /></label>
        <button type="submit" class="primary">Open</button>
        <button type="button" onClick={() => setGeneration((value) => value + 1)}>Reload</button>
      </form>
      {done === undefined ? null : <p class="note ok" role="status" data-testid="config-done">{done}</p>}
      <div class="split even">
        <Panel title={`Document at revision ${current.data?.revision ?? '…'}`} id="doc-title" actions={
          <div class="segmented" role="radiogroup" aria-label="Show the document as">
            <button type="button" role="radio" aria-checked={view === 'table'} onClick={() => setView('table')}>Table</button>
            <button type="button" role="radio" aria-checked={view === 'json'} onClick={() => setView('json')}>JSON</button>
          </div>
        }>
          <Loading when={current.loading} />
          <ErrorNote error={current.error} />
          {doc === undefined ? null : view === 'json' ? (
            <pre class="value" tabIndex={0} data-testid="config-json">{JSON.stringify(Object.fromEntries([...doc].map(([key, value]) => [key, detectKind(new TextEncoder().encode(value)) === 'json' ? JSON.parse(value) as unknown : value])), null, 2)}</pre>
          ) : (
            <div class="table-wrap">
              <table data-testid="config-doc">
                <thead><tr><th scope="col">Key</th><th scope="col">Value</th></tr></thead>
                <tbody>
                  {[...doc].map(([key, value]) => <tr key={key}><th scope="row" class="mono">{key}</th><td class="mono pre">{value}</td></tr>)}
                  {doc.size === 0 ? <tr><td colSpan={2} class="muted">No keys under {prefix}.</td></tr> : null}
                </tbody>
              </table>
            </div>
          )}
        </Panel>
        <Panel title="History" id="history-title">
          <Loading when={history.loading} label="Reading the history…" />
          <ErrorNote error={history.error} />
          {history.data?.baseRevision ? <p class="muted">History before revision {history.data.baseRevision} was compacted.</p> : null}
          <div class="table-wrap tall">
            <table data-testid="config-history">
              <thead><tr><th scope="col" class="num">Revision</th><th scope="col">Changes</th><th scope="col">From</th><th scope="col">To</th><th scope="col">Rollback</th></tr></thead>
              <tbody>
                {revisions.slice(0, REVISIONS_SHOWN_MAX).map((entry, index) => (
                  <tr key={entry.revision} data-revision={entry.revision}>
                    <td class="num">{entry.revision}</td>
                    <td class="ellipsis">{entry.puts.length > 0 ? <span class="diff-add">set {entry.puts.join(', ')}</span> : null} {entry.deletes.length > 0 ? <span class="diff-del">deleted {entry.deletes.join(', ')}</span> : null}</td>
                    <td><input type="radio" name="config-from" aria-label={`diff from revision ${entry.revision}`} checked={a === entry.revision} onChange={() => setFrom(entry.revision)} /></td>
                    <td><input type="radio" name="config-to" aria-label={`diff to revision ${entry.revision}`} checked={b === entry.revision} onChange={() => setTo(entry.revision)} /></td>
                    <td>{index === 0 ? <span class="muted">current</span> : <button type="button" onClick={() => void planTo(entry.revision)} aria-label={`Roll back to revision ${entry.revision}`}>Roll back…</button>}</td>
                  </tr>
                ))}
                {history.data !== undefined && revisions.length === 0 ? <tr><td colSpan={5} class="muted">No changes under {prefix} in the history.</td></tr> : null}
              </tbody>
            </table>
          </div>
        </Panel>
      </div>
      <Panel title={a === undefined || b === undefined ? 'Diff' : `Diff: revision ${a} → ${b}`} id="diff-title">
        <Loading when={diff.loading} />
        <ErrorNote error={diff.error} />
        {diff.data === undefined ? <p class="muted">Choose two revisions in the history.</p> : diff.data.length === 0 ? <p class="muted">No difference.</p> : (
          <ul class="plain diff-list" data-testid="config-diff">
            {diff.data.map((row) => (
              <li key={row.key}>
                <span class={`badge op-${row.op}`}>{row.op === 'add' ? 'added' : row.op === 'del' ? 'removed' : 'changed'}</span> <span class="mono">{row.key}</span>
                <DiffView before={row.before === undefined ? '' : renderValue(new TextEncoder().encode(row.before), 'json')} after={row.after === undefined ? '' : renderValue(new TextEncoder().encode(row.after), 'json')} label={`${row.key}: diff`} />
              </li>
            ))}
          </ul>
        )}
      </Panel>
      {rollback === undefined ? null : (
        <ConfirmDialog title={`Roll back ${prefix} to revision ${rollback.target}`} confirmLabel="Roll back" tone="danger" onClose={() => setRollback(undefined)} onConfirm={async () => {
          const plan = rollback.plan;
          if (plan === undefined) throw new Error('the plan is not ready');
          if (isNoop(plan)) return;
          const key = b64(prefix);
          const answer = await txn(rollbackTxn(plan, { prefix: key, prefixEnd: b64PrefixEnd(key) }));
          if (answer.succeeded !== true) {
            throw new Error(`etcd refused the rollback: the transaction's compare failed (succeeded=false, revision ${answer.header.revision ?? '?'}) because ${prefix} changed after revision ${plan.readRevision}. Nothing was written; reload and plan it again.`);
          }
          setDone(`Rolled ${prefix} back to revision ${rollback.target} at revision ${answer.header.revision}.`);
          setGeneration((value) => value + 1);
        }}>
          <ErrorNote error={rollback.error} />
          {rollback.plan === undefined ? <p>Planning…</p> : isNoop(rollback.plan) ? <p>{prefix} already equals revision {rollback.target}: nothing to write.</p> : (
            <>
              <p>One transaction, applied only if nothing under <code>{prefix}</code> changed after revision <strong>{rollback.plan.readRevision}</strong>:</p>
              <ul class="plain" data-testid="rollback-plan">
                {rollback.plan.puts.map((kv) => <li key={kv.key}><span class="badge op-change">put</span> <span class="mono">{displayText(fromBase64(kv.key))}</span> = <span class="mono">{displayText(fromBase64(kv.value)).slice(0, 80)}</span></li>)}
                {rollback.plan.deletes.map((key) => <li key={key}><span class="badge op-del">delete</span> <span class="mono">{displayText(fromBase64(key))}</span></li>)}
              </ul>
            </>
          )}
        </ConfirmDialog>
      )}
    </div>
  );
}

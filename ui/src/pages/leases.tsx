/**
 * Leases: every lease (LeaseLeases) with its TTL counting down and its keys (LeaseTimeToLive with
 * keys), re-read every {@link REFRESH_MS}; revoke behind a confirmation. At most
 * {@link LEASES_SHOWN_MAX} leases are looked up (the rest are counted).
 */
import { useState } from 'preact/hooks';
import { leases as listLeases, revoke, timeToLive } from '../api/etcd.js';
import { ConfirmDialog, ErrorNote, Loading, Panel } from '../components/common.js';
import { useNow, usePoll } from '../hooks.js';
import { displayText, fromBase64 } from '../lib/bytes.js';
import { formatSeconds, hexId, int } from '../lib/format.js';

const REFRESH_MS = 5000;
export const LEASES_SHOWN_MAX = 200;
/** Time-to-live lookups in flight at once. */
const LOOKUPS_PARALLEL = 8;

interface LeaseRow {
  readonly id: string;
  /** Wall-clock ms when it expires, from the TTL read at `readAt`; undefined when it is gone. */
  readonly expiresAt: number | undefined;
  readonly grantedTtl: number;
  readonly keys: readonly string[];
}

export function LeasesPage() {
  const now = useNow(1000);
  const [rows, setRows] = useState<LeaseRow[] | undefined>(undefined);
  const [total, setTotal] = useState(0);
  const [error, setError] = useState<unknown>(undefined);
  const [revoking, setRevoking] = useState<LeaseRow | undefined>(undefined);
  const [generation, setGeneration] = useState(0);

  usePoll(async (signal) => {
    try {
      const ids = ((await listLeases({ signal })).leases ?? []).map((lease) => lease.ID);
      setTotal(ids.length);
      const shown = ids.slice(0, LEASES_SHOWN_MAX);
      const out: LeaseRow[] = [];
      for (let at = 0; at < shown.length; at += LOOKUPS_PARALLEL) {
        const batch = await Promise.all(shown.slice(at, at + LOOKUPS_PARALLEL).map(async (id): Promise<LeaseRow> => {
          const answer = await timeToLive(id, { signal });
          const ttl = int(answer.TTL);
          return { id, expiresAt: ttl < 0 ? undefined : Date.now() + ttl * 1000, grantedTtl: int(answer.grantedTTL), keys: (answer.keys ?? []).map((key) => displayText(fromBase64(key))) };
        }));
        out.push(...batch);
      }
      if (!signal.aborted) {
        setRows(out);
        setError(undefined);
      }
    } catch (failure: unknown) {
      if (!signal.aborted) setError(failure);
    }
    return REFRESH_MS;
  }, [generation]);

  return (
    <div class="page">
      <h1>Leases</h1>
      <p class="summary">{rows === undefined ? 'Reading leases…' : `${total} lease${total === 1 ? '' : 's'}`}{total > LEASES_SHOWN_MAX ? ` (the first ${LEASES_SHOWN_MAX} shown)` : ''} <button type="button" onClick={() => setGeneration((value) => value + 1)}>Refresh</button></p>
      <ErrorNote error={error} />
      <Panel title="Leases" id="leases-title">
        <Loading when={rows === undefined && error === undefined} />
        <div class="table-wrap">
          <table data-testid="leases">
            <thead><tr><th scope="col">ID</th><th scope="col" class="num">TTL left</th><th scope="col" class="num">Granted TTL</th><th scope="col">Keys</th><th scope="col">Actions</th></tr></thead>
            <tbody>
              {(rows ?? []).map((row) => (
                <tr key={row.id} data-lease={hexId(row.id)}>
                  <th scope="row" class="mono">{hexId(row.id)}</th>
                  <td class="num" data-testid="ttl">{row.expiresAt === undefined ? 'expired' : formatSeconds(Math.max(0, Math.ceil((row.expiresAt - now) / 1000)))}</td>
                  <td class="num">{formatSeconds(row.grantedTtl)}</td>
                  <td class="mono">{row.keys.length === 0 ? <span class="muted">no keys</span> : <ul class="plain">{row.keys.slice(0, 20).map((key) => <li key={key}>{key}</li>)}{row.keys.length > 20 ? <li class="muted">… {row.keys.length - 20} more</li> : null}</ul>}</td>
                  <td><button type="button" class="danger" onClick={() => setRevoking(row)} aria-label={`Revoke lease ${hexId(row.id)}`}>Revoke</button></td>
                </tr>
              ))}
              {rows !== undefined && rows.length === 0 ? <tr><td colSpan={5} class="muted">No leases.</td></tr> : null}
            </tbody>
          </table>
        </div>
      </Panel>
      {revoking === undefined ? null : (
        <ConfirmDialog title="Revoke lease" confirmLabel="Revoke" tone="danger" onClose={() => setRevoking(undefined)} onConfirm={async () => {
          await revoke(revoking.id);
          setGeneration((value) => value + 1);
        }}>
          <p>Revoke lease <code>{hexId(revoking.id)}</code>? Its {revoking.keys.length} key{revoking.keys.length === 1 ? '' : 's'} will be deleted at once.</p>
        </ConfirmDialog>
      )}
    </div>
  );
}

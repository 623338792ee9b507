/**
 * Keys: a browser of one level at a time under a prefix (the separator is chosen, `/` by
 * default), with a count per child directory; pages of {@link PAGE_SIZE} children that all read
 * at one revision (the first page's, or the "as of" revision chosen), so paging never mixes two
 * states. A key's value as text, JSON or hex; edit, create, delete; its history (every revision
 * still in the history, from a watch with prev_kv) with a diff between any two revisions.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { deleteRange, put, range, readHistory, type History, type Kv } from '../api/etcd.js';
import { GatewayError } from '../api/gateway.js';
import { ConfirmDialog, DiffView, ErrorNote, Loading, Panel, ValueView, onListKeyDown } from '../components/common.js';
import { useLoad, useSubmit } from '../hooks.js';
import { decodeUtf8, displayText, fromBase64, fromHex, keySuccessor, prefixEnd, toBase64, toHex, utf8 } from '../lib/bytes.js';
import { detectKind, int, renderValue } from '../lib/format.js';
import { groupInto, type LevelChild } from '../lib/tree.js';
import { setParams, useLocation } from '../router.js';

/** Children shown per page. */
export const PAGE_SIZE = 50;
/** Keys read per range request while scanning a level (keys only). */
const SCAN_BATCH = 500;
/** Events of a key's history kept (the newest). */
const HISTORY_MAX = 1000;

interface LevelPage {
  readonly children: readonly LevelChild[];
  /** Where the next page starts, if there is one. */
  readonly next: Uint8Array | undefined;
  readonly revision: number;
}

/**
 * One page of the level `prefix` from `from`, at `revision` (0: now, and the answer says which
 * revision that was). A directory cut by the end of a scan batch is counted with a count_only
 * range and skipped over, so a huge directory costs one request, not a scan.
 */
export async function listLevel(args: { prefix: Uint8Array; separator: Uint8Array; revision: number; from: Uint8Array; signal: AbortSignal }): Promise<LevelPage> {
  const end = prefixEnd(args.prefix);
  let revision = args.revision;
  let from = args.from.length === 0 ? new Uint8Array([0]) : args.from;
  const children: LevelChild[] = [];
  for (;;) {
    const answer = await range({ key: toBase64(from), range_end: toBase64(end), keys_only: true, limit: SCAN_BATCH, revision }, { signal: args.signal });
    if (revision === 0) revision = int(answer.header.revision);
    const keys = (answer.kvs ?? []).map((kv) => fromBase64(kv.key));
    groupInto(children, keys, args.prefix, args.separator);
    if (children.length > PAGE_SIZE || answer.more !== true || keys.length === 0) break;
    const last = children[children.length - 1];
    if (last.kind === 'dir') {
      const counted = await range({ key: toBase64(last.key), range_end: toBase64(prefixEnd(last.key)), count_only: true, revision }, { signal: args.signal });
      last.count = int(counted.count);
      from = prefixEnd(last.key);
    } else {
      from = keySuccessor(keys[keys.length - 1]);
    }
  }
  return { children: children.slice(0, PAGE_SIZE), next: children[PAGE_SIZE]?.key, revision };
}

function keyText(bytes: Uint8Array): string {
  return decodeUtf8(bytes) ?? `0x${toHex(bytes)}`;
}

export function KeysPage() {
  const { params } = useLocation();
  const prefixText = params.get('prefix') ?? '/';
  const separator = params.get('sep') ?? '/';
  const asOf = int(params.get('rev') ?? '');
  const selected = params.get('k') ?? undefined;
  const [searchText, setSearchText] = useState(prefixText);
  const [sepText, setSepText] = useState(separator);
  const [revText, setRevText] = useState(asOf === 0 ? '' : String(asOf));
  const [pages, setPages] = useState<{ cursors: Uint8Array[]; index: number }>({ cursors: [utf8(prefixText)], index: 0 });
  /** The revision every page reads at: the "as of" revision, or the first page's (0 until it answered). */
  const pinned = useRef(asOf);
  const [creating, setCreating] = useState(false);
  const [generation, setGeneration] = useState(0);

  useEffect(() => {
    setSearchText(prefixText);
    setSepText(separator);
    setRevText(asOf === 0 ? '' : String(asOf));
    pinned.current = asOf;
    setPages({ cursors: [utf8(prefixText)], index: 0 });
  }, [prefixText, separator, asOf, generation]);

  const prefix = utf8(prefixText);
  const level = useLoad(async (signal) => {
    const page = await listLevel({ prefix, separator: utf8(separator), revision: pinned.current, from: pages.cursors[pages.index], signal });
    if (pinned.current === 0) pinned.current = page.revision; // The first page pins the revision of the later ones.
    return page;
  }, [pages, separator, prefixText]);

  const refresh = (): void => setGeneration((value) => value + 1);
  const goNext = (): void => {
    const next = level.data?.next;
    if (next === undefined) return;
    setPages((previous) => ({ ...previous, cursors: [...previous.cursors.slice(0, previous.index + 1), next], index: previous.index + 1 }));
  };
  const goPrevious = (): void => setPages((previous) => ({ ...previous, index: Math.max(0, previous.index - 1) }));
  const crumbs = breadcrumbs(prefixText, separator);
  const compacted = level.error instanceof GatewayError && level.error.code === 11;

  return (
    <div class="page">
      <h1>Keys</h1>
      <form class="toolbar" role="search" onSubmit={(event) => { event.preventDefault(); setParams({ prefix: searchText, sep: sepText === '/' ? undefined : sepText, rev: revText.trim() || undefined, k: undefined }); }}>
        <label class="grow">Prefix <input name="prefix" value={searchText} onInput={(event) => setSearchText(event.currentTarget.value)} placeholder="/app/" spellcheck={false} /></label>
        <label class="narrow">Separator <input name="separator" value={sepText} onInput={(event) => setSepText(event.currentTarget.value)} spellcheck={false} /></label>
        <label class="narrow">As of revision <input name="revision" inputMode="numeric" pattern="[0-9]*" value={revText} placeholder="latest" onInput={(event) => setRevText(event.currentTarget.value)} /></label>
        <button type="submit" class="primary">Show</button>
        <button type="button" onClick={() => { setCreating(true); setParams({ k: undefined }); }}>New key</button>
      </form>
      <nav class="crumbs" aria-label="Prefix">
        {crumbs.map((crumb, index) => (
          <span key={crumb.prefix}>
            {index > 0 ? <span class="sep" aria-hidden="true"> › </span> : null}
            {index === crumbs.length - 1 ? <strong aria-current="location">{crumb.label}</strong> : <a href="#" onClick={(event) => { event.preventDefault(); setParams({ prefix: crumb.prefix, k: undefined }); }}>{crumb.label}</a>}
          </span>
        ))}
      </nav>
      <div class="split">
        <Panel title={`Under ${prefixText === '' ? '(all keys)' : prefixText}`} id="level-title" actions={
          <>
            <span class="muted" data-testid="pinned-revision">{asOf > 0 ? `as of revision ${asOf}` : `at revision ${level.data?.revision ?? '…'}`}</span>
            <button type="button" onClick={refresh} disabled={level.loading}>Refresh</button>
          </>
        }>
          <Loading when={level.loading} />
          <ErrorNote error={level.error} />
          {compacted ? <p class="note">That revision was compacted. <button type="button" class="link" onClick={() => setParams({ rev: undefined })}>Show the latest</button></p> : null}
          <ul class="children" role="list" onKeyDown={onListKeyDown} data-testid="children">
            {(level.data?.children ?? []).map((child) => {
              const label = keyText(child.key.subarray(prefix.length)) || '(this prefix itself)';
              const keyB64 = toBase64(child.key);
              return (
                <li key={keyB64}>
                  {child.kind === 'dir' ? (
                    <button type="button" class="child dir" data-nav-item onClick={() => setParams({ prefix: displayText(child.key), k: undefined })}>
                      <span class="icon" aria-hidden="true">▸</span><span class="name">{label}</span><span class="count" aria-label={`${child.count} keys`}>{child.count}</span>
                    </button>
                  ) : (
                    <button type="button" class="child key" data-nav-item aria-pressed={selected === keyB64} onClick={() => { setCreating(false); setParams({ k: keyB64 }); }}>
                      <span class="icon" aria-hidden="true">•</span><span class="name">{label}</span>
                    </button>
                  )}
                </li>
              );
            })}
            {level.data !== undefined && level.data.children.length === 0 ? <li class="muted">No keys under this prefix{asOf > 0 ? ` at revision ${asOf}` : ''}.</li> : null}
          </ul>
          <div class="pager">
            <button type="button" onClick={goPrevious} disabled={pages.index === 0 || level.loading}>Previous</button>
            <span class="muted">page {pages.index + 1}</span>
            <button type="button" onClick={goNext} disabled={level.data?.next === undefined || level.loading}>Next</button>
          </div>
        </Panel>
        <div>
          {creating ? <NewKey prefix={prefixText} onDone={(keyB64) => { setCreating(false); setParams({ k: keyB64, rev: undefined }); refresh(); }} onCancel={() => setCreating(false)} /> : null}
          {!creating && selected !== undefined ? <KeyDetail key={`${selected}-${asOf}`} keyB64={selected} asOf={asOf} onChanged={refresh} /> : null}
          {!creating && selected === undefined ? <p class="muted panel placeholder">Choose a key to see its value and history.</p> : null}
        </div>
      </div>
    </div>
  );
}

function breadcrumbs(prefix: string, separator: string): Array<{ prefix: string; label: string }> {
  const out = [{ prefix: '', label: '(all)' }];
  if (separator === '') return prefix === '' ? out : [...out, { prefix, label: prefix }];
  let at = 0;
  for (;;) {
    const found = prefix.indexOf(separator, at);
    if (found < 0) break;
    const end = found + separator.length;
    out.push({ prefix: prefix.slice(0, end), label: prefix.slice(at, end) });
    at = end;
  }
  if (at < prefix.length) out.push({ prefix, label: prefix.slice(at) });
  return out;
}

function NewKey({ prefix, onDone, onCancel }: { prefix: string; onDone: (keyB64: string) => void; onCancel: () => void }) {
  const [key, setKey] = useState(prefix);
  const [value, setValue] = useState('');
  const [lease, setLease] = useState('');
  const { busy, error, submit } = useSubmit(async () => {
    const keyB64 = toBase64(utf8(key));
    await put({ key: keyB64, value: toBase64(utf8(value)), lease: lease.trim() === '' ? undefined : BigInt(`0x${lease.trim().replace(/^0x/, '')}`).toString() });
    onDone(keyB64);
  });
  return (
    <Panel title="New key" id="new-key-title">
      <form class="form-grid" onSubmit={submit}>
        <label>Key <input name="key" value={key} required onInput={(event) => setKey(event.currentTarget.value)} spellcheck={false} autoFocus /></label>
        <label>Value <textarea name="value" rows={6} value={value} onInput={(event) => setValue(event.currentTarget.value)} spellcheck={false} /></label>
        <label>Lease (hex id, optional) <input name="lease" value={lease} onInput={(event) => setLease(event.currentTarget.value)} spellcheck={false} /></label>
        <div class="actions">
          <button type="button" onClick={onCancel}>Cancel</button>
          <button type="submit" class="primary" disabled={busy}>{busy ? 'Creating…' : 'Create'}</button>
        </div>
      </form>
      <ErrorNote error={error} />
    </Panel>
  );
}

function KeyDetail({ keyB64, asOf, onChanged }: { keyB64: string; asOf: number; onChanged: () => void }) {
  const keyBytes = fromBase64(keyB64);
  const [editing, setEditing] = useState(false);
  const [deleting, setDeleting] = useState(false);
  const [showHistory, setShowHistory] = useState(false);
  const loaded = useLoad((signal) => range({ key: keyB64, revision: asOf }, { signal }), [keyB64, asOf]);
  const kv = loaded.data?.kvs?.[0];
  return (
    <Panel title={keyText(keyBytes)} id="key-title" actions={
      <>
        <button type="button" onClick={() => setEditing(true)} disabled={kv === undefined || asOf > 0}>Edit</button>
        <button type="button" class="danger" onClick={() => setDeleting(true)} disabled={kv === undefined || asOf > 0}>Delete</button>
        <button type="button" onClick={() => setShowHistory((value) => !value)} aria-expanded={showHistory}>History</button>
      </>
    }>
      <Loading when={loaded.loading} />
      <ErrorNote error={loaded.error} />
      {loaded.data !== undefined && kv === undefined ? <p class="note">No such key{asOf > 0 ? ` at revision ${asOf}` : ''}.</p> : null}
      {kv === undefined ? null : (
        <>
          <dl class="meta">
            <div><dt>create revision</dt><dd>{kv.create_revision}</dd></div>
            <div><dt>mod revision</dt><dd data-testid="mod-revision">{kv.mod_revision}</dd></div>
            <div><dt>version</dt><dd>{kv.version}</dd></div>
            <div><dt>lease</dt><dd>{kv.lease === undefined ? 'none' : BigInt(kv.lease).toString(16)}</dd></div>
            <div><dt>read at</dt><dd>revision {asOf > 0 ? asOf : loaded.data?.header.revision}</dd></div>
          </dl>
          {editing ? <ValueEditor kv={kv} onDone={() => { setEditing(false); loaded.reload(); onChanged(); }} onCancel={() => setEditing(false)} /> : <ValueView bytes={fromBase64(kv.value)} label="Value" />}
        </>
      )}
      {showHistory ? <KeyHistory keyB64={keyB64} /> : null}
      {deleting ? (
        <ConfirmDialog title="Delete key" confirmLabel="Delete" tone="danger" onClose={() => setDeleting(false)} onConfirm={async () => {
          await deleteRange({ key: keyB64 });
          loaded.reload();
          onChanged();
        }}>
          <p>Delete <code>{keyText(keyBytes)}</code>? Its history stays readable until it is compacted.</p>
        </ConfirmDialog>
      ) : null}
    </Panel>
  );
}

function ValueEditor({ kv, onDone, onCancel }: { kv: Kv; onDone: () => void; onCancel: () => void }) {
  const bytes = fromBase64(kv.value);
  const kind = detectKind(bytes);
  const [format, setFormat] = useState<'text' | 'hex'>(kind === 'binary' ? 'hex' : 'text');
  const [text, setText] = useState(kind === 'binary' ? toHex(bytes) : renderValue(bytes, kind));
  const { busy, error, setError, submit: save } = useSubmit(async () => {
    const value = format === 'hex' ? fromHex(text) : utf8(text);
    if (kind === 'json' && format === 'text') JSON.parse(text); // Refuse to save broken JSON over JSON by accident.
    await put({ key: kv.key, value: toBase64(value), lease: kv.lease });
    onDone();
  });
  return (
    <form class="form-grid" onSubmit={save}>
      <div class="segmented" role="radiogroup" aria-label="Edit as">
        {(['text', 'hex'] as const).map((option) => (
          <button type="button" role="radio" key={option} aria-checked={format === option} onClick={() => {
            if (option === format) return;
            try {
              setText(option === 'hex' ? toHex(utf8(text)) : displayText(fromHex(text)));
              setFormat(option);
            } catch (failure: unknown) {
              setError(failure);
            }
          }}>{option === 'text' ? 'Text' : 'Hex'}</button>
        ))}
      </div>
      <label>Value <textarea name="value" rows={10} value={text} onInput={(event) => setText(event.currentTarget.value)} spellcheck={false} autoFocus /></label>
      <div class="actions">
        <button type="button" onClick={onCancel}>Cancel</button>
        <button type="submit" class="primary" disabled={busy}>{busy ? 'Saving…' : 'Save'}</button>
      </div>
      <ErrorNote error={error} />
    </form>
  );
}

interface Version {
  readonly revision: number;
  readonly type: 'PUT' | 'DELETE';
  readonly value: Uint8Array;
  readonly version: string;
}

function versionsOf(history: History): Version[] {
  const out: Version[] = history.base.map((kv) => ({ revision: int(kv.mod_revision), type: 'PUT' as const, value: fromBase64(kv.value), version: kv.version ?? '' }));
  for (const event of history.events) {
    out.push({ revision: int(event.kv.mod_revision), type: event.type === 'DELETE' ? 'DELETE' : 'PUT', value: fromBase64(event.kv.value), version: event.kv.version ?? '' });
  }
  return out.reverse();
}

function textOf(version: Version | undefined): string {
  if (version === undefined || version.type === 'DELETE') return '';
  return renderValue(version.value, detectKind(version.value));
}

function KeyHistory({ keyB64 }: { keyB64: string }) {
  const loaded = useLoad((signal) => readHistory({ key: keyB64, maxEvents: HISTORY_MAX, signal }), [keyB64]);
  const versions = loaded.data === undefined ? [] : versionsOf(loaded.data);
  const [a, setA] = useState<number | undefined>(undefined);
  const [b, setB] = useState<number | undefined>(undefined);
  const older = versions.find((version) => version.revision === (a ?? versions[1]?.revision));
  const newer = versions.find((version) => version.revision === (b ?? versions[0]?.revision));
  return (
    <section class="history" aria-label="History">
      <h3>History</h3>
      <Loading when={loaded.loading} label="Reading the history…" />
      <ErrorNote error={loaded.error} />
      {loaded.data?.baseRevision ? <p class="muted">History before revision {loaded.data.baseRevision} was compacted.</p> : null}
      {loaded.data?.truncated ? <p class="muted">Only the newest {HISTORY_MAX} revisions are shown.</p> : null}
      <div class="table-wrap">
        <table data-testid="history">
          <thead><tr><th scope="col">Revision</th><th scope="col">Event</th><th scope="col">Version</th><th scope="col">Value</th><th scope="col">Diff from</th><th scope="col">Diff to</th><th scope="col">View</th></tr></thead>
          <tbody>
            {versions.map((version) => (
              <tr key={version.revision}>
                <td class="num">{version.revision}</td>
                <td>{version.type === 'DELETE' ? <span class="badge warn">deleted</span> : 'put'}</td>
                <td class="num">{version.version}</td>
                <td class="ellipsis mono">{version.type === 'DELETE' ? '' : textOf(version).slice(0, 80)}</td>
                <td><input type="radio" name="diff-from" aria-label={`diff from revision ${version.revision}`} checked={older?.revision === version.revision} onChange={() => setA(version.revision)} /></td>
                <td><input type="radio" name="diff-to" aria-label={`diff to revision ${version.revision}`} checked={newer?.revision === version.revision} onChange={() => setB(version.revision)} /></td>
                <td><a href="#" onClick={(event) => { event.preventDefault(); setParams({ rev: String(version.revision), k: keyB64 }); }}>as of</a></td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {older !== undefined && newer !== undefined ? (
        <>
          <h4>Revision {older.revision} → {newer.revision}</h4>
          <DiffView before={textOf(older)} after={textOf(newer)} label={`Diff from revision ${older.revision} to ${newer.revision}`} />
        </>
      ) : null}
    </section>
  );
}


/**
 * Watch tail: a key or a prefix watched live from now or from a past revision, through the
 * gateway's streaming watch. Events go into a bounded buffer ({@link BUFFER_MAX}, the oldest
 * dropped and counted); "Pause" freezes the view while events keep arriving into the buffer.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { watch, b64, b64PrefixEnd, type WatchEvent } from '../api/etcd.js';
import { ErrorNote, Panel } from '../components/common.js';
import { displayText, fromBase64 } from '../lib/bytes.js';
import { clockTime, detectKind, renderValue } from '../lib/format.js';
import { setParams, useLocation } from '../router.js';

/** Events the tail keeps; older ones are dropped (and counted). */
export const BUFFER_MAX = 500;

interface Row {
  readonly seq: number;
  readonly at: number;
  readonly revision: string;
  readonly type: 'PUT' | 'DELETE';
  readonly key: string;
  readonly value: string;
  readonly previous: string | undefined;
}

function preview(base64: string | undefined): string {
  const bytes = fromBase64(base64);
  const kind = detectKind(bytes);
  const text = kind === 'binary' ? `0x${[...bytes.subarray(0, 32)].map((byte) => byte.toString(16).padStart(2, '0')).join('')}${bytes.length > 32 ? '…' : ''}` : renderValue(bytes, 'text');
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

export function WatchPage() {
  const { params } = useLocation();
  const [key, setKey] = useState(params.get('key') ?? '/');
  const [isPrefix, setIsPrefix] = useState(params.get('prefix') !== 'false');
  const [from, setFrom] = useState(params.get('from') ?? '');
  const [running, setRunning] = useState<{ key: string; isPrefix: boolean; from: number } | undefined>(undefined);
  const [paused, setPaused] = useState(false);
  const [, setTick] = useState(0);
  const [state, setState] = useState<{ phase: 'idle' | 'connecting' | 'watching' | 'ended'; error: unknown; note: string | undefined }>({ phase: 'idle', error: undefined, note: undefined });
  const buffer = useRef<Row[]>([]);
  const dropped = useRef(0);
  const sequence = useRef(0);
  const frozen = useRef<Row[] | undefined>(undefined);
  const frame = useRef(0);

  useEffect(() => {
    if (running === undefined) return undefined;
    const controller = new AbortController();
    buffer.current = [];
    dropped.current = 0;
    setState({ phase: 'connecting', error: undefined, note: undefined });
    const redraw = (): void => {
      if (frame.current !== 0) return;
      frame.current = requestAnimationFrame(() => {
        frame.current = 0;
        setTick((value) => value + 1);
      });
    };
    const push = (event: WatchEvent): void => {
      buffer.current.push({
        seq: sequence.current++,
        at: Date.now(),
        revision: event.kv.mod_revision ?? '',
        type: event.type === 'DELETE' ? 'DELETE' : 'PUT',
        key: displayText(fromBase64(event.kv.key)),
        value: event.type === 'DELETE' ? '' : preview(event.kv.value),
        previous: event.prev_kv === undefined ? undefined : preview(event.prev_kv.value),
      });
      if (buffer.current.length > BUFFER_MAX) {
        dropped.current += buffer.current.length - BUFFER_MAX;
        buffer.current.splice(0, buffer.current.length - BUFFER_MAX);
      }
    };
    const keyB64 = b64(running.key);
    watch({ key: keyB64, rangeEnd: running.isPrefix ? b64PrefixEnd(keyB64) : undefined, startRevision: running.from, prevKv: true, signal: controller.signal }, (response) => {
      if (response.created === true) setState({ phase: 'watching', error: undefined, note: `watching since revision ${running.from > 0 ? running.from : Number(response.header.revision ?? 0) + 1}` });
      if (response.canceled === true) {
        const compactedAt = response.compact_revision;
        setState({ phase: 'ended', error: undefined, note: compactedAt === undefined ? `canceled: ${response.cancel_reason ?? 'by the server'}` : `canceled: revision ${running.from} was compacted (history starts at ${compactedAt})` });
        controller.abort();
      }
      for (const event of response.events ?? []) push(event);
      redraw();
    }).then(
      () => setState((previous) => (controller.signal.aborted && previous.phase === 'ended' ? previous : { phase: 'ended', error: undefined, note: controller.signal.aborted ? 'stopped' : 'the server ended the watch' })),
      (error: unknown) => setState({ phase: 'ended', error, note: undefined }),
    );
    return () => {
      controller.abort();
      if (frame.current !== 0) cancelAnimationFrame(frame.current);
      frame.current = 0;
    };
  }, [running]);

  const start = (event: Event): void => {
    event.preventDefault();
    setPaused(false);
    frozen.current = undefined;
    setRunning({ key, isPrefix, from: Number(from.trim() || '0') });
    setParams({ key, prefix: isPrefix ? undefined : 'false', from: from.trim() || undefined });
  };
  const togglePause = (): void => {
    frozen.current = paused ? undefined : [...buffer.current];
    setPaused(!paused);
  };
  const rows = frozen.current ?? buffer.current;
  const waiting = paused ? buffer.current.length === 0 ? 0 : buffer.current[buffer.current.length - 1].seq - (rows[rows.length - 1]?.seq ?? -1) : 0;
  const active = state.phase === 'connecting' || state.phase === 'watching';
  return (
    <div class="page">
      <h1>Watch</h1>
      <form class="toolbar" onSubmit={start}>
        <label class="grow">Key <input name="key" value={key} onInput={(event) => setKey(event.currentTarget.value)} spellcheck={false} required /></label>
        <label class="check"><input type="checkbox" name="prefix" checked={isPrefix} onChange={(event) => setIsPrefix(event.currentTarget.checked)} /> prefix</label>
        <label class="narrow">From revision <input name="from" inputMode="numeric" pattern="[0-9]*" placeholder="now" value={from} onInput={(event) => setFrom(event.currentTarget.value)} /></label>
        <button type="submit" class="primary">{active ? 'Restart' : 'Start'}</button>
        <button type="button" onClick={() => setRunning(undefined)} disabled={!active}>Stop</button>
        <button type="button" onClick={togglePause} disabled={running === undefined} aria-pressed={paused}>{paused ? 'Resume' : 'Pause'}</button>
        <button type="button" onClick={() => { buffer.current = []; dropped.current = 0; frozen.current = paused ? [] : undefined; setTick((value) => value + 1); }}>Clear</button>
      </form>
      <p class="summary" aria-live="polite" data-testid="watch-status">
        {state.phase === 'idle' ? 'Not watching.' : state.phase === 'connecting' ? 'Connecting…' : state.note}
        {paused ? <span class="badge warn"> paused{waiting > 0 ? `: ${waiting} new` : ''}</span> : null}
        {dropped.current > 0 ? <span class="badge warn" data-testid="dropped"> buffer full: {dropped.current} older events dropped (keeps {BUFFER_MAX})</span> : null}
      </p>
      <ErrorNote error={state.error} />
      <Panel title={`Events (${rows.length})`} id="events-title">
        <div class="table-wrap tall">
          <table data-testid="events">
            <thead><tr><th scope="col">Time</th><th scope="col" class="num">Revision</th><th scope="col">Event</th><th scope="col">Key</th><th scope="col">Value</th><th scope="col">Previous</th></tr></thead>
            <tbody>
              {rows.slice().reverse().map((row) => (
                <tr key={row.seq}>
                  <td class="mono">{clockTime(row.at)}</td>
                  <td class="num">{row.revision}</td>
                  <td>{row.type === 'DELETE' ? <span class="badge warn">DELETE</span> : 'PUT'}</td>
                  <td class="mono ellipsis">{row.key}</td>
                  <td class="mono ellipsis">{row.value}</td>
                  <td class="mono ellipsis muted">{row.previous ?? ''}</td>
                </tr>
              ))}
              {rows.length === 0 ? <tr><td colSpan={6} class="muted">{active ? 'Waiting for events…' : 'Start a watch to see events.'}</td></tr> : null}
            </tbody>
          </table>
        </div>
      </Panel>
    </div>
  );
}

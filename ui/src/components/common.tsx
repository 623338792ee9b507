/** Small shared pieces: error and loading notes, the confirmation dialog, value and diff views. */
import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { GatewayError } from '../api/gateway.js';
import { useSubmit } from '../hooks.js';
import { diffLines } from '../lib/diff.js';
import { detectKind, renderValue, type ValueKind } from '../lib/format.js';

/** An error as etcd said it (message and gRPC code), announced to screen readers. */
export function ErrorNote({ error, prefix }: { error: unknown; prefix?: string }) {
  if (error === undefined || error === null) return null;
  const message = error instanceof Error ? error.message : String(error);
  const code = error instanceof GatewayError && error.code !== 0 ? ` (code ${error.code})` : '';
  return <p class="note error" role="alert">{prefix === undefined ? '' : `${prefix}: `}{message}{code}</p>;
}

/** A "loading" line that keeps its height whether shown or not (no layout jump). */
export function Loading({ when, label = 'Loading…' }: { when: boolean; label?: string }) {
  return <p class="note loading" aria-live="polite" data-visible={when ? 'yes' : 'no'}>{when ? label : '\u00a0'}</p>;
}

/**
 * A modal confirmation (the native <dialog>: focus moves into it, Escape cancels). `onConfirm`
 * may fail: its error is shown in the dialog, which stays open.
 */
export function ConfirmDialog(props: {
  title: string;
  confirmLabel: string;
  tone?: 'danger' | 'normal';
  onConfirm: () => Promise<void>;
  onClose: () => void;
  children?: ComponentChildren;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const { busy, error, submit: confirm } = useSubmit(async () => {
    await props.onConfirm();
    props.onClose();
  });
  useEffect(() => {
    const dialog = ref.current;
    if (dialog !== null && !dialog.open) dialog.showModal();
  }, []);
  return (
    <dialog ref={ref} class="dialog" aria-labelledby="dialog-title" onClose={props.onClose} onCancel={props.onClose}>
      <form method="dialog" onSubmit={confirm}>
        <h2 id="dialog-title">{props.title}</h2>
        <div class="dialog-body">{props.children}</div>
        <ErrorNote error={error} />
        <div class="actions">
          <button type="button" onClick={props.onClose} disabled={busy}>Cancel</button>
          <button type="submit" class={props.tone === 'danger' ? 'danger' : 'primary'} disabled={busy}>{busy ? 'Working…' : props.confirmLabel}</button>
        </div>
      </form>
    </dialog>
  );
}

const KIND_LABELS: Record<ValueKind | 'auto', string> = { auto: 'Auto', text: 'Text', json: 'JSON', binary: 'Hex' };

/** A value with a choice of rendering: auto-detected, text, JSON pretty-printed or hex. */
export function ValueView({ bytes, label }: { bytes: Uint8Array; label: string }) {
  const [choice, setChoice] = useState<ValueKind | 'auto'>('auto');
  const detected = detectKind(bytes);
  const kind = choice === 'auto' ? detected : choice;
  return (
    <div class="value-view">
      <div class="segmented" role="radiogroup" aria-label={`${label}: show as`}>
        {(['auto', 'text', 'json', 'binary'] as const).map((option) => (
          <button type="button" role="radio" aria-checked={choice === option} key={option} onClick={() => setChoice(option)}>
            {KIND_LABELS[option]}{option === 'auto' ? ` (${KIND_LABELS[detected]})` : ''}
          </button>
        ))}
        <span class="muted">{bytes.length} bytes</span>
      </div>
      <pre class="value" tabIndex={0} aria-label={label} data-testid="value">{renderValue(bytes, kind)}</pre>
    </div>
  );
}

/** A line diff of two texts. */
export function DiffView({ before, after, label }: { before: string; after: string; label: string }) {
  const lines = diffLines(before, after);
  return (
    <pre class="diff" tabIndex={0} aria-label={label} data-testid="diff">
      {lines.map((line, index) => (
        <span key={index} class={`diff-${line.op}`}>{line.op === 'add' ? '+ ' : line.op === 'del' ? '- ' : '  '}{line.text}{'\n'}</span>
      ))}
    </pre>
  );
}

/** A titled section of a page. */
export function Panel({ title, actions, children, id }: { title: string; actions?: ComponentChildren; children: ComponentChildren; id?: string }) {
  return (
    <section class="panel" aria-labelledby={id}>
      <header class="panel-head">
        <h2 id={id}>{title}</h2>
        {actions === undefined ? null : <div class="panel-actions">{actions}</div>}
      </header>
      {children}
    </section>
  );
}

/** Moves focus among the buttons of a list with the arrow keys, Home and End. */
export function onListKeyDown(event: KeyboardEvent): void {
  if (!['ArrowDown', 'ArrowUp', 'Home', 'End'].includes(event.key)) return;
  const list = event.currentTarget as HTMLElement;
  const items = [...list.querySelectorAll<HTMLElement>('[data-nav-item]')];
  if (items.length === 0) return;
  const at = items.indexOf(document.activeElement as HTMLElement);
  const next = event.key === 'Home' ? 0 : event.key === 'End' ? items.length - 1 : event.key === 'ArrowDown' ? Math.min(items.length - 1, at + 1) : Math.max(0, at - 1);
  event.preventDefault();
  items[next]?.focus();
}

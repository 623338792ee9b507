/**
 * Client-side routes under /ui/ (the server answers index.html for any of them): the path picks
 * the page, the query holds the page's state (prefix, key, revision...), so every view can be
 * linked to and the browser's back button works.
 */
import { useEffect, useState } from 'preact/hooks';

export const BASE = '/ui';

export interface Location {
  /** The page path below /ui, e.g. "/keys". */
  readonly path: string;
  readonly params: URLSearchParams;
}

const listeners = new Set<() => void>();

function current(): Location {
  const path = window.location.pathname.startsWith(BASE) ? window.location.pathname.slice(BASE.length) : window.location.pathname;
  return { path: path === '' ? '/' : path, params: new URLSearchParams(window.location.search) };
}

window.addEventListener('popstate', () => {
  for (const listener of listeners) listener();
});

/** Goes to `to` (a path below /ui, with an optional query). */
export function navigate(to: string, options: { replace?: boolean } = {}): void {
  const url = `${BASE}${to}`;
  if (url === `${window.location.pathname}${window.location.search}`) return;
  if (options.replace === true) window.history.replaceState(null, '', url);
  else window.history.pushState(null, '', url);
  for (const listener of listeners) listener();
}

/** Sets some query parameters of the current page (undefined or '' removes one), replacing the history entry. */
export function setParams(changes: Record<string, string | undefined>, options: { replace?: boolean } = { replace: true }): void {
  const { path, params } = current();
  for (const [name, value] of Object.entries(changes)) {
    if (value === undefined || value === '') params.delete(name);
    else params.set(name, value);
  }
  const query = params.toString();
  navigate(`${path}${query === '' ? '' : `?${query}`}`, options);
}

export function useLocation(): Location {
  const [location, setLocation] = useState(current);
  useEffect(() => {
    const listener = (): void => setLocation(current());
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
    };
  }, []);
  return location;
}

/** Builds an href below /ui. */
export function href(to: string): string {
  return `${BASE}${to}`;
}

/** A click on a link: handled by the router unless the user asked for a new tab. */
export function onLinkClick(event: MouseEvent, to: string): void {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  navigate(to);
}

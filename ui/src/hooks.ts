/** Small hooks the pages share: polling, a ticking clock, cancellable async loads. */
import { useEffect, useRef, useState } from 'preact/hooks';

/** The current time, re-rendered every `intervalMs` (for countdowns). */
export function useNow(intervalMs = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), intervalMs);
    return () => clearInterval(timer);
  }, [intervalMs]);
  return now;
}

/** State of an async load. */
export interface Loaded<T> {
  readonly data: T | undefined;
  readonly error: unknown;
  readonly loading: boolean;
  /** Loads again now. */
  reload(): void;
}

/**
 * Runs `load` when `deps` change (and on reload), aborting the previous run. Keeps the last data
 * while a new load runs, so the page does not jump.
 */
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: readonly unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data: T | undefined; error: unknown; loading: boolean }>({ data: undefined, error: undefined, loading: true });
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    const controller = new AbortController();
    setState((previous) => ({ ...previous, loading: true }));
    load(controller.signal).then(
      (data) => {
        if (!controller.signal.aborted) setState({ data, error: undefined, loading: false });
      },
      (error: unknown) => {
        if (!controller.signal.aborted) setState((previous) => ({ data: previous.data, error, loading: false }));
      },
    );
    return () => controller.abort();
  }, [...deps, generation]);
  return { ...state, reload: () => setGeneration((value) => value + 1) };
}

/**
 * Calls `tick` now and then again `delayMs(result)` after each run finishes (never two at once);
 * stops on unmount. The delay may depend on what the tick saw (poll faster while something is off).
 */
export function usePoll(tick: (signal: AbortSignal) => Promise<number>, deps: readonly unknown[]): void {
  const tickRef = useRef(tick);
  tickRef.current = tick;
  useEffect(() => {
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = (): void => {
      tickRef.current(controller.signal).then(
        (delayMs) => {
          if (!controller.signal.aborted) timer = setTimeout(run, delayMs);
        },
        (error: unknown) => {
          void error; // The tick reports its own errors; keep polling.
          if (!controller.signal.aborted) timer = setTimeout(run, 1000);
        },
      );
    };
    run();
    return () => {
      controller.abort();
      if (timer !== undefined) clearTimeout(timer);
    };
  }, deps);
}

/** A form's action: `submit` runs it with `busy` set and keeps its failure in `error` (cleared at each start). */
export interface Submit {
  readonly busy: boolean;
  readonly error: unknown;
  setError(error: unknown): void;
  submit(event: Event): void;
}

export function useSubmit(action: () => Promise<void>): Submit {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(undefined);
  const submit = (event: Event): void => {
    event.preventDefault();
    setBusy(true);
    setError(undefined);
    action().catch((failure: unknown) => setError(failure)).finally(() => setBusy(false));
  };
  return { busy, error, setError, submit };
}

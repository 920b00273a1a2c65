import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import type { ApiError } from './api/client';
import { asApiError, useSession } from './context';

export type Loaded<T> =
  | { status: 'loading'; data?: T }
  | { status: 'ok'; data: T }
  | { status: 'error'; error: ApiError; data?: T };

/**
 * Loads with `fn` whenever `deps` change; `reload()` fetches again keeping the shown data.
 * Failures are reported to the session (a refused key ends the session) and shown.
 */
export function useLoad<T>(
  fn: (signal: AbortSignal) => Promise<T>,
  deps: unknown[],
): [Loaded<T>, () => void, (update: (data: T) => T) => void] {
  const { report } = useSession();
  const [state, setState] = useState<Loaded<T>>({ status: 'loading' });
  const [tick, setTick] = useState(0);
  const fnRef = useRef(fn);
  fnRef.current = fn;
  useEffect(() => {
    const ctl = new AbortController();
    // What is shown stays on screen while the next answer comes (no flash on a refresh).
    setState((s) => ({ status: 'loading', ...(s.data !== undefined ? { data: s.data } : {}) }));
    fnRef.current(ctl.signal).then(
      (data) => {
        if (!ctl.signal.aborted) setState({ status: 'ok', data });
      },
      (e: unknown) => {
        if (ctl.signal.aborted) return;
        const error = asApiError(e);
        report(error);
        setState((s) => ({ status: 'error', error, ...(s.data !== undefined ? { data: s.data } : {}) }));
      },
    );
    return () => ctl.abort();
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((n) => n + 1), []);
  const update = useCallback(
    (f: (data: T) => T) =>
      setState((s) => (s.data === undefined ? s : ({ ...s, data: f(s.data) } as Loaded<T>))),
    [],
  );
  return [state, reload, update];
}

// One live stream for the whole page, shared by every view through a tiny bus.
import { createContext } from 'preact';
import { useContext, useEffect, useRef, useState } from 'preact/hooks';
import type { Api } from './api/client';
import { follow, type StreamState } from './api/stream';
import type { EventRow } from './api/types';

type Listener = (event: EventRow) => void;
type StateListener = (state: StreamState) => void;

export class LiveBus {
  private listeners = new Set<Listener>();
  private stateListeners = new Set<StateListener>();
  state: StreamState = { state: 'connecting' };

  emit(event: EventRow): void {
    for (const l of this.listeners) l(event);
  }

  setState(state: StreamState): void {
    this.state = state;
    for (const l of this.stateListeners) l(state);
  }

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  subscribeState(l: StateListener): () => void {
    this.stateListeners.add(l);
    return () => this.stateListeners.delete(l);
  }

  /** Follows the server's stream until `signal` aborts. */
  start(api: Api, signal: AbortSignal): void {
    void follow(api, {
      signal,
      onEvent: (e) => this.emit(e),
      onState: (s) => this.setState(s),
    });
  }
}

export const LiveContext = createContext<LiveBus>(new LiveBus());

/** Calls `handler` for every live event (the latest handler, without resubscribing). */
export function useLiveEvents(handler: Listener): void {
  const bus = useContext(LiveContext);
  const ref = useRef(handler);
  ref.current = handler;
  useEffect(() => bus.subscribe((e) => ref.current(e)), [bus]);
}

export function useLiveState(): StreamState {
  const bus = useContext(LiveContext);
  const [state, setState] = useState(bus.state);
  useEffect(() => {
    setState(bus.state);
    return bus.subscribeState(setState);
  }, [bus]);
  return state;
}

/** Counts transitions to `live` (each one may follow a gap worth catching up on). */
export function useLiveEpoch(): number {
  const bus = useContext(LiveContext);
  const [epoch, setEpoch] = useState(0);
  useEffect(
    () =>
      bus.subscribeState((s) => {
        if (s.state === 'live') setEpoch((n) => n + 1);
      }),
    [bus],
  );
  return epoch;
}

/** The current time in seconds, ticking every `ms` (for live durations). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(() => Date.now() / 1000);
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now() / 1000), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

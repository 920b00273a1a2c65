// The live event stream (`GET /stream`), read with fetch() so that the key travels in the
// Authorization header (EventSource cannot send one, and a key in the URL would be logged).
// Reconnects with Last-Event-ID after a drop, so no event is missed or repeated.
import { ApiError, type Api } from './client';
import type { EventRow } from './types';

export interface SseMessage {
  id: string | undefined;
  event: string;
  data: string;
}

/** An incremental text/event-stream parser (the WHATWG rules that this server uses). */
export class SseParser {
  private buffer = '';
  private data: string[] = [];
  private event = '';
  private id: string | undefined;

  feed(chunk: string): SseMessage[] {
    this.buffer += chunk;
    const out: SseMessage[] = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (!m) break;
      // A lone \r at the end may be the first half of \r\n: wait for more.
      if (m[0] === '\r' && m.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      if (line === '') {
        if (this.data.length) {
          out.push({ id: this.id, event: this.event || 'message', data: this.data.join('\n') });
        }
        this.data = [];
        this.event = '';
        continue;
      }
      if (line.startsWith(':')) continue; // comment (heartbeat)
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') this.data.push(value);
      else if (field === 'event') this.event = value;
      else if (field === 'id' && !value.includes('\0')) this.id = value;
    }
    return out;
  }
}

export type StreamState =
  | { state: 'connecting' }
  | { state: 'live' }
  | { state: 'reconnecting'; error: ApiError | Error; inMs: number }
  | { state: 'failed'; error: ApiError };

export interface StreamOptions {
  /** Only this run's events. */
  run?: number;
  onEvent: (event: EventRow) => void;
  onState?: (state: StreamState) => void;
  signal: AbortSignal;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });

/** Follows the stream until `signal` aborts; a wrong key ends it with state `failed`. */
export async function follow(api: Api, opts: StreamOptions): Promise<void> {
  const { signal } = opts;
  let lastId: string | undefined;
  let backoff = 500;
  const path = opts.run === undefined ? '/stream' : `/stream?run=${opts.run}`;
  while (!signal.aborted) {
    opts.onState?.({ state: 'connecting' });
    try {
      const headers: Record<string, string> = { Accept: 'text/event-stream' };
      if (lastId !== undefined) headers['Last-Event-ID'] = lastId;
      const res = await api.request(path, { headers, signal });
      if (!res.body) throw new Error('the stream has no body');
      opts.onState?.({ state: 'live' });
      backoff = 500;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      const parser = new SseParser();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        for (const msg of parser.feed(value)) {
          if (msg.id !== undefined) lastId = msg.id;
          let event: EventRow;
          try {
            event = JSON.parse(msg.data) as EventRow;
          } catch {
            continue;
          }
          opts.onEvent(event);
        }
      }
      if (signal.aborted) return;
      throw new Error('the stream ended');
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof ApiError && (e.kind === 'unauthorized' || e.kind === 'http')) {
        opts.onState?.({ state: 'failed', error: e });
        return;
      }
      const error = e instanceof Error ? e : new Error(String(e));
      const wait = e instanceof ApiError && e.retryAfterS ? e.retryAfterS * 1000 : backoff;
      opts.onState?.({ state: 'reconnecting', error, inMs: wait });
      await sleep(wait, signal);
      backoff = Math.min(backoff * 2, 8000);
    }
  }
}

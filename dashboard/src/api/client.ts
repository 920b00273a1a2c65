// The HTTP client: every call sends the key as a bearer header (never in a URL) and turns any
// failure into an ApiError whose message a person can act on.
import type {
  AuditPage,
  AuditQuery,
  BaselineList,
  BaselinesQuery,
  ControlAction,
  ControlResponse,
  IncidentPage,
  IncidentsQuery,
  Problem,
  RunPage,
  RunRow,
  RunsQuery,
  SamplePage,
  SamplesQuery,
  TimelinePage,
  TimelineQuery,
} from './types';

/** Why a call failed, as the UI distinguishes it. */
export type FailureKind = 'unreachable' | 'unauthorized' | 'rate-limited' | 'not-found' | 'http';

export class ApiError extends Error {
  constructor(
    readonly kind: FailureKind,
    readonly status: number,
    message: string,
    readonly retryAfterS?: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export type Fetch = typeof fetch;

type Query = Record<string, string | number | undefined | null>;

export function queryString(q: Query | undefined): string {
  if (!q) return '';
  const parts: string[] = [];
  for (const [k, v] of Object.entries(q)) {
    if (v === undefined || v === null || v === '') continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

/** Reads an error response: the problem's detail when it is one. */
export async function errorFrom(res: Response): Promise<ApiError> {
  let detail = `${res.status} ${res.statusText}`.trim();
  try {
    const type = res.headers.get('content-type') ?? '';
    if (type.includes('json')) {
      const body = (await res.json()) as Partial<Problem>;
      if (typeof body.detail === 'string' && body.detail) detail = body.detail;
    } else {
      const text = (await res.text()).trim();
      if (text) detail = text.slice(0, 300);
    }
  } catch {
    // Keep the status line.
  }
  const retry = Number(res.headers.get('retry-after'));
  switch (res.status) {
    case 401:
      return new ApiError('unauthorized', 401, detail);
    case 429:
      return new ApiError('rate-limited', 429, detail, Number.isFinite(retry) ? retry : undefined);
    case 404:
      return new ApiError('not-found', 404, detail);
    default:
      return new ApiError('http', res.status, detail);
  }
}

export function unreachable(cause: unknown): ApiError {
  const why = cause instanceof Error ? cause.message : String(cause);
  return new ApiError(
    'unreachable',
    0,
    `Cannot reach the sentry dashboard server (${why}). Is \`sentry dashboard\` still running?`,
  );
}

export class Api {
  constructor(
    readonly key: string,
    private readonly fetcher: Fetch = (...a) => fetch(...a),
    readonly base = '',
  ) {}

  headers(extra: Record<string, string> = {}): Record<string, string> {
    return { Authorization: `Bearer ${this.key}`, Accept: 'application/json', ...extra };
  }

  /** A raw authenticated request (the event stream uses it). */
  async request(path: string, init: RequestInit = {}): Promise<Response> {
    let res: Response;
    try {
      res = await this.fetcher(this.base + path, {
        ...init,
        headers: { ...this.headers(), ...(init.headers as Record<string, string> | undefined) },
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (e) {
      if (e instanceof DOMException && e.name === 'AbortError') throw e;
      throw unreachable(e);
    }
    if (!res.ok) throw await errorFrom(res);
    return res;
  }

  async get<T>(path: string, q?: Query, signal?: AbortSignal): Promise<T> {
    const res = await this.request(path + queryString(q), signal ? { signal } : {});
    return (await res.json()) as T;
  }

  runs(q: RunsQuery = {}, signal?: AbortSignal): Promise<RunPage> {
    return this.get('/runs', q, signal);
  }

  run(id: number, signal?: AbortSignal): Promise<RunRow> {
    return this.get(`/runs/${id}`, undefined, signal);
  }

  samples(id: number, q: SamplesQuery = {}, signal?: AbortSignal): Promise<SamplePage> {
    return this.get(`/runs/${id}/samples`, q, signal);
  }

  timeline(q: TimelineQuery, signal?: AbortSignal): Promise<TimelinePage> {
    return this.get('/timeline', q, signal);
  }

  incidents(q: IncidentsQuery = {}, signal?: AbortSignal): Promise<IncidentPage> {
    return this.get('/incidents', q, signal);
  }

  baselines(q: BaselinesQuery = {}, signal?: AbortSignal): Promise<BaselineList> {
    return this.get('/baselines', q, signal);
  }

  audit(q: AuditQuery = {}, signal?: AbortSignal): Promise<AuditPage> {
    return this.get('/audit', q, signal);
  }

  async control(action: ControlAction, runId: number): Promise<ControlResponse> {
    const res = await this.request(`/process/${action}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ run_id: runId }),
    });
    return (await res.json()) as ControlResponse;
  }
}

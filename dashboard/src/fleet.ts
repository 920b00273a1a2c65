// The fleet view's logic, apart from its markup: a watched job's figures against its
// baseline, and the filters and sort orders of the fleet table (in the route's query, so a
// filtered view is a link).
import type { BaselineList, BaselineRow, RunRow, RunStatus } from './api/types';
import { command, runDuration } from './format';

export const FLEET_STATES = ['all', 'live', 'ended'] as const;
export type FleetState = (typeof FLEET_STATES)[number];

export const SORT_KEYS = [
  'job',
  'repository',
  'workflow',
  'ci',
  'runner',
  'state',
  'started',
  'cpu',
  'mem',
  'idle',
  'cost',
  'baseline',
  'incidents',
] as const;
export type SortKey = (typeof SORT_KEYS)[number];
export type SortDir = 'asc' | 'desc';

/** The fleet page's filters and order, as `#/fleet?q=…&state=…&ci=…&sort=…&dir=…` holds them. */
export interface FleetFilters {
  q?: string;
  state?: FleetState;
  ci?: string;
  sort?: SortKey;
  dir?: SortDir;
}

export const DEFAULT_SORT: { sort: SortKey; dir: SortDir } = { sort: 'started', dir: 'desc' };

/** Text columns read best A→Z first; figures and times biggest (newest) first. */
const TEXT_KEYS: readonly SortKey[] = ['job', 'repository', 'workflow', 'ci', 'runner', 'state'];

export function firstDir(key: SortKey): SortDir {
  return TEXT_KEYS.includes(key) ? 'asc' : 'desc';
}

function oneOf<T extends string>(list: readonly T[], v: string | null): T | undefined {
  return v !== null && (list as readonly string[]).includes(v) ? (v as T) : undefined;
}

export function parseFleetQuery(params: URLSearchParams): FleetFilters {
  const f: FleetFilters = {};
  const q = params.get('q');
  if (q) f.q = q;
  const state = oneOf(FLEET_STATES, params.get('state'));
  if (state && state !== 'all') f.state = state;
  const ci = params.get('ci');
  if (ci) f.ci = ci;
  const sort = oneOf(SORT_KEYS, params.get('sort'));
  if (sort) f.sort = sort;
  const dir = oneOf(['asc', 'desc'] as const, params.get('dir'));
  if (dir) f.dir = dir;
  return f;
}

/** The query of a fleet route, without the defaults (so `#/fleet` is the plain view). */
export function fleetQuery(f: FleetFilters): URLSearchParams {
  const p = new URLSearchParams();
  if (f.q) p.set('q', f.q);
  if (f.state && f.state !== 'all') p.set('state', f.state);
  if (f.ci) p.set('ci', f.ci);
  const sort = f.sort ?? DEFAULT_SORT.sort;
  const dir = f.dir ?? firstDir(sort);
  if (sort !== DEFAULT_SORT.sort || dir !== DEFAULT_SORT.dir) {
    p.set('sort', sort);
    p.set('dir', dir);
  }
  return p;
}

export function isLive(r: Pick<RunRow, 'status'>): boolean {
  return r.status === 'running' || r.status === 'paused';
}

/** What a watched job is called: its CI job name, or its command line. */
export function jobName(r: RunRow): string {
  return r.labels.job || command(r.command);
}

/** A job's run against its baseline: ratios of wall time so far and CPU-seconds to the medians. */
export interface VsBaseline {
  /** Wall time (so far, while live) over the median wall time. */
  wall: number | null;
  /** CPU-seconds over the median CPU-seconds (when both are known). */
  cpu: number | null;
  median_wall_s: number;
  median_cpu_seconds: number | null;
  runs: number;
}

/**
 * The comparison, only when the job key's baseline is active (enough healthy runs for the
 * regression detector to use it); `null` otherwise.
 */
export function vsBaseline(run: RunRow, row: BaselineRow | undefined, nowS: number): VsBaseline | null {
  const b = row?.baseline;
  if (!row?.active || !b) return null;
  const wallS = runDuration(run.started_at, run.ended_at, nowS);
  const wall = b.median_wall_s > 0 && wallS >= 0 ? wallS / b.median_wall_s : null;
  const medianCpu = b.median_cpu_seconds ?? null;
  const cpu = run.cpu_seconds != null && medianCpu != null && medianCpu > 0 ? run.cpu_seconds / medianCpu : null;
  return { wall, cpu, median_wall_s: b.median_wall_s, median_cpu_seconds: medianCpu, runs: b.runs };
}

/** Past the regression detector's factor on either ratio. */
export function overBaseline(v: VsBaseline | null, factor: number): boolean {
  return !!v && ((v.wall ?? 0) >= factor || (v.cpu ?? 0) >= factor);
}

export function baselineIndex(list: BaselineList | undefined): Map<string, BaselineRow> {
  return new Map((list?.items ?? []).map((b) => [b.job_key, b]));
}

/** Keeps the runs the filters let through (the text matches job, repository, workflow, runner or command). */
export function filterRuns(runs: readonly RunRow[], f: FleetFilters): RunRow[] {
  const words = (f.q ?? '').toLowerCase().split(/\s+/).filter(Boolean);
  return runs.filter((r) => {
    if (f.state === 'live' && !isLive(r)) return false;
    if (f.state === 'ended' && isLive(r)) return false;
    if (f.ci && r.labels.ci !== f.ci) return false;
    if (words.length === 0) return true;
    const l = r.labels;
    const text = [l.job, l.repository, l.workflow, l.runner, command(r.command)].join('\n').toLowerCase();
    return words.every((w) => text.includes(w));
  });
}

const STATE_ORDER: Record<RunStatus, number> = { running: 0, paused: 1, exited: 2, stopped: 3, failed: 4, lost: 5 };

export interface SortContext {
  baselines: Map<string, BaselineRow>;
  now: number;
}

function sortValue(r: RunRow, key: SortKey, ctx: SortContext): string | number | null {
  switch (key) {
    case 'job':
      return jobName(r).toLowerCase();
    case 'repository':
    case 'workflow':
    case 'ci':
    case 'runner':
      return r.labels[key]?.toLowerCase() || null;
    case 'state':
      return (STATE_ORDER as Record<string, number>)[r.status] ?? 9;
    case 'started':
      return r.started_at;
    case 'cpu':
      return r.cpu_seconds ?? null;
    case 'mem':
      return r.mem_gb_seconds ?? null;
    case 'idle':
      return r.idle_fraction ?? null;
    case 'cost':
      return r.cost ?? null;
    case 'baseline':
      return vsBaseline(r, r.job_key ? ctx.baselines.get(r.job_key) : undefined, ctx.now)?.wall ?? null;
    case 'incidents':
      return r.incidents;
  }
}

/** Sorted by `key`; rows without a value go last either way, ties newest first. */
export function sortRuns(runs: readonly RunRow[], key: SortKey, dir: SortDir, ctx: SortContext): RunRow[] {
  const sign = dir === 'asc' ? 1 : -1;
  return runs
    .map((r) => ({ r, v: sortValue(r, key, ctx) }))
    .sort((a, b) => {
      if (a.v === null || b.v === null) {
        if (a.v === b.v) return b.r.id - a.r.id;
        return a.v === null ? 1 : -1;
      }
      const c = typeof a.v === 'string' ? a.v.localeCompare(String(b.v)) : a.v - (b.v as number);
      return c !== 0 ? sign * c : b.r.id - a.r.id;
    })
    .map((x) => x.r);
}

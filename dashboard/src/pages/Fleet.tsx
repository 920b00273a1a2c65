import { useEffect, useRef, useState } from 'preact/hooks';
import type { BaselineList, BaselineRow, RunPage, RunRow } from '../api/types';
import type { Api } from '../api/client';
import { Empty, ErrorNotice, Loading, MoreButton, ShadowBadge, StatusBadge } from '../components/common';
import { useSession } from '../context';
import {
  baselineIndex,
  DEFAULT_SORT,
  filterRuns,
  firstDir,
  FLEET_STATES,
  type FleetFilters,
  isLive,
  jobName,
  overBaseline,
  type SortDir,
  type SortKey,
  sortRuns,
  vsBaseline,
} from '../fleet';
import { bytes, duration, money, pct, runDuration, shortTime, time } from '../format';
import { useLiveEpoch, useLiveEvents, useNow } from '../live';
import { useLoad } from '../load';
import { href, replaceRoute } from '../router';

/** The platforms `sentry watch --discover ci` recognises (and `--cgroup` targets), offered in the CI filter. */
const KNOWN_CI = ['github', 'gitlab', 'buildkite', 'jenkins', 'cgroup'];

const STATE_LABELS: Record<(typeof FLEET_STATES)[number], string> = { all: 'all', live: 'live', ended: 'ended' };

function num(n: number | null | undefined, digits = 1): string {
  if (n == null || !Number.isFinite(n)) return '–';
  return n < 10 ? n.toFixed(digits) : String(Math.round(n));
}

function ratio(r: number): string {
  return `${r < 10 ? r.toFixed(1) : Math.round(r)}×`;
}

interface Column {
  key: SortKey;
  label: string;
}

function SortHeader({ col, sort, dir, onSort }: { col: Column; sort: SortKey; dir: SortDir; onSort: (k: SortKey) => void }) {
  const active = col.key === sort;
  return (
    <th scope="col" aria-sort={active ? (dir === 'asc' ? 'ascending' : 'descending') : undefined}>
      <button type="button" class="sort" onClick={() => onSort(col.key)} data-sort={col.key}>
        {col.label}
        <span class="sort-mark" aria-hidden="true">
          {active ? (dir === 'asc' ? '▲' : '▼') : ''}
        </span>
      </button>
    </th>
  );
}

function BaselineCell({
  run,
  row,
  factor,
  minRuns,
  now,
}: {
  run: RunRow;
  row: BaselineRow | undefined;
  factor: number;
  minRuns: number;
  now: number;
}) {
  const v = vsBaseline(run, row, now);
  if (!v) {
    if (!row) return <span class="muted">–</span>;
    return (
      <span class="muted small" title={`Learning: a job is compared with its baseline after ${minRuns} healthy runs`}>
        learning {row.baseline?.runs ?? 0}/{minRuns}
        <span class="sr-only"> healthy runs</span>
      </span>
    );
  }
  const over = overBaseline(v, factor);
  const words = [
    v.wall != null ? `wall time ${ratio(v.wall)} the median ${duration(v.median_wall_s)}` : '',
    v.cpu != null && v.median_cpu_seconds != null ? `CPU ${ratio(v.cpu)} the median ${num(v.median_cpu_seconds)} CPU-s` : '',
  ]
    .filter(Boolean)
    .join('; ');
  return (
    <span class={`vs${over ? ' over' : ''}`} title={`${words} (of ${v.runs} healthy runs; flagged from ${ratio(factor)})`}>
      {v.wall != null ? <strong>{ratio(v.wall)}</strong> : '–'}
      {v.cpu != null && <span class="small"> · CPU {ratio(v.cpu)}</span>}
      {over && <span class="sr-only"> (past {ratio(factor)} its baseline)</span>}
    </span>
  );
}

export interface FleetViewProps {
  runs: readonly RunRow[];
  baselines: BaselineList | undefined;
  filters: FleetFilters;
  now: number;
  onChange: (f: FleetFilters, typing?: boolean) => void;
}

/** The fleet table with its filters: everything the page shows once the data is in. */
export function FleetView({ runs, baselines, filters, now, onChange }: FleetViewProps) {
  const index = baselineIndex(baselines);
  const factor = baselines?.factor ?? 3;
  const sort = filters.sort ?? DEFAULT_SORT.sort;
  const dir = filters.dir ?? (filters.sort ? firstDir(sort) : DEFAULT_SORT.dir);
  const shown = sortRuns(filterRuns(runs, filters), sort, dir, { baselines: index, now });
  const priced = runs.some((r) => r.cost != null);
  const platforms = [...new Set([...KNOWN_CI, ...runs.map((r) => r.labels.ci ?? '').filter(Boolean), filters.ci ?? ''])]
    .filter(Boolean)
    .sort();
  const filtered = !!filters.q || !!filters.state || !!filters.ci;
  const onSort = (key: SortKey) =>
    onChange({ ...filters, sort: key, dir: key === sort ? (dir === 'asc' ? 'desc' : 'asc') : firstDir(key) });
  const columns: Column[] = [
    { key: 'job', label: 'Job' },
    { key: 'repository', label: 'Repository' },
    { key: 'workflow', label: 'Workflow' },
    { key: 'ci', label: 'CI' },
    { key: 'runner', label: 'Runner' },
    { key: 'state', label: 'State' },
    { key: 'started', label: 'Started' },
    { key: 'cpu', label: 'CPU-s' },
    { key: 'mem', label: 'Memory GB-s' },
    { key: 'idle', label: 'Idle' },
    ...(priced ? [{ key: 'cost' as const, label: 'Cost' }] : []),
    { key: 'baseline', label: 'vs baseline' },
    { key: 'incidents', label: 'Incidents' },
  ];
  const live = runs.filter(isLive).length;
  return (
    <>
      <form class="filters" aria-label="Filter the fleet" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>
          Search
          <input
            name="q"
            aria-label="Search"
            type="search"
            class="wide"
            placeholder="job, repository, workflow, runner"
            value={filters.q ?? ''}
            onInput={(e) => {
              const q = e.currentTarget.value;
              const { q: _q, ...rest } = filters;
              onChange(q ? { ...rest, q } : rest, true);
            }}
          />
        </label>
        <label>
          State
          <select
            name="state"
            aria-label="State"
            value={filters.state ?? 'all'}
            onChange={(e) => {
              const { state: _s, ...rest } = filters;
              const v = e.currentTarget.value as FleetFilters['state'];
              onChange(v && v !== 'all' ? { ...rest, state: v } : rest);
            }}
          >
            {FLEET_STATES.map((s) => (
              <option key={s} value={s}>
                {STATE_LABELS[s]}
              </option>
            ))}
          </select>
        </label>
        <label>
          CI
          <select
            name="ci"
            aria-label="CI"
            value={filters.ci ?? ''}
            onChange={(e) => {
              const { ci: _c, ...rest } = filters;
              const v = e.currentTarget.value;
              onChange(v ? { ...rest, ci: v } : rest);
            }}
          >
            <option value="">any</option>
            {platforms.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </label>
        {/* The column headers sort on a wide screen; a phone's stacked rows have none. */}
        <label class="phone-only">
          Sort by
          <select
            name="sort"
            aria-label="Sort by"
            value={`${sort}:${dir}`}
            onChange={(e) => {
              const [k, d] = e.currentTarget.value.split(':') as [SortKey, SortDir];
              onChange({ ...filters, sort: k, dir: d });
            }}
          >
            {columns.flatMap((c) =>
              (['asc', 'desc'] as const).map((d) => (
                <option key={`${c.key}:${d}`} value={`${c.key}:${d}`}>
                  {c.label} {d === 'asc' ? '↑' : '↓'}
                </option>
              )),
            )}
          </select>
        </label>
        {filtered && (
          <button type="button" onClick={() => onChange({ ...(filters.sort ? { sort: filters.sort } : {}), ...(filters.dir ? { dir: filters.dir } : {}) })}>
            Clear
          </button>
        )}
      </form>
      <p class="muted small fleet-count" role="status" aria-live="polite">
        {shown.length === runs.length
          ? `${runs.length} job${runs.length === 1 ? '' : 's'}, ${live} live`
          : `${shown.length} of ${runs.length} jobs shown`}
      </p>
      {runs.length === 0 ? (
        <Empty>
          <p>
            <strong>No watched jobs{filters.state === 'live' ? ' running' : ''} yet.</strong>
          </p>
          <p>
            Start <code>sentry watch --discover ci</code> on a runner host (as root, or resources-only without): it finds
            every CI job (GitHub Actions, GitLab, Buildkite, Jenkins) as it starts, and each appears here, live.
          </p>
        </Empty>
      ) : shown.length === 0 ? (
        <Empty>
          <p>
            <strong>No watched jobs match these filters.</strong>
          </p>
        </Empty>
      ) : (
        <div class="table-scroll">
          <table class="list fleet">
            <caption class="sr-only">
              Watched jobs, sorted by {columns.find((c) => c.key === sort)?.label ?? sort} ({dir === 'asc' ? 'ascending' : 'descending'})
            </caption>
            <thead>
              <tr>
                {columns.map((c) => (
                  <SortHeader key={c.key} col={c} sort={sort} dir={dir} onSort={onSort} />
                ))}
              </tr>
            </thead>
            <tbody>
              {shown.map((r) => {
                const row = r.job_key ? index.get(r.job_key) : undefined;
                const over = overBaseline(vsBaseline(r, row, now), factor);
                const l = r.labels;
                return (
                  <tr key={r.id} data-run={r.id} class={over ? 'over' : undefined}>
                    <td data-label="Job" class="job">
                      <a href={`#/runs/${r.id}`} aria-label={`${jobName(r)} (run ${r.id})`}>
                        {jobName(r)}
                      </a>{' '}
                      <span class="muted small">#{r.id}</span>
                      {r.shadow && (
                        <>
                          {' '}
                          <ShadowBadge what="shadow mode" />
                        </>
                      )}
                      {r.runaway && <span class="badge runaway">runaway</span>}
                    </td>
                    <td data-label="Repository">{l.repository || '–'}</td>
                    <td data-label="Workflow">{l.workflow || '–'}</td>
                    <td data-label="CI">{l.ci || '–'}</td>
                    <td data-label="Runner">{l.runner || '–'}</td>
                    <td data-label="State">
                      <StatusBadge status={r.status} />
                    </td>
                    <td data-label="Started">
                      {duration(runDuration(r.started_at, r.ended_at, now))}
                      <br />
                      <span class="small muted" title={time(r.started_at)}>
                        {shortTime(r.started_at, now)}
                      </span>
                    </td>
                    <td data-label="CPU-s" class="num">
                      {num(r.cpu_seconds)}
                    </td>
                    <td data-label="Memory" class="num">
                      {r.mem_gb_seconds == null ? '–' : `${num(r.mem_gb_seconds, 2)} GB-s`}
                      <br />
                      <span class="small muted">peak {bytes(r.mem_peak_bytes)}</span>
                    </td>
                    <td data-label="Idle" class="num">
                      {r.idle_fraction == null ? '–' : pct(r.idle_fraction * 100)}
                    </td>
                    {priced && (
                      <td data-label="Cost" class="num">
                        {r.cost == null ? '–' : money(r.cost)}
                      </td>
                    )}
                    <td data-label="vs baseline">
                      <BaselineCell run={r} row={row} factor={factor} minRuns={baselines?.min_runs ?? 5} now={now} />
                    </td>
                    <td data-label="Incidents">
                      {r.incidents > 0 ? <a href={`#/incidents?run=${r.id}`}>{r.incidents}</a> : '0'}
                      {r.incidents > 0 && r.shadow && (
                        <>
                          {' '}
                          <ShadowBadge />
                        </>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}

const PAGE = 200;

/**
 * The newest page of watched jobs, and (when there are more) every live one however old: a
 * long job must not drop off the fleet behind newer short ones. `live`: the live ones only.
 */
async function loadFleet(api: Api, state: FleetFilters['state'], signal: AbortSignal): Promise<RunPage> {
  const live = () =>
    Promise.all([
      api.runs({ kind: 'watch', status: 'running', limit: 500 }, signal),
      api.runs({ kind: 'watch', status: 'paused', limit: 500 }, signal),
    ]);
  if (state === 'live') {
    const [running, paused] = await live();
    return { items: [...running.items, ...paused.items], next_before: null };
  }
  const newest = await api.runs({ kind: 'watch', limit: PAGE }, signal);
  if (newest.next_before == null) return newest;
  const byId = new Map(newest.items.map((r) => [r.id, r]));
  for (const p of await live()) for (const r of p.items) byId.set(r.id, r);
  return { items: [...byId.values()], next_before: newest.next_before };
}

/** Refresh delays: a start, end or change of state soon; samples (cost figures move) at most every few seconds. */
const SOON_MS = 300;
const SAMPLE_MS = 3000;
/** A fallback while jobs are live, should the stream say nothing (the cost figures still move). */
const POLL_MS = 10_000;

export function FleetPage(filters: FleetFilters) {
  const { api, report } = useSession();
  const epoch = useLiveEpoch();
  const now = useNow();
  const [older, setOlder] = useState<{ runs: RunRow[]; next: number | null; busy: boolean }>({
    runs: [],
    next: null,
    busy: false,
  });
  const [page, reload] = useLoad(
    async (signal) => {
      const p = await loadFleet(api, filters.state, signal);
      setOlder((o) => ({ ...o, next: o.runs.length ? o.next : (p.next_before ?? null) }));
      return p;
    },
    [filters.state === 'live', epoch],
  );
  const [baseTick, setBaseTick] = useState(0);
  const [baselines] = useLoad((signal) => api.baselines({}, signal), [epoch, baseTick]);

  const timer = useRef<{ id: number; at: number }>({ id: 0, at: 0 });
  const schedule = (ms: number) => {
    const due = Date.now() + ms;
    if (timer.current.id && timer.current.at <= due) return;
    window.clearTimeout(timer.current.id);
    timer.current = {
      at: due,
      id: window.setTimeout(() => {
        timer.current = { id: 0, at: 0 };
        reload();
      }, ms),
    };
  };
  useEffect(() => () => window.clearTimeout(timer.current.id), []);

  // The jobs of the first page (live and newest): the ones whose events call for a refresh.
  const shownIds = new Set(page.data?.items.map((r) => r.id));
  useLiveEvents((e) => {
    switch (e.type) {
      case 'run_started':
        if (e.data.kind === 'watch') schedule(SOON_MS);
        return;
      case 'run_ended':
        if (shownIds.has(e.run_id)) {
          schedule(SOON_MS);
          // An ended job may have grown its key's history.
          setBaseTick((n) => n + 1);
        }
        return;
      case 'status':
      case 'incident':
        if (shownIds.has(e.run_id)) schedule(SOON_MS);
        return;
      case 'sample':
        if (shownIds.has(e.run_id)) schedule(SAMPLE_MS);
        return;
    }
  });
  const anyLive = !!page.data?.items.some(isLive);
  useEffect(() => {
    if (!anyLive) return undefined;
    const t = window.setInterval(() => schedule(0), POLL_MS);
    return () => window.clearInterval(t);
  }, [anyLive]);

  const loadOlder = async () => {
    if (older.next === null) return;
    setOlder((o) => ({ ...o, busy: true }));
    try {
      const p = await api.runs({ kind: 'watch', limit: PAGE, before: older.next });
      setOlder((o) => ({ runs: [...o.runs, ...p.items], next: p.next_before ?? null, busy: false }));
    } catch (e) {
      report(e);
      setOlder((o) => ({ ...o, busy: false }));
    }
  };

  const onChange = (f: FleetFilters, typing?: boolean) => {
    if (typing) replaceRoute({ page: 'fleet', ...f });
    else window.location.hash = href({ page: 'fleet', ...f });
  };

  const runs = page.data ? [...page.data.items, ...older.runs.filter((r) => !shownIds.has(r.id))] : [];
  return (
    <section aria-labelledby="fleet-h" class="fleet-page">
      <div class="page-head">
        <h1 id="fleet-h">Fleet</h1>
        <span class="muted small">CI jobs followed by sentry watch on this host</span>
      </div>
      {page.status === 'error' && <ErrorNotice error={page.error} onRetry={reload} />}
      {baselines.status === 'error' && !baselines.data && (
        <p class="muted small">Baselines are unavailable ({baselines.error.message}); “vs baseline” stays empty.</p>
      )}
      {page.status === 'loading' && !page.data && <Loading what="watched jobs" />}
      {page.data && <FleetView runs={runs} baselines={baselines.data} filters={filters} now={now} onChange={onChange} />}
      {filters.state !== 'live' && older.next !== null && page.data && (
        <MoreButton onClick={() => void loadOlder()} busy={older.busy} />
      )}
    </section>
  );
}

import { useRef, useState } from 'preact/hooks';
import type { RunRow, RunStatus } from '../api/types';
import { Empty, ErrorNotice, Loading, MoreButton, ShadowBadge, StatusBadge } from '../components/common';
import { asApiError, useSession } from '../context';
import { command, duration, runDuration, time } from '../format';
import { useLiveEpoch, useLiveEvents, useNow } from '../live';
import { useLoad } from '../load';

const statuses = ['running', 'paused', 'exited', 'stopped', 'failed', 'lost'] as const;
// Fails the type-check when the API gains a status this list lacks.
const STATUSES: [Exclude<RunStatus, (typeof statuses)[number]>] extends [never] ? typeof statuses : never = statuses;

export function RunsTable({ runs, now }: { runs: RunRow[]; now: number }) {
  return (
    <table class="list runs">
      <caption class="sr-only">Runs, newest first</caption>
      <thead>
        <tr>
          <th scope="col">Run</th>
          <th scope="col">Command</th>
          <th scope="col">Status</th>
          <th scope="col">Mode</th>
          <th scope="col">Started</th>
          <th scope="col">Duration</th>
          <th scope="col">Incidents</th>
        </tr>
      </thead>
      <tbody>
        {runs.map((r) => (
          <tr key={r.id} data-run={r.id}>
            <td data-label="Run">
              <a href={`#/runs/${r.id}`}>#{r.id}</a>
            </td>
            <td data-label="Command" class="command">
              <a href={`#/runs/${r.id}`} aria-label={`Run ${r.id}: ${command(r.command)}`}>
                <code>{command(r.command)}</code>
              </a>
            </td>
            <td data-label="Status">
              <StatusBadge status={r.status} />
              {r.runaway && <span class="badge runaway">runaway</span>}
              {r.shadow && <ShadowBadge what="shadow mode" />}
            </td>
            <td data-label="Mode">{r.mode ?? '–'}</td>
            <td data-label="Started">{time(r.started_at)}</td>
            <td data-label="Duration">{duration(runDuration(r.started_at, r.ended_at, now))}</td>
            <td data-label="Incidents">
              {r.incidents > 0 ? <a href={`#/incidents?run=${r.id}`}>{r.incidents}</a> : '0'}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function RunsPage() {
  const { api, report } = useSession();
  const [status, setStatus] = useState<RunStatus | ''>('');
  const epoch = useLiveEpoch();
  const now = useNow();
  const [older, setOlder] = useState<{ runs: RunRow[]; next: number | null; busy: boolean }>({
    runs: [],
    next: null,
    busy: false,
  });
  const [page, reload] = useLoad(
    async (signal) => {
      const p = await api.runs(status ? { status } : {}, signal);
      setOlder({ runs: [], next: p.next_before ?? null, busy: false });
      return p;
    },
    [status, epoch],
  );
  const pending = useRef(0);
  useLiveEvents((e) => {
    if (e.type === 'sample' || e.type === 'decision') return;
    // Starts, ends, incidents and state changes: refresh the first page (at most ~3 times a second).
    if (pending.current) return;
    pending.current = window.setTimeout(() => {
      pending.current = 0;
      reload();
    }, 300);
  });
  const loadOlder = async () => {
    if (older.next === null) return;
    setOlder((o) => ({ ...o, busy: true }));
    try {
      const p = await api.runs({ ...(status ? { status } : {}), before: older.next });
      setOlder((o) => ({ runs: [...o.runs, ...p.items], next: p.next_before ?? null, busy: false }));
    } catch (e) {
      report(e);
      setOlder((o) => ({ ...o, busy: false }));
    }
  };
  const runs = page.data ? [...page.data.items, ...older.runs] : [];
  return (
    <section aria-labelledby="runs-h">
      <div class="page-head">
        <h1 id="runs-h">Runs</h1>
        <label class="filter">
          Status
          <select value={status} onChange={(e) => setStatus(e.currentTarget.value as RunStatus | '')}>
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
      </div>
      {page.status === 'error' && <ErrorNotice error={asApiError(page.error)} onRetry={reload} />}
      {page.status === 'loading' && !page.data && <Loading what="runs" />}
      {page.data && runs.length === 0 && (
        <Empty>
          <p>
            <strong>No runs{status ? ` with status ${status}` : ''} yet.</strong>
          </p>
          <p>
            Supervise a command with <code>sentry run -- your-command</code>; it appears here at once, live.
          </p>
        </Empty>
      )}
      {runs.length > 0 && <RunsTable runs={runs} now={now} />}
      {older.next !== null && <MoreButton onClick={() => void loadOlder()} busy={older.busy} />}
    </section>
  );
}

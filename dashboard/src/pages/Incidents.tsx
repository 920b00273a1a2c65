import { useEffect, useState } from 'preact/hooks';
import type { Action, FindingKind, IncidentRow, IncidentsQuery } from '../api/types';
import { ACTIONS, FINDING_KINDS, KIND_LABELS } from '../api/types';
import { Empty, ErrorNotice, Loading, MoreButton } from '../components/common';
import { IncidentCard } from '../components/Evidence';
import { useSession } from '../context';
import { useLiveEvents } from '../live';
import { useLoad } from '../load';
import { href } from '../router';

interface Filters {
  run?: number;
  kind?: string;
  action?: string;
}

function query(f: Filters): IncidentsQuery {
  const q: IncidentsQuery = {};
  if (f.run !== undefined) q.run = f.run;
  if (f.kind && (FINDING_KINDS as readonly string[]).includes(f.kind)) q.kind = f.kind as FindingKind;
  if (f.action && (ACTIONS as readonly string[]).includes(f.action)) q.action = f.action as Action;
  return q;
}

export function IncidentsPage(filters: Filters) {
  const { api, report } = useSession();
  const [older, setOlder] = useState<{ items: IncidentRow[]; next: number | null; busy: boolean }>({
    items: [],
    next: null,
    busy: false,
  });
  // What is typed in the Run field, kept across re-renders (a live incident reloads the page)
  // until Apply; it follows the address when that changes.
  const [runText, setRunText] = useState(filters.run !== undefined ? String(filters.run) : '');
  useEffect(() => setRunText(filters.run !== undefined ? String(filters.run) : ''), [filters.run]);
  const q = query(filters);
  const [page, reload] = useLoad(
    async (signal) => {
      const p = await api.incidents(q, signal);
      setOlder({ items: [], next: p.next_before ?? null, busy: false });
      return p;
    },
    [filters.run, filters.kind, filters.action],
  );
  useLiveEvents((e) => {
    if (e.type === 'incident') reload();
  });
  const set = (change: Filters) => {
    window.location.hash = href({ page: 'incidents', ...filters, ...change });
  };
  const loadOlder = async () => {
    if (older.next === null) return;
    setOlder((o) => ({ ...o, busy: true }));
    try {
      const p = await api.incidents({ ...q, before: older.next });
      setOlder((o) => ({ items: [...o.items, ...p.items], next: p.next_before ?? null, busy: false }));
    } catch (e) {
      report(e);
      setOlder((o) => ({ ...o, busy: false }));
    }
  };
  const items = page.data ? [...page.data.items, ...older.items] : [];
  const filtered = filters.run !== undefined || !!filters.kind || !!filters.action;
  return (
    <section aria-labelledby="inc-h">
      <div class="page-head">
        <h1 id="inc-h">Incidents</h1>
      </div>
      <form
        class="filters"
        aria-label="Filter incidents"
        onSubmit={(e) => {
          e.preventDefault();
          const data = new FormData(e.currentTarget);
          const run = String(data.get('run') ?? '').trim();
          const change: Filters = {};
          if (/^\d+$/.test(run) && Number(run) > 0) change.run = Number(run);
          const kind = String(data.get('kind') ?? '');
          if (kind) change.kind = kind;
          const action = String(data.get('action') ?? '');
          if (action) change.action = action;
          window.location.hash = href({ page: 'incidents', ...change });
        }}
      >
        <label>
          Run
          <input
            name="run"
            type="number"
            min="1"
            inputMode="numeric"
            placeholder="any"
            value={runText}
            onInput={(e) => setRunText(e.currentTarget.value)}
          />
        </label>
        <label>
          Kind
          <select name="kind" value={filters.kind ?? ''} onChange={(e) => set({ kind: e.currentTarget.value })}>
            <option value="">any</option>
            {FINDING_KINDS.map((k) => (
              <option key={k} value={k}>
                {KIND_LABELS[k]}
              </option>
            ))}
          </select>
        </label>
        <label>
          Action
          <select name="action" value={filters.action ?? ''} onChange={(e) => set({ action: e.currentTarget.value })}>
            <option value="">any</option>
            {ACTIONS.map((a) => (
              <option key={a} value={a}>
                {a}
              </option>
            ))}
          </select>
        </label>
        <button type="submit">Apply</button>
        {filtered && (
          <button type="button" onClick={() => (window.location.hash = '#/incidents')}>
            Clear
          </button>
        )}
      </form>
      {page.status === 'error' && <ErrorNotice error={page.error} onRetry={reload} />}
      {page.status === 'loading' && !page.data && <Loading what="incidents" />}
      {page.data && items.length === 0 && (
        <Empty>
          <p>
            <strong>No incidents{filtered ? ' match these filters' : ' yet'}.</strong>
          </p>
          <p>An incident is recorded when sentry alerts on, pauses, kills or restarts a runaway.</p>
        </Empty>
      )}
      <div class="cards">
        {items.map((i) => (
          <IncidentCard key={i.id} incident={i} showRun />
        ))}
      </div>
      {older.next !== null && <MoreButton onClick={() => void loadOlder()} busy={older.busy} />}
    </section>
  );
}

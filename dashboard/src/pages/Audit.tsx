import { useState } from 'preact/hooks';
import type { AuditRow } from '../api/types';
import { Empty, ErrorNotice, Loading, MoreButton } from '../components/common';
import { useSession } from '../context';
import { time } from '../format';
import { useLiveEvents } from '../live';
import { useLoad } from '../load';

export function AuditTable({ rows }: { rows: AuditRow[] }) {
  return (
    <table class="list audit">
      <caption class="sr-only">Audit log, newest first</caption>
      <thead>
        <tr>
          <th scope="col">When</th>
          <th scope="col">Who</th>
          <th scope="col">Action</th>
          <th scope="col">Target</th>
          <th scope="col">Result</th>
          <th scope="col">Detail</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((a) => (
          <tr key={a.id}>
            <td data-label="When">{time(a.at)}</td>
            <td data-label="Who">
              {a.actor}
              {a.client ? <span class="muted small"> ({a.client})</span> : null}
            </td>
            <td data-label="Action">
              <strong>{a.action}</strong>
            </td>
            <td data-label="Target">{linkTarget(a.target)}</td>
            <td data-label="Result">{a.result}</td>
            <td data-label="Detail">{a.detail ?? ''}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function linkTarget(target: string) {
  const m = /^run (\d+)$/.exec(target);
  return m ? <a href={`#/runs/${m[1]}`}>{target}</a> : target;
}

export function AuditPage() {
  const { api, report } = useSession();
  const [older, setOlder] = useState<{ rows: AuditRow[]; next: number | null; busy: boolean }>({
    rows: [],
    next: null,
    busy: false,
  });
  const [page, reload] = useLoad(async (signal) => {
    const p = await api.audit({}, signal);
    setOlder({ rows: [], next: p.next_before ?? null, busy: false });
    return p;
  }, []);
  useLiveEvents((e) => {
    if (e.type === 'control' || e.type === 'run_ended') reload();
  });
  const loadOlder = async () => {
    if (older.next === null) return;
    setOlder((o) => ({ ...o, busy: true }));
    try {
      const p = await api.audit({ before: older.next });
      setOlder((o) => ({ rows: [...o.rows, ...p.items], next: p.next_before ?? null, busy: false }));
    } catch (e) {
      report(e);
      setOlder((o) => ({ ...o, busy: false }));
    }
  };
  const rows = page.data ? [...page.data.items, ...older.rows] : [];
  return (
    <section aria-labelledby="audit-h">
      <div class="page-head">
        <h1 id="audit-h">Audit log</h1>
        <button type="button" onClick={reload}>
          Refresh
        </button>
      </div>
      {page.status === 'error' && <ErrorNotice error={page.error} onRetry={reload} />}
      {page.status === 'loading' && !page.data && <Loading what="the audit log" />}
      {page.data && rows.length === 0 && (
        <Empty>
          <p>
            <strong>Nothing audited yet.</strong>
          </p>
          <p>Every kill, pause, resume and restart asked through this dashboard, the API or a signal is recorded here.</p>
        </Empty>
      )}
      {rows.length > 0 && <AuditTable rows={rows} />}
      {older.next !== null && <MoreButton onClick={() => void loadOlder()} busy={older.busy} />}
    </section>
  );
}

import type { EventRow } from '../api/types';
import { KIND_LABELS } from '../api/types';
import { bytes, duration, pct } from '../format';
import { ActionBadge, ShadowBadge, StatusBadge } from './common';

/** One line describing an event of a run's timeline (`shadow`: the run's decisions were not enforced). */
export function describe(e: EventRow, shadow = false): preact.ComponentChildren {
  switch (e.type) {
    case 'run_started':
      return <>Started by {e.data.user} on {e.data.host} (sentry pid {e.data.pid})</>;
    case 'decision': {
      const lead = e.data.findings[0];
      return (
        <>
          Decision <ActionBadge action={e.data.action} shadow={shadow && e.data.action !== 'continue'} /> at confidence {e.data.confidence.toFixed(2)}
          {lead ? ` — ${KIND_LABELS[lead.kind]}: ${lead.summary}` : ''}
        </>
      );
    }
    case 'incident':
      return (
        <>
          Incident: {KIND_LABELS[e.data.kind]}, <ActionBadge action={e.data.action} shadow={e.data.shadow} />
          {e.data.shadow ? (
            <>
              {' '}
              <ShadowBadge /> → nothing was done{e.data.outcome ? ` (${e.data.outcome})` : ''}
            </>
          ) : (
            <> → {e.data.outcome}</>
          )}
        </>
      );
    case 'status':
      return (
        <>
          Now <StatusBadge status={e.data.status} />
        </>
      );
    case 'control':
      return (
        <>
          {e.data.actor} asked to <strong>{e.data.action}</strong>: {e.data.outcome}
        </>
      );
    case 'run_ended':
      return (
        <>
          Ended <StatusBadge status={e.data.status} /> with exit code {e.data.exit_code}
          {e.data.duration_s != null ? ` after ${duration(e.data.duration_s)}` : ''} · CPU peak{' '}
          {pct(e.data.cpu_peak_pct)} · memory peak {bytes(e.data.mem_peak_bytes)}
        </>
      );
    case 'sample':
      return <>Sample: CPU {pct(e.data.cpu_pct)}</>;
  }
}

/** Consecutive decisions that say the same thing (sentry re-records a standing signal once a
 * second) shown as one entry with a count. */
export interface TimelineEntry {
  event: EventRow;
  repeats: number;
  lastAt: number;
}

function sameDecision(a: EventRow, b: EventRow): boolean {
  return (
    a.type === 'decision' &&
    b.type === 'decision' &&
    a.data.action === b.data.action &&
    a.data.findings[0]?.summary === b.data.findings[0]?.summary
  );
}

export function group(events: readonly EventRow[]): TimelineEntry[] {
  const out: TimelineEntry[] = [];
  for (const e of events) {
    const prev = out[out.length - 1];
    if (prev && sameDecision(prev.event, e)) {
      prev.repeats++;
      prev.lastAt = e.at;
    } else {
      out.push({ event: e, repeats: 1, lastAt: e.at });
    }
  }
  return out;
}

export function Timeline({ events, startedAt, shadow }: { events: EventRow[]; startedAt: number; shadow?: boolean }) {
  if (events.length === 0) return <p class="muted">Nothing recorded yet.</p>;
  return (
    <ol class="timeline">
      {group(events).map(({ event: e, repeats, lastAt }) => (
        <li key={e.id} class={`tl-${e.type}`}>
          <time class="muted small">+{duration(Math.max(0, e.at - startedAt))}</time>
          <span>
            {describe(e, shadow)}
            {repeats > 1 && (
              <span class="muted small">
                {' '}
                (×{repeats}, until +{duration(Math.max(0, lastAt - startedAt))})
              </span>
            )}
          </span>
        </li>
      ))}
    </ol>
  );
}

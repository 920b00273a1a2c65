import type { Evidence, IncidentRow } from '../api/types';
import { KIND_LABELS } from '../api/types';
import { duration, time } from '../format';
import { ActionBadge, actionDone, ShadowBadge } from './common';

export function EvidenceView({ evidence }: { evidence: Evidence }) {
  if (evidence.type === 'loop') {
    return (
      <div class="evidence loop">
        <p>
          A block of <strong>{evidence.period}</strong> line{evidence.period === 1 ? '' : 's'} repeated{' '}
          <strong>{evidence.repeats}</strong> times (lines {evidence.first_line}–{evidence.last_line}).
        </p>
        <h4>One occurrence (redacted)</h4>
        <pre class="block" data-testid="loop-example">
          {evidence.example.join('\n')}
        </pre>
        <details>
          <summary>The normalised pattern</summary>
          <pre class="block">{evidence.pattern.join('\n')}</pre>
        </details>
      </div>
    );
  }
  if (evidence.type === 'regression') {
    const what = evidence.metric === 'cpu_s' ? 'CPU time' : 'Wall time';
    return (
      <div class="evidence regression">
        <p>
          {what} <strong>{duration(evidence.value)}</strong> is <strong>{evidence.ratio.toFixed(1)}×</strong> the
          median <strong>{duration(evidence.median)}</strong> of the last {evidence.runs} healthy runs (flagged past{' '}
          {duration(evidence.threshold)}; p90 wall time {duration(evidence.p90_wall_s)}).
        </p>
        <p class="small muted">
          Job key <code>{evidence.job_key}</code>
        </p>
      </div>
    );
  }
  return (
    <div class="evidence resource">
      <p>
        <code>{evidence.metric}</code> was <strong>{round(evidence.value)}</strong> against a threshold of{' '}
        <strong>{round(evidence.threshold)}</strong> over {duration(evidence.window_s)}.
      </p>
    </div>
  );
}

function round(v: number): string {
  return Math.abs(v) >= 100 ? String(Math.round(v)) : String(Math.round(v * 100) / 100);
}

export function IncidentCard({ incident, showRun }: { incident: IncidentRow; showRun?: boolean }) {
  return (
    <article
      class={`card incident${incident.shadow ? ' shadow' : ''}`}
      aria-label={`Incident ${incident.id}${incident.shadow ? ' (shadow)' : ''}`}
    >
      <header>
        <h3>
          {KIND_LABELS[incident.kind]} <ActionBadge action={incident.action} shadow={incident.shadow} />
          {incident.shadow && (
            <>
              {' '}
              <ShadowBadge />
            </>
          )}
        </h3>
        <span class="muted small">
          {showRun && (
            <>
              <a href={`#/runs/${incident.run_id}`}>run {incident.run_id}</a> ·{' '}
            </>
          )}
          {time(incident.at)} · after {duration(incident.detected_after_s)} · attempt {incident.attempt} · score{' '}
          {incident.score.toFixed(2)} · confidence {incident.confidence.toFixed(2)}
        </span>
      </header>
      <p>{incident.summary}</p>
      <p class="small">
        <strong>Outcome:</strong>{' '}
        {incident.shadow ? (
          <>
            nothing was done (shadow mode: enforcement would have {actionDone(incident.action)}
            {incident.action === 'continue' ? '' : ' it'})
            {incident.outcome ? ` · ${incident.outcome}` : ''}
          </>
        ) : (
          incident.outcome || '–'
        )}
      </p>
      <EvidenceView evidence={incident.evidence} />
      {incident.reasons.length > 0 && (
        <details>
          <summary>Reasons ({incident.reasons.length})</summary>
          <ul>
            {incident.reasons.map((r, i) => (
              <li key={i}>{r}</li>
            ))}
          </ul>
        </details>
      )}
    </article>
  );
}

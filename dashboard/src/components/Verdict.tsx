import type { DecisionEvent } from '../api/types';
import { KIND_LABELS } from '../api/types';
import { ActionBadge, actionDone, ShadowBadge } from './common';

const WORDS: Record<string, string> = {
  continue: 'Healthy so far: sentry lets it run',
  alert: 'Suspicious: sentry alerts but leaves it running',
  pause: 'Runaway: sentry paused it',
  kill: 'Runaway: sentry stopped it',
  restart: 'Runaway: sentry restarted it',
};

/** In shadow mode sentry decides as usual but enforces nothing. */
function shadowWords(action: string): string {
  if (action === 'continue') return WORDS.continue ?? action;
  const lead = action === 'alert' ? 'Suspicious' : 'Runaway';
  return `${lead}: sentry would have ${actionDone(action)} it (shadow mode: nothing was done)`;
}

export function Verdict({
  decision,
  live,
  status,
  shadow,
}: {
  decision: DecisionEvent | undefined;
  live: boolean;
  status?: string;
  /** The run is in shadow mode: its decisions were not enforced. */
  shadow?: boolean;
}) {
  if (!decision) {
    return (
      <section class="card verdict" aria-labelledby="verdict-h">
        <h2 id="verdict-h">Verdict</h2>
        <p class="muted">
          No decision on record{live ? ' yet' : ''}: sentry stores decisions only when they change or show a signal, so a
          quiet, healthy run has none.
        </p>
      </section>
    );
  }
  return (
    <section class={`card verdict verdict-${decision.action}`} aria-labelledby="verdict-h">
      <h2 id="verdict-h">
        Verdict <ActionBadge action={decision.action} shadow={shadow && decision.action !== 'continue'} />
        {shadow && <ShadowBadge what="shadow mode" />}
      </h2>
      <p>
        <strong>{shadow ? shadowWords(decision.action) : (WORDS[decision.action] ?? decision.action)}</strong> (confidence {Math.round(decision.confidence * 100)}%,
        at +{decision.t_s.toFixed(1)} s, attempt {decision.attempt})
      </p>
      {!live && status && <p class="muted small">That was its last decision; the run is now {status}.</p>}
      {decision.reasons.length > 0 && (
        <ul class="reasons">
          {decision.reasons.map((r, i) => (
            <li key={i}>{r}</li>
          ))}
        </ul>
      )}
      {decision.findings.length > 0 && (
        <table class="findings">
          <caption class="sr-only">Findings behind the verdict</caption>
          <thead>
            <tr>
              <th scope="col">Finding</th>
              <th scope="col">Score</th>
              <th scope="col">Summary</th>
            </tr>
          </thead>
          <tbody>
            {decision.findings.map((f, i) => (
              <tr key={i}>
                <td>{KIND_LABELS[f.kind]}</td>
                <td>{f.score.toFixed(2)}</td>
                <td>{f.summary}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

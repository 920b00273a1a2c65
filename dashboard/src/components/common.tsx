import type { ComponentChildren } from 'preact';
import type { ApiError } from '../api/client';

export function StatusBadge({ status }: { status: string }) {
  return <span class={`badge status-${status}`}>{status}</span>;
}

const DONE: Record<string, string> = {
  continue: 'let it run',
  alert: 'alerted',
  pause: 'paused',
  kill: 'killed',
  restart: 'restarted',
};

/** An action in the past tense ("killed"), for "sentry killed it" or "would have killed it". */
export function actionDone(action: string): string {
  return DONE[action] ?? action;
}

/**
 * An action sentry took; in shadow mode (`shadow`) one it only would have taken, worded so
 * ("would have killed") and styled apart.
 */
export function ActionBadge({ action, shadow }: { action: string; shadow?: boolean }) {
  if (!shadow) return <span class={`badge action-${action}`}>{action}</span>;
  return (
    <span class={`badge action-${action} would`} title="Shadow mode: what enforcement would have done; nothing was done">
      would have {actionDone(action)}
    </span>
  );
}

/** Marks a run in shadow mode, or an incident taken in it: nothing was enforced. */
export function ShadowBadge({ what = 'shadow' }: { what?: string }) {
  return (
    <span class="badge shadow" title="Shadow mode: sentry decided but did nothing; actions shown are what it would have done">
      {what}
    </span>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted loading" role="status" aria-live="polite">
      <span class="spinner" aria-hidden="true" /> Loading {what}…
    </p>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <div class="empty">{children}</div>;
}

/** What went wrong, in words, and what to do about it. */
export function explain(error: ApiError): { title: string; detail: string } {
  switch (error.kind) {
    case 'unreachable':
      return {
        title: 'The dashboard server is not answering',
        detail: `${error.message} Start it again with \`sentry dashboard\`; this page reconnects by itself.`,
      };
    case 'unauthorized':
      return { title: 'The API key was refused', detail: error.message };
    case 'rate-limited':
      return {
        title: 'Too many failed attempts',
        detail: `${error.message}${error.retryAfterS ? ` (retry in ${error.retryAfterS} s)` : ''}`,
      };
    case 'not-found':
      return { title: 'Not found', detail: error.message };
    default:
      return { title: `The server answered ${error.status || 'with an error'}`, detail: error.message };
  }
}

export function ErrorNotice({ error, onRetry }: { error: ApiError; onRetry?: () => void }) {
  const { title, detail } = explain(error);
  return (
    <div class="notice error" role="alert">
      <strong>{title}</strong>
      <p>{detail}</p>
      {onRetry && (
        <button type="button" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}

export function MoreButton({ onClick, busy }: { onClick: () => void; busy: boolean }) {
  return (
    <div class="more">
      <button type="button" onClick={onClick} disabled={busy}>
        {busy ? 'Loading…' : 'Load older'}
      </button>
    </div>
  );
}

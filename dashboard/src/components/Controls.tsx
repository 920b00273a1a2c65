import { useState } from 'preact/hooks';
import type { ApiError } from '../api/client';
import type { ControlAction, ControlResponse, RunRow } from '../api/types';
import { asApiError, useSession } from '../context';
import { command } from '../format';
import { explain } from './common';
import { ConfirmDialog } from './ConfirmDialog';

const ACTIONS: { action: ControlAction; label: string; what: string; danger: boolean }[] = [
  { action: 'pause', label: 'Pause', what: 'freezes the whole process tree until you resume it', danger: false },
  { action: 'resume', label: 'Resume', what: 'thaws the frozen process tree', danger: false },
  { action: 'restart', label: 'Restart', what: 'stops the whole process tree and starts the command again', danger: true },
  { action: 'kill', label: 'Kill', what: 'stops the whole process tree for good (sentry run exits 124)', danger: true },
];

/** Whether `action` makes sense for a run in `status`. */
export function allowed(action: ControlAction, status: string): boolean {
  switch (action) {
    case 'pause':
      return status === 'running';
    case 'resume':
      return status === 'paused';
    default:
      return status === 'running' || status === 'paused';
  }
}

type Outcome = { ok: true; reply: ControlResponse } | { ok: false; error: ApiError };

export function Controls({ run, onDone }: { run: RunRow; onDone: () => void }) {
  const { api, report } = useSession();
  const [asking, setAsking] = useState<ControlAction | null>(null);
  const [busy, setBusy] = useState<ControlAction | null>(null);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const live = run.status === 'running' || run.status === 'paused';
  const pending = ACTIONS.find((a) => a.action === asking);

  const act = async (action: ControlAction) => {
    setAsking(null);
    setBusy(action);
    setOutcome(null);
    try {
      const reply = await api.control(action, run.id);
      setOutcome({ ok: true, reply });
    } catch (e) {
      const error = asApiError(e);
      report(error);
      setOutcome({ ok: false, error });
    } finally {
      setBusy(null);
      onDone();
    }
  };

  return (
    <section class="controls" aria-label="Control this run">
      <div class="button-row">
        {ACTIONS.map(({ action, label, danger }) => (
          <button
            type="button"
            key={action}
            class={danger ? 'danger' : undefined}
            disabled={!allowed(action, run.status) || busy !== null}
            onClick={() => setAsking(action)}
          >
            {busy === action ? `${label}…` : label}
          </button>
        ))}
      </div>
      {!live && <p class="muted small">Run {run.id} is {run.status}: only a running or paused run can be controlled.</p>}
      <div class="outcome" role="status" aria-live="polite">
        {outcome?.ok === true && (
          <p class={outcome.reply.ok ? 'ok' : 'warn'}>
            <strong>{outcome.reply.action}:</strong> {outcome.reply.outcome} (now {outcome.reply.status})
          </p>
        )}
        {outcome?.ok === false && (
          <p class="warn">
            <strong>{explain(outcome.error).title}:</strong> {outcome.error.message}
          </p>
        )}
      </div>
      {pending && (
        <ConfirmDialog
          title={`${pending.label} run ${run.id}?`}
          confirmLabel={`${pending.label} run ${run.id}`}
          danger={pending.danger}
          onConfirm={() => void act(pending.action)}
          onCancel={() => setAsking(null)}
        >
          <p>
            This {pending.what}: <code>{command(run.command)}</code>
          </p>
        </ConfirmDialog>
      )}
    </section>
  );
}

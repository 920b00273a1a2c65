import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/preact';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Api } from '../src/api/client';
import type { EventRow } from '../src/api/types';
import { App } from '../src/App';
import { Controls } from '../src/components/Controls';
import { EvidenceView } from '../src/components/Evidence';
import { group, Timeline } from '../src/components/Timeline';
import { Verdict } from '../src/components/Verdict';
import { SessionContext } from '../src/context';
import { AuditTable } from '../src/pages/Audit';
import { latestDecision, mergeEvents, RunSamples } from '../src/pages/Run';
import { RunsTable } from '../src/pages/Runs';
import { audit, decision, incident, json, problem, run } from './fixtures';

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  window.sessionStorage.clear();
  window.history.replaceState(null, '', '/');
});

function withApi(fetcher: typeof fetch, ui: preact.ComponentChild) {
  const report = vi.fn();
  const api = new Api('test-key', fetcher);
  return { report, ...render(<SessionContext.Provider value={{ api, report }}>{ui}</SessionContext.Provider>) };
}

describe('evidence', () => {
  it('shows the repeating block with its period, repeat count and example lines', () => {
    render(<EvidenceView evidence={incident.evidence} />);
    expect(screen.getByText(/repeated/).textContent).toContain('A block of 2 lines repeated 31 times (lines 4–65)');
    expect(screen.getByTestId('loop-example').textContent).toBe('error: connect to 10.0.0.1 refused\nretrying in 1s');
  });

  it('shows a resource finding against its threshold', () => {
    render(<EvidenceView evidence={{ type: 'resource', metric: 'cpu_pct', value: 198.4, threshold: 150, window_s: 30 }} />);
    expect(document.body.textContent).toContain('cpu_pct was 198 against a threshold of 150 over 30 s');
  });
});

describe('runs table', () => {
  it('lists command, status, mode, duration and incidents, linking to the run', () => {
    render(<RunsTable runs={[run, { ...run, id: 6, status: 'stopped', ended_at: run.started_at + 2.5, runaway: false, incidents: 0 }]} now={run.started_at + 75} />);
    const rows = document.querySelectorAll('tbody tr');
    expect(rows).toHaveLength(2);
    expect(rows[0]?.textContent).toContain("sh -c 'while true; do echo retrying; done'");
    expect(rows[0]?.textContent).toContain('running');
    expect(rows[0]?.textContent).toContain('1 min 15 s');
    expect(rows[1]?.textContent).toContain('2.5 s');
    expect(rows[1]?.textContent).toContain('stopped');
    expect(screen.getByRole('link', { name: '#7' }).getAttribute('href')).toBe('#/runs/7');
  });
});

describe('verdict and timeline', () => {
  it('says what sentry concluded and why', () => {
    const d = decision(11, run.started_at + 2);
    render(<Verdict decision={latestDecision([decision(10, run.started_at + 1, 'continue'), d])} live />);
    expect(document.body.textContent).toContain('Runaway: sentry paused it');
    expect(document.body.textContent).toContain('high confidence 0.99 from output loop');
    expect(document.body.textContent).toContain('period 2, 31 repeats');
  });

  it('has an empty state that explains itself', () => {
    render(<Verdict decision={undefined} live />);
    expect(document.body.textContent).toContain('No decision on record yet');
  });

  it('folds repeated identical decisions into one entry with a count', () => {
    const events: EventRow[] = [
      decision(1, run.started_at + 1, 'continue'),
      decision(2, run.started_at + 2),
      decision(3, run.started_at + 3),
      decision(4, run.started_at + 4),
      { id: 5, run_id: 7, at: run.started_at + 5, type: 'control', data: { actor: 'api', action: 'kill', outcome: 'stopped', status: 'stopped' } },
    ];
    expect(group(events).map((g) => g.repeats)).toEqual([1, 3, 1]);
    render(<Timeline events={events} startedAt={run.started_at} />);
    expect(document.querySelectorAll('ol.timeline li')).toHaveLength(3);
    expect(document.body.textContent).toContain('(×3, until +4.0 s)');
    expect(document.body.textContent).toContain('api asked to kill: stopped');
  });

  it('merges live events after loaded ones without repeats, and samples by id', () => {
    const a = decision(1, 1);
    const b = decision(2, 2);
    expect(mergeEvents([a, b], [a, b, decision(3, 3)]).map((e) => e.id)).toEqual([1, 2, 3]);
    const s = new RunSamples();
    const row = { id: 1, run_id: 7, t_s: 1, cpu_pct: 50, mem_bytes: 10, pids: 1, io_read_bytes: null, io_write_bytes: null, lines_per_s: 3, writes: 4, cpu_pressure: null };
    expect(s.add([row, { ...row, id: 2, t_s: 2 }])).toBe(true);
    expect(s.add([{ ...row, id: 2 }])).toBe(false);
    expect(s.xs).toEqual([1, 2]);
    expect(s.version).toBe(1);
  });
});

describe('audit log', () => {
  it('shows who did what to which run', () => {
    render(<AuditTable rows={[audit]} />);
    const text = document.querySelector('tbody tr')?.textContent ?? '';
    expect(text).toContain('api');
    expect(text).toContain('kill');
    expect(screen.getByRole('link', { name: 'run 7' }).getAttribute('href')).toBe('#/runs/7');
  });
});

describe('control buttons', () => {
  it('ask for confirmation, post the run id and show the outcome the API returns', async () => {
    const fetcher = vi.fn(async (_url: RequestInfo | URL, _init?: RequestInit) =>
      json({ run_id: 7, action: 'kill', ok: true, outcome: 'stopped the whole tree', status: 'stopped' }),
    );
    withApi(fetcher as unknown as typeof fetch, <Controls run={run} onDone={() => {}} />);
    expect(screen.getByRole('button', { name: 'Resume' }).hasAttribute('disabled')).toBe(true);
    fireEvent.click(screen.getByRole('button', { name: 'Kill' }));
    // Nothing is sent before confirming; focus starts on Cancel.
    expect(fetcher).not.toHaveBeenCalled();
    const cancel = screen.getByRole('button', { name: 'Cancel' });
    expect(document.activeElement).toBe(cancel);
    fireEvent.click(cancel);
    expect(screen.queryByRole('button', { name: 'Kill run 7' })).toBeNull();
    expect(fetcher).not.toHaveBeenCalled();

    fireEvent.click(screen.getByRole('button', { name: 'Kill' }));
    fireEvent.click(screen.getByRole('button', { name: 'Kill run 7' }));
    await waitFor(() => expect(document.body.textContent).toContain('stopped the whole tree'));
    expect(fetcher).toHaveBeenCalledTimes(1);
    const [url, init] = fetcher.mock.calls[0] ?? [];
    expect(url).toBe('/process/kill');
    expect(init?.method).toBe('POST');
    expect(init?.body).toBe(JSON.stringify({ run_id: 7 }));
    expect((init?.headers as Record<string, string>).Authorization).toBe('Bearer test-key');
  });

  it('show the problem detail when the API refuses', async () => {
    const fetcher = vi.fn(async () => problem(409, 'run 7 is not live (its status is stopped)'));
    withApi(fetcher as unknown as typeof fetch, <Controls run={run} onDone={() => {}} />);
    fireEvent.click(screen.getByRole('button', { name: 'Pause' }));
    fireEvent.click(screen.getByRole('button', { name: 'Pause run 7' }));
    await waitFor(() => expect(document.body.textContent).toContain('run 7 is not live (its status is stopped)'));
  });

  it('are disabled for an ended run, with the reason', () => {
    withApi(vi.fn() as unknown as typeof fetch, <Controls run={{ ...run, status: 'exited' }} onDone={() => {}} />);
    for (const name of ['Kill', 'Pause', 'Resume', 'Restart']) {
      expect(screen.getByRole('button', { name }).hasAttribute('disabled')).toBe(true);
    }
    expect(document.body.textContent).toContain('only a running or paused run can be controlled');
  });
});

describe('the whole page', () => {
  it('asks for the key when it has none (never a blank page)', () => {
    render(<App />);
    expect(screen.getByLabelText('API key or dashboard URL')).toBeTruthy();
    expect(document.body.textContent).toContain('#token=');
  });

  it('shows that a wrong key was refused, with the server’s words', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => problem(401, 'the API key is wrong; use the key from the URL')));
    window.history.replaceState(null, '', '/#token=wrong-wrong-wrong-wrong');
    render(<App />);
    await waitFor(() => expect(screen.getByRole('alert').textContent).toContain('The API key was refused'));
    expect(screen.getByRole('alert').textContent).toContain('the API key is wrong');
    expect(window.sessionStorage.getItem('sentry.apiKey')).toBeNull();
  });

  it('says the server is unreachable when fetch fails', async () => {
    vi.stubGlobal('fetch', vi.fn(async () => Promise.reject(new TypeError('Failed to fetch'))));
    window.history.replaceState(null, '', '/#token=right-right-right-right');
    render(<App />);
    await waitFor(() => expect(document.body.textContent).toContain('The dashboard server is not answering'));
    expect(screen.getByRole('button', { name: 'Try again' })).toBeTruthy();
  });

  it('shows the runs with an empty state when there are none', async () => {
    vi.stubGlobal(
      'fetch',
      vi.fn(async (url: string) =>
        url.startsWith('/stream') ? new Response(new ReadableStream(), { headers: { 'content-type': 'text/event-stream' } }) : json({ items: [], next_before: null }),
      ),
    );
    window.history.replaceState(null, '', '/#token=right-right-right-right');
    render(<App />);
    await waitFor(() => expect(document.body.textContent).toContain('No runs yet.'));
    expect(screen.getByRole('link', { name: 'Runs' }).getAttribute('aria-current')).toBe('page');
  });
});

describe('chart time axis', () => {
  it('labels ticks as precisely as their spacing needs', async () => {
    const { timeTicks } = await import('../src/components/Chart');
    expect(timeTicks([1.5, 2, 2.5, 3])).toEqual(['1.5 s', '2.0 s', '2.5 s', '3.0 s']);
    expect(timeTicks([0, 10, 20])).toEqual(['0 s', '10 s', '20 s']);
    expect(timeTicks([0, 600, 1200, 3600])).toEqual(['0 min', '10 min', '20 min', '1 h']);
  });
});

describe('the incidents filters', () => {
  it('keep a typed run number across a re-render until Apply puts it in the address', async () => {
    vi.stubGlobal(
      'fetch',
      vi.fn(async (url: string) => {
        if (url.startsWith('/stream')) return new Response(new ReadableStream(), { headers: { 'content-type': 'text/event-stream' } });
        return json({ items: [incident], next_before: null });
      }),
    );
    window.sessionStorage.setItem('sentry.apiKey', 'right-right-right-right');
    window.history.replaceState(null, '', '/#/incidents?action=pause');
    render(<App />);
    const runField = (await screen.findByLabelText('Run')) as HTMLInputElement;
    fireEvent.input(runField, { target: { value: '7' } });
    // Another filter changes the address and re-renders the page before Apply.
    fireEvent.change(screen.getByLabelText('Kind'), { target: { value: 'output_loop' } });
    await waitFor(() => expect(window.location.hash).toContain('kind=output_loop'));
    await waitFor(() => expect((screen.getByLabelText('Kind') as HTMLSelectElement).value).toBe('output_loop'));
    await waitFor(() => expect(document.body.textContent).toContain(incident.summary));
    expect((screen.getByLabelText('Run') as HTMLInputElement).value).toBe('7');
    fireEvent.click(screen.getByRole('button', { name: 'Apply' }));
    await waitFor(() => expect(window.location.hash).toMatch(/run=7/));
    expect(window.location.hash).toContain('kind=output_loop');
    expect(window.location.hash).toContain('action=pause');
  });
});

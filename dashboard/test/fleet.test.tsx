import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/preact';
import { useState } from 'preact/hooks';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { EventRow, RunRow } from '../src/api/types';
import { App } from '../src/App';
import { IncidentCard } from '../src/components/Evidence';
import { Timeline } from '../src/components/Timeline';
import { Verdict } from '../src/components/Verdict';
import { baselineIndex, filterRuns, type FleetFilters, overBaseline, sortRuns, vsBaseline } from '../src/fleet';
import { FleetView } from '../src/pages/Fleet';
import { latestDecision } from '../src/pages/Run';
import { RunsTable } from '../src/pages/Runs';
import { href, parseRoute } from '../src/router';
import { baselines, decision, incident, json, run, watched } from './fixtures';

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  window.sessionStorage.clear();
  window.history.replaceState(null, '', '/');
});

const T0 = 1_700_000_000;
const NOW = T0 + 180;

// build: 180 s so far against a 60 s median (3×, past the factor); test: still learning;
// api (gitlab, ended): 50 s against no baseline at all.
const build = watched(12, {}, { cpu_seconds: 12, incidents: 2 });
const test = watched(11, { job: 'test', runner: 'runner-2' }, { started_at: T0 + 100, cpu_seconds: 40, idle_fraction: 0.9 });
const api = watched(
  10,
  { ci: 'gitlab', repository: 'acme/api', workflow: 'push', job: 'lint', runner: 'gl-runner' },
  { started_at: T0 - 100, ended_at: T0 - 50, status: 'exited', cpu_seconds: null, mem_gb_seconds: null },
);
const fleet = [api, test, build];

function rowIds(): number[] {
  return [...document.querySelectorAll('tbody tr')].map((tr) => Number(tr.getAttribute('data-run')));
}

/** The view with its filters kept in state, as the route keeps them on the page. */
function Stateful({ runs, initial = {} }: { runs: RunRow[]; initial?: FleetFilters }) {
  const [filters, setFilters] = useState<FleetFilters>(initial);
  return <FleetView runs={runs} baselines={baselines} filters={filters} now={NOW} onChange={setFilters} />;
}

describe('vs baseline', () => {
  const index = baselineIndex(baselines);

  it('is wall time so far and CPU-seconds over the medians, only for an active baseline', () => {
    const v = vsBaseline(build, index.get(build.job_key ?? ''), NOW);
    expect(v?.wall).toBeCloseTo(3);
    expect(v?.cpu).toBeCloseTo(0.4);
    expect(overBaseline(v, 3)).toBe(true);
    expect(overBaseline(v, 3.5)).toBe(false);
    // An ended run counts to its end, not to now.
    const ended = vsBaseline({ ...build, ended_at: T0 + 30 }, index.get(build.job_key ?? ''), NOW + 1000);
    expect(ended?.wall).toBeCloseTo(0.5);
    // Learning (too few healthy runs) or unknown: no comparison.
    expect(vsBaseline(test, index.get(test.job_key ?? ''), NOW)).toBeNull();
    expect(vsBaseline(api, index.get(api.job_key ?? ''), NOW)).toBeNull();
  });

  it('CPU alone past the factor also counts', () => {
    const v = vsBaseline({ ...build, started_at: NOW - 30, cpu_seconds: 95 }, index.get(build.job_key ?? ''), NOW);
    expect(v?.wall).toBeCloseTo(0.5);
    expect(overBaseline(v, 3)).toBe(true);
  });

  it('is shown as a ratio, highlighted past the factor, and as learning before the baseline is active', () => {
    render(<FleetView runs={fleet} baselines={baselines} filters={{}} now={NOW} onChange={() => {}} />);
    const buildRow = document.querySelector('tr[data-run="12"]');
    expect(buildRow?.classList.contains('over')).toBe(true);
    const vs = buildRow?.querySelector('.vs');
    expect(vs?.classList.contains('over')).toBe(true);
    expect(vs?.textContent).toContain('3.0×');
    expect(vs?.textContent).toContain('CPU 0.4×');
    expect(vs?.getAttribute('title')).toContain('wall time 3.0× the median 1 min 0 s');
    const testRow = document.querySelector('tr[data-run="11"]');
    expect(testRow?.classList.contains('over')).toBe(false);
    expect(testRow?.textContent).toContain('learning 2/5 healthy runs');
    expect(document.querySelector('tr[data-run="10"] [data-label="vs baseline"]')?.textContent).toBe('–');
  });
});

describe('the fleet table', () => {
  it('shows each job with its labels, state, figures and a link to its run view', () => {
    render(<FleetView runs={fleet} baselines={baselines} filters={{}} now={NOW} onChange={() => {}} />);
    // Newest first by default.
    expect(rowIds()).toEqual([11, 12, 10]);
    const row = document.querySelector('tr[data-run="10"]');
    const cell = (label: string) => row?.querySelector(`[data-label="${label}"]`)?.textContent;
    expect(cell('Job')).toContain('lint');
    expect(cell('Repository')).toBe('acme/api');
    expect(cell('Workflow')).toBe('push');
    expect(cell('CI')).toBe('gitlab');
    expect(cell('Runner')).toBe('gl-runner');
    expect(cell('State')).toBe('exited');
    expect(cell('Started')).toContain('50 s');
    expect(cell('CPU-s')).toBe('–');
    expect(document.querySelector('tr[data-run="11"] [data-label="Idle"]')?.textContent).toBe('90%');
    expect(document.querySelector('tr[data-run="12"] [data-label="Memory"]')?.textContent).toContain('0.50 GB-s');
    expect(document.querySelector('tr[data-run="12"] [data-label="Memory"]')?.textContent).toContain('peak 256 MiB');
    expect(screen.getByRole('link', { name: 'build (run 12)' }).getAttribute('href')).toBe('#/runs/12');
    expect(screen.getByRole('link', { name: '2' }).getAttribute('href')).toBe('#/incidents?run=12');
    // No price was given: no cost column.
    expect(screen.queryByRole('button', { name: 'Cost' })).toBeNull();
    expect(document.body.textContent).toContain('3 jobs, 2 live');
  });

  it('shows the cost column when a job was priced', () => {
    render(<FleetView runs={[{ ...build, cost: 0.0123 }, test]} baselines={baselines} filters={{}} now={NOW} onChange={() => {}} />);
    expect(screen.getByRole('button', { name: 'Cost' })).toBeTruthy();
    expect(document.querySelector('tr[data-run="12"] [data-label="Cost"]')?.textContent).toBe('0.0123');
    expect(document.querySelector('tr[data-run="11"] [data-label="Cost"]')?.textContent).toBe('–');
  });

  it('sorts by a column header, toggling the direction, with aria-sort on the sorted column', () => {
    render(<Stateful runs={fleet} />);
    const started = screen.getByRole('button', { name: /Started/ }).closest('th');
    expect(started?.getAttribute('aria-sort')).toBe('descending');
    fireEvent.click(screen.getByRole('button', { name: /CPU-s/ }));
    // Figures sort biggest first; a job without the figure goes last.
    expect(rowIds()).toEqual([11, 12, 10]);
    const cpu = screen.getByRole('button', { name: /CPU-s/ }).closest('th');
    expect(cpu?.getAttribute('aria-sort')).toBe('descending');
    expect(started?.hasAttribute('aria-sort')).toBe(false);
    fireEvent.click(screen.getByRole('button', { name: /CPU-s/ }));
    expect(cpu?.getAttribute('aria-sort')).toBe('ascending');
    expect(rowIds()).toEqual([12, 11, 10]);
    // Text sorts A→Z first.
    fireEvent.click(screen.getByRole('button', { name: /Job/ }));
    expect(rowIds()).toEqual([12, 10, 11]);
    fireEvent.click(screen.getByRole('button', { name: 'vs baseline' }));
    expect(rowIds()).toEqual([12, 11, 10]);
    fireEvent.click(screen.getByRole('button', { name: /State/ }));
    expect(rowIds()[2]).toBe(10);
  });

  it('sorts empty values last in both directions', () => {
    const ctx = { baselines: baselineIndex(baselines), now: NOW };
    expect(sortRuns(fleet, 'mem', 'asc', ctx).map((r) => r.id)).toEqual([12, 11, 10]);
    expect(sortRuns(fleet, 'mem', 'desc', ctx).map((r) => r.id)).toEqual([12, 11, 10]);
    expect(sortRuns(fleet, 'runner', 'desc', ctx).map((r) => r.id)).toEqual([11, 12, 10]);
  });

  it('filters by text over job, repository, workflow and runner, by state and by CI platform', () => {
    expect(filterRuns(fleet, { q: 'runner-2' }).map((r) => r.id)).toEqual([11]);
    expect(filterRuns(fleet, { q: 'ACME/api' }).map((r) => r.id)).toEqual([10]);
    expect(filterRuns(fleet, { q: 'acme build' }).map((r) => r.id)).toEqual([12]);
    expect(filterRuns(fleet, { state: 'live' }).map((r) => r.id)).toEqual([11, 12]);
    expect(filterRuns(fleet, { state: 'ended' }).map((r) => r.id)).toEqual([10]);
    expect(filterRuns(fleet, { ci: 'gitlab' }).map((r) => r.id)).toEqual([10]);
    expect(filterRuns(fleet, { ci: 'github', q: 'test' }).map((r) => r.id)).toEqual([11]);
  });

  it('filters as one types and chooses, and says when nothing matches', () => {
    render(<Stateful runs={fleet} />);
    fireEvent.input(screen.getByLabelText('Search'), { target: { value: 'lint' } });
    expect(rowIds()).toEqual([10]);
    expect(document.body.textContent).toContain('1 of 3 jobs shown');
    fireEvent.input(screen.getByLabelText('Search'), { target: { value: '' } });
    fireEvent.change(screen.getByLabelText('State'), { target: { value: 'live' } });
    expect(rowIds()).toEqual([11, 12]);
    fireEvent.change(screen.getByLabelText('CI'), { target: { value: 'gitlab' } });
    expect(rowIds()).toEqual([]);
    expect(document.body.textContent).toContain('No watched jobs match these filters.');
    fireEvent.click(screen.getByRole('button', { name: 'Clear' }));
    expect(rowIds()).toEqual([11, 12, 10]);
  });

  it('keeps its filters and order in the route', () => {
    const r = parseRoute('#/fleet?state=live&q=build&ci=github&sort=cpu&dir=asc');
    expect(r).toEqual({ page: 'fleet', state: 'live', q: 'build', ci: 'github', sort: 'cpu', dir: 'asc' });
    expect(href(r)).toBe('#/fleet?q=build&state=live&ci=github&sort=cpu&dir=asc');
    // Defaults and nonsense leave the plain route.
    expect(parseRoute('#/fleet?state=all&sort=nope&dir=up')).toEqual({ page: 'fleet' });
    expect(href({ page: 'fleet', sort: 'started', dir: 'desc' })).toBe('#/fleet');
  });

  it('explains how to start watching when there is nothing', () => {
    render(<FleetView runs={[]} baselines={baselines} filters={{}} now={NOW} onChange={() => {}} />);
    expect(document.querySelector('.empty')?.textContent).toContain('sentry watch --discover ci');
    expect(document.querySelector('table')).toBeNull();
  });
});

describe('shadow mode', () => {
  const shadowIncident = { ...incident, action: 'kill' as const, outcome: '', shadow: true };

  it('marks a shadow job and its incidents in the fleet', () => {
    render(<FleetView runs={[{ ...build, shadow: true }, test]} baselines={baselines} filters={{}} now={NOW} onChange={() => {}} />);
    const shadowRow = document.querySelector('tr[data-run="12"]');
    expect(shadowRow?.querySelector('[data-label="Job"] .badge.shadow')?.textContent).toBe('shadow mode');
    expect(shadowRow?.querySelector('[data-label="Incidents"] .badge.shadow')?.textContent).toBe('shadow');
    expect(document.querySelector('tr[data-run="11"] .badge.shadow')).toBeNull();
  });

  it('says an incident card’s action would have been taken, and that nothing was done', () => {
    render(<IncidentCard incident={shadowIncident} showRun />);
    const card = document.querySelector('article.incident');
    expect(card?.classList.contains('shadow')).toBe(true);
    expect(card?.getAttribute('aria-label')).toBe('Incident 3 (shadow)');
    expect(card?.querySelector('h3')?.textContent).toContain('would have killed');
    expect(card?.querySelector('h3 .badge.shadow')?.textContent).toBe('shadow');
    expect(card?.textContent).toContain('nothing was done (shadow mode: enforcement would have killed it)');
    expect(card?.querySelector('h3')?.textContent).not.toMatch(/(^|\s)kill(\s|$)/);
  });

  it('leaves an enforced incident as it was', () => {
    render(<IncidentCard incident={incident} />);
    expect(document.querySelector('h3')?.textContent).toContain('pause');
    expect(document.querySelector('.badge.shadow')).toBeNull();
    expect(document.body.textContent).toContain('Outcome: paused');
  });

  it('words the verdict and the timeline as what would have been done', () => {
    render(<Verdict decision={latestDecision([decision(11, run.started_at + 2)])} live shadow />);
    expect(document.body.textContent).toContain('Runaway: sentry would have paused it (shadow mode: nothing was done)');
    expect(document.querySelector('.verdict .badge.shadow')?.textContent).toBe('shadow mode');
    cleanup();
    const events: EventRow[] = [
      decision(1, run.started_at + 1),
      { id: 2, run_id: 7, at: run.started_at + 2, type: 'incident', data: shadowIncident },
    ];
    render(<Timeline events={events} startedAt={run.started_at} shadow />);
    const items = document.querySelectorAll('ol.timeline li');
    expect(items[0]?.textContent).toContain('Decision would have paused');
    expect(items[1]?.textContent).toContain('would have killed');
    expect(items[1]?.querySelector('.badge.shadow')).toBeTruthy();
    expect(items[1]?.textContent).toContain('nothing was done');
  });

  it('marks a shadow run in the runs list', () => {
    render(<RunsTable runs={[{ ...run, shadow: true }, { ...run, id: 6 }]} now={run.started_at + 5} />);
    expect(document.querySelector('tr[data-run="7"] .badge.shadow')?.textContent).toBe('shadow mode');
    expect(document.querySelector('tr[data-run="6"] .badge.shadow')).toBeNull();
  });
});

describe('the fleet page', () => {
  function stub(runs: RunRow[]) {
    const calls: string[] = [];
    vi.stubGlobal(
      'fetch',
      vi.fn(async (url: string) => {
        calls.push(url);
        if (url.startsWith('/stream')) return new Response(new ReadableStream(), { headers: { 'content-type': 'text/event-stream' } });
        if (url.startsWith('/baselines')) return json(baselines);
        const status = /status=(\w+)/.exec(url)?.[1];
        return json({ items: runs.filter((r) => !status || r.status === status), next_before: null });
      }),
    );
    return calls;
  }

  it('is in the navigation and shows the empty state with no watched jobs', async () => {
    stub([]);
    window.history.replaceState(null, '', '/#token=right-right-right-right');
    render(<App />);
    await waitFor(() => expect(screen.getByRole('link', { name: 'Fleet' })).toBeTruthy());
    window.location.hash = '#/fleet';
    await waitFor(() => expect(document.body.textContent).toContain('No watched jobs yet.'));
    expect(screen.getByRole('link', { name: 'Fleet' }).getAttribute('aria-current')).toBe('page');
  });

  it('loads watched jobs only, and only live ones for state=live', async () => {
    const calls = stub([build, api]);
    window.history.replaceState(null, '', '/#/fleet?state=live');
    window.sessionStorage.setItem('sentry.apiKey', 'right-right-right-right');
    render(<App />);
    await waitFor(() => expect(rowIds()).toEqual([12]));
    const runCalls = calls.filter((c) => c.startsWith('/runs'));
    expect(runCalls.length).toBeGreaterThan(0);
    expect(runCalls.every((c) => c.includes('kind=watch') && /status=(running|paused)/.test(c))).toBe(true);
    expect((screen.getByLabelText('State') as HTMLSelectElement).value).toBe('live');
    // Typing filters in the route without a history entry per key.
    const before = window.history.length;
    fireEvent.input(screen.getByLabelText('Search'), { target: { value: 'nothing-like-it' } });
    await waitFor(() => expect(window.location.hash).toBe('#/fleet?q=nothing-like-it&state=live'));
    expect(window.history.length).toBe(before);
    await waitFor(() => expect(document.body.textContent).toContain('No watched jobs match these filters.'));
  });
});

import { useEffect, useRef, useState } from 'preact/hooks';
import type { ApiError } from '../api/client';
import type { DecisionEvent, EventRow, IncidentRow, RunRow, SampleRow } from '../api/types';
import { Chart, type Series } from '../components/Chart';
import { Empty, ErrorNotice, Loading, ShadowBadge, StatusBadge } from '../components/common';
import { Controls } from '../components/Controls';
import { IncidentCard } from '../components/Evidence';
import { Timeline } from '../components/Timeline';
import { Verdict } from '../components/Verdict';
import { asApiError, useSession } from '../context';
import { bytes, command, duration, money, pct, runDuration, time } from '../format';
import { useLiveEpoch, useLiveEvents, useNow } from '../live';

/** A run's chart data, appended in place (a long run has thousands of samples). */
export class RunSamples {
  lastId = 0;
  xs: number[] = [];
  cpu: (number | null)[] = [];
  mem: (number | null)[] = [];
  lines: (number | null)[] = [];
  version = 0;

  add(rows: readonly SampleRow[]): boolean {
    let added = false;
    for (const s of rows) {
      if (s.id <= this.lastId) continue;
      this.lastId = s.id;
      this.xs.push(s.t_s);
      this.cpu.push(s.cpu_pct);
      this.mem.push(s.mem_bytes ?? null);
      this.lines.push(s.lines_per_s);
      added = true;
    }
    if (added) this.version++;
    return added;
  }

  series(ys: (number | null)[]): Series {
    return { xs: this.xs, ys, version: this.version };
  }
}

/** The run's events but samples, oldest first, without repeats. */
export function mergeEvents(into: EventRow[], more: readonly EventRow[]): EventRow[] {
  const last = into.length ? (into[into.length - 1]?.id ?? 0) : 0;
  const fresh = more.filter((e) => e.type !== 'sample' && e.id > last);
  return fresh.length ? [...into, ...fresh] : into;
}

export function latestDecision(events: readonly EventRow[]): DecisionEvent | undefined {
  for (let i = events.length - 1; i >= 0; i--) {
    const e = events[i];
    if (e?.type === 'decision') return e.data;
  }
  return undefined;
}

const SAMPLE_PAGE = 5000;

export function RunPage({ id }: { id: number }) {
  const { api, report } = useSession();
  const epoch = useLiveEpoch();
  const now = useNow();
  const [run, setRun] = useState<RunRow | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [events, setEvents] = useState<EventRow[]>([]);
  const [incidents, setIncidents] = useState<IncidentRow[] | null>(null);
  const [, setVersion] = useState(0);
  const samples = useRef(new RunSamples());
  const loading = useRef(true);
  const buffered = useRef<EventRow[]>([]);
  const eventsRef = useRef<EventRow[]>([]);
  eventsRef.current = events;
  const [attempt, setAttempt] = useState(0);

  const refreshRun = async (signal?: AbortSignal) => {
    const [r, inc] = await Promise.all([api.run(id, signal), api.incidents({ run: id, limit: 50 }, signal)]);
    setRun(r);
    setIncidents(inc.items);
  };

  // Load (or catch up after a reconnect): the run, then every sample and event after what we have.
  useEffect(() => {
    const ctl = new AbortController();
    const { signal } = ctl;
    loading.current = true;
    (async () => {
      await refreshRun(signal);
      let after = samples.current.lastId;
      for (;;) {
        const p = await api.samples(id, { after, limit: SAMPLE_PAGE }, signal);
        samples.current.add(p.items);
        setVersion(samples.current.version);
        if (p.next_after == null) break;
        after = p.next_after;
      }
      let evAfter = eventsRef.current.length ? (eventsRef.current[eventsRef.current.length - 1]?.id ?? 0) : 0;
      let got: EventRow[] = eventsRef.current;
      for (;;) {
        const p = await api.timeline({ run: id, after: evAfter, limit: 1000 }, signal);
        got = mergeEvents(got, p.items);
        if (p.next_after == null) break;
        evAfter = p.next_after;
      }
      if (signal.aborted) return;
      loading.current = false;
      const pending = buffered.current;
      buffered.current = [];
      samples.current.add(pending.flatMap((e) => (e.type === 'sample' ? [e.data] : [])));
      setVersion(samples.current.version);
      setEvents(mergeEvents(got, pending));
      setError(null);
    })().catch((e: unknown) => {
      if (signal.aborted) return;
      const err = asApiError(e);
      report(err);
      setError(err);
    });
    return () => ctl.abort();
  }, [id, epoch, attempt]);

  const refresh = useRef(0);
  useLiveEvents((e) => {
    if (e.run_id !== id) return;
    if (loading.current) {
      buffered.current.push(e);
      return;
    }
    if (e.type === 'sample') {
      if (samples.current.add([e.data])) setVersion(samples.current.version);
      return;
    }
    setEvents((cur) => mergeEvents(cur, [e]));
    if (e.type !== 'decision' && !refresh.current) {
      refresh.current = window.setTimeout(() => {
        refresh.current = 0;
        refreshRun().catch((err: unknown) => report(err));
      }, 200);
    }
  });

  if (error && !run) {
    return (
      <section>
        <h1>Run {id}</h1>
        <ErrorNotice error={error} onRetry={() => setAttempt((n) => n + 1)} />
        <p>
          <a href="#/runs">All runs</a>
        </p>
      </section>
    );
  }
  if (!run) return <Loading what={`run ${id}`} />;

  const live = run.status === 'running' || run.status === 'paused';
  const s = samples.current;
  return (
    <section aria-labelledby="run-h" class="run">
      <div class="page-head">
        <h1 id="run-h">
          Run {run.id} <StatusBadge status={run.status} />
          {run.runaway && <span class="badge runaway">runaway</span>}
          {run.shadow && <ShadowBadge what="shadow mode" />}
        </h1>
        {run.kind === 'watch' ? <a href="#/fleet">The fleet</a> : <a href="#/runs">All runs</a>}
      </div>
      <p class="command-line">
        <code>{command(run.command)}</code>
      </p>
      {error && <ErrorNotice error={error} onRetry={() => setAttempt((n) => n + 1)} />}
      <dl class="facts">
        <div>
          <dt>Mode</dt>
          <dd>{run.mode ?? '–'}</dd>
        </div>
        <div>
          <dt>Started</dt>
          <dd>{time(run.started_at)}</dd>
        </div>
        <div>
          <dt>Duration</dt>
          <dd>{duration(runDuration(run.started_at, run.ended_at, now))}</dd>
        </div>
        <div>
          <dt>Exit code</dt>
          <dd>{run.exit_code ?? (live ? 'running' : '–')}</dd>
        </div>
        <div>
          <dt>CPU peak</dt>
          <dd>{pct(run.cpu_peak_pct)}</dd>
        </div>
        <div>
          <dt>Memory peak</dt>
          <dd>{bytes(run.mem_peak_bytes)}</dd>
        </div>
        <div>
          <dt>Restarts</dt>
          <dd>{run.restarts}</dd>
        </div>
        <div>
          <dt>Host · user</dt>
          <dd>
            {run.host} · {run.user}
          </dd>
        </div>
        {run.cpu_seconds != null && (
          <div>
            <dt>CPU time</dt>
            <dd>{duration(run.cpu_seconds)}</dd>
          </div>
        )}
        {run.cost != null && (
          <div>
            <dt>Cost</dt>
            <dd>{money(run.cost)}</dd>
          </div>
        )}
        {Object.entries(run.labels).map(([k, v]) => (
          <div key={k} class="label-fact">
            <dt>{k}</dt>
            <dd>{v}</dd>
          </div>
        ))}
        {run.events_lost > 0 && (
          <div>
            <dt>Writes lost</dt>
            <dd>{run.events_lost}</dd>
          </div>
        )}
      </dl>
      <Controls run={run} onDone={() => void refreshRun().catch((e: unknown) => report(e))} />
      {run.shadow && (
        <p class="notice shadow-note">
          <strong>Shadow mode:</strong> sentry watches and decides as usual but enforces nothing; every action shown
          here is what it <em>would</em> have done.
        </p>
      )}
      <Verdict decision={latestDecision(events)} live={live} status={run.status} shadow={run.shadow} />
      <section class="charts" aria-label="Resource charts">
        {s.xs.length === 0 ? (
          <Empty>
            <p>No samples {live ? 'yet: the first arrives within a second or two' : 'were recorded for this run'}.</p>
          </Empty>
        ) : (
          <>
            <Chart title="CPU" series={s.series(s.cpu)} format={(v) => pct(v)} colorVar="--c-cpu" />
            <Chart title="Memory" series={s.series(s.mem)} format={(v) => bytes(v)} colorVar="--c-mem" />
            <Chart
              title="Output lines/s"
              series={s.series(s.lines)}
              format={(v) => (v == null ? '–' : v < 10 ? v.toFixed(1) : String(Math.round(v)))}
              colorVar="--c-out"
            />
          </>
        )}
      </section>
      <section aria-labelledby="run-inc-h">
        <h2 id="run-inc-h">Incidents</h2>
        {incidents === null ? (
          <Loading what="incidents" />
        ) : incidents.length === 0 ? (
          <p class="muted">None: sentry has not acted on this run.</p>
        ) : (
          <div class="cards">
            {incidents.map((i) => (
              <IncidentCard key={i.id} incident={i} />
            ))}
          </div>
        )}
      </section>
      <section aria-labelledby="run-tl-h">
        <h2 id="run-tl-h">Timeline</h2>
        <Timeline events={events} startedAt={run.started_at} shadow={run.shadow} />
      </section>
    </section>
  );
}

// Fixture payloads, typed by the generated API types (so they break when the API changes).
import type { AuditRow, BaselineList, EventRow, IncidentRow, RunRow } from '../src/api/types';

export const run: RunRow = {
  id: 7,
  kind: 'run',
  command: ['sh', '-c', 'while true; do echo retrying; done'],
  mode: 'kernel',
  host: 'box',
  user: 'ana',
  pid: 4242,
  started_at: 1_700_000_000,
  ended_at: null,
  status: 'running',
  exit_code: null,
  runaway: true,
  restarts: 0,
  incidents: 1,
  cpu_peak_pct: null,
  mem_peak_bytes: null,
  events_captured: 120,
  events_lost: 0,
  labels: {},
  cpu_seconds: 3.5,
  output_lines: 240,
  job_key: 'cmd:sh -c while true; do echo retrying; done',
  mem_gb_seconds: 0.02,
  io_read_bytes: 0,
  io_write_bytes: 4096,
  idle_fraction: 0,
  cost: null,
  shadow: false,
};

export const incident: IncidentRow = {
  id: 3,
  run_id: 7,
  at: 1_700_000_002,
  kind: 'output_loop',
  detected_after_s: 1.9,
  action: 'pause',
  score: 0.99,
  confidence: 0.99,
  summary: 'output loop: period 2, 31 repeats',
  outcome: 'paused',
  attempt: 1,
  reasons: ['high confidence 0.99 from output loop'],
  evidence: {
    type: 'loop',
    period: 2,
    repeats: 31,
    pattern: ['error: connect to <ip> refused', 'retrying in <n>s'],
    example: ['error: connect to 10.0.0.1 refused', 'retrying in 1s'],
    first_line: 4,
    last_line: 65,
  },
  shadow: false,
};

export function decision(id: number, at: number, action: 'continue' | 'pause' = 'pause'): EventRow {
  return {
    id,
    run_id: 7,
    at,
    type: 'decision',
    data: {
      id,
      t_s: at - run.started_at,
      attempt: 1,
      action,
      confidence: 0.99,
      reasons: ['high confidence 0.99 from output loop'],
      findings: [
        {
          kind: 'output_loop',
          score: 0.99,
          summary: 'period 2, 31 repeats',
          reasons: [],
          evidence: incident.evidence,
        },
      ],
    },
  };
}

/** A CI job followed by `sentry watch --discover ci`. */
export function watched(id: number, labels: Record<string, string>, more: Partial<RunRow> = {}): RunRow {
  const full = { ci: 'github', repository: 'acme/web', workflow: 'ci', job: 'build', runner: 'runner-1', job_id: `github_${id}`, ...labels };
  return {
    ...run,
    id,
    kind: 'watch',
    command: ['bash', '-e', '/home/runner/work/_temp/step.sh'],
    mode: 'resources',
    runaway: false,
    incidents: 0,
    labels: full,
    job_key: `${full.ci}:${full.repository}:${full.workflow}:${full.job}`,
    started_at: 1_700_000_000,
    ended_at: null,
    status: 'running',
    cpu_seconds: 10,
    mem_gb_seconds: 0.5,
    mem_peak_bytes: 256 * 1024 * 1024,
    idle_fraction: 0.25,
    cost: null,
    shadow: false,
    ...more,
  };
}

/** Baselines: `acme/web` build is learned (median 60 s wall, 30 CPU-s); test is still learning. */
export const baselines: BaselineList = {
  min_runs: 5,
  history: 20,
  factor: 3,
  items: [
    {
      job_key: 'github:acme/web:ci:build',
      runs_total: 9,
      active: true,
      last_run_id: 12,
      last_status: 'running',
      last_wall_s: 200,
      baseline: { job_key: 'github:acme/web:ci:build', runs: 8, median_wall_s: 60, median_cpu_seconds: 30, p90_wall_s: 80 },
    },
    {
      job_key: 'github:acme/web:ci:test',
      runs_total: 2,
      active: false,
      last_run_id: 11,
      last_status: 'exited',
      last_wall_s: 40,
      baseline: { job_key: 'github:acme/web:ci:test', runs: 2, median_wall_s: 40, median_cpu_seconds: null, p90_wall_s: 45 },
    },
  ],
};

export const audit: AuditRow = {
  id: 1,
  at: 1_700_000_010,
  actor: 'api',
  action: 'kill',
  target: 'run 7',
  result: 'ok',
  client: '127.0.0.1',
  detail: 'stopped',
};

export function json(body: unknown, status = 200, type = 'application/json'): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': type } });
}

export function problem(status: number, detail: string): Response {
  return json({ type: 'urn:problem-type:sentry:x', title: 'x', status, detail }, status, 'application/problem+json');
}

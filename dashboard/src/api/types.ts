// The API's payload types, all generated from openapi.json (itself generated from the Rust
// types by utoipa): nothing here is written by hand but names and exhaustive value lists.
import type { components, operations } from './schema';

type Schemas = components['schemas'];

export type RunRow = Schemas['RunRow'];
export type RunPage = Schemas['RunPage'];
export type RunStatus = Schemas['RunStatus'];
export type SampleRow = Schemas['SampleRow'];
export type SamplePage = Schemas['SamplePage'];
export type IncidentRow = Schemas['IncidentRow'];
export type IncidentPage = Schemas['IncidentPage'];
export type EventRow = Schemas['EventRow'];
export type TimelinePage = Schemas['TimelinePage'];
export type AuditRow = Schemas['AuditRow'];
export type AuditPage = Schemas['AuditPage'];
export type ControlResponse = Schemas['ControlResponse'];
export type Problem = Schemas['Problem'];
export type Evidence = Schemas['Evidence'];
export type LoopEvidence = Schemas['LoopEvidence'];
export type ResourceEvidence = Schemas['ResourceEvidence'];
export type FindingKind = Schemas['FindingKind'];
export type Action = Schemas['Action'];
export type DecisionEvent = Schemas['DecisionEvent'];
export type BaselineList = Schemas['BaselineList'];
export type BaselineRow = Schemas['BaselineRow'];
export type Baseline = Schemas['Baseline'];
export type EventType = EventRow['type'];

export type RunsQuery = NonNullable<operations['list_runs']['parameters']['query']>;
export type IncidentsQuery = NonNullable<operations['list_incidents']['parameters']['query']>;
export type BaselinesQuery = NonNullable<operations['list_baselines']['parameters']['query']>;
export type AuditQuery = NonNullable<operations['list_audit']['parameters']['query']>;
export type SamplesQuery = NonNullable<operations['run_samples']['parameters']['query']>;
export type TimelineQuery = operations['timeline']['parameters']['query'];

/** The control endpoints, by the action name they take. */
export type ControlAction = 'kill' | 'pause' | 'resume' | 'restart';

// Exhaustive lists for filters: adding a variant on the Rust side fails the type-check here
// until it is listed.
type Exhaustive<T, L extends readonly T[]> = [Exclude<T, L[number]>] extends [never] ? L : never;

const findingKinds = ['output_loop', 'cpu_burn', 'memory_growth', 'stall', 'fork_storm', 'no_output', 'regression'] as const;
export const FINDING_KINDS: Exhaustive<FindingKind, typeof findingKinds> = findingKinds;

const actions = ['continue', 'alert', 'pause', 'kill', 'restart'] as const;
export const ACTIONS: Exhaustive<Action, typeof actions> = actions;

export const KIND_LABELS: Record<FindingKind, string> = {
  output_loop: 'output loop',
  cpu_burn: 'CPU burn',
  memory_growth: 'memory growth',
  stall: 'stall',
  fork_storm: 'fork storm',
  no_output: 'no-output timeout',
  regression: 'regression',
};

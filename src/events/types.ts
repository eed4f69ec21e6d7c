/**
 * The event bus contract: every event gpu-gatekeeper emits, as versioned
 * JSON. The same object is stored in Postgres (`events`, listed as alerts),
 * and POSTed to webhooks. Amounts are given twice: exact integer GPU-ms and
 * decimal GPU hours for people.
 *
 * Version 1. A new field is added without a version change; a field removed or
 * changing meaning bumps `version` for that event type.
 */
export { EVENT_VERSION } from '../redis/wire.ts';

export const EVENT_TYPES = [
  'THRESHOLD_CROSSED',
  'BUDGET_EXHAUSTED',
  'JOB_HELD',
  'JOB_REJECTED',
  'JOB_RELEASED',
  'JOB_OVERRIDDEN',
  'BUDGET_CHANGED',
  'QUOTA_RESET',
  'ENTRY_QUARANTINED',
  'OVERRIDE_REQUESTED',
  'OVERRIDE_DENIED',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** A scope's numbers at the moment of the event (current period). */
export interface ScopeNumbers {
  /** Scope base, e.g. 'project:alpha', 'user-day:bob'. */
  scope: string;
  /** Counter id: the scope, or '<scope>@<period label>'. */
  counterId: string;
  /** The limit's unit; used, reserved, limit and remaining are decimals of it (GPU hours, units, US dollars). */
  unit: 'gpuHours' | 'units' | 'usd';
  used: number;
  reserved: number;
  /** Effective limit of the period (limit + carry + adjust). */
  limit: number;
  remaining: number;
  /** A limit in GPU hours only: the same in GPU-ms and GPU hours, as before units. */
  usedGpuMs?: number;
  reservedGpuMs?: number;
  limitGpuMs?: number;
  remainingGpuMs?: number;
  usedGpuHours?: number;
  reservedGpuHours?: number;
  limitGpuHours?: number;
  remainingGpuHours?: number;
}

export interface EventData {
  THRESHOLD_CROSSED: ScopeNumbers & { thresholdPercent: number; jobId: string };
  BUDGET_EXHAUSTED: ScopeNumbers & { jobId: string };
  JOB_HELD: { jobId: string; project: string; user: string; jobType?: string; estimatedGpuHours: number; reason: string };
  JOB_REJECTED: { jobId: string; project?: string; user?: string; reason: string; by: string };
  /** charged: its estimate in GPU hours, units and US dollars at the price it was admitted at. */
  JOB_RELEASED: { jobId: string; project: string; user: string; reservedGpuHours: number; by: string; charged?: { gpuHours: number; units: number; usd: number } };
  JOB_OVERRIDDEN: { jobId: string; project: string; user: string; reservedGpuHours: number; by: string; charged?: { gpuHours: number; units: number; usd: number } };
  BUDGET_CHANGED: { scope: string; action: string; before: unknown; after: unknown; by: string; reason: string | null };
  QUOTA_RESET: { periods: string[]; labels: Record<string, string>; releasedJobs: number };
  /** A stream entry no store would take was set aside (GET /api/v1/quarantine/:id); the entries after it flowed on. */
  ENTRY_QUARANTINED: { quarantineId: number; stream: 'ledger' | 'events' | 'audit'; streamId: string; error: string };
  /** A held job's owner or manager asks for an override or a budget raise (GET /api/v1/override-requests); approved, the job shows as JOB_OVERRIDDEN. */
  OVERRIDE_REQUESTED: { requestId: number; jobId: string; project: string; user: string; kind: 'override' | 'raise'; reason: string; requestedBy: string };
  /** An override request denied, with the reason the requester sees. */
  OVERRIDE_DENIED: { requestId: number; jobId: string; project: string; user: string; reason: string; deniedBy: string };
}

export interface GatekeeperEvent<T extends EventType = EventType> {
  /** Postgres id (also the alert id). */
  id: number;
  type: T;
  version: number;
  /** ISO time the event happened. */
  at: string;
  data: EventData[T];
}

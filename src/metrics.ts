/**
 * Prometheus metrics (prom-client). Each process has one registry with what
 * it does itself (admissions and their latency in a gatekeeper, settlement
 * lag in a reconciler, webhook deliveries in a webhooks worker) plus the
 * default process metrics; Prometheus sums counters across processes. The
 * state of the whole deployment (held jobs per project, used / reserved /
 * limit per scope) is read from Redis at scrape time by the process that
 * serves the API, so it is the same whichever instance is scraped.
 *
 * Served at /metrics with the viewer or admin token (Prometheus:
 * `authorization: { credentials: <token> }`), by the API, or on
 * METRICS_PORT by a process without the API.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { GpuCaps } from './accounting/gpu-caps.ts';
import type { Budgets } from './accounting/budgets.ts';
import type { Accounting } from './accounting/counters.ts';
import { gpuMsToHours } from './units.ts';
import type { Queryable } from './db/pool.ts';
import { waitingCounts } from './db/quarantine.ts';

export class Metrics {
  readonly registry = new Registry();

  readonly admissions = new Counter({
    name: 'gatekeeper_admissions_total',
    help: 'Intake jobs decided by this gatekeeper, by outcome (admitted, held, rejected, throttled: each time a job is sent back to wait for its rate).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly throttled = new Counter({
    name: 'gatekeeper_throttled_total',
    help: 'Intake jobs sent back to delayed for being over a submission rate, by the kind of bucket they were over (user, project; a job over both counts in each).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly admissionLatency = new Histogram({
    name: 'gatekeeper_admission_latency_seconds',
    help: 'From an intake job being added to it being on gpu-exec or gpu-held.',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly woken = new Counter({
    name: 'gatekeeper_woken_jobs_total',
    help: 'Held jobs started by the waker because room appeared (no admin release).',
    registers: [this.registry],
  });

  readonly settlementLag = new Histogram({
    name: 'gatekeeper_settlement_lag_seconds',
    help: 'From a GPU job finishing to its actual hours replacing its reservation.',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900],
    registers: [this.registry],
  });

  readonly webhookDeliveries = new Counter({
    name: 'gatekeeper_webhook_deliveries_total',
    help: 'Webhook requests by outcome: delivered, retry (failed, will try again), failed (gave up).',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  readonly eventsLost = new Counter({
    name: 'gatekeeper_events_lost_total',
    help: 'Events trimmed from the events stream (its cap) before the event store read them: not stored, not delivered.',
    registers: [this.registry],
  });

  readonly settleFailures = new Counter({
    name: 'gatekeeper_settle_failures_total',
    help: 'Settles that failed for one job: its reservation stays open and the next sweep tries it again, while the other jobs settle.',
    registers: [this.registry],
  });

  readonly ledgerQuarantined = new Counter({
    name: 'gatekeeper_ledger_quarantined_total',
    help: 'Ledger stream entries Postgres refused on their own merits, set aside (GET /api/v1/quarantine) so later entries flow.',
    registers: [this.registry],
  });

  readonly eventsQuarantined = new Counter({
    name: 'gatekeeper_events_quarantined_total',
    help: 'Events stream entries that could not be stored (refused, or not an event this version knows), set aside so later entries flow.',
    registers: [this.registry],
  });

  readonly auditQuarantined = new Counter({
    name: 'gatekeeper_audit_quarantined_total',
    help: 'Audit outbox entries that could not be stored, set aside so later entries flow.',
    registers: [this.registry],
  });

  readonly driftCounters = new Gauge({
    name: 'gatekeeper_drift_counters',
    help: 'Counters whose Redis values differ from the Postgres ledger at the last audit (should be 0).',
    registers: [this.registry],
  });

  readonly driftCheckedAt = new Gauge({
    name: 'gatekeeper_drift_last_check_timestamp_seconds',
    help: 'When the drift audit last completed.',
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** Deployment-wide gauges read at scrape time (the API process registers these). */
  watchState(accounting: Accounting, budgets: Budgets, db?: Queryable, caps?: GpuCaps): void {
    if (db) {
      new Gauge({
        name: 'gatekeeper_quarantined_entries',
        help: 'Stream entries set aside and not yet replayed, by stream (Postgres at scrape time; should be 0).',
        labelNames: ['stream'] as const,
        registers: [this.registry],
        async collect() {
          for (const [stream, n] of Object.entries(await waitingCounts(db))) this.set({ stream }, n);
        },
      });
    }
    new Gauge({
      name: 'gatekeeper_wake_signals_pending',
      help: 'Lines signalled (room appeared) and not yet taken by a waker; should stay near 0 when a reconciler runs.',
      registers: [this.registry],
      async collect() {
        this.set(await accounting.wakePending());
      },
    });
    new Gauge({
      name: 'gatekeeper_held_jobs',
      help: 'Jobs waiting on gpu-held, by project.',
      labelNames: ['project'] as const,
      registers: [this.registry],
      async collect() {
        this.reset();
        for (const [project, n] of Object.entries(await accounting.heldCounts())) this.set({ project }, n);
      },
    });
    new Gauge({
      name: 'gatekeeper_throttled_jobs',
      help: 'Intake jobs waiting (delayed) for their submission rate now.',
      registers: [this.registry],
      async collect() {
        this.set(await accounting.throttledCount(Date.now()));
      },
    });
    // One read of every limit's current period per scrape, shared by the three gauges.
    let snapshot: Promise<Awaited<ReturnType<Budgets['views']>>> | null = null;
    const views = () => {
      snapshot ??= budgets.all().then((rows) => budgets.views(rows.map((r) => r.scope))).finally(() => setTimeout(() => (snapshot = null), 100));
      return snapshot;
    };
    const scopeGauge = (name: string, help: string, pick: (v: Awaited<ReturnType<typeof views>>[number]) => number | null) =>
      new Gauge({
        name,
        help,
        labelNames: ['scope', 'period'] as const,
        registers: [this.registry],
        async collect() {
          this.reset();
          for (const v of await views()) {
            const value = pick(v);
            if (value !== null) this.set({ scope: v.scope, period: v.periodLabel ?? 'none' }, value);
          }
        },
      });
    // Every unit's counters, whatever the limit's unit; the limit in its own.
    scopeGauge('gatekeeper_scope_used_gpu_hours', 'GPU hours used (times usage factors) in the current period of each limited scope.', (v) => gpuMsToHours(v.counted.gpuHours.used));
    scopeGauge('gatekeeper_scope_reserved_gpu_hours', 'GPU hours reserved by running jobs in the current period.', (v) => gpuMsToHours(v.counted.gpuHours.reserved));
    scopeGauge('gatekeeper_scope_used_units', 'Compute units used in the current period of each limited scope.', (v) => v.counted.units.used / 1000);
    scopeGauge('gatekeeper_scope_reserved_units', 'Compute units reserved by running jobs in the current period.', (v) => v.counted.units.reserved / 1000);
    scopeGauge('gatekeeper_scope_used_usd', 'US dollars used in the current period of each limited scope.', (v) => v.counted.usd.used / 1_000_000);
    scopeGauge('gatekeeper_scope_reserved_usd', 'US dollars reserved by running jobs in the current period.', (v) => v.counted.usd.reserved / 1_000_000);
    scopeGauge('gatekeeper_scope_limit_gpu_hours', 'Effective limit of the current period (limit + carry + adjust) of a limit in GPU hours.', (v) => (v.unit === 'gpuHours' && v.effectiveLimitGpuMs !== null ? gpuMsToHours(v.effectiveLimitGpuMs) : null));
    scopeGauge('gatekeeper_scope_limit_units', 'Effective limit of the current period of a limit in compute units.', (v) => (v.unit === 'units' && v.effectiveLimitGpuMs !== null ? v.effectiveLimitGpuMs / 1000 : null));
    scopeGauge('gatekeeper_scope_limit_usd', 'Effective limit of the current period of a limit in US dollars.', (v) => (v.unit === 'usd' && v.effectiveLimitGpuMs !== null ? v.effectiveLimitGpuMs / 1_000_000 : null));
    if (caps) {
      // One read of every cap per scrape, shared by the two gauges.
      let capSnap: ReturnType<GpuCaps['list']> | null = null;
      const capViews = () => (capSnap ??= caps.list().finally(() => setTimeout(() => (capSnap = null), 100)));
      const capGauge = (name: string, help: string, pick: (v: Awaited<ReturnType<GpuCaps['list']>>[number]) => number) =>
        new Gauge({
          name,
          help,
          labelNames: ['scope'] as const,
          registers: [this.registry],
          async collect() {
            this.reset();
            for (const v of await capViews()) this.set({ scope: v.scope }, pick(v));
          },
        });
      capGauge('gatekeeper_gpus_in_flight', 'GPUs of admitted jobs not yet settled, per GPU cap.', (v) => v.inFlightGpus);
      capGauge('gatekeeper_gpu_cap', 'The GPU cap in force now (its peak value inside its window).', (v) => v.effectiveMaxGpus);
    }
  }
}

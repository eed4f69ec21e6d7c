/**
 * The scheduler: at each period boundary (local midnight in
 * GATEKEEPER_TIMEZONE; Monday for weeks, the 1st for months) it starts the
 * new period of every periodic budget (computing its rollover, and recording
 * it in Postgres for a rebuild) and re-admits,
 * first in first out, the held jobs that wait only on scopes that renew
 * (user quotas, weekly/monthly budgets). Jobs waiting on a one-off budget or
 * a run cap stay held: those need an admin.
 *
 * Correctness never depends on it: counters are keyed by period, so the new
 * period is enforced whether or not this ran; a run that happens twice, late,
 * or on two instances at once changes nothing more (release is idempotent,
 * and a job is admitted once). It runs at start-up (catching up on a boundary
 * missed while down) and then at the top of every local hour, doing work only
 * when the local day changed: a DST jump that skips midnight still gets its
 * run at the first hour that exists.
 */
import cron from 'node-cron';
import type { Redis } from 'ioredis';
import type { Config } from '../src/config.ts';
import type { Clock } from '../src/clock.ts';
import type { Logger } from '../src/log.ts';
import type { Pool } from '../src/db/pool.ts';
import type { Actor } from '../src/db/audit.ts';
import { Accounting } from '../src/accounting/counters.ts';
import { Budgets } from '../src/accounting/budgets.ts';
import { parseScopeId } from '../src/accounting/scopes.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { PERIOD_KINDS, periodAt } from '../src/periods.ts';
import { queueNames } from '../queues/names.ts';

/** Who the audit log names for the scheduler's releases. */
export const SCHEDULER: Actor = { name: 'scheduler', role: 'admin' };

export interface SchedulerDeps {
  config: Config;
  connection: Redis;
  pool: Pool;
  log: Logger;
  clock: Clock;
}

export interface BoundaryReport {
  /** Periodic budgets whose current period was started (rollover computed). */
  periodsStarted: number;
  /** Held jobs waiting only on renewing scopes, considered for release. */
  considered: number;
  admitted: number;
}

const CHUNK = 1_000;

export function createScheduler(deps: SchedulerDeps) {
  const { config, connection: redis, pool, clock } = deps;
  const log = deps.log.child({ role: 'scheduler' });
  const accounting = new Accounting(redis, queueNames(config).prefix, config.settledRetainSeconds, config.timeZone, config.unknownGpuTypePolicy);
  const budgets = new Budgets(pool, accounting, clock);
  const held = new HeldJobs(config, redis, pool, clock, log);
  let lastDay: string | null = null;

  /** Does a line (scope base) renew with the calendar? User quotas and periodic budgets do. */
  async function renewing(bases: string[]): Promise<Set<string>> {
    const out = new Set<string>();
    const ask = bases.filter((b) => {
      const kind = parseScopeId(b).kind;
      if (kind === 'user-day' || kind === 'user-week') out.add(b);
      return kind !== 'user-day' && kind !== 'user-week' && kind !== 'run';
    });
    for (let i = 0; i < ask.length; i += CHUNK) {
      const part = ask.slice(i, i + CHUNK);
      const p = redis.pipeline();
      for (const b of part) p.hget(accounting.keys.def(b), 'period');
      const periods = (await p.exec()) ?? [];
      part.forEach((b, j) => {
        const period = periods[j]?.[1] as string | null;
        if (period && period !== 'none') out.add(b);
      });
    }
    return out;
  }

  /** Held job ids, oldest first, that wait only on renewing scopes. */
  async function candidates(): Promise<string[]> {
    const ids = await accounting.heldIds();
    const lines: string[][] = [];
    for (let i = 0; i < ids.length; i += CHUNK) {
      const p = redis.pipeline();
      for (const id of ids.slice(i, i + CHUNK)) p.hget(accounting.keys.reservation(id), 'lines');
      for (const [, v] of (await p.exec()) ?? []) lines.push(typeof v === 'string' && v ? v.split(',') : []);
    }
    const renews = await renewing([...new Set(lines.flat())]);
    return ids.filter((_, i) => lines[i]!.length > 0 && lines[i]!.every((l) => renews.has(l)));
  }

  /** Everything a boundary calls for; safe to run at any time, any number of times. */
  async function runBoundary(): Promise<BoundaryReport> {
    const periodsStarted = await budgets.startPeriods();
    const ids = await candidates();
    const report: BoundaryReport = { periodsStarted, considered: ids.length, admitted: 0 };
    if (ids.length > 0) {
      const r = await held.release({ ids }, SCHEDULER);
      report.admitted = r.admitted.length;
    }
    log.info(report, 'period boundary: new periods started, held jobs re-admitted');
    return report;
  }

  /**
   * The hourly tick: run when the local day changed since the last run, and
   * tell the event bus (QUOTA_RESET, once per day however many schedulers).
   */
  async function tick(): Promise<BoundaryReport | null> {
    const now = clock.now();
    const today = periodAt('day', now, config.timeZone);
    if (today.label === lastDay) return null;
    const report = await runBoundary();
    lastDay = today.label;
    const periods = PERIOD_KINDS.map((k) => periodAt(k, now, config.timeZone));
    await accounting.events.emit(
      'QUOTA_RESET',
      {
        // The kinds whose period began today (day always; week on Mondays; month on the 1st).
        periods: periods.filter((p) => p.start >= today.start).map((p) => p.kind),
        labels: Object.fromEntries(periods.map((p) => [p.kind, p.label])),
        releasedJobs: report.admitted,
      },
      `reset:${today.label}`,
      now,
    );
    return report;
  }

  const task = cron.createTask('0 * * * *', () => tick().catch((err: unknown) => log.error({ err }, 'period boundary failed; next hour retries')), {
    timezone: config.timeZone,
    name: 'gatekeeper-period-boundary',
    noOverlap: true,
  });

  return {
    runBoundary,
    tick,
    /** Catch up (a boundary passed while no scheduler ran), then follow the clock. */
    async start(): Promise<void> {
      await tick().catch((err: unknown) => log.error({ err }, 'start-up period check failed; next hour retries'));
      await task.start();
    },
    async close(): Promise<void> {
      await task.stop();
      await held.close();
    },
  };
}

export type Scheduler = ReturnType<typeof createScheduler>;

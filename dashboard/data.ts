/**
 * What the dashboard shows, gathered in one place (and testable without a
 * browser): every budgeted project and every user with a quota, as admission
 * sees them now; their last 30 days; run-out projections; settled usage by
 * period; held jobs; recent alerts. Reads the daily rollup, never the ledger,
 * so it stays fast however long the ledger grows.
 */
import type { Pool } from '../src/db/pool.ts';
import type { Budgets, ScopeView } from '../src/accounting/budgets.ts';
import type { HeldJobs, HeldView } from '../src/admin/held.ts';
import { parseScopeId } from '../src/accounting/scopes.ts';
import { periodAt, previousPeriod, type PeriodKind } from '../src/periods.ts';
import { dailySeriesMany } from '../src/usage/reports.ts';
import { recentEvents } from '../src/db/events.ts';
import { projectUsageInRanges } from '../src/db/usage.ts';
import { describeProjection, project as projectRunOut } from '../src/usage/projection.ts';

export interface ScopeCard {
  view: ScopeView;
  /** e.g. "project alpha", "bob (daily quota)". */
  title: string;
  projection: string;
  /** GPU-ms per local day, last 30 days, oldest first (counted; exempt apart). */
  trend: { day: string; actualGpuMs: number; exemptGpuMs: number }[];
}

export interface PeriodUsage {
  label: string;
  from: string;
  to: string;
}

export interface DashboardData {
  now: number;
  timeZone: string;
  projects: ScopeCard[];
  users: ScopeCard[];
  runs: ScopeCard[];
  /** Settled GPU-ms per project in this and the previous day, week and month. */
  history: { periods: PeriodUsage[]; rows: { project: string; gpuMs: number[] }[] };
  held: { total: number; jobs: HeldView[] };
  alerts: { id: number; type: string; at: string; data: Record<string, unknown>; acked: boolean }[];
}

const DAYS = 30;

export async function dashboardData(deps: { pool: Pool; budgets: Budgets; held: HeldJobs; timeZone: string; now: number }): Promise<DashboardData> {
  const { pool, budgets, timeZone, now } = deps;
  const today = periodAt('day', now, timeZone).label;
  const limits = await budgets.all();
  const scopes = limits.map((l) => l.scope);
  const views = await budgets.views(scopes);

  // One query per kind for every card's 30 days, not one per card.
  const parsed = views.map((view) => ({ view, s: parseScopeId(view.scope) }));
  const namesOf = (kinds: string[]) => [...new Set(parsed.filter((p) => kinds.includes(p.s.kind)).map((p) => p.s.name))];
  const [byProject, byUser] = await Promise.all([
    dailySeriesMany(pool, { by: 'project', names: namesOf(['project']), today, days: DAYS }),
    dailySeriesMany(pool, { by: 'user', names: namesOf(['user-day', 'user-week']), today, days: DAYS }),
  ]);
  const elapsedToday = now - periodAt('day', now, timeZone).start;
  const card = (view: ScopeView, title: string, subject: string, trend: ScopeCard['trend']): ScopeCard => {
    const p = projectRunOut({
      daily: withToday(trend.map((d) => d.actualGpuMs), elapsedToday),
      limitGpuMs: view.effectiveLimitGpuMs,
      usedGpuMs: view.usedGpuMs,
      reservedGpuMs: view.reservedGpuMs,
      periodEnd: view.nextResetAt,
      now,
      timeZone,
    });
    return { view, title, projection: describeProjection(subject, p, timeZone, now), trend };
  };

  const projects: ScopeCard[] = [];
  const users: ScopeCard[] = [];
  const runs: ScopeCard[] = [];
  for (const { view, s } of parsed) {
    if (s.kind === 'project') projects.push(card(view, `project ${s.name}`, `project ${s.name}'s budget`, byProject.get(s.name)!));
    else if (s.kind === 'user-day' || s.kind === 'user-week') {
      const which = s.kind === 'user-day' ? 'daily' : 'weekly';
      users.push(card(view, `${s.name} (${which} quota)`, `${s.name}'s ${which} quota`, byUser.get(s.name)!));
    } else if (s.kind === 'run') {
      // The rollup has no per-run days, so no trend or projection: the counters say it.
      runs.push({ view, title: `run ${s.name}`, projection: '', trend: [] });
    }
  }

  const periods = usagePeriods(now, timeZone);
  const history = { periods, rows: await projectUsageInRanges(pool, periods) };

  const held = await deps.held.list({ limit: 50, offset: 0 });
  const alerts = await recentEvents(pool, ['THRESHOLD_CROSSED', 'BUDGET_EXHAUSTED', 'JOB_REJECTED', 'QUOTA_RESET'], 15);
  return {
    now,
    timeZone,
    projects,
    users,
    runs,
    history,
    held,
    alerts: alerts.map((a) => ({ id: a.id, type: a.type, at: a.at.toISOString(), data: a.data as Record<string, unknown>, acked: a.ackedAt !== null })),
  };
}

/**
 * The burn rate looks at complete days only. Once an hour of today has
 * passed, today's pace (extrapolated to a full day) counts as the most recent
 * day, so a burst that started this morning shows up before midnight.
 */
function withToday(daily: number[], elapsedTodayMs: number): number[] {
  const today = daily[daily.length - 1] ?? 0;
  if (elapsedTodayMs < 3_600_000 || today === 0) return daily;
  return [...daily.slice(0, -1), Math.round((today * 86_400_000) / elapsedTodayMs), 0];
}

/** This and the previous day, week and month, as local date ranges. */
function usagePeriods(now: number, timeZone: string): PeriodUsage[] {
  const dateOf = (ms: number) => periodAt('day', ms, timeZone).label;
  const out: PeriodUsage[] = [];
  for (const kind of ['day', 'week', 'month'] as PeriodKind[]) {
    const cur = periodAt(kind, now, timeZone);
    const prev = previousPeriod(cur, timeZone);
    out.push({ label: `this ${kind}`, from: dateOf(cur.start), to: dateOf(cur.end - 1) });
    out.push({ label: `last ${kind}`, from: dateOf(prev.start), to: dateOf(prev.end - 1) });
  }
  return out;
}

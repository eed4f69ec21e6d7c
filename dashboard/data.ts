/**
 * What the dashboard shows, gathered in one place (and testable without a
 * browser), bounded however many limits there are: the scopes nearest their
 * limits, a page of project budgets and a page of user quotas (most used
 * first, optionally those whose name holds a search string), with counts of
 * the rest; the last 30 days and run-out projections of the cards shown only;
 * settled usage by period of the projects shown; held jobs; recent alerts.
 * Pages are chosen from the rollups (src/db/scope-usage.ts); Redis is asked
 * for the shown cards only (figures in docs/benchmarks.md).
 */
import type { Pool } from '../src/db/pool.ts';
import type { Budgets, ScopeView } from '../src/accounting/budgets.ts';
import type { GpuCaps, GpuCapView } from '../src/accounting/gpu-caps.ts';
import type { HeldJobs, HeldView } from '../src/admin/held.ts';
import { parseScopeId, scopeLabel } from '../src/accounting/scopes.ts';
import { periodAt, previousPeriod, type PeriodKind } from '../src/periods.ts';
import { dailySeriesMany } from '../src/usage/reports.ts';
import { recentEvents } from '../src/db/events.ts';
import { pageReads, projectUsageInRanges } from '../src/db/usage.ts';
import { rankScopes, type RankQuery } from '../src/db/scope-usage.ts';
import { projectPartScopes } from '../src/db/limits.ts';
import { describeProjection, project as projectRunOut } from '../src/usage/projection.ts';
import type { Access } from '../src/http/access.ts';
import type { OverrideRequest, OverrideRequests } from '../src/admin/override-requests.ts';
import { trendLine, type TrendLine } from './trend-chart.ts';

export interface ScopeCard {
  view: ScopeView;
  /** e.g. "project alpha", "bob (daily quota)". */
  title: string;
  projection: string;
  /** Per local day in the limit's unit (GPU-ms, milli-units, micro-dollars), last 30 days, oldest first (counted; exempt GPU-ms apart). */
  trend: { day: string; actualGpuMs: number; exemptGpuMs: number }[];
  /** The same days as drawn: used of the limit to each day's end (dashboard/trend-chart.ts); null for run caps. */
  line: TrendLine | null;
}

export interface PeriodUsage {
  label: string;
  from: string;
  to: string;
}

/** One section of cards: the page shown and how many match in all. */
export interface CardPage {
  cards: ScopeCard[];
  total: number;
  /** 1-based. */
  page: number;
  pageSize: number;
}

/** What the page was asked for: a search string and a page of each list. */
export interface DashboardQuery {
  q: string | null;
  page: number;
  userPage: number;
}

export interface DashboardData {
  now: number;
  timeZone: string;
  query: DashboardQuery;
  /** Scopes whose settled usage is at least NEAR_PERCENT of their limit, nearest first. */
  nearLimit: CardPage;
  projects: CardPage;
  users: CardPage;
  runs: ScopeCard[];
  /** Projects' budgets for one GPU type. */
  typeBudgets: ScopeCard[];
  /** Settled GPU-ms per shown project in this and the previous day, week and month. */
  history: { periods: PeriodUsage[]; rows: { project: string; gpuMs: number[] }[] };
  held: { total: number; jobs: HeldView[] };
  /** GPU caps (at most GPU_CAP_ROWS, matching the search), most used first. */
  gpus: GpuCapView[];
  /** Recent alerts; null for those who do not read everything (alerts name every project and person). */
  alerts: { id: number; type: string; at: string; data: Record<string, unknown>; acked: boolean }[] | null;
  /**
   * Override requests: for those who decide (managers, admins) the open ones
   * they may decide; for everyone else their own, in every state. null: no
   * OverrideRequests given.
   */
  requests: { decides: boolean; total: number; items: OverrideRequest[] } | null;
}

const DAYS = 30;
/** Days read before the 30 shown: enough to reach the start of the month the first one is in. */
const LEAD_DAYS = 31;
/** Cards per section: the page stays a few hundred kilobytes (docs/benchmarks.md). */
export const PAGE_SIZE = 20;
export const NEAR_LIMIT_CARDS = 12;
export const NEAR_PERCENT = 75;
/** Run caps and GPU type budgets shown, of each; the rollups have no per-run or per-type days, so they are listed by name. */
const RUN_CARDS = 20;
const GPU_CAP_ROWS = 40;
/** Override requests shown, newest first. */
export const REQUEST_ROWS = 50;

/**
 * `access`: the person looking; the page holds only what they may see
 * (src/http/access.ts): their projects' budgets and runs, their own quota
 * and jobs, caps they see; alerts for readers of everything. Omitted: all.
 */
export async function dashboardData(deps: { pool: Pool; budgets: Budgets; held: HeldJobs; caps?: GpuCaps; requests?: OverrideRequests; timeZone: string; now: number; query?: DashboardQuery; access?: Access }): Promise<DashboardData> {
  const { pool, budgets, timeZone, now, access } = deps;
  const query = deps.query ?? { q: null, page: 1, userPage: 1 };
  const sees = {
    projects: access?.visibleProjects() ?? null,
    users: access && !access.seesOthers ? [access.who.name] : null,
  };
  const day = periodAt('day', now, timeZone);
  const today = day.label;
  const first = (kind: PeriodKind) => periodAt('day', periodAt(kind, now, timeZone).start, timeZone).label;
  const base = { q: query.q, day: today, week: first('week'), month: first('month'), nearPercent: null, ...sees } satisfies Partial<RankQuery>;
  const [near, projectRank, userRank, runRows, typeRows] = await pageReads(pool, async (db) => [
    await rankScopes(db, { ...base, kinds: ['project', 'user-day', 'user-week'], nearPercent: NEAR_PERCENT, order: 'ratio', offset: 0, limit: NEAR_LIMIT_CARDS }),
    await rankScopes(db, { ...base, kinds: ['project'], order: 'usage', offset: (query.page - 1) * PAGE_SIZE, limit: PAGE_SIZE }),
    await rankScopes(db, { ...base, kinds: ['user-day', 'user-week'], order: 'usage', offset: (query.userPage - 1) * PAGE_SIZE, limit: PAGE_SIZE }),
    await projectPartScopes(db, { kind: 'run', projects: sees.projects, q: query.q, limit: RUN_CARDS }),
    await projectPartScopes(db, { kind: 'project-type', projects: sees.projects, q: query.q, limit: RUN_CARDS }),
  ] as const);

  // One Redis call for every card on the page, one query per kind for their 30 days.
  const shown = [...new Set([...near.scopes, ...projectRank.scopes, ...userRank.scopes].map((s) => s.scope).concat(runRows, typeRows))];
  const views = new Map((await budgets.views(shown)).map((v) => [v.scope, v]));
  const namesOf = (kinds: string[]) => [...new Set(shown.map(parseScopeId).filter((s) => kinds.includes(s.kind)).map((s) => s.name))];
  const shownProjects = namesOf(['project']);
  const periods = usagePeriods(now, timeZone);
  const [byProject, byUser, historyRows] = await Promise.all([
    dailySeriesMany(pool, { by: 'project', names: shownProjects, today, days: LEAD_DAYS + DAYS }),
    dailySeriesMany(pool, { by: 'user', names: namesOf(['user-day', 'user-week']), today, days: LEAD_DAYS + DAYS }),
    projectUsageInRanges(pool, periods, projectRank.scopes.map((s) => s.name)),
  ]);
  const elapsedToday = now - day.start;
  const card = (scope: string): ScopeCard => {
    const view = views.get(scope)!;
    const s = parseScopeId(scope);
    if (s.kind === 'run' || s.kind === 'project-type') return { view, title: scopeLabel(scope), projection: '', trend: [], line: null };
    const which = s.kind === 'user-day' ? 'daily' : 'weekly';
    const [title, subject, series] =
      s.kind === 'project'
        ? [`project ${s.name}`, `project ${s.name}'s budget`, byProject.get(s.name)!]
        : [`${s.name} (${which} quota)`, `${s.name}'s ${which} quota`, byUser.get(s.name)!];
    // The days in the limit's unit; exempt jobs cost a limit in units or dollars nothing.
    const inUnit = view.unit === 'gpuHours' ? series : series.map((d) => ({ day: d.day, actualGpuMs: view.unit === 'units' ? d.unitsMilli : d.usdMicro, exemptGpuMs: 0 }));
    const trend = inUnit.slice(-DAYS);
    const sum = (k: 'actualGpuMs' | 'exemptGpuMs') => trend.reduce((a, d) => a + d[k], 0);
    // A one-off budget's line starts from what it had settled before the 30 days (its counters hold all it ever used).
    const before = { actualGpuMs: Math.max(0, view.usedGpuMs - sum('actualGpuMs')), exemptGpuMs: view.unit === 'gpuHours' ? Math.max(0, view.exemptUsedGpuMs - sum('exemptGpuMs')) : 0 };
    const line = trendLine(view.period, trend, inUnit.slice(0, -DAYS), before);
    const p = projectRunOut({
      daily: withToday(trend.map((d) => d.actualGpuMs), elapsedToday),
      limitGpuMs: view.effectiveLimitGpuMs,
      usedGpuMs: view.usedGpuMs,
      reservedGpuMs: view.reservedGpuMs,
      periodEnd: view.nextResetAt,
      now,
      timeZone,
    });
    return { view, title, projection: describeProjection(subject, p, timeZone, now), trend, line };
  };
  const section = (r: { total: number; scopes: { scope: string }[] }, page: number, pageSize: number): CardPage => ({ cards: r.scopes.map((s) => card(s.scope)), total: r.total, page, pageSize });

  const held = await deps.held.list({ limit: 50, offset: 0, within: access?.jobFilter() ?? undefined });
  const q = query.q?.toLowerCase() ?? null;
  const gpus = (deps.caps ? await deps.caps.list() : [])
    .filter((c) => (q === null || c.scope.toLowerCase().includes(q)) && (!access || access.canSeeCap(c.scope)))
    .sort((a, b) => b.inFlightGpus / Math.max(1, b.effectiveMaxGpus) - a.inFlightGpus / Math.max(1, a.effectiveMaxGpus) || (a.scope < b.scope ? -1 : 1))
    .slice(0, GPU_CAP_ROWS);
  // Alerts name every project and person: for readers of everything.
  const alerts = !access || access.readsAll ? await recentEvents(pool, ['THRESHOLD_CROSSED', 'BUDGET_EXHAUSTED', 'JOB_REJECTED', 'QUOTA_RESET'], 15) : null;
  const requests = deps.requests ? await requestsFor(deps.requests, access) : null;
  return {
    now,
    timeZone,
    query,
    nearLimit: section(near, 1, NEAR_LIMIT_CARDS),
    projects: section(projectRank, query.page, PAGE_SIZE),
    users: section(userRank, query.userPage, PAGE_SIZE),
    runs: runRows.map(card),
    typeBudgets: typeRows.map(card),
    history: { periods, rows: historyRows },
    held,
    gpus,
    alerts: alerts && alerts.map((a) => ({ id: a.id, type: a.type, at: a.at.toISOString(), data: a.data as Record<string, unknown>, acked: a.ackedAt !== null })),
    requests,
  };
}

/**
 * The requests the person looking may decide (open, of projects they manage),
 * or else their own in every state. Within what they may see, as the API
 * lists them (GET /api/v1/override-requests).
 */
async function requestsFor(requests: OverrideRequests, access: Access | undefined): Promise<NonNullable<DashboardData['requests']>> {
  const within = access?.jobFilter() ?? null;
  const decides = !access || access.isAdmin || access.who.role === 'manager';
  if (!decides) {
    const mine = await requests.list({ within, limit: REQUEST_ROWS, offset: 0 });
    return { decides, total: mine.total, items: mine.requests };
  }
  const open = await requests.list({ state: 'open', within, limit: REQUEST_ROWS, offset: 0 });
  // A manager's scope holds their own jobs' requests too, in projects they may not manage.
  const items = open.requests.filter((r) => !access || access.canManageProject(r.project));
  return { decides, total: open.total - (open.requests.length - items.length), items };
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

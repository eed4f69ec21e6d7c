/**
 * Usage reads for reports, the dashboard and the monthly export: totals
 * from the daily rollups (usage_daily, usage_by_day; a year of a busy fleet
 * is thousands of rows), and ended jobs from the ledger a page at a time.
 * Days are local dates ('YYYY-MM-DD') in the time zone the writer used.
 */
import type { Pool, PoolClient, Queryable } from './pool.ts';
import { inSnapshot } from './transaction.ts';
import { pairTotalsPage } from './usage-pairs.ts';
import { chargedSql } from './ledger.ts';

/** The ended row's charges (alias e), as the ledger's audit reads them. */
const CHARGED = chargedSql('e.');

/**
 * Reads for a page, in one snapshot and without parallel workers: a worker
 * starts in milliseconds on an idle host but tens of them on a busy one,
 * more than these index reads take (figures in docs/benchmarks.md).
 */
export function pageReads<T>(pool: Pool, fn: (db: PoolClient) => Promise<T>): Promise<T> {
  return inSnapshot(pool, async (db) => {
    await db.query('SET LOCAL max_parallel_workers_per_gather = 0');
    return fn(db);
  });
}

/** The columns of usage_daily a report may group by. */
export const USAGE_COLUMNS = ['project', 'user_name', 'job_type', 'gpu_type', 'day'] as const;
export type UsageColumn = (typeof USAGE_COLUMNS)[number];

export interface UsageTotals {
  /** The grouping columns' values (day as 'YYYY-MM-DD'). */
  keys: Partial<Record<UsageColumn, string>>;
  jobs: number;
  /** Counted GPU-ms (exempt jobs excluded). */
  actualGpuMs: number;
  estimatedGpuMs: number;
  /** GPU-ms of exempt job types (tracked, not counted). */
  exemptGpuMs: number;
  /** What ended jobs were charged, corrections included: GPU-ms times usage factor, milli-units, micro-dollars. */
  chargedGpuMs: number;
  unitsMilli: number;
  usdMicro: number;
}

/** The sums every usage read takes, named as toTotals reads them. */
export const USAGE_SUMS = `coalesce(sum(actual_gpu_ms) FILTER (WHERE NOT exempt), 0) AS actual,
  coalesce(sum(estimated_gpu_ms) FILTER (WHERE NOT exempt), 0) AS estimated, coalesce(sum(actual_gpu_ms) FILTER (WHERE exempt), 0) AS exempt,
  coalesce(sum(charged_gpu_ms), 0) AS charged, coalesce(sum(units_milli), 0) AS units, coalesce(sum(usd_micro), 0) AS usd`;

/** A row of USAGE_SUMS as numbers (sum(bigint) is numeric: exact, returned as a string). */
export function toTotals(x: Record<string, unknown>): Omit<UsageTotals, 'keys' | 'jobs'> {
  return {
    actualGpuMs: Number(x.actual ?? 0), estimatedGpuMs: Number(x.estimated ?? 0), exemptGpuMs: Number(x.exempt ?? 0),
    chargedGpuMs: Number(x.charged ?? 0), unitsMilli: Number(x.units ?? 0), usdMicro: Number(x.usd ?? 0),
  };
}

/**
 * Totals over the days from..to (inclusive), grouped by `groupBy` (ordered by
 * the same columns), for one project and/or user if given. Column names
 * cannot be parameters: they come from USAGE_COLUMNS only. Grouped by project
 * and/or user only, whole months come from usage_monthly and only the days
 * before the first and after the last whole month from usage_daily: a year
 * reads a dozen rows per pair; a page (limit) by project (and user) reads
 * whole months, whole weeks and at most six days at each end, and only its
 * pairs' rows of months and weeks (./usage-pairs.ts; figures in
 * docs/benchmarks.md).
 */
export async function usageTotals(
  db: Queryable,
  f: { from: string; to: string; groupBy: UsageColumn[]; project: string | null; user: string | null; limit?: number; offset?: number },
): Promise<UsageTotals[]> {
  const cols = f.groupBy.map((c) => {
    if (!USAGE_COLUMNS.includes(c)) throw new RangeError(`not a usage column: ${c}`);
    return c;
  });
  const monthly = cols.every((c) => c === 'project' || c === 'user_name');
  const months = monthly ? wholeMonths(f.from, f.to) : null;
  const byPair = cols.join() === 'project,user_name' || cols.join() === 'project';
  if (byPair && f.limit !== undefined) {
    return pairTotalsPage(db, { from: f.from, to: f.to, byUser: cols.length === 2, project: f.project, user: f.user, offset: f.offset ?? 0, limit: f.limit });
  }
  const select = cols.map((c) => (c === 'day' ? `to_char(day, 'YYYY-MM-DD') AS day` : c));
  const positions = cols.map((_, i) => i + 1).join(', ');
  const filter = `($3::text IS NULL OR project = $3::text) AND ($4::text IS NULL OR user_name = $4::text)`;
  const source = months
    ? `(SELECT project, user_name, exempt, jobs, estimated_gpu_ms, actual_gpu_ms, charged_gpu_ms, units_milli, usd_micro FROM usage_monthly
          WHERE month >= $5::date AND month < $6::date AND ${filter}
        UNION ALL
        SELECT project, user_name, exempt, jobs, estimated_gpu_ms, actual_gpu_ms, charged_gpu_ms, units_milli, usd_micro FROM usage_daily
          WHERE ((day >= $1::date AND day < $5::date) OR (day >= $6::date AND day <= $2::date)) AND ${filter}) AS u`
    : `usage_daily WHERE day BETWEEN $1::date AND $2::date AND ${filter}`;
  const r = await db.query(
    `SELECT ${[...select, 'sum(jobs)::bigint AS jobs', USAGE_SUMS].join(', ')}
     FROM ${source}
     ${cols.length ? `GROUP BY ${positions} ORDER BY ${positions}` : ''}
     LIMIT $${months ? 7 : 5}::int OFFSET $${months ? 8 : 6}::int`,
    [f.from, f.to, f.project, f.user, ...(months ? [months.start, months.end] : []), f.limit ?? null, f.offset ?? 0],
  );
  // sum(bigint) is numeric: exact, returned as a string (null over no rows).
  return r.rows.map((x: Record<string, unknown>) => ({
    keys: Object.fromEntries(cols.map((c) => [c, x[c]])),
    jobs: Number(x.jobs),
    ...toTotals(x),
  }));
}

/** The whole months inside from..to as [start, end) first days, or null when none fits. */
export function wholeMonths(from: string, to: string): { start: string; end: string } | null {
  const first = (d: Date) => new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
  const f = new Date(`${from}T00:00:00Z`);
  const afterTo = new Date(Date.parse(`${to}T00:00:00Z`) + 86_400_000);
  const start = f.getUTCDate() === 1 ? f : new Date(Date.UTC(f.getUTCFullYear(), f.getUTCMonth() + 1, 1));
  const end = first(afterTo);
  return start < end ? { start: start.toISOString().slice(0, 10), end: end.toISOString().slice(0, 10) } : null;
}

/**
 * Rebuild every coarser rollup from usage_daily, the widest one, in one
 * transaction's worth of statements: usage_by_day, usage_by_period,
 * usage_monthly and usage_weekly then hold exactly what the ledger writer would have added
 * (nothing for a row naming neither project nor user, as the writer skips them).
 */
export async function rebuildRollups(db: Queryable): Promise<void> {
  await db.query('TRUNCATE usage_by_day, usage_by_period, usage_monthly, usage_weekly');
  await db.query(
    `INSERT INTO usage_by_day
       SELECT 'project', project, day, exempt, sum(jobs), sum(actual_gpu_ms), sum(charged_gpu_ms), sum(units_milli), sum(usd_micro)
       FROM usage_daily WHERE project <> '' GROUP BY project, day, exempt
       UNION ALL
       SELECT 'user', user_name, day, exempt, sum(jobs), sum(actual_gpu_ms), sum(charged_gpu_ms), sum(units_milli), sum(usd_micro)
       FROM usage_daily WHERE user_name <> '' GROUP BY user_name, day, exempt`,
  );
  await db.query(
    `INSERT INTO usage_by_period
       SELECT kind, p.period, date_trunc(p.period, day)::date, name, exempt, sum(jobs), sum(actual_gpu_ms), sum(charged_gpu_ms), sum(units_milli), sum(usd_micro)
       FROM usage_by_day, (VALUES ('week'), ('month')) AS p(period) GROUP BY 1, 2, 3, 4, 5`,
  );
  await db.query(
    `INSERT INTO usage_monthly
       SELECT date_trunc('month', day)::date, project, user_name, exempt, sum(jobs), sum(estimated_gpu_ms), sum(actual_gpu_ms),
              sum(charged_gpu_ms), sum(units_milli), sum(usd_micro)
       FROM usage_daily WHERE project <> '' OR user_name <> '' GROUP BY 1, 2, 3, 4`,
  );
  await db.query(
    `INSERT INTO usage_weekly
       SELECT greatest(date_trunc('week', day), date_trunc('month', day))::date, project, user_name, exempt,
              sum(jobs), sum(estimated_gpu_ms), sum(actual_gpu_ms), sum(charged_gpu_ms), sum(units_milli), sum(usd_micro)
       FROM usage_daily WHERE project <> '' OR user_name <> '' GROUP BY 1, 2, 3, 4`,
  );
}

/**
 * GPU-ms per project (or user) and local day over the `days` days up to
 * `today` (inclusive), counted and exempt apart. Days without usage have
 * no row.
 */
export async function dailyUsage(db: Queryable, f: { kind: 'project' | 'user'; names: string[]; today: string; days: number }): Promise<{ name: string; day: string; actualGpuMs: number; exemptGpuMs: number; unitsMilli: number; usdMicro: number }[]> {
  const r = await db.query(
    `SELECT name, to_char(day, 'YYYY-MM-DD') AS day,
            coalesce(sum(charged_gpu_ms) FILTER (WHERE NOT exempt), 0) AS actual,
            coalesce(sum(actual_gpu_ms) FILTER (WHERE exempt), 0) AS exempt,
            coalesce(sum(units_milli) FILTER (WHERE NOT exempt), 0) AS units,
            coalesce(sum(usd_micro) FILTER (WHERE NOT exempt), 0) AS usd
     FROM usage_by_day WHERE kind = $4::text AND name = ANY($3::text[]) AND day BETWEEN $1::date - $2::int AND $1::date
     GROUP BY 1, 2`,
    [f.today, f.days - 1, f.names, f.kind],
  );
  return r.rows.map((x: { name: string; day: string; actual: string; exempt: string; units: string; usd: string }) => ({
    name: x.name, day: x.day, actualGpuMs: Number(x.actual), exemptGpuMs: Number(x.exempt), unitsMilli: Number(x.units), usdMicro: Number(x.usd),
  }));
}

/**
 * Counted GPU-ms per project in each of `ranges` (local dates, inclusive),
 * one number per range in their order, for the projects named (every project
 * with usage since the earliest range began, if `names` is omitted); by
 * project name.
 */
export async function projectUsageInRanges(db: Queryable, ranges: { from: string; to: string }[], names?: string[]): Promise<{ project: string; gpuMs: number[] }[]> {
  const sums = ranges.map((_, i) => `coalesce(sum(actual_gpu_ms) FILTER (WHERE NOT exempt AND day BETWEEN $${2 * i + 1}::date AND $${2 * i + 2}::date), 0) AS p${i}`);
  const n = 2 * ranges.length;
  const r = await db.query(
    `SELECT name AS project, ${sums.join(', ')}
     FROM usage_by_day WHERE kind = 'project' AND day >= $${n + 1}::date AND ($${n + 2}::text[] IS NULL OR name = ANY($${n + 2}::text[]))
     GROUP BY name ORDER BY name`,
    [...ranges.flatMap((p) => [p.from, p.to]), ranges.map((p) => p.from).sort()[0], names ?? null],
  );
  return r.rows.map((x: Record<string, unknown>) => ({ project: String(x.project), gpuMs: ranges.map((_, i) => Number(x[`p${i}`])) }));
}

/** A job that ended (its settle or release row), with its reserve row's override flag. */
export interface EndedJob {
  id: number;
  at: Date;
  /** The local date it ended, 'YYYY-MM-DD'. */
  date: string;
  project: string;
  user: string;
  jobType: string | null;
  gpuType: string | null;
  run: string | null;
  jobId: string;
  kind: string;
  estimatedGpuMs: number;
  actualGpuMs: number | null;
  exempt: boolean;
  override: boolean;
  /** What it was charged (a correction: the change), as CHARGED_SQL reads it. */
  chargedGpuMs: number;
  unitsMilli: number;
  usdMicro: number;
  /** A correction row: which kind, and the row it corrects. */
  correction: string | null;
}

/**
 * One page of the jobs that ended in [start, end), by (at, id): the first
 * `limit` after `after` (from the start if null). Dates are local in `timeZone`.
 */
export async function endedJobsPage(
  db: Queryable,
  p: { start: Date; end: Date; timeZone: string; after: { at: Date; id: number } | null; limit: number },
): Promise<EndedJob[]> {
  const r = await db.query(
    `SELECT e.id, e.at, to_char(e.at AT TIME ZONE $3::text, 'YYYY-MM-DD') AS date, e.project, e.user_name, e.job_type, e.gpu_type, e.run,
            e.job_id, e.kind, e.estimated_gpu_ms, e.actual_gpu_ms, e.exempt, coalesce(r.override, false) AS override, e.correction,
            ${CHARGED.gpuMs} AS charged, ${CHARGED.units} AS units, ${CHARGED.usd} AS usd
     FROM ledger e LEFT JOIN ledger r ON r.job_id = e.job_id AND r.admitted_at = e.admitted_at AND r.kind = 'reserve'
     WHERE e.kind <> 'reserve' AND e.at >= $1::timestamptz AND e.at < $2::timestamptz
       AND ($4::timestamptz IS NULL OR (e.at, e.id) > ($4::timestamptz, $5::bigint))
     ORDER BY e.at, e.id LIMIT $6::int`,
    [p.start, p.end, p.timeZone, p.after?.at ?? null, p.after?.id ?? null, p.limit],
  );
  return r.rows.map((x: Record<string, any>) => ({
    id: Number(x.id),
    at: x.at,
    date: x.date,
    project: x.project,
    user: x.user_name,
    jobType: x.job_type,
    gpuType: x.gpu_type,
    run: x.run,
    jobId: x.job_id,
    kind: x.kind,
    estimatedGpuMs: Number(x.estimated_gpu_ms),
    actualGpuMs: x.actual_gpu_ms === null ? null : Number(x.actual_gpu_ms),
    exempt: x.exempt,
    override: x.override,
    chargedGpuMs: Number(x.charged ?? 0),
    unitsMilli: Number(x.units),
    usdMicro: Number(x.usd),
    correction: x.correction,
  }));
}

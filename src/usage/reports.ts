/**
 * Usage reports from Postgres: totals over a date range grouped any way
 * (from the daily rollup, so a year of a busy fleet is thousands of rows),
 * daily series for trends, and the monthly per-job export (from the ledger,
 * streamed a page at a time by (at, id), so a month of a million jobs never
 * sits in memory). Days are local days in GATEKEEPER_TIMEZONE.
 */
import type { Queryable } from '../db/pool.ts';
import { periodAt } from '../periods.ts';
import { printable } from '../text.ts';

export const GROUPS = ['project', 'user', 'jobType', 'gpuType', 'day'] as const;
export type Group = (typeof GROUPS)[number];
const COLUMN: Record<Group, string> = { project: 'project', user: 'user_name', jobType: 'job_type', gpuType: 'gpu_type', day: 'day' };

export interface UsageRow {
  project?: string;
  user?: string;
  jobType?: string;
  gpuType?: string;
  day?: string;
  jobs: number;
  /** Counted GPU-ms (exempt jobs excluded). */
  actualGpuMs: number;
  estimatedGpuMs: number;
  /** GPU-ms of exempt job types (tracked, not counted). */
  exemptGpuMs: number;
}

export interface UsageFilter {
  /** Local dates, inclusive. */
  from: string;
  to: string;
  groupBy: Group[];
  project?: string | undefined;
  user?: string | undefined;
}

export async function usageReport(db: Queryable, f: UsageFilter): Promise<UsageRow[]> {
  const cols = f.groupBy.map((g) => COLUMN[g]);
  const params: unknown[] = [f.from, f.to];
  const where = ['day BETWEEN $1::date AND $2::date'];
  if (f.project) where.push(`project = $${params.push(f.project)}`);
  if (f.user) where.push(`user_name = $${params.push(f.user)}`);
  const select = cols.map((c) => (c === 'day' ? `to_char(day, 'YYYY-MM-DD') AS day` : c));
  const r = await db.query(
    `SELECT ${[...select, 'sum(jobs)::bigint AS jobs',
      'sum(actual_gpu_ms) FILTER (WHERE NOT exempt) AS actual', 'sum(estimated_gpu_ms) FILTER (WHERE NOT exempt) AS estimated',
      'sum(actual_gpu_ms) FILTER (WHERE exempt) AS exempt'].join(', ')}
     FROM usage_daily WHERE ${where.join(' AND ')}
     ${cols.length ? `GROUP BY ${cols.map((_, i) => i + 1).join(', ')} ORDER BY ${cols.map((_, i) => i + 1).join(', ')}` : ''}`,
    params,
  );
  return r.rows.map((x: Record<string, unknown>) => {
    const row: UsageRow = { jobs: Number(x.jobs), actualGpuMs: Number(x.actual ?? 0), estimatedGpuMs: Number(x.estimated ?? 0), exemptGpuMs: Number(x.exempt ?? 0) };
    for (const g of f.groupBy) (row as unknown as Record<string, unknown>)[g] = x[COLUMN[g] === 'user_name' ? 'user_name' : COLUMN[g]];
    return row;
  });
}

/**
 * GPU-ms per local day for the last `days` days up to `today` (inclusive),
 * oldest first, zeros included, for many projects (or users) in one query:
 * name -> series.
 */
export async function dailySeriesMany(db: Queryable, opts: { by: 'project' | 'user'; names: string[]; today: string; days: number }): Promise<Map<string, { day: string; actualGpuMs: number; exemptGpuMs: number }[]>> {
  const r = await db.query(
    `SELECT name, to_char(day, 'YYYY-MM-DD') AS day,
            coalesce(sum(actual_gpu_ms) FILTER (WHERE NOT exempt), 0) AS actual,
            coalesce(sum(actual_gpu_ms) FILTER (WHERE exempt), 0) AS exempt
     FROM usage_by_day WHERE kind = $4 AND name = ANY($3::text[]) AND day BETWEEN $1::date - $2::int AND $1::date
     GROUP BY 1, 2`,
    [opts.today, opts.days - 1, opts.names, opts.by],
  );
  const days: string[] = [];
  const last = Date.parse(`${opts.today}T00:00:00Z`);
  for (let i = opts.days - 1; i >= 0; i--) days.push(new Date(last - i * 86_400_000).toISOString().slice(0, 10));
  const out = new Map(opts.names.map((n) => [n, days.map((day) => ({ day, actualGpuMs: 0, exemptGpuMs: 0 }))]));
  for (const x of r.rows as { name: string; day: string; actual: number; exempt: number }[]) {
    const d = out.get(x.name)?.[days.indexOf(x.day)];
    if (d) Object.assign(d, { actualGpuMs: Number(x.actual), exemptGpuMs: Number(x.exempt) });
  }
  return out;
}

/** A month 'YYYY-MM' in a time zone as [start, end) instants; null if the string is not a month. */
export function monthRange(month: string, timeZone: string): { start: number; end: number } | null {
  const m = /^(\d{4})-(0[1-9]|1[0-2])$/.exec(month);
  if (!m) return null;
  const p = periodAt('month', Date.UTC(Number(m[1]), Number(m[2]) - 1, 15, 12), timeZone);
  return { start: p.start, end: p.end };
}

export const EXPORT_COLUMNS = [
  'date', 'endedAt', 'project', 'user', 'jobType', 'gpuType', 'run', 'jobId', 'kind',
  'estimatedGpuMs', 'actualGpuMs', 'estimatedGpuHours', 'actualGpuHours', 'exempt', 'override',
] as const;
export type ExportRow = Record<(typeof EXPORT_COLUMNS)[number], string | number | boolean | null>;

/**
 * Every job that ended in [start, end), one row each (its settle or release
 * row, with the reserve row's override flag), in pages of `page` rows by
 * (at, id); `onPage` is awaited before the next page is read.
 */
export async function exportJobs(db: Queryable, range: { start: number; end: number }, timeZone: string, onPage: (rows: ExportRow[]) => Promise<void>, page = 5_000): Promise<number> {
  let after: { at: Date; id: number } | null = null;
  let total = 0;
  for (;;) {
    const params: unknown[] = [new Date(range.start), new Date(range.end), timeZone];
    const cursor: string = after ? `AND (e.at, e.id) > ($${params.push(after.at)}::timestamptz, $${params.push(after.id)}::bigint)` : '';
    const r = await db.query(
      `SELECT e.id, e.at, to_char(e.at AT TIME ZONE $3::text, 'YYYY-MM-DD') AS date, e.project, e.user_name, e.job_type, e.gpu_type, e.run,
              e.job_id, e.kind, e.estimated_gpu_ms, e.actual_gpu_ms, e.exempt, coalesce(r.override, false) AS override
       FROM ledger e LEFT JOIN ledger r ON r.job_id = e.job_id AND r.admitted_at = e.admitted_at AND r.kind = 'reserve'
       WHERE e.kind <> 'reserve' AND e.at >= $1::timestamptz AND e.at < $2::timestamptz ${cursor}
       ORDER BY e.at, e.id LIMIT ${page}`,
      params,
    );
    if (r.rows.length === 0) return total;
    total += r.rows.length;
    await onPage(
      r.rows.map((x: Record<string, any>): ExportRow => ({
        date: x.date,
        endedAt: (x.at as Date).toISOString(),
        project: x.project,
        user: x.user_name,
        jobType: x.job_type,
        gpuType: x.gpu_type,
        run: x.run,
        jobId: x.job_id,
        kind: x.kind,
        estimatedGpuMs: Number(x.estimated_gpu_ms),
        actualGpuMs: Number(x.actual_gpu_ms ?? 0),
        estimatedGpuHours: Number(x.estimated_gpu_ms) / 3_600_000,
        actualGpuHours: Number(x.actual_gpu_ms ?? 0) / 3_600_000,
        exempt: x.exempt,
        override: x.override,
      })),
    );
    const last = r.rows[r.rows.length - 1]!;
    after = { at: last.at, id: Number(last.id) };
    if (r.rows.length < page) return total;
  }
}

/** One CSV line; quotes what needs it, defuses spreadsheet formulas and escapes control characters in free text. */
export function csvLine(values: (string | number | boolean | null)[]): string {
  return values
    .map((v) => {
      if (v === null) return '';
      // Escape sequences shown, not obeyed, when the file is printed (data stored before they were refused may hold them).
      let s = typeof v === 'string' ? printable(v) : String(v);
      if (typeof v === 'string' && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
      return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
    })
    .join(',');
}

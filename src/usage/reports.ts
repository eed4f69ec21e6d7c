/**
 * Usage reports from Postgres: totals over a date range grouped any way
 * (from the daily rollup, so a year of a busy fleet is thousands of rows),
 * daily series for trends, and the monthly per-job export (from the ledger,
 * streamed a page at a time by (at, id), so a month of a million jobs never
 * sits in memory). Days are local days in GATEKEEPER_TIMEZONE.
 */
import type { Pool, Queryable } from '../db/pool.ts';
import { dailyUsage, endedJobsPage, pageReads, usageTotals, type UsageColumn } from '../db/usage.ts';
import { periodAt } from '../periods.ts';
import { printable } from '../text.ts';

export const GROUPS = ['project', 'user', 'jobType', 'gpuType', 'day'] as const;
export type Group = (typeof GROUPS)[number];
const COLUMN: Record<Group, UsageColumn> = { project: 'project', user: 'user_name', jobType: 'job_type', gpuType: 'gpu_type', day: 'day' };

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
  /** Charged, corrections included: GPU-ms times usage factor, milli-units, micro-dollars. */
  chargedGpuMs: number;
  unitsMilli: number;
  usdMicro: number;
}

export interface UsageFilter {
  /** Local dates, inclusive. */
  from: string;
  to: string;
  groupBy: Group[];
  project?: string | undefined;
  user?: string | undefined;
  /** At most this many rows (all if omitted), after skipping `offset` in the report's order. */
  limit?: number | undefined;
  offset?: number | undefined;
}

export async function usageReport(pool: Pool, f: UsageFilter): Promise<UsageRow[]> {
  const totals = await pageReads(pool, (db) => usageTotals(db, { from: f.from, to: f.to, groupBy: f.groupBy.map((g) => COLUMN[g]), project: f.project || null, user: f.user || null, ...(f.limit !== undefined ? { limit: f.limit } : {}), offset: f.offset ?? 0 }));
  return totals.map(({ keys, ...sums }) => {
    const row: UsageRow = sums;
    for (const g of f.groupBy) (row as unknown as Record<string, unknown>)[g] = keys[COLUMN[g]];
    return row;
  });
}

/**
 * GPU-ms per local day for the last `days` days up to `today` (inclusive),
 * oldest first, zeros included, for many projects (or users) in one query:
 * name -> series.
 */
export async function dailySeriesMany(db: Queryable, opts: { by: 'project' | 'user'; names: string[]; today: string; days: number }): Promise<Map<string, DailyCharged[]>> {
  const rows = await dailyUsage(db, { kind: opts.by, names: opts.names, today: opts.today, days: opts.days });
  const days: string[] = [];
  const last = Date.parse(`${opts.today}T00:00:00Z`);
  for (let i = opts.days - 1; i >= 0; i--) days.push(new Date(last - i * 86_400_000).toISOString().slice(0, 10));
  const out = new Map(opts.names.map((n) => [n, days.map((day) => ({ day, actualGpuMs: 0, exemptGpuMs: 0, unitsMilli: 0, usdMicro: 0 }))]));
  for (const { name, day, ...x } of rows) {
    const d = out.get(name)?.[days.indexOf(day)];
    if (d) Object.assign(d, x);
  }
  return out;
}

/** One local day of a project's or person's ended jobs: counted GPU-ms (as charged), exempt GPU-ms apart, milli-units and micro-dollars. */
export interface DailyCharged {
  day: string;
  actualGpuMs: number;
  exemptGpuMs: number;
  unitsMilli: number;
  usdMicro: number;
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
  'chargedGpuHours', 'units', 'costUSD', 'correction',
] as const;
export type ExportRow = Record<(typeof EXPORT_COLUMNS)[number], string | number | boolean | null>;

/**
 * Every job that ended in [start, end), one row each (its settle or release
 * row, with the reserve row's override flag), and every correction dated in
 * it (kind 'correction': what it changed), in pages of `page` rows by
 * (at, id); `onPage` is awaited before the next page is read.
 */
export async function exportJobs(db: Queryable, range: { start: number; end: number }, timeZone: string, onPage: (rows: ExportRow[]) => Promise<void>, page = 5_000): Promise<number> {
  let after: { at: Date; id: number } | null = null;
  let total = 0;
  for (;;) {
    const rows = await endedJobsPage(db, { start: new Date(range.start), end: new Date(range.end), timeZone, after, limit: page });
    if (rows.length === 0) return total;
    total += rows.length;
    await onPage(
      rows.map((x): ExportRow => ({
        date: x.date,
        endedAt: x.at.toISOString(),
        project: x.project,
        user: x.user,
        jobType: x.jobType,
        gpuType: x.gpuType,
        run: x.run,
        jobId: x.jobId,
        kind: x.kind,
        estimatedGpuMs: x.estimatedGpuMs,
        actualGpuMs: x.actualGpuMs ?? 0,
        estimatedGpuHours: x.estimatedGpuMs / 3_600_000,
        actualGpuHours: (x.actualGpuMs ?? 0) / 3_600_000,
        exempt: x.exempt,
        override: x.override,
        // What it was charged in each unit (a correction row: the change, negative when it gives back).
        chargedGpuHours: x.chargedGpuMs / 3_600_000,
        units: x.unitsMilli / 1000,
        costUSD: x.usdMicro / 1_000_000,
        correction: x.correction,
      })),
    );
    const last = rows[rows.length - 1]!;
    after = { at: last.at, id: last.id };
    if (rows.length < page) return total;
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

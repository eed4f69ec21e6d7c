/**
 * One page of a report grouped by project and user (or by project), without
 * aggregating every pair first: the range is cut into whole months
 * (usage_monthly), whole weeks (usage_weekly, one read per week) and at most
 * six days at each end (usage_daily, hashed by day range); each month or week
 * stream is summed along its key in byte order and cut at the page's end, and
 * the streams are merged here (figures in docs/benchmarks.md).
 */
import type { Queryable } from './pool.ts';
import { toTotals, USAGE_SUMS, type UsageTotals } from './usage.ts';

interface Page {
  from: string;
  to: string;
  byUser: boolean;
  project: string | null;
  user: string | null;
  offset: number;
  limit: number;
}

/** A range cut into pieces: whole months [start, end), week starts, and days (all 'YYYY-MM-DD'). */
export interface Cover {
  months: { start: string; end: string } | null;
  weeks: string[];
  days: string[];
}

const DAY = 86_400_000;
const iso = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/**
 * Cover from..to (inclusive) greedily: a whole month where one starts and
 * fits, else a whole week (Monday or 1st to the next Monday or 1st, as
 * usage_weekly cuts them), else a day.
 */
export function cover(from: string, to: string): Cover {
  const end = Date.parse(`${to}T00:00:00Z`) + DAY;
  const out: Cover = { months: null, weeks: [], days: [] };
  for (let at = Date.parse(`${from}T00:00:00Z`); at < end; ) {
    const d = new Date(at);
    const nextMonth = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
    const weekEnd = Math.min(nextMonth, at + ((8 - (d.getUTCDay() || 7)) * DAY));
    if (d.getUTCDate() === 1 && nextMonth <= end) {
      out.months = { start: out.months?.start ?? iso(at), end: iso(nextMonth) };
      at = nextMonth;
    } else if ((d.getUTCDay() === 1 || d.getUTCDate() === 1) && weekEnd <= end) {
      out.weeks.push(iso(at));
      at = weekEnd;
    } else {
      out.days.push(iso(at));
      at += DAY;
    }
  }
  return out;
}

type Amounts = Omit<UsageTotals, 'keys' | 'jobs'>;
/** What merging two streams' sums adds. */
const AMOUNTS = ['jobs', 'actualGpuMs', 'estimatedGpuMs', 'exemptGpuMs', 'chargedGpuMs', 'unitsMilli', 'usdMicro'] as const;
interface Sums extends Amounts { project: string; user_name?: string; jobs: number }

export async function pairTotalsPage(db: Queryable, f: Page): Promise<UsageTotals[]> {
  const want = f.offset + f.limit;
  const keys = f.byUser ? 'project COLLATE "C", user_name COLLATE "C"' : 'project COLLATE "C"';
  const names = f.byUser ? 'project COLLATE "C" AS project, user_name COLLATE "C" AS user_name' : 'project COLLATE "C" AS project';
  const sums = `sum(jobs) AS jobs, ${USAGE_SUMS}`;
  const filter = `($1::text IS NULL OR project = $1::text) AND ($2::text IS NULL OR user_name = $2::text)`;
  // `where` reads its own parameters from $4 on.
  const read = async (table: string, where: string, params: unknown[]): Promise<Sums[]> =>
    (await db.query(`SELECT ${names}, ${sums} FROM ${table} WHERE (${where}) AND ${filter} GROUP BY ${keys} ORDER BY ${keys} LIMIT $3::int`, [f.project, f.user, want, ...params])).rows.map(
      (x: Record<string, string>): Sums => ({ project: x.project!, ...(f.byUser ? { user_name: x.user_name! } : {}), jobs: Number(x.jobs), ...toTotals(x) }),
    );
  const parts = cover(f.from, f.to);
  // The edge days are read by day and hashed (at most twelve); whole weeks and months along their
  // keys, sorting and hashing turned off so each stream stops at the page's end.
  const streams: Sums[][] = [];
  if (parts.days.length) streams.push(await read('usage_daily', 'day = ANY($4::date[])', [parts.days]));
  await db.query('SET LOCAL enable_hashagg = off');
  await db.query('SET LOCAL enable_sort = off');
  for (const week of parts.weeks) streams.push(await read('usage_weekly', 'week = $4::date', [week]));
  if (parts.months) streams.push(await read('usage_monthly', 'month >= $4::date AND month < $5::date', [parts.months.start, parts.months.end]));

  // A stream cut at `want` rows says nothing past its last key: the merge stops at the smaller such key.
  const key = (s: Sums) => (f.byUser ? [s.project, s.user_name!] : [s.project]);
  const cmp = (a: Sums, b: Sums) => compare(key(a), key(b));
  const cuts = streams.filter((s) => s.length === want).map((s) => s.at(-1)!);
  const stop = cuts.sort(cmp)[0];
  const merged = new Map<string, Sums>();
  for (const s of streams.flat().sort(cmp)) {
    if (stop && cmp(s, stop) > 0) continue;
    const k = key(s).join('\0');
    const m = merged.get(k);
    if (!m) merged.set(k, { ...s });
    else for (const k of AMOUNTS) m[k] += s[k];
  }
  return [...merged.values()].slice(f.offset, want).map((s) => ({
    keys: f.byUser ? { project: s.project, user_name: s.user_name! } : { project: s.project },
    jobs: s.jobs,
    ...Object.fromEntries(AMOUNTS.filter((k) => k !== 'jobs').map((k) => [k, s[k]])) as Amounts,
  }));
}

/** Byte order of ASCII names (COLLATE "C"): JavaScript's < on UTF-16 code units agrees. */
function compare(a: string[], b: string[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  return 0;
}

/**
 * One page of a report grouped by project and user (or by project), over a
 * range that holds whole months, without aggregating every pair first: whole
 * months from usage_monthly, summed along its (project, user, month) key in
 * byte order and cut at the page's end, and the edge days from usage_daily,
 * summed by pair and cut likewise, merged here. Hashing every pair of a year (some 470,000 rollup rows at
 * 5,000,000 ledger rows) took ~600 ms; a page reads a page's worth of pairs
 * (figures in docs/benchmarks.md).
 */
import type { Queryable } from './pool.ts';
import type { UsageTotals } from './usage.ts';

interface Page {
  from: string;
  to: string;
  /** The whole months inside from..to, [start, end) first days. */
  months: { start: string; end: string };
  byUser: boolean;
  project: string | null;
  user: string | null;
  offset: number;
  limit: number;
}

interface Sums { project: string; user_name?: string; jobs: number; actual: number; estimated: number; exempt: number }

export async function pairTotalsPage(db: Queryable, f: Page): Promise<UsageTotals[]> {
  const want = f.offset + f.limit;
  const keys = f.byUser ? 'project COLLATE "C", user_name COLLATE "C"' : 'project COLLATE "C"';
  const names = f.byUser ? 'project COLLATE "C" AS project, user_name COLLATE "C" AS user_name' : 'project COLLATE "C" AS project';
  const sums = `sum(jobs) AS jobs, coalesce(sum(actual_gpu_ms) FILTER (WHERE NOT exempt), 0) AS actual,
    coalesce(sum(estimated_gpu_ms) FILTER (WHERE NOT exempt), 0) AS estimated, coalesce(sum(actual_gpu_ms) FILTER (WHERE exempt), 0) AS exempt`;
  const filter = `($3::text IS NULL OR project = $3::text) AND ($4::text IS NULL OR user_name = $4::text)`;
  const read = async (table: string, where: string, params: string[]): Promise<Sums[]> =>
    (await db.query(`SELECT ${names}, ${sums} FROM ${table} WHERE (${where}) AND ${filter} GROUP BY ${keys} ORDER BY ${keys} LIMIT $5::int`, [params[0], params[1], f.project, f.user, want, ...params.slice(2)])).rows.map(
      (x: Record<string, string>): Sums => ({ project: x.project!, ...(f.byUser ? { user_name: x.user_name! } : {}), jobs: Number(x.jobs), actual: Number(x.actual), estimated: Number(x.estimated), exempt: Number(x.exempt) }),
    );
  // The edge days are read by day and hashed (at most two partial months); whole months along
  // usage_monthly's (project, user, month) key, sorting and hashing turned off so the page stops early.
  const edges = await read('usage_daily', '(day >= $1::date AND day < $6::date) OR (day >= $7::date AND day <= $2::date)', [f.from, f.to, f.months.start, f.months.end]);
  await db.query('SET LOCAL enable_hashagg = off');
  await db.query('SET LOCAL enable_sort = off');
  const whole = await read('usage_monthly', 'month >= $1::date AND month < $2::date', [f.months.start, f.months.end]);

  // A stream cut at `want` rows says nothing past its last key: the merge stops at the smaller such key.
  const key = (s: Sums) => (f.byUser ? [s.project, s.user_name!] : [s.project]);
  const cmp = (a: Sums, b: Sums) => compare(key(a), key(b));
  const cuts = [whole, edges].filter((s) => s.length === want).map((s) => s.at(-1)!);
  const stop = cuts.sort(cmp)[0];
  const merged = new Map<string, Sums>();
  for (const s of [...whole, ...edges].sort(cmp)) {
    if (stop && cmp(s, stop) > 0) continue;
    const k = key(s).join('\0');
    const m = merged.get(k);
    if (!m) merged.set(k, { ...s });
    else Object.assign(m, { jobs: m.jobs + s.jobs, actual: m.actual + s.actual, estimated: m.estimated + s.estimated, exempt: m.exempt + s.exempt });
  }
  return [...merged.values()].slice(f.offset, want).map((s) => ({
    keys: f.byUser ? { project: s.project, user_name: s.user_name! } : { project: s.project },
    jobs: s.jobs,
    actualGpuMs: s.actual,
    estimatedGpuMs: s.estimated,
    exemptGpuMs: s.exempt,
  }));
}

/** Byte order of ASCII names (COLLATE "C"): JavaScript's < on UTF-16 code units agrees. */
function compare(a: string[], b: string[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  return 0;
}

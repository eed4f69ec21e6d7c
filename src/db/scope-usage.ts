/**
 * Limits ranked by what their scope has settled in its current period, read
 * from the rollups (one row per scope: usage_by_day for a daily quota,
 * usage_by_period for weekly and monthly limits), so the dashboard orders
 * 10,000 scopes without asking Redis for any of them; Redis is read for the
 * page shown only (figures in docs/benchmarks.md). In-flight reservations,
 * carries and adjustments are not in the rollups: they change the numbers a
 * card shows, not which cards a page holds.
 */
import type { Queryable } from './pool.ts';

export type RankedKind = 'project' | 'user-day' | 'user-week';

export interface RankedScope {
  scope: string;
  kind: RankedKind;
  name: string;
  /** In the limit's unit (GPU-ms, milli-units or micro-dollars), as settledGpuMs. */
  limitGpuMs: number;
  /** Charged and settled in the current period, in the limit's unit (exempt jobs excluded). */
  settledGpuMs: number;
}

export interface RankQuery {
  kinds: RankedKind[];
  /** Substring of the name, case-insensitive; null: every name. */
  q: string | null;
  /** Only scopes whose settled usage is at least this percent of their limit; null: all. */
  nearPercent: number | null;
  /** usage: most settled first; ratio: nearest their limit first. Ties by scope. */
  order: 'usage' | 'ratio';
  offset: number;
  limit: number;
  /** Only these projects' budgets, and these users' quotas (what the caller may see); null or omitted: all. */
  projects?: readonly string[] | null;
  users?: readonly string[] | null;
  /** The current local day, and the first days of the current week (Monday) and month, 'YYYY-MM-DD'. */
  day: string;
  week: string;
  month: string;
}

export async function rankScopes(db: Queryable, f: RankQuery): Promise<{ total: number; scopes: RankedScope[] }> {
  const r = await db.query(
    `WITH cur AS (
       SELECT 'user-day:' || name AS scope, 'day' AS period, charged_gpu_ms AS g, units_milli AS u, usd_micro AS d FROM usage_by_day
       WHERE 'user-day' = ANY($1::text[]) AND kind = 'user' AND day = $3::date AND NOT exempt
       UNION ALL
       SELECT 'user-week:' || name, 'week', charged_gpu_ms, units_milli, usd_micro FROM usage_by_period
       WHERE 'user-week' = ANY($1::text[]) AND kind = 'user' AND period = 'week' AND start = $4::date AND NOT exempt
       UNION ALL
       SELECT 'project:' || name, period, charged_gpu_ms, units_milli, usd_micro FROM usage_by_period
       WHERE 'project' = ANY($1::text[]) AND kind = 'project' AND period = 'week' AND start = $4::date AND NOT exempt
       UNION ALL
       SELECT 'project:' || name, period, charged_gpu_ms, units_milli, usd_micro FROM usage_by_period
       WHERE 'project' = ANY($1::text[]) AND kind = 'project' AND period = 'month' AND start = $5::date AND NOT exempt
       UNION ALL
       -- A one-off budget counts from the month it was set (the rollups hold no finer start).
       SELECT o.scope, 'none', sum(p.charged_gpu_ms)::bigint, sum(p.units_milli)::bigint, sum(p.usd_micro)::bigint FROM limits o JOIN usage_by_period p
         ON p.kind = 'project' AND p.period = 'month' AND p.name = substr(o.scope, 9) AND p.start >= date_trunc('month', o.set_at)::date AND NOT p.exempt
       WHERE 'project' = ANY($1::text[]) AND o.scope LIKE 'project:%' AND o.period = 'none' GROUP BY o.scope),
     u AS (
       -- A quota's row holds its period (day, week); a budget's is none, week or month. No correlated
       -- subquery: its estimate would cross jit_above_cost and JIT compiling costs ~400 ms a call.
       -- Used in the limit's own unit (charged GPU-ms, milli-units, micro-dollars).
       SELECT l.scope, l.limit_gpu_ms, coalesce(CASE l.unit WHEN 'units' THEN c.u WHEN 'usd' THEN c.d ELSE c.g END, 0) AS used
       FROM limits l LEFT JOIN cur c ON c.scope = l.scope AND c.period = l.period
       WHERE (('project' = ANY($1::text[]) AND l.scope LIKE 'project:%') OR ('user-day' = ANY($1::text[]) AND l.scope LIKE 'user-day:%')
              OR ('user-week' = ANY($1::text[]) AND l.scope LIKE 'user-week:%'))
         AND ($2::text IS NULL OR strpos(lower(substr(l.scope, strpos(l.scope, ':') + 1)), lower($2::text)) > 0)
         AND ($10::text[] IS NULL OR l.scope NOT LIKE 'project:%' OR substr(l.scope, 9) = ANY($10::text[]))
         AND ($11::text[] IS NULL OR l.scope LIKE 'project:%' OR substr(l.scope, strpos(l.scope, ':') + 1) = ANY($11::text[])))
     SELECT scope, limit_gpu_ms, used, count(*) OVER () AS total FROM u
     WHERE $6::int IS NULL OR used * 100 >= $6::int * limit_gpu_ms
     ORDER BY CASE WHEN $7::text = 'ratio' THEN used::float8 / greatest(limit_gpu_ms, 1) END DESC NULLS LAST, used DESC, scope COLLATE "C"
     OFFSET $8::int LIMIT $9::int`,
    [f.kinds, f.q, f.day, f.week, f.month, f.nearPercent, f.order, f.offset, f.limit, f.projects ?? null, f.users ?? null],
  );
  return {
    total: r.rows.length ? Number(r.rows[0].total) : f.offset > 0 ? await countScopes(db, f) : 0,
    scopes: r.rows.map((x: Record<string, unknown>) => {
      const scope = String(x.scope);
      const at = scope.indexOf(':');
      return { scope, kind: scope.slice(0, at) as RankedKind, name: scope.slice(at + 1), limitGpuMs: Number(x.limit_gpu_ms), settledGpuMs: Number(x.used) };
    }),
  };
}

/** The total when a page past the end comes back empty (the window count has no row to ride on). */
async function countScopes(db: Queryable, f: RankQuery): Promise<number> {
  return (await rankScopes(db, { ...f, offset: 0, limit: 1 })).total;
}

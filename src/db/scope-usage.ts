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
  limitGpuMs: number;
  /** Counted GPU-ms settled in the current period (exempt jobs excluded). */
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
  /** The current local day, and the first days of the current week (Monday) and month, 'YYYY-MM-DD'. */
  day: string;
  week: string;
  month: string;
}

export async function rankScopes(db: Queryable, f: RankQuery): Promise<{ total: number; scopes: RankedScope[] }> {
  const r = await db.query(
    `WITH l AS (
       SELECT scope, split_part(scope, ':', 1) AS kind, substr(scope, strpos(scope, ':') + 1) AS name, limit_gpu_ms, period, set_at
       FROM limits
       WHERE split_part(scope, ':', 1) = ANY($1::text[])
         AND ($2::text IS NULL OR strpos(lower(substr(scope, strpos(scope, ':') + 1)), lower($2::text)) > 0)),
     u AS (
       SELECT l.scope, l.kind, l.name, l.limit_gpu_ms, coalesce(CASE
         WHEN l.kind = 'user-day' THEN (SELECT sum(actual_gpu_ms) FROM usage_by_day d
           WHERE d.kind = 'user' AND d.name = l.name AND d.day = $3::date AND NOT d.exempt)
         WHEN l.kind = 'user-week' THEN (SELECT sum(actual_gpu_ms) FROM usage_by_period p
           WHERE p.kind = 'user' AND p.period = 'week' AND p.start = $4::date AND p.name = l.name AND NOT p.exempt)
         WHEN l.period IN ('week', 'month') THEN (SELECT sum(actual_gpu_ms) FROM usage_by_period p
           WHERE p.kind = 'project' AND p.period = l.period AND p.start = CASE l.period WHEN 'week' THEN $4::date ELSE $5::date END
             AND p.name = l.name AND NOT p.exempt)
         ELSE (SELECT sum(actual_gpu_ms) FROM usage_by_period p
           WHERE p.kind = 'project' AND p.period = 'month' AND p.start >= date_trunc('month', l.set_at)::date AND p.name = l.name AND NOT p.exempt)
       END, 0) AS used
       FROM l)
     SELECT scope, kind, name, limit_gpu_ms, used, count(*) OVER () AS total FROM u
     WHERE $6::int IS NULL OR used * 100 >= $6::int * limit_gpu_ms
     ORDER BY CASE WHEN $7::text = 'ratio' THEN used::numeric / greatest(limit_gpu_ms, 1) END DESC NULLS LAST, used DESC, scope COLLATE "C"
     OFFSET $8::int LIMIT $9::int`,
    [f.kinds, f.q, f.day, f.week, f.month, f.nearPercent, f.order, f.offset, f.limit],
  );
  return {
    total: r.rows.length ? Number(r.rows[0].total) : f.offset > 0 ? await countScopes(db, f) : 0,
    scopes: r.rows.map((x: Record<string, unknown>) => ({
      scope: String(x.scope), kind: x.kind as RankedKind, name: String(x.name), limitGpuMs: Number(x.limit_gpu_ms), settledGpuMs: Number(x.used),
    })),
  };
}

/** The total when a page past the end comes back empty (the window count has no row to ride on). */
async function countScopes(db: Queryable, f: RankQuery): Promise<number> {
  return (await rankScopes(db, { ...f, offset: 0, limit: 1 })).total;
}

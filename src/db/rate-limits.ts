/** Rate limit rows in Postgres: the source of truth of the Redis copies reserve reads. */
import type { Queryable } from './pool.ts';

export interface RateLimitRow {
  /** 'user:<u>' or 'project:<p>'. */
  scope: string;
  jobsPerMinute: number;
  burst: number;
  updatedAt: Date;
}

const COLUMNS = 'scope, jobs_per_minute, burst, updated_at';

export async function upsertRateLimit(db: Queryable, scope: string, jobsPerMinute: number, burst: number): Promise<RateLimitRow> {
  const r = await db.query(
    `INSERT INTO rate_limits (scope, jobs_per_minute, burst) VALUES ($1::text, $2::integer, $3::integer)
     ON CONFLICT (scope) DO UPDATE SET jobs_per_minute = EXCLUDED.jobs_per_minute, burst = EXCLUDED.burst, updated_at = now()
     RETURNING ${COLUMNS}`,
    [scope, jobsPerMinute, burst],
  );
  return toRow(r.rows[0]);
}

export async function getRateLimit(db: Queryable, scope: string): Promise<RateLimitRow | null> {
  const r = await db.query(`SELECT ${COLUMNS} FROM rate_limits WHERE scope = $1::text`, [scope]);
  return r.rows[0] ? toRow(r.rows[0]) : null;
}

export async function deleteRateLimit(db: Queryable, scope: string): Promise<boolean> {
  const r = await db.query('DELETE FROM rate_limits WHERE scope = $1::text', [scope]);
  return (r.rowCount ?? 0) > 0;
}

export async function allRateLimits(db: Queryable): Promise<RateLimitRow[]> {
  const r = await db.query(`SELECT ${COLUMNS} FROM rate_limits ORDER BY scope`);
  return r.rows.map(toRow);
}

/**
 * A page of rate limits by scope ('project:…' before 'user:…', then by name;
 * byte order), after `after`: of one kind, whose names hold `q`
 * (case-insensitive), and only what the caller may see: `user` (null: every
 * user's) and `projects` (null: every project's).
 */
export async function rateLimitsPage(
  db: Queryable,
  f: { after: string | null; kind: 'user' | 'project' | null; q: string | null; user: string | null; projects: readonly string[] | null; limit: number },
): Promise<RateLimitRow[]> {
  const r = await db.query(
    `SELECT ${COLUMNS} FROM rate_limits
     WHERE ($1::text IS NULL OR scope COLLATE "C" > $1::text)
       AND ($2::text IS NULL OR scope LIKE $2::text || ':%')
       AND ($3::text IS NULL OR strpos(lower(substr(scope, strpos(scope, ':') + 1)), lower($3::text)) > 0)
       AND (scope NOT LIKE 'user:%' OR $4::text IS NULL OR scope = 'user:' || $4::text)
       AND (scope NOT LIKE 'project:%' OR $5::text[] IS NULL OR substr(scope, 9) = ANY($5::text[]))
     ORDER BY scope COLLATE "C" LIMIT $6::integer`,
    [f.after, f.kind, f.q, f.user, f.projects, f.limit],
  );
  return r.rows.map(toRow);
}

interface Raw {
  scope: string;
  jobs_per_minute: number;
  burst: number;
  updated_at: Date;
}

function toRow(r: Raw): RateLimitRow {
  return { scope: r.scope, jobsPerMinute: r.jobs_per_minute, burst: r.burst, updatedAt: r.updated_at };
}

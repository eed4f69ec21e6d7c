/**
 * Users with a quota (a `user-day:` or `user-week:` row of `limits`), in name
 * order, a page at a time (keyset: the names after `after`), optionally those
 * whose name holds `q` (case-insensitive). Names compare byte by byte
 * (COLLATE "C"), as in src/db/projects.ts.
 */
import type { Queryable } from './pool.ts';

export async function quotaUsers(db: Queryable, f: { after: string | null; q: string | null; limit: number }): Promise<string[]> {
  const r = await db.query(
    `SELECT DISTINCT substr(scope, strpos(scope, ':') + 1) COLLATE "C" AS user_name FROM limits
     WHERE (scope LIKE 'user-day:%' OR scope LIKE 'user-week:%')
       AND ($1::text IS NULL OR substr(scope, strpos(scope, ':') + 1) COLLATE "C" > $1::text)
       AND ($2::text IS NULL OR strpos(lower(substr(scope, strpos(scope, ':') + 1)), lower($2::text)) > 0)
     ORDER BY 1 LIMIT $3::integer`,
    [f.after, f.q, f.limit],
  );
  return r.rows.map((x: { user_name: string }) => x.user_name);
}

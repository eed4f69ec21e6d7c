/**
 * Projects that have a budget: the `project:<name>` rows of `limits`, in
 * name order, a page at a time (keyset: the names after `after`).
 *
 * Names compare byte by byte (COLLATE "C"), so the order does not depend on
 * the database's locale and is the order JavaScript's `<` gives the same
 * (ASCII) names, which is how the API merges in projects known only from
 * Redis. `limits` holds one row per limit an admin set; a scan of it is
 * cheap next to the ledger's.
 */
import type { Queryable } from './pool.ts';

/** `q`: only names holding it (case-insensitive); null: every name. */
export async function budgetedProjects(db: Queryable, after: string | null, limit: number, q: string | null = null): Promise<string[]> {
  // substr from 9: after 'project:' (8 characters).
  const r = await db.query(
    `SELECT substr(scope, 9) AS project FROM limits
     WHERE scope LIKE 'project:%' AND ($1::text IS NULL OR substr(scope, 9) COLLATE "C" > $1::text)
       AND ($3::text IS NULL OR strpos(lower(substr(scope, 9)), lower($3::text)) > 0)
     ORDER BY substr(scope, 9) COLLATE "C" LIMIT $2::integer`,
    [after, limit, q],
  );
  return r.rows.map((x: { project: string }) => x.project);
}

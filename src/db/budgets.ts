/** Budget rows in Postgres: the source of truth the Redis limits are copied from. */
import type { Queryable } from './pool.ts';

export interface BudgetRow {
  project: string;
  limitGpuMs: number;
  updatedAt: Date;
}

export async function upsertBudget(pool: Queryable, project: string, limitGpuMs: number): Promise<BudgetRow> {
  const r = await pool.query(
    `INSERT INTO budgets (project, limit_gpu_ms) VALUES ($1::text, $2::bigint)
     ON CONFLICT (project) DO UPDATE SET limit_gpu_ms = EXCLUDED.limit_gpu_ms, updated_at = now()
     RETURNING project, limit_gpu_ms, updated_at`,
    [project, limitGpuMs],
  );
  return toRow(r.rows[0]);
}

export async function getBudget(pool: Queryable, project: string): Promise<BudgetRow | null> {
  const r = await pool.query('SELECT project, limit_gpu_ms, updated_at FROM budgets WHERE project = $1::text', [project]);
  return r.rows[0] ? toRow(r.rows[0]) : null;
}

export async function allBudgets(pool: Queryable): Promise<BudgetRow[]> {
  const r = await pool.query('SELECT project, limit_gpu_ms, updated_at FROM budgets ORDER BY project');
  return r.rows.map(toRow);
}

function toRow(r: { project: string; limit_gpu_ms: number; updated_at: Date }): BudgetRow {
  return { project: r.project, limitGpuMs: Number(r.limit_gpu_ms), updatedAt: r.updated_at };
}

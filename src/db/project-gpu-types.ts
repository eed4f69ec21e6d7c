/** The GPU types each project may use (project_gpu_types; no row: any). */
import type { Queryable } from './pool.ts';

export interface AllowedGpuTypesRow {
  project: string;
  allowed: string[];
  updatedAt: Date;
}

const toRow = (r: { project: string; allowed: string[]; updated_at: Date }): AllowedGpuTypesRow => ({ project: r.project, allowed: r.allowed, updatedAt: r.updated_at });

export async function getAllowedGpuTypes(db: Queryable, project: string): Promise<AllowedGpuTypesRow | null> {
  const r = await db.query('SELECT project, allowed, updated_at FROM project_gpu_types WHERE project = $1::text', [project]);
  return r.rows[0] ? toRow(r.rows[0]) : null;
}

export async function allAllowedGpuTypes(db: Queryable): Promise<AllowedGpuTypesRow[]> {
  const r = await db.query('SELECT project, allowed, updated_at FROM project_gpu_types ORDER BY project');
  return r.rows.map(toRow);
}

/** Set (or with null, remove: any type) a project's list; the row as it is now. */
export async function setAllowedGpuTypes(db: Queryable, project: string, allowed: string[] | null): Promise<AllowedGpuTypesRow | null> {
  if (allowed === null) {
    await db.query('DELETE FROM project_gpu_types WHERE project = $1::text', [project]);
    return null;
  }
  const r = await db.query(
    `INSERT INTO project_gpu_types (project, allowed) VALUES ($1::text, $2::text[])
     ON CONFLICT (project) DO UPDATE SET allowed = EXCLUDED.allowed, updated_at = now()
     RETURNING project, allowed, updated_at`,
    [project, allowed],
  );
  return toRow(r.rows[0]);
}

/** GPU cap rows in Postgres: the source of truth of the Redis copies reserve reads. */
import type { Queryable } from './pool.ts';

/** A weekly window of local time: days a bit per weekday (1 Monday … 64 Sunday), minutes of the day, from < to. */
export interface PeakWindow {
  maxGpus: number;
  days: number;
  fromMinute: number;
  toMinute: number;
}

export interface GpuCapDefinition {
  maxGpus: number;
  peak: PeakWindow | null;
  release: 'auto' | 'manual';
}

export interface GpuCapRow extends GpuCapDefinition {
  scope: string;
  updatedAt: Date;
}

const COLUMNS = 'scope, max_gpus, peak_max_gpus, peak_days, peak_from, peak_to, release_mode, updated_at';

export async function upsertGpuCap(db: Queryable, scope: string, d: GpuCapDefinition): Promise<GpuCapRow> {
  const p = d.peak;
  const r = await db.query(
    `INSERT INTO gpu_caps (scope, max_gpus, peak_max_gpus, peak_days, peak_from, peak_to, release_mode)
     VALUES ($1::text, $2::integer, $3::integer, $4::smallint, $5::smallint, $6::smallint, $7::text)
     ON CONFLICT (scope) DO UPDATE SET max_gpus = EXCLUDED.max_gpus, peak_max_gpus = EXCLUDED.peak_max_gpus,
       peak_days = EXCLUDED.peak_days, peak_from = EXCLUDED.peak_from, peak_to = EXCLUDED.peak_to,
       release_mode = EXCLUDED.release_mode, updated_at = now()
     RETURNING ${COLUMNS}`,
    [scope, d.maxGpus, p?.maxGpus ?? null, p?.days ?? null, p?.fromMinute ?? null, p?.toMinute ?? null, d.release],
  );
  return toRow(r.rows[0]);
}

export async function getGpuCap(db: Queryable, scope: string): Promise<GpuCapRow | null> {
  const r = await db.query(`SELECT ${COLUMNS} FROM gpu_caps WHERE scope = $1::text`, [scope]);
  return r.rows[0] ? toRow(r.rows[0]) : null;
}

export async function deleteGpuCap(db: Queryable, scope: string): Promise<boolean> {
  const r = await db.query('DELETE FROM gpu_caps WHERE scope = $1::text', [scope]);
  return (r.rowCount ?? 0) > 0;
}

export async function allGpuCaps(db: Queryable): Promise<GpuCapRow[]> {
  const r = await db.query(`SELECT ${COLUMNS} FROM gpu_caps ORDER BY scope`);
  return r.rows.map(toRow);
}

interface Raw {
  scope: string;
  max_gpus: number;
  peak_max_gpus: number | null;
  peak_days: number | null;
  peak_from: number | null;
  peak_to: number | null;
  release_mode: 'auto' | 'manual';
  updated_at: Date;
}

function toRow(r: Raw): GpuCapRow {
  const peak = r.peak_max_gpus === null ? null : { maxGpus: r.peak_max_gpus, days: r.peak_days!, fromMinute: r.peak_from!, toMinute: r.peak_to! };
  return { scope: r.scope, maxGpus: r.max_gpus, peak, release: r.release_mode, updatedAt: r.updated_at };
}

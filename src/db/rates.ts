/**
 * The rate card (gpu_rates, append-only history per GPU type; '*' the
 * default rate) and usage factors (usage_factors) in Postgres: the source of
 * truth of the Redis copies the scripts read (src/accounting/rate-card.ts).
 */
import type { Queryable } from './pool.ts';

export interface RateRow {
  id: number;
  /** As stored: '*' is the default rate. */
  gpuType: string;
  unitsMilli: number;
  usdMicro: number;
  /** Epoch ms. */
  effectiveFrom: number;
  /** Epoch ms. */
  setAt: number;
  setBy: string | null;
}

export interface FactorRow {
  jobType: string;
  factorMilli: number;
  setAt: Date;
}

const RATE_COLUMNS = 'id, gpu_type, units_milli, usd_micro, effective_from, set_at, set_by';
/** Oldest first; among equal effective_from the later entry (set_at, then id) last, so it wins. */
const HISTORY_ORDER = 'effective_from, set_at, id';

export async function insertRate(
  db: Queryable,
  r: { gpuType: string; unitsMilli: number; usdMicro: number; effectiveFrom: number; setAt: number; setBy: string | null },
): Promise<RateRow> {
  const q = await db.query(
    `INSERT INTO gpu_rates (gpu_type, units_milli, usd_micro, effective_from, set_at, set_by)
     VALUES ($1::text, $2::bigint, $3::bigint, to_timestamp($4::double precision / 1000), to_timestamp($5::double precision / 1000), $6::text)
     RETURNING ${RATE_COLUMNS}`,
    [r.gpuType, r.unitsMilli, r.usdMicro, r.effectiveFrom, r.setAt, r.setBy],
  );
  return toRate(q.rows[0]);
}

/** One GPU type's whole history (every row, superseded ones too), oldest first. */
export async function rateHistory(db: Queryable, gpuType: string): Promise<RateRow[]> {
  const q = await db.query(`SELECT ${RATE_COLUMNS} FROM gpu_rates WHERE gpu_type = $1::text ORDER BY ${HISTORY_ORDER}`, [gpuType]);
  return q.rows.map(toRate);
}

/** Every GPU type's history, oldest first per type. */
export async function allRates(db: Queryable): Promise<RateRow[]> {
  const q = await db.query(`SELECT ${RATE_COLUMNS} FROM gpu_rates ORDER BY gpu_type COLLATE "C", ${HISTORY_ORDER}`);
  return q.rows.map(toRate);
}

/** The advisory lock key (lockLimit) one GPU type's rate changes and start-up's copy of them serialize on. */
export const rateLock = (gpuType: string) => `gpu-rate:${gpuType}`;

export async function listFactors(db: Queryable): Promise<FactorRow[]> {
  const q = await db.query('SELECT job_type, factor_milli, set_at FROM usage_factors ORDER BY job_type COLLATE "C"');
  return q.rows.map(toFactor);
}

export async function getFactor(db: Queryable, jobType: string): Promise<FactorRow | null> {
  const q = await db.query('SELECT job_type, factor_milli, set_at FROM usage_factors WHERE job_type = $1::text', [jobType]);
  return q.rows[0] ? toFactor(q.rows[0]) : null;
}

export async function upsertFactor(db: Queryable, jobType: string, factorMilli: number, setAt: number): Promise<FactorRow> {
  const q = await db.query(
    `INSERT INTO usage_factors (job_type, factor_milli, set_at) VALUES ($1::text, $2::integer, to_timestamp($3::double precision / 1000))
     ON CONFLICT (job_type) DO UPDATE SET factor_milli = EXCLUDED.factor_milli, set_at = EXCLUDED.set_at
     RETURNING job_type, factor_milli, set_at`,
    [jobType, factorMilli, setAt],
  );
  return toFactor(q.rows[0]);
}

export async function deleteFactor(db: Queryable, jobType: string): Promise<boolean> {
  const q = await db.query('DELETE FROM usage_factors WHERE job_type = $1::text', [jobType]);
  return (q.rowCount ?? 0) > 0;
}

interface RawRate {
  id: string | number;
  gpu_type: string;
  units_milli: string | number;
  usd_micro: string | number;
  effective_from: Date;
  set_at: Date;
  set_by: string | null;
}

function toRate(r: RawRate): RateRow {
  return {
    id: Number(r.id),
    gpuType: r.gpu_type,
    unitsMilli: Number(r.units_milli),
    usdMicro: Number(r.usd_micro),
    effectiveFrom: r.effective_from.getTime(),
    setAt: r.set_at.getTime(),
    setBy: r.set_by,
  };
}

function toFactor(r: { job_type: string; factor_milli: number; set_at: Date }): FactorRow {
  return { jobType: r.job_type, factorMilli: r.factor_milli, setAt: r.set_at };
}

/**
 * Corrections in the ledger (migration 025): what a job is charged now — its
 * end row and every correction of it — and the corrections made. Rows are
 * only ever added (src/db/ledger.ts insertLedgerRows writes them).
 */
import type { Queryable } from './pool.ts';

/** A job as corrections see it: its end row, and where its corrections have taken its charge. */
export interface ChargedJob {
  /** The end row's id: what a correction of this job references. */
  endId: number;
  jobId: string;
  project: string;
  user: string;
  jobType: string | null;
  gpuType: string | null;
  /** Counter ids it was charged in. */
  scopes: string[];
  exempt: boolean;
  admittedAt: Date;
  /** When it ended (its end row's time): usage by period counts it, and its corrections, then. */
  endedAt: Date;
  /** GPU-ms it ran, less what refunds took back. */
  remainingGpuMs: number;
  /** The price it is charged at now: its admission's, or the last re-rate's. A row from before rates: nothing a unit, factor 1. */
  rate: { unitsMilli: number; usdMicro: number };
  factorMilli: number;
  /** Its charge now in each unit: the end row's plus its corrections'. */
  charged: { gpuMs: number; unitsMilli: number; usdMicro: number };
}

const CHARGED_JOB = `
  SELECT e.id, e.job_id, e.project, e.user_name, e.job_type, e.gpu_type, e.scopes, e.exempt, e.admitted_at, e.at,
         e.actual_gpu_ms - coalesce(s.refunded, 0) AS remaining,
         coalesce(r.rate_units_milli, e.rate_units_milli, 0) AS rate_units, coalesce(r.rate_usd_micro, e.rate_usd_micro, 0) AS rate_usd,
         coalesce(e.factor_milli, CASE WHEN e.exempt THEN 0 ELSE 1000 END) AS factor,
         coalesce(e.charge_gpu_ms, CASE WHEN e.exempt THEN 0 ELSE e.actual_gpu_ms END) + coalesce(s.gpu, 0) AS gpu,
         coalesce(e.charge_units_milli, 0) + coalesce(s.units, 0) AS units,
         coalesce(e.charge_usd_micro, 0) + coalesce(s.usd, 0) AS usd
  FROM ledger e
  LEFT JOIN LATERAL (
    SELECT sum(charge_gpu_ms) AS gpu, sum(charge_units_milli) AS units, sum(charge_usd_micro) AS usd, sum(corrected_gpu_ms) AS refunded
    FROM ledger c WHERE c.corrects = e.id) s ON true
  LEFT JOIN LATERAL (
    SELECT rate_units_milli, rate_usd_micro FROM ledger c WHERE c.corrects = e.id AND c.correction = 're-rate' ORDER BY c.id DESC LIMIT 1) r ON true
  WHERE e.kind IN ('settle', 'release')`;

function toJob(r: Record<string, any>): ChargedJob {
  return {
    endId: Number(r.id), jobId: r.job_id, project: r.project, user: r.user_name, jobType: r.job_type, gpuType: r.gpu_type,
    scopes: r.scopes, exempt: r.exempt, admittedAt: r.admitted_at, endedAt: r.at, remainingGpuMs: Number(r.remaining),
    rate: { unitsMilli: Number(r.rate_units), usdMicro: Number(r.rate_usd) }, factorMilli: Number(r.factor),
    charged: { gpuMs: Number(r.gpu), unitsMilli: Number(r.units), usdMicro: Number(r.usd) },
  };
}

/** A job's latest run (its newest end row), as charged now; null if it never ended. */
export async function chargedJob(db: Queryable, jobId: string): Promise<ChargedJob | null> {
  const r = await db.query(`${CHARGED_JOB} AND e.job_id = $1::text ORDER BY e.id DESC LIMIT 1`, [jobId]);
  return r.rows[0] ? toJob(r.rows[0]) : null;
}

/** The ended, counted jobs of a GPU type admitted in [from, to), as charged now. */
export async function chargedJobsOfType(db: Queryable, gpuType: string, from: Date, to: Date): Promise<ChargedJob[]> {
  const r = await db.query(`${CHARGED_JOB} AND e.gpu_type = $1::text AND e.admitted_at >= $2 AND e.admitted_at < $3 AND NOT e.exempt ORDER BY e.id`, [gpuType, from, to]);
  return r.rows.map(toJob);
}

/** How many jobs of a GPU type admitted in [from, to) are still running (a reserve row with no end). */
export async function runningJobsOfType(db: Queryable, gpuType: string, from: Date, to: Date): Promise<number> {
  const r = await db.query<{ n: string }>(
    `SELECT count(*) AS n FROM ledger r
     WHERE r.kind = 'reserve' AND r.gpu_type = $1::text AND r.admitted_at >= $2 AND r.admitted_at < $3
       AND NOT EXISTS (SELECT 1 FROM ledger e WHERE e.job_id = r.job_id AND e.admitted_at = r.admitted_at AND e.kind IN ('settle', 'release'))`,
    [gpuType, from, to],
  );
  return Number(r.rows[0]!.n);
}

/** A correction as listed. */
export interface CorrectionRow {
  id: number;
  correction: 'credit' | 'refund' | 're-rate';
  jobId: string;
  corrects: number | null;
  project: string;
  user: string;
  gpuType: string | null;
  scopes: string[];
  charge: { gpuMs: number; unitsMilli: number; usdMicro: number };
  correctedGpuMs: number | null;
  actor: string | null;
  reason: string | null;
  at: Date;
}

/** Corrections, newest first; of one job when `jobId` is given. */
export async function listCorrections(db: Queryable, q: { jobId?: string; limit: number; offset: number }): Promise<{ total: number; rows: CorrectionRow[] }> {
  const r = await db.query(
    `SELECT id, correction, job_id, corrects, project, user_name, gpu_type, scopes, charge_gpu_ms, charge_units_milli, charge_usd_micro,
            corrected_gpu_ms, actor, note, at, count(*) OVER () AS total
     FROM ledger WHERE kind = 'correction' AND ($1::text IS NULL OR job_id = $1::text)
     ORDER BY id DESC LIMIT $2 OFFSET $3`,
    [q.jobId ?? null, q.limit, q.offset],
  );
  return {
    total: Number(r.rows[0]?.total ?? 0),
    rows: r.rows.map((x: Record<string, any>) => ({
      id: Number(x.id), correction: x.correction, jobId: x.job_id, corrects: x.corrects === null ? null : Number(x.corrects), project: x.project, user: x.user_name,
      gpuType: x.gpu_type, scopes: x.scopes,
      charge: { gpuMs: Number(x.charge_gpu_ms ?? 0), unitsMilli: Number(x.charge_units_milli ?? 0), usdMicro: Number(x.charge_usd_micro ?? 0) },
      correctedGpuMs: x.corrected_gpu_ms === null ? null : Number(x.corrected_gpu_ms), actor: x.actor, reason: x.note, at: x.at,
    })),
  };
}

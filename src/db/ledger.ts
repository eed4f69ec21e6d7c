/**
 * The ledger (append-only: corrections are new rows, never edits) and the
 * daily usage rollups its writer keeps in the same statement. Amounts are
 * integer GPU-ms.
 */
import type { Queryable } from './pool.ts';

/** One ledger row as the writer parses it from a stream entry (src/ledger/writer.ts). */
export interface LedgerRow {
  kind: string;
  jobId: string;
  project: string;
  user: string;
  jobType: string | null;
  gpuType: string | null;
  scopes: string[];
  estimated: string;
  actual: string | null;
  admittedAt: string | null;
  at: string | null;
  note: string | null;
  override: boolean;
  /** An exempt job type: tracked, never counted against a limit. */
  exempt: boolean;
  run: string | null;
  /** Reserve rows: the job's meta JSON exactly as the script stored it (rebuild restores it byte for byte). */
  meta: string | null;
  /** Reserve rows: the intake job's submission time, epoch ms (with the id, the job's identity); null if not known. */
  submittedMs: string | null;
  /** The price it was charged at, 'unitsMilli|usdMicro|factor'; null for an entry from before rates. */
  price: string | null;
  /** Its estimate's charge, 'gpuMs|milliUnits|microUsd'; null before rates. */
  charge: string | null;
  /** End rows: its actual time's charge; null on reserve rows and before rates. Corrections: the change of charge (may be negative). */
  actualCharge: string | null;
  /** Correction rows only (migration 025): which, the end row it corrects, the GPU-ms a refund covers, who made it. */
  correction?: 'credit' | 'refund' | 're-rate';
  corrects?: number | null;
  correctedGpuMs?: number | null;
  actor?: string | null;
}

/** Where a row came from in the ledger stream: the two halves of its entry id. */
export interface StreamPosition {
  streamMs: string;
  streamSeq: string;
}

/**
 * Insert ledger rows in one statement, whatever their number: the rows go
 * as array parameters through unnest, so a backlog of many batched reserve
 * entries never meets Postgres' 65,535-parameter limit. Rows already there
 * (a re-read entry) are skipped by the per-job unique indexes, and the same
 * statement adds only the rows it really inserted to the rollups
 * (usage_daily, usage_by_day, by local day in `timeZone`; usage_by_period,
 * usage_monthly and usage_weekly, by the week and month of that day), so
 * they count each job once.
 */
export async function insertLedgerRows(db: Queryable, rows: (LedgerRow & StreamPosition)[], timeZone: string): Promise<void> {
  const col = <K extends keyof (LedgerRow & StreamPosition)>(k: K) => rows.map((r) => r[k]);
  // 'a|b|c' texts travel whole and are split in SQL (a triple per row, three bigints each).
  await db.query(
    `WITH ins AS (
       INSERT INTO ledger (kind, job_id, project, user_name, job_type, gpu_type, scopes,
                           estimated_gpu_ms, actual_gpu_ms, admitted_at, at, note, override, exempt, run, stream_ms, stream_seq, meta, submitted_ms,
                           rate_units_milli, rate_usd_micro, factor_milli, est_charge_gpu_ms, est_charge_units_milli, est_charge_usd_micro,
                           charge_gpu_ms, charge_units_milli, charge_usd_micro, correction, corrects, corrected_gpu_ms, actor)
       SELECT kind, job_id, project, user_name, job_type, gpu_type, string_to_array(scopes, ','),
              estimated, actual, admitted_at, at, note, override, exempt, run, stream_ms, stream_seq, meta, submitted_ms,
              split_part(price, '|', 1)::bigint, split_part(price, '|', 2)::bigint, split_part(price, '|', 3)::integer,
              split_part(charge, '|', 1)::bigint, split_part(charge, '|', 2)::bigint, split_part(charge, '|', 3)::bigint,
              split_part(actual_charge, '|', 1)::bigint, split_part(actual_charge, '|', 2)::bigint, split_part(actual_charge, '|', 3)::bigint,
              correction, corrects, corrected_gpu_ms, actor
       FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                   $8::bigint[], $9::bigint[], $10::timestamptz[], $11::timestamptz[], $12::text[], $13::boolean[], $14::boolean[], $15::text[],
                   $17::bigint[], $18::bigint[], $19::text[], $20::bigint[], $21::text[], $22::text[], $23::text[],
                   $24::text[], $25::bigint[], $26::bigint[], $27::text[])
            AS r(kind, job_id, project, user_name, job_type, gpu_type, scopes,
                 estimated, actual, admitted_at, at, note, override, exempt, run, stream_ms, stream_seq, meta, submitted_ms,
                 price, charge, actual_charge, correction, corrects, corrected_gpu_ms, actor)
       ON CONFLICT DO NOTHING
       RETURNING kind, project, user_name, job_type, gpu_type, exempt, estimated_gpu_ms, actual_gpu_ms, at,
                 charge_gpu_ms, charge_units_milli, charge_usd_micro),
     -- Each ended row as the rollups count it: a job (a correction is none), its GPU-ms, and its charges.
     -- A row naming neither project nor user (a credit to a quota, run cap or GPU type budget) is no one's usage.
     ended AS (
       SELECT (at AT TIME ZONE $16::text)::date AS day, project, user_name, job_type, gpu_type, exempt,
              CASE WHEN kind = 'correction' THEN 0 ELSE 1 END AS n, estimated_gpu_ms, coalesce(actual_gpu_ms, 0) AS actual,
              ${CHARGED_SQL.gpuMs} AS g, ${CHARGED_SQL.units} AS u, ${CHARGED_SQL.usd} AS d
       FROM ins WHERE kind <> 'reserve' AND (project <> '' OR user_name <> '')),
     by_day AS (
       INSERT INTO usage_by_day AS b (kind, name, day, exempt, jobs, actual_gpu_ms, charged_gpu_ms, units_milli, usd_micro)
       SELECT 'project', project, day, exempt, sum(n), sum(actual), sum(g), sum(u), sum(d) FROM ended WHERE project <> '' GROUP BY 2, 3, 4
       UNION ALL
       SELECT 'user', user_name, day, exempt, sum(n), sum(actual), sum(g), sum(u), sum(d) FROM ended WHERE user_name <> '' GROUP BY 2, 3, 4
       ON CONFLICT (kind, name, day, exempt) DO UPDATE SET ${adds('b', ['jobs', 'actual_gpu_ms'])}),
     by_period AS (
       INSERT INTO usage_by_period AS w (kind, period, start, name, exempt, jobs, actual_gpu_ms, charged_gpu_ms, units_milli, usd_micro)
       SELECT k.kind, p.period, date_trunc(p.period, e.day)::date, CASE k.kind WHEN 'project' THEN e.project ELSE e.user_name END, e.exempt,
              sum(n), sum(actual), sum(g), sum(u), sum(d)
       FROM ended e, (VALUES ('project'), ('user')) AS k(kind), (VALUES ('week'), ('month')) AS p(period)
       WHERE CASE k.kind WHEN 'project' THEN e.project ELSE e.user_name END <> ''
       GROUP BY 1, 2, 3, 4, 5
       ON CONFLICT (kind, period, start, name, exempt) DO UPDATE SET ${adds('w', ['jobs', 'actual_gpu_ms'])}),
     monthly AS (
       INSERT INTO usage_monthly AS m (month, project, user_name, exempt, jobs, estimated_gpu_ms, actual_gpu_ms, charged_gpu_ms, units_milli, usd_micro)
       SELECT date_trunc('month', day)::date, project, user_name, exempt, sum(n), sum(estimated_gpu_ms), sum(actual), sum(g), sum(u), sum(d)
       FROM ended GROUP BY 1, 2, 3, 4
       ON CONFLICT (month, project, user_name, exempt) DO UPDATE SET ${adds('m', ['jobs', 'estimated_gpu_ms', 'actual_gpu_ms'])}),
     weekly AS (
       INSERT INTO usage_weekly AS k (week, project, user_name, exempt, jobs, estimated_gpu_ms, actual_gpu_ms, charged_gpu_ms, units_milli, usd_micro)
       SELECT greatest(date_trunc('week', day), date_trunc('month', day))::date, project, user_name, exempt,
              sum(n), sum(estimated_gpu_ms), sum(actual), sum(g), sum(u), sum(d)
       FROM ended GROUP BY 1, 2, 3, 4
       ON CONFLICT (week, project, user_name, exempt) DO UPDATE SET ${adds('k', ['jobs', 'estimated_gpu_ms', 'actual_gpu_ms'])})
     INSERT INTO usage_daily AS u (day, project, user_name, job_type, gpu_type, exempt, jobs, estimated_gpu_ms, actual_gpu_ms, charged_gpu_ms, units_milli, usd_micro)
     SELECT day, project, user_name, coalesce(job_type, ''), coalesce(gpu_type, ''), exempt,
            sum(n), sum(estimated_gpu_ms), sum(actual), sum(g), sum(u), sum(d)
     FROM ended GROUP BY 1, 2, 3, 4, 5, 6
     ON CONFLICT (day, project, user_name, job_type, gpu_type, exempt) DO UPDATE SET ${adds('u', ['jobs', 'estimated_gpu_ms', 'actual_gpu_ms'])}`,
    [
      col('kind'), col('jobId'), col('project'), col('user'), col('jobType'), col('gpuType'),
      rows.map((r) => r.scopes.join(',')),
      col('estimated'), col('actual'), col('admittedAt'), col('at'), col('note'), col('override'), col('exempt'), col('run'),
      timeZone,
      col('streamMs'), col('streamSeq'), col('meta'), col('submittedMs'),
      col('price'), col('charge'), col('actualCharge'),
      rows.map((r) => r.correction ?? null), rows.map((r) => r.corrects ?? null), rows.map((r) => r.correctedGpuMs ?? null), rows.map((r) => r.actor ?? null),
    ],
  );
}

/**
 * What the ledger says one counter holds, counted and exempt apart: charged
 * GPU-ms, milli-units and micro-dollars, and exempt jobs' GPU-ms.
 */
export interface CounterTotals {
  usedGpuMs: number;
  reservedGpuMs: number;
  exemptUsedGpuMs: number;
  exemptReservedGpuMs: number;
  unitsUsed: number;
  unitsReserved: number;
  usdUsed: number;
  usdReserved: number;
}

/**
 * A row's charges as SQL reads them: a row from before rates was charged its
 * GPU-ms (nothing when exempt), no units and no dollars (migration 022).
 * `t`: the ledger's alias in the query, with its dot ('e.'), or ''.
 */
export function chargedSql(t = '') {
  return {
    estGpuMs: `CASE WHEN ${t}exempt THEN 0 ELSE coalesce(${t}est_charge_gpu_ms, ${t}estimated_gpu_ms) END`,
    gpuMs: `CASE WHEN ${t}exempt THEN 0 ELSE coalesce(${t}charge_gpu_ms, ${t}actual_gpu_ms) END`,
    estUnits: `coalesce(${t}est_charge_units_milli, 0)`,
    units: `coalesce(${t}charge_units_milli, 0)`,
    estUsd: `coalesce(${t}est_charge_usd_micro, 0)`,
    usd: `coalesce(${t}charge_usd_micro, 0)`,
  } as const;
}
export const CHARGED_SQL = chargedSql();

/**
 * Per counter id: used = Σ actual of settle/release rows, reserved = Σ
 * estimated of reserve rows − Σ estimated of settle/release rows, over the
 * rows up to stream entry `upTo` (all rows if omitted; rows from before
 * stream ids were kept count as older than any).
 */
export async function ledgerTotals(db: Queryable, upTo?: string): Promise<Map<string, CounterTotals>> {
  const [ms, seq] = upTo ? upTo.split('-') : [null, null];
  const rows = await db.query(
    `SELECT counter,
            sum(CASE WHEN kind <> 'reserve' THEN ${CHARGED_SQL.gpuMs} ELSE 0 END) AS used,
            sum((CASE WHEN kind = 'reserve' THEN 1 ELSE -1 END) * ${CHARGED_SQL.estGpuMs}) AS reserved,
            sum(CASE WHEN kind <> 'reserve' AND exempt THEN actual_gpu_ms ELSE 0 END) AS exempt_used,
            sum(CASE WHEN exempt THEN (CASE WHEN kind = 'reserve' THEN 1 ELSE -1 END) * estimated_gpu_ms ELSE 0 END) AS exempt_reserved,
            sum(CASE WHEN kind <> 'reserve' THEN ${CHARGED_SQL.units} ELSE 0 END) AS units_used,
            sum((CASE WHEN kind = 'reserve' THEN 1 ELSE -1 END) * ${CHARGED_SQL.estUnits}) AS units_reserved,
            sum(CASE WHEN kind <> 'reserve' THEN ${CHARGED_SQL.usd} ELSE 0 END) AS usd_used,
            sum((CASE WHEN kind = 'reserve' THEN 1 ELSE -1 END) * ${CHARGED_SQL.estUsd}) AS usd_reserved
     FROM ledger, unnest(scopes) AS counter
     WHERE $1::bigint IS NULL OR (coalesce(stream_ms, 0), coalesce(stream_seq, 0)) <= ($1::bigint, $2::bigint)
     GROUP BY counter`,
    [ms, seq],
  );
  return new Map(
    rows.rows.map((r: Record<string, unknown>) => [
      String(r.counter),
      {
        usedGpuMs: Number(r.used), reservedGpuMs: Number(r.reserved), exemptUsedGpuMs: Number(r.exempt_used), exemptReservedGpuMs: Number(r.exempt_reserved),
        unitsUsed: Number(r.units_used), unitsReserved: Number(r.units_reserved), usdUsed: Number(r.usd_used), usdReserved: Number(r.usd_reserved),
      },
    ]),
  );
}

/** A reservation as its reserve row (and its end row, if any) recorded it. */
export interface RecordedReservation {
  jobId: string;
  project: string;
  user: string;
  jobType: string | null;
  gpuType: string | null;
  run: string | null;
  /** The meta JSON as the script wrote it; null for rows from before migration 009. */
  meta: string | null;
  scopes: string[];
  estimatedGpuMs: number;
  exempt: boolean;
  submittedMs: number | null;
  /** Epoch ms, with the fraction Postgres keeps (microseconds). */
  admittedMs: number;
  /** The end row's; null while the reservation is open. */
  actualGpuMs: number | null;
  endedMs: number | null;
  /** Its price and its estimate's charge ('gpuMs|milliUnits|microUsd'); null for a row from before rates. */
  price: { rate: { unitsMilli: number; usdMicro: number }; factorMilli: number } | null;
  charge: string | null;
}

/** Reservations still open, and those that ended at or after `endedSinceMs` (epoch ms). */
export async function recordedReservations(db: Queryable, endedSinceMs: number): Promise<RecordedReservation[]> {
  const r = await db.query(
    `SELECT r.job_id, r.project, r.user_name, r.job_type, r.gpu_type, r.run, r.meta, r.scopes, r.estimated_gpu_ms, r.exempt, r.submitted_ms,
            extract(epoch FROM r.at) * 1000 AS admitted_ms, e.actual_gpu_ms, extract(epoch FROM e.at) * 1000 AS ended_ms,
            r.rate_units_milli, r.rate_usd_micro, r.factor_milli, r.est_charge_gpu_ms, r.est_charge_units_milli, r.est_charge_usd_micro
     FROM ledger r LEFT JOIN ledger e ON e.job_id = r.job_id AND e.admitted_at = r.admitted_at AND e.kind IN ('settle', 'release')
     WHERE r.kind = 'reserve' AND (e.id IS NULL OR e.at >= to_timestamp($1::double precision / 1000))`,
    [endedSinceMs],
  );
  return r.rows.map((j: Record<string, any>) => ({
    jobId: j.job_id,
    project: j.project,
    user: j.user_name,
    jobType: j.job_type,
    gpuType: j.gpu_type,
    run: j.run,
    meta: j.meta,
    scopes: j.scopes,
    estimatedGpuMs: j.estimated_gpu_ms,
    exempt: j.exempt,
    submittedMs: j.submitted_ms,
    // extract() is numeric: exact, returned as a string.
    admittedMs: Number(j.admitted_ms),
    actualGpuMs: j.actual_gpu_ms,
    endedMs: j.ended_ms === null ? null : Number(j.ended_ms),
    price: j.factor_milli === null ? null : { rate: { unitsMilli: Number(j.rate_units_milli), usdMicro: Number(j.rate_usd_micro) }, factorMilli: Number(j.factor_milli) },
    charge: j.est_charge_gpu_ms === null ? null : `${j.est_charge_gpu_ms}|${j.est_charge_units_milli}|${j.est_charge_usd_micro}`,
  }));
}

/**
 * The largest plain-number job id (up to 15 digits) in the ledger or the
 * events, as decimal text; null if there is none. Admitted jobs are in the
 * ledger, rejected ones only in the events.
 */
export async function maxNumericJobId(db: Queryable): Promise<string | null> {
  const { rows } = await db.query<{ max: string | null }>(
    `SELECT max(id::bigint)::text AS max FROM (
       SELECT job_id AS id FROM ledger
       UNION ALL SELECT data->>'jobId' FROM events WHERE data->>'jobId' IS NOT NULL
     ) ids WHERE id ~ '^[0-9]{1,15}$'`,
  );
  return rows[0]?.max ?? null;
}

/** A rollup's upsert: each of `columns`, and every unit's charge, added to what the row held. */
function adds(alias: string, columns: string[]): string {
  return [...columns, 'charged_gpu_ms', 'units_milli', 'usd_micro'].map((c) => `${c} = ${alias}.${c} + EXCLUDED.${c}`).join(', ');
}

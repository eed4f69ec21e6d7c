/**
 * Period records: the rollover carry each period started with and the
 * adjustments admins made to it (migration 010). Redis keeps both on the
 * period's counters for admission; these rows are what a rebuild restores
 * them from, since neither follows from the ledger.
 */
import type { Queryable } from './pool.ts';

export interface PeriodCarry {
  /** '<scope>@<period label>'. */
  counterId: string;
  carryGpuMs: number;
}

export interface PeriodRecord {
  counterId: string;
  /** null: no carry recorded (not a rollover period, or none computed yet). */
  carryGpuMs: number | null;
  /** Σ of the period's adjustments (0 if none). */
  adjustGpuMs: number;
}

/** Record carries once fixed in Redis; one already recorded is kept (Redis never changes it). */
export async function recordCarries(db: Queryable, carries: PeriodCarry[], at: number): Promise<void> {
  if (carries.length === 0) return;
  await db.query(
    `INSERT INTO period_carries (counter_id, carry_gpu_ms, recorded_at)
     SELECT c, g, to_timestamp($3::double precision / 1000) FROM unnest($1::text[], $2::bigint[]) AS r(c, g)
     ON CONFLICT (counter_id) DO NOTHING`,
    [carries.map((c) => c.counterId), carries.map((c) => c.carryGpuMs), at],
  );
}

export async function recordAdjustment(db: Queryable, counterId: string, deltaGpuMs: number, actor: string, at: number): Promise<void> {
  await db.query(
    `INSERT INTO period_adjustments (counter_id, delta_gpu_ms, actor, at)
     VALUES ($1::text, $2::bigint, $3::text, to_timestamp($4::double precision / 1000))`,
    [counterId, deltaGpuMs, actor, at],
  );
}

/** Every period with a recorded carry or adjustment, for the rebuild. */
export async function periodRecords(db: Queryable): Promise<PeriodRecord[]> {
  const r = await db.query(
    `SELECT counter_id, max(carry) AS carry, sum(adjust) AS adjust
     FROM (SELECT counter_id, carry_gpu_ms AS carry, 0::bigint AS adjust FROM period_carries
           UNION ALL
           SELECT counter_id, NULL, delta_gpu_ms FROM period_adjustments) AS p
     GROUP BY counter_id`,
  );
  return r.rows.map((x: { counter_id: string; carry: number | null; adjust: string | number }) => ({
    counterId: x.counter_id,
    carryGpuMs: x.carry === null ? null : Number(x.carry),
    // sum(bigint) is numeric: exact, returned as a string.
    adjustGpuMs: Number(x.adjust),
  }));
}

/** Limit rows in Postgres: the source of truth the Redis definitions are copied from. */
import type { Pool, PoolClient, Queryable } from './pool.ts';
import { inTransaction } from './transaction.ts';

/**
 * A limit as stored (the columns of `limits`). Defined here, not imported
 * from src/accounting, so the database layer depends on nothing above it;
 * Accounting's ScopeDefinition has the same shape and is passed as one.
 */
export interface LimitDefinition {
  /** In the limit's unit: GPU-ms (gpuHours), milli-units (units) or micro-dollars (usd); so is rolloverCapGpuMs. */
  limitGpuMs: number;
  /** gpuHours when absent (every limit set before units). */
  unit?: 'gpuHours' | 'units' | 'usd';
  /** hard: hold at the limit; soft: admit past it up to gracePercent more. */
  policy: 'hard' | 'soft';
  /** Soft only: percent past the limit still admitted; null = a soft limit never holds. */
  gracePercent: number | null;
  /** none: one-off; otherwise counters start at zero each period. */
  period: 'none' | 'day' | 'week' | 'month';
  rollover: boolean;
  /** Most that rolls over into a new period; null = all of it. */
  rolloverCapGpuMs: number | null;
  /** When the limit was first set, epoch ms. */
  setAt: number;
  /** Percents of the limit that raise THRESHOLD_CROSSED; null = the defaults. */
  thresholds?: number[] | null;
  /** auto (absent): held jobs are decided again when room appears; manual: only an admin releases them. */
  release?: 'auto' | 'manual';
}

export interface LimitRow extends LimitDefinition {
  scope: string;
  updatedAt: Date;
}

const COLUMNS = 'scope, limit_gpu_ms, unit, policy, grace_pct, period, rollover, rollover_cap_gpu_ms, thresholds, release_mode, set_at, updated_at';

/** Insert or replace a limit; set_at stays what it was when the limit was first set. */
export async function upsertLimit(db: Queryable, scope: string, d: LimitDefinition): Promise<LimitRow> {
  const r = await db.query(
    `INSERT INTO limits (scope, limit_gpu_ms, policy, grace_pct, period, rollover, rollover_cap_gpu_ms, thresholds, release_mode, set_at, unit)
     VALUES ($1::text, $2::bigint, $3::text, $4::integer, $5::text, $6::boolean, $7::bigint, $8::integer[], $9::text, to_timestamp($10::double precision / 1000), $11::text)
     ON CONFLICT (scope) DO UPDATE SET limit_gpu_ms = EXCLUDED.limit_gpu_ms, unit = EXCLUDED.unit, policy = EXCLUDED.policy,
       grace_pct = EXCLUDED.grace_pct, period = EXCLUDED.period, rollover = EXCLUDED.rollover,
       rollover_cap_gpu_ms = EXCLUDED.rollover_cap_gpu_ms, thresholds = EXCLUDED.thresholds,
       release_mode = EXCLUDED.release_mode, updated_at = now()
     RETURNING ${COLUMNS}`,
    [scope, d.limitGpuMs, d.policy, d.gracePercent, d.period, d.rollover, d.rolloverCapGpuMs, d.thresholds ?? null, d.release ?? 'auto', d.setAt, d.unit ?? 'gpuHours'],
  );
  return toRow(r.rows[0]);
}

export async function getLimit(db: Queryable, scope: string): Promise<LimitRow | null> {
  const r = await db.query(`SELECT ${COLUMNS} FROM limits WHERE scope = $1::text`, [scope]);
  return r.rows[0] ? toRow(r.rows[0]) : null;
}

/** Several limits in one query (views of many scopes at once). */
export async function getLimits(db: Queryable, scopes: string[]): Promise<Map<string, LimitRow>> {
  const r = await db.query(`SELECT ${COLUMNS} FROM limits WHERE scope = ANY($1::text[])`, [scopes]);
  return new Map(r.rows.map((x: Raw) => [x.scope, toRow(x)]));
}

/**
 * Run caps or per-type budgets ('run:<p>/<r>', 'project-type:<p>/<t>') by
 * scope, at most `limit`, optionally only those of some projects or whose
 * name ('<p>/<r>', '<p>/<t>') holds `q` (case-insensitive).
 */
export async function projectPartScopes(db: Queryable, f: { kind: 'run' | 'project-type'; projects: readonly string[] | null; q: string | null; limit: number }): Promise<string[]> {
  const r = await db.query(
    `SELECT scope FROM limits WHERE scope LIKE $4::text || ':%'
       AND ($2::text[] IS NULL OR split_part(substr(scope, length($4::text) + 2), '/', 1) = ANY($2::text[]))
       AND ($3::text IS NULL OR strpos(lower(substr(scope, length($4::text) + 2)), lower($3::text)) > 0)
     ORDER BY scope COLLATE "C" LIMIT $1::int`,
    [f.limit, f.projects, f.q, f.kind],
  );
  return r.rows.map((x: { scope: string }) => x.scope);
}

export async function deleteLimit(db: Queryable, scope: string): Promise<boolean> {
  const r = await db.query('DELETE FROM limits WHERE scope = $1::text', [scope]);
  return (r.rowCount ?? 0) > 0;
}

export async function allLimits(db: Queryable): Promise<LimitRow[]> {
  const r = await db.query(`SELECT ${COLUMNS} FROM limits ORDER BY scope`);
  return r.rows.map(toRow);
}

/**
 * Take the transaction-scoped advisory lock of one key (a scope, or
 * 'factor:<job type>', 'gpu-rate:<gpu type>'), held until COMMIT or ROLLBACK: changes to the same
 * limit, and start-up's copy of it to Redis, serialize on it.
 */
export async function lockLimit(db: Queryable, key: string): Promise<void> {
  await db.query(`SELECT pg_advisory_xact_lock(hashtext('limit:' || $1::text))`, [key]);
}

/**
 * Start-up's and rebuild's copy of Postgres to Redis, one key at a time:
 * `copy` runs in a short transaction holding that key's lock (`lockOf`), so
 * a change committing meanwhile is never undone by an older read. Returns
 * how many keys `copy` found a row for (it answers true).
 */
export async function copyEachLocked(pool: Pool, keys: Iterable<string>, lockOf: (key: string) => string, copy: (db: PoolClient, key: string) => Promise<boolean>): Promise<number> {
  let found = 0;
  for (const key of keys) {
    const had = await inTransaction(pool, async (db) => {
      await lockLimit(db, lockOf(key));
      return copy(db, key);
    });
    if (had) found++;
  }
  return found;
}

interface Raw {
  scope: string;
  limit_gpu_ms: number;
  unit: 'gpuHours' | 'units' | 'usd';
  policy: 'hard' | 'soft';
  grace_pct: number | null;
  period: LimitDefinition['period'];
  rollover: boolean;
  rollover_cap_gpu_ms: number | null;
  thresholds: number[] | null;
  release_mode: 'auto' | 'manual';
  set_at: Date;
  updated_at: Date;
}

function toRow(r: Raw): LimitRow {
  return {
    scope: r.scope,
    limitGpuMs: Number(r.limit_gpu_ms),
    unit: r.unit,
    policy: r.policy,
    gracePercent: r.grace_pct,
    period: r.period,
    rollover: r.rollover,
    rolloverCapGpuMs: r.rollover_cap_gpu_ms === null ? null : Number(r.rollover_cap_gpu_ms),
    thresholds: r.thresholds,
    release: r.release_mode,
    setAt: r.set_at.getTime(),
    updatedAt: r.updated_at,
  };
}

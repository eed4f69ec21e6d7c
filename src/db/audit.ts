/** The audit log: one row per admin action, never updated. */
import type { Pool, Queryable } from './pool.ts';

export interface Actor {
  /** Who: the person a key or OIDC token names; with an environment token, the name the caller declared. */
  name: string;
  role: 'admin' | 'manager' | 'submitter' | 'viewer';
  /** How they were known: 'key:<id>', 'oidc', or 'token' (declared); absent for the system itself. */
  via?: string;
}

export interface AuditEntry {
  action: string;
  target: string;
  before?: unknown;
  after?: unknown;
  reason?: string | null;
}

export interface AuditRow extends Required<AuditEntry> {
  id: number;
  at: Date;
  actor: string;
  role: string;
  via: string | null;
}

/**
 * Insert one audit row. `requestId` (see src/audit/change.ts) makes a second
 * insert of the same change a no-op; `at` is when the change was made (an
 * outboxed row arrives later). Returns false if the row was there already.
 */
export async function writeAudit(db: Queryable, actor: Actor, e: AuditEntry, opts: { requestId?: string; at?: number } = {}): Promise<boolean> {
  const r = await db.query(
    `INSERT INTO audit (actor, role, action, target, before, after, reason, request_id, at, via)
     VALUES ($1::text, $2::text, $3::text, $4::text, $5::jsonb, $6::jsonb, $7::text, $8::text, coalesce(to_timestamp($9::double precision / 1000), now()), $10::text)
     ON CONFLICT (request_id) DO NOTHING`,
    [actor.name, actor.role, e.action, e.target, json(e.before), json(e.after), e.reason ?? null, opts.requestId ?? null, opts.at ?? null, actor.via ?? null],
  );
  return (r.rowCount ?? 0) > 0;
}

/** Whether the audit row of a change is in Postgres (a commit whose answer was lost may still have landed). */
export async function auditExists(db: Queryable, requestId: string): Promise<boolean> {
  const r = await db.query('SELECT 1 FROM audit WHERE request_id = $1::text', [requestId]);
  return (r.rowCount ?? 0) > 0;
}

export async function recentAudit(pool: Pool, opts: { target?: string; limit: number }): Promise<AuditRow[]> {
  const r = await pool.query(
    `SELECT id, at, actor, role, via, action, target, before, after, reason FROM audit
     WHERE ($1::text IS NULL OR target = $1::text) ORDER BY id DESC LIMIT $2::int`,
    [opts.target ?? null, opts.limit],
  );
  return r.rows as AuditRow[];
}

const json = (v: unknown) => (v === undefined ? null : JSON.stringify(v));

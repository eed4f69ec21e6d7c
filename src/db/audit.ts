/** The audit log: one row per admin action, never updated. */
import type { Pool, Queryable } from './pool.ts';

export interface Actor {
  /** Who, as the caller named themselves (X-Gatekeeper-Actor, or the CLI's --actor). */
  name: string;
  /** The token's role. */
  role: 'admin' | 'viewer';
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
}

export async function writeAudit(pool: Queryable, actor: Actor, e: AuditEntry): Promise<void> {
  await pool.query(
    `INSERT INTO audit (actor, role, action, target, before, after, reason)
     VALUES ($1::text, $2::text, $3::text, $4::text, $5::jsonb, $6::jsonb, $7::text)`,
    [actor.name, actor.role, e.action, e.target, json(e.before), json(e.after), e.reason ?? null],
  );
}

export async function recentAudit(pool: Pool, opts: { target?: string; limit: number }): Promise<AuditRow[]> {
  const r = await pool.query(
    `SELECT id, at, actor, role, action, target, before, after, reason FROM audit
     WHERE ($1::text IS NULL OR target = $1::text) ORDER BY id DESC LIMIT $2::int`,
    [opts.target ?? null, opts.limit],
  );
  return r.rows as AuditRow[];
}

const json = (v: unknown) => (v === undefined ? null : JSON.stringify(v));

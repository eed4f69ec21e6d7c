/**
 * Project budgets: Postgres holds the limit (source of truth), Redis holds a
 * copy next to the counters for the reserve script. Writes go to Postgres
 * first, then Redis; start-up copies every limit over again, so a lost Redis
 * write heals at the next start.
 */
import type { Pool, PoolClient } from '../db/pool.ts';
import { allBudgets, getBudget, upsertBudget } from '../db/budgets.ts';
import type { Accounting } from './counters.ts';
import { projectScope } from './scopes.ts';
import { writeAudit, type Actor } from '../db/audit.ts';
import { gpuMsToHours } from '../units.ts';

/** Changes made by the system itself (start-up, tests), not by a person. */
export const SYSTEM: Actor = { name: 'system', role: 'admin' };

export interface BudgetView {
  project: string;
  limitGpuMs: number;
  usedGpuMs: number;
  reservedGpuMs: number;
  /** limit - used - reserved; negative when in-flight jobs overran. */
  remainingGpuMs: number;
  updatedAt: Date;
}

export class Budgets {
  constructor(
    private readonly pool: Pool,
    private readonly accounting: Accounting,
  ) {}

  /**
   * Set (raise or lower) a project's budget; audited with before and after.
   * Postgres and Redis are written under one per-project lock, so two
   * concurrent changes land in the same order in both.
   */
  async set(project: string, limitGpuMs: number, actor: Actor = SYSTEM, reason: string | null = null): Promise<BudgetView> {
    const before = await this.locked(project, async (db) => {
      const prior = await getBudget(db, project);
      await upsertBudget(db, project, limitGpuMs);
      await this.accounting.setLimit(projectScope(project).id, limitGpuMs);
      return prior;
    });
    await writeAudit(this.pool, actor, {
      action: 'budget.set',
      target: projectScope(project).id,
      before: before ? { limitGpuHours: gpuMsToHours(before.limitGpuMs) } : null,
      after: { limitGpuHours: gpuMsToHours(limitGpuMs) },
      reason,
    });
    return (await this.get(project))!;
  }

  async get(project: string): Promise<BudgetView | null> {
    const row = await getBudget(this.pool, project);
    if (!row) return null;
    const c = await this.accounting.readScope(projectScope(project).id);
    return {
      project,
      limitGpuMs: row.limitGpuMs,
      usedGpuMs: c.usedGpuMs,
      reservedGpuMs: c.reservedGpuMs,
      remainingGpuMs: row.limitGpuMs - c.usedGpuMs - c.reservedGpuMs,
      updatedAt: row.updatedAt,
    };
  }

  /** Copy every limit from Postgres to Redis (start-up, rebuild), each under its project's lock. */
  async syncLimits(): Promise<number> {
    const rows = await allBudgets(this.pool);
    for (const r of rows) {
      await this.locked(r.project, async (db) => {
        const now = await getBudget(db, r.project);
        if (now) await this.accounting.setLimit(projectScope(r.project).id, now.limitGpuMs);
      });
    }
    return rows.length;
  }

  /** Run `fn` in a transaction holding the project's advisory lock. */
  private async locked<T>(project: string, fn: (db: PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(`SELECT pg_advisory_xact_lock(hashtext('budget:' || $1::text))`, [project]);
      const out = await fn(client);
      await client.query('COMMIT');
      return out;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }
}

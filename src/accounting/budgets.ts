/**
 * Project budgets: Postgres holds the limit (source of truth), Redis holds a
 * copy next to the counters for the reserve script. Writes go to Postgres
 * first, then Redis; start-up copies every limit over again, so a lost Redis
 * write heals at the next start.
 */
import type { Pool } from '../db/pool.ts';
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

  /** Set (raise or lower) a project's budget; audited with before and after. */
  async set(project: string, limitGpuMs: number, actor: Actor = SYSTEM, reason: string | null = null): Promise<BudgetView> {
    const before = await getBudget(this.pool, project);
    await upsertBudget(this.pool, project, limitGpuMs);
    await this.accounting.setLimit(projectScope(project).id, limitGpuMs);
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

  /** Copy every limit from Postgres to Redis (start-up, rebuild). */
  async syncLimits(): Promise<number> {
    const rows = await allBudgets(this.pool);
    for (const r of rows) await this.accounting.setLimit(projectScope(r.project).id, r.limitGpuMs);
    return rows.length;
  }
}

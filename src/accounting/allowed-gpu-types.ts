/**
 * The GPU types a project may use (Maestro's per-tenant model list; Kueue's
 * ResourceFlavors per queue). Postgres holds them (project_gpu_types);
 * Redis a copy in the 'gpu-allowed' hash that the reserve script reads in
 * the same call as the budgets, so a job for another type (or naming none)
 * is rejected with the list, and a change is atomic with admission. Each
 * change is one admin change with its audit row (src/audit/change.ts).
 * Jobs already admitted or held are left as they are.
 */
import type { Pool } from '../db/pool.ts';
import type { Actor } from '../db/audit.ts';
import type { Logger } from '../log.ts';
import { adminChange } from '../audit/change.ts';
import { copyEachLocked } from '../db/limits.ts';
import { allAllowedGpuTypes, getAllowedGpuTypes, setAllowedGpuTypes, type AllowedGpuTypesRow } from '../db/project-gpu-types.ts';
import type { Accounting } from './counters.ts';
import type { ScopeDefinitions } from './definitions.ts';

/** The advisory lock of a project's list: a change and the copy take it (lockLimit). */
const allowedLock = (project: string) => `gpu-allowed:${project}`;

export class AllowedGpuTypes {
  constructor(
    private readonly pool: Pool,
    private readonly accounting: Accounting,
    private readonly log?: Logger,
  ) {}

  get(project: string): Promise<AllowedGpuTypesRow | null> {
    return getAllowedGpuTypes(this.pool, project);
  }

  /** Allow only `allowed` (sorted, distinct), or with null any type again; audited when it changes anything. */
  async set(project: string, allowed: string[] | null, actor: Actor, reason: string | null): Promise<AllowedGpuTypesRow | null> {
    const list = allowed === null ? null : [...new Set(allowed)].sort();
    return adminChange(this.pool, [allowedLock(project)], async (tx) => {
      const before = await getAllowedGpuTypes(tx.db, project);
      const row = await setAllowedGpuTypes(tx.db, project, list);
      if (JSON.stringify(before?.allowed ?? null) !== JSON.stringify(list)) {
        await tx.audit(actor, { action: list === null ? 'gpu-types.allow-any' : 'gpu-types.allow', target: `project:${project}`, before: { allowedGpuTypes: before?.allowed ?? null }, after: { allowedGpuTypes: list }, reason });
      }
      const was = await this.accounting.allowedGpuTypes(project);
      const defs = this.accounting.definitions;
      tx.redis({ apply: () => defs.defineAllowedGpuTypes(project, list), undo: () => defs.defineAllowedGpuTypes(project, was) });
      return row;
    }, this.log);
  }
}

/**
 * Copy every project's list from Postgres to Redis (start-up, rebuild),
 * dropping any Redis holds for a project without one: one short transaction
 * per project (those Postgres lists and those Redis holds), under its lock,
 * so a change committing meanwhile is never undone by an older read.
 */
export async function syncAllowedGpuTypes(pool: Pool, definitions: ScopeDefinitions): Promise<number> {
  const projects = new Set([...(await allAllowedGpuTypes(pool)).map((r) => r.project), ...(await definitions.allowedGpuTypesProjects())]);
  return copyEachLocked(pool, projects, allowedLock, async (db, project) => {
    const row = await getAllowedGpuTypes(db, project);
    await definitions.defineAllowedGpuTypes(project, row?.allowed ?? null);
    return row !== null;
  });
}

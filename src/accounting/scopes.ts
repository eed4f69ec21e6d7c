/**
 * Scopes: the budgets and quotas one job is counted against. A scope id is
 * "<kind>:<name>[:<period>]". Today every job touches its project's budget;
 * user quotas and run caps add more ids here and nowhere else.
 */
import type { IntakeJobData } from '../../queues/contract.ts';

export type ScopeKind = 'project';

export interface ScopeRef {
  id: string;
  kind: ScopeKind;
  name: string;
}

export const projectScope = (project: string): ScopeRef => ({ id: `project:${project}`, kind: 'project', name: project });

/** Every scope a job is reserved against, in a fixed order. */
export function scopesForJob(job: Pick<IntakeJobData, 'project' | 'user'>): ScopeRef[] {
  return [projectScope(job.project)];
}

export function parseScopeId(id: string): ScopeRef {
  const [kind, ...rest] = id.split(':');
  return { id, kind: kind as ScopeKind, name: rest.join(':') };
}

/**
 * Scopes: the budgets and quotas one job is counted against. A scope *base*
 * is "<kind>:<name>"; its counters live per period under "<base>@<label>"
 * (see src/redis/lua/includes/scopes.lua). Every job touches its project's
 * budget and its user's daily and weekly quota (counted even when no quota is
 * set, so usage is known the moment one is); a job with a `run` also touches
 * that run's cap. New kinds are added here and nowhere else.
 */
import type { IntakeJobData } from '../../queues/contract.ts';

export type ScopeKind = 'project' | 'user-day' | 'user-week' | 'run';

export interface ScopeRef {
  /** The scope base, e.g. 'user-day:alice'. */
  id: string;
  kind: ScopeKind;
  name: string;
}

const ref = (kind: ScopeKind, name: string): ScopeRef => ({ id: `${kind}:${name}`, kind, name });
export const projectScope = (project: string): ScopeRef => ref('project', project);
export const userQuotaScope = (user: string, period: 'day' | 'week'): ScopeRef => ref(period === 'day' ? 'user-day' : 'user-week', user);
/** Runs are named within their project ('/' cannot occur in either name). */
export const runScope = (project: string, run: string): ScopeRef => ref('run', `${project}/${run}`);

/** Every scope a job is reserved against, in a fixed order. */
export function scopesForJob(job: Pick<IntakeJobData, 'project' | 'user' | 'run'>): ScopeRef[] {
  const out = [projectScope(job.project), userQuotaScope(job.user, 'day'), userQuotaScope(job.user, 'week')];
  if (job.run !== undefined) out.push(runScope(job.project, job.run));
  return out;
}

/**
 * Submission rate limits (token buckets) live on their own scopes, 'user:<u>'
 * and 'project:<p>' (a project's bucket key differs from its budget's, so
 * the same id names both). A job passes its user's and its project's, which
 * reserve names from its user-day and project scopes
 * (src/redis/lua/includes/rate.lua). Names are the contract's (NAME_RE), as
 * for every other scope.
 */
export type RateKind = 'user' | 'project';
export const rateScope = (kind: RateKind, name: string): string => `${kind}:${name}`;

/** A scope base or counter id ('<base>@<period label>') back to its parts. */
export function parseScopeId(id: string): ScopeRef & { period?: string } {
  const [baseId, period] = id.split('@') as [string, string | undefined];
  const [kind, ...rest] = baseId.split(':');
  return { id: baseId, kind: kind as ScopeKind, name: rest.join(':'), ...(period ? { period } : {}) };
}

/** How people call a scope in a sentence: "project alpha", "user alice's daily quota", "run alpha/r1". */
export function scopeLabel(id: string): string {
  const s = parseScopeId(id);
  if (s.kind === 'user-day') return `user ${s.name}'s daily quota`;
  if (s.kind === 'user-week') return `user ${s.name}'s weekly quota`;
  return `${s.kind} ${s.name}`;
}

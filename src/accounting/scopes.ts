/**
 * Scopes: the budgets and quotas one job is counted against. A scope *base*
 * is "<kind>:<name>"; its counters live per period under "<base>@<label>"
 * (see src/redis/lua/includes/scopes.lua). Every job touches its project's
 * budget and its user's daily and weekly quota (counted even when no quota is
 * set, so usage is known the moment one is); a job with a `run` also touches
 * that run's cap. New kinds are added here and nowhere else.
 */
import { NAME_RE, type IntakeJobData } from '../../queues/contract.ts';

export type ScopeKind = 'project' | 'user-day' | 'user-week' | 'run' | 'project-type' | CapKind;
/** GPUs in flight: per project, per user, per (project, GPU type), and one for everything. */
export type CapKind = 'gpus-project' | 'gpus-user' | 'gpus-type' | 'gpus-global';

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
/** A project's budget for one GPU type (e.g. 200 H100-hours a month), named as its GPU cap is. */
export const projectTypeScope = (project: string, gpuType: string): ScopeRef => ref('project-type', `${project}/${gpuType}`);
/** Only a GPU type that is a name (NAME_RE) can have a cap or a budget of its own; free text such as "A100 80GB" cannot. */
export const isNamedGpuType = (gpuType: string | undefined): gpuType is string => gpuType !== undefined && NAME_RE.test(gpuType);

export const projectCap = (project: string): ScopeRef => ref('gpus-project', project);
export const userCap = (user: string): ScopeRef => ref('gpus-user', user);
/** GPU types are named within their project, as runs are. */
export const gpuTypeCap = (project: string, gpuType: string): ScopeRef => ref('gpus-type', `${project}/${gpuType}`);
export const globalCap: ScopeRef = ref('gpus-global', 'all');

/**
 * The GPU caps a job may count against, set or not (only set ones count, in
 * the reserve call: src/redis/lua/includes/caps.lua capsOfJob names them
 * alike).
 */
export function capsForJob(job: Pick<IntakeJobData, 'project' | 'user' | 'gpuType'>): ScopeRef[] {
  return [projectCap(job.project), userCap(job.user), ...(isNamedGpuType(job.gpuType) ? [gpuTypeCap(job.project, job.gpuType)] : []), globalCap];
}

export const isCap = (scope: string): boolean => scope.startsWith('gpus-');

/**
 * Every scope a job is reserved against, in a fixed order: with a named GPU
 * type, its project's budget for that type too (counted with no limit set,
 * in its one-off counter: a periodic type budget counts from its first
 * period on).
 */
export function scopesForJob(job: Pick<IntakeJobData, 'project' | 'user' | 'run' | 'gpuType'>): ScopeRef[] {
  const out = [projectScope(job.project), userQuotaScope(job.user, 'day'), userQuotaScope(job.user, 'week')];
  if (job.run !== undefined) out.push(runScope(job.project, job.run));
  if (isNamedGpuType(job.gpuType)) out.push(projectTypeScope(job.project, job.gpuType));
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
  if (s.kind === 'gpus-global') return 'all GPUs in flight';
  if (isCap(s.id)) return `${capSubject(s.id)}'s GPUs in flight`;
  if (s.kind === 'user-day') return `user ${s.name}'s daily quota`;
  if (s.kind === 'user-week') return `user ${s.name}'s weekly quota`;
  if (s.kind === 'project-type') {
    const [project, gpuType] = s.name.split('/');
    return `project ${project}'s ${gpuType} budget`;
  }
  return `${s.kind} ${s.name}`;
}

/** Whose GPUs a cap counts: "project alpha", "user ann", "project alpha's h100", "all projects". */
export function capSubject(id: string): string {
  const s = parseScopeId(id);
  if (s.kind === 'gpus-project') return `project ${s.name}`;
  if (s.kind === 'gpus-user') return `user ${s.name}`;
  if (s.kind === 'gpus-type') {
    const [project, gpuType] = s.name.split('/');
    return `project ${project}'s ${gpuType}`;
  }
  return 'all projects';
}

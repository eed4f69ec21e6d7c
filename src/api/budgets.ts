/**
 * Limits over HTTP, in decimal GPU hours: project budgets (with periods,
 * rollover, policy and manual adjustment), user quotas, run caps and exempt
 * job types. Every write is audited (src/accounting/budgets.ts).
 */
import { Router } from 'express';
import { z } from 'zod';
import { NAME_RE } from '../../queues/contract.ts';
import type { Budgets, ScopeView } from '../accounting/budgets.ts';
import type { ReleaseMode } from '../accounting/types.ts';
import { gpuMsToHours, hoursToGpuMs } from '../units.ts';
import { HttpError } from '../http/errors.ts';
import { actorOf } from '../http/auth.ts';
import { accessOf, must } from '../http/access.ts';
import { body, cursorPageQuery, freeText, parseBody } from './validate.ts';
import { quotaUsers } from '../db/quotas.ts';
import type { Pool } from '../db/pool.ts';
import { userQuotaScope } from '../accounting/scopes.ts';
import { fieldNames } from '../../queues/contract.ts';
import { unsafeText } from '../text.ts';

/** Largest limit one scope may have: far below 2^53 GPU-ms even with grace and rollover. */
export const MAX_BUDGET_GPU_HOURS = 1_000_000_000;

const reason = freeText('reason').optional();
/** The smallest amount other than 0 that an amount in GPU hours can be: 1 GPU-ms, written so it rounds to 1. */
export const SMALLEST_GPU_HOURS = '0.000000278';
/** Amounts are whole GPU-ms inside: one that is not 0 but rounds to 0 would be an audited change that changes nothing. */
const notRoundedAway = (what: string) => [
  (h: number) => h === 0 || hoursToGpuMs(h) !== 0,
  `${what} rounds to 0 GPU-ms; the smallest amount other than 0 is ${SMALLEST_GPU_HOURS} GPU-h (1 GPU-ms)`,
] as const;
const gpuHours = (what: string, min = 0) =>
  z
    .number({ error: (i) => (i.input === undefined ? `${what} is required` : `${what} must be a number`) })
    .min(min, `${what} may not be negative`)
    .max(MAX_BUDGET_GPU_HOURS, `${what} must be at most ${MAX_BUDGET_GPU_HOURS}`)
    .refine(...notRoundedAway(what));
const policy = z.enum(['hard', 'soft'], { error: 'policy must be "hard" or "soft"' }).optional();
const release = z.enum(['auto', 'manual'], { error: 'release must be "auto" (held jobs start when they fit) or "manual" (an admin releases them)' }).optional();
const gracePercent = z
  .number({ error: 'gracePercent must be a number' })
  .int('gracePercent must be a whole number')
  .min(0, 'gracePercent may not be negative')
  .max(100, 'gracePercent must be at most 100')
  .nullable()
  .optional();

const thresholds = z
  .array(z.number({ error: 'thresholds must be numbers' }).int('thresholds must be whole percents').min(1, 'a threshold must be at least 1').max(1000, 'a threshold must be at most 1000'), {
    error: 'thresholds must be an array of percents, e.g. [75, 90, 100]',
  })
  .max(10, 'at most 10 thresholds')
  .refine((t) => new Set(t).size === t.length, 'thresholds must be distinct')
  .transform((t) => [...t].sort((a, b) => a - b))
  .nullable()
  .optional();

const BudgetBody = body({
  reason,
  gpuHours: gpuHours('gpuHours'),
  period: z.enum(['none', 'week', 'month'], { error: 'period must be "none", "week" or "month"' }).optional(),
  rollover: z.boolean({ error: 'rollover must be true or false' }).optional(),
  rolloverCapGpuHours: gpuHours('rolloverCapGpuHours').nullable().optional(),
  policy,
  gracePercent,
  thresholds,
  release,
});

const AdjustBody = body({
  reason,
  gpuHours: z
    .number({ error: (i) => (i.input === undefined ? 'gpuHours is required' : 'gpuHours must be a number') })
    .refine((h) => h !== 0, 'gpuHours may not be 0')
    .refine((h) => Math.abs(h) <= MAX_BUDGET_GPU_HOURS, `gpuHours must be between -${MAX_BUDGET_GPU_HOURS} and ${MAX_BUDGET_GPU_HOURS}`)
    .refine(...notRoundedAway('gpuHours')),
});

const LimitBody = z.strictObject(
  { gpuHours: gpuHours('gpuHours'), policy, gracePercent, thresholds, release },
  { error: (i) => (i.code === 'unrecognized_keys' ? `unknown field(s): ${fieldNames(i.keys)}` : 'a quota must be an object { gpuHours, policy?, gracePercent?, thresholds?, release? } or null') },
);
const QuotaBody = body({ reason, daily: LimitBody.nullable().optional(), weekly: LimitBody.nullable().optional() }).refine(
  (b) => b.daily !== undefined || b.weekly !== undefined,
  'give daily and/or weekly (null removes one)',
);
const RunCapBody = body({ reason, gpuHours: gpuHours('gpuHours'), policy, gracePercent, thresholds, release });
const ReasonBody = body({ reason }).optional();
const QuotaListQuery = cursorPageQuery('user');

export function nameParam(what: string, raw: string): string {
  if (!NAME_RE.test(raw)) throw new HttpError(400, `${what} must be 1-128 characters of A-Z a-z 0-9 . _ -`);
  return raw;
}
export const projectParam = (raw: string) => nameParam('project', raw);

const hours = (ms: number | null) => (ms === null ? null : gpuMsToHours(ms));
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** One scope in GPU hours; what the API, the CLI and the dashboard show. */
export function scopeJson(v: ScopeView) {
  return {
    scope: v.scope,
    period: v.period,
    periodLabel: v.periodLabel,
    periodStart: iso(v.periodStart),
    nextResetAt: iso(v.nextResetAt),
    policy: v.policy,
    gracePercent: v.gracePercent,
    thresholds: v.thresholds,
    release: v.release,
    limitGpuHours: hours(v.limitGpuMs),
    ...(v.rollover ? { rollover: true, rolloverCapGpuHours: hours(v.rolloverCapGpuMs), carriedOverGpuHours: hours(v.carryGpuMs) } : {}),
    ...(v.adjustGpuMs !== 0 ? { adjustedGpuHours: hours(v.adjustGpuMs) } : {}),
    effectiveLimitGpuHours: hours(v.effectiveLimitGpuMs),
    usedGpuHours: hours(v.usedGpuMs),
    reservedGpuHours: hours(v.reservedGpuMs),
    remainingGpuHours: hours(v.remainingGpuMs),
    exemptUsedGpuHours: hours(v.exemptUsedGpuMs),
    exemptReservedGpuHours: hours(v.exemptReservedGpuMs),
    updatedAt: v.updatedAt?.toISOString() ?? null,
  };
}

export function budgetJson(project: string, v: ScopeView) {
  return { project, ...scopeJson(v) };
}

export function budgetRoutes(budgets: Budgets, pool: Pool): Router {
  const r = Router();
  // Users with a quota by name, a page at a time (cursor as GET /projects); Redis is read for the page only.
  r.get('/quotas', async (req, res) => {
    const q = parseBody(QuotaListQuery, req.query);
    const access = accessOf(res);
    // Seeing others' quotas or not: the caller's own is always on the list.
    const names = access.seesOthers
      ? await quotaUsers(pool, { after: q.cursor ?? null, q: q.q ?? null, limit: q.limit + 1 })
      : [access.who.name].filter((u) => (q.cursor === undefined || u > q.cursor) && (q.q === undefined || u.toLowerCase().includes(q.q.toLowerCase())));
    const onPage = names.slice(0, q.limit);
    const views = await budgets.views(onPage.flatMap((u) => [userQuotaScope(u, 'day').id, userQuotaScope(u, 'week').id]));
    res.json({
      quotas: onPage.map((user, i) => ({ user, daily: scopeJson(views[2 * i]!), weekly: scopeJson(views[2 * i + 1]!) })),
      nextCursor: names.length > q.limit ? onPage.at(-1)! : null,
    });
  });
  r.put('/projects/:project/budget', async (req, res) => {
    const project = projectParam(req.params.project);
    must(res, (a) => a.canManageProject(project), `change the budget of project ${project}`);
    const b = parseBody(BudgetBody, req.body);
    const view = await budgets.set(project, hoursToGpuMs(b.gpuHours), actorOf(res), b.reason ?? null, {
      ...(b.period !== undefined ? { period: b.period } : {}),
      ...(b.rollover !== undefined ? { rollover: b.rollover } : {}),
      ...(b.rolloverCapGpuHours !== undefined ? { rolloverCapGpuMs: b.rolloverCapGpuHours === null ? null : hoursToGpuMs(b.rolloverCapGpuHours) } : {}),
      ...limitOptions(b),
    });
    res.json(budgetJson(project, view));
  });
  r.get('/projects/:project/budget', async (req, res) => {
    const project = projectParam(req.params.project);
    must(res, (a) => a.canSeeProject(project), `read the budget of project ${project}`);
    const view = await budgets.get(project);
    if (!view) throw new HttpError(404, `no budget for project ${project}`);
    res.json(budgetJson(project, view));
  });
  r.post('/projects/:project/budget/adjust', async (req, res) => {
    const project = projectParam(req.params.project);
    must(res, (a) => a.canManageProject(project), `adjust the budget of project ${project}`);
    const b = parseBody(AdjustBody, req.body);
    const view = await budgets.adjust(project, hoursToGpuMs(b.gpuHours), actorOf(res), b.reason ?? null);
    if (!view) throw new HttpError(404, `no budget for project ${project}`);
    res.json(budgetJson(project, view));
  });

  r.get('/users/:user/quota', async (req, res) => {
    const user = nameParam('user', req.params.user);
    must(res, (a) => a.canSeeUser(user), `read the quota of ${user}`);
    const q = await budgets.quota(user);
    res.json({ user: q.user, daily: scopeJson(q.daily), weekly: scopeJson(q.weekly) });
  });
  r.put('/users/:user/quota', async (req, res) => {
    const user = nameParam('user', req.params.user);
    must(res, (a) => a.canManageUsers(), `set the quota of ${user} (user limits need an admin or a manager of every project)`);
    const b = parseBody(QuotaBody, req.body);
    const limit = (l: z.infer<typeof LimitBody> | null | undefined) =>
      l === undefined ? undefined : l === null ? null : { limitGpuMs: hoursToGpuMs(l.gpuHours), ...limitOptions(l) };
    const q = await budgets.setQuota(user, { daily: limit(b.daily), weekly: limit(b.weekly) }, actorOf(res), b.reason ?? null);
    res.json({ user: q.user, daily: scopeJson(q.daily), weekly: scopeJson(q.weekly) });
  });

  r.get('/projects/:project/runs/:run/cap', async (req, res) => {
    const [project, run] = [projectParam(req.params.project), nameParam('run', req.params.run)];
    must(res, (a) => a.canSeeProject(project), `read the run caps of project ${project}`);
    res.json({ project, run, ...scopeJson(await budgets.runCap(project, run)) });
  });
  r.put('/projects/:project/runs/:run/cap', async (req, res) => {
    const [project, run] = [projectParam(req.params.project), nameParam('run', req.params.run)];
    must(res, (a) => a.canManageProject(project), `change the run caps of project ${project}`);
    const b = parseBody(RunCapBody, req.body);
    const input = { limitGpuMs: hoursToGpuMs(b.gpuHours), ...limitOptions(b) };
    res.json({ project, run, ...scopeJson(await budgets.setRunCap(project, run, input, actorOf(res), b.reason ?? null)) });
  });
  r.delete('/projects/:project/runs/:run/cap', async (req, res) => {
    const [project, run] = [projectParam(req.params.project), nameParam('run', req.params.run)];
    must(res, (a) => a.canManageProject(project), `change the run caps of project ${project}`);
    const b = parseBody(ReasonBody, req.body);
    res.json({ project, run, ...scopeJson(await budgets.setRunCap(project, run, null, actorOf(res), b?.reason ?? null)) });
  });

  r.get('/exempt-job-types', async (_req, res) => {
    res.json({ jobTypes: await budgets.exemptTypes() });
  });
  r.put('/exempt-job-types/:jobType', async (req, res) => {
    const b = parseBody(ReasonBody, req.body);
    res.json({ jobTypes: await budgets.setExempt(jobTypeParam(req.params.jobType), true, actorOf(res), b?.reason ?? null) });
  });
  r.delete('/exempt-job-types/:jobType', async (req, res) => {
    const b = parseBody(ReasonBody, req.body);
    res.json({ jobTypes: await budgets.setExempt(jobTypeParam(req.params.jobType), false, actorOf(res), b?.reason ?? null) });
  });
  return r;
}

/** The optional settings every limit shares, as given (omitted = keep). */
function limitOptions(b: { policy?: 'hard' | 'soft' | undefined; gracePercent?: number | null | undefined; thresholds?: number[] | null | undefined; release?: ReleaseMode | undefined }) {
  return {
    ...(b.policy ? { policy: b.policy } : {}),
    ...(b.release ? { release: b.release } : {}),
    ...(b.gracePercent !== undefined ? { gracePercent: b.gracePercent } : {}),
    ...(b.thresholds !== undefined ? { thresholds: b.thresholds } : {}),
  };
}

/** Job types are free text on the intake contract (1-128 characters). */
function jobTypeParam(raw: string): string {
  if (raw.length < 1 || raw.length > 128) throw new HttpError(400, 'jobType must be 1-128 characters');
  const why = unsafeText('jobType', raw);
  if (why) throw new HttpError(400, why);
  return raw;
}

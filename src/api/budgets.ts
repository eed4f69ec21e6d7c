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
import { LIMIT_UNITS, toScaled, UNIT_SCALE, type LimitUnit } from '../accounting/pricing.ts';

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
/** An amount of units or dollars: a decimal with no more places than the unit's integer holds (milli-units, micro-dollars). */
const scaled = (what: string, unit: 'units' | 'usd', min = 0) =>
  z
    .number({ error: (i) => (i.input === undefined ? `${what} is required` : `${what} must be a number`) })
    .min(min, `${what} may not be negative`)
    .max(MAX_BUDGET_GPU_HOURS, `${what} must be at most ${MAX_BUDGET_GPU_HOURS}`)
    .refine((n) => toScaled(Math.abs(n), UNIT_SCALE[unit]) !== null, `${what} has more decimals than ${unit === 'usd' ? 'a micro-dollar (6)' : 'a milli-unit (3)'}`);
/** A limit's amount, in exactly one unit: { gpuHours } | { units } | { usd }. */
const amountFields = { gpuHours: gpuHours('gpuHours').optional(), units: scaled('units', 'units').optional(), usd: scaled('usd', 'usd').optional() };
type Amounts = { gpuHours?: number | undefined; units?: number | undefined; usd?: number | undefined };
const oneAmount = (b: Amounts, ctx: z.RefinementCtx) => {
  const given = LIMIT_UNITS.filter((u) => b[u] !== undefined);
  if (given.length === 0) ctx.addIssue({ code: 'custom', message: 'give the amount as one of gpuHours, units or usd' });
  if (given.length > 1) ctx.addIssue({ code: 'custom', message: `give the amount in one unit only, not ${given.join(' and ')}` });
};
/** The amount as the unit's integer (GPU-ms, milli-units, micro-dollars). */
export function amountOf(b: Amounts): { unit: LimitUnit; amount: number } {
  const unit = LIMIT_UNITS.find((u) => b[u] !== undefined)!;
  const n = b[unit]!;
  if (unit === 'gpuHours') return { unit, amount: hoursToGpuMs(n) };
  const abs = toScaled(Math.abs(n), UNIT_SCALE[unit])!;
  return { unit, amount: n < 0 ? -abs : abs };
}

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

export const BudgetBody = body({
  reason,
  ...amountFields,
  period: z.enum(['none', 'week', 'month'], { error: 'period must be "none", "week" or "month"' }).optional(),
  rollover: z.boolean({ error: 'rollover must be true or false' }).optional(),
  rolloverCapGpuHours: gpuHours('rolloverCapGpuHours').nullable().optional(),
  /** In the budget's unit when it is units or usd. */
  rolloverCap: z.number({ error: 'rolloverCap must be a number' }).min(0, 'rolloverCap may not be negative').max(MAX_BUDGET_GPU_HOURS, `rolloverCap must be at most ${MAX_BUDGET_GPU_HOURS}`).nullable().optional(),
  policy,
  gracePercent,
  thresholds,
  release,
}).superRefine(oneAmount);

const delta = (what: string) =>
  z
    .number({ error: (i) => (i.input === undefined ? `${what} is required` : `${what} must be a number`) })
    .refine((h) => h !== 0, `${what} may not be 0`)
    .refine((h) => Math.abs(h) <= MAX_BUDGET_GPU_HOURS, `${what} must be between -${MAX_BUDGET_GPU_HOURS} and ${MAX_BUDGET_GPU_HOURS}`);
const AdjustBody = body({
  reason,
  gpuHours: delta('gpuHours').refine(...notRoundedAway('gpuHours')).optional(),
  units: delta('units').refine((n) => toScaled(Math.abs(n), 1000) !== null, 'units has more decimals than a milli-unit (3)').optional(),
  usd: delta('usd').refine((n) => toScaled(Math.abs(n), 1_000_000) !== null, 'usd has more decimals than a micro-dollar (6)').optional(),
}).superRefine(oneAmount);

const LimitBody = z.strictObject(
  { ...amountFields, policy, gracePercent, thresholds, release },
  { error: (i) => (i.code === 'unrecognized_keys' ? `unknown field(s): ${fieldNames(i.keys)}` : 'a quota must be an object { gpuHours | units | usd, policy?, gracePercent?, thresholds?, release? } or null') },
).superRefine(oneAmount);
const QuotaBody = body({ reason, daily: LimitBody.nullable().optional(), weekly: LimitBody.nullable().optional() }).refine(
  (b) => b.daily !== undefined || b.weekly !== undefined,
  'give daily and/or weekly (null removes one)',
);
const RunCapBody = body({ reason, ...amountFields, policy, gracePercent, thresholds, release }).superRefine(oneAmount);
const ReasonBody = body({ reason }).optional();
const QuotaListQuery = cursorPageQuery('user');

export function nameParam(what: string, raw: string): string {
  if (!NAME_RE.test(raw)) throw new HttpError(400, `${what} must be 1-128 characters of A-Z a-z 0-9 . _ -`);
  return raw;
}
export const projectParam = (raw: string) => nameParam('project', raw);

const hours = (ms: number | null) => (ms === null ? null : gpuMsToHours(ms));
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/**
 * One scope: its amounts in its limit's unit (`limit`, `used`, … as decimal
 * GPU-hours, units or dollars), the same in GPU hours under their old names
 * when the unit is gpuHours, and every unit's counters side by side in
 * `counted`; what the API, the CLI and the dashboard show.
 */
export function scopeJson(v: ScopeView) {
  const unit = v.unit;
  const inUnit = (n: number | null) => (n === null ? null : n / UNIT_SCALE[unit]);
  const counted = {
    gpuHours: { used: gpuMsToHours(v.counted.gpuHours.used), reserved: gpuMsToHours(v.counted.gpuHours.reserved) },
    units: { used: v.counted.units.used / 1000, reserved: v.counted.units.reserved / 1000 },
    usd: { used: v.counted.usd.used / 1_000_000, reserved: v.counted.usd.reserved / 1_000_000 },
  };
  const common = {
    scope: v.scope,
    unit,
    period: v.period,
    periodLabel: v.periodLabel,
    periodStart: iso(v.periodStart),
    nextResetAt: iso(v.nextResetAt),
    policy: v.policy,
    gracePercent: v.gracePercent,
    thresholds: v.thresholds,
    release: v.release,
    limit: inUnit(v.limitGpuMs),
    effectiveLimit: inUnit(v.effectiveLimitGpuMs),
    used: inUnit(v.usedGpuMs),
    reserved: inUnit(v.reservedGpuMs),
    remaining: inUnit(v.remainingGpuMs),
    ...(v.rollover ? { rollover: true, rolloverCap: inUnit(v.rolloverCapGpuMs), carriedOver: inUnit(v.carryGpuMs) } : {}),
    ...(v.adjustGpuMs !== 0 ? { adjusted: inUnit(v.adjustGpuMs) } : {}),
    counted,
    exemptUsedGpuHours: hours(v.exemptUsedGpuMs),
    exemptReservedGpuHours: hours(v.exemptReservedGpuMs),
    updatedAt: v.updatedAt?.toISOString() ?? null,
  };
  if (unit !== 'gpuHours') return { ...common, usedGpuHours: counted.gpuHours.used, reservedGpuHours: counted.gpuHours.reserved };
  return {
    ...common,
    limitGpuHours: hours(v.limitGpuMs),
    ...(v.rollover ? { rolloverCapGpuHours: hours(v.rolloverCapGpuMs), carriedOverGpuHours: hours(v.carryGpuMs) } : {}),
    ...(v.adjustGpuMs !== 0 ? { adjustedGpuHours: hours(v.adjustGpuMs) } : {}),
    effectiveLimitGpuHours: hours(v.effectiveLimitGpuMs),
    usedGpuHours: hours(v.usedGpuMs),
    reservedGpuHours: hours(v.reservedGpuMs),
    remainingGpuHours: hours(v.remainingGpuMs),
  };
}

export function budgetJson(project: string, v: ScopeView) {
  return { project, ...scopeJson(v) };
}

/** A budget's rollover cap: rolloverCapGpuHours for a budget in gpuHours, rolloverCap (in its unit) for any. */
export function rolloverCapOf(b: { rolloverCapGpuHours?: number | null | undefined; rolloverCap?: number | null | undefined }, unit: LimitUnit): { rolloverCapGpuMs?: number | null } {
  if (b.rolloverCapGpuHours !== undefined && unit !== 'gpuHours') throw new HttpError(400, `rolloverCapGpuHours is for a budget in gpuHours; give rolloverCap in ${unit}`);
  const cap = b.rolloverCapGpuHours !== undefined ? b.rolloverCapGpuHours : b.rolloverCap;
  if (cap === undefined) return {};
  if (cap === null) return { rolloverCapGpuMs: null };
  if (unit === 'gpuHours') return { rolloverCapGpuMs: hoursToGpuMs(cap) };
  const n = toScaled(cap, UNIT_SCALE[unit]);
  if (n === null) throw new HttpError(400, `rolloverCap has more decimals than the ${unit} unit holds`);
  return { rolloverCapGpuMs: n };
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
    const { unit, amount } = amountOf(b);
    const view = await budgets.set(project, amount, actorOf(res), b.reason ?? null, {
      unit,
      ...(b.period !== undefined ? { period: b.period } : {}),
      ...(b.rollover !== undefined ? { rollover: b.rollover } : {}),
      ...rolloverCapOf(b, unit),
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
    const { unit, amount } = amountOf(b);
    const current = await budgets.get(project);
    if (current && current.unit !== unit) throw new HttpError(409, `the budget of project ${project} is in ${current.unit}; adjust it in ${current.unit}`);
    const view = await budgets.adjust(project, amount, actorOf(res), b.reason ?? null);
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
      l === undefined ? undefined : l === null ? null : (({ unit, amount }) => ({ limitGpuMs: amount, unit, ...limitOptions(l) }))(amountOf(l));
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
    const { unit, amount } = amountOf(b);
    const input = { limitGpuMs: amount, unit, ...limitOptions(b) };
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
export function limitOptions(b: { policy?: 'hard' | 'soft' | undefined; gracePercent?: number | null | undefined; thresholds?: number[] | null | undefined; release?: ReleaseMode | undefined }) {
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

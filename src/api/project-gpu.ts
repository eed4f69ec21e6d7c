/**
 * A project's GPU types over HTTP:
 *   GET|PUT /projects/:project/gpu-types              which types it may use
 *                                                     (GET: and its type budgets)
 *   GET|PUT|DELETE /projects/:project/gpu-types/:gpuType/budget
 *                                                     its budget for one type
 * PUT gpu-types { "allowed": ["h100", "a100"] | null, "reason"? } (null: any
 * type; admins only, so a project cannot widen its own list). A type budget
 * takes the body of a project budget ({ gpuHours | units | usd, period?, … })
 * and is a manager's, as the budget is. Every change is audited.
 */
import { Router } from 'express';
import { z } from 'zod';
import { NAME_RE } from '../../queues/contract.ts';
import type { AllowedGpuTypes } from '../accounting/allowed-gpu-types.ts';
import type { Budgets } from '../accounting/budgets.ts';
import { projectTypeScope } from '../accounting/scopes.ts';
import { HttpError } from '../http/errors.ts';
import { actorOf } from '../http/auth.ts';
import { must } from '../http/access.ts';
import { body, freeText, parseBody } from './validate.ts';
import { amountOf, BudgetBody, limitOptions, nameParam, projectParam, rolloverCapOf, scopeJson } from './budgets.ts';

const gpuTypeName = z.string({ error: 'a GPU type must be a string' }).regex(NAME_RE, 'a GPU type must be 1-128 characters of A-Z a-z 0-9 . _ -');
const AllowedBody = body({
  allowed: z.array(gpuTypeName, { error: 'allowed must be a list of GPU types, or null for any' }).max(64, 'at most 64 GPU types').nullable(),
  reason: freeText('reason').optional(),
});
const ReasonBody = body({ reason: freeText('reason').optional() }).optional();

export function projectGpuRoutes(allowed: AllowedGpuTypes, budgets: Budgets): Router {
  const r = Router();
  r.get('/projects/:project/gpu-types', async (req, res) => {
    const project = projectParam(req.params.project);
    must(res, (a) => a.canSeeProject(project), `read the GPU types of project ${project}`);
    const [row, views] = await Promise.all([allowed.get(project), budgets.typeBudgets([project])]);
    const typeBudgets = views.map((v) => ({ gpuType: v.scope.slice(v.scope.indexOf('/') + 1), ...scopeJson(v) }));
    res.json({ project, allowed: row?.allowed ?? null, updatedAt: row?.updatedAt.toISOString() ?? null, budgets: typeBudgets });
  });
  r.put('/projects/:project/gpu-types', async (req, res) => {
    const project = projectParam(req.params.project);
    const b = parseBody(AllowedBody, req.body);
    const row = await allowed.set(project, b.allowed, actorOf(res), b.reason ?? null);
    res.json({ project, allowed: row?.allowed ?? null, updatedAt: row?.updatedAt.toISOString() ?? null });
  });

  const typeBudget = (raw: { project: string; gpuType: string }) => ({ project: projectParam(raw.project), gpuType: nameParam('gpuType', raw.gpuType) });
  r.get('/projects/:project/gpu-types/:gpuType/budget', async (req, res) => {
    const { project, gpuType } = typeBudget(req.params);
    must(res, (a) => a.canSeeProject(project), `read the budgets of project ${project}`);
    const view = await budgets.view(projectTypeScope(project, gpuType).id);
    if (view.limitGpuMs === null) throw new HttpError(404, `no ${gpuType} budget for project ${project}`);
    res.json({ project, gpuType, ...scopeJson(view) });
  });
  r.put('/projects/:project/gpu-types/:gpuType/budget', async (req, res) => {
    const { project, gpuType } = typeBudget(req.params);
    must(res, (a) => a.canManageProject(project), `change the budgets of project ${project}`);
    const b = parseBody(BudgetBody, req.body);
    const { unit, amount } = amountOf(b);
    const input = {
      limitGpuMs: amount, unit,
      ...(b.period !== undefined ? { period: b.period } : {}),
      ...(b.rollover !== undefined ? { rollover: b.rollover } : {}),
      ...rolloverCapOf(b, unit),
      ...limitOptions(b),
    };
    res.json({ project, gpuType, ...scopeJson(await budgets.setTypeBudget(project, gpuType, input, actorOf(res), b.reason ?? null)) });
  });
  r.delete('/projects/:project/gpu-types/:gpuType/budget', async (req, res) => {
    const { project, gpuType } = typeBudget(req.params);
    must(res, (a) => a.canManageProject(project), `change the budgets of project ${project}`);
    const b = parseBody(ReasonBody, req.body);
    res.json({ project, gpuType, ...scopeJson(await budgets.setTypeBudget(project, gpuType, null, actorOf(res), b?.reason ?? null)) });
  });
  return r;
}

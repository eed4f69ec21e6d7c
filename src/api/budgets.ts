/** PUT/GET /api/v1/projects/:project/budget, in decimal GPU hours. */
import { Router } from 'express';
import { z } from 'zod';
import { NAME_RE } from '../../queues/contract.ts';
import type { Budgets, BudgetView } from '../accounting/budgets.ts';
import { gpuMsToHours, hoursToGpuMs } from '../units.ts';
import { HttpError } from './errors.ts';
import { actorOf } from './auth.ts';
import { body, parseBody } from './validate.ts';

/** Largest budget one project may have: far below 2^53 GPU-ms. */
export const MAX_BUDGET_GPU_HOURS = 1_000_000_000;

const BudgetBody = body({
    reason: z.string({ error: 'reason must be a string' }).max(500, 'reason is at most 500 characters').optional(),
    gpuHours: z
      .number({ error: (i) => (i.input === undefined ? 'gpuHours is required' : 'gpuHours must be a number') })
      .min(0, 'gpuHours may not be negative')
      .max(MAX_BUDGET_GPU_HOURS, `gpuHours must be at most ${MAX_BUDGET_GPU_HOURS}`),
});

export function projectParam(raw: string): string {
  if (!NAME_RE.test(raw)) throw new HttpError(400, 'project must be 1-128 characters of A-Z a-z 0-9 . _ -');
  return raw;
}

export function budgetJson(b: BudgetView) {
  return {
    project: b.project,
    limitGpuHours: gpuMsToHours(b.limitGpuMs),
    usedGpuHours: gpuMsToHours(b.usedGpuMs),
    reservedGpuHours: gpuMsToHours(b.reservedGpuMs),
    remainingGpuHours: gpuMsToHours(b.remainingGpuMs),
    updatedAt: b.updatedAt.toISOString(),
  };
}

export function budgetRoutes(budgets: Budgets): Router {
  const r = Router();
  r.put('/projects/:project/budget', async (req, res) => {
    const project = projectParam(req.params.project);
    const body = parseBody(BudgetBody, req.body);
    const view = await budgets.set(project, hoursToGpuMs(body.gpuHours), actorOf(res), body.reason ?? null);
    res.json(budgetJson(view));
  });
  r.get('/projects/:project/budget', async (req, res) => {
    const project = projectParam(req.params.project);
    const view = await budgets.get(project);
    if (!view) throw new HttpError(404, `no budget for project ${project}`);
    res.json(budgetJson(view));
  });
  return r;
}

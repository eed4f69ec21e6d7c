/**
 * Corrections over HTTP (src/accounting/corrections.ts), admins only:
 *   POST /corrections { "kind": "credit", "scope": "project:alpha", "gpuHours" | "units" | "usd": n, "reason" }
 *                     { "kind": "refund", "jobId": "42", "gpuHours"?: n, "reason" }      (none: all that is left)
 *                     { "kind": "re-rate", "gpuType": "h100", "from": ISO, "to": ISO,
 *                       "unitsPerGpuHour": 3, "usdPerGpuHour": 4.1, "reason" }
 *   GET  /corrections?jobId=&limit=&offset=    newest first
 * A reason is required: a correction changes what people were charged.
 */
import { Router } from 'express';
import { z } from 'zod';
import { CorrectionRefused, type Corrections } from '../accounting/corrections.ts';
import { MAX_UNITS_MILLI_PER_HOUR, MAX_USD_MICRO_PER_HOUR, toScaled, UNIT_SCALE, type LimitUnit } from '../accounting/pricing.ts';
import { listCorrections } from '../db/corrections.ts';
import type { Pool } from '../db/pool.ts';
import { HttpError } from '../http/errors.ts';
import { actorOf } from '../http/auth.ts';
import { hoursToGpuMs } from '../units.ts';
import { SMALLEST_GPU_HOURS } from './budgets.ts';
import { safeText } from '../text.ts';
import { body, freeText, jobIdText, pageLimit, pageOffset, parseBody, query } from './validate.ts';

const SCOPE_RE = /^(project|user-day|user-week):[A-Za-z0-9._-]{1,128}$|^(run|project-type):[A-Za-z0-9._-]{1,128}\/[A-Za-z0-9._-]{1,128}$/;
const reason = freeText('reason');
const positive = (what: string) => z.number({ error: `${what} must be a number` }).positive(`${what} must be more than 0`).max(1_000_000_000, `${what} must be at most 1000000000`);
/** Whole GPU-ms inside: an amount that rounds to 0 would be refused later as "asked for 0"; say so here. */
const gpuHours = positive('gpuHours').refine((h) => hoursToGpuMs(h) >= 1, `gpuHours must be at least ${SMALLEST_GPU_HOURS} (1 GPU-ms)`);
const iso = (what: string) => z.iso.datetime({ offset: true, error: `${what} must be an ISO 8601 date-time such as 2026-11-01T00:00:00Z` }).transform((s) => Date.parse(s));
const rate = (what: string, max: number, scale: number) =>
  z.number({ error: `${what} must be a number` }).min(0, `${what} may not be negative`)
    .refine((n) => { const v = toScaled(n, scale); return v !== null && v <= max; }, `${what} must be at most ${max / scale} with at most ${String(scale).length - 1} decimals`);

const Credit = body({
  kind: z.literal('credit'), reason,
  scope: z.string({ error: 'scope must be a string' }).regex(SCOPE_RE, 'scope must name a budget, quota, run cap or GPU type budget, e.g. project:alpha, user-day:ann, run:alpha/r1, project-type:alpha/h100'),
  gpuHours: gpuHours.optional(), units: positive('units').optional(), usd: positive('usd').optional(),
});
const Refund = body({ kind: z.literal('refund'), reason, jobId: jobIdText('jobId must be a string'), gpuHours: gpuHours.optional() });
const ReRate = body({
  kind: z.literal('re-rate'), reason,
  gpuType: z.string({ error: 'gpuType must be a string' }).min(1, 'gpuType may not be empty').max(128, 'gpuType is longer than 128 characters').superRefine(safeText('gpuType')),
  from: iso('from'), to: iso('to'),
  unitsPerGpuHour: rate('unitsPerGpuHour', MAX_UNITS_MILLI_PER_HOUR, 1000), usdPerGpuHour: rate('usdPerGpuHour', MAX_USD_MICRO_PER_HOUR, 1_000_000),
}).refine((b) => b.from < b.to, 'from must be before to');
const CorrectionBody = z.discriminatedUnion('kind', [Credit, Refund, ReRate], { error: 'kind must be "credit", "refund" or "re-rate"' });
const ListQuery = query({ jobId: jobIdText('jobId must be a single string').optional(), limit: pageLimit, offset: pageOffset });

export function correctionRoutes(corrections: Corrections, pool: Pool): Router {
  const r = Router();
  r.post('/corrections', async (req, res) => {
    const b = parseBody(CorrectionBody, req.body);
    const actor = actorOf(res);
    try {
      if (b.kind === 'credit') {
        const given = (['gpuHours', 'units', 'usd'] as const).filter((u) => b[u] !== undefined);
        if (given.length !== 1) throw new HttpError(400, 'give the amount as one of gpuHours, units or usd');
        const unit: LimitUnit = given[0]!;
        const amount = unit === 'gpuHours' ? hoursToGpuMs(b.gpuHours!) : toScaled(b[unit]!, UNIT_SCALE[unit]);
        if (amount === null || amount === 0) throw new HttpError(400, `${unit} has more decimals than the unit holds`);
        res.json({ kind: 'credit', scope: b.scope, ...(await corrections.credit(b.scope, unit, amount, actor, b.reason)) });
      } else if (b.kind === 'refund') {
        res.json({ kind: 'refund', jobId: b.jobId, ...(await corrections.refund(b.jobId, b.gpuHours === undefined ? null : hoursToGpuMs(b.gpuHours), actor, b.reason)) });
      } else {
        const rateNow = { unitsMilli: toScaled(b.unitsPerGpuHour, 1000)!, usdMicro: toScaled(b.usdPerGpuHour, 1_000_000)! };
        res.json({ kind: 're-rate', gpuType: b.gpuType, ...(await corrections.reRate(b.gpuType, b.from, b.to, rateNow, actor, b.reason)) });
      }
    } catch (err) {
      // Refused inside the change: its own answer, nothing changed.
      const refusal = err instanceof CorrectionRefused ? err : (err as { cause?: unknown }).cause;
      if (refusal instanceof CorrectionRefused) throw new HttpError(refusal.status, refusal.message);
      throw err;
    }
  });
  r.get('/corrections', async (req, res) => {
    const q = parseBody(ListQuery, req.query);
    const { total, rows } = await listCorrections(pool, q);
    res.json({
      total,
      corrections: rows.map((c) => ({
        id: c.id, kind: c.correction, jobId: c.jobId, corrects: c.corrects, project: c.project, user: c.user, gpuType: c.gpuType, scopes: c.scopes,
        charged: { gpuHours: c.charge.gpuMs / 3_600_000, units: c.charge.unitsMilli / 1000, usd: c.charge.usdMicro / 1_000_000 },
        ...(c.correctedGpuMs !== null ? { refundedGpuHours: c.correctedGpuMs / 3_600_000 } : {}),
        actor: c.actor, reason: c.reason, at: c.at.toISOString(),
      })),
    });
  });
  return r;
}

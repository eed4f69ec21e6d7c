/**
 * The rate card and usage factors over HTTP (src/accounting/rate-card.ts):
 *   GET /gpu-types                      every GPU type's rate now, next and history; the default rate
 *   GET|PUT /gpu-types/:gpuType         'default' names the default rate
 *     PUT { "unitsPerGpuHour": 3, "usdPerGpuHour": 4.1, "effectiveFrom"?: ISO, "reason"? }
 *   GET /job-types                      usage factors
 *   PUT|DELETE /job-types/:jobType/usage-factor   { "factor": 0.5, "reason"? } (0: exempt; DELETE: counts fully)
 * Reads are open to everyone signed in (submitters price their batches);
 * writes are admins'. Decimals are refused where the integer unit cannot
 * hold them (a milli-unit, a micro-dollar, a thousandth of a factor).
 */
import { Router } from 'express';
import { z } from 'zod';
import { RateCard, RateRefused, factorText, type GpuTypeView } from '../accounting/rate-card.ts';
import { MAX_FACTOR_MILLI, MAX_UNITS_MILLI_PER_HOUR, MAX_USD_MICRO_PER_HOUR, reservedGpuType, toScaled, type Rate } from '../accounting/pricing.ts';
import { HttpError } from '../http/errors.ts';
import { actorOf } from '../http/auth.ts';
import { safeText } from '../text.ts';
import { body, freeText, parseBody } from './validate.ts';

/** A decimal the scale holds exactly, from 0 to max (integers of 1/scale), as that integer. */
const scaledNumber = (what: string, scale: number, max: number, hint: string) =>
  z
    .number({ error: (i) => (i.input === undefined ? `${what} is required` : `${what} must be a number`) })
    .min(0, `${what} may not be negative`)
    .transform((n, ctx) => {
      const v = toScaled(n, scale);
      if (v === null || v > max) {
        ctx.addIssue({ code: 'custom', message: `${what} must be from 0 to ${max / scale} with at most ${hint}` });
        return z.NEVER;
      }
      return v;
    });

const RateBody = body({
  unitsPerGpuHour: scaledNumber('unitsPerGpuHour', 1000, MAX_UNITS_MILLI_PER_HOUR, '3 decimals'),
  usdPerGpuHour: scaledNumber('usdPerGpuHour', 1_000_000, MAX_USD_MICRO_PER_HOUR, '6 decimals'),
  effectiveFrom: z.iso.datetime({ offset: true, error: 'effectiveFrom must be an ISO 8601 date-time such as 2027-01-01T00:00:00Z' }).transform((s) => Date.parse(s)).optional(),
  reason: freeText('reason').optional(),
});
const FactorBody = body({ factor: scaledNumber('factor', 1000, MAX_FACTOR_MILLI, '3 decimals'), reason: freeText('reason').optional() });
const ReasonBody = body({ reason: freeText('reason').optional() }).optional();

/** A GPU type or job type in a path: the job contract's label rule (1-128 characters a terminal, a log and Postgres can hold). */
function labelParam(what: string, raw: string): string {
  const r = z.string().min(1).max(128, `${what} is longer than 128 characters`).superRefine(safeText(what)).safeParse(raw);
  if (!r.success) throw new HttpError(400, r.error.issues[0]!.message);
  return raw;
}

/** A GPU type in a path: a label, and not the default rate's field ('default' names that one). */
function gpuTypeParam(raw: string): string {
  const why = reservedGpuType(labelParam('gpuType', raw));
  if (why) throw new HttpError(400, `${why}; the API calls it "default" (/gpu-types/default)`);
  return raw;
}

const rate = (r: Rate) => ({ unitsPerGpuHour: r.unitsMilli / 1000, usdPerGpuHour: r.usdMicro / 1_000_000 });
const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** A GPU type as the API shows it: decimal units and dollars per GPU-hour. */
export function gpuTypeJson(v: GpuTypeView) {
  return {
    gpuType: v.gpuType,
    ...(v.current ? { ...rate(v.current), effectiveFrom: iso(v.current.effectiveFrom) } : { unitsPerGpuHour: null, usdPerGpuHour: null, effectiveFrom: null }),
    ...(v.builtIn ? { builtIn: true } : {}),
    next: v.next && { ...rate(v.next), effectiveFrom: iso(v.next.effectiveFrom) },
    history: v.history.map((e) => ({ ...rate(e), effectiveFrom: iso(e.effectiveFrom), setAt: iso(e.setAt), setBy: e.setBy, ...(e.superseded ? { superseded: true } : {}) })),
  };
}

export function rateCardRoutes(card: RateCard, unknownPolicy: 'default' | 'reject'): Router {
  const r = Router();
  r.get('/gpu-types', async (_req, res) => {
    const all = await card.gpuTypes();
    res.json({ gpuTypes: all.gpuTypes.map(gpuTypeJson), default: gpuTypeJson(all.default), unknownPolicy });
  });
  r.get('/gpu-types/:gpuType', async (req, res) => {
    const t = gpuTypeParam(req.params.gpuType);
    const v = await card.gpuType(t);
    if (!v) throw new HttpError(404, `GPU type ${JSON.stringify(t)} has no rate (its jobs get the default rate${unknownPolicy === 'reject' ? ', or are rejected: UNKNOWN_GPU_TYPE_POLICY=reject' : ''})`);
    res.json(gpuTypeJson(v));
  });
  r.put('/gpu-types/:gpuType', async (req, res) => {
    const t = gpuTypeParam(req.params.gpuType);
    const b = parseBody(RateBody, req.body);
    try {
      const v = await card.setRate(t, { unitsMilli: b.unitsPerGpuHour, usdMicro: b.usdPerGpuHour, ...(b.effectiveFrom !== undefined ? { effectiveFrom: b.effectiveFrom } : {}) }, actorOf(res), b.reason ?? null);
      res.json(gpuTypeJson(v));
    } catch (err) {
      const refusal = err instanceof RateRefused ? err : (err as { cause?: unknown }).cause;
      if (refusal instanceof RateRefused) throw new HttpError(400, refusal.message);
      throw err;
    }
  });
  r.get('/job-types', async (_req, res) => {
    res.json({ jobTypes: (await card.factors()).map((f) => ({ jobType: f.jobType, usageFactor: factorText(f.factorMilli), exempt: f.factorMilli === 0, setAt: f.setAt.toISOString() })) });
  });
  r.put('/job-types/:jobType/usage-factor', async (req, res) => {
    const t = labelParam('jobType', req.params.jobType);
    const b = parseBody(FactorBody, req.body);
    const f = await card.setFactor(t, b.factor, actorOf(res), b.reason ?? null);
    res.json({ jobType: f.jobType, usageFactor: factorText(f.factorMilli), exempt: f.factorMilli === 0 });
  });
  r.delete('/job-types/:jobType/usage-factor', async (req, res) => {
    const t = labelParam('jobType', req.params.jobType);
    const b = parseBody(ReasonBody, req.body);
    const removed = await card.removeFactor(t, actorOf(res), b?.reason ?? null);
    res.json({ jobType: t, usageFactor: 1, removed });
  });
  return r;
}

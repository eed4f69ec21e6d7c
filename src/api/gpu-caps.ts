/**
 * Caps on GPUs in flight over HTTP (src/accounting/gpu-caps.ts):
 *   GET|PUT|DELETE /projects/:project/concurrency
 *   GET|PUT|DELETE /users/:user/concurrency
 *   GET|PUT|DELETE /projects/:project/gpu-types/:gpuType/concurrency
 *   GET|PUT|DELETE /concurrency              (every project together)
 *   GET /gpu-caps                            (every cap)
 * PUT { "maxGpus": 8, "peak"?: { "maxGpus": 4, "days": ["mon", …], "from":
 * "09:00", "to": "18:00" } | null, "release"?: "auto" | "manual", "reason"? }
 * replaces the cap. Every change is audited; the viewer token reads.
 */
import { Router, type Request } from 'express';
import { z } from 'zod';
import { MAX_GPUS, type GpuCaps, type GpuCapView } from '../accounting/gpu-caps.ts';
import { globalCap, gpuTypeCap, projectCap, userCap } from '../accounting/scopes.ts';
import { HttpError } from '../http/errors.ts';
import { actorOf } from '../http/auth.ts';
import { accessOf, must, type Access } from '../http/access.ts';
import { body, freeText, parseBody } from './validate.ts';
import { nameParam, projectParam } from './budgets.ts';

export const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;

const gpus = (what: string) =>
  z
    .number({ error: (i) => (i.input === undefined ? `${what} is required` : `${what} must be a number`) })
    .int(`${what} must be a whole number`)
    .min(0, `${what} may not be negative`)
    .max(MAX_GPUS, `${what} must be at most ${MAX_GPUS.toLocaleString('en-US')}`);
const time = (what: string) =>
  z
    .string({ error: `${what} must be a time such as "09:00"` })
    .regex(/^([01]\d|2[0-3]):[0-5]\d$|^24:00$/, `${what} must be a time such as "09:00" (24:00 for the day's end)`)
    .transform((s) => Number(s.slice(0, 2)) * 60 + Number(s.slice(3)));
const Peak = z
  .strictObject({
    maxGpus: gpus('peak.maxGpus'),
    days: z.array(z.enum(DAYS, { error: `peak.days must be among ${DAYS.join(', ')}` }), { error: 'peak.days must be a list of days' }).min(1, 'peak.days may not be empty'),
    from: time('peak.from'),
    to: time('peak.to'),
  }, { error: 'peak must be { maxGpus, days, from, to } or null' })
  .refine((p) => p.from < p.to, 'peak.from must be before peak.to (a window within one day)');
const CapBody = body({
  reason: freeText('reason').optional(),
  maxGpus: gpus('maxGpus'),
  peak: Peak.nullable().optional(),
  release: z.enum(['auto', 'manual'], { error: 'release must be "auto" or "manual"' }).optional(),
});
const ReasonBody = body({ reason: freeText('reason').optional() }).optional();

const hhmm = (m: number) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`;

export function gpuCapJson(v: GpuCapView) {
  return {
    scope: v.scope,
    maxGpus: v.maxGpus,
    peak: v.peak && { maxGpus: v.peak.maxGpus, days: DAYS.filter((_, i) => Math.floor(v.peak!.days / 2 ** i) % 2 === 1), from: hhmm(v.peak.fromMinute), to: hhmm(v.peak.toMinute) },
    peakNow: v.peakNow,
    effectiveMaxGpus: v.effectiveMaxGpus,
    inFlightGpus: v.inFlightGpus,
    release: v.release,
    updatedAt: v.updatedAt.toISOString(),
  };
}

/** Who may read and change a cap: those who may see and manage its project or person; the global one is the admins'. */
interface Subject {
  scope: string;
  read: (a: Access) => boolean;
  change: (a: Access) => boolean;
}
const ofProject = (scope: string, project: string): Subject => ({ scope, read: (a) => a.canSeeProject(project), change: (a) => a.canManageProject(project) });

/** The cap each path names. */
const PATHS: [string, (req: Request) => Subject][] = [
  ['/projects/:project/concurrency', (req) => {
    const p = projectParam(String(req.params.project));
    return ofProject(projectCap(p).id, p);
  }],
  ['/users/:user/concurrency', (req) => {
    const u = nameParam('user', String(req.params.user));
    return { scope: userCap(u).id, read: (a) => a.canSeeUser(u), change: (a) => a.canManageUsers() };
  }],
  ['/projects/:project/gpu-types/:gpuType/concurrency', (req) => {
    const p = projectParam(String(req.params.project));
    return ofProject(gpuTypeCap(p, nameParam('gpuType', String(req.params.gpuType))).id, p);
  }],
  ['/concurrency', () => ({ scope: globalCap.id, read: (a) => a.readsAll, change: (a) => a.isAdmin })],
];

export function gpuCapRoutes(caps: GpuCaps): Router {
  const r = Router();
  r.get('/gpu-caps', async (_req, res) => {
    const a = accessOf(res);
    res.json({ caps: (await caps.list()).filter((c) => a.canSeeCap(c.scope)).map(gpuCapJson) });
  });
  for (const [path, scopeOf] of PATHS) {
    r.get(path, async (req, res) => {
      const { scope, read } = scopeOf(req);
      must(res, read, `read the GPU cap ${scope}`);
      const v = await caps.get(scope);
      if (!v) throw new HttpError(404, `no GPU cap ${scope}`);
      res.json(gpuCapJson(v));
    });
    r.put(path, async (req, res) => {
      const { scope, change } = scopeOf(req);
      must(res, change, `change the GPU cap ${scope}`);
      const b = parseBody(CapBody, req.body);
      const peak = b.peak ? { maxGpus: b.peak.maxGpus, days: b.peak.days.reduce((m, d) => m | (1 << DAYS.indexOf(d)), 0), fromMinute: b.peak.from, toMinute: b.peak.to } : null;
      res.json(gpuCapJson(await caps.set(scope, { maxGpus: b.maxGpus, peak, release: b.release ?? 'auto' }, actorOf(res), b.reason ?? null)));
    });
    r.delete(path, async (req, res) => {
      const { scope, change } = scopeOf(req);
      must(res, change, `change the GPU cap ${scope}`);
      const b = parseBody(ReasonBody, req.body);
      res.json({ scope, removed: await caps.remove(scope, actorOf(res), b?.reason ?? null) });
    });
  }
  return r;
}

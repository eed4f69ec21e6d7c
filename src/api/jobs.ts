/**
 * Submitting through the API, and asking first:
 *   POST /preflight  { ...job } or { jobs: [...] }  what would happen now; reserves nothing
 *   POST /jobs       { ...job } or { jobs: [...] }  validated like the intake queue, then
 *                    added to it; answers the job ids and the preflight warnings
 *                    (sentences, and the same as data: warningDetails)
 * A batch is at most 1,000 jobs. /jobs adds all or none: one invalid job
 * answers 400 naming it, and nothing is added.
 */
import { Router } from 'express';
import type { Queue } from 'bullmq';
import type { Preflight, PreflightReport } from '../admin/preflight.ts';
import type { Clock } from '../clock.ts';
import { scopeJson } from './budgets.ts';
import { HttpError } from '../http/errors.ts';
import { accessOf, type Access } from '../http/access.ts';
import { quoted } from '../text.ts';

export const MAX_BATCH = 1_000;

/** The jobs of a body: one job object, or { jobs: [...] }. */
export function jobsOf(body: unknown): unknown[] {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'body must be a job object or { "jobs": [ ... ] }');
  const b = body as Record<string, unknown>;
  if (!('jobs' in b)) return [body];
  if (Object.keys(b).length !== 1) throw new HttpError(400, 'a batch body has only "jobs"');
  if (!Array.isArray(b.jobs) || b.jobs.length === 0) throw new HttpError(400, 'jobs must be a non-empty array');
  if (b.jobs.length > MAX_BATCH) throw new HttpError(400, `at most ${MAX_BATCH} jobs per request, got ${b.jobs.length}`);
  return b.jobs;
}

export function preflightJson(r: PreflightReport) {
  return { ...r, scopes: r.scopes.map(scopeJson) };
}

/**
 * A preflight as the caller may see it: the scopes and warnings of limits
 * they may not read (another person's quota, under VISIBILITY=own) left out,
 * so asking on someone's behalf does not show their numbers.
 */
export function visibleReport(r: PreflightReport, a: Access): PreflightReport {
  const keep = r.warningDetails.map((w) => a.canSeeScope(w.scope));
  return { ...r, scopes: r.scopes.filter((v) => a.canSeeScope(v.scope)), warnings: r.warnings.filter((_, i) => keep[i]), warningDetails: r.warningDetails.filter((_, i) => keep[i]) };
}

export function jobRoutes(preflight: Preflight, clock: Clock, intake: Queue | undefined): Router {
  const r = Router();
  r.post('/preflight', async (req, res) => {
    const jobs = jobsOf(req.body);
    mayAskFor(accessOf(res), jobs, 'preflight');
    res.json(preflightJson(visibleReport(await preflight.run(jobs, clock.now()), accessOf(res))));
  });
  r.post('/jobs', async (req, res) => {
    if (!intake) throw new HttpError(503, 'this process does not submit jobs (no intake queue)');
    const jobs = jobsOf(req.body);
    mayAskFor(accessOf(res), jobs, 'submit');
    const invalid = invalidJobs(preflight, jobs);
    if (invalid.length > 0) throw new HttpError(400, invalid.map((j) => `job ${j.index}: ${j.reason}`).join('; '));
    const report = visibleReport(await preflight.run(jobs, clock.now()), accessOf(res));
    const jobIds = await queueJobs(intake, jobs);
    // Valid jobs the gatekeeper will reject (a GPU type the project may not use, no budget under reject): queued all the same, and said here.
    const rejections = report.outcomes.flatMap((o) => (o.outcome === 'rejected' ? [{ index: o.index, jobId: jobIds[o.index], reason: o.reason }] : []));
    res.status(202).json({
      jobIds, warnings: report.warnings, warningDetails: report.warningDetails,
      preflight: { admitted: report.admitted, held: report.held, throttled: report.throttled, rejected: report.rejected, rejections },
    });
  });
  return r;
}

/**
 * Each job's project and user must be ones the caller may submit for (a
 * viewer may ask what would happen for those they may see). A job without
 * them is left to validation, which names what is missing.
 */
export function mayAskFor(a: Access, jobs: unknown[], what: 'preflight' | 'submit'): void {
  jobs.forEach((data, i) => {
    const { project, user } = (typeof data === 'object' && data !== null ? data : {}) as { project?: unknown; user?: unknown };
    if (typeof project !== 'string' || typeof user !== 'string') return;
    const ok = a.canSubmit({ project, user }) || (what === 'preflight' && a.who.role === 'viewer' && a.canSeeJob({ project, user }));
    if (!ok) throw new HttpError(403, `job ${i}: ${a.describe()} may not ${what} jobs for user ${quoted(user)} in project ${quoted(project)}`);
  });
}

/** Each job the intake queue would refuse, and why; empty when all are valid. */
export function invalidJobs(preflight: Preflight, jobs: unknown[]): { index: number; reason: string }[] {
  return preflight.validate(jobs).flatMap((p, index) => (p.ok ? [] : [{ index, reason: p.reason }]));
}

/** Adds the batch to the intake queue, all in one call; the job ids in order. */
export async function queueJobs(intake: Queue, jobs: unknown[]): Promise<string[]> {
  // As submitted (not as parsed): the gatekeeper validates again, the same way.
  const added = await intake.addBulk(jobs.map((data) => ({ name: jobName(data), data })));
  return added.map((j) => j.id!);
}

function jobName(data: unknown): string {
  const t = (data as { jobType?: unknown }).jobType;
  return typeof t === 'string' ? t : 'gpu-job';
}

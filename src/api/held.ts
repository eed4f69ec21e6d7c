/**
 * Held jobs over HTTP: list (what the caller may see), release / override
 * (managers of the job's project, admins), cancel (those, and the job's
 * owner). Job ids in paths are intake job ids.
 */
import { Router } from 'express';
import { z } from 'zod';
import { NAME_RE } from '../../queues/contract.ts';
import { NotHeldError, type HeldJobs } from '../admin/held.ts';
import { actorOf } from '../http/auth.ts';
import { accessOf, type Access } from '../http/access.ts';
import { HttpError } from '../http/errors.ts';
import { body, freeText, jobIdText, pageOffset, parseBody, query } from './validate.ts';

const name = (what: string) => z.string({ error: `${what} must be a string` }).regex(NAME_RE, `${what} must be 1-128 characters of A-Z a-z 0-9 . _ -`);
const jobId = jobIdText('ids must be strings');
const reason = freeText('reason').trim().min(1, 'reason may not be empty');

const ListQuery = query({
    project: name('project').optional(),
    user: name('user').optional(),
    limit: z.coerce.number({ error: 'limit must be a number' }).int('limit must be a whole number').min(1, 'limit must be at least 1').max(1000, 'limit must be at most 1000').default(100),
    offset: pageOffset,
});

const ReleaseBody = body({
      all: z.literal(true, { error: 'all must be true when given' }).optional(),
      project: name('project').optional(),
      user: name('user').optional(),
      ids: z.array(jobId, { error: 'ids must be an array of job ids' }).min(1, 'ids may not be empty').max(10_000, 'at most 10000 ids at once').optional(),
})
  .refine((b) => b.all || b.project || b.user || b.ids, 'say what to release: {"all": true}, "project", "user" (or both), or "ids"')
  .refine((b) => !(b.all && (b.project || b.user || b.ids)), '"all" cannot be combined with other selectors')
  .refine((b) => !(b.ids && (b.project || b.user)), '"ids" cannot be combined with "project" or "user"');

const OverrideBody = body({ reason: reason.optional() });
const CancelBody = body({ reason });

export function heldRoutes(held: HeldJobs): Router {
  const r = Router();
  r.get('/held', async (req, res) => {
    const q = parseBody(ListQuery, req.query);
    const within = accessOf(res).jobFilter() ?? undefined;
    res.json(await held.list({ project: q.project, user: q.user, within, limit: q.limit, offset: q.offset }));
  });
  r.post('/held/release', async (req, res) => {
    const b = parseBody(ReleaseBody, req.body ?? {});
    const access = accessOf(res);
    if (b.project) access.require(access.canManageProject(b.project), `release held jobs of project ${b.project}`);
    if (b.ids) await mayManage(held, access, b.ids, 'release');
    // A manager of some projects releases only theirs, whatever the selector.
    const within = access.isAdmin || access.who.projects === null ? undefined : { projects: access.who.projects };
    const report = await held.release(b.ids ? { ids: b.ids } : { all: b.all, project: b.project, user: b.user, within }, actorOf(res));
    res.json({
      considered: report.considered,
      admitted: report.admitted.length,
      stillHeld: report.stillHeld.length,
      notHeld: report.notHeld,
      rejected: report.rejected,
      admittedIds: report.admitted,
      stillHeldJobs: report.stillHeld,
    });
  });
  r.post('/held/:id/override', async (req, res) => {
    const id = parseBody(jobId, req.params.id);
    const b = parseBody(OverrideBody, req.body ?? {});
    await mayManage(held, accessOf(res), [id], 'override');
    res.json(await notHeldAs404(held.override(id, actorOf(res), b.reason ?? null)));
  });
  r.post('/held/:id/cancel', async (req, res) => {
    const id = parseBody(jobId, req.params.id);
    const b = parseBody(CancelBody, req.body ?? {});
    await mayManage(held, accessOf(res), [id], 'cancel', { owner: true });
    await notHeldAs404(held.cancel(id, actorOf(res), b.reason));
    res.json({ jobId: id, state: 'rejected' });
  });
  return r;
}

/**
 * 404 for a job the caller may not see (as for one that does not exist), 403
 * for one they see but may not act on. A job already gone passes: the
 * operation itself answers for it (404 or 409).
 */
export async function mayManage(held: HeldJobs, access: Access, ids: string[], what: string, opts: { owner?: boolean } = {}): Promise<void> {
  if (access.isAdmin) return;
  const could = access.who.role === 'manager' || (opts.owner === true && access.isPerson);
  access.require(could, `${what} held jobs`);
  const owners = await held.owners(ids);
  ids.forEach((id, i) => {
    const job = owners[i];
    if (!job) return;
    if (!access.canSeeJob(job)) throw new HttpError(404, `no held job ${id}`);
    const ok = access.canManageProject(job.project) || (opts.owner === true && access.owns(job));
    access.require(ok, `${what} job ${id} (project ${job.project}, user ${job.user})`);
  });
}

async function notHeldAs404<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof NotHeldError) throw new HttpError(err.state === 'missing' ? 404 : 409, err.message);
    throw err;
  }
}

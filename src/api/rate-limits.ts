/**
 * Submission rate limits over HTTP (token buckets; src/accounting/rate-limits.ts):
 *   GET /rate-limits?kind=&cursor=&q=&limit=   every limit the caller may see
 *   GET|PUT|DELETE /users/:user/rate-limit
 *   GET|PUT|DELETE /projects/:project/rate-limit
 * PUT { "jobsPerMinute": 60, "burst": 10, "reason"?: "..." }. Every change is
 * audited; the viewer token reads.
 */
import { Router } from 'express';
import { z } from 'zod';
import type { RateLimits, RateLimitView } from '../accounting/rate-limits.ts';
import { MAX_BURST, MAX_JOBS_PER_MINUTE } from '../accounting/rate-limits.ts';
import type { RateKind } from '../accounting/scopes.ts';
import { HttpError } from '../http/errors.ts';
import { actorOf } from '../http/auth.ts';
import { accessOf, must, type Access } from '../http/access.ts';
import { body, freeText, pageLimit, parseBody, query, searchText } from './validate.ts';
import { nameParam } from './budgets.ts';

const whole = (what: string, max: number) =>
  z
    .number({ error: (i) => (i.input === undefined ? `${what} is required` : `${what} must be a number`) })
    .int(`${what} must be a whole number`)
    .min(1, `${what} must be at least 1`)
    .max(max, `${what} must be at most ${max.toLocaleString('en-US')}`);

const RateLimitBody = body({
  reason: freeText('reason').optional(),
  jobsPerMinute: whole('jobsPerMinute', MAX_JOBS_PER_MINUTE),
  burst: whole('burst', MAX_BURST),
});
const ReasonBody = body({ reason: freeText('reason').optional() }).optional();
const ListQuery = query({
  kind: z.enum(['user', 'project'], { error: 'kind must be user or project' }).optional(),
  cursor: z
    .string({ error: 'cursor must be a string' })
    .regex(/^(user|project):[A-Za-z0-9._-]{1,128}$/, 'cursor must be a rate limit scope, e.g. user:ann: the nextCursor of the previous page')
    .optional(),
  q: searchText('q'),
  limit: pageLimit,
});

export function rateLimitJson(v: RateLimitView) {
  return { [v.kind]: v.name, scope: v.scope, jobsPerMinute: v.jobsPerMinute, burst: v.burst, tokensNow: v.tokensNow, updatedAt: v.updatedAt.toISOString() };
}

const mayRead = (kind: RateKind, name: string) => (a: Access) => (kind === 'user' ? a.canSeeUser(name) : a.canSeeProject(name));
const mayChange = (kind: RateKind, name: string) => (a: Access) => (kind === 'user' ? a.canManageUsers() : a.canManageProject(name));

export function rateLimitRoutes(limits: RateLimits): Router {
  const r = Router();
  r.get('/rate-limits', async (req, res) => {
    const q = parseBody(ListQuery, req.query);
    const access = accessOf(res);
    const page = await limits.page({
      after: q.cursor ?? null, kind: q.kind ?? null, q: q.q ?? null, limit: q.limit,
      user: access.seesOthers ? null : access.who.name, projects: access.visibleProjects(),
    });
    res.json({ rateLimits: page.limits.map(rateLimitJson), nextCursor: page.nextCursor });
  });
  for (const [kind, path] of [['user', '/users/:name/rate-limit'], ['project', '/projects/:name/rate-limit']] as [RateKind, string][]) {
    r.get(path, async (req, res) => {
      const name = nameParam(kind, String(req.params.name));
      must(res, mayRead(kind, name), `read the rate limit of ${kind} ${name}`);
      const v = await limits.get(kind, name);
      if (!v) throw new HttpError(404, `no rate limit for ${kind} ${name}`);
      res.json(rateLimitJson(v));
    });
    r.put(path, async (req, res) => {
      const name = nameParam(kind, String(req.params.name));
      must(res, mayChange(kind, name), `change the rate limit of ${kind} ${name}`);
      const b = parseBody(RateLimitBody, req.body);
      res.json(rateLimitJson(await limits.set(kind, name, { jobsPerMinute: b.jobsPerMinute, burst: b.burst }, actorOf(res), b.reason ?? null)));
    });
    r.delete(path, async (req, res) => {
      const name = nameParam(kind, String(req.params.name));
      must(res, mayChange(kind, name), `change the rate limit of ${kind} ${name}`);
      const b = parseBody(ReasonBody, req.body);
      const removed = await limits.remove(kind, name, actorOf(res), b?.reason ?? null);
      res.json({ [kind]: name, scope: `${kind}:${name}`, removed });
    });
  }
  return r;
}

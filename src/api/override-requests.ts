/**
 * Override requests over HTTP (src/admin/override-requests.ts): a held job's
 * owner asks, managers of its project and admins list, approve or deny. The
 * module checks the job or request each call touches (404 for one the caller
 * may not see, 403 for one they see but may not act on, 409 when its state
 * says no); src/http/permissions.ts opens the routes.
 */
import { Router } from 'express';
import { z } from 'zod';
import { OverrideRequests, RequestRefused } from '../admin/override-requests.ts';
import { REQUEST_KINDS, REQUEST_STATES, type OverrideRequest } from '../db/override-requests.ts';
import { accessOf } from '../http/access.ts';
import { HttpError } from '../http/errors.ts';
import { body, freeText, jobIdText, pageLimit, pageOffset, parseBody, query } from './validate.ts';

/** A held job's id in a path (the API's and the submission screen's). */
export const jobId = jobIdText('a job id must be a string');
const requestId = z.string().regex(/^[1-9][0-9]{0,14}$/, 'a request id is a whole number such as 12').transform(Number);
const reason = freeText('reason').trim().min(1, 'reason may not be empty');

/** A request's body: JSON here, form-encoded on /submit (src/api/submit.ts). */
export const RequestBody = body({
  reason,
  kind: z.enum(REQUEST_KINDS, { error: `kind must be one of ${REQUEST_KINDS.join(', ')}` }).default('override'),
});
const ApproveBody = body({ reason: reason.optional() });
const DenyBody = body({ reason });
const ListQuery = query({
  state: z.enum([...REQUEST_STATES, 'all'], { error: `state must be one of ${[...REQUEST_STATES, 'all'].join(', ')}` }).default('open'),
  limit: pageLimit,
  offset: pageOffset,
});

const STATUS = { 'not-found': 404, forbidden: 403, conflict: 409 } as const;

/** A refusal of the module as an HttpError with its status (404, 403, 409). */
export async function answer<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof RequestRefused) throw new HttpError(STATUS[err.code], err.message);
    throw err;
  }
}

/** A request as the API answers it: times as ISO text. */
const view = (r: OverrideRequest) => ({ ...r, requestedAt: r.requestedAt.toISOString(), decidedAt: r.decidedAt?.toISOString() ?? null });

export function overrideRequestRoutes(requests: OverrideRequests): Router {
  const r = Router();
  r.post('/held/:id/override-requests', async (req, res) => {
    const id = parseBody(jobId, req.params.id);
    const b = parseBody(RequestBody, req.body ?? {});
    res.status(201).json(view(await answer(requests.request(id, accessOf(res).who, b.reason, b.kind))));
  });
  r.get('/override-requests', async (req, res) => {
    const q = parseBody(ListQuery, req.query);
    // Managers and viewers: their projects' requests and their own; submitters: their own jobs'; null: all.
    const within = accessOf(res).jobFilter();
    const out = await requests.list({ state: q.state === 'all' ? undefined : q.state, within, limit: q.limit, offset: q.offset });
    res.json({ total: out.total, requests: out.requests.map(view) });
  });
  r.post('/override-requests/:id/approve', async (req, res) => {
    const id = parseBody(requestId, req.params.id);
    const b = parseBody(ApproveBody, req.body ?? {});
    res.json(view(await answer(requests.approve(id, accessOf(res).who, b.reason ?? null))));
  });
  r.post('/override-requests/:id/deny', async (req, res) => {
    const id = parseBody(requestId, req.params.id);
    const b = parseBody(DenyBody, req.body ?? {});
    res.json(view(await answer(requests.deny(id, accessOf(res).who, b.reason))));
  });
  return r;
}

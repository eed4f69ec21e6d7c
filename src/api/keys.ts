/**
 * People's keys (admins only) and who the caller is (everyone):
 *   GET    /me                      { user, role, projects, via, visibility }
 *   POST   /keys { user, role, projects?, expiresAt?, reason? }
 *                                   the key, once: it is stored hashed and never shown again
 *   GET    /keys?user=&revoked=true  every key, without its secret
 *   DELETE /keys/:id { reason? }    revoked from the next request on
 */
import { Router } from 'express';
import { z } from 'zod';
import { NAME_RE } from '../../queues/contract.ts';
import { accessOf, PERSON_ROLES } from '../http/access.ts';
import { requireAdmin } from '../http/auth.ts';
import { HttpError } from '../http/errors.ts';
import type { ApiKeys } from '../people/api-keys.ts';
import { body, freeText, parseBody, query } from './validate.ts';

const name = (what: string) => z.string({ error: (i) => (i.input === undefined ? `${what} is required` : `${what} must be a string`) }).regex(NAME_RE, `${what} must be 1-128 characters of A-Z a-z 0-9 . _ -`);

/** How far ahead an expiry may be: ten years. */
const MAX_AHEAD_MS = 10 * 366 * 86_400_000;

const CreateBody = body({
  user: name('user'),
  role: z.enum(PERSON_ROLES, { error: `role must be one of ${PERSON_ROLES.join(', ')}` }),
  projects: z
    .array(name('each project'), { error: 'projects must be an array of project names' })
    .min(1, 'projects may not be empty (leave it out for every project)')
    .max(100, 'at most 100 projects per key')
    .refine((ps) => new Set(ps).size === ps.length, 'projects must be distinct')
    .optional(),
  expiresAt: z
    .string({ error: 'expiresAt must be a date-time string' })
    .datetime({ offset: true, error: 'expiresAt must be an ISO 8601 date-time such as 2027-01-31T00:00:00Z' })
    .optional(),
  reason: freeText('reason').optional(),
}).refine((b) => !(b.role === 'admin' && b.projects), 'an admin key acts in every project: leave out projects (a manager of some projects is role "manager")');
const ListQuery = query({
  user: name('user').optional(),
  revoked: z.enum(['true', 'false'], { error: 'revoked must be true or false' }).default('false'),
});
const RevokeBody = body({ reason: freeText('reason').optional() }).optional();

export function meRoute(): Router {
  const r = Router();
  r.get('/me', (_req, res) => {
    const a = accessOf(res);
    res.json({ user: a.who.name, role: a.who.role, projects: a.who.projects, via: a.who.via ?? null, visibility: a.visibility });
  });
  return r;
}

export function keyRoutes(keys: ApiKeys): Router {
  const r = Router();
  r.use('/keys', requireAdmin);
  r.post('/keys', async (req, res) => {
    const b = parseBody(CreateBody, req.body);
    const expiresAt = b.expiresAt === undefined ? null : new Date(b.expiresAt);
    if (expiresAt && expiresAt.getTime() <= keys.now()) throw new HttpError(400, 'expiresAt must be in the future');
    if (expiresAt && expiresAt.getTime() > keys.now() + MAX_AHEAD_MS) throw new HttpError(400, 'expiresAt must be within ten years');
    const k = await keys.create({ user: b.user, role: b.role, projects: b.projects ?? null, expiresAt }, accessOf(res).who, b.reason ?? null);
    res.status(201).json(k);
  });
  r.get('/keys', async (req, res) => {
    const q = parseBody(ListQuery, req.query);
    res.json({ keys: await keys.list({ user: q.user, includeRevoked: q.revoked === 'true' }) });
  });
  r.delete('/keys/:id', async (req, res) => {
    if (!/^[0-9a-f]{12}$/.test(req.params.id)) throw new HttpError(400, 'a key id is 12 characters 0-9 a-f (GET /keys lists them)');
    const b = parseBody(RevokeBody, req.body);
    const k = await keys.revoke(req.params.id, accessOf(res).who, b?.reason ?? null);
    if (!k) throw new HttpError(404, `no key ${req.params.id}`);
    res.json(k);
  });
  return r;
}

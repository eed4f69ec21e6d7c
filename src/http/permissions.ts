/**
 * Which API routes each role reaches at all (src/http/access.ts says who may
 * do what). A route listed here is open to everyone authenticated, or to
 * managers, and its handler then checks the project or person it touches.
 * Any other route is for those who read everything (GET) or for admins
 * (every write): a new route is closed until it is listed here.
 * Paths are relative to /api/v1.
 */
import type { RequestHandler } from 'express';
import { accessOf } from './access.ts';
import { sendError } from './errors.ts';

type Opening = 'anyone' | 'managers';

const SEG = '[^/]+';
const route = (method: string, path: string, open: Opening): [string, RegExp, Opening] => [method, new RegExp(`^${path.replaceAll(':x', SEG)}$`), open];

const ROUTES: [string, RegExp, Opening][] = [
  route('GET', '/me', 'anyone'),
  route('GET', '/gpu-types', 'anyone'),
  route('GET', '/gpu-types/:x', 'anyone'),
  route('GET', '/job-types', 'anyone'),
  route('GET', '/projects', 'anyone'),
  route('GET', '/projects/:x/budget', 'anyone'),
  route('GET', '/projects/:x/runs/:x/cap', 'anyone'),
  route('GET', '/quotas', 'anyone'),
  route('GET', '/users/:x/quota', 'anyone'),
  route('GET', '/gpu-caps', 'anyone'),
  route('GET', '/projects/:x/concurrency', 'anyone'),
  route('GET', '/users/:x/concurrency', 'anyone'),
  route('GET', '/projects/:x/gpu-types/:x/concurrency', 'anyone'),
  route('GET', '/projects/:x/gpu-types', 'anyone'),
  route('GET', '/projects/:x/gpu-types/:x/budget', 'anyone'),
  route('GET', '/projects/:x/rate-limit', 'anyone'),
  route('GET', '/users/:x/rate-limit', 'anyone'),
  route('GET', '/rate-limits', 'anyone'),
  route('GET', '/held', 'anyone'),
  route('GET', '/usage', 'anyone'),
  route('POST', '/preflight', 'anyone'),
  route('POST', '/jobs', 'anyone'),
  route('POST', '/held/:x/cancel', 'anyone'),
  route('POST', '/held/:x/override-requests', 'anyone'),
  route('GET', '/override-requests', 'anyone'),

  route('PUT', '/projects/:x/budget', 'managers'),
  route('POST', '/projects/:x/budget/adjust', 'managers'),
  route('PUT', '/projects/:x/runs/:x/cap', 'managers'),
  route('DELETE', '/projects/:x/runs/:x/cap', 'managers'),
  route('PUT', '/users/:x/quota', 'managers'),
  route('PUT', '/projects/:x/concurrency', 'managers'),
  route('DELETE', '/projects/:x/concurrency', 'managers'),
  route('PUT', '/projects/:x/gpu-types/:x/concurrency', 'managers'),
  route('DELETE', '/projects/:x/gpu-types/:x/concurrency', 'managers'),
  route('PUT', '/projects/:x/gpu-types/:x/budget', 'managers'),
  route('DELETE', '/projects/:x/gpu-types/:x/budget', 'managers'),
  route('PUT', '/users/:x/concurrency', 'managers'),
  route('DELETE', '/users/:x/concurrency', 'managers'),
  route('PUT', '/projects/:x/rate-limit', 'managers'),
  route('DELETE', '/projects/:x/rate-limit', 'managers'),
  route('PUT', '/users/:x/rate-limit', 'managers'),
  route('DELETE', '/users/:x/rate-limit', 'managers'),
  route('POST', '/held/release', 'managers'),
  route('POST', '/held/:x/override', 'managers'),
  route('POST', '/override-requests/:x/approve', 'managers'),
  route('POST', '/override-requests/:x/deny', 'managers'),
];

/** Which routes a body-size limit counts as job batches. */
export const BATCH_ROUTES = new Set(['POST /preflight', 'POST /jobs']);

export const gateRoutes: RequestHandler = (req, res, next) => {
  const access = accessOf(res);
  const method = req.method === 'HEAD' ? 'GET' : req.method;
  const open = ROUTES.find(([m, re]) => m === method && re.test(req.path))?.[2];
  if (open === 'anyone' || access.isAdmin) return next();
  if (open === 'managers' && access.who.role === 'manager') return next();
  if (open === undefined && method === 'GET' && access.readsAll) return next();
  const who = access.describe();
  const needs = open === 'managers' ? 'a manager or an admin' : method === 'GET' ? 'an admin, or a viewer or manager of every project' : 'an admin';
  sendError(res, 403, `${method} ${req.path.slice(0, 200)} needs ${needs}; ${who} may not`);
};

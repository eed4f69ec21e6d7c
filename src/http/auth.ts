/**
 * Token auth for the admin surfaces. Scripts send `Authorization: Bearer
 * <token>`; a browser (Bull Board) may use Basic auth with the token as the
 * password (any user name). The admin token may do everything; the viewer
 * token may only read. Compared in constant time; tokens are never logged
 * (pino redacts `authorization`).
 *
 * Who: the caller may name themselves in `X-Gatekeeper-Actor` (the CLI sends
 * --actor, default $USER); it is recorded in the audit log with the role.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import type { RequestHandler, Response } from 'express';
import type { Actor } from '../db/audit.ts';
import { sendError } from './errors.ts';

export type Role = Actor['role'];

export interface Tokens {
  admin: string;
  viewer?: string | undefined;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time equality for strings of any length (compares digests). */
export function tokensEqual(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

/** The token in an Authorization header: Bearer, or the password of Basic. */
export function presentedToken(header: string | undefined): string | null {
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  if (bearer) return bearer[1]!;
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (basic) {
    const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon >= 0 ? decoded.slice(colon + 1) : null;
  }
  return null;
}

const ACTOR_RE = /^[A-Za-z0-9._@-]{1,64}$/;

function basicUserName(header: string | undefined): string | null {
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (!basic) return null;
  const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon > 0 ? decoded.slice(0, colon) : null;
}

/** Who is calling, as set by `authenticate`. */
export const actorOf = (res: Response): Actor => res.locals.actor as Actor;

/** Identify the caller's role from its token; 401 if none or unknown. */
export function authenticate(tokens: Tokens, opts: { browser?: boolean } = {}): RequestHandler {
  const challenge = opts.browser ? 'Basic realm="gpu-gatekeeper", charset="UTF-8"' : 'Bearer';
  return (req, res, next) => {
    const token = presentedToken(req.headers.authorization);
    let role: Role | null = null;
    // Both compared, always, so timing does not tell which one matched.
    const isAdmin = token !== null && tokensEqual(token, tokens.admin);
    const isViewer = token !== null && tokens.viewer !== undefined && tokensEqual(token, tokens.viewer);
    if (isAdmin) role = 'admin';
    else if (isViewer) role = 'viewer';
    if (role === null) {
      res.setHeader('WWW-Authenticate', challenge);
      return sendError(res, 401, token === null ? 'missing token: send "Authorization: Bearer <token>"' : 'invalid token');
    }
    const named = req.headers['x-gatekeeper-actor'];
    if (named !== undefined && (typeof named !== 'string' || !ACTOR_RE.test(named))) {
      return sendError(res, 400, 'X-Gatekeeper-Actor must be 1-64 characters of A-Z a-z 0-9 . _ @ -');
    }
    // A browser's Basic user name says who it is (the dashboard's buttons).
    const basicUser = basicUserName(req.headers.authorization);
    const name = typeof named === 'string' ? named : basicUser && ACTOR_RE.test(basicUser) ? basicUser : role;
    res.locals.actor = { name, role } satisfies Actor;
    next();
  };
}

/** Only the admin role may pass (after `authenticate`); a viewer gets 403. */
export const requireAdmin: RequestHandler = (_req, res, next) => {
  if (actorOf(res).role !== 'admin') return sendError(res, 403, 'this needs the admin token; the viewer token may only read');
  next();
};

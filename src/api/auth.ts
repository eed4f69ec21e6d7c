/**
 * Token auth for the admin surfaces. Scripts send `Authorization: Bearer
 * <token>`; a browser (Bull Board) may use Basic auth with the token as the
 * password (any user name). Compared in constant time; the token is never
 * logged (pino redacts `authorization`).
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import type { RequestHandler } from 'express';
import { sendError } from './errors.ts';

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

export function requireAdmin(adminToken: string, opts: { browser?: boolean } = {}): RequestHandler {
  const challenge = opts.browser ? 'Basic realm="gpu-gatekeeper", charset="UTF-8"' : 'Bearer';
  return (req, res, next) => {
    const token = presentedToken(req.headers.authorization);
    if (token === null) {
      res.setHeader('WWW-Authenticate', challenge);
      return sendError(res, 401, 'missing token: send "Authorization: Bearer <admin token>"');
    }
    if (!tokensEqual(token, adminToken)) {
      res.setHeader('WWW-Authenticate', challenge);
      return sendError(res, 401, 'invalid token');
    }
    next();
  };
}

/**
 * Bearer-token auth for the admin API. Compared in constant time; the token is
 * never logged (pino redacts `authorization`).
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import type { RequestHandler } from 'express';
import { sendError } from './errors.ts';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Constant-time equality for strings of any length (compares digests). */
export function tokensEqual(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

export function bearerToken(header: string | undefined): string | null {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m ? m[1]! : null;
}

export function requireAdmin(adminToken: string): RequestHandler {
  return (req, res, next) => {
    const token = bearerToken(req.headers.authorization);
    if (token === null) {
      res.setHeader('WWW-Authenticate', 'Bearer');
      return sendError(res, 401, 'missing bearer token: send "Authorization: Bearer <admin token>"');
    }
    if (!tokensEqual(token, adminToken)) return sendError(res, 401, 'invalid token');
    next();
  };
}

/**
 * No page elsewhere can act with an admin's browser. A browser attaches the
 * Basic credentials it cached for the dashboard to any request to this
 * origin, including a form another site submits or a no-cors fetch it sends,
 * so a write that relies on them must prove it comes from our own pages:
 *
 *  - Sec-Fetch-Site (every current browser sends it) must be `same-origin`;
 *  - without it, Origin (browsers send it on every POST, PUT, PATCH and
 *    DELETE) must be this server's own, or one in GATEKEEPER_TRUSTED_ORIGINS
 *    (a proxy that rewrites Host);
 *  - with neither, the caller is not a browser (curl -u, a script) and passes.
 *
 * A write that carries `Authorization: Bearer` passes: a page elsewhere
 * cannot set that header without a CORS preflight, which this server never
 * grants. JSON routes also refuse bodies that are not JSON (a text/plain or
 * form body is what a cross-site form can send without a preflight).
 */
import type { RequestHandler } from 'express';
import { sendError } from './errors.ts';

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

export function refuseCrossSite(trustedOrigins: readonly string[] = []): RequestHandler {
  return (req, res, next) => {
    if (SAFE.has(req.method) || /^Bearer\s/i.test(req.headers.authorization ?? '')) return next();
    const site = req.headers['sec-fetch-site'];
    const origin = req.headers.origin;
    if (site !== undefined) {
      if (site === 'same-origin') return next();
      return sendError(res, 403, `a ${req.method} from another site (Sec-Fetch-Site: ${site}) is refused; use the dashboard itself, or a Bearer token`);
    }
    if (origin !== undefined) {
      if (origin !== 'null' && (trustedOrigins.includes(origin) || hostOf(origin) === req.headers.host)) return next();
      return sendError(res, 403, `a ${req.method} from another origin (${origin.slice(0, 100)}) is refused; use the dashboard itself, or a Bearer token`);
    }
    next();
  };
}

const hostOf = (origin: string): string | null => {
  try {
    return new URL(origin).host;
  } catch {
    return null;
  }
};

/**
 * Writes with a body must send JSON: 415 for text/plain, forms and anything
 * else. A write with no body and no content type (a plain POST) passes.
 */
export const requireJsonBody: RequestHandler = (req, res, next) => {
  if (SAFE.has(req.method)) return next();
  const type = req.headers['content-type'];
  const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
  if (type === undefined && !hasBody) return next();
  if (type !== undefined && /^application\/([\w.+-]+\+)?json\s*(;|$)/i.test(type)) return next();
  sendError(res, 415, `send the body as JSON with "content-type: application/json" (got ${type === undefined ? 'no content type' : JSON.stringify(type.slice(0, 100))})`);
};

/** Pages that must never be framed by another site (a click on Release inside an invisible frame). */
export const noFraming: RequestHandler = (_req, res, next) => {
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Content-Security-Policy', "frame-ancestors 'none'");
  next();
};

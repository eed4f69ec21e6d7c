/**
 * Who is calling. Scripts send `Authorization: Bearer <credential>`; a browser
 * (the dashboard, Bull Board, /submit) may use Basic auth with the credential
 * as the password (any user name). A credential is, in the order tried:
 *
 *  - one of the two environment tokens (admin, viewer): bootstrap and scripts.
 *    The caller may name themselves in `X-Gatekeeper-Actor` (the CLI sends
 *    --actor, default $USER); the audit records that name as declared.
 *  - a person's key (`gk_…`, src/people/api-keys.ts): the person, role and
 *    projects are the key's; a declared name is ignored.
 *  - with OIDC configured, a JWT from the issuer (src/http/oidc.ts).
 *
 * Tokens are compared in constant time and never logged (pino redacts
 * `authorization`). Who may do what: src/http/access.ts.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import type { RequestHandler, Response } from 'express';
import { sendError } from './errors.ts';
import { Access, accessOf, CredentialRefused, CredentialUnavailable, type CredentialVerifier, type PersonRole, type Principal, type Visibility } from './access.ts';

export type Role = PersonRole;

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
export const actorOf = (res: Response): Principal => accessOf(res).who;

export interface Authn {
  tokens: Tokens;
  /** Other kinds of credential: people's keys, OIDC tokens. */
  verifiers?: readonly CredentialVerifier[];
  visibility?: Visibility;
}

/** Identify the caller; 401 if no credential or one that names nobody. */
export function authenticate(authn: Authn, opts: { browser?: boolean } = {}): RequestHandler {
  const challenge = opts.browser ? 'Basic realm="gpu-gatekeeper", charset="UTF-8"' : 'Bearer';
  const refuse = (res: Response, message: string) => {
    res.setHeader('WWW-Authenticate', challenge);
    sendError(res, 401, message);
  };
  return async (req, res, next) => {
    const token = presentedToken(req.headers.authorization);
    if (token === null) return refuse(res, 'missing credentials: send "Authorization: Bearer <token or key>"');
    const tokens = authn.tokens;
    // Both compared, always, so timing does not tell which one matched.
    const isAdmin = tokensEqual(token, tokens.admin);
    const isViewer = tokens.viewer !== undefined && tokensEqual(token, tokens.viewer);
    let who: Principal;
    if (isAdmin || isViewer) {
      const named = req.headers['x-gatekeeper-actor'];
      if (named !== undefined && (typeof named !== 'string' || !ACTOR_RE.test(named))) {
        return sendError(res, 400, 'X-Gatekeeper-Actor must be 1-64 characters of A-Z a-z 0-9 . _ @ -');
      }
      const role: Role = isAdmin ? 'admin' : 'viewer';
      // A browser's Basic user name says who it is (the dashboard's buttons).
      const basicUser = basicUserName(req.headers.authorization);
      const name = typeof named === 'string' ? named : basicUser && ACTOR_RE.test(basicUser) ? basicUser : role;
      who = { name, role, via: 'token', projects: null };
    } else {
      const verifier = authn.verifiers?.find((v) => v.accepts(token));
      if (!verifier) return refuse(res, 'invalid token');
      try {
        who = await verifier.verify(token);
      } catch (err) {
        if (err instanceof CredentialRefused) return refuse(res, err.message);
        if (err instanceof CredentialUnavailable) return sendError(res, 503, err.message);
        return next(err);
      }
    }
    res.locals.access = new Access(who, authn.visibility ?? 'own');
    next();
  };
}

/** Only the admin role may pass (after `authenticate`). */
export const requireAdmin: RequestHandler = (_req, res, next) => {
  const access = accessOf(res);
  if (!access.isAdmin) return sendError(res, 403, `this needs an admin; ${access.describe()} may not`);
  next();
};

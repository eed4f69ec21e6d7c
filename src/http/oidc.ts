/**
 * Sign-in through an OpenID Connect provider (docs/security.md, "OIDC"): a
 * JWT from OIDC_ISSUER, checked against the keys the issuer publishes, names
 * a person (OIDC_USER_CLAIM) and their groups (OIDC_GROUPS_CLAIM), and
 * OIDC_GROUP_ROLES turns the groups into a role and projects.
 *
 * Checked: the signature, by a key of the issuer's JWKS, with an asymmetric
 * algorithm only (never `none`; never HS*, whose key is a secret shared with
 * whoever verifies, so anyone holding it could mint tokens); `iss`; `aud`;
 * `exp` and `nbf` with 30 s of tolerance for clocks apart.
 *
 * The discovery document is fetched on the first token and kept; a failed
 * fetch is tried again on the next token. jose keeps the key set, fetching
 * it again every 10 minutes and when a token names a key it does not have
 * (at most once per 30 s), so a rotated key is picked up by its first token.
 * An issuer that cannot be reached is a 503, not a 401: the token may be good.
 */
import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { z } from 'zod';
import { NAME_RE } from '../../queues/contract.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import { CredentialRefused, CredentialUnavailable, type CredentialVerifier, type Principal } from './access.ts';
import { grantOf, issuerUrlProblem, type OidcSettings } from './oidc-config.ts';

/** Three base64url parts; the third is empty for `alg: none`, refused with its reason rather than "invalid token". */
const JWT_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];
const CLOCK_TOLERANCE_S = 30;
const FETCH_TIMEOUT_MS = 5_000;
const UNREACHABLE = 'identity provider unreachable: the token could not be checked; try again';

const Discovery = z.object({ issuer: z.string(), jwks_uri: z.string() });

export interface OidcOptions {
  clock?: Clock;
  /** Least time between two fetches of the key set for a token naming an unknown key, in ms. @default 30000 */
  jwksCooldownMs?: number;
}

export class OidcVerifier implements CredentialVerifier {
  private keys: Promise<JWTVerifyGetKey> | null = null;
  private readonly clock: Clock;

  constructor(
    private readonly oidc: OidcSettings,
    private readonly log: Logger,
    private readonly opts: OidcOptions = {},
  ) {
    this.clock = opts.clock ?? systemClock;
  }

  accepts(token: string): boolean {
    return JWT_RE.test(token);
  }

  async verify(token: string): Promise<Principal> {
    const getKey = await this.keySet();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, getKey, {
        issuer: this.oidc.issuer,
        audience: this.oidc.audience,
        algorithms: ALGORITHMS,
        clockTolerance: CLOCK_TOLERANCE_S,
        currentDate: new Date(this.clock.now()),
      }));
    } catch (err) {
      throw this.explain(err);
    }
    const { userClaim, groupsClaim } = this.oidc;
    const name = payload[userClaim];
    if (typeof name !== 'string' || !NAME_RE.test(name)) {
      throw new CredentialRefused(`token has no usable "${userClaim}" claim (OIDC_USER_CLAIM): it must name the person in 1-128 characters of A-Z a-z 0-9 . _ -`);
    }
    const claimed = payload[groupsClaim];
    const groups = Array.isArray(claimed) ? claimed.filter((g): g is string => typeof g === 'string') : typeof claimed === 'string' ? [claimed] : [];
    const grant = grantOf(this.oidc.groupRoles, groups);
    if (!grant) throw new CredentialRefused(`${name} is in no group that gatekeeper maps to a role (OIDC_GROUP_ROLES; groups are read from "${groupsClaim}")`);
    return { name, ...grant, via: 'oidc' };
  }

  /** The issuer's key set, found through its discovery document once. */
  private keySet(): Promise<JWTVerifyGetKey> {
    if (this.keys) return this.keys;
    const found = this.discover();
    this.keys = found;
    found.catch(() => {
      if (this.keys === found) this.keys = null;
    });
    return found;
  }

  private async discover(): Promise<JWTVerifyGetKey> {
    const url = `${this.oidc.issuer.replace(/\/$/, '')}/.well-known/openid-configuration`;
    let doc: z.infer<typeof Discovery>;
    try {
      const res = await fetch(url, { redirect: 'error', signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), headers: { accept: 'application/json' } });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      doc = Discovery.parse(await res.json());
    } catch (err) {
      this.log.warn({ err, url }, 'could not fetch the OIDC discovery document');
      throw new CredentialUnavailable(UNREACHABLE);
    }
    // OpenID Connect Discovery 1.0, 4.3: the document must name the issuer it was fetched for.
    const problem = doc.issuer !== this.oidc.issuer ? `it names issuer "${doc.issuer.slice(0, 200)}"` : issuerUrlProblem(doc.jwks_uri);
    if (problem) {
      this.log.error({ url, problem }, 'the OIDC discovery document cannot be used');
      throw new CredentialUnavailable('identity provider misconfigured: its discovery document cannot be used (see the log)');
    }
    return createRemoteJWKSet(new URL(doc.jwks_uri), { timeoutDuration: FETCH_TIMEOUT_MS, ...(this.opts.jwksCooldownMs === undefined ? {} : { cooldownDuration: this.opts.jwksCooldownMs }) });
  }

  /** A jose error as the 401's reason (nothing of the token echoed), or a 503 when the key set could not be fetched. */
  private explain(err: unknown): Error {
    if (err instanceof errors.JWTExpired) return new CredentialRefused('token expired');
    if (err instanceof errors.JWTClaimValidationFailed) {
      if (err.claim === 'iss') return new CredentialRefused(`token is not from the configured issuer (OIDC_ISSUER ${this.oidc.issuer})`);
      if (err.claim === 'aud') return new CredentialRefused(`token is not for this gatekeeper (its audience must include ${this.oidc.audience})`);
      if (err.claim === 'nbf') return new CredentialRefused('token is not valid yet (nbf)');
      return new CredentialRefused(`token has an invalid "${err.claim}" claim`);
    }
    if (err instanceof errors.JOSEAlgNotAllowed) return new CredentialRefused(`token algorithm not allowed: only ${ALGORITHMS.join(', ')}`);
    if (err instanceof errors.JWSSignatureVerificationFailed) return new CredentialRefused('token signature does not verify');
    if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
      return new CredentialRefused('token is signed by no key the issuer publishes');
    }
    if (err instanceof errors.JWSInvalid || err instanceof errors.JWTInvalid || err instanceof errors.JOSENotSupported) {
      return new CredentialRefused('token is not a valid signed JWT');
    }
    // JWKSTimeout, JWKSInvalid, a non-200 answer, a refused connection: the keys could not be had.
    this.log.warn({ err }, 'could not fetch the OIDC key set');
    return new CredentialUnavailable(UNREACHABLE);
  }
}

/**
 * Sign-in with OIDC tokens through the real API (real Redis and Postgres)
 * against a real OpenID Connect provider on a loopback port
 * (test/support/oidc-issuer.ts): the person and role come from the token's
 * claims and OIDC_GROUP_ROLES, the audit names them, and every kind of bad
 * token is a 401 that says why; an unreachable provider is a 503.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import { Queue } from 'bullmq';
import { generateKeyPair, SignJWT } from 'jose';
import { createTestEnv, eventually, waitExit, type TestEnv } from './support/env.ts';
import { freePort } from './support/infra.ts';
import { listen, urlOf } from './support/http.ts';
import { AUDIENCE, startIssuer, TOKEN_TTL_S, type Issuer } from './support/oidc-issuer.ts';
import { createApp } from '../src/api/app.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { OidcVerifier } from '../src/http/oidc.ts';
import type { OidcSettings } from '../src/http/oidc-config.ts';
import { ConfigError, loadConfig } from '../src/config.ts';

const admin = 'test-admin-token-0123456789';
const MAPPING = 'gk-admins=admin; ml-leads=manager:alpha; ml-ops=manager:gamma; ml=submitter:alpha,beta; auditors=viewer';
/** Each person's claims, as the provider puts them in their tokens. */
const PEOPLE: Record<string, Record<string, unknown>> = {
  ada: { preferred_username: 'ada', groups: ['gk-admins', 'ml'] },
  sam: { preferred_username: 'sam', groups: ['ml', 'unmapped'] },
  dana: { preferred_username: 'dana', groups: ['ml', 'ml-leads', 'ml-ops'] },
  vic: { preferred_username: 'vic', groups: 'auditors' },
  otto: { preferred_username: 'otto', groups: ['outsiders'] },
  nameless: { groups: ['gk-admins'] },
  spaced: { preferred_username: 'ada lovelace', groups: ['gk-admins'] },
};

let t: TestEnv;
let issuer: Issuer;
let held: HeldJobs;
let intake: Queue;
/** The verifier's clock runs this far ahead of the real one (the provider stamps tokens with real time). */
let ahead = 0;
const servers: Server[] = [];
const issuers: Issuer[] = [];
let api: string;

/** The API with OIDC for `settings` (the environment's unless told), on its own port. */
async function serve(settings?: OidcSettings): Promise<string> {
  const verifier = new OidcVerifier(settings ?? t.config.oidc!, t.log, { clock: { now: () => Date.now() + ahead }, jwksCooldownMs: 0 });
  const app = createApp({ config: t.config, accounting: t.accounting, intake, clock: t.clock, budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin }, verifiers: [verifier] });
  const server = await listen(app);
  servers.push(server);
  return `${urlOf(server)}/api/v1`;
}

async function another(people = PEOPLE, opts: { key?: Issuer['key']; port?: number } = {}): Promise<Issuer> {
  const i = await startIssuer(people, opts);
  issuers.push(i);
  return i;
}

async function call(base: string, token: string, method: string, path: string, body?: unknown) {
  const res = await fetch(base + path, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, any>, challenge: res.headers.get('www-authenticate') };
}

beforeAll(async () => {
  issuer = await another();
  t = await createTestEnv({ OIDC_ISSUER: issuer.url, OIDC_AUDIENCE: AUDIENCE, OIDC_GROUP_ROLES: MAPPING });
  held = new HeldJobs(t.config, t.redis, t.pool, t.clock, t.log);
  intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
  api = await serve();
});
afterEach(() => {
  ahead = 0;
});
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  await Promise.all(issuers.map((i) => i.close()));
  await held?.close();
  await intake?.close();
  await t?.close();
});

describe('a token from the issuer', () => {
  it.each([
    // [person, role, projects]: from MAPPING by hand.
    ['ada', 'admin', null], // gk-admins (every project) outranks ml
    ['sam', 'submitter', ['alpha', 'beta']], // ml; "unmapped" is ignored
    ['dana', 'manager', ['alpha', 'gamma']], // ml-leads and ml-ops are both manager: their projects together; ml's submitter loses
    ['vic', 'viewer', null], // a single group as a string
  ])('names %s: role %s, projects %j (GET /me)', async (person, role, projects) => {
    const me = await call(api, await issuer.token(person), 'GET', '/me');
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ user: person, role, projects, via: 'oidc' });
  });

  it('lets an admin group set a budget, and the audit names the person and how they were known', async () => {
    const put = await call(api, await issuer.token('ada'), 'PUT', '/projects/oidc-audit/budget', { gpuHours: 12, reason: 'signed in with OIDC' });
    expect(put.status).toBe(200);
    const audit = await call(api, admin, 'GET', '/audit?limit=20');
    const row = audit.body.entries.find((e: any) => e.reason === 'signed in with OIDC');
    expect(row).toMatchObject({ actor: 'ada', role: 'admin', via: 'oidc' });
  });

  it('lets a manager group change its projects only: gamma (ml-ops) yes, beta (ml, as submitter) no', async () => {
    const token = await issuer.token('dana');
    expect((await call(api, token, 'PUT', '/projects/gamma/budget', { gpuHours: 5 })).status).toBe(200);
    const beta = await call(api, token, 'PUT', '/projects/beta/budget', { gpuHours: 5 });
    expect(beta.status).toBe(403);
    expect(beta.body.error.message).toContain('dana (manager');
  });

  it('keeps a submitter group from setting a budget (403)', async () => {
    const put = await call(api, await issuer.token('sam'), 'PUT', '/projects/alpha/budget', { gpuHours: 12 });
    expect(put.status).toBe(403);
    expect(put.body.error.message).toContain('sam (submitter');
  });
});

describe('a token that names nobody is a 401 saying why', () => {
  const refused = async (base: string, token: string, reason: string | RegExp) => {
    const me = await call(base, token, 'GET', '/me');
    expect(me.status).toBe(401);
    expect(me.challenge).toBe('Bearer');
    expect(me.body.error.message).toMatch(reason);
    expect(me.body.error.message).not.toContain(token.split('.')[1]!.slice(0, 20));
  };

  it('expired (past its lifetime and the 30 s of tolerance)', async () => {
    const token = await issuer.token('ada');
    ahead = (TOKEN_TTL_S + 31) * 1000;
    await refused(api, token, /^token expired$/);
  });

  it('for another audience', async () => {
    await refused(api, await issuer.token('ada', 'urn:another-service'), `token is not for this gatekeeper (its audience must include ${AUDIENCE})`);
  });

  it('from another issuer, even signed with the same key', async () => {
    const impostor = await another(PEOPLE, { key: issuer.key });
    await refused(api, await impostor.token('ada'), `token is not from the configured issuer (OIDC_ISSUER ${issuer.url})`);
  });

  it('signed by another key under the issuer’s key id', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    const forged = await new SignJWT({ preferred_username: 'ada', groups: ['gk-admins'] })
      .setProtectedHeader({ alg: 'RS256', kid: issuer.key.kid! })
      .setIssuer(issuer.url).setAudience(AUDIENCE).setIssuedAt().setExpirationTime('5m')
      .sign(privateKey);
    await refused(api, forged, /^token signature does not verify$/);
  });

  it('signed by a key the issuer does not publish', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const forged = await new SignJWT({ preferred_username: 'ada', groups: ['gk-admins'] })
      .setProtectedHeader({ alg: 'ES256', kid: 'not-the-issuers' })
      .setIssuer(issuer.url).setAudience(AUDIENCE).setIssuedAt().setExpirationTime('5m')
      .sign(privateKey);
    await refused(api, forged, /^token is signed by no key the issuer publishes$/);
  });

  it.each([
    ['none', ''],
    ['HS256', 'c2lnbmF0dXJl'],
  ])('with alg %s', async (alg, signature) => {
    const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const token = `${part({ alg, kid: issuer.key.kid })}.${part({ iss: issuer.url, aud: AUDIENCE, exp: now + 300, preferred_username: 'ada', groups: ['gk-admins'] })}.${signature}`;
    await refused(api, token, /^token algorithm not allowed: only RS256, /);
  });

  it('for a person in no mapped group', async () => {
    await refused(api, await issuer.token('otto'), 'otto is in no group that gatekeeper maps to a role (OIDC_GROUP_ROLES; groups are read from "groups")');
  });

  it.each(['nameless', 'spaced'])('without a usable user claim (%s)', async (person) => {
    await refused(api, await issuer.token(person), 'token has no usable "preferred_username" claim (OIDC_USER_CLAIM)');
  });
});

describe('the issuer', () => {
  it('rotates its key: a token under the new key id verifies, one under the withdrawn key no longer does', async () => {
    const rotating = await another();
    const base = await serve({ ...t.config.oidc!, issuer: rotating.url });
    const old = await rotating.token('ada');
    expect((await call(base, old, 'GET', '/me')).status).toBe(200);
    await rotating.rotate();
    const fresh = await rotating.token('ada');
    const me = await call(base, fresh, 'GET', '/me');
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ user: 'ada', via: 'oidc' });
    const withdrawn = await call(base, old, 'GET', '/me');
    expect(withdrawn.status).toBe(401);
    expect(withdrawn.body.error.message).toBe('token is signed by no key the issuer publishes');
  });

  it('down: a gatekeeper that never reached it answers 503; one holding its keys still verifies', async () => {
    const failing = await another();
    const settings = { ...t.config.oidc!, issuer: failing.url };
    const [reached, never] = [await serve(settings), await serve(settings)];
    const token = await failing.token('sam');
    expect((await call(reached, token, 'GET', '/me')).status).toBe(200);
    await failing.close();
    const unreachable = await call(never, token, 'GET', '/me');
    expect(unreachable.status).toBe(503);
    expect(unreachable.body.error.message).toBe('identity provider unreachable: the token could not be checked; try again');
    expect((await call(reached, token, 'GET', '/me')).status).toBe(200);
  });

  it('is asked again once back: the 503 lasts only while it is down', async () => {
    const first = await another();
    const base = await serve({ ...t.config.oidc!, issuer: first.url });
    const token = await first.token('sam');
    await first.close();
    expect((await call(base, token, 'GET', '/me')).status).toBe(503);
    // Back at the same address with the same key.
    await another(PEOPLE, { key: first.key, port: Number(new URL(first.url).port) });
    const me = await call(base, token, 'GET', '/me');
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ user: 'sam', role: 'submitter', via: 'oidc' });
  });
});

describe('the api process', () => {
  it('signs people in with OIDC when OIDC_ISSUER is set (src/main.ts passes the verifier)', async () => {
    const port = await freePort();
    const child = t.spawn('api', { PORT: String(port) });
    const token = await issuer.token('dana');
    const me = () =>
      fetch(`http://127.0.0.1:${port}/api/v1/me`, { headers: { authorization: `Bearer ${token}` } }).then(async (r) => ({ status: r.status, body: await r.json() }), () => null);
    const answer = await eventually(me, (a) => a !== null, 30_000);
    expect(answer).toMatchObject({ status: 200, body: { user: 'dana', role: 'manager', projects: ['alpha', 'gamma'], via: 'oidc' } });
    child.kill('SIGTERM');
    expect(await waitExit(child)).toBe(0);
  });
});

describe('OIDC settings are checked at start-up', () => {
  const base = { OIDC_ISSUER: 'https://login.example.com/realms/ml', OIDC_AUDIENCE: 'gatekeeper', OIDC_GROUP_ROLES: 'gk-admins=admin' };
  const load = (env: Record<string, string>) => loadConfig({ GATEKEEPER_ADMIN_TOKEN: admin, ...env });

  it('parses the mapping: roles, projects, every project', () => {
    const oidc = load({ ...base, OIDC_GROUP_ROLES: ' gk-admins=admin ;ml=submitter:alpha, beta;;/org/leads=manager:alpha' }).oidc!;
    expect([...oidc.groupRoles]).toEqual([
      ['gk-admins', { role: 'admin', projects: null }],
      ['ml', { role: 'submitter', projects: ['alpha', 'beta'] }],
      ['/org/leads', { role: 'manager', projects: ['alpha'] }],
    ]);
    expect(oidc).toMatchObject({ issuer: base.OIDC_ISSUER, audience: 'gatekeeper', userClaim: 'preferred_username', groupsClaim: 'groups' });
    expect(load({}).oidc).toBeNull();
  });

  it.each([
    ['no audience', { OIDC_AUDIENCE: '' }, 'OIDC_AUDIENCE: required with OIDC_ISSUER'],
    ['no mapping', { OIDC_GROUP_ROLES: '' }, 'OIDC_GROUP_ROLES: required with OIDC_ISSUER'],
    ['plain http off loopback', { OIDC_ISSUER: 'http://login.example.com' }, 'OIDC_ISSUER: must be https:// (plain http only on loopback)'],
    ['not a URL', { OIDC_ISSUER: 'login.example.com' }, 'OIDC_ISSUER: "login.example.com" is not a URL'],
    ['an unknown role', { OIDC_GROUP_ROLES: 'ml=owner' }, 'OIDC_GROUP_ROLES: "ml=owner": the role must be one of admin, manager, submitter, viewer'],
    ['no "="', { OIDC_GROUP_ROLES: 'ml admin' }, 'OIDC_GROUP_ROLES: "ml admin" is not group=role or group=role:project,project'],
    ['a group twice', { OIDC_GROUP_ROLES: 'ml=viewer; ml=admin' }, 'OIDC_GROUP_ROLES: "ml=admin": group ml is mapped twice'],
    ['an empty project', { OIDC_GROUP_ROLES: 'ml=submitter:alpha,' }, 'OIDC_GROUP_ROLES: "ml=submitter:alpha,": project "" is not 1-128 characters'],
    ['only separators', { OIDC_GROUP_ROLES: ' ; ' }, 'OIDC_GROUP_ROLES: names no group'],
  ])('refuses %s', (_case, change, message) => {
    expect(() => load({ ...base, ...change })).toThrow(ConfigError);
    expect(() => load({ ...base, ...change })).toThrow(message);
  });

  it('refuses OIDC settings without an issuer (OIDC would silently be off)', () => {
    expect(() => load({ OIDC_GROUP_ROLES: 'ml=admin' })).toThrow('OIDC_GROUP_ROLES: set without OIDC_ISSUER (OIDC is off)');
  });
});

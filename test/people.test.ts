/**
 * A key for each person, and what each role sees and does (real Redis and
 * Postgres, through the HTTP API): keys are answered once and stored hashed,
 * revocation and expiry hold at the next request, a submitter acts only as
 * themselves in their projects and sees only their own, a manager changes
 * only their projects, VISIBILITY=all opens budgets and quotas but not
 * others' jobs, and every audit row names the person and how they were known.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { callApi, serveApi, type ServedApi } from './support/api.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { SYSTEM } from '../src/accounting/budgets.ts';
import { EXIT, runCli } from '../src/cli/main.ts';

const admin = 'test-admin-token-0123456789';
const viewer = 'test-viewer-token-0123456789';
let t: TestEnv;
let api: ServedApi;
let open: ServedApi;

const call = (token: string, method: string, path: string, body?: unknown) => callApi(api.api, token, method, path, body);

async function newKey(body: Record<string, unknown>): Promise<string> {
  const r = await call(admin, 'POST', '/keys', body);
  expect(r.status).toBe(201);
  return r.body.key as string;
}

const job = (project: string, user: string, hours = 1) => ({ project, user, estimatedGpuHours: hours });

async function heldOf(project: string, n: number): Promise<string[]> {
  return eventually(() => t.accounting.heldIds(project), (ids) => ids.length >= n);
}

beforeAll(async () => {
  t = await createTestEnv({ UNKNOWN_PROJECT_POLICY: 'hold' });
  api = await serveApi(t, { clock: t.clock, tokens: { admin, viewer } });
  open = await serveApi(t, { clock: t.clock, tokens: { admin, viewer }, config: { ...t.config, visibility: 'all' } });
  await t.budgets.set('alpha', hoursToGpuMs(1));
  await t.budgets.set('beta', hoursToGpuMs(1));
});
afterAll(async () => {
  await open?.close();
  await api?.close();
  await t?.close();
});

describe('keys', () => {
  it('answers a key once, lists it without its secret, and stores only a digest', async () => {
    const r = await call(admin, 'POST', '/keys', { user: 'kim', role: 'viewer', projects: ['alpha'], reason: 'new starter' });
    expect(r.status).toBe(201);
    const key = r.body.key as string;
    expect(key).toMatch(/^gk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    expect(r.body).toMatchObject({ user: 'kim', role: 'viewer', projects: ['alpha'], state: 'active', createdBy: 'ops-alice', lastUsedAt: null });

    const listed = (await call(admin, 'GET', '/keys?user=kim')).body.keys;
    expect(listed).toHaveLength(1);
    expect(listed[0].id).toBe(r.body.id);
    expect(JSON.stringify(listed)).not.toContain(key.slice(16));
    const rows = await t.pool.query('SELECT * FROM api_keys WHERE person = $1', ['kim']);
    expect(JSON.stringify(rows.rows)).not.toContain(key.slice(16));
    expect(Buffer.from(rows.rows[0].secret_sha256).toString('base64url')).not.toBe(key.slice(16));

    const me = await call(key, 'GET', '/me');
    expect(me.body).toEqual({ user: 'kim', role: 'viewer', projects: ['alpha'], via: `key:${r.body.id}`, visibility: 'own' });
    // Its use is recorded (written without waiting on the request).
    const used = await eventually(async () => (await call(admin, 'GET', '/keys?user=kim')).body.keys[0].lastUsedAt, (at) => at !== null);
    expect(Date.parse(used)).toBeGreaterThan(Date.parse(r.body.createdAt) - 1000);
  });

  it('a revoked key authenticates nobody from the next request on, and the revocation is audited', async () => {
    const key = await newKey({ user: 'rex', role: 'submitter', projects: ['alpha'] });
    expect((await call(key, 'GET', '/me')).status).toBe(200);
    // Another process (the second app) has read and kept the key too.
    expect((await callApi(open.api, key, 'GET', '/me')).status).toBe(200);
    const id = key.slice(3, 15);
    const revoked = await call(admin, 'DELETE', `/keys/${id}`, { reason: 'left the team' });
    expect(revoked.body).toMatchObject({ id, state: 'revoked', revokedBy: 'ops-alice' });
    for (const served of [api, open]) {
      const after = await callApi(served.api, key, 'GET', '/me');
      expect(after.status).toBe(401);
      expect(after.body.error.message).toBe(`key ${id} was revoked`);
    }
    const audit = (await call(admin, 'GET', `/audit?target=key:${id}`)).body.entries.map((e: { action: string; reason: string | null }) => [e.action, e.reason]);
    expect(audit).toEqual([['key.revoke', 'left the team'], ['key.create', null]]);
    expect((await call(admin, 'GET', '/keys?user=rex')).body.keys).toEqual([]);
    expect((await call(admin, 'GET', '/keys?user=rex&revoked=true')).body.keys).toHaveLength(1);
  });

  it('an expired key is refused with the moment it expired', async () => {
    // The suite's clock reads 2026-11-25 12:00 UTC.
    const key = await newKey({ user: 'eve', role: 'viewer', expiresAt: '2026-11-25T12:30:00Z' });
    expect((await call(key, 'GET', '/me')).status).toBe(200);
    t.clock.advance(30 * 60_000);
    const r = await call(key, 'GET', '/me');
    expect(r.status).toBe(401);
    expect(r.body.error.message).toBe(`key ${key.slice(3, 15)} expired at 2026-11-25T12:30:00.000Z`);
  });

  it('a key with a wrong secret, or of no such id, is refused the same way', async () => {
    const key = await newKey({ user: 'wes', role: 'viewer' });
    const wrong = `${key.slice(0, 16)}${'A'.repeat(43)}`;
    const none = `gk_000000000000_${key.slice(16)}`;
    for (const k of [wrong, none]) expect((await call(k, 'GET', '/me')).body.error.message).toBe('invalid key');
  });

  it.each([
    [{ user: 'x', role: 'owner' }, 'role must be one of admin, manager, submitter, viewer'],
    [{ user: 'bad name', role: 'viewer' }, 'user must be 1-128 characters of A-Z a-z 0-9 . _ -'],
    [{ user: 'x', role: 'viewer', projects: [] }, 'projects may not be empty (leave it out for every project)'],
    [{ user: 'x', role: 'viewer', expiresAt: '2020-01-01T00:00:00Z' }, 'expiresAt must be in the future'],
    [{ user: 'x', role: 'viewer', expiresAt: 'tomorrow' }, 'expiresAt must be an ISO 8601 date-time such as 2027-01-31T00:00:00Z'],
    [{ user: 'x', role: 'admin', projects: ['alpha'] }, 'an admin key acts in every project: leave out projects (a manager of some projects is role "manager")'],
  ])('a bad key body is refused with its reason and creates nothing: %j', async (body, message) => {
    const before = (await t.pool.query('SELECT count(*)::int AS n FROM api_keys')).rows[0].n;
    const r = await call(admin, 'POST', '/keys', body);
    expect(r.status).toBe(400);
    expect(r.body.error.message).toBe(message);
    expect((await t.pool.query('SELECT count(*)::int AS n FROM api_keys')).rows[0].n).toBe(before);
  });

  it('only admins manage keys', async () => {
    const manager = await newKey({ user: 'mo', role: 'manager' });
    for (const [method, path] of [['POST', '/keys'], ['GET', '/keys'], ['DELETE', '/keys/000000000000']]) {
      expect((await call(manager, method!, path!, method === 'POST' ? { user: 'mo', role: 'admin' } : undefined)).status).toBe(403);
    }
  });
});

describe('a submitter', () => {
  let ann: string;
  beforeAll(async () => {
    ann = await newKey({ user: 'ann', role: 'submitter', projects: ['alpha'] });
  });

  it('submits as themselves into their projects, and not as anyone else or elsewhere', async () => {
    expect((await call(ann, 'POST', '/jobs', job('alpha', 'ann'))).status).toBe(202);
    const asBob = await call(ann, 'POST', '/jobs', { jobs: [job('alpha', 'ann'), job('alpha', 'bob')] });
    expect(asBob.status).toBe(403);
    expect(asBob.body.error.message).toBe('job 1: ann (submitter of alpha) may not submit jobs for user "bob" in project "alpha"');
    expect((await call(ann, 'POST', '/jobs', job('beta', 'ann'))).status).toBe(403);
    expect((await call(ann, 'POST', '/preflight', job('alpha', 'bob'))).status).toBe(403);
    expect((await call(ann, 'POST', '/preflight', job('alpha', 'ann'))).status).toBe(200);
  });

  it('sees their projects and themselves only, whatever the URL', async () => {
    expect((await call(ann, 'GET', '/projects')).body.projects.map((p: { project: string }) => p.project)).toEqual(['alpha']);
    expect((await call(ann, 'GET', '/projects/alpha/budget')).status).toBe(200);
    const beta = await call(ann, 'GET', '/projects/beta/budget');
    expect([beta.status, beta.body.error.message]).toEqual([403, 'ann (submitter of alpha) may not read the budget of project beta']);
    expect((await call(ann, 'GET', '/users/ann/quota')).status).toBe(200);
    expect((await call(ann, 'GET', '/users/bob/quota')).status).toBe(403);
    expect((await call(ann, 'GET', '/quotas')).body.quotas.map((q: { user: string }) => q.user)).toEqual(['ann']);
    for (const path of ['/projects/alpha/rate-limit', '/projects/beta/rate-limit', '/users/ann/rate-limit', '/users/bob/rate-limit']) await call(admin, 'PUT', path, { jobsPerMinute: 600, burst: 60 });
    expect((await call(ann, 'GET', '/rate-limits')).body.rateLimits.map((l: { scope: string }) => l.scope)).toEqual(['project:alpha', 'user:ann']);
    expect((await call(ann, 'GET', '/users/bob/rate-limit')).status).toBe(403);
    for (const path of ['/audit', '/alerts', '/webhooks', '/exempt-job-types', '/usage/export?month=2026-11', '/quarantine']) {
      expect((await call(ann, 'GET', path)).status, path).toBe(403);
    }
    const usage = await call(ann, 'GET', '/usage?from=2026-11-01&to=2026-11-30&project=alpha');
    expect([usage.status, usage.body.error.message]).toEqual([403, 'ann (submitter of alpha) may read your own usage (user=ann)']);
    expect((await call(ann, 'GET', '/usage?from=2026-11-01&to=2026-11-30')).status).toBe(200);
  });

  it('sees their own held jobs and not others’, even in their project', async () => {
    await t.budgets.set('gamma', 0);
    const gina = await newKey({ user: 'gina', role: 'submitter', projects: ['gamma'] });
    await call(gina, 'POST', '/jobs', job('gamma', 'gina'));
    await call(admin, 'POST', '/jobs', job('gamma', 'hal'));
    await heldOf('gamma', 2);
    const mine = (await call(gina, 'GET', '/held')).body;
    expect(mine.jobs.map((j: { user: string }) => j.user)).toEqual(['gina']);
    expect(mine.total).toBe(1);
    // Another's held job: as if it did not exist.
    const hals = (await call(admin, 'GET', '/held?user=hal')).body.jobs[0].jobId;
    const r = await call(gina, 'POST', `/held/${hals}/cancel`, { reason: 'not mine' });
    expect([r.status, r.body.error.message]).toEqual([404, `no held job ${hals}`]);
    // Their own: cancelled, and the audit names them.
    const own = mine.jobs[0].jobId;
    expect((await call(gina, 'POST', `/held/${own}/cancel`, { reason: 'wrong settings' })).status).toBe(200);
    const [row] = (await call(admin, 'GET', `/audit?target=job:${own}`)).body.entries;
    expect(row).toMatchObject({ action: 'held.cancel', actor: 'gina', role: 'submitter', via: `key:${gina.slice(3, 15)}` });
  });

  it('sees on the dashboard only their projects, their quota and their held jobs', async () => {
    const page = async (key: string) => {
      const res = await fetch(api.api.replace(/\/api\/v1$/, '/dashboard'), { headers: { authorization: `Basic ${Buffer.from(`x:${key}`).toString('base64')}` } });
      expect(res.status).toBe(200);
      return res.text();
    };
    await t.budgets.setQuota('ann', { daily: { limitGpuMs: hoursToGpuMs(3) } }, SYSTEM, null);
    await t.budgets.setQuota('bob', { daily: { limitGpuMs: hoursToGpuMs(3) } }, SYSTEM, null);
    await t.budgets.set('gamma', 0);
    await call(admin, 'POST', '/jobs', { jobs: [job('gamma', 'ann'), job('gamma', 'hal2')] });
    await eventually(() => call(admin, 'GET', '/held?project=gamma'), (r) => r.body.jobs.some((j: { user: string }) => j.user === 'hal2'));
    const mine = await page(ann);
    expect(mine).toContain('data-scope="project:alpha"');
    expect(mine).toContain('data-scope="user-day:ann"');
    expect(mine).not.toContain('data-scope="project:beta"');
    expect(mine).not.toContain('data-scope="user-day:bob"');
    expect(mine).toContain('<td>ann</td>');
    expect(mine).not.toContain('<td>hal2</td>');
    expect(mine).toContain('<span class="muted" id="who">ann (submitter of alpha) ·');
    expect(mine).not.toContain('Recent alerts');
    const all = await page(admin);
    for (const s of ['data-scope="project:beta"', 'data-scope="user-day:bob"', '<td>hal2</td>', 'Recent alerts']) expect(all).toContain(s);
  });

  it('with VISIBILITY=all, reads every budget and quota, but still not others’ held jobs', async () => {
    const call2 = (path: string) => callApi(open.api, ann, 'GET', path);
    expect((await call2('/projects/beta/budget')).status).toBe(200);
    expect((await call2('/users/bob/quota')).status).toBe(200);
    expect((await call2('/projects')).body.projects.map((p: { project: string }) => p.project)).toEqual(expect.arrayContaining(['alpha', 'beta', 'gamma']));
    expect((await call2('/held')).body.jobs.filter((j: { user: string }) => j.user !== 'ann')).toEqual([]);
    expect((await call2('/audit')).status).toBe(403);
  });
});

describe('a viewer of one project', () => {
  it('asks what a job of another person would do without seeing that person\'s quota', async () => {
    await t.budgets.setQuota('carol', { daily: { limitGpuMs: hoursToGpuMs(4) } }, SYSTEM, null);
    const vic = await newKey({ user: 'vic', role: 'viewer', projects: ['alpha'] });
    expect((await call(vic, 'GET', '/users/carol/quota')).status).toBe(403);
    const r = await call(vic, 'POST', '/preflight', job('alpha', 'carol', 0.5));
    expect(r.status).toBe(200);
    expect(r.body.scopes.map((v: { scope: string }) => v.scope)).toEqual(['project:alpha']);
    // An admin asking the same sees her quota.
    expect((await call(admin, 'POST', '/preflight', job('alpha', 'carol', 0.5))).body.scopes.map((v: { scope: string }) => v.scope)).toEqual(['project:alpha', 'user-day:carol', 'user-week:carol']);
  });
});

describe('a manager', () => {
  it('changes the limits of their projects only, and the audit names them', async () => {
    const max = await newKey({ user: 'max', role: 'manager', projects: ['alpha'] });
    const r = await call(max, 'PUT', '/projects/alpha/budget', { gpuHours: 5, reason: 'more renders' });
    expect(r.status).toBe(200);
    const [row] = (await call(admin, 'GET', '/audit?target=project:alpha')).body.entries;
    expect(row).toMatchObject({ actor: 'max', role: 'manager', via: `key:${max.slice(3, 15)}`, reason: 'more renders' });
    const beta = await call(max, 'PUT', '/projects/beta/budget', { gpuHours: 5 });
    expect([beta.status, beta.body.error.message]).toEqual([403, 'max (manager of alpha) may not change the budget of project beta']);
    expect((await t.budgets.get('beta'))!.limitGpuMs).toBe(hoursToGpuMs(1));
    // User limits reach every project: not for a manager of some.
    expect((await call(max, 'PUT', '/users/ann/quota', { daily: { gpuHours: 1 } })).status).toBe(403);
  });

  it('releases and overrides held jobs of their projects only', async () => {
    await t.budgets.set('delta', 0);
    await t.budgets.set('omega', 0);
    const dee = await newKey({ user: 'dee', role: 'manager', projects: ['delta'] });
    await call(admin, 'POST', '/jobs', { jobs: [job('delta', 'u1'), job('omega', 'u2')] });
    await heldOf('delta', 1);
    await heldOf('omega', 1);
    const omegaJob = (await t.accounting.heldIds('omega'))[0]!;
    const o = await call(dee, 'POST', `/held/${omegaJob}/override`, {});
    expect(o.status).toBe(404); // not theirs to see
    // "all" means all of theirs: omega's job stays held.
    await t.budgets.set('delta', hoursToGpuMs(2));
    await t.budgets.set('omega', hoursToGpuMs(2), undefined, undefined, { release: 'manual' });
    const rel = await call(dee, 'POST', '/held/release', { all: true });
    expect(rel.body).toMatchObject({ admitted: 1, stillHeld: 0 });
    expect(await t.accounting.heldIds('omega')).toEqual([omegaJob]);
  });
});

describe('the dashboard of a manager', () => {
  it('offers Release and Override on their projects\' held jobs only', async () => {
    await t.budgets.set('kappa', 0);
    await t.budgets.set('lambda', 0);
    const kim = await newKey({ user: 'kimm', role: 'manager', projects: ['kappa'] });
    await call(admin, 'POST', '/jobs', { jobs: [job('kappa', 'u9'), job('lambda', 'kimm')] });
    const [k] = await heldOf('kappa', 1);
    const [l] = await heldOf('lambda', 1);
    const res = await fetch(api.api.replace(/\/api\/v1$/, '/dashboard'), { headers: { authorization: `Basic ${Buffer.from(`x:${kim}`).toString('base64')}` } });
    const html = await res.text();
    // Both rows are theirs to see (one by project, one as its owner); only kappa's is theirs to decide.
    expect(html).toContain(`<tr data-job="${k}">`);
    expect(html).toContain(`<tr data-job="${l}">`);
    expect(html).toContain(`data-action="release" data-id="${k}"`);
    expect(html).not.toContain(`data-id="${l}"`);
  });
});

describe('the environment tokens', () => {
  it('keep working, and the audit marks the name as declared', async () => {
    expect((await call(admin, 'PUT', '/projects/epsilon/budget', { gpuHours: 2 })).status).toBe(200);
    const [row] = (await call(admin, 'GET', '/audit?target=project:epsilon')).body.entries;
    expect(row).toMatchObject({ actor: 'ops-alice', role: 'admin', via: 'token' });
    expect((await call(viewer, 'GET', '/me')).body).toEqual({ user: 'ops-alice', role: 'viewer', projects: null, via: 'token', visibility: 'own' });
  });
});

describe('the CLI', () => {
  const cli = async (token: string, args: string[]) => {
    let out = '';
    const code = await runCli(['--url', api.api.replace(/\/api\/v1$/, ''), '--token', token, '--actor', 'ops-bob', ...args], (s) => (out += s));
    return { code, out };
  };

  it('creates a key that then says who it is, lists it, and revokes it', async () => {
    const made = await cli(admin, ['keys', 'create', 'cli-ann', '--role', 'submitter', '--projects', 'alpha,beta', '--reason', 'onboarding']);
    expect(made.code).toBe(EXIT.ok);
    const key = /\n(gk_\S+)\n$/.exec(made.out)![1]!;
    expect((await cli(key, ['whoami'])).out).toBe(`cli-ann: submitter of alpha, beta, known by key:${key.slice(3, 15)}\n`);
    const listed = await cli(admin, ['keys', 'list', '--user', 'cli-ann']);
    expect(listed.out).toMatch(new RegExp(`^ID +USER +ROLE +PROJECTS +STATE +EXPIRES +LAST USED +CREATED BY\n${key.slice(3, 15)} +cli-ann +submitter +alpha,beta +active +`));
    expect(listed.out).not.toContain(key.slice(16));
    expect((await cli(admin, ['keys', 'revoke', key.slice(3, 15), '--reason', 'done'])).code).toBe(EXIT.ok);
    expect((await cli(key, ['whoami'])).code).toBe(EXIT.forbidden);
  });

  it('a submitter may not create keys: exit 3', async () => {
    const key = await newKey({ user: 'cli-sam', role: 'submitter' });
    expect((await cli(key, ['keys', 'create', 'x', '--role', 'admin'])).code).toBe(EXIT.forbidden);
  });
});

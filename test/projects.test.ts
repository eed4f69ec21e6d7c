/**
 * GET /api/v1/projects over real HTTP, Redis and Postgres: every project
 * with a budget and every project with jobs held now (one with no budget
 * among them), by name, with its budget view and held count; paged by
 * cursor across both sources; bad query values answered 400 saying why.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { serveApi, type ServedApi } from './support/api.ts';
import type { HeldJobs } from '../src/admin/held.ts';
import type { Queue } from 'bullmq';
import { hoursToGpuMs } from '../src/units.ts';

const H = hoursToGpuMs(1);
const admin = 'test-admin-token-0123456789';
const viewer = 'test-viewer-token-0123456789';
let t: TestEnv;
let served: ServedApi;
let held: HeldJobs;
let intake: Queue;

async function get(path: string, token: string | null = viewer) {
  const res = await fetch(served.api + path, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}
const names = (body: Record<string, any>) => (body.projects as { project: string }[]).map((p) => p.project);

beforeAll(async () => {
  t = await createTestEnv();
  served = await serveApi(t, { clock: t.clock, tokens: { admin, viewer } });
  ({ held, intake } = served);
});
afterAll(async () => {
  await served?.close();
  await t?.close();
});

describe('GET /api/v1/projects', () => {
  it('answers an empty list before any project exists', async () => {
    expect(await get('/projects')).toEqual({ status: 200, body: { projects: [], nextCursor: null } });
  });

  it('lists budgeted projects and projects with held jobs by name, each with its budget view', async () => {
    // Set out of order; "Zeta" sorts before "alpha" (byte order: capitals first).
    await t.budgets.set('delta', 4 * H);
    await t.budgets.set('alpha', 1 * H);
    await t.budgets.set('Zeta', 2 * H, undefined, null, { period: 'month' });
    // 'beta' has no budget: its job is held. One of alpha's two jobs fits, one is held.
    await intake.addBulk([
      { name: 'j', data: { project: 'beta', user: 'ana', estimatedGpuHours: 1 } },
      { name: 'j', data: { project: 'alpha', user: 'ana', estimatedGpuHours: 1 } },
      { name: 'j', data: { project: 'alpha', user: 'ana', estimatedGpuHours: 1 } },
    ]);
    await eventually(() => intake.getCompletedCount(), (n) => n === 3);

    const r = await get('/projects');
    expect(r.status).toBe(200);
    expect(names(r.body)).toEqual(['Zeta', 'alpha', 'beta', 'delta']);
    expect(r.body.nextCursor).toBeNull();
    const [zeta, alpha, beta, delta] = r.body.projects;
    // The same view GET /projects/:project/budget answers, plus the held count.
    expect(alpha).toEqual({ ...(await get('/projects/alpha/budget')).body, heldJobs: 1 });
    expect(alpha).toMatchObject({ limitGpuHours: 1, reservedGpuHours: 1, remainingGpuHours: 0, heldJobs: 1 });
    expect(zeta).toMatchObject({ project: 'Zeta', period: 'month', periodLabel: '2026-11', limitGpuHours: 2, heldJobs: 0 });
    expect(delta).toMatchObject({ project: 'delta', limitGpuHours: 4, usedGpuHours: 0, heldJobs: 0 });
    // No budget: the view says so with nulls (GET /projects/beta/budget answers 404).
    expect(beta).toMatchObject({ project: 'beta', limitGpuHours: null, remainingGpuHours: null, updatedAt: null, heldJobs: 1 });
    expect((await get('/projects/beta/budget')).status).toBe(404);
  });

  it('pages by cursor across both sources, each project once', async () => {
    const first = await get('/projects?limit=2');
    expect([names(first.body), first.body.nextCursor]).toEqual([['Zeta', 'alpha'], 'alpha']);
    const second = await get('/projects?limit=2&cursor=alpha');
    // 'beta' is known from Redis only, 'delta' from Postgres only; nothing follows them, and the page says so.
    expect([names(second.body), second.body.nextCursor]).toEqual([['beta', 'delta'], null]);
    expect(await get('/projects?limit=2&cursor=delta')).toMatchObject({ status: 200, body: { projects: [], nextCursor: null } });
    // A cursor need not be a listed project: the names after it.
    expect(names((await get('/projects?cursor=b')).body)).toEqual(['beta', 'delta']);
  });

  it('keeps a project that has a budget, and drops one with none once nothing of it is held', async () => {
    await t.budgets.set('beta', 1 * H);
    await held.release({ project: 'beta' }, { name: 'test', role: 'admin' });
    const r = await get('/projects?cursor=alpha&limit=1');
    expect(r.body.projects).toEqual([expect.objectContaining({ project: 'beta', limitGpuHours: 1, reservedGpuHours: 1, heldJobs: 0 })]);
    const [alphaHeld] = (await held.list({ project: 'alpha', limit: 1, offset: 0 })).jobs;
    await held.cancel(alphaHeld!.jobId, { name: 'test', role: 'admin' }, 'not needed');
    expect((await get('/projects')).body.projects[1]).toMatchObject({ project: 'alpha', heldJobs: 0 });

    // No budget and nothing held any more: nothing to list it by.
    await intake.add('j', { project: 'omega', user: 'ana', estimatedGpuHours: 1 });
    const listed = await eventually(() => get('/projects?cursor=delta'), (r) => r.body.projects.length === 1);
    expect(listed.body.projects[0]).toMatchObject({ project: 'omega', limitGpuHours: null, heldJobs: 1 });
    await held.cancel((await held.list({ project: 'omega', limit: 1, offset: 0 })).jobs[0]!.jobId, { name: 'test', role: 'admin' }, 'no budget');
    expect(names((await get('/projects')).body)).toEqual(['Zeta', 'alpha', 'beta', 'delta']);
  });

  it.each([
    ['limit=0', 'limit must be at least 1'],
    ['limit=1001', 'limit must be at most 1000'],
    ['limit=2.5', 'limit must be a whole number'],
    ['limit=lots', 'limit must be a number'],
    ['limit=1&limit=2', 'limit must be a number'],
    ['cursor=bad%20name', 'cursor must be a project name: the nextCursor of the previous page'],
    ['cursor=', 'cursor must be a project name: the nextCursor of the previous page'],
    ['offset=2', 'unknown query parameter(s): offset'],
  ])('?%s: 400 saying why', async (q, message) => {
    expect(await get(`/projects?${q}`)).toEqual({ status: 400, body: { error: { status: 400, message } } });
  });

  it('is for both tokens, and no one else', async () => {
    expect((await get('/projects', admin)).status).toBe(200);
    expect((await get('/projects', null)).status).toBe(401);
    expect((await get('/projects', 'not-a-token-of-ours')).status).toBe(401);
  });
});

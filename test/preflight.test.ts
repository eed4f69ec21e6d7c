/**
 * Preflight and submission through the API (real Redis and Postgres): a
 * preflight of a 160-job batch reserves nothing and says exactly what then
 * happens when the same batch is submitted; warnings name the limits the
 * batch would cross; a batch with an invalid job is refused whole.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import { Queue } from 'bullmq';
import { listen, urlOf } from './support/http.ts';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { createApp } from '../src/api/app.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { SYSTEM } from '../src/accounting/budgets.ts';
import { createGatekeeper, type Gatekeeper } from '../workers/gatekeeper.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { Preflight } from '../src/admin/preflight.ts';
import { loadConfig } from '../src/config.ts';

const H = hoursToGpuMs(1);
const admin = 'test-admin-token-0123456789';
const viewer = 'test-viewer-token-0123456789';
let t: TestEnv;
let server: Server;
let base: string;
let held: HeldJobs;
let intake: Queue;
let gk: Gatekeeper;

async function call(method: string, path: string, body: unknown, token = viewer) {
  const res = await fetch(base + path, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

beforeAll(async () => {
  // One job at a time, so "what then happens" is one definite order to compare against.
  t = await createTestEnv({ GATEKEEPER_CONCURRENCY: '1' });
  held = new HeldJobs(t.config, t.redis, t.pool, t.clock, t.log);
  intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
  const app = createApp({ config: t.config, accounting: t.accounting, intake, clock: t.clock, budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin, viewer } });
  server = await listen(app);
  base = `${urlOf(server)}/api/v1`;
  gk = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: t.clock });
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await gk?.close();
  await held?.close();
  await intake?.close();
  await t?.close();
});

describe('preflight', () => {
  it('answers for a 160-job batch what submitting it then does, reserving nothing', async () => {
    await t.budgets.set('scenes', 100 * H);
    await t.budgets.setQuota('bob', { daily: { limitGpuMs: 30 * H } }, SYSTEM, null);
    await t.budgets.setRunCap('scenes', 'ep1', { limitGpuMs: 60 * H }, SYSTEM, null);
    // 160 scenes: bob's first 30 fit his day, carol's go on until the run cap.
    const batch = Array.from({ length: 160 }, (_, i) => ({ project: 'scenes', user: i % 2 ? 'carol' : 'bob', run: 'ep1', estimatedGpuHours: 1 }));

    const pre = await call('POST', '/preflight', { jobs: batch });
    expect(pre.status).toBe(200);
    expect(pre.body).toMatchObject({ jobs: 160, admitted: 60, held: 100, rejected: 0 });
    expect((await t.budgets.get('scenes'))!.reservedGpuMs).toBe(0); // nothing reserved
    expect(await t.accounting.heldIds()).toEqual([]);
    // Job 60 (bob's 31st) misses both his day and the run; 61 (carol's) waits behind the run's line.
    expect(pre.body.outcomes.slice(59, 62)).toEqual([
      { index: 59, outcome: 'admitted' },
      { index: 60, outcome: 'held', reason: "user bob's daily quota: 30.0 of 30.0 GPU-h used or reserved; job needs 1.0; and run scenes/ep1: 60.0 of 60.0 GPU-h used or reserved; job needs 1.0", waitsFor: ['hours'] },
      { index: 61, outcome: 'held', reason: 'run scenes/ep1: 60.0 of 60.0 GPU-h used or reserved; job needs 1.0 (behind 1 older held job waiting for run scenes/ep1)', waitsFor: ['hours', 'line'] },
    ]);
    expect(pre.body.warnings).toEqual(expect.arrayContaining([
      "user bob's daily quota: this submission would reach 75% of its limit",
      "user bob's daily quota: this submission would hit its limit; the jobs past it are held",
      'run scenes/ep1: this submission would reach 100% of its limit',
    ]));
    expect(pre.body.scopes.map((s: { scope: string }) => s.scope)).toEqual(['project:scenes', 'user-day:bob', 'user-week:bob', 'run:scenes/ep1', 'user-day:carol', 'user-week:carol']);

    const sub = await call('POST', '/jobs', { jobs: batch });
    expect(sub.status).toBe(202);
    expect(sub.body.jobIds).toHaveLength(160);
    expect(sub.body.warnings).toEqual(pre.body.warnings);
    const ids: string[] = sub.body.jobIds;
    await eventually(() => intake.getCompletedCount(), (n) => n === 160);
    const results = await Promise.all(ids.map(async (id) => (await intake.getJob(id))!.returnvalue as { outcome: string; reason?: string }));
    expect(results.map((r) => r.outcome)).toEqual(pre.body.outcomes.map((o: { outcome: string }) => o.outcome));
    expect(results.map((r) => r.reason ?? null)).toEqual(pre.body.outcomes.map((o: { reason?: string }) => o.reason ?? null));
  });

  it('warns by name about a project with no budget, as data and as a sentence, per UNKNOWN_PROJECT_POLICY', async () => {
    await t.budgets.setExempt('ci', true, SYSTEM, null);
    // orphan: no budget, two counted jobs; drift: no budget, but its only job is exempt (admitted without one).
    const batch = [
      { project: 'orphan', user: 'olga', estimatedGpuHours: 1 },
      { project: 'scenes', user: 'olga', estimatedGpuHours: 1 },
      { project: 'orphan', user: 'olga', estimatedGpuHours: 2 },
      { project: 'drift', user: 'olga', estimatedGpuHours: 1, jobType: 'ci' },
    ];
    const message = 'project orphan has no budget: its jobs will be held until an admin sets one (2 of these jobs; UNKNOWN_PROJECT_POLICY=hold)';
    const pre = await call('POST', '/preflight', { jobs: batch });
    expect(pre.body).toMatchObject({ admitted: 2, held: 2, rejected: 0 });
    expect(pre.body.warningDetails).toEqual([{ code: 'no-budget', scope: 'project:orphan', project: 'orphan', policy: 'hold', jobs: 2, message }]);
    expect(pre.body.warnings).toEqual([message]);

    const sub = await call('POST', '/jobs', { jobs: batch });
    expect(sub.body).toMatchObject({ warnings: [message], warningDetails: pre.body.warningDetails, preflight: { admitted: 2, held: 2 } });
    const ids: string[] = sub.body.jobIds;
    const done = await eventually(() => Promise.all(ids.map(async (id) => (await intake.getJob(id))!.returnvalue as { outcome: string; reason?: string } | null)), (r) => r.every(Boolean));
    expect(done[0]).toMatchObject({ outcome: 'held', reason: 'no budget for project orphan' });

    // With UNKNOWN_PROJECT_POLICY=reject the same jobs would be rejected, and the warning says so.
    const strict = new Preflight(loadConfig({ ...t.env, UNKNOWN_PROJECT_POLICY: 'reject' }), t.accounting, t.budgets);
    const rejecting = await strict.run([batch[0], batch[2]], t.clock.now());
    expect(rejecting).toMatchObject({ rejected: 2, warnings: ['project orphan has no budget: its jobs will be rejected until an admin sets one (2 of these jobs; UNKNOWN_PROJECT_POLICY=reject)'] });
    expect(rejecting.warningDetails).toEqual([expect.objectContaining({ code: 'no-budget', project: 'orphan', policy: 'reject', jobs: 2 })]);

    // Once it has a budget, no such warning.
    await t.budgets.set('orphan', 10 * H);
    expect((await call('POST', '/preflight', batch[0])).body.warningDetails).toEqual([]);
  });

  it('counts invalid jobs as rejected with their reason; /jobs refuses the batch whole', async () => {
    const batch = [{ project: 'scenes', user: 'dan', estimatedGpuHours: 1 }, { project: 'scenes', estimatedGpuHours: 0 }];
    expect((await call('POST', '/preflight', { jobs: batch })).body).toMatchObject({
      jobs: 2, rejected: 1, outcomes: [{ index: 0 }, { index: 1, outcome: 'rejected', reason: 'invalid job: user is required; estimatedGpuHours must be greater than 0' }],
    });
    const before = await intake.count();
    expect(await call('POST', '/jobs', { jobs: batch })).toEqual({
      status: 400, body: { error: { status: 400, message: 'job 1: invalid job: user is required; estimatedGpuHours must be greater than 0' } },
    });
    expect(await intake.count()).toBe(before);
  });

  it.each([
    ['an array', [], 'body must be a job object or { "jobs": [ ... ] }'],
    ['no jobs', { jobs: [] }, 'jobs must be a non-empty array'],
    ['more than jobs', { jobs: [{}], extra: 1 }, 'a batch body has only "jobs"'],
    ['1001 jobs', { jobs: Array.from({ length: 1001 }, () => ({})) }, 'at most 1000 jobs per request, got 1001'],
  ])('answers 400 to %s', async (_name, body, message) => {
    expect(await call('POST', '/preflight', body)).toEqual({ status: 400, body: { error: { status: 400, message } } });
  });
});

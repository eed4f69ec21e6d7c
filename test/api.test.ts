/**
 * The budget API over real HTTP: decimal hours in and out, integers inside,
 * and every bad request answered 4xx with a JSON reason and nothing changed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import { listen, urlOf } from './support/http.ts';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { Queue } from 'bullmq';
import { createApp } from '../src/api/app.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { systemClock } from '../src/clock.ts';
import { hoursToGpuMs } from '../src/units.ts';

let t: TestEnv;
let server: Server;
let base: string;
let queues: { intake: Queue; exec: Queue; held: Queue; rejected: Queue };
let held: HeldJobs;
const viewerToken = 'test-viewer-token-0123456789';
const token = 'test-admin-token-0123456789';
const auth = { authorization: `Bearer ${token}` };
const viewerAuth = { authorization: `Bearer ${viewerToken}` };

beforeAll(async () => {
  t = await createTestEnv();
  const q = (name: string) => new Queue(name, { connection: t.redis, prefix: t.config.queuePrefix });
  queues = { intake: q(t.config.queues.intake), exec: q(t.config.queues.exec), held: q(t.config.queues.held), rejected: q(t.config.queues.rejected) };
  held = new HeldJobs(t.config, t.redis, t.pool, systemClock, t.log);
  const app = createApp({ budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin: token, viewer: viewerToken }, boardQueues: queues });
  server = await listen(app);
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await Promise.all(Object.values(queues ?? {}).map((q) => q.close()));
  await held?.close();
  await t?.close();
});

async function call(method: string, path: string, body?: unknown, headers: Record<string, string> = auth) {
  const res = await fetch(base + path, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('budget API', () => {
  it('sets and reads a budget in decimal GPU hours, stored as integer GPU-ms', async () => {
    const put = await call('PUT', '/api/v1/projects/alpha/budget', { gpuHours: 100.25 });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ project: 'alpha', limitGpuHours: 100.25, usedGpuHours: 0, reservedGpuHours: 0, remainingGpuHours: 100.25 });
    expect(await t.redis.hget(t.accounting.keys.def('project:alpha'), 'limit')).toBe(String(hoursToGpuMs(100.25)));
    const row = await t.pool.query('SELECT limit_gpu_ms FROM limits WHERE scope = $1', ['project:alpha']);
    expect(row.rows[0].limit_gpu_ms).toBe(360_900_000);

    await t.accounting.reserve('job-1', hoursToGpuMs(4), ['project:alpha'], { project: 'alpha', user: 'u', gpus: 1 }, Date.now());
    const get = await call('GET', '/api/v1/projects/alpha/budget');
    expect(get.body).toMatchObject({ limitGpuHours: 100.25, usedGpuHours: 0, reservedGpuHours: 4, remainingGpuHours: 96.25 });
  });

  it('lowers a budget below what is reserved: remaining goes negative, nothing is cancelled', async () => {
    const put = await call('PUT', '/api/v1/projects/alpha/budget', { gpuHours: 1 });
    expect(put.body).toMatchObject({ limitGpuHours: 1, reservedGpuHours: 4, remainingGpuHours: -3 });
    expect(await t.accounting.whichOpen(['job-1'])).toEqual(new Set(['job-1']));
  });

  it('answers 404 for a project with no budget', async () => {
    const r = await call('GET', '/api/v1/projects/nobody/budget');
    expect(r).toEqual({ status: 404, body: { error: { status: 404, message: 'no budget for project nobody' } } });
  });

  it.each([
    ['negative', { gpuHours: -1 }, 400, 'gpuHours may not be negative'],
    ['a string', { gpuHours: '100' }, 400, 'gpuHours must be a number'],
    ['missing', {}, 400, 'give the amount as one of gpuHours, units or usd'],
    ['in two units', { gpuHours: 5, usd: 5 }, 400, 'give the amount in one unit only, not gpuHours and usd'],
    ['in dollars past the micro-dollar', { usd: 4.0000001 }, 400, 'usd has more decimals than a micro-dollar (6)'],
    ['too large', { gpuHours: 1e12 }, 400, 'gpuHours must be at most 1000000000'],
    ['null', { gpuHours: null }, 400, 'gpuHours must be a number'],
    ['an extra field', { gpuHours: 5, limit: 3 }, 400, 'unknown field(s): limit'],
    ['an array', [5], 400, 'body must be a JSON object'],
    ['not JSON', '{gpuHours: 5', 400, 'request body is not valid JSON'],
    ['huge', { gpuHours: 5, pad: 'x'.repeat(100_000) }, 413, 'request body is too large'],
  ])('rejects a body that is %s, and changes nothing', async (_name, body, status, message) => {
    const r = await call('PUT', '/api/v1/projects/alpha/budget', body);
    expect(r).toEqual({ status, body: { error: { status, message } } });
    expect((await t.budgets.get('alpha'))!.limitGpuMs).toBe(hoursToGpuMs(1));
  });

  it('sets and shows a user quota per period, with its next reset', async () => {
    const put = await call('PUT', '/api/v1/users/bob/quota', { daily: { gpuHours: 8 }, weekly: { gpuHours: 30, policy: 'soft', gracePercent: 10 }, reason: 'peak' });
    expect(put.status).toBe(200);
    // The env's budgets use an injected clock at 2026-11-25 12:00 UTC.
    expect(put.body).toMatchObject({
      user: 'bob',
      daily: { scope: 'user-day:bob', period: 'day', periodLabel: '2026-11-25', nextResetAt: '2026-11-26T00:00:00.000Z', limitGpuHours: 8, usedGpuHours: 0, reservedGpuHours: 0, remainingGpuHours: 8, policy: 'hard' },
      weekly: { scope: 'user-week:bob', periodLabel: 'W2026-11-23', nextResetAt: '2026-11-30T00:00:00.000Z', limitGpuHours: 30, policy: 'soft', gracePercent: 10 },
    });
    expect((await call('GET', '/api/v1/users/carol/quota', undefined, viewerAuth)).body).toMatchObject({ daily: { limitGpuHours: null, remainingGpuHours: null } });
    expect((await call('PUT', '/api/v1/users/bob/quota', { daily: null })).body).toMatchObject({ daily: { limitGpuHours: null }, weekly: { limitGpuHours: 30 } });
  });

  it.each([
    ['/users/bob/quota', 'PUT', {}, 'give daily and/or weekly (null removes one)'],
    ['/users/bob/quota', 'PUT', { daily: 8 }, 'a quota must be an object { gpuHours | units | usd, policy?, gracePercent?, thresholds?, release? } or null'],
    ['/users/bob/quota', 'PUT', { daily: { gpuHours: 8, policy: 'lenient' } }, 'policy must be "hard" or "soft"'],
    ['/users/bob/quota', 'PUT', { weekly: { gpuHours: 8, gracePercent: 150 } }, 'gracePercent must be at most 100'],
    ['/projects/alpha/budget', 'PUT', { gpuHours: 1, period: 'fortnight' }, 'period must be "none", "week" or "month"'],
    ['/projects/alpha/budget/adjust', 'POST', { gpuHours: 0 }, 'gpuHours may not be 0'],
    ['/projects/alpha/runs/bad%20run/cap', 'PUT', { gpuHours: 1 }, 'run must be 1-128 characters of A-Z a-z 0-9 . _ -'],
    // Amounts that are not 0 but round to 0 GPU-ms would be audited changes that change nothing.
    ['/projects/alpha/budget/adjust', 'POST', { gpuHours: 1e-10 }, 'gpuHours rounds to 0 GPU-ms; the smallest amount other than 0 is 0.000000278 GPU-h (1 GPU-ms)'],
    ['/projects/alpha/budget/adjust', 'POST', { gpuHours: -1e-10 }, 'gpuHours rounds to 0 GPU-ms; the smallest amount other than 0 is 0.000000278 GPU-h (1 GPU-ms)'],
    ['/projects/alpha/runs/r1/cap', 'PUT', { gpuHours: 1e-10 }, 'gpuHours rounds to 0 GPU-ms; the smallest amount other than 0 is 0.000000278 GPU-h (1 GPU-ms)'],
    ['/projects/alpha/budget', 'PUT', { gpuHours: 1, rolloverCapGpuHours: 1e-9 }, 'rolloverCapGpuHours rounds to 0 GPU-ms; the smallest amount other than 0 is 0.000000278 GPU-h (1 GPU-ms)'],
    ['/users/bob/quota', 'PUT', { daily: { gpuHours: 1e-8 } }, 'gpuHours rounds to 0 GPU-ms; the smallest amount other than 0 is 0.000000278 GPU-h (1 GPU-ms)'],
    ['/projects/alpha/budget', 'PUT', { gpuHours: 1, reason: 'oops\u0000' }, 'reason contains a control character (U+0000) at character 5; control characters, bidirectional overrides and unpaired surrogates are not accepted'],
  ])('%s %s with %j: 400 saying why, nothing changed', async (path, method, body, message) => {
    const before = await t.budgets.quota('bob');
    expect(await call(method, `/api/v1${path}`, body)).toEqual({ status: 400, body: { error: { status: 400, message } } });
    expect(await t.budgets.quota('bob')).toEqual(before);
    expect((await t.budgets.get('alpha'))!.limitGpuMs).toBe(hoursToGpuMs(1));
  });

  it('accepts the smallest amount other than 0 as exactly 1 GPU-ms', async () => {
    const r = await call('POST', '/api/v1/projects/alpha/budget/adjust', { gpuHours: 0.000000278 });
    expect(r.status).toBe(200);
    expect((await t.budgets.get('alpha'))!.adjustGpuMs).toBe(1);
    expect((await call('POST', '/api/v1/projects/alpha/budget/adjust', { gpuHours: -0.000000278 })).status).toBe(200);
    expect((await t.budgets.get('alpha'))!.adjustGpuMs).toBe(0);
  });

  it('shows an effective limit of exactly -1 GPU-ms as that, not as no limit', async () => {
    // Budget 1 GPU-ms, adjusted by -2 GPU-ms: the scope script once answered -1 for "no limit".
    expect((await call('PUT', '/api/v1/projects/minus/budget', { gpuHours: 0.000000278 })).status).toBe(200);
    expect((await call('POST', '/api/v1/projects/minus/budget/adjust', { gpuHours: -0.000000556 })).status).toBe(200);
    const v = (await t.budgets.get('minus'))!;
    expect([v.limitGpuMs, v.adjustGpuMs, v.effectiveLimitGpuMs, v.ceilingGpuMs, v.remainingGpuMs]).toEqual([1, -2, -1, -1, -1]);
  });

  it('lets viewers read but not change exempt job types', async () => {
    expect((await call('PUT', '/api/v1/exempt-job-types/draft', undefined, viewerAuth)).status).toBe(403);
    expect((await call('PUT', '/api/v1/exempt-job-types/draft', { reason: 'drafts are free' })).body).toEqual({ jobTypes: ['draft'] });
    expect((await call('GET', '/api/v1/exempt-job-types', undefined, viewerAuth)).body).toEqual({ jobTypes: ['draft'] });
    expect((await call('DELETE', '/api/v1/exempt-job-types/draft')).body).toEqual({ jobTypes: [] });
  });

  it('rejects a bad project name', async () => {
    const r = await call('PUT', '/api/v1/projects/bad%20name/budget', { gpuHours: 1 });
    expect(r.status).toBe(400);
    expect(r.body).toEqual({ error: { status: 400, message: 'project must be 1-128 characters of A-Z a-z 0-9 . _ -' } });
  });

  it.each([
    ['no token', {}],
    ['a wrong token', { authorization: 'Bearer not-the-token' }],
    ['a malformed header', { authorization: token }],
  ])('answers 401 with %s and changes nothing', async (_name, headers) => {
    const r = await call('PUT', '/api/v1/projects/alpha/budget', { gpuHours: 999 }, headers);
    expect(r.status).toBe(401);
    expect((r.body.error as { message: string }).message).toMatch(/token/);
    expect((await t.budgets.get('alpha'))!.limitGpuMs).toBe(hoursToGpuMs(1));
  });

  it('answers unknown routes with a JSON 404 and reports health', async () => {
    expect((await call('GET', '/api/v1/nope')).status).toBe(404);
    expect(await call('GET', '/healthz', undefined, {})).toEqual({ status: 200, body: { redis: true, postgres: true } });
  });

  it('serves Bull Board at /admin/queues behind the token, listing intake, exec and held', async () => {
    const page = await fetch(`${base}/admin/queues`);
    expect(page.status).toBe(401);
    expect(page.headers.get('www-authenticate')).toMatch(/^Basic/);

    const basic = { authorization: `Basic ${Buffer.from(`ops:${token}`).toString('base64')}` };
    const html = await fetch(`${base}/admin/queues`, { headers: basic });
    expect(html.status).toBe(200);
    expect(await html.text()).toContain('<html');

    const queuesAs = async (tok: string) => {
      const list = await fetch(`${base}/admin/queues/api/queues`, { headers: { authorization: `Basic ${Buffer.from(`u:${tok}`).toString('base64')}` } });
      const body = (await list.json()) as { queues: { name: string; readOnlyMode: boolean }[] };
      return Object.fromEntries(body.queues.map((q) => [q.name, q.readOnlyMode]));
    };
    const { intake, exec, held: heldQ, rejected } = t.config.queues;
    // Admins may act on intake only (Retry/Promote there mean "try admission again").
    expect(await queuesAs(token)).toEqual({ [intake]: false, [exec]: true, [heldQ]: true, [rejected]: true });
    expect(await queuesAs(viewerToken)).toEqual({ [intake]: true, [exec]: true, [heldQ]: true, [rejected]: true });

    const wrong = { authorization: `Basic ${Buffer.from('ops:guess').toString('base64')}` };
    expect((await fetch(`${base}/admin/queues/api/queues`, { headers: wrong })).status).toBe(401);
  });
});

/**
 * The event bus end to end (real Redis and Postgres, a local HTTP server
 * receiving webhooks): thresholds fire once per crossing however many jobs
 * race across them, and again after a period reset; every event type lands
 * in Postgres in its documented shape; alerts are listed and acknowledged;
 * webhooks get signed deliveries, and one that never answers does not slow
 * admission.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import { Queue } from 'bullmq';
import { listen, urlOf } from './support/http.ts';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { createGatekeeper, type Gatekeeper } from '../workers/gatekeeper.ts';
import { createWebhookDelivery } from '../workers/webhook-delivery.ts';
import { createScheduler } from '../workers/scheduler.ts';
import { EventStore } from '../src/events/store.ts';
import { createWebhook } from '../src/events/webhooks.ts';
import { createApp } from '../src/api/app.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { SYSTEM } from '../src/accounting/budgets.ts';
import { hoursToGpuMs } from '../src/units.ts';

const H = hoursToGpuMs(1);
let t: TestEnv;
let gatekeepers: Gatekeeper[] = [];
let intake: Queue;
let store: EventStore;

interface Row { id: number; type: string; data: Record<string, unknown> }
async function events(type?: string): Promise<Row[]> {
  // Drain what the stream holds into Postgres first.
  while ((await store.drainOnce()) > 0);
  const r = await t.pool.query(`SELECT id, type, data FROM events ${type ? 'WHERE type = $1' : ''} ORDER BY id`, type ? [type] : []);
  return r.rows.map((x) => ({ ...x, id: Number(x.id) }));
}

async function submit(n: number, data: Record<string, unknown>): Promise<void> {
  const jobs = await intake.addBulk(Array.from({ length: n }, () => ({ name: 'job', data })));
  await eventually(() => Promise.all(jobs.map(async (j) => (await j.isCompleted()) || (await j.isFailed()))), (done) => done.every(Boolean));
}

beforeAll(async () => {
  // The webhook receivers below listen on loopback.
  t = await createTestEnv({ WEBHOOK_ALLOWED_TARGETS: '127.0.0.1/32' });
  intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
  // Four gatekeepers race on the same intake queue.
  gatekeepers = [0, 1, 2, 3].map(() => createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.connection(), log: t.log, clock: t.clock }));
  store = new EventStore(t.connection(), t.accounting.keys.events, t.pool, t.config, t.log);
});
afterAll(async () => {
  await Promise.all(gatekeepers.map((g) => g.close()));
  await store?.stop();
  await intake?.close();
  await t?.close();
});

describe('thresholds', () => {
  it('fire once per crossing however many jobs race across, and again after a reset', async () => {
    t.clock.t = Date.parse('2026-11-10T12:00:00Z');
    await t.budgets.set('thr', 1000 * H, SYSTEM, null, { period: 'month' });
    await submit(1, { project: 'thr', user: 'big', estimatedGpuHours: 700 }); // 70 %
    expect(await events('THRESHOLD_CROSSED')).toEqual([]);

    await submit(200, { project: 'thr', user: 'many', estimatedGpuHours: 0.5 }); // 200 jobs race to 80 %
    const at75 = await events('THRESHOLD_CROSSED');
    expect(at75).toHaveLength(1);
    expect(at75[0]!.data).toMatchObject({ scope: 'project:thr', counterId: 'project:thr@2026-11', thresholdPercent: 75, limitGpuHours: 1000 });
    // The numbers are those right after the crossing job: at least 75 %, and exact.
    const d = at75[0]!.data as { usedGpuMs: number; reservedGpuMs: number; limitGpuMs: number; remainingGpuMs: number };
    expect(d.usedGpuMs + d.reservedGpuMs).toBeGreaterThanOrEqual(750 * H);
    expect(d.usedGpuMs + d.reservedGpuMs).toBeLessThan(750 * H + H / 2 + 1);
    expect(d.remainingGpuMs).toBe(d.limitGpuMs - d.usedGpuMs - d.reservedGpuMs);

    await submit(1, { project: 'thr', user: 'big', estimatedGpuHours: 110 }); // 91 %
    await submit(1, { project: 'thr', user: 'big', estimatedGpuHours: 90 }); // 100 %
    await submit(3, { project: 'thr', user: 'late', estimatedGpuHours: 1 }); // held at the hard limit
    expect((await events('THRESHOLD_CROSSED')).map((e) => e.data.thresholdPercent)).toEqual([75, 90, 100]);
    expect(await events('BUDGET_EXHAUSTED')).toHaveLength(1);

    // A new month: the scheduler lets the held jobs in first, then the same crossings fire again.
    t.clock.t = Date.parse('2026-12-01T00:00:00Z');
    expect(await createScheduler({ config: t.config, connection: t.redis, pool: t.pool, log: t.log, clock: t.clock }).runBoundary()).toMatchObject({ admitted: 3 });
    await submit(1, { project: 'thr', user: 'big', estimatedGpuHours: 800 });
    const all = await events('THRESHOLD_CROSSED');
    expect(all.map((e) => [e.data.counterId, e.data.thresholdPercent])).toEqual([
      ['project:thr@2026-11', 75], ['project:thr@2026-11', 90], ['project:thr@2026-11', 100], ['project:thr@2026-12', 75],
    ]);
  });

  it('re-arm when an admin raises the limit back above them', async () => {
    t.clock.t = Date.parse('2026-12-02T00:00:00Z');
    await t.budgets.setQuota('rita', { daily: { limitGpuMs: 4 * H, thresholds: [50] } }, SYSTEM, null);
    await t.budgets.set('rita-p', 100 * H);
    await submit(2, { project: 'rita-p', user: 'rita', estimatedGpuHours: 1 }); // 50 % of her day
    await t.budgets.setQuota('rita', { daily: { limitGpuMs: 8 * H } }, SYSTEM, null); // now 25 %: re-armed
    await submit(2, { project: 'rita-p', user: 'rita', estimatedGpuHours: 1 }); // 50 % again
    expect((await events('THRESHOLD_CROSSED')).filter((e) => e.data.scope === 'user-day:rita').map((e) => e.data.limitGpuHours)).toEqual([4, 8]);
  });
});

describe('every event type', () => {
  it('lands in Postgres in its documented shape, and alerts can be listed and acknowledged', async () => {
    t.clock.t = Date.parse('2026-12-03T10:00:00Z');
    await t.budgets.set('ev', 1 * H, { name: 'ops-ann', role: 'admin' }, 'pilot');
    await submit(2, { project: 'ev', user: 'eve', estimatedGpuHours: 1, jobType: 'render' }); // one held
    await submit(1, { project: 'ev', user: 'eve', estimatedGpuHours: -1 }); // rejected
    const held = new HeldJobs(t.config, t.redis, t.pool, t.clock, t.log);
    const [heldId] = await t.accounting.heldIds('ev');
    await held.override(heldId!, { name: 'ops-ann', role: 'admin' }, 'demo');
    await held.close();
    await createScheduler({ config: t.config, connection: t.redis, pool: t.pool, log: t.log, clock: t.clock }).tick();

    const byType = Object.fromEntries((await events()).map((e) => [e.type, e.data]));
    expect(byType.BUDGET_CHANGED).toBeDefined();
    expect((await events('BUDGET_CHANGED')).find((e) => e.data.scope === 'project:ev')!.data).toEqual({
      scope: 'project:ev', action: 'budget.set', before: null, after: { limitGpuHours: 1, policy: 'hard', period: 'none' }, by: 'ops-ann', reason: 'pilot',
    });
    expect((await events('JOB_HELD')).find((e) => e.data.jobId === heldId)!.data).toEqual({
      jobId: heldId, project: 'ev', user: 'eve', jobType: 'render', estimatedGpuHours: 1,
      reason: 'project ev: 1.0 of 1.0 GPU-h used or reserved; job needs 1.0',
    });
    expect((await events('JOB_REJECTED')).at(-1)!.data).toMatchObject({ project: 'ev', user: 'eve', by: 'gatekeeper', reason: 'invalid job: estimatedGpuHours must be greater than 0' });
    expect((await events('JOB_OVERRIDDEN'))[0]!.data).toEqual({
      jobId: heldId, project: 'ev', user: 'eve', reservedGpuHours: 1, by: 'override by ops-ann: demo',
      // At the built-in rate (one unit, no dollars an hour).
      charged: { gpuHours: 1, units: 1, usd: 0 },
    });
    expect((await events('QUOTA_RESET')).at(-1)!.data).toMatchObject({ periods: ['day'], labels: { day: '2026-12-03', week: 'W2026-11-30', month: '2026-12' } });

    // Alerts over HTTP: list, acknowledge once, 404 and 409 after.
    const admin = 'test-admin-token-0123456789';
    const app = createApp({ budgets: t.budgets, held: new HeldJobs(t.config, t.redis, t.pool, t.clock, t.log), redis: t.redis, pool: t.pool, log: t.log, tokens: { admin, viewer: undefined } });
    const server = await listen(app);
    const base = `${urlOf(server)}/api/v1`;
    const call = async (method: string, path: string, body?: unknown) => {
      const res = await fetch(base + path, { method, headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json', 'x-gatekeeper-actor': 'ops-ann' }, body: body ? JSON.stringify(body) : undefined });
      return { status: res.status, body: (await res.json()) as Record<string, any> };
    };
    try {
      const alerts = (await events()).filter((e) => e.type === 'THRESHOLD_CROSSED' || e.type === 'BUDGET_EXHAUSTED');
      const list = await call('GET', '/alerts?type=THRESHOLD_CROSSED,BUDGET_EXHAUSTED&unacked=true&limit=2');
      expect(list.status).toBe(200);
      expect(list.body.total).toBe(alerts.length);
      expect(list.body.alerts.map((a: { id: number }) => a.id)).toEqual(alerts.slice(-2).reverse().map((a) => a.id));
      const id = list.body.alerts[0].id;
      expect(await call('POST', `/alerts/${id}/ack`, { note: 'seen' })).toMatchObject({ status: 200, body: { id, ackedBy: 'ops-ann' } });
      expect((await call('POST', `/alerts/${id}/ack`)).status).toBe(409);
      expect((await call('POST', '/alerts/999999/ack')).status).toBe(404);
      expect((await call('GET', '/alerts?type=NOPE')).body).toEqual({ error: { status: 400, message: expect.stringMatching(/^type must be one or more of THRESHOLD_CROSSED/) } });
      expect((await call('GET', '/alerts?unacked=true&type=THRESHOLD_CROSSED,BUDGET_EXHAUSTED')).body.total).toBe(alerts.length - 1);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe('webhooks', () => {
  it('receive signed events; one that never answers does not hold up admission', async () => {
    const received: { at: number; body: string; signature: string }[] = [];
    const good = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        received.push({ at: Date.now(), body, signature: String(req.headers['x-gatekeeper-signature']) });
        res.end('ok');
      });
    });
    const hanging = http.createServer(() => {}); // accepts, never answers
    await Promise.all([good, hanging].map((s) => new Promise<void>((r) => s.listen(0, '127.0.0.1', r))));
    const url = (s: http.Server) => `${urlOf(s)}/hook`;
    const hook = await createWebhook(t.pool, { url: url(good), types: ['THRESHOLD_CROSSED'] }, t.config);
    const stuck = await createWebhook(t.pool, { url: url(hanging), types: [] }, t.config);
    const delivery = createWebhookDelivery({ config: t.config, workerConnection: t.connection(), pool: t.pool, log: t.log });
    await store.start();
    try {
      t.clock.t = Date.parse('2026-12-04T10:00:00Z');
      await t.budgets.set('hook', 4 * H);
      // The budget change goes to the hanging webhook first; its request is stuck.
      const deliveries = new Queue(t.config.queues.webhooks, { connection: t.redis, prefix: t.config.queuePrefix });
      const stuckJobs = async () => (await deliveries.getJobs(['active'])).filter((j) => j.data.webhookId === stuck.id);
      await eventually(stuckJobs, (j) => j.length > 0, 5_000);
      await submit(3, { project: 'hook', user: 'hank', estimatedGpuHours: 1 }); // 75 %
      // All three were admitted while that delivery was still waiting for an answer.
      expect((await stuckJobs()).length).toBeGreaterThan(0);
      await deliveries.close();
      const got = await eventually(async () => received, (r) => r.length === 1, 5_000);
      const event = JSON.parse(got[0]!.body) as { type: string; data: { scope: string; thresholdPercent: number } };
      expect(event).toMatchObject({ type: 'THRESHOLD_CROSSED', version: 1, data: { scope: 'project:hook', thresholdPercent: 75 } });
      // The recipe: HMAC-SHA256(secret, t + "." + body), hex, compared in constant time.
      const [, ts, v1] = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(got[0]!.signature)!;
      const mac = createHmac('sha256', hook.secret).update(`${ts}.${got[0]!.body}`).digest();
      expect(timingSafeEqual(mac, Buffer.from(v1!, 'hex'))).toBe(true);
    } finally {
      // Servers first: the hanging request then ends at once instead of at its timeout.
      await Promise.all([good, hanging].map((s) => new Promise((r) => { s.closeAllConnections(); s.close(r); })));
      await delivery.close();
    }
  });
});

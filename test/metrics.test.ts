/**
 * /metrics after a known sequence of jobs (real Redis and Postgres, the
 * gatekeeper, a simulated GPU worker, the reconciler, the event store and a
 * webhook, all in this process): admissions by outcome, held jobs by
 * project, used / reserved / limit per scope, latency and settlement-lag
 * histograms, webhook deliveries, process metrics; behind the token.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { Queue } from 'bullmq';
import { listen, urlOf } from './support/http.ts';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { createApp } from '../src/api/app.ts';
import { GpuCaps } from '../src/accounting/gpu-caps.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { Metrics } from '../src/metrics.ts';
import { EventStore } from '../src/events/store.ts';
import { createWebhook } from '../src/events/webhooks.ts';
import { systemClock } from '../src/clock.ts';
import { createGatekeeper } from '../workers/gatekeeper.ts';
import { createReconciler } from '../workers/reconciler.ts';
import { createGpuSim } from '../workers/gpu-sim.ts';
import { createWebhookDelivery } from '../workers/webhook-delivery.ts';
import { hoursToGpuMs } from '../src/units.ts';

const viewer = 'test-viewer-token-0123456789';
let t: TestEnv;
const closers: (() => Promise<unknown>)[] = [];
let base: string;

beforeAll(async () => {
  t = await createTestEnv({ RECONCILE_INTERVAL_MS: '50', WEBHOOK_ALLOWED_TARGETS: '127.0.0.1/32' }, { liveClock: true });
});
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  await t?.close();
});

/** The value of one series in Prometheus' text format (undefined if absent). */
function value(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('/metrics', () => {
  it('exposes the named series with the right values after a known sequence of jobs', async () => {
    const metrics = new Metrics();
    const hookServer = http.createServer((req, res) => req.resume().on('end', () => res.end('ok')));
    await new Promise<void>((r) => hookServer.listen(0, '127.0.0.1', r));
    closers.push(() => new Promise((r) => hookServer.close(r)));
    await createWebhook(t.pool, { url: `${urlOf(hookServer)}/`, types: ['THRESHOLD_CROSSED'] }, t.config);

    const gk = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: systemClock, metrics });
    const rec = createReconciler({ config: t.config, connection: t.redis, log: t.log, clock: systemClock, metrics });
    rec.start();
    const store = new EventStore(t.connection(), t.accounting.keys.events, t.pool, t.config, t.log, { blockMs: 50 });
    await store.start();
    const delivery = createWebhookDelivery({ config: t.config, workerConnection: t.connection(), pool: t.pool, log: t.log, onResult: (o) => metrics.webhookDeliveries.inc({ outcome: o }) });
    const held = new HeldJobs(t.config, t.redis, t.pool, systemClock, t.log);
    const caps = new GpuCaps(t.pool, t.accounting, systemClock);
    metrics.watchState(t.accounting, t.budgets, undefined, caps);
    const app = createApp({ metrics, budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin: 'test-admin-token-0123456789', viewer } });
    const server = await listen(app);
    base = `${urlOf(server)}`;
    closers.push(() => gk.close(), () => rec.close(), () => store.stop(), () => delivery.close(), () => held.close(), () => new Promise((r) => server.close(r)));

    await t.budgets.set('met', hoursToGpuMs(3));
    await caps.set('gpus-project:met', { maxGpus: 10, peak: null, release: 'auto' }, { name: 'ops', role: 'admin' }, null);
    const intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
    closers.push(() => intake.close());
    const added = await intake.addBulk([
      ...Array.from({ length: 5 }, (_, i) => ({ name: `j${i}`, data: { project: 'met', user: 'mo', estimatedGpuHours: 1, payload: { simulate: { durationMs: 5, gpuHours: 0.5 } } } })),
      { name: 'bad', data: { project: 'met', user: 'mo', estimatedGpuHours: 'lots' } },
    ]);
    // Every job decided before any runs: three admitted (crossing 75, 90 and 100 % of the 3 hours), two held, one rejected.
    // (A job settled at half its estimate before the third was decided would leave 90 and 100 % uncrossed.)
    await eventually(() => Promise.all(added.map((j) => j.getState())), (states) => states.every((s) => s === 'completed' || s === 'failed'));
    const sim = createGpuSim({ config: t.config, workerConnection: t.connection(), log: t.log });
    closers.push(() => sim.close());
    await eventually(() => t.budgets.get('met'), (b) => b!.usedGpuMs === hoursToGpuMs(1.5) && b!.reservedGpuMs === 0);

    const scrape = async (token?: string) => {
      const res = await fetch(`${base}/metrics`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
      return { status: res.status, text: await res.text() };
    };
    expect((await scrape()).status).toBe(401);
    const text = await eventually(async () => (await scrape(viewer)).text, (s) => value(s, 'gatekeeper_webhook_deliveries_total{outcome="delivered"}') === 3);
    expect(value(text, 'gatekeeper_admissions_total{outcome="admitted"}')).toBe(3);
    expect(value(text, 'gatekeeper_admissions_total{outcome="held"}')).toBe(2);
    expect(value(text, 'gatekeeper_admissions_total{outcome="rejected"}')).toBe(1);
    expect(value(text, 'gatekeeper_held_jobs{project="met"}')).toBe(2);
    expect(value(text, 'gatekeeper_scope_used_gpu_hours{scope="project:met",period="none"}')).toBe(1.5);
    expect(value(text, 'gatekeeper_scope_reserved_gpu_hours{scope="project:met",period="none"}')).toBe(0);
    expect(value(text, 'gatekeeper_scope_limit_gpu_hours{scope="project:met",period="none"}')).toBe(3);
    expect(value(text, 'gatekeeper_admission_latency_seconds_count')).toBe(5);
    expect(value(text, 'gatekeeper_settlement_lag_seconds_count')).toBe(3);
    expect(value(text, 'process_cpu_seconds_total')).toBeGreaterThan(0);
    // Every job ended: its GPUs are back.
    expect(value(text, 'gatekeeper_gpu_cap{scope="gpus-project:met"}')).toBe(10);
    expect(value(text, 'gatekeeper_gpus_in_flight{scope="gpus-project:met"}')).toBe(0);

    // Signalled for a waker (none runs here): project met's line (the jobs ran for half their estimate) and its GPU cap (signalled when set).
    expect(value(text, 'gatekeeper_wake_signals_pending')).toBe(2);
    // Releasing now admits one of the two held.
    await held.release({ project: 'met' }, { name: 'ops', role: 'admin' });
    expect(value((await scrape(viewer)).text, 'gatekeeper_held_jobs{project="met"}')).toBe(1);
  });
});

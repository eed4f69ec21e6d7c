/**
 * The dashboard in a real browser (Debian's Chromium through playwright-core)
 * against the running app, real Redis and Postgres: the bars show what the
 * API reports, an admin releases a held job with the button and it reaches
 * gpu-exec, a viewer sees no buttons. Screenshots go to test-artifacts/.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync } from 'node:fs';
import { Queue } from 'bullmq';
import { chromium, type Browser } from 'playwright-core';
import { listen, urlOf } from './support/http.ts';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { createApp } from '../src/api/app.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { SYSTEM } from '../src/accounting/budgets.ts';
import { systemClock } from '../src/clock.ts';
import { startPipeline } from './support/pipeline.ts';
import { hoursToGpuMs } from '../src/units.ts';

const CHROMIUM = '/usr/bin/chromium';
const admin = 'test-admin-token-0123456789';
const viewer = 'test-viewer-token-0123456789';
let t: TestEnv;
let browser: Browser;
let base: string;
let exec: Queue;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  t = await createTestEnv({ RECONCILE_INTERVAL_MS: '50' }, { liveClock: true });
  const q = (name: string) => new Queue(name, { connection: t.redis, prefix: t.config.queuePrefix });
  const queues = { intake: q(t.config.queues.intake), exec: q(t.config.queues.exec), held: q(t.config.queues.held), rejected: q(t.config.queues.rejected) };
  exec = queues.exec;
  const held = new HeldJobs(t.config, t.redis, t.pool, systemClock, t.log);
  const pipeline = await startPipeline(t);
  const app = createApp({ config: t.config, accounting: t.accounting, intake: queues.intake, budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin, viewer }, boardQueues: queues });
  const server = await listen(app);
  base = `${urlOf(server)}`;
  closers.push(() => pipeline.close(), () => held.close(), () => new Promise((r) => server.close(r)), ...Object.values(queues).map((x) => () => x.close()));

  await t.budgets.set('alpha', hoursToGpuMs(4), SYSTEM, null, { period: 'month' });
  await t.budgets.setQuota('ana', { daily: { limitGpuMs: hoursToGpuMs(10) } }, SYSTEM, null);
  await t.budgets.setExempt('regression-test', true, SYSTEM, null);
  const sim1 = { simulate: { durationMs: 10, gpuHours: 0.5 } };
  await queues.intake.addBulk([
    ...Array.from({ length: 6 }, (_, i) => ({ name: `r${i}`, data: { project: 'alpha', user: 'ana', estimatedGpuHours: 1, payload: sim1 } })),
    { name: 'rt', data: { project: 'alpha', user: 'ana', estimatedGpuHours: 2, jobType: 'regression-test', payload: sim1 } },
  ]);
  await eventually(() => t.budgets.get('alpha'), (b) => b!.usedGpuMs === hoursToGpuMs(2) && b!.reservedGpuMs === 0 && b!.exemptUsedGpuMs === hoursToGpuMs(0.5));
  await eventually(() => t.pool.query('SELECT count(*)::int AS n FROM ledger WHERE kind <> $1', ['reserve']), (r) => r.rows[0].n === 5);

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
  mkdirSync('test-artifacts', { recursive: true });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  for (const c of closers.reverse()) await c();
  await t?.close();
});

async function open(token: string, user: string) {
  const context = await browser.newContext({ httpCredentials: { username: user, password: token }, viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${base}/dashboard`);
  return { context, page };
}

describe('dashboard', () => {
  it('shows the numbers the API reports, and an admin releases a held job with the button', async () => {
    const { context, page } = await open(admin, 'ops-alice');
    try {
      const api = (await (await fetch(`${base}/api/v1/projects/alpha/budget`, { headers: { authorization: `Bearer ${viewer}` } })).json()) as Record<string, number>;
      const card = page.locator('article[data-scope="project:alpha"]');
      const shown = async (cls: string) => Number(await card.locator(`.numbers .${cls}`).getAttribute('data-gpu-hours'));
      expect({ used: await shown('used'), reserved: await shown('reserved'), limit: await shown('limit'), remaining: await shown('remaining'), exempt: await shown('exempt') }).toEqual({
        used: api.usedGpuHours, reserved: api.reservedGpuHours, limit: api.effectiveLimitGpuHours, remaining: api.remainingGpuHours,
        exempt: api.exemptUsedGpuHours! + api.exemptReservedGpuHours!,
      });
      expect(await card.locator('.bar .used').getAttribute('style')).toBe('width:50.00%');
      expect(await card.locator('.mark').count()).toBe(3);
      // The sentence for this card's numbers, whichever it is at this hour (rate from today's pace after 1 a.m.).
      expect(await card.locator('.projection').textContent()).toMatch(/^(At the current rate, project alpha's budget runs out|Not at the current rate: (nothing used|project alpha's budget lasts))/);
      expect(await page.locator('article[data-scope="user-day:ana"]').count()).toBe(1);
      expect(await page.locator('#history tbody tr').first().textContent()).toMatch(/alpha/);

      const rows = page.locator('#held tbody tr[data-job]');
      expect(await rows.count()).toBe(2);
      await page.screenshot({ path: 'test-artifacts/dashboard-admin.png', fullPage: true });

      // Raise the budget, then release the oldest held job with its button.
      await fetch(`${base}/api/v1/projects/alpha/budget`, { method: 'PUT', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: JSON.stringify({ gpuHours: 5 }) });
      const id = (await rows.first().getAttribute('data-job'))!;
      await rows.first().locator('button[data-action="release"]').click();
      await page.locator('#msg', { hasText: `Released job ${id}.` }).waitFor();
      await eventually(() => exec.getJob(`intake-${id}`), (j) => j !== undefined);
      const audit = await t.pool.query(`SELECT actor FROM audit WHERE action = 'held.release' ORDER BY id DESC LIMIT 1`);
      expect(audit.rows[0].actor).toBe('ops-alice');
      await page.waitForLoadState('load');
      await eventually(async () => page.locator('#held tbody tr[data-job]').count(), (n) => n === 1);
    } finally {
      await context.close();
    }
  });

  it('shows a viewer no buttons', async () => {
    const { context, page } = await open(viewer, 'dev-bob');
    try {
      expect(await page.locator('#held tbody tr[data-job]').count()).toBe(1);
      expect(await page.locator('button').count()).toBe(0);
      await page.screenshot({ path: 'test-artifacts/dashboard-viewer.png', fullPage: true });
    } finally {
      await context.close();
    }
  });

  it('asks a browser without a token to log in', async () => {
    const res = await fetch(`${base}/dashboard`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toMatch(/^Basic/);
  });
});

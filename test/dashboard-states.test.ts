/**
 * The dashboard renders every state the API lets a user reach (real Redis and
 * Postgres, the page over HTTP): fast-check builds budgets and quotas the way
 * admins and jobs do — limits of 0, of 1 GPU-ms and of a billion hours, no
 * limit at all, adjustments that take more than the limit, jobs held, running,
 * settled above their estimate, overridden past the limit — then asks for
 * /dashboard. It must answer 200, and every card must show the numbers the
 * test worked out from what it did (not from the code's own views). Run caps
 * and GPU type budgets get cards of their own; a last test holds 2,000 jobs.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Server } from 'node:http';
import { listen, urlOf } from './support/http.ts';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { createApp } from '../src/api/app.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { SYSTEM } from '../src/accounting/budgets.ts';
import { unlinkMatching } from '../src/redis/unlink.ts';
import { MAX_BUDGET_GPU_HOURS } from '../src/api/budgets.ts';
import { Queue } from 'bullmq';
import { createGatekeeper } from '../workers/gatekeeper.ts';

const admin = 'test-admin-token-0123456789';
const H = 3_600_000; // GPU-ms per GPU hour
let t: TestEnv;
let server: Server;
let base: string;
let held: HeldJobs;

beforeAll(async () => {
  t = await createTestEnv();
  held = new HeldJobs(t.config, t.redis, t.pool, t.clock, t.log);
  const app = createApp({ config: t.config, accounting: t.accounting, budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin }, clock: t.clock });
  server = await listen(app);
  base = urlOf(server);
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await held?.close();
  await t?.close();
});

async function reset(): Promise<void> {
  await t.pool.query('TRUNCATE limits, audit, events, period_carries, period_adjustments');
  await unlinkMatching(t.redis, `${t.accounting.keys.prefix}*`);
}

/** The card of `scope` on the page: its numbers as drawn (data-gpu-hours), and its bar widths. */
function card(html: string, scope: string) {
  const start = html.indexOf(`<article class="scope" data-scope="${scope}">`);
  expect(start, `no card for ${scope}`).toBeGreaterThanOrEqual(0);
  const art = html.slice(start, html.indexOf('</article>', start));
  const num = (cls: string) => {
    const m = new RegExp(`class="${cls}" data-gpu-hours="([^"]*)"`).exec(art);
    return m ? (m[1] === '' ? null : Number(m[1])) : undefined;
  };
  const widths = [...art.matchAll(/width:([-\d.]+)%/g)].map((m) => Number(m[1]));
  return { used: num('used'), reserved: num('reserved'), limit: num('limit'), remaining: num('remaining'), widths };
}

// Limits in GPU-ms: the edges the API accepts, and ordinary ones.
const limitMs = fc.oneof(fc.constant(0), fc.constant(1), fc.constant(MAX_BUDGET_GPU_HOURS * H), fc.integer({ min: 1, max: 1000 * H }));
const jobArb = fc.record({
  estimateMs: fc.integer({ min: 1, max: 50 * H }),
  // null: still running; a number: settled with that actual (may be far above the estimate).
  actualMs: fc.option(fc.integer({ min: 0, max: 500 * H }), { nil: null }),
  override: fc.boolean(),
});
const projectArb = fc.record({
  limitMs,
  period: fc.constantFrom('none', 'week', 'month') as fc.Arbitrary<'none' | 'week' | 'month'>,
  soft: fc.boolean(),
  thresholds: fc.constantFrom<number[] | null>(null, [], [1], [50, 100, 1000]),
  // Adjustments may take more than the limit: the effective limit goes below zero.
  adjustMs: fc.option(fc.integer({ min: -2000 * H, max: 1000 * H }).filter((n) => n !== 0), { nil: null }),
  jobs: fc.array(jobArb, { maxLength: 5 }),
});
const quotaArb = fc.option(fc.record({ dailyMs: fc.option(limitMs, { nil: null }), weeklyMs: fc.option(limitMs, { nil: null }) }), { nil: null });

describe('dashboard states', () => {
  it('answers 200 with the right numbers for any reachable state', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(projectArb, { minLength: 1, maxLength: 4 }), quotaArb, async (projects, quota) => {
        await reset();
        const now = t.clock.now();
        const expected = new Map<string, { used: number; reserved: number; limit: number | null }>();
        let n = 0;
        let heldJobs = 0;
        for (const [i, p] of projects.entries()) {
          const name = `p${i}`;
          await t.budgets.set(name, p.limitMs, SYSTEM, null, { period: p.period, policy: p.soft ? 'soft' : 'hard', thresholds: p.thresholds });
          if (p.adjustMs !== null) await t.budgets.adjust(name, p.adjustMs, SYSTEM, null);
          const limit = p.limitMs + (p.adjustMs ?? 0);
          let used = 0;
          let reserved = 0;
          for (const j of p.jobs) {
            const id = `j${++n}`;
            const out = await t.accounting.reserve(id, j.estimateMs, [`project:${name}`, 'user-day:ana', 'user-week:ana'], { project: name, user: 'ana', gpus: 1 }, now);
            let admitted = out.kind === 'reserved';
            if (!admitted && j.override) admitted = (await t.accounting.release([id], 'override', 'test', now))[0]!.kind === 'admitted';
            if (!admitted) {
              heldJobs++;
              continue;
            }
            if (j.actualMs === null) reserved += j.estimateMs;
            else {
              const scopes = (await t.accounting.reservation(id))!.scopes;
              await t.accounting.settle(id, scopes, j.actualMs, 'settle', now);
              used += j.actualMs;
            }
          }
          expected.set(`project:${name}`, { used, reserved, limit });
        }
        if (quota) await t.budgets.setQuota('ana', { daily: quota.dailyMs === null ? null : { limitGpuMs: quota.dailyMs }, weekly: quota.weeklyMs === null ? null : { limitGpuMs: quota.weeklyMs } }, SYSTEM, null);

        const res = await fetch(`${base}/dashboard`, { headers: { authorization: `Bearer ${admin}` } });
        const html = await res.text();
        expect(res.status, html.slice(0, 300)).toBe(200);
        expect(html).not.toMatch(/NaN|Infinity|undefined/);
        for (const [scope, e] of expected) {
          const c = card(html, scope);
          expect({ used: c.used, reserved: c.reserved, limit: c.limit, remaining: c.remaining }).toEqual({
            used: e.used / H, reserved: e.reserved / H, limit: e.limit === null ? null : e.limit / H, remaining: e.limit === null ? null : (e.limit - e.used - e.reserved) / H,
          });
          for (const w of c.widths) expect(w).toBeGreaterThanOrEqual(0);
          for (const w of c.widths) expect(w).toBeLessThanOrEqual(100);
        }
        expect(html).toContain(`<h2>Held jobs (${heldJobs})</h2>`);
      }),
      { numRuns: 40 },
    );
  });

  it("shows run caps and projects' GPU type budgets as cards of their own, with their numbers", async () => {
    await reset();
    const now = t.clock.now();
    await t.budgets.set('tb', 100 * H, SYSTEM, null);
    await t.budgets.setTypeBudget('tb', 'h100', { limitGpuMs: 2 * H, period: 'month' }, SYSTEM, null);
    await t.budgets.setRunCap('tb', 'r1', { limitGpuMs: 5 * H }, SYSTEM, null);
    const meta = { project: 'tb', user: 'ana', gpus: 1, gpuType: 'h100', run: 'r1' };
    const scopes = ['project:tb', 'user-day:ana', 'user-week:ana', 'run:tb/r1', 'project-type:tb/h100'];
    await t.accounting.reserve('tb1', 1.5 * H, scopes, meta, now);
    const res = await fetch(`${base}/dashboard`, { headers: { authorization: `Bearer ${admin}` } });
    const html = await res.text();
    expect(html).toContain('<h2>Run caps</h2>');
    expect(html).toContain('<h2>GPU type budgets</h2>');
    const { widths, ...type } = card(html, 'project-type:tb/h100');
    expect(type).toEqual({ used: 0, reserved: 1.5, limit: 2, remaining: 0.5 });
    expect(widths.length).toBeGreaterThan(0);
    const { widths: _, ...run } = card(html, 'run:tb/r1');
    expect(run).toEqual({ used: 0, reserved: 1.5, limit: 5, remaining: 3.5 });
    // The search narrows them as it narrows budgets.
    // The search narrows them by name, as it narrows budgets: not by the kind's prefix ('type', 'run').
    const page = async (q: string) => (await fetch(`${base}/dashboard?q=${q}`, { headers: { authorization: `Bearer ${admin}` } })).text();
    for (const q of ['type', 'run', 'nothing-like-it']) expect(await page(q), q).not.toContain('data-scope="project-type:tb/h100"');
    expect(await page('h10')).toContain('data-scope="project-type:tb/h100"');
    expect(await page('r1')).toContain('data-scope="run:tb/r1"');
  });

  it('shows 2,000 held jobs as a count and the oldest 50 rows', async () => {
    await reset();
    await t.budgets.set('full', 0);
    let ids: string[] = [];
    // Through the gatekeeper, so each is a job on gpu-held with its reason, as the page lists them.
    const intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
    const gk = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: t.clock });
    try {
      const added = await intake.addBulk(Array.from({ length: 2000 }, () => ({ name: 'h', data: { project: 'full', user: 'ana', estimatedGpuHours: 1 } })));
      await eventually(() => t.accounting.heldIds(), (ids) => ids.length === 2000, 60_000);
      ids = added.map((j) => j.id!);
    } finally {
      await gk.close();
      await intake.close();
    }
    const res = await fetch(`${base}/dashboard`, { headers: { authorization: `Bearer ${admin}` } });
    const html = await res.text();
    expect(res.status).toBe(200);
    expect(html).toContain('<h2>Held jobs (2000)</h2>');
    expect([...html.matchAll(/<tr data-job="([^"]+)">/g)].map((m) => m[1])).toEqual(ids.slice(0, 50));
  });
});

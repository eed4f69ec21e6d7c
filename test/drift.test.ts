/**
 * The drift audit (real Redis and Postgres, the whole pipeline in this
 * process): while jobs are being admitted, run and settled, Redis and the
 * ledger agree to the GPU-ms at every audit; a hand edit to a counter, or a
 * counter Redis lost, is reported with both sides' numbers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { listen, urlOf } from './support/http.ts';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { startPipeline } from './support/pipeline.ts';
import { DriftAudit } from '../src/accounting/drift.ts';
import { SYSTEM } from '../src/accounting/budgets.ts';
import { systemClock } from '../src/clock.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { createApp } from '../src/api/app.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { EXIT, runCli } from '../src/cli/main.ts';

let t: TestEnv;
let audit: DriftAudit;
let intake: Queue;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  t = await createTestEnv({ RECONCILE_INTERVAL_MS: '20', SIM_CONCURRENCY: '16' }, { liveClock: true });
  const pipeline = await startPipeline(t);
  intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
  closers.push(() => pipeline.close(), () => intake.close());
  audit = new DriftAudit(t.redis, t.accounting, t.pool);
});
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  await t?.close();
});

describe('drift audit', () => {
  it('finds none at any moment while jobs are admitted, run and settled', async () => {
    await t.budgets.set('busy', hoursToGpuMs(150));
    await t.budgets.setQuota('zed', { daily: { limitGpuMs: hoursToGpuMs(40) } }, SYSTEM, null);
    await t.budgets.setExempt('draft', true, SYSTEM, null);
    const jobs = Array.from({ length: 300 }, (_, i) => ({
      name: 'j',
      data: {
        project: 'busy', user: i % 3 ? 'zed' : 'amy', estimatedGpuHours: 1 + (i % 3) * 0.25, ...(i % 10 === 0 ? { jobType: 'draft' } : {}),
        payload: { simulate: { durationMs: 5 + (i % 7), gpuHours: i % 4 === 0 ? 2 : 0.5 } }, // some run over their estimate
      },
    }));
    const submitting = (async () => {
      for (let i = 0; i < jobs.length; i += 20) {
        await intake.addBulk(jobs.slice(i, i + 20));
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const reports = [];
    for (let i = 0; i < 5; i++) reports.push(await audit.run());
    await submitting;
    await eventually(() => intake.getCompletedCount(), (n) => n === 300);
    await eventually(() => t.accounting.openCount(), (n) => n === 0); // every admitted job ran and was settled
    reports.push(await audit.run());
    for (const r of reports) expect(r.drift).toEqual([]);
    expect(reports.at(-1)!.counters).toBeGreaterThanOrEqual(5); // project, two users x day/week
    // The ledger really saw activity mid-run, not just at the end.
    expect(new Set(reports.map((r) => r.streamId)).size).toBeGreaterThan(2);
  });

  it('reports a hand edit and a counter Redis lost, with both sides', async () => {
    const [counter] = (await t.accounting.scopes(['project:busy'], Date.now())).map((s) => s.id);
    await t.redis.hincrby(t.accounting.keys.scope(counter!), 'reserved', 1234);
    const before = await audit.run();
    expect(before.drift).toHaveLength(1);
    const d = before.drift[0]!;
    expect(d.counter).toBe(counter);
    expect(d.redis.reservedGpuMs - d.ledger.reservedGpuMs).toBe(1234);
    expect(d.redis.usedGpuMs).toBe(d.ledger.usedGpuMs);

    const [zedDay] = (await t.accounting.scopes(['user-day:zed'], Date.now())).map((s) => s.id);
    await t.redis.unlink(t.accounting.keys.scope(zedDay!));
    const lost = await audit.run();
    expect(lost.drift.map((x) => x.counter)).toEqual([counter, zedDay].sort());
    expect(lost.drift.find((x) => x.counter === zedDay)!.redis).toEqual({ usedGpuMs: 0, reservedGpuMs: 0, exemptUsedGpuMs: 0, exemptReservedGpuMs: 0, unitsUsed: 0, unitsReserved: 0, usdUsed: 0, usdReserved: 0 });

    // `gatekeeper audit` says the same, and exits 1.
    const held = new HeldJobs(t.config, t.redis, t.pool, systemClock, t.log);
    const viewer = 'test-viewer-token-0123456789';
    const app = createApp({ config: t.config, accounting: t.accounting, budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin: 'test-admin-token-0123456789', viewer } });
    const server = await listen(app);
    closers.push(() => held.close(), () => new Promise((r) => server.close(r)));
    let out = '';
    const code = await runCli(['--url', `${urlOf(server)}`, '--token', viewer, 'audit'], (x) => (out += x));
    expect(code).toBe(EXIT.failed);
    expect(out).toMatch(new RegExp(`^${counter} +reservedGpuMs +\\d+ +\\d+$`, 'm'));
    expect(out).toMatch(/^2 of \d+ counters drift \(stream entry \d+-\d+\)$/m);
  });
});

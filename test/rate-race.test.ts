/**
 * Throttled jobs under racing gatekeepers: four gatekeeper processes take
 * one user's burst of jobs over a rate limit (600 jobs/min, burst 5) and
 * another user's few. Every job ends admitted exactly once (none lost on
 * intake's delayed set, none on gpu-exec twice), each reserved once; the
 * limited user's admissions come no faster than the bucket allows (the
 * n-th at least n − burst intervals after the first: being late to come
 * back only delays a job); the other user's jobs are not held back by the
 * burst. Wall clock (BullMQ delays by it); the test waits for outcomes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { assertExactlyOnce, readOutcomes } from './support/outcomes.ts';
import { SYSTEM } from '../src/accounting/budgets.ts';
import { RateLimits } from '../src/accounting/rate-limits.ts';
import { hoursToGpuMs } from '../src/units.ts';
import type { ExecJobData } from '../queues/contract.ts';

let t: TestEnv;
let intake: Queue;
let exec: Queue<ExecJobData>;

beforeAll(async () => {
  t = await createTestEnv({}, { liveClock: true });
  intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
  exec = new Queue(t.config.queues.exec, { connection: t.redis, prefix: t.config.queuePrefix });
  for (let i = 0; i < 4; i++) t.spawn('gatekeeper', { GATEKEEPER_CONCURRENCY: '32' });
  await eventually(() => intake.getWorkersCount(), (n) => n >= 4, 30_000);
});
afterAll(async () => {
  await Promise.all([intake?.close(), exec?.close()]);
  await t?.close();
});

describe('4 racing gatekeepers and a rate limit', () => {
  it('admit every throttled job exactly once, no faster than its rate, and hold no other user back', async () => {
    const rate = { jobsPerMinute: 600, burst: 5 };
    await t.budgets.set('rr', hoursToGpuMs(10_000));
    await new RateLimits(t.pool, t.accounting).set('user', 'fast', rate, SYSTEM, null);
    const burst = await intake.addBulk(Array.from({ length: 40 }, (_, i) => ({ name: `f${i}`, data: { project: 'rr', user: 'fast', estimatedGpuHours: 1 } })));
    const others = await intake.addBulk(Array.from({ length: 5 }, (_, i) => ({ name: `o${i}`, data: { project: 'rr', user: 'slow', estimatedGpuHours: 1 } })));
    const ids = new Set([...burst, ...others].map((j) => j.id!));
    // The other user's jobs are through while most of the burst still waits on intake.
    const early = await eventually(() => readOutcomes(t), (o) => others.every((j) => o.admitted.includes(j.id!)), 15_000);
    expect(early.admitted.filter((id) => burst.some((j) => j.id === id)).length).toBeLessThan(burst.length);

    const done = await eventually(() => readOutcomes(t), (o) => o.admitted.filter((id) => ids.has(id)).length === ids.size, 30_000);
    expect(assertExactlyOnce(done)).toEqual([]);
    expect((await t.accounting.readScope('project:rr')).reservedGpuMs).toBe(ids.size * hoursToGpuMs(1));
    expect(await t.accounting.throttledCount(Date.now())).toBe(0);
    // Admitted at (the gatekeeper's clock when it decided): the n-th (from 0) no earlier than (n - burst + 1) intervals after the first.
    const at = (await Promise.all(burst.map((j) => exec.getJob(`intake-${j.id}`)))).map((j) => j!.data.admission.admittedAt).sort((a, b) => a - b);
    at.forEach((x, n) => expect((x - at[0]! + 1) * rate.jobsPerMinute, `admission ${n}`).toBeGreaterThanOrEqual((n - rate.burst + 1) * 60_000));
    // Most waited on intake and came back (a token frees every 100 ms meanwhile): their logs say why.
    const logs = (await Promise.all(burst.map((j) => intake.getJobLogs(j.id!)))).flatMap((l) => l.logs);
    expect(logs.length).toBeGreaterThan(burst.length / 2);
    for (const line of logs) expect(line).toMatch(/^throttled: user fast over 600 jobs\/min \(burst 5\); due \d\d:\d\d:\d\d\.\d{3} UTC$/);
  });
});

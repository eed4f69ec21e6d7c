/**
 * A held job's listing says why it waits with today's numbers and what will
 * start it (src/admin/held-now.ts): room freed by running jobs, a period's
 * reset in GATEKEEPER_TIMEZONE, the jobs ahead of it, or an admin. No waker
 * runs here, so the jobs stay held while the numbers change under them. The
 * clock stands at Wed 25 Nov 2026 12:00 UTC.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { createGatekeeper, type Gatekeeper } from '../workers/gatekeeper.ts';
import { HeldJobs, type HeldView } from '../src/admin/held.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { localTime } from '../src/admin/held-now.ts';
import { RateCard } from '../src/accounting/rate-card.ts';

let t: TestEnv;
let gk: Gatekeeper;
let held: HeldJobs;
let intake: Queue;
const ops = { name: 'ops-alice', role: 'admin' as const };

beforeAll(async () => {
  t = await createTestEnv();
  gk = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: t.clock });
  held = new HeldJobs(t.config, t.redis, t.pool, t.clock, t.log);
  intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
});

afterAll(async () => {
  await gk?.close();
  await held?.close();
  await intake?.close();
  await t?.close();
});

async function submit(project: string, jobs: [id: string, hours: number, user?: string][]): Promise<void> {
  for (const [id, hours, user] of jobs) {
    await intake.add('train', { project, user: user ?? `u-${project}`, estimatedGpuHours: hours }, { jobId: id });
    await eventually(() => intake.getJobState(id), (s) => s === 'completed');
  }
}

async function finish(id: string, hours: number): Promise<void> {
  const r = (await t.accounting.reservation(id))!;
  await t.accounting.settle(id, r.scopes, hoursToGpuMs(hours), 'settle', t.clock.now());
}

async function listed(project: string): Promise<HeldView[]> {
  return (await held.list({ project, limit: 100, offset: 0 })).jobs;
}

describe('a held job as it stands now', () => {
  it('shows the numbers of now, not of when it was held, and the room it needs', async () => {
    await t.budgets.set('n-room', hoursToGpuMs(3));
    await submit('n-room', [['nr1', 1], ['nr2', 1], ['nr3', 1], ['nr4', 1]]);
    expect((await listed('n-room'))[0]!.reason).toBe('project n-room: 3.0 of 3.0 GPU-h used or reserved; job needs 1.0');

    await finish('nr1', 0.5);
    const [j] = await listed('n-room');
    expect(j!.reason).toBe('project n-room: 2.5 of 3.0 GPU-h used or reserved; job needs 1.0');
    expect(j!.startsWhen).toBe('starts when 0.5 GPU-h free up in project n-room');
    expect(j!.hold.shortfalls[0]).toMatchObject({ usedGpuHours: 0.5, reservedGpuHours: 2, limitGpuHours: 3 });
  });

  it("says when a period's reset would start it, in the configured time zone", async () => {
    await t.budgets.set('n-month', hoursToGpuMs(2), ops, null, { period: 'month' });
    await submit('n-month', [['nm1', 1], ['nm2', 1], ['nm3', 1]]);
    const [j] = await listed('n-month');
    expect(j!.startsWhen).toBe('starts when 1.0 GPU-h free up in project n-month, or when it resets Tue 1 Dec 00:00 UTC');
  });

  it("says a used-up daily quota with nothing running starts the job when the day resets", async () => {
    await t.budgets.set('n-day', hoursToGpuMs(100));
    await t.budgets.setQuota('dee', { daily: { limitGpuMs: hoursToGpuMs(1) } }, ops, null);
    await submit('n-day', [['nd1', 1, 'dee'], ['nd2', 1, 'dee']]);
    await finish('nd1', 1);
    const [j] = await listed('n-day');
    expect(j!.reason).toBe("user dee's daily quota: 1.0 of 1.0 GPU-h used or reserved; job needs 1.0");
    expect(j!.startsWhen).toBe("starts when user dee's daily quota resets Thu 26 Nov 00:00 UTC");
  });

  it('says a one-off budget with nothing running, or a manual one, needs an admin', async () => {
    await t.budgets.set('n-once', hoursToGpuMs(1));
    await submit('n-once', [['no1', 1], ['no2', 1]]);
    await finish('no1', 1);
    expect((await listed('n-once'))[0]!.startsWhen).toBe('needs an admin: project n-once has no room coming (one-off)');

    await t.budgets.set('n-hand', hoursToGpuMs(1), ops, null, { release: 'manual' });
    await submit('n-hand', [['nh1', 1], ['nh2', 1]]);
    expect((await listed('n-hand'))[0]!.startsWhen).toBe('needs an admin: project n-hand is released by hand');
  });

  it('gives its place in each line it waits in', async () => {
    await t.budgets.set('n-line', hoursToGpuMs(1));
    await submit('n-line', [['nl1', 1], ['nl2', 1], ['nl3', 1], ['nl4', 1]]);
    const jobs = await listed('n-line');
    expect(jobs.map((j) => j.hold.positions)).toEqual([
      [{ scope: 'project:n-line', ahead: 0 }],
      [{ scope: 'project:n-line', ahead: 1 }],
      [{ scope: 'project:n-line', ahead: 2 }],
    ]);
    expect(jobs[2]!.startsWhen).toBe("starts when 1.0 GPU-h free up in project n-line; after the 2 older held jobs ahead of it in project n-line's line");
  });

  it('speaks a budget in dollars in dollars, and prices the job at the rate a release would use now', async () => {
    await new RateCard(t.pool, t.accounting, t.clock, t.log).setRate('h100', { unitsMilli: 3000, usdMicro: 4_100_000 }, ops, null);
    await t.budgets.set('n-usd', 10_000_000, ops, null, { unit: 'usd' });
    for (const id of ['nu1', 'nu2', 'nu3']) {
      await intake.add('train', { project: 'n-usd', user: 'u-n-usd', estimatedGpuHours: 1, gpuType: 'h100' }, { jobId: id });
      await eventually(() => intake.getJobState(id), (s) => s === 'completed');
    }
    // By hand: two h100 hours reserved at $4.10 = $8.20 of $10.00; the third needs $4.10.
    expect((await listed('n-usd'))[0]!.reason).toBe('project n-usd: $8.20 of $10.00 used or reserved; job needs $4.10');
    await finish('nu1', 0.5);
    const [j] = await listed('n-usd');
    // $2.05 used + $4.10 reserved + $4.10 needed = $10.25: $0.25 over.
    expect(j!.startsWhen).toBe('starts when $0.25 free up in project n-usd');
    expect(j!.hold.shortfalls[0]).toEqual({ scope: 'project:n-usd', code: 'over-limit', unit: 'usd', limit: 10, used: 2.05, reserved: 4.1, needed: 4.1 });
    // A new price in force now: a release now would charge $5.00, so the listing says so.
    await new RateCard(t.pool, t.accounting, t.clock, t.log).setRate('h100', { unitsMilli: 3000, usdMicro: 5_000_000 }, ops, null);
    expect((await listed('n-usd'))[0]!.reason).toBe('project n-usd: $6.15 of $10.00 used or reserved; job needs $5.00');
  });

  it('formats a moment to the minute in the zone, with its abbreviation', () => {
    expect(localTime(Date.UTC(2026, 11, 7, 0, 0), 'UTC')).toBe('Mon 7 Dec 00:00 UTC');
    expect(localTime(Date.UTC(2026, 6, 1, 22, 0), 'Europe/Berlin')).toBe('Thu 2 Jul 00:00 CEST');
  });
});

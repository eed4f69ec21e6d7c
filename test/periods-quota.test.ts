/**
 * Quotas and budget periods on an injected clock, end to end through the
 * gatekeeper and the scheduler (real Redis and Postgres, no waiting for
 * midnight): daily and weekly quotas renew at their boundary, monthly budgets
 * on the 1st with and without rollover, a DST night in Europe/Berlin, a
 * restart across midnight with no scheduler running, a reset fired twice at
 * once, and which held jobs a reset re-admits (quota-held, in submission
 * order) and which it leaves (budget-held).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { createGatekeeper, type Gatekeeper } from '../workers/gatekeeper.ts';
import { createScheduler } from '../workers/scheduler.ts';
import { SYSTEM } from '../src/accounting/budgets.ts';
import { hoursToGpuMs } from '../src/units.ts';
import type { JobMeta } from '../src/accounting/types.ts';

const H = hoursToGpuMs(1);
const at = (iso: string) => Date.parse(iso);

describe('in UTC, through the gatekeeper and the scheduler', () => {
  let t: TestEnv;
  let gk: Gatekeeper | undefined;
  let intake: Queue;
  let exec: Queue;
  let held: Queue;

  const startGatekeeper = () => {
    gk = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: t.clock });
  };
  const scheduler = () => createScheduler({ config: t.config, connection: t.redis, pool: t.pool, log: t.log, clock: t.clock });

  /** Submit jobs and wait until the gatekeeper has placed them all. */
  async function submit(jobs: { user: string; project?: string; hours?: number }[]): Promise<string[]> {
    const added = await intake.addBulk(jobs.map((j) => ({ name: 'job', data: { project: j.project ?? 'fleet', user: j.user, estimatedGpuHours: j.hours ?? 1 } })));
    await eventually(() => Promise.all(added.map((a) => a.isCompleted())), (done) => done.every(Boolean));
    return added.map((a) => a.id!);
  }
  const onExec = async (ids: string[]) => (await Promise.all(ids.map((id) => exec.getJob(`intake-${id}`)))).map(Boolean);

  beforeAll(async () => {
    t = await createTestEnv();
    const q = { connection: t.redis, prefix: t.config.queuePrefix };
    [intake, exec, held] = [new Queue(t.config.queues.intake, q), new Queue(t.config.queues.exec, q), new Queue(t.config.queues.held, q)];
    await t.budgets.set('fleet', hoursToGpuMs(1000));
    startGatekeeper();
  });
  afterAll(async () => {
    await gk?.close();
    await Promise.all([intake?.close(), exec?.close(), held?.close()]);
    await t?.close();
  });

  it('a daily quota full at 23:59 admits again at 00:00, after a restart with no scheduler running', async () => {
    t.clock.t = at('2026-11-25T23:59:00Z');
    await t.budgets.setQuota('bob', { daily: { limitGpuMs: 2 * H } }, SYSTEM, null);
    const day1 = await submit([{ user: 'bob' }, { user: 'bob' }, { user: 'bob' }, { user: 'alice' }]);
    expect(await onExec(day1)).toEqual([true, true, false, true]); // alice is not behind bob
    const heldJob = await held.getJob(`intake-${day1[2]}`);
    expect(heldJob!.data.held.reason).toBe("user bob's daily quota: 2.0 of 2.0 GPU-h used or reserved; job needs 1.0");

    // The gatekeeper goes down before midnight and comes back after it; no scheduler runs.
    await gk!.close();
    t.clock.t = at('2026-11-26T00:00:00Z');
    startGatekeeper();
    const quota = await t.budgets.quota('bob');
    expect(quota.daily).toMatchObject({ periodLabel: '2026-11-26', usedGpuMs: 0, reservedGpuMs: 0, remainingGpuMs: 2 * H, nextResetAt: at('2026-11-27T00:00:00Z') });
    // The new day is enforced at once; bob's new job queues behind his held one (first in, first out).
    const day2 = await submit([{ user: 'bob' }, { user: 'dave' }]);
    expect(await onExec(day2)).toEqual([false, true]);
    expect((await held.getJob(`intake-${day2[0]}`))!.data.held.reason).toMatch(/^behind 1 older held job waiting for user bob's daily quota/);

    // The scheduler starts: it catches up and re-admits both, oldest first.
    const s = scheduler();
    await s.start();
    await s.close();
    expect(await onExec([day1[2]!, day2[0]!])).toEqual([true, true]);
    expect(await held.count()).toBe(0);
    const after = await t.budgets.quota('bob');
    expect(after.daily).toMatchObject({ reservedGpuMs: 2 * H, remainingGpuMs: 0 });
    // Yesterday's counters are untouched: two jobs, admitted yesterday.
    expect((await t.accounting.scopes(['user-day:bob'], at('2026-11-25T12:00:00Z')))[0]).toMatchObject({ id: 'user-day:bob@2026-11-25', reservedGpuMs: 2 * H });
  });

  it('re-admits quota-held jobs at a reset in submission order, and leaves budget-held ones held', async () => {
    t.clock.t = at('2026-11-26T18:00:00Z');
    await t.budgets.set('tight', 1 * H);
    await t.budgets.setQuota('erin', { daily: { limitGpuMs: 1 * H } }, SYSTEM, null);
    const [budgetFits, budgetHeld] = await submit([{ user: 'frank', project: 'tight' }, { user: 'frank', project: 'tight' }]);
    const quotaJobs = await submit([{ user: 'erin' }, { user: 'erin' }, { user: 'erin' }, { user: 'erin' }]);
    expect(await onExec([budgetFits!, budgetHeld!, ...quotaJobs])).toEqual([true, false, true, false, false, false]);

    t.clock.t = at('2026-11-27T00:00:00Z');
    await t.budgets.setQuota('erin', { daily: { limitGpuMs: 2 * H } }, SYSTEM, null);
    const report = await scheduler().runBoundary();
    expect(report).toMatchObject({ considered: 3, admitted: 2 });
    // The oldest two of erin's held jobs, not the newest; frank's stays (a one-off budget needs an admin).
    expect(await onExec(quotaJobs.slice(1))).toEqual([true, true, false]);
    expect(await t.accounting.heldIds()).toEqual([budgetHeld, quotaJobs[3]]);
  });

  it('a reset fired twice at once admits each job once', async () => {
    t.clock.t = at('2026-11-27T09:00:00Z');
    await t.budgets.setQuota('gus', { daily: { limitGpuMs: 3 * H } }, SYSTEM, null);
    const jobs = await submit(Array.from({ length: 8 }, () => ({ user: 'gus' })));
    expect((await onExec(jobs)).filter(Boolean)).toHaveLength(3);

    t.clock.t = at('2026-11-28T00:00:00Z');
    const [a, b] = [scheduler(), scheduler()];
    const heldBefore = (await t.accounting.heldIds()).length;
    const reports = await Promise.all([a.runBoundary(), b.runBoundary(), a.runBoundary()]);
    // Every admission reported once, whichever run made it (other tests' quota-held jobs renew too).
    expect(reports.reduce((n, r) => n + r.admitted, 0)).toBe(heldBefore - (await t.accounting.heldIds()).length);
    expect((await onExec(jobs)).filter(Boolean)).toHaveLength(6);
    expect((await t.budgets.quota('gus')).daily).toMatchObject({ reservedGpuMs: 3 * H, remainingGpuMs: 0 });
    expect(await t.accounting.heldIds()).toEqual(expect.arrayContaining(jobs.slice(6)));
  });
});

describe('periods on the counters (reserve and settle on an injected clock)', () => {
  let t: TestEnv;
  const meta = (user: string, project = 'p'): JobMeta => ({ project, user, gpus: 1 });
  let n = 0;
  const reserve = (scopes: string[], amount: number, now: number, user = 'u') =>
    t.accounting.reserve(`j${++n}`, amount, scopes, meta(user), now);

  beforeAll(async () => {
    t = await createTestEnv();
  });
  afterAll(async () => t?.close());

  it('a weekly quota renews on Monday 00:00, not on Sunday', async () => {
    await t.budgets.setQuota('wendy', { weekly: { limitGpuMs: 3 * H } }, SYSTEM, null);
    const scopes = ['user-week:wendy'];
    expect((await reserve(scopes, 3 * H, at('2026-11-23T00:00:00Z'))).kind).toBe('reserved'); // a Monday
    expect((await reserve(scopes, 1, at('2026-11-29T23:59:59Z'))).kind).toBe('held'); // Sunday night
    await t.accounting.cancel(`j${n}`); // out of the line, so the next one is judged on the counters alone
    expect(await reserve(scopes, 3 * H, at('2026-11-30T00:00:00Z'))).toMatchObject({ kind: 'reserved', scopes: ['user-week:wendy@W2026-11-30'] });
  });

  it('a monthly budget renews on the 1st: without rollover, with it, and with it capped', async () => {
    t.clock.t = at('2026-10-15T00:00:00Z');
    await t.budgets.set('plain', 10 * H, SYSTEM, null, { period: 'month' });
    await t.budgets.set('carry', 10 * H, SYSTEM, null, { period: 'month', rollover: true });
    await t.budgets.set('capped', 10 * H, SYSTEM, null, { period: 'month', rollover: true, rolloverCapGpuMs: 3 * H });
    const nov = at('2026-11-10T00:00:00Z');
    for (const p of ['plain', 'carry', 'capped']) {
      const r = await t.accounting.reserve(`m-${p}`, 6 * H, [`project:${p}`], meta('u', p), nov);
      expect(r.kind).toBe('reserved');
      await t.accounting.settle(`m-${p}`, (r as { scopes: string[] }).scopes, 4 * H, 'settle', nov);
    }
    t.clock.t = at('2026-12-01T00:00:00Z');
    expect(await t.budgets.get('plain')).toMatchObject({ periodLabel: '2026-12', usedGpuMs: 0, carryGpuMs: 0, effectiveLimitGpuMs: 10 * H, nextResetAt: at('2027-01-01T00:00:00Z') });
    // Set in mid-October and unused there, October's 10 h rolled into November; November left 10 + 10 - 4.
    expect(await t.budgets.get('carry')).toMatchObject({ carryGpuMs: 16 * H, effectiveLimitGpuMs: 26 * H, remainingGpuMs: 26 * H });
    expect(await t.budgets.get('capped')).toMatchObject({ carryGpuMs: 3 * H, effectiveLimitGpuMs: 13 * H });
    // November's own numbers stay as they were.
    t.clock.t = nov;
    expect(await t.budgets.get('carry')).toMatchObject({ periodLabel: '2026-11', usedGpuMs: 4 * H, carryGpuMs: 10 * H });
  });

  it('a manual adjustment changes only the current period, and is audited', async () => {
    t.clock.t = at('2026-12-05T00:00:00Z');
    await t.budgets.adjust('plain', 5 * H, { name: 'ops', role: 'admin' }, 'quarter-end push');
    expect(await t.budgets.get('plain')).toMatchObject({ adjustGpuMs: 5 * H, effectiveLimitGpuMs: 15 * H });
    t.clock.t = at('2027-01-02T00:00:00Z');
    expect(await t.budgets.get('plain')).toMatchObject({ adjustGpuMs: 0, effectiveLimitGpuMs: 10 * H });
    const audit = await t.pool.query(`SELECT actor, reason, after FROM audit WHERE action = 'budget.adjust'`);
    expect(audit.rows).toEqual([{ actor: 'ops', reason: 'quarter-end push', after: { period: '2026-12', adjustGpuHours: 5, deltaGpuHours: 5 } }]);
  });

  it('soft limits admit past the limit (flagged) up to their grace, then hold', async () => {
    await t.budgets.setRunCap('p', 'scenes', { limitGpuMs: 10 * H, policy: 'soft', gracePercent: 20 }, SYSTEM, null);
    const now = at('2026-11-25T12:00:00Z');
    expect(await reserve(['run:p/scenes'], 9 * H, now)).toMatchObject({ kind: 'reserved', softOver: [] });
    expect(await reserve(['run:p/scenes'], 2 * H, now)).toMatchObject({ kind: 'reserved', softOver: ['run:p/scenes'] });
    expect(await reserve(['run:p/scenes'], 2 * H, now)).toMatchObject({
      kind: 'held',
      shortfalls: [{ scope: 'run:p/scenes', code: 'over-grace', limitGpuMs: 12 * H, reservedGpuMs: 11 * H }],
    });
  });

  it('exempt job types are admitted past any limit, never counted, and tracked', async () => {
    await t.budgets.setQuota('xena', { daily: { limitGpuMs: 0 } }, SYSTEM, null);
    await t.budgets.setExempt('regression-test', true, SYSTEM, null);
    const now = at('2026-11-25T12:00:00Z');
    const r = await t.accounting.reserve('ex1', 2 * H, ['user-day:xena'], { ...meta('xena'), jobType: 'regression-test' }, now);
    expect(r).toMatchObject({ kind: 'reserved', exempt: true });
    await t.accounting.settle('ex1', ['user-day:xena@2026-11-25'], H, 'settle', now);
    t.clock.t = now;
    expect((await t.budgets.quota('xena')).daily).toMatchObject({ usedGpuMs: 0, reservedGpuMs: 0, exemptUsedGpuMs: H, exemptReservedGpuMs: 0 });
    expect((await t.accounting.reserve('ex2', 1, ['user-day:xena'], meta('xena'), now)).kind).toBe('held');
  });

  it('fixes a new period\'s carry when a held job whose type became exempt is released into it first', async () => {
    const job = (id: string, hours: number, jobType: string, now: number) => t.accounting.reserve(id, hours * H, ['project:xroll'], { ...meta('u', 'xroll'), jobType }, now);
    t.clock.t = at('2026-10-05T12:00:00Z');
    await t.budgets.set('xroll', 10 * H, SYSTEM, null, { period: 'month', rollover: true });
    const running = await job('xr-run', 4, 'train', at('2026-10-20T12:00:00Z'));
    expect((await job('xr-held', 8, 'lint', at('2026-10-20T12:00:00Z'))).kind).toBe('held');
    await t.budgets.setExempt('lint', true, SYSTEM, null);
    // No boundary run: the release is November's first touch, and October left 10 − 4 running = 6 h.
    const nov = at('2026-11-01T00:30:00Z');
    expect(await t.accounting.release(['xr-held'], 'fifo', 'released', nov)).toMatchObject([{ kind: 'admitted' }]);
    // The October job then settles for 1 h: a carry worked out only now would be 10 − 1 = 9 h.
    await t.accounting.settle('xr-run', running.kind === 'reserved' ? running.scopes : [], H, 'settle', nov + 1_000);
    t.clock.t = nov + 2_000;
    expect(await t.budgets.get('xroll')).toMatchObject({ periodLabel: '2026-11', carryGpuMs: 6 * H, effectiveLimitGpuMs: 16 * H, exemptReservedGpuMs: 8 * H });
  });
});

describe('a DST night in Europe/Berlin', () => {
  let t: TestEnv;
  beforeAll(async () => {
    t = await createTestEnv({ GATEKEEPER_TIMEZONE: 'Europe/Berlin' });
    await t.budgets.setQuota('nora', { daily: { limitGpuMs: 1 * H } }, SYSTEM, null);
  });
  afterAll(async () => t?.close());

  it('the 25-hour day of 2026-10-25 is one day, and the next starts at local midnight', async () => {
    const meta = { project: 'p', user: 'nora', gpus: 1 };
    // 00:30 local is 2026-10-24T22:30Z (summer time); 23:30 local is 2026-10-25T22:30Z (winter time).
    expect((await t.accounting.reserve('d1', H, ['user-day:nora'], meta, at('2026-10-24T22:30:00Z'))).kind).toBe('reserved');
    expect((await t.accounting.reserve('d2', 1, ['user-day:nora'], meta, at('2026-10-25T22:30:00Z'))).kind).toBe('held');
    await t.accounting.cancel('d2');
    // Local midnight of the 26th is 23:00Z.
    expect(await t.accounting.reserve('d3', H, ['user-day:nora'], meta, at('2026-10-25T23:00:00Z'))).toMatchObject({ kind: 'reserved', scopes: ['user-day:nora@2026-10-26'] });
    t.clock.t = at('2026-10-25T23:00:00Z');
    expect((await t.budgets.quota('nora')).daily).toMatchObject({ periodStart: at('2026-10-25T23:00:00Z'), nextResetAt: at('2026-10-26T23:00:00Z') });
  });
});

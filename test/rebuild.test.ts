/**
 * Losing Redis's hot state (every gatekeeper key gone; the queues survive)
 * and getting it back (real Redis and Postgres, the pipeline in this process):
 * the drift audit sees the loss, `rebuild` restores counters, open and
 * settled reservations and the held line from Postgres and gpu-held, the
 * audit is clean again, jobs that were running settle exactly once, held jobs
 * release in order, a late retry of a settled job is not admitted twice, and
 * new jobs are admitted against the right numbers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { listen, urlOf } from './support/http.ts';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { LedgerWriter } from '../src/ledger/writer.ts';
import { SYSTEM } from '../src/accounting/budgets.ts';
import { createScheduler } from '../workers/scheduler.ts';
import { execJobId } from '../queues/names.ts';
import type { ExecJobData } from '../queues/contract.ts';
import { startPipeline } from './support/pipeline.ts';
import { unlinkMatching } from './support/infra.ts';
import { DriftAudit } from '../src/accounting/drift.ts';
import { rebuild, RebuildRefused } from '../src/accounting/rebuild.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { systemClock } from '../src/clock.ts';
import { hoursToGpuMs } from '../src/units.ts';
import type { HeldJobData } from '../queues/contract.ts';
import { createApp } from '../src/api/app.ts';
import { EXIT, runCli } from '../src/cli/main.ts';

const H = hoursToGpuMs(1);
let t: TestEnv;
let pipeline: { close(): Promise<void> };
let intake: Queue;
let heldQueue: Queue<HeldJobData>;
let execQueue: Queue<ExecJobData>;
let audit: DriftAudit;
const ops = { name: 'ops', role: 'admin' } as const;

/** Redis loses every gatekeeper key (counters, reservations, lines, limits, ledger stream); the queues survive. */
const loseRedis = (env: TestEnv) => unlinkMatching(env.redis, `${env.accounting.keys.prefix}*`);
const restore = (env: TestEnv, held: Queue<HeldJobData> | null, now = Date.now()) =>
  rebuild({ redis: env.redis, accounting: env.accounting, budgets: env.budgets, pool: env.pool, heldQueue: held, intakeQueue: null, settledRetainSeconds: env.config.settledRetainSeconds, now });
const ledgerWritten = () => eventually(() => t.redis.xlen(t.accounting.keys.ledger), (n) => n === 0);

beforeAll(async () => {
  t = await createTestEnv({ RECONCILE_INTERVAL_MS: '20' }, { liveClock: true });
  pipeline = await startPipeline(t);
  intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
  heldQueue = new Queue(t.config.queues.held, { connection: t.redis, prefix: t.config.queuePrefix });
  execQueue = new Queue(t.config.queues.exec, { connection: t.redis, prefix: t.config.queuePrefix });
  audit = new DriftAudit(t.redis, t.accounting, t.pool);
});
afterAll(async () => {
  await pipeline?.close();
  await Promise.all([intake?.close(), heldQueue?.close(), execQueue?.close()]);
  await t?.close();
});

describe('rebuild', () => {
  it('restores the hot state from the ledger and the live queues, and admission resumes exactly', async () => {
    await t.budgets.set('re', 10 * H);
    // 4 quick jobs finish; 4 long ones are still running at the loss; 4 are held.
    const quick = { simulate: { durationMs: 5, gpuHours: 0.5 } };
    const long = { simulate: { durationMs: 6_000, gpuHours: 1 } }; // still running well after the rebuild
    const jobs = await intake.addBulk([
      ...Array.from({ length: 4 }, () => ({ name: 'q', data: { project: 're', user: 'rob', estimatedGpuHours: 1, payload: quick } })),
      ...Array.from({ length: 4 }, () => ({ name: 'l', data: { project: 're', user: 'rob', estimatedGpuHours: 1.5, payload: long } })),
      ...Array.from({ length: 4 }, () => ({ name: 'h', data: { project: 're', user: 'rob', estimatedGpuHours: 2, payload: quick } })),
    ]);
    await eventually(() => t.budgets.get('re'), (b) => b!.usedGpuMs === 2 * H && b!.reservedGpuMs === 6 * H); // 4 × 0.5 used; 4 × 1.5 running
    await eventually(() => t.redis.xlen(t.accounting.keys.ledger), (n) => n === 0); // the ledger has everything
    expect(await t.accounting.heldIds('re')).toHaveLength(4);

    await loseRedis(t);
    expect((await audit.run()).drift.length).toBeGreaterThan(0);

    const report = await restore(t, heldQueue);
    expect(report).toMatchObject({ openReservations: 4, settledReservations: 4, heldJobs: 4 });
    expect((await audit.run()).drift).toEqual([]);
    expect(await t.budgets.get('re')).toMatchObject({ limitGpuMs: 10 * H, usedGpuMs: 2 * H, reservedGpuMs: 6 * H });
    expect(await t.accounting.heldIds('re')).toEqual(jobs.slice(8).map((j) => j.id));

    // A late retry of a finished job is still not admitted again.
    expect(await t.accounting.reserve(jobs[0]!.id!, H, ['project:re'], { project: 're', user: 'rob', gpus: 1 }, Date.now())).toMatchObject({ kind: 'already', state: 'settled' });

    // The running jobs finish and are settled once, against the rebuilt counters.
    await eventually(() => t.budgets.get('re'), (b) => b!.reservedGpuMs === 0, 30_000);
    expect((await t.budgets.get('re'))!.usedGpuMs).toBe(6 * H);

    // Held jobs release in order; a new job waits behind them (the line came back).
    const extra = await intake.add('x', { project: 're', user: 'rob', estimatedGpuHours: 1, payload: quick });
    await eventually(() => extra.isCompleted(), Boolean);
    expect((await extra.getState())).toBe('completed');
    expect(await t.accounting.heldIds('re')).toEqual([...jobs.slice(8).map((j) => j.id), extra.id]);
    const held = new HeldJobs(t.config, t.redis, t.pool, systemClock, t.log);
    const r = await held.release({ project: 're' }, ops);
    await held.close();
    expect(r.admitted).toEqual(jobs.slice(8, 10).map((j) => j.id)); // 6 used + 2 × 2 = 10: two fit
    await eventually(() => t.accounting.openCount(), (n) => n === 0, 20_000);
    expect((await audit.run()).drift).toEqual([]);
  });

  it('restores each reservation field for field as reserve wrote it: a 4-GPU job is charged wall time × 4', async () => {
    await t.budgets.set('quad', 10 * H);
    // No gpuHours in the result: the reconciler charges (finishedOn − processedOn) × gpus.
    const job = await intake.add('g', {
      project: 'quad', user: 'gia', jobType: 'train', gpuType: 'a100', run: 'r1', gpus: 4, estimatedGpuHours: 1,
      payload: { simulate: { durationMs: 3_000 } },
    });
    const key = t.accounting.keys.reservation(job.id!);
    const reserved = await eventually(() => t.redis.hgetall(key), (h) => h.state === 'reserved');
    await ledgerWritten();
    await loseRedis(t);
    await restore(t, heldQueue);
    expect(await t.redis.hgetall(key)).toEqual(reserved);

    const settled = await eventually(() => t.redis.hgetall(key), (h) => h.state === 'settled', 20_000);
    const exec = (await execQueue.getJob(execJobId(job.id!)))!;
    const wallMs = exec.finishedOn! - exec.processedOn!;
    expect(settled.actual).toBe(String(wallMs * 4));
    expect((await t.budgets.get('quad'))!.usedGpuMs).toBe(wallMs * 4);
    // A settled reservation comes back the same way.
    await ledgerWritten();
    await loseRedis(t);
    await restore(t, heldQueue);
    expect(await t.redis.hgetall(key)).toEqual(settled);
    expect((await audit.run()).drift).toEqual([]);
  });

  it('rebuilds each held job into the lines reserve put it in, so the scheduler still re-admits a quota-held job', async () => {
    await t.budgets.set('line', 2 * H);
    await t.budgets.setQuota('quin', { daily: { limitGpuMs: H } }, ops, null);
    const quick = { simulate: { durationMs: 5, gpuHours: 1 } };
    const submit = async (user: string, estimatedGpuHours: number) => {
      const job = await intake.add('j', { project: 'line', user, estimatedGpuHours, payload: quick });
      await eventually(() => job.isCompleted(), Boolean);
      return job.id!;
    };
    await submit('quin', 1); // admitted: project 1 of 2 h, quin's day 1 of 1 h
    const held = {
      quota: await submit('quin', 1), // misses quin's daily quota only        -> line user-day:quin
      budget: await submit('ola', 1.5), // misses the project budget           -> line project:line
      behind: await submit('ola', 0.5), // fits, but the project's line is not empty -> line project:line
      both: await submit('quin', 0.5), // misses the quota, behind the project's line -> both lines
    };
    const ids = Object.values(held);
    expect(await t.accounting.heldIds('line')).toEqual(ids);
    const records = () => Promise.all(ids.map((id) => t.redis.hgetall(t.accounting.keys.reservation(id))));
    const before = await records();
    expect(before.map((r) => r.lines)).toEqual(['user-day:quin', 'project:line', 'project:line', 'user-day:quin,project:line']);

    await ledgerWritten();
    await loseRedis(t);
    await restore(t, heldQueue);
    expect(await records()).toEqual(before);
    // An admin raises quin's quota and releases nothing yet: the jobs it held fit it now, and still wait where they waited.
    await t.budgets.setQuota('quin', { daily: { limitGpuMs: 2 * H } }, ops, null);
    // Reasons are sentences for people: rebuild reads the hold's data, never them.
    for (const job of await heldQueue.getJobs(['prioritized', 'waiting'])) {
      await job.updateData({ ...job.data, held: { ...job.data.held, reason: 'see the dashboard' } });
    }
    await loseRedis(t);
    await restore(t, heldQueue);
    const lineSets = (rs: Record<string, string>[]) => rs.map((r) => r.lines!.split(',').sort());
    expect(lineSets(await records())).toEqual(lineSets(before));

    // Tomorrow quin's quota renews: the scheduler re-admits the job that waited only on it.
    const tomorrow = { now: () => Date.now() + 24 * H };
    const scheduler = createScheduler({ config: t.config, connection: t.redis, pool: t.pool, log: t.log, clock: tomorrow });
    await scheduler.runBoundary();
    await scheduler.close();
    expect(await t.accounting.heldIds('line')).toEqual([held.budget, held.behind, held.both]);
    await eventually(() => t.accounting.reservation(held.quota), (r) => r?.state === 'settled', 20_000);
  });

  it('restores the rollover carry a period started with and the adjustments admins made, not a recomputation', async () => {
    // Its own environment on a test clock (the pipeline's runs on the system clock).
    const p = await createTestEnv();
    const writer = new LedgerWriter(p.connection(), p.accounting.keys.ledger, p.pool, p.log);
    try {
      const at = (iso: string) => (p.clock.t = Date.parse(iso));
      const meta = { project: 'roll', user: 'ren', gpus: 1 };
      at('2026-10-05T12:00:00Z');
      await p.budgets.set('roll', 10 * H, SYSTEM, null, { period: 'month', rollover: true });
      at('2026-10-20T12:00:00Z');
      const a = await p.accounting.reserve('a', 3 * H, ['project:roll'], meta, p.clock.t);
      at('2026-10-21T12:00:00Z');
      await p.accounting.settle('a', a.kind === 'reserved' ? a.scopes : [], 2 * H, 'settle', p.clock.t);
      at('2026-10-25T12:00:00Z');
      await p.budgets.adjust('roll', H, ops, 'October push');
      at('2026-10-30T12:00:00Z');
      const b = await p.accounting.reserve('b', 4 * H, ['project:roll'], meta, p.clock.t);
      // November starts with what October left: 10 + 1 adjusted − 2 used − 4 still running = 5 h.
      at('2026-11-01T00:00:00Z');
      await createScheduler({ config: p.config, connection: p.redis, pool: p.pool, log: p.log, clock: p.clock }).runBoundary();
      // The running job then settles for 1 h (in October's counters); a recomputed carry would be 10 + 1 − 3 = 8 h.
      at('2026-11-01T01:00:00Z');
      await p.accounting.settle('b', b.kind === 'reserved' ? b.scopes : [], H, 'settle', p.clock.t);
      at('2026-11-01T02:00:00Z');
      await p.budgets.adjust('roll', 2 * H, ops, 'November push');
      const before = (await p.budgets.get('roll'))!;
      expect(before).toMatchObject({ periodLabel: '2026-11', carryGpuMs: 5 * H, adjustGpuMs: 2 * H, effectiveLimitGpuMs: 17 * H });

      while ((await writer.drainOnce()) > 0);
      await loseRedis(p);
      await restore(p, null, p.clock.t);
      const after = (await p.budgets.get('roll'))!;
      expect(after).toMatchObject({ carryGpuMs: 5 * H, adjustGpuMs: 2 * H, effectiveLimitGpuMs: 17 * H, usedGpuMs: 0, reservedGpuMs: 0, remainingGpuMs: 17 * H });
      expect((await new DriftAudit(p.redis, p.accounting, p.pool).run()).drift).toEqual([]);
    } finally {
      await writer.stop();
      await p.close();
    }
  });

  it('refuses while the ledger stream holds entries Postgres does not have yet', async () => {
    await pipeline.close();
    await t.budgets.set('late', H);
    expect((await t.accounting.reserve('late-1', H, ['project:late'], { project: 'late', user: 'rob', gpus: 1 }, Date.now())).kind).toBe('reserved'); // nobody writes it now
    await expect(rebuild({ redis: t.redis, accounting: t.accounting, budgets: t.budgets, pool: t.pool, heldQueue, intakeQueue: null, settledRetainSeconds: 3600, now: Date.now() })).rejects.toThrow(RebuildRefused);
    // The same through the CLI: refused (409), nothing changed.
    const held = new HeldJobs(t.config, t.redis, t.pool, systemClock, t.log);
    const admin = 'test-admin-token-0123456789';
    const app = createApp({ config: t.config, accounting: t.accounting, budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin, viewer: undefined } });
    const server = await listen(app);
    try {
      const code = await runCli(['--url', `${urlOf(server)}`, '--token', admin, 'rebuild'], () => {});
      expect(code).toBe(EXIT.refused);
    } finally {
      await new Promise((r) => server.close(r));
      await held.close();
    }
    pipeline = await startPipeline(t);
  });
});

/**
 * Crash safety: SIGKILL the gatekeeper in the middle of a 2,000-job burst and
 * start another. Nothing is lost, nothing is admitted twice, and the counters
 * equal exactly the estimates of the jobs on gpu-exec. Likewise the
 * reconciler mid-settlement, and both at once in a 10,000-job burst. Each
 * test has an environment of its own (queue prefix, database), so its queues,
 * counters and ledger hold its own jobs only, and any one runs alone.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { createTestEnv, eventually, waitExit, type TestEnv } from './support/env.ts';
import { assertExactlyOnce, readOutcomes } from './support/outcomes.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { createGpuSim } from '../workers/gpu-sim.ts';
import { parseEntry } from '../src/ledger/writer.ts';
import { DriftAudit } from '../src/accounting/drift.ts';
import { systemClock } from '../src/clock.ts';
import { createGatekeeper } from '../workers/gatekeeper.ts';

let t: TestEnv;
let intake: Queue;
const gatekeeper = () => t.spawn('gatekeeper', { GATEKEEPER_CONCURRENCY: '64', GATEKEEPER_LOCK_MS: '1500' });

beforeEach(async () => {
  t = await createTestEnv({}, { liveClock: true });
  intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
});
afterEach(async () => {
  await intake?.close();
  await t?.close();
});

/**
 * `n` one-hour jobs of `project` (20 ms of simulated GPU work each, reporting
 * a quarter hour) admitted under a budget of exactly `n` hours by a
 * gatekeeper that then stops: all reserved, on gpu-exec, none run yet.
 */
async function admitted(project: string, n: number): Promise<void> {
  await t.budgets.set(project, hoursToGpuMs(n));
  await intake.addBulk(Array.from({ length: n }, (_, i) => ({
    name: `a${i}`, data: { project, user: 'u', estimatedGpuHours: 1, payload: { simulate: { durationMs: 20, gpuHours: 0.25 } } },
  })));
  const gk = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: systemClock });
  try {
    await eventually(() => intake.getCompletedCount(), (done) => done === n, 60_000);
  } finally {
    await gk.close();
  }
  expect(await t.accounting.readScope(`project:${project}`)).toMatchObject({ reservedGpuMs: hoursToGpuMs(n), usedGpuMs: 0 });
}

describe('SIGKILL during a 2,000-job burst', () => {
  it('SIGKILL the gatekeeper: loses nothing, admits nothing twice, and counts exactly', async () => {
    await t.budgets.set('burst', hoursToGpuMs(1500));
    const jobs = await intake.addBulk(
      Array.from({ length: 2000 }, (_, i) => ({
        name: `b${i}`,
        data: { project: 'burst', user: 'u', estimatedGpuHours: 1, payload: { simulate: { durationMs: 20, gpuHours: 0.25 } } },
      })),
    );

    const first = gatekeeper();
    // Kill it mid-burst, while it holds jobs in flight.
    await eventually(() => intake.getCompletedCount(), (n) => n >= 300, 60_000);
    first.kill('SIGKILL');
    await waitExit(first);
    const atKill = await intake.getJobCounts('completed', 'active');
    expect(atKill.completed).toBeLessThan(2000);
    expect(atKill.active).toBeGreaterThan(0); // jobs were in flight when it died

    gatekeeper();
    // Jobs the dead gatekeeper held locks on come back once their locks expire.
    await eventually(() => intake.getCompletedCount(), (n) => n === 2000, 90_000);
    const o = await readOutcomes(t);
    expect(assertExactlyOnce(o)).toEqual([]);
    expect(o.admitted).toHaveLength(1500);
    expect(o.held).toHaveLength(500);
    expect(await intake.getCompletedCount()).toBe(2000);
    expect(new Set([...o.admitted, ...o.held])).toEqual(new Set(jobs.map((j) => j.id)));

    const scope = await t.accounting.readScope('project:burst');
    expect(scope).toMatchObject({ reservedGpuMs: hoursToGpuMs(1500), usedGpuMs: 0 });
    expect(await t.accounting.openCount()).toBe(1500);
    // One reserve row per admitted job in the ledger stream, none twice.
    const entries = await t.redis.xrange(t.accounting.keys.ledger, '-', '+');
    const reserved = entries.flatMap(([, flat]) => parseEntry(flat)).map((r) => r.jobId);
    expect(reserved).toHaveLength(1500);
    expect(new Set(reserved)).toEqual(new Set(o.admitted));
  }, 180_000);

  it('SIGKILL the reconciler while it settles: every hour counted once, in Redis and in the Postgres ledger', async () => {
    await admitted('burst', 1500);
    // Slow enough (1,500 jobs x 20 ms / 10 at once = 3 s) that the kill lands mid-way.
    const sim = createGpuSim({ config: t.config, workerConnection: t.connection(), log: t.log, concurrency: 10 });
    const reconciler = () => t.spawn('reconciler', { RECONCILE_INTERVAL_MS: '20', SWEEP_INTERVAL_MS: '500' });
    try {
      const first = reconciler();
      const used = () => t.accounting.readScope('project:burst').then((s) => s.usedGpuMs);
      await eventually(used, (u) => u >= hoursToGpuMs(0.25 * 200), 60_000);
      first.kill('SIGKILL');
      await waitExit(first);
      expect(await used()).toBeLessThan(hoursToGpuMs(0.25 * 1500));

      reconciler();
      const scope = await eventually(() => t.accounting.readScope('project:burst'), (s) => s.reservedGpuMs === 0, 90_000);
      expect(scope.usedGpuMs).toBe(hoursToGpuMs(0.25 * 1500));
      const ledger = await eventually(
        async () => (await t.pool.query("SELECT kind, count(*)::int AS n, coalesce(sum(actual_gpu_ms), 0)::bigint AS actual FROM ledger GROUP BY kind ORDER BY kind")).rows,
        (rows) => rows.length === 2 && rows[1].n === 1500,
        60_000,
      );
      expect(ledger).toEqual([
        { kind: 'reserve', n: 1500, actual: 0 },
        { kind: 'settle', n: 1500, actual: hoursToGpuMs(0.25 * 1500) },
      ]);
    } finally {
      await sim.close();
    }
  }, 180_000);

  it('SIGKILL the gatekeeper and the reconciler together in a 10,000-job burst: every job placed once, every hour counted once, zero drift', async () => {
    await t.budgets.set('ten', hoursToGpuMs(8000));
    await intake.addBulk(Array.from({ length: 10_000 }, (_, i) => ({
      name: `t${i}`, data: { project: 'ten', user: `u${i % 16}`, estimatedGpuHours: 1, payload: { simulate: { durationMs: 2, gpuHours: 0.25 } } },
    })));
    const sim = createGpuSim({ config: t.config, workerConnection: t.connection(), log: t.log, concurrency: 32 });
    const start = () => [gatekeeper(), t.spawn('reconciler', { RECONCILE_INTERVAL_MS: '20', SWEEP_INTERVAL_MS: '500' })];
    try {
      const first = start();
      const done = () => intake.getCompletedCount();
      await eventually(done, (n) => n >= 2_000, 60_000);
      for (const c of first) c.kill('SIGKILL');
      await Promise.all(first.map(waitExit));
      expect(await done()).toBeLessThan(10_000);

      start();
      // (The completed set keeps the newest 10,000, so wait for nothing left to do instead.)
      const pending = async () => Object.values(await intake.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'failed')).reduce((a, b) => a + b, 0);
      await eventually(pending, (n) => n === 0, 120_000);
      await eventually(() => t.accounting.openCount(), (n) => n === 0, 60_000);
      await eventually(() => t.redis.xlen(t.accounting.keys.ledger), (n) => n === 0, 60_000);
      const o = await readOutcomes(t);
      expect(assertExactlyOnce(o)).toEqual([]);
      const ten = await t.accounting.readScope('project:ten');
      const admittedTen = (await t.pool.query(`SELECT count(*)::int AS n FROM ledger WHERE kind = 'reserve' AND project = 'ten'`)).rows[0].n;
      expect(admittedTen).toBeGreaterThanOrEqual(8_000); // more if early jobs settled at a quarter of their estimate first
      expect(ten).toMatchObject({ reservedGpuMs: 0, usedGpuMs: admittedTen * hoursToGpuMs(0.25) });
      expect((await new DriftAudit(t.redis, t.accounting, t.pool).run()).drift).toEqual([]);
    } finally {
      await sim.close();
    }
  }, 240_000);
});

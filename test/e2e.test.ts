/**
 * The core story end to end, in one process with real Redis and Postgres:
 * budget 10 GPU-h, 15 one-hour jobs -> 10 on gpu-exec, 5 held with a reason;
 * simulated workers report 0.5 h each -> used exactly 5.0, reserved 0, and the
 * Postgres ledger holds one reserve and one settle per admitted job.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { createGatekeeper, type Gatekeeper } from '../workers/gatekeeper.ts';
import { createReconciler, type Reconciler } from '../workers/reconciler.ts';
import { createGpuSim } from '../workers/gpu-sim.ts';
import { createWaker } from '../workers/waker.ts';
import { LedgerWriter } from '../src/ledger/writer.ts';
import { systemClock } from '../src/clock.ts';
import { hoursToGpuMs } from '../src/units.ts';

let t: TestEnv;
let gk: Gatekeeper;
let rec: Reconciler;
let writer: LedgerWriter;
let intake: Queue;
let exec: Queue;
let held: Queue;

beforeAll(async () => {
  t = await createTestEnv({ RECONCILE_INTERVAL_MS: '50' }, { liveClock: true });
  gk = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: systemClock });
  rec = createReconciler({ config: t.config, connection: t.redis, log: t.log, clock: systemClock });
  writer = new LedgerWriter(t.connection(), t.accounting.keys.ledger, t.pool, t.log, { blockMs: 50 });
  const q = { connection: t.redis, prefix: t.config.queuePrefix };
  intake = new Queue(t.config.queues.intake, q);
  exec = new Queue(t.config.queues.exec, q);
  held = new Queue(t.config.queues.held, q);
});

afterAll(async () => {
  await gk?.close();
  await rec?.close();
  await writer?.stop();
  await Promise.all([intake?.close(), exec?.close(), held?.close()]);
  await t?.close();
});

describe('budget 10 GPU-h, 15 one-hour jobs', () => {
  it('admits exactly 10, holds 5 with a reason, and settles actual hours exactly', async () => {
    await t.budgets.set('alpha', hoursToGpuMs(10));
    await intake.addBulk(
      Array.from({ length: 15 }, (_, i) => ({
        name: `render-${i}`,
        data: { project: 'alpha', user: 'ana', estimatedGpuHours: 1, payload: { simulate: { durationMs: 20, gpuHours: 0.5 } } },
      })),
    );
    await eventually(() => intake.getJobCounts('completed'), (c) => c.completed === 15);

    expect(await exec.count()).toBe(10);
    // Held in line by submission order; each reason names the budget and the numbers
    // (and, for all but the first held, how many older held jobs are ahead).
    const line = await t.accounting.heldIds('alpha');
    expect(line).toHaveLength(5);
    expect(line).toEqual([...line].sort((a, b) => Number(a) - Number(b)));
    const reasons = await Promise.all(line.map(async (id) => (await held.getJob(`intake-${id}`))!.data.held.reason as string));
    const full = 'project alpha: 10.0 of 10.0 GPU-h used or reserved; job needs 1.0';
    expect(reasons.filter((r) => r === full)).toHaveLength(1);
    for (const r of reasons) expect(r).toMatch(/^project alpha: 10\.0 of 10\.0 GPU-h used or reserved; job needs 1\.0( \(behind [1-4] older held jobs? waiting for project alpha\))?$/);
    const before = (await t.budgets.get('alpha'))!;
    expect(before).toMatchObject({ usedGpuMs: 0, reservedGpuMs: hoursToGpuMs(10), remainingGpuMs: 0 });

    const sim = createGpuSim({ config: t.config, workerConnection: t.connection(), log: t.log, concurrency: 10 });
    rec.start();
    await writer.start();
    try {
      const after = await eventually(() => t.budgets.get('alpha'), (b) => b!.reservedGpuMs === 0);
      expect(after!.usedGpuMs).toBe(hoursToGpuMs(5));
      expect(after!.remainingGpuMs).toBe(hoursToGpuMs(5));
    } finally {
      await sim.close();
    }

    const rows = await eventually(
      async () => (await t.pool.query('SELECT kind, count(*)::int AS n, sum(coalesce(actual_gpu_ms, 0))::bigint AS actual FROM ledger GROUP BY kind ORDER BY kind')).rows,
      (r) => r.length === 2 && r[1].n === 10,
    );
    expect(rows).toEqual([
      { kind: 'reserve', n: 10, actual: 0 },
      { kind: 'settle', n: 10, actual: hoursToGpuMs(5) },
    ]);
  });

  it("completes an admitted job's intake record with where it went, kept compact", async () => {
    await t.budgets.set('beta', hoursToGpuMs(1));
    const job = await intake.add('small', { project: 'beta', user: 'bo', estimatedGpuHours: 1 });
    await eventually(() => job.getState(), (s) => s === 'completed');
    expect((await intake.getJob(job.id!))!.returnvalue).toEqual({ outcome: 'admitted', execJobId: `intake-${job.id}` });
    // What was reserved is on the exec job it names.
    expect((await exec.getJob(`intake-${job.id}`))!.data.admission).toMatchObject({ intakeJobId: job.id, reservedGpuHours: 1 });
    // A small job's hash stays a listpack (every value <= 64 bytes; the name
    // is Redis 7's): a longer result made Redis convert every completed
    // intake job (see IntakeResult).
    expect(await t.redis.object('ENCODING', intake.toKey(job.id!))).toBe('listpack');
  });

  it('starts the 5 held jobs by itself when actual hours come in under estimates: no admin release', async () => {
    await t.budgets.set('gamma', hoursToGpuMs(10));
    const rec2 = createReconciler({ config: t.config, connection: t.redis, log: t.log, clock: systemClock });
    const waker = createWaker({ config: t.config, connection: t.redis, pool: t.pool, log: t.log, clock: systemClock });
    const sim = createGpuSim({ config: t.config, workerConnection: t.connection(), log: t.log, concurrency: 10 });
    rec2.start();
    await waker.start();
    try {
      const jobs = await intake.addBulk(
        Array.from({ length: 15 }, (_, i) => ({
          name: `render-${i}`,
          data: { project: 'gamma', user: 'gus', estimatedGpuHours: 1, payload: { simulate: { durationMs: 20, gpuHours: 0.5 } } },
        })),
      );
      // All 15 ran and settled: 15 x 0.5 h used, nothing reserved, nobody held, nobody released by hand.
      const b = await eventually(() => t.budgets.get('gamma'), (v) => v!.usedGpuMs === hoursToGpuMs(7.5) && v!.reservedGpuMs === 0);
      expect(b!.remainingGpuMs).toBe(hoursToGpuMs(2.5));
      expect(await t.accounting.heldIds('gamma')).toEqual([]);
      for (const j of jobs) expect((await exec.getJob(`intake-${j.id}`))?.data.project).toBe('gamma');
      const audit = await t.pool.query(`SELECT count(*)::int AS n FROM audit WHERE action = 'held.release'`);
      expect(audit.rows[0].n).toBe(0);
    } finally {
      await sim.close();
      await waker.close();
      await rec2.close();
    }
  });
});

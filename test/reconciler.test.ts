/**
 * Settlement: actual GPU time replaces each reservation exactly once, from
 * the job's own record (never from QueueEvents), whatever order or number of
 * times the reconciler looks; vanished jobs are swept, never leaked; admitted
 * work finishes even when its budget is cut to zero.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue, Worker } from 'bullmq';
import { createTestEnv, eventually, TestClock, type TestEnv } from './support/env.ts';
import { createGatekeeper, type Gatekeeper } from '../workers/gatekeeper.ts';
import { createReconciler, type Reconciler } from '../workers/reconciler.ts';
import { createGpuSim } from '../workers/gpu-sim.ts';
import { systemClock } from '../src/clock.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { execJobId } from '../queues/names.ts';
import { Metrics } from '../src/metrics.ts';

let t: TestEnv;
let gk: Gatekeeper;
let rec: Reconciler;
let intake: Queue;
let exec: Queue;
const clock = new TestClock(Date.now());

beforeAll(async () => {
  t = await createTestEnv({ VANISHED_GRACE_MS: '60000', EXEC_RETAIN_FINISHED_MS: '3600000' }, { liveClock: true });
  gk = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: systemClock });
  rec = createReconciler({ config: t.config, connection: t.redis, log: t.log, clock });
  intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
  exec = new Queue(t.config.queues.exec, { connection: t.redis, prefix: t.config.queuePrefix });
});
afterAll(async () => {
  await gk?.close();
  await rec?.close();
  await Promise.all([intake?.close(), exec?.close()]);
  await t?.close();
});

/** Submit jobs and wait until the gatekeeper has placed them all. */
async function submit(project: string, jobs: { hours: number; gpus?: number; payload?: unknown }[]): Promise<string[]> {
  const added = await intake.addBulk(
    jobs.map((j, i) => ({
      name: `${project}-${i}`,
      data: { project, user: 'u', estimatedGpuHours: j.hours, gpus: j.gpus ?? 1, payload: j.payload },
    })),
  );
  await Promise.all(added.map((j) => eventually(() => j.isCompleted(), Boolean)));
  return added.map((j) => j.id!);
}

/** Run GPU jobs with a worker whose behaviour the test decides. */
async function runExec(ids: string[], handler: ConstructorParameters<typeof Worker>[1]): Promise<void> {
  const w = new Worker(t.config.queues.exec, handler, { connection: t.connection(), prefix: t.config.queuePrefix, concurrency: 8 });
  try {
    await eventually(
      () => Promise.all(ids.map((id) => exec.getJobState(execJobId(id)))),
      (states) => states.every((s) => s === 'completed' || s === 'failed'),
    );
  } finally {
    await w.close();
  }
}

describe('reconciler', () => {
  it('charges reported hours, or wall time x gpus, or the time a failed job ran', async () => {
    await t.budgets.set('mix', hoursToGpuMs(100));
    const [reported, silent, failing] = await submit('mix', [{ hours: 4 }, { hours: 4, gpus: 3 }, { hours: 4, gpus: 2 }]);
    await runExec([reported!, silent!, failing!], async (job) => {
      if (job.id === execJobId(reported!)) return { gpuHours: 2.5 };
      await new Promise((r) => setTimeout(r, 30));
      if (job.id === execJobId(failing!)) throw new Error('CUDA out of memory');
      return undefined;
    });
    expect(await rec.tick()).toBe(3);

    const wall = async (id: string) => {
      const j = (await exec.getJob(execJobId(id)))!;
      return j.finishedOn! - j.processedOn!;
    };
    const expected = hoursToGpuMs(2.5) + (await wall(silent!)) * 3 + (await wall(failing!)) * 2;
    expect(await t.accounting.readScope('project:mix')).toMatchObject({ usedGpuMs: expected, reservedGpuMs: 0 });
  });

  it('counts once however many times and in whatever order it looks', async () => {
    await t.budgets.set('once', hoursToGpuMs(10));
    const ids = await submit('once', [{ hours: 2 }, { hours: 2 }, { hours: 2 }]);
    await runExec(ids, async () => ({ gpuHours: 0.5 }));
    const other = createReconciler({ config: t.config, connection: t.redis, log: t.log, clock });
    try {
      // Two reconcilers looking at once, each by its fast path and its sweep: each job settled by one look only.
      const [a, b, c, d] = await Promise.all([rec.tick(), other.sweep(), other.tick(), rec.sweep()]);
      expect(a + b.settled + c + d.settled).toBe(3);
      const before = await t.accounting.readScope('project:once');
      expect(before).toMatchObject({ usedGpuMs: hoursToGpuMs(1.5), reservedGpuMs: 0 });
      // And again, one after another: nothing left to count.
      expect(await rec.tick()).toBe(0);
      expect(await rec.sweep()).toMatchObject({ settled: 0, vanished: 0 });
      expect(await rec.tick()).toBe(0);
      expect(await other.tick()).toBe(0);
      expect(await t.accounting.readScope('project:once')).toEqual(before);
    } finally {
      await other.close();
    }
  });

  it('settles jobs that finished while it was down, on its first pass', async () => {
    await t.budgets.set('late', hoursToGpuMs(10));
    const ids = await submit('late', [{ hours: 1 }, { hours: 1 }]);
    await runExec(ids, async () => ({ gpuHours: 0.25 }));
    const fresh = createReconciler({ config: t.config, connection: t.redis, log: t.log, clock });
    try {
      expect(await fresh.tick()).toBe(2);
    } finally {
      await fresh.close();
    }
    expect(await t.accounting.readScope('project:late')).toMatchObject({ usedGpuMs: hoursToGpuMs(0.5), reservedGpuMs: 0 });
  });

  it('settles the other jobs when one job\'s settle fails, and that one once it can be', async () => {
    await t.budgets.set('bad-record', hoursToGpuMs(10));
    const [bad, good] = await submit('bad-record', [{ hours: 2 }, { hours: 2 }]);
    await runExec([bad!, good!], async () => ({ gpuHours: 0.5 }));
    // A record settle refuses (a charge without its rate): the script answers an error for this job only.
    const key = t.accounting.keys.reservation(bad!);
    const rate = await t.redis.hget(key, 'rate');
    await t.redis.hdel(key, 'rate');
    const metrics = new Metrics();
    const own = createReconciler({ config: t.config, connection: t.redis, log: t.log, clock, metrics });
    try {
      expect(await own.tick()).toBe(1);
      expect([...(await t.accounting.whichOpen([bad!, good!]))]).toEqual([bad]);
      expect(await t.accounting.readScope('project:bad-record')).toMatchObject({ usedGpuMs: hoursToGpuMs(0.5), reservedGpuMs: hoursToGpuMs(2) });
      expect((await metrics.registry.getSingleMetricAsString('gatekeeper_settle_failures_total')).trim().split('\n').at(-1)).toBe('gatekeeper_settle_failures_total 1');
      await t.redis.hset(key, 'rate', rate!);
      expect(await own.sweep()).toMatchObject({ settled: 1 });
      expect(await t.accounting.readScope('project:bad-record')).toMatchObject({ usedGpuMs: hoursToGpuMs(1), reservedGpuMs: 0 });
    } finally {
      await own.close();
    }
  });

  it('sweeps a reservation whose GPU job vanished: settled at its estimate after the grace period', async () => {
    await t.budgets.set('gone', hoursToGpuMs(10));
    const [id] = await submit('gone', [{ hours: 3 }]);
    await exec.remove(execJobId(id!));
    clock.t = Date.now();
    expect(await rec.sweep()).toMatchObject({ vanished: 0 }); // still within grace
    clock.advance(120_000);
    expect(await rec.sweep()).toMatchObject({ vanished: 1 });
    expect(await t.accounting.readScope('project:gone')).toMatchObject({ usedGpuMs: hoursToGpuMs(3), reservedGpuMs: 0 });
    expect(await t.accounting.whichOpen([id!])).toEqual(new Set());
  });

  it('never removes or cancels admitted work when its budget is cut to zero', async () => {
    await t.budgets.set('cut', hoursToGpuMs(10));
    const ids = await submit('cut', [{ hours: 2 }, { hours: 2 }, { hours: 2 }]);
    await t.budgets.set('cut', 0);
    expect(await exec.getJobCountByTypes('waiting')).toBeGreaterThanOrEqual(3);
    const sim = createGpuSim({ config: t.config, workerConnection: t.connection(), log: t.log, concurrency: 3 });
    try {
      await eventually(
        () => Promise.all(ids.map((id) => exec.getJobState(execJobId(id)))),
        (s) => s.every((x) => x === 'completed'),
      );
    } finally {
      await sim.close();
    }
    await rec.tick();
    const b = (await t.budgets.get('cut'))!;
    expect(b.reservedGpuMs).toBe(0);
    expect(b.usedGpuMs).toBeGreaterThan(0);
    expect(b.remainingGpuMs).toBe(-b.usedGpuMs);
  });

  it('removes settled GPU jobs only after their retention', async () => {
    await t.budgets.set('kept', hoursToGpuMs(10));
    const ids = await submit('kept', [{ hours: 1 }, { hours: 1 }]);
    await runExec(ids, async () => ({ gpuHours: 0.5 }));
    /** One whole pass (fast path, sweep, clean) of a reconciler started with this retention: close() lets the pass under way finish. */
    const onePass = async (execRetainFinishedMs: number) => {
      const r = createReconciler({ config: { ...t.config, execRetainFinishedMs }, connection: t.redis, log: t.log, clock });
      r.start();
      await r.close();
    };
    const states = () => Promise.all(ids.map((id) => exec.getJobState(execJobId(id))));
    expect(await states()).toEqual(['completed', 'completed']);

    // Settled by the pass, but finished well within an hour: still on gpu-exec.
    await onePass(3_600_000);
    expect(await t.accounting.whichOpen(ids)).toEqual(new Set());
    expect(await states()).toEqual(['completed', 'completed']);
    // Past a retention of 0: removed, and not charged again as vanished.
    await onePass(0);
    expect(await states()).toEqual(['unknown', 'unknown']);
    clock.advance(120_000); // past VANISHED_GRACE_MS
    expect(await rec.sweep()).toMatchObject({ vanished: 0 });
    expect(await t.accounting.readScope('project:kept')).toMatchObject({ usedGpuMs: hoursToGpuMs(1), reservedGpuMs: 0 });
    expect(await t.accounting.openCount()).toBe(0);
  });
});

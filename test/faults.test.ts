/**
 * Faults under load (real processes and servers on loopback, each bounded):
 * SCRIPT FLUSH again and again during a burst; a GPU worker SIGKILLed mid-job
 * (its jobs stall, run again elsewhere, are counted once); Redis itself
 * SIGKILLed mid-burst and restarted from its append-only file. After each,
 * every job is in exactly one state and the drift audit finds nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { createTestEnv, eventually, waitExit, type TestEnv } from './support/env.ts';
import { startPipeline } from './support/pipeline.ts';
import { assertExactlyOnce, readOutcomes } from './support/outcomes.ts';
import { startLocalRedis } from './support/infra.ts';
import { DriftAudit } from '../src/accounting/drift.ts';
import { systemClock } from '../src/clock.ts';
import { createGatekeeper } from '../workers/gatekeeper.ts';
import { createReconciler } from '../workers/reconciler.ts';
import { LedgerWriter } from '../src/ledger/writer.ts';
import { hoursToGpuMs } from '../src/units.ts';

const H = hoursToGpuMs(1);

/**
 * After a fault: every job of the burst (1 h estimated, 0.5 h actual) ended in
 * exactly one state, at least the budget's worth were admitted (more if early
 * ones settled at half their estimate before the line formed), every admitted
 * job is counted at what it reported, and the ledger agrees with Redis.
 */
async function expectSettledExactly(t: TestEnv, intake: Queue, o: { jobs: number; budgetJobs: number; project: string }): Promise<void> {
  await eventually(() => intake.getCompletedCount(), (n) => n === o.jobs, 60_000).catch(async (e: Error) => {
    const stuck = await intake.getJobs(['failed', 'delayed', 'active', 'wait', 'prioritized'], 0, 4);
    throw new Error(`${e.message}; counts ${JSON.stringify(await intake.getJobCounts())}; e.g. ${JSON.stringify(stuck.map((j) => [j.id, j.failedReason, j.attemptsStarted, j.stacktrace?.[0]?.slice(0, 300)]))}`);
  });
  await eventually(() => t.accounting.openCount(), (n) => n === 0, 60_000);
  await eventually(() => t.redis.xlen(t.accounting.keys.ledger), (n) => n === 0, 30_000);
  const out = await readOutcomes(t);
  expect(assertExactlyOnce(out)).toEqual([]);
  expect(out.admitted.length).toBeGreaterThanOrEqual(o.budgetJobs);
  expect(out.admitted.length + out.held.length).toBe(o.jobs);
  // Each admitted job counted once: 0.5 h if its GPU job reported it; if the GPU worker's own
  // bookkeeping failed the job (NOSCRIPT hits workers too), the time it ran.
  const exec = new Queue(t.config.queues.exec, { connection: t.redis, prefix: t.config.queuePrefix });
  const ran = await exec.getJobs(['completed', 'failed'], 0, -1);
  await exec.close();
  expect(ran).toHaveLength(out.admitted.length);
  const expected = ran.reduce((sum, j) => sum + (j.finishedOn && j.failedReason ? j.finishedOn - j.processedOn! : 0.5 * H), 0);
  expect((await t.accounting.readScope(`project:${o.project}`)).usedGpuMs).toBe(expected);
  expect((await new DriftAudit(t.redis, t.accounting, t.pool).run()).drift).toEqual([]);
}

describe('SCRIPT FLUSH during load', () => {
  // Its own Redis: a flush is server-wide, and other test files share the main one.
  const dir = mkdtempSync(join(os.tmpdir(), 'gk-flush-'));
  let redisServer: Awaited<ReturnType<typeof startLocalRedis>>;
  let t: TestEnv;
  beforeAll(async () => {
    redisServer = await startLocalRedis(dir);
    // A short lock: a job whose lock renewal met NOSCRIPT runs again within seconds.
    t = await createTestEnv({ RECONCILE_INTERVAL_MS: '20', SIM_CONCURRENCY: '32', GATEKEEPER_LOCK_MS: '2000', REDIS_URL: redisServer.url }, { liveClock: true });
  });
  afterAll(async () => {
    await t?.close();
    await redisServer?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('loses nothing and counts exactly while scripts keep disappearing', async () => {
    const pipeline = await startPipeline(t);
    const intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
    try {
      await t.budgets.set('flush', 800 * H);
      // Flush every 10 ms for the first second of the burst (or until it is through).
      const atFlush: number[] = [];
      const flusher = setInterval(() => {
        void t.redis.script('FLUSH').then(() => intake.getCompletedCount()).then((n) => atFlush.push(n));
      }, 10);
      await intake.addBulk(Array.from({ length: 1000 }, () => ({ name: 'f', data: { project: 'flush', user: 'fay', estimatedGpuHours: 1, payload: { simulate: { durationMs: 5, gpuHours: 0.5 } } } })));
      await eventually(() => intake.getCompletedCount(), (n) => n >= 1000, 1_000).catch(() => undefined);
      clearInterval(flusher);
      expect(atFlush.filter((n) => n > 0 && n < 1000).length).toBeGreaterThan(2); // flushes landed mid-burst
      // (Before the gatekeeper retried jobs its bookkeeping failed, ~6 % ended failed with NOSCRIPT here.)
      await expectSettledExactly(t, intake, { jobs: 1000, budgetJobs: 800, project: 'flush' });
    } finally {
      await pipeline.close();
      await intake.close();
    }
  }, 90_000);
});

describe('a GPU worker SIGKILLed mid-job', () => {
  let t: TestEnv;
  beforeAll(async () => {
    t = await createTestEnv({ RECONCILE_INTERVAL_MS: '20' }, { liveClock: true });
  });
  afterAll(async () => t?.close());

  it('its jobs run again elsewhere and are counted once', async () => {
    const gk = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: systemClock });
    const rec = createReconciler({ config: t.config, connection: t.redis, log: t.log, clock: systemClock });
    rec.start();
    const writer = new LedgerWriter(t.connection(), t.accounting.keys.ledger, t.pool, t.log, { blockMs: 20 });
    await writer.start();
    const intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
    const exec = new Queue(t.config.queues.exec, { connection: t.redis, prefix: t.config.queuePrefix });
    const sim = () => t.spawn('gpu-sim', { SIM_LOCK_MS: '1000', SIM_CONCURRENCY: '8' });
    try {
      await t.budgets.set('gpu', 100 * H);
      await intake.addBulk(Array.from({ length: 8 }, () => ({ name: 'g', data: { project: 'gpu', user: 'gus', estimatedGpuHours: 2, payload: { simulate: { durationMs: 1_500, gpuHours: 1.5 } } } })));
      const first = sim();
      await eventually(() => exec.getActiveCount(), (n) => n === 8, 20_000);
      first.kill('SIGKILL'); // all eight mid-job
      await waitExit(first);
      sim();
      await eventually(() => exec.getCompletedCount(), (n) => n === 8, 30_000);
      await eventually(() => t.accounting.openCount(), (n) => n === 0, 10_000);
      expect((await t.budgets.get('gpu'))!.usedGpuMs).toBe(8 * 1.5 * H); // each counted once, at what it reported
      await eventually(() => t.redis.xlen(t.accounting.keys.ledger), (n) => n === 0);
      const settles = await t.pool.query(`SELECT count(*)::int AS n, count(DISTINCT job_id)::int AS jobs FROM ledger WHERE kind = 'settle'`);
      expect(settles.rows[0]).toEqual({ n: 8, jobs: 8 });
      const stalled = await Promise.all((await exec.getJobs(['completed'])).map((j) => j.attemptsStarted ?? 0));
      expect(stalled.every((n) => n >= 2)).toBe(true); // they really ran twice
      expect((await new DriftAudit(t.redis, t.accounting, t.pool).run()).drift).toEqual([]);
    } finally {
      await gk.close();
      await rec.close();
      await writer.stop();
      await Promise.all([intake.close(), exec.close()]);
    }
  }, 60_000);
});

describe('Redis SIGKILLed mid-burst and restarted from its AOF', () => {
  const dir = mkdtempSync(join(os.tmpdir(), 'gk-aof-'));
  const args = ['--appendonly', 'yes', '--appendfsync', 'always'];
  let redisServer: Awaited<ReturnType<typeof startLocalRedis>>;
  let t: TestEnv;
  beforeAll(async () => {
    redisServer = await startLocalRedis(dir, args);
    // A short lock: jobs the crash caught in flight run again within seconds.
    t = await createTestEnv({ RECONCILE_INTERVAL_MS: '20', SIM_CONCURRENCY: '16', GATEKEEPER_LOCK_MS: '1500', SIM_LOCK_MS: '1500', REDIS_URL: redisServer.url }, { liveClock: true });
  });
  afterAll(async () => {
    await t?.close();
    await redisServer?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('comes back with every job in one state and counters equal to the ledger', async () => {
    const pipeline = await startPipeline(t);
    const intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
    try {
      await t.budgets.set('aof', 400 * H);
      await intake.addBulk(Array.from({ length: 500 }, () => ({ name: 'a', data: { project: 'aof', user: 'al', estimatedGpuHours: 1, payload: { simulate: { durationMs: 5, gpuHours: 0.5 } } } })));
      await eventually(() => intake.getCompletedCount(), (n) => n >= 100, 30_000);
      // Restart once a client has tried to reconnect and been refused: an outage the clients live
      // through, not one a restart hides between two of their attempts.
      let refused = false;
      const onError = (e: NodeJS.ErrnoException) => void (refused ||= e.code === 'ECONNREFUSED');
      t.redis.on('error', onError);
      redisServer.proc.kill('SIGKILL');
      await waitExit(redisServer.proc);
      await eventually(async () => refused, Boolean, 10_000);
      t.redis.off('error', onError);
      redisServer = await startLocalRedis(dir, args, redisServer.port); // same data, same port: clients reconnect
      await expectSettledExactly(t, intake, { jobs: 500, budgetJobs: 400, project: 'aof' });
    } finally {
      await pipeline.close();
      await intake.close();
    }
  }, 120_000);
});

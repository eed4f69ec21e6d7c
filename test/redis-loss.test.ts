/**
 * Redis lost entirely (FLUSHALL: counters, reservations, limits, the ledger
 * stream and the queues themselves), on its own Redis since a flush is
 * server-wide. `rebuild` restores the hot state from the Postgres ledger;
 * with gpu-exec gone too, the two jobs that were running have vanished, and
 * the reconciler's sweep charges them their estimate after the grace, once;
 * new jobs get ids the ledger has never seen; admission then resumes against
 * the right numbers, and the drift audit is clean throughout.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { startPipeline } from './support/pipeline.ts';
import { startLocalRedis } from './support/infra.ts';
import { DriftAudit } from '../src/accounting/drift.ts';
import { rebuild } from '../src/accounting/rebuild.ts';
import { hoursToGpuMs } from '../src/units.ts';

const H = hoursToGpuMs(1);
const dir = mkdtempSync(join(os.tmpdir(), 'gk-loss-'));
let redisServer: Awaited<ReturnType<typeof startLocalRedis>>;
let t: TestEnv;

beforeAll(async () => {
  redisServer = await startLocalRedis(dir);
  t = await createTestEnv({ REDIS_URL: redisServer.url, RECONCILE_INTERVAL_MS: '20', SWEEP_INTERVAL_MS: '200', VANISHED_GRACE_MS: '1000' }, { liveClock: true });
});
afterAll(async () => {
  await t?.close();
  await redisServer?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('Redis lost entirely', () => {
  it('rebuild restores the counters from the ledger, vanished jobs are charged once, admission resumes', async () => {
    const pipeline = await startPipeline(t);
    const q = (name: string) => new Queue(name, { connection: t.redis, prefix: t.config.queuePrefix });
    const [intake, held] = [q(t.config.queues.intake), q(t.config.queues.held)];
    const audit = new DriftAudit(t.redis, t.accounting, t.pool);
    try {
      await t.budgets.set('loss', 10 * H);
      const quick = { simulate: { durationMs: 5, gpuHours: 0.5 } };
      const long = { simulate: { durationMs: 15_000, gpuHours: 1 } }; // still running when Redis goes
      await intake.addBulk([
        ...Array.from({ length: 4 }, () => ({ name: 'q', data: { project: 'loss', user: 'lu', estimatedGpuHours: 1, payload: quick } })),
        ...Array.from({ length: 2 }, () => ({ name: 'l', data: { project: 'loss', user: 'lu', estimatedGpuHours: 2, payload: long } })),
      ]);
      await eventually(() => t.budgets.get('loss'), (b) => b!.usedGpuMs === 2 * H && b!.reservedGpuMs === 4 * H);
      await eventually(() => t.redis.xlen(t.accounting.keys.ledger), (n) => n === 0); // Postgres has every entry

      await t.redis.flushall();
      expect(await t.redis.exists(t.accounting.keys.scope('project:loss'), t.accounting.keys.open)).toBe(0);

      const report = await rebuild({ redis: t.redis, accounting: t.accounting, budgets: t.budgets, pool: t.pool, heldQueue: held, intakeQueue: intake, settledRetainSeconds: t.config.settledRetainSeconds, now: Date.now() });
      expect(report).toMatchObject({ openReservations: 2, settledReservations: 4, heldJobs: 0 });
      expect(await t.budgets.get('loss')).toMatchObject({ limitGpuMs: 10 * H, usedGpuMs: 2 * H, reservedGpuMs: 4 * H });
      expect((await audit.run()).drift).toEqual([]);

      // Their GPU jobs went with Redis: after the grace each is charged its estimate, once.
      await eventually(() => t.budgets.get('loss'), (b) => b!.reservedGpuMs === 0, 20_000);
      expect((await t.budgets.get('loss'))!.usedGpuMs).toBe(6 * H);

      // Admission resumes against the rebuilt numbers: 4 h left, so 4 of 5 one-hour jobs.
      // (BullMQ's job-id counter went with Redis: rebuild moved it past the ledger's ids,
      // or job "1" would be taken for a retry of the old job 1 and never run.)
      const fresh = await intake.addBulk(Array.from({ length: 5 }, () => ({ name: 'n', data: { project: 'loss', user: 'lu', estimatedGpuHours: 1, payload: quick } })));
      expect(fresh.map((j) => Number(j.id))).toEqual([7, 8, 9, 10, 11]);
      await eventually(() => t.budgets.get('loss'), (b) => b!.usedGpuMs === 8 * H && b!.reservedGpuMs === 0, 20_000);
      expect(await t.accounting.heldIds('loss')).toHaveLength(1);
      await eventually(() => t.redis.xlen(t.accounting.keys.ledger), (n) => n === 0);
      expect((await audit.run()).drift).toEqual([]);
    } finally {
      await pipeline.close();
      await Promise.all([intake.close(), held.close()]);
    }
  }, 60_000);
});

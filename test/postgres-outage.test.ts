/**
 * Postgres goes away for 30 s while admissions go on (its own Postgres, real Redis):
 * the gatekeeper and reconciler need only Redis, so jobs keep being admitted
 * and settled; the ledger entries wait in the Redis stream; when Postgres is
 * back the writer catches up and every job is in the ledger exactly once —
 * one reserve and one settle each — and the drift audit finds nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { startLocalPostgres, unlinkMatching } from './support/infra.ts';
import { eventually } from './support/env.ts';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { createRedis } from '../queues/connection.ts';
import { createPool, type Pool } from '../src/db/pool.ts';
import { migrate } from '../src/db/migrate.ts';
import { Accounting } from '../src/accounting/counters.ts';
import { DriftAudit } from '../src/accounting/drift.ts';
import { LedgerWriter } from '../src/ledger/writer.ts';
import { systemClock } from '../src/clock.ts';
import { createGatekeeper } from '../workers/gatekeeper.ts';
import { createReconciler } from '../workers/reconciler.ts';
import { createGpuSim } from '../workers/gpu-sim.ts';
import { hoursToGpuMs } from '../src/units.ts';

const OUTAGE_MS = 30_000;
const WAVE_MS = 5_000;
const dir = mkdtempSync(join(os.tmpdir(), 'gk-outage-'));
let pgServer: Awaited<ReturnType<typeof startLocalPostgres>>;
let pool: Pool;
const conns: Redis[] = [];
const closers: (() => Promise<unknown>)[] = [];
let prefix: string;

afterAll(async () => {
  for (const c of closers.reverse()) await c().catch(() => {});
  if (conns[0]) {
    await unlinkMatching(conns[0], `${prefix}:*`);
    await unlinkMatching(conns[0], `gk:{${prefix}}:*`);
  }
  await Promise.all(conns.map((c) => c.quit().catch(() => {})));
  await pool?.end().catch(() => {});
  await pgServer?.stop().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

describe('Postgres outage', () => {
  let intake: Queue;
  let accounting: Accounting;
  let writer: LedgerWriter;

  beforeAll(async () => {
    pgServer = await startLocalPostgres(dir);
    prefix = `t${randomBytes(5).toString('hex')}`;
    const config = loadConfig({ REDIS_URL: inject('redisUrl'), DATABASE_URL: pgServer.url, QUEUE_PREFIX: prefix, RECONCILE_INTERVAL_MS: '20', SIM_CONCURRENCY: '16' });
    const log = createLogger('silent');
    const conn = () => {
      const c = createRedis(config.redisUrl);
      conns.push(c);
      return c;
    };
    const redis = conn();
    pool = createPool(pgServer.url, 4);
    await migrate(pool);
    accounting = new Accounting(redis, prefix, config.settledRetainSeconds);
    await accounting.definitions.setLimit('project:out', hoursToGpuMs(10_000));
    const gk = createGatekeeper({ config, workerConnection: conn(), connection: redis, log, clock: systemClock });
    const sim = createGpuSim({ config, workerConnection: conn(), log });
    const rec = createReconciler({ config, connection: redis, log, clock: systemClock });
    rec.start();
    writer = new LedgerWriter(conn(), accounting.keys.ledger, pool, log, { blockMs: 20 });
    await writer.start();
    intake = new Queue(config.queues.intake, { connection: redis, prefix });
    closers.push(() => gk.close(), () => sim.close(), () => rec.close(), () => writer.stop(), () => intake.close());
  });

  it('loses no ledger entry and writes none twice', async () => {
    const job = { project: 'out', user: 'ola', estimatedGpuHours: 1, payload: { simulate: { durationMs: 5, gpuHours: 0.25 } } };
    const submit = (n: number) => intake.addBulk(Array.from({ length: n }, () => ({ name: 'j', data: job })));
    await submit(100);
    await eventually(() => accounting.openCount(), (n) => n === 0);

    // Down for OUTAGE_MS (issue 7: 30 s) while admissions go on: a wave of
    // jobs every WAVE_MS, each admitted, run and settled with Postgres away.
    await pgServer.stop();
    const downAt = Date.now();
    for (let wave = 1; wave <= OUTAGE_MS / WAVE_MS; wave++) {
      await submit(300 / (OUTAGE_MS / WAVE_MS));
      await eventually(() => intake.getCompletedCount(), (n) => n === 100 + (wave * 300) / (OUTAGE_MS / WAVE_MS));
      await eventually(() => accounting.openCount(), (n) => n === 0);
      expect(await conns[0]!.xlen(accounting.keys.ledger)).toBeGreaterThan(0); // the entries wait in Redis
      // A timer may fire a millisecond early by Date.now(): wait until it is really time.
      while (Date.now() < downAt + wave * WAVE_MS) await new Promise((r) => setTimeout(r, downAt + wave * WAVE_MS - Date.now() + 1));
    }
    expect(Date.now() - downAt).toBeGreaterThanOrEqual(OUTAGE_MS);

    await pgServer.start();
    await eventually(() => conns[0]!.xlen(accounting.keys.ledger), (n) => n === 0, 30_000);
    const rows = await pool.query(`SELECT kind, count(*)::int AS n, count(DISTINCT job_id)::int AS jobs FROM ledger GROUP BY kind ORDER BY kind`);
    expect(rows.rows).toEqual([{ kind: 'reserve', n: 400, jobs: 400 }, { kind: 'settle', n: 400, jobs: 400 }]);
    expect((await new DriftAudit(conns[0]!, accounting, pool).run()).drift).toEqual([]);
    expect((await accounting.readScope('project:out')).usedGpuMs).toBe(hoursToGpuMs(100));
  }, OUTAGE_MS + 60_000);
});

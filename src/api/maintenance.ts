/**
 * Keeping Redis honest:
 *   GET  /drift     Redis counters against the Postgres ledger at one stream position (viewer)
 *   POST /rebuild   restore Redis' hot state from Postgres and gpu-held (admin, audited;
 *                   409 while the ledger stream holds entries Postgres lacks)
 */
import { Router } from 'express';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Pool } from '../db/pool.ts';
import type { Clock } from '../clock.ts';
import type { Accounting } from '../accounting/counters.ts';
import type { Budgets } from '../accounting/budgets.ts';
import type { HeldJobData } from '../../queues/contract.ts';
import { DriftAudit } from '../accounting/drift.ts';
import { rebuild, RebuildRefused } from '../accounting/rebuild.ts';
import { recordAudit } from '../audit/change.ts';
import type { Logger } from '../log.ts';
import { actorOf } from '../http/auth.ts';
import { HttpError } from '../http/errors.ts';

export function maintenanceRoutes(deps: {
  redis: Redis;
  accounting: Accounting;
  budgets: Budgets;
  pool: Pool;
  heldQueue: Queue | null;
  intakeQueue: Queue | null;
  settledRetainSeconds: number;
  clock: Clock;
  log: Logger;
}): Router {
  const r = Router();
  const audit = new DriftAudit(deps.redis, deps.accounting, deps.pool);
  r.get('/drift', async (_req, res) => {
    res.json(await audit.run());
  });
  r.post('/rebuild', async (_req, res) => {
    try {
      const report = await rebuild({ ...deps, heldQueue: deps.heldQueue as Queue<HeldJobData> | null, now: deps.clock.now() });
      await recordAudit({ pool: deps.pool, redis: deps.redis, outboxKey: deps.accounting.keys.auditOutbox, log: deps.log }, actorOf(res), { action: 'redis.rebuild', target: 'redis', before: null, after: report });
      res.json({ ...report, drift: (await audit.run()).drift.length });
    } catch (err) {
      if (err instanceof RebuildRefused) throw new HttpError(409, err.message);
      throw err;
    }
  });
  return r;
}

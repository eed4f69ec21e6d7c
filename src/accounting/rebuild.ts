/**
 * Rebuild the hot state in Redis from Postgres and the live queues, after
 * Redis lost it (FLUSHALL, a fresh instance, a restore from an old snapshot):
 *
 *   limits and exempt types   <- Postgres (limits, exempt_job_types)
 *   used / reserved counters  <- Σ of the ledger per counter id (as the drift audit sums them)
 *   open reservations         <- reserve rows with no settle/release row yet
 *   settled reservations      <- rows that ended within SETTLED_RETAIN_SECONDS
 *                                (so a late retry still cannot admit a job twice)
 *   held jobs and their lines <- the jobs waiting on gpu-held, if that queue survived
 *
 * It first deletes every reservation, line, held list and counter Redis still
 * has (keeping nothing from an old snapshot). Run it with the gatekeepers
 * stopped: it overwrites counters, and an
 * admission landing in between would be counted once in Redis but not in
 * the sums written over it. It refuses while the ledger stream still holds
 * unwritten entries (let a reconciler drain it first), because those are in
 * Redis but not yet in Postgres. Not restorable: entries lost with the stream
 * before the writer wrote them; a period's manual adjustment (in the audit log
 * only) and its computed rollover (recomputed on first touch); which
 * thresholds already fired (they may fire again).
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Pool } from '../db/pool.ts';
import type { Accounting } from './counters.ts';
import type { Budgets } from './budgets.ts';
import type { HeldJobData } from '../../queues/contract.ts';
import { submissionOrder } from './counters.ts';
import { scopesForJob } from './scopes.ts';
import { hoursToGpuMs } from '../units.ts';
import { unlinkMatching } from '../redis/unlink.ts';
import { ledgerTotals } from './drift.ts';

export interface RebuildReport {
  limits: number;
  counters: number;
  openReservations: number;
  settledReservations: number;
  heldJobs: number;
}

export class RebuildRefused extends Error {}


const CHUNK = 1_000;

export async function rebuild(deps: {
  redis: Redis;
  accounting: Accounting;
  budgets: Budgets;
  pool: Pool;
  heldQueue: Queue<HeldJobData> | null;
  settledRetainSeconds: number;
  now: number;
}): Promise<RebuildReport> {
  const { accounting, pool, now } = deps;
  const redis = deps.redis;
  const k = accounting.keys;
  const waiting = await redis.xlen(k.ledger);
  if (waiting > 0) throw new RebuildRefused(`the ledger stream still holds ${waiting} entries not yet in Postgres; let a reconciler write them first`);

  // Start from nothing: whatever Redis still holds (an old snapshot, half a
  // loss) would otherwise mix with the rebuilt state — a reservation settled
  // long ago still "open", a job admitted since still in a held line.
  for (const pattern of ['res:*', 'line:*', 'held:*', 'scope:*']) await unlinkMatching(redis, `${k.prefix}${pattern}`);
  await redis.unlink(k.open, k.allHeld, k.heldCount, k.counters);
  const limits = await deps.budgets.syncLimits();

  // Counters: exactly the ledger's sums (other fields such as carry are kept).
  const totals = await ledgerTotals(pool);
  await inChunks([...totals], (p, [counter, t]) => {
    p.hset(k.scope(counter), { used: String(t.usedGpuMs), reserved: String(t.reservedGpuMs), exemptUsed: String(t.exemptUsedGpuMs), exemptReserved: String(t.exemptReservedGpuMs) });
    p.sadd(k.counters, counter);
  });

  // Reservations: open ones (no end row), and recently ended ones.
  const jobs = await pool.query(
    `SELECT r.job_id, r.project, r.user_name, r.job_type, r.gpu_type, r.run, r.scopes, r.estimated_gpu_ms, r.exempt,
            extract(epoch FROM r.at) * 1000 AS admitted_ms, e.actual_gpu_ms, extract(epoch FROM e.at) * 1000 AS ended_ms
     FROM ledger r LEFT JOIN ledger e ON e.job_id = r.job_id AND e.admitted_at = r.admitted_at AND e.kind <> 'reserve'
     WHERE r.kind = 'reserve' AND (e.id IS NULL OR e.at >= to_timestamp($1::double precision / 1000))`,
    [now - deps.settledRetainSeconds * 1000],
  );
  let open = 0;
  let settled = 0;
  await inChunks(jobs.rows, (p, j: Record<string, any>) => {
    const scopes = (j.scopes as string[]).join(',');
    const meta = JSON.stringify({
      project: j.project, user: j.user_name, gpus: 1,
      ...(j.job_type ? { jobType: j.job_type } : {}), ...(j.gpu_type ? { gpuType: j.gpu_type } : {}), ...(j.run ? { run: j.run } : {}),
    });
    const record: Record<string, string> = {
      amount: String(j.estimated_gpu_ms), scopes, bases: (j.scopes as string[]).map((s) => s.split('@')[0]).join(','),
      admittedAt: String(Math.round(Number(j.admitted_ms))), meta, ...(j.exempt ? { exempt: '1' } : {}),
    };
    const key = k.reservation(j.job_id);
    if (j.ended_ms === null) {
      open++;
      p.hset(key, { ...record, state: 'reserved' });
      p.zadd(k.open, record.admittedAt!, j.job_id);
    } else {
      settled++;
      p.hset(key, { ...record, state: 'settled', actual: String(j.actual_gpu_ms ?? 0), settledAt: String(Math.round(Number(j.ended_ms))) });
      p.expire(key, Math.max(1, Math.ceil((Number(j.ended_ms) + deps.settledRetainSeconds * 1000 - now) / 1000)));
    }
  });

  // Held jobs, from gpu-held if it survived: back in their lines, oldest first.
  let held = 0;
  if (deps.heldQueue) {
    const waitingJobs = await deps.heldQueue.getJobs(['waiting', 'prioritized'], 0, -1);
    const fresh = [];
    for (const job of waitingJobs) {
      const id = job.data.held.intakeJobId;
      if (!(await redis.exists(k.reservation(id)))) fresh.push(job);
    }
    await inChunks(fresh, (p, job) => {
      const d = job.data;
      const id = d.held.intakeJobId;
      const bases = scopesForJob(d).map((s) => s.id);
      const order = submissionOrder(id, job.timestamp);
      const meta = JSON.stringify({ project: d.project, user: d.user, gpus: d.gpus, ...(d.jobType ? { jobType: d.jobType } : {}), ...(d.gpuType ? { gpuType: d.gpuType } : {}), ...(d.run ? { run: d.run } : {}) });
      // In every line it could wait in; the next release puts it in the right ones.
      p.hset(k.reservation(id), { amount: String(hoursToGpuMs(d.estimatedGpuHours)), bases: bases.join(','), state: 'held', heldAt: String(d.held.heldAt), meta, lines: bases.join(',') });
      p.zadd(k.held(d.project), order, id);
      p.zadd(k.allHeld, order, id);
      p.hincrby(k.heldCount, d.project, 1);
      for (const b of bases) p.zadd(k.line(b), order, id);
      held++;
    });
  }
  return { limits, counters: totals.size, openReservations: open, settledReservations: settled, heldJobs: held };

  async function inChunks<T>(items: T[], add: (p: ReturnType<typeof redis.pipeline>, item: T) => void): Promise<void> {
    for (let i = 0; i < items.length; i += CHUNK) {
      const p = redis.pipeline();
      for (const item of items.slice(i, i + CHUNK)) add(p, item);
      await p.exec();
    }
  }
}

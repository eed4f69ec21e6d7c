/**
 * Rebuild the hot state in Redis from Postgres and the live queues, after
 * Redis lost it (FLUSHALL, a fresh instance, a restore from an old snapshot):
 *
 *   limits, rates and factors <- Postgres (limits, gpu_rates, usage_factors)
 *   submission rate limits    <- Postgres (rate_limits); their buckets start
 *                                full (the state was only in Redis)
 *   used / reserved counters  <- Σ of the ledger per counter id (as the drift audit sums them)
 *   carry / adjust            <- period_carries and period_adjustments (recorded when they happen)
 *   open reservations         <- reserve rows with no settle/release row yet
 *   settled reservations      <- rows that ended within SETTLED_RETAIN_SECONDS
 *                                (so a late retry still cannot admit a job twice)
 *   held jobs and their lines <- the jobs waiting on gpu-held, if that queue survived
 *                                (rebuild-held.ts)
 *
 * Reservations come back field for field as the scripts wrote them: the
 * reserve row keeps the job's meta JSON as the script had it (the GPU count
 * the wall-time fallback multiplies by, among others).
 *
 * It first deletes every reservation, line, held list and counter Redis still
 * has (keeping nothing from an old snapshot). Run it with the gatekeepers
 * stopped: it overwrites counters, and an
 * admission landing in between would be counted once in Redis but not in
 * the sums written over it. It refuses while the ledger stream still holds
 * unwritten entries (let a reconciler drain it first), because those are in
 * Redis but not yet in Postgres. Not restorable: entries lost with the stream
 * before the writer wrote them; a carry computed but not recorded yet (the
 * scheduler records them at each boundary; such a period recomputes it on
 * first touch); which thresholds already fired (they may fire again); the
 * GPU count of jobs reserved before migration 009 (rebuilt as 1 GPU).
 */
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Pool } from '../db/pool.ts';
import { GpuCaps } from './gpu-caps.ts';
import type { Accounting } from './counters.ts';
import type { Budgets } from './budgets.ts';
import type { HeldJobData } from '../../queues/contract.ts';
import { unlinkMatching } from '../redis/unlink.ts';
import { pipelined } from '../redis/pipelined.ts';
import { periodRecords } from '../db/periods.ts';
import { ledgerTotals, maxNumericJobId, recordedReservations, type RecordedReservation } from '../db/ledger.ts';
import { waitingLedgerEntries } from '../db/quarantine.ts';
import { callScript } from '../redis/scripts.ts';
import { rebuildHeld } from './rebuild-held.ts';

export interface RebuildReport {
  limits: number;
  counters: number;
  /** Periods whose carry or adjustments came back from their records. */
  periods: number;
  openReservations: number;
  settledReservations: number;
  heldJobs: number;
}

export class RebuildRefused extends Error {}

export async function rebuild(deps: {
  redis: Redis;
  accounting: Accounting;
  budgets: Budgets;
  pool: Pool;
  heldQueue: Queue<HeldJobData> | null;
  /** gpu-intake: its job-id counter is raised past every id the ledger knows (see raise.lua). */
  intakeQueue: Queue | null;
  settledRetainSeconds: number;
  now: number;
}): Promise<RebuildReport> {
  const { accounting, pool, now, redis } = deps;
  const k = accounting.keys;
  const waiting = await redis.xlen(k.ledger);
  if (waiting > 0) throw new RebuildRefused(`the ledger stream still holds ${waiting} entries not yet in Postgres; let a reconciler write them first`);
  // Quarantined ledger entries are in Redis' counters but not in the ledger the rebuild sums.
  const aside = await waitingLedgerEntries(pool);
  if (aside.length > 0) {
    throw new RebuildRefused(
      `${aside.length} ledger entr${aside.length === 1 ? 'y waits' : 'ies wait'} in the quarantine (ids ${aside.slice(0, 10).map((q) => q.id).join(', ')}${aside.length > 10 ? ', …' : ''}); ` +
        'replay them first (gatekeeper quarantine replay <id>, --repair for text Postgres cannot hold)',
    );
  }

  // Start from nothing: whatever Redis still holds (an old snapshot, half a
  // loss) would otherwise mix with the rebuilt state — a reservation settled
  // long ago still "open", a job admitted since still in a held line.
  for (const pattern of ['res:*', 'line:*', 'held:*', 'scope:*']) await unlinkMatching(redis, `${k.prefix}${pattern}`);
  await redis.unlink(k.open, k.allHeld, k.heldCount, k.counters, k.throttled);
  const limits = await deps.budgets.syncLimits();

  // Counters: exactly the ledger's sums.
  const totals = await ledgerTotals(pool);
  await pipelined(redis, [...totals], (p, [counter, t]) => {
    p.hset(k.scope(counter), {
      used: String(t.usedGpuMs), reserved: String(t.reservedGpuMs), exemptUsed: String(t.exemptUsedGpuMs), exemptReserved: String(t.exemptReservedGpuMs),
      unitsUsed: String(t.unitsUsed), unitsReserved: String(t.unitsReserved), usdUsed: String(t.usdUsed), usdReserved: String(t.usdReserved),
    });
    p.sadd(k.counters, counter);
  });
  // A period's carry and adjust as they were: a carry is fixed once computed
  // (init marks it so), however the previous period's numbers moved since.
  const periods = await periodRecords(pool);
  await pipelined(redis, periods, (p, r) => {
    p.hset(k.scope(r.counterId), { adjust: String(r.adjustGpuMs), ...(r.carryGpuMs === null ? {} : { carry: String(r.carryGpuMs), init: '1' }) });
  });

  const { open, settled } = await restoreReservations(deps);
  // GPUs in flight: each cap counts the restored open reservations again (their records list no caps yet).
  const caps = new GpuCaps(pool, accounting);
  await caps.countRunning(...Object.keys(await accounting.definitions.capDefs()));
  if (deps.intakeQueue) await raiseJobIds(pool, redis, deps.intakeQueue);
  const held = deps.heldQueue ? await rebuildHeld(redis, accounting, deps.heldQueue, now) : 0;
  return { limits, counters: totals.size, periods: periods.length, openReservations: open, settledReservations: settled, heldJobs: held };
}

/** Open reservations (reserve rows without an end), and recently ended ones, as the scripts wrote them. */
async function restoreReservations(deps: { redis: Redis; accounting: Accounting; pool: Pool; settledRetainSeconds: number; now: number }): Promise<{ open: number; settled: number }> {
  const { redis, now } = deps;
  const k = deps.accounting.keys;
  const jobs = await recordedReservations(deps.pool, now - deps.settledRetainSeconds * 1000);
  let open = 0;
  let settled = 0;
  await pipelined(redis, jobs, (p, j) => {
    // As reserve.lua (and release.lua) wrote it: amount, scopes, state, admittedAt, meta, ts, exempt,
    // and the price and charge it was admitted with (none for a row from before rates, as then).
    const record: Record<string, string> = {
      amount: String(j.estimatedGpuMs), scopes: j.scopes.join(','),
      admittedAt: String(Math.round(j.admittedMs)), meta: j.meta ?? legacyMeta(j),
      ...(j.submittedMs === null ? {} : { ts: String(j.submittedMs) }), ...(j.exempt ? { exempt: '1' } : {}),
      ...(j.price === null ? {} : { rate: `${j.price.rate.unitsMilli}|${j.price.rate.usdMicro}`, factor: String(j.price.factorMilli), charge: j.charge! }),
    };
    const key = k.reservation(j.jobId);
    if (j.endedMs === null) {
      open++;
      p.hset(key, { ...record, state: 'reserved' });
      p.zadd(k.open, record.admittedAt!, j.jobId);
    } else {
      // ... and settle.lua on top: state, actual, settledAt, and the expiry.
      settled++;
      p.hset(key, { ...record, state: 'settled', actual: String(j.actualGpuMs ?? 0), settledAt: String(Math.round(j.endedMs)) });
      p.expire(key, Math.max(1, Math.ceil((j.endedMs + deps.settledRetainSeconds * 1000 - now) / 1000)));
    }
  });
  return { open, settled };
}

/** A row from before migration 009 kept no meta: the ledger's columns in jobMeta's order, and 1 GPU (the count was not kept). */
function legacyMeta(j: RecordedReservation): string {
  return JSON.stringify({ project: j.project, user: j.user, jobType: j.jobType ?? undefined, gpuType: j.gpuType ?? undefined, gpus: 1, run: j.run ?? undefined });
}

/**
 * BullMQ numbers intake jobs from a counter that went with Redis: without
 * this, the next job would be "1" again, reserve would answer that job 1 was
 * settled before, and the new job would be completed without ever running.
 * Jobs added between the loss and this call may already carry reused ids.
 * Custom (non-numeric) ids are the submitter's to keep unique.
 */
async function raiseJobIds(pool: Pool, redis: Redis, intake: Queue): Promise<void> {
  // Admitted jobs are in the ledger; rejected ones only in the events (a
  // reused id would also have its JOB_REJECTED dropped as a duplicate).
  const max = await maxNumericJobId(pool);
  if (max) await callScript(redis, 'raise', [intake.toKey('id')], [max]);
}

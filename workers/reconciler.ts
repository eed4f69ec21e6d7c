/**
 * The reconciler: when a gpu-exec job ends, its actual GPU time replaces its
 * reservation (settle.lua, idempotent per job). It never depends on
 * QueueEvents, whose stream is trimmed and drops events under load. Instead:
 *
 *  - fast path, every RECONCILE_INTERVAL_MS: read gpu-exec's completed and
 *    failed sets (BullMQ scores them by finishedOn) from a cursor, with an
 *    overlap window for workers whose clocks lag, and settle the ones that
 *    still hold an open reservation;
 *  - sweep, every SWEEP_INTERVAL_MS: walk every open reservation and look at
 *    its job. Finished: settle it (whatever the fast path missed). Gone for
 *    longer than VANISHED_GRACE_MS while its intake job is not pending either:
 *    settle it at its estimate and log why, so no reservation leaks;
 *  - after a sweep, remove settled gpu-exec jobs older than
 *    EXEC_RETAIN_FINISHED_MS (they are kept until then for Bull Board).
 *
 * Also drains the ledger stream into Postgres (src/ledger/writer.ts).
 * Run alone: `GATEKEEPER_ROLES=reconciler tsx src/main.ts`.
 */
import type { Metrics } from '../src/metrics.ts';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../src/config.ts';
import type { Clock } from '../src/clock.ts';
import type { Logger } from '../src/log.ts';
import { Accounting } from '../src/accounting/counters.ts';
import type { JobMeta, SettleKind, SettleOutcome } from '../src/accounting/types.ts';
import { actualUsage } from '../src/accounting/actual.ts';
import { execJobId, heldJobId, queueNames } from '../queues/names.ts';
import { promoteReleased } from '../src/admin/promote.ts';
import type { ExecJobData, HeldJobData } from '../queues/contract.ts';

const PAGE = 500;
/** How far behind the cursor the fast path re-reads, for GPU workers whose clocks lag. */
const CLOCK_SKEW_OVERLAP_MS = 5_000;
const EXEC_ID_PREFIX = execJobId('');

export interface ReconcilerDeps {
  config: Config;
  connection: Redis;
  log: Logger;
  clock: Clock;
  metrics?: Metrics;
}

export interface SweepReport {
  settled: number;
  vanished: number;
  /** Released jobs a crash left on gpu-held, moved to gpu-exec now. */
  promoted: number;
  open: number;
}

export function createReconciler(deps: ReconcilerDeps) {
  const { config, connection: redis, clock } = deps;
  const log = deps.log.child({ role: 'reconciler' });
  const names = queueNames(config);
  const accounting = new Accounting(redis, names.prefix, config.settledRetainSeconds, config.timeZone, config.unknownGpuTypePolicy);
  const execQueue = new Queue<ExecJobData>(names.exec, { connection: redis, prefix: names.prefix });
  const intakeQueue = new Queue(names.intake, { connection: redis, prefix: names.prefix });
  const heldQueue = new Queue<HeldJobData>(names.held, { connection: redis, prefix: names.prefix });
  const cursors = { completed: 0, failed: 0 };

  type JobView =
    | { state: 'running' }
    | {
        state: 'missing';
        admittedAt: number;
        amountGpuMs: number;
        scopes: string[];
        /** Its intake job is still to be (re)processed: the gatekeeper will add the GPU job. */
        intakePending: boolean;
        /** Its intake job failed for good: the GPU job was never added, so nothing ran. */
        intakeFailed: boolean;
        /** Still on gpu-held: a release whose move a crash interrupted. */
        onHeld: boolean;
      }
    | { state: 'finished'; fields: ReturnType<typeof toFields>; scopes: string[]; meta: JobMeta };

  /** One pipeline: exec job fields, reservation, intake job liveness, for each id. */
  async function inspect(intakeIds: string[]): Promise<(JobView | null)[]> {
    const p = redis.pipeline();
    for (const id of intakeIds) {
      p.hmget(execQueue.toKey(execJobId(id)), 'finishedOn', 'processedOn', 'returnvalue', 'failedReason', 'timestamp');
      p.hmget(accounting.keys.reservation(id), 'scopes', 'meta', 'state', 'admittedAt', 'amount');
      p.hmget(intakeQueue.toKey(id), 'timestamp', 'finishedOn', 'failedReason');
      p.hget(heldQueue.toKey(heldJobId(id)), 'timestamp');
    }
    const out = (await p.exec()) ?? [];
    return intakeIds.map((_, i) => {
      const exec = out[i * 4]![1] as (string | null)[];
      const res = out[i * 4 + 1]![1] as (string | null)[];
      const intake = out[i * 4 + 2]![1] as (string | null)[];
      const onHeld = out[i * 4 + 3]![1] !== null;
      if (res[2] !== 'reserved') return null; // settled meanwhile, or never reserved
      const scopes = (res[0] ?? '').split(',').filter(Boolean);
      if (exec[4] === null) {
        return {
          state: 'missing',
          admittedAt: Number(res[3]),
          amountGpuMs: Number(res[4]),
          scopes,
          intakePending: intake[0] !== null && intake[1] === null,
          intakeFailed: intake[1] !== null && !!intake[2],
          onHeld,
        };
      }
      if (exec[0] === null) return { state: 'running' };
      return { state: 'finished', fields: toFields(exec), scopes, meta: JSON.parse(res[1] ?? '{}') as JobMeta };
    });
  }

  /**
   * One job's settle, whose failure (a record the script refuses, Redis
   * refusing the call) is logged and counted and stops no other job's: the
   * job stays open, and the next sweep tries it again.
   */
  async function settleOne(id: string, scopes: string[], actualGpuMs: number, kind: SettleKind, at: number, note: string): Promise<SettleOutcome | null> {
    try {
      const r = await accounting.settle(id, scopes, actualGpuMs, kind, at, note);
      if (r.kind === 'settled' && r.capped !== '') {
        log.error({ jobId: id, actualGpuMs, capped: r.capped }, 'settled with a charge past 2^53 counted as 2^53 - 1: check its GPU type rate and job type factor');
      }
      return r;
    } catch (err) {
      deps.metrics?.settleFailures.inc();
      log.error({ err, jobId: id, actualGpuMs }, 'settle failed for this job; it stays open and the next sweep tries again');
      return null;
    }
  }

  async function settleFinished(id: string, v: Extract<JobView, { state: 'finished' }>): Promise<boolean> {
    const a = actualUsage(v.fields, v.meta.gpus ?? 1);
    const at = Number(v.fields.finishedOn) || clock.now();
    const r = await settleOne(id, v.scopes, a.actualGpuMs, a.kind, at, a.note);
    if (r?.kind === 'settled') {
      log.debug({ jobId: id, actualGpuMs: a.actualGpuMs, reservedGpuMs: r.reservedGpuMs, note: a.note }, 'settled');
      if (v.fields.finishedOn) deps.metrics?.settlementLag.observe(Math.max(0, Date.now() - Number(v.fields.finishedOn)) / 1000);
      return true;
    }
    return false;
  }

  /** Settle every finished job among these ids; returns how many were settled now. */
  async function settleIds(intakeIds: string[]): Promise<number> {
    const views = await inspect(intakeIds);
    let n = 0;
    for (let i = 0; i < intakeIds.length; i++) {
      const v = views[i];
      if (v?.state === 'finished' && (await settleFinished(intakeIds[i]!, v))) n++;
    }
    return n;
  }

  /** Fast path: newly finished gpu-exec jobs, from the cursor on. */
  async function tick(): Promise<number> {
    let settled = 0;
    for (const set of ['completed', 'failed'] as const) {
      const key = execQueue.toKey(set);
      const from = Math.max(0, cursors[set] - CLOCK_SKEW_OVERLAP_MS);
      let max = cursors[set];
      for (let offset = 0; ; offset += PAGE) {
        const flat = await redis.zrangebyscore(key, from, '+inf', 'WITHSCORES', 'LIMIT', offset, PAGE);
        const ids: string[] = [];
        for (let i = 0; i < flat.length; i += 2) {
          const execId = flat[i]!;
          max = Math.max(max, Number(flat[i + 1]));
          if (execId.startsWith(EXEC_ID_PREFIX)) ids.push(execId.slice(EXEC_ID_PREFIX.length));
        }
        const open = await accounting.whichOpen(ids);
        if (open.size > 0) settled += await settleIds([...open]);
        if (flat.length < PAGE * 2) break;
      }
      cursors[set] = max;
    }
    return settled;
  }

  /** Walk every open reservation: settle the finished, settle-at-estimate the vanished. */
  async function sweep(): Promise<SweepReport> {
    const all = await redis.zrange(accounting.keys.open, '0', '-1');
    const report: SweepReport = { settled: 0, vanished: 0, promoted: 0, open: all.length };
    for (let i = 0; i < all.length; i += PAGE) {
      const ids = all.slice(i, i + PAGE);
      const views = await inspect(ids);
      for (let j = 0; j < ids.length; j++) {
        const id = ids[j]!;
        const v = views[j];
        if (!v) continue;
        if (v.state === 'finished') {
          if (await settleFinished(id, v)) report.settled++;
        } else if (v.state === 'missing' && v.onHeld) {
          // Released or overridden, but the move to gpu-exec did not finish (a crash): finish it.
          report.promoted += await promoteReleased(accounting, execQueue, heldQueue, [id]);
        } else if (v.state === 'missing' && !v.intakePending && clock.now() - v.admittedAt >= config.vanishedGraceMs) {
          // Never leaked: a job that cannot have run is released; one that may
          // have run (removed by hand from gpu-exec) is charged its estimate.
          const [actual, kind, note] = v.intakeFailed
            ? [0, 'release' as const, 'intake job failed before its gpu-exec job was added; released']
            : [v.amountGpuMs, 'settle' as const, 'gpu-exec job vanished before it was settled; settled at its estimate'];
          const r = await settleOne(id, v.scopes, actual, kind, clock.now(), note);
          if (r?.kind === 'settled') {
            report.vanished++;
            log.warn({ jobId: id, execJobId: execJobId(id), settledGpuMs: actual }, note);
          }
        }
      }
    }
    return report;
  }

  /**
   * Remove finished gpu-exec jobs past retention, only after a sweep settled
   * them; in pages until done (or 5 s), so cleaning keeps up with any rate.
   */
  async function clean(): Promise<void> {
    const deadline = Date.now() + 5_000;
    for (const set of ['completed', 'failed'] as const) {
      while ((await execQueue.clean(config.execRetainFinishedMs, 1_000, set)).length === 1_000 && Date.now() < deadline);
    }
  }

  let running = false;
  let loop: Promise<void> | null = null;
  let lastSweep = 0;

  async function run(): Promise<void> {
    while (running) {
      try {
        await tick();
        if (clock.now() - lastSweep >= config.sweepIntervalMs) {
          const r = await sweep();
          lastSweep = clock.now();
          if (r.settled + r.vanished + r.promoted > 0) log.info(r, 'sweep finished work the fast path had not');
          await clean();
        }
      } catch (err) {
        log.error({ err }, 'reconcile pass failed; will retry');
      }
      await sleep(config.reconcileIntervalMs);
    }
  }

  return {
    tick,
    sweep,
    start(): void {
      if (running) return;
      running = true;
      loop = run();
    },
    async close(): Promise<void> {
      running = false;
      await loop;
      await Promise.all([execQueue.close(), intakeQueue.close(), heldQueue.close()]);
    },
  };
}

function toFields(exec: (string | null)[]) {
  return { finishedOn: exec[0] ?? null, processedOn: exec[1] ?? null, returnvalue: exec[2] ?? null, failedReason: exec[3] ?? null };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export type Reconciler = ReturnType<typeof createReconciler>;

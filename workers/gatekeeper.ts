/**
 * The gatekeeper: consumes gpu-intake, validates each job, reserves its
 * estimate against every scope in one Lua call, and only then promotes it to
 * gpu-exec. A job that does not fit is parked on gpu-held with its reason; an
 * invalid one fails without retry (rejected) with its reason.
 *
 * Crash safety: the reservation is keyed by the intake job id and the gpu-exec
 * and gpu-held job ids are derived from it, so a gatekeeper killed at any
 * instant and restarted (the intake job comes back as stalled) re-runs the
 * same steps and each one is a no-op the second time.
 *
 * Run alone: `tsx workers/gatekeeper.ts` (reads the same environment).
 */
import { Worker, Queue, UnrecoverableError, DelayedError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../src/config.ts';
import type { Clock } from '../src/clock.ts';
import type { Logger } from '../src/log.ts';
import { Accounting } from '../src/accounting/counters.ts';
import { decideAdmission } from '../src/accounting/admission.ts';
import { intakeJobSchema, parseIntakeJob, type ExecJobData, type HeldJobData } from '../queues/contract.ts';
import { execJobId, heldJobId, queueNames } from '../queues/names.ts';
import { gpuMsToHours } from '../src/units.ts';

export type IntakeResult =
  | { outcome: 'admitted'; execJobId: string; reservedGpuHours: number; alreadySettled?: boolean }
  | { outcome: 'held'; heldJobId: string; reason: string };

export interface GatekeeperDeps {
  config: Config;
  /** Connection for the worker (blocking). */
  workerConnection: Redis;
  /** Connection for queue writes and scripts. */
  connection: Redis;
  log: Logger;
  clock: Clock;
}

/** Transient errors (Redis hiccup) retry the intake job after this delay. */
const TRANSIENT_RETRY_MS = 1_000;

export function createGatekeeper(deps: GatekeeperDeps) {
  const { config, connection, clock } = deps;
  const log = deps.log.child({ role: 'gatekeeper' });
  const names = queueNames(config);
  const accounting = new Accounting(connection, names.prefix, config.settledRetainSeconds);
  const schema = intakeJobSchema(config);
  const execQueue = new Queue<ExecJobData>(names.exec, { connection, prefix: names.prefix });
  const heldQueue = new Queue<HeldJobData>(names.held, { connection, prefix: names.prefix });

  async function admit(job: Job): Promise<IntakeResult> {
    const parsed = parseIntakeJob(schema, job.data);
    if (!parsed.ok) {
      log.warn({ jobId: job.id, reason: parsed.reason }, 'rejected');
      throw new UnrecoverableError(parsed.reason);
    }
    const data = parsed.data;
    const jobId = job.id!;
    const decision = await decideAdmission(accounting, jobId, data, clock.now());

    if (decision.kind === 'held') {
      const held = await heldQueue.add(
        job.name,
        { ...data, held: { intakeJobId: jobId, reason: decision.reason, heldAt: clock.now() } },
        { jobId: heldJobId(jobId), removeOnComplete: false, removeOnFail: false },
      );
      await Promise.all([held.log(`held: ${decision.reason}`), job.log(`held: ${decision.reason}`)]);
      log.info({ jobId, project: data.project, reason: decision.reason }, 'held');
      return { outcome: 'held', heldJobId: held.id!, reason: decision.reason };
    }

    const id = execJobId(jobId);
    if (decision.kind === 'admitted' || decision.state === 'reserved') {
      // Idempotent: the derived job id makes a second add a no-op. Finished
      // exec jobs are kept (removeOn*: false) until the reconciler settled
      // them; it removes them after EXEC_RETAIN_FINISHED_MS.
      await execQueue.add(
        job.name,
        { ...data, admission: decision.admission },
        { jobId: id, removeOnComplete: false, removeOnFail: false },
      );
    }
    if (decision.kind === 'already') {
      // A retry after a crash: an earlier attempt may have parked it as held
      // before a budget change let this attempt admit it. One state only.
      await heldQueue.remove(heldJobId(jobId)).catch(() => 0);
    }
    log.debug({ jobId, execJobId: id, reservedGpuMs: decision.admission.reservedGpuMs }, 'admitted');
    return {
      outcome: 'admitted',
      execJobId: id,
      reservedGpuHours: gpuMsToHours(decision.admission.reservedGpuMs),
      ...(decision.kind === 'already' && decision.state === 'settled' ? { alreadySettled: true } : {}),
    };
  }

  const worker = new Worker(
    names.intake,
    async (job, token) => {
      try {
        return await admit(job);
      } catch (err) {
        if (err instanceof UnrecoverableError) throw err;
        // Not the job's fault (Redis failover, a timeout): try again later
        // rather than spend the submitter's attempts on it.
        log.error({ err, jobId: job.id }, 'admission step failed; retrying the job');
        await job.moveToDelayed(Date.now() + TRANSIENT_RETRY_MS, token);
        throw new DelayedError();
      }
    },
    {
      connection: deps.workerConnection,
      prefix: names.prefix,
      concurrency: config.gatekeeperConcurrency,
      // Every step is idempotent, so a job that stalls (its gatekeeper died)
      // is simply run again, as often as that happens.
      maxStalledCount: 1_000,
      lockDuration: config.gatekeeperLockMs,
      stalledInterval: config.gatekeeperLockMs,
      removeOnComplete: { count: 10_000 },
      removeOnFail: { age: 7 * 24 * 3600 },
    },
  );
  worker.on('error', (err) => log.error({ err }, 'gatekeeper worker error'));

  return {
    worker,
    async close(): Promise<void> {
      await worker.close();
      await Promise.all([execQueue.close(), heldQueue.close()]);
    },
  };
}

export type Gatekeeper = ReturnType<typeof createGatekeeper>;

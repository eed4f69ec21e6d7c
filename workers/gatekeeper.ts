/**
 * The gatekeeper: consumes gpu-intake, validates each job, reserves its
 * estimate against every scope in one Lua call, and only then promotes it to
 * gpu-exec. A job that does not fit is parked on gpu-held with its reason; an
 * invalid one fails without retry (rejected) with its reason.
 *
 * Batching: the worker runs up to GATEKEEPER_CONCURRENCY intake jobs at once.
 * Valid jobs meet in a group commit (src/group-commit.ts): one reserve call
 * decides all that arrived meanwhile (up to GATEKEEPER_MAX_BATCH), in arrival order; one addBulk promotes
 * the admitted; one addBulk parks the held. An idle gatekeeper sends each job
 * at once; a busy one pays Redis' per-call cost once per batch, not per job.
 *
 * Crash safety: the reservation is keyed by the intake job id (and its
 * submission time, so an id the queue hands out again after its counter
 * restarted is a new job: reserve.lua) and the gpu-exec and gpu-held job ids
 * are derived from it, so a gatekeeper killed at any instant and restarted
 * (the intake job comes back as stalled) re-runs the same steps and each one
 * is a no-op the second time.
 */
import { Worker, Queue, UnrecoverableError, DelayedError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../src/config.ts';
import type { Clock } from '../src/clock.ts';
import type { Logger } from '../src/log.ts';
import { Accounting } from '../src/accounting/counters.ts';
import { submissionOrder } from '../src/accounting/reserve-wire.ts';
import { decideAdmissions, type Decision } from '../src/accounting/admission.ts';
import { GroupCommit } from '../src/group-commit.ts';
import { NAME_RE, intakeJobSchema, parseIntakeJob, type ExecJobData, type HeldJobData, type IntakeJobData, type RejectedJobData } from '../queues/contract.ts';
import { execJobId, heldJobId, queueNames, rejectedJobId } from '../queues/names.ts';
import type { Metrics } from '../src/metrics.ts';
import { printable, unsafeText } from '../src/text.ts';

/**
 * What an intake job completes with (BullMQ stores it in the job's hash).
 * Kept short: Redis stores a hash whose values are all at most 64 bytes
 * (hash-max-listpack-value) as one compact listpack, and one longer value
 * turns it into a hashtable. An admitted result naming its reserved hours as
 * well came to 66 bytes and did that to every small intake job at completion:
 * about 14 us more Redis CPU per job (an A/B on the admission benchmark's
 * jobs) and more memory for every completed job kept. The hours are in the
 * exec job's `admission`.
 */
export type IntakeResult =
  | { outcome: 'admitted'; execJobId: string; alreadySettled?: boolean }
  | { outcome: 'held'; heldJobId: string; reason: string }
  | { outcome: 'cancelled' }
  | { outcome: 'rejected'; reason: string }
  /** Never a completed job's value: the intake job goes back to delayed until dueAt. */
  | { outcome: 'throttled'; dueAt: number; reason: string; scopes: string[] };

export interface GatekeeperDeps {
  config: Config;
  /** Connection for the worker (blocking). */
  workerConnection: Redis;
  /** Connection for queue writes and scripts. */
  connection: Redis;
  log: Logger;
  clock: Clock;
  metrics?: Metrics;
}

interface Pending {
  job: Job;
  data: IntakeJobData;
}

/** How often a job failed by BullMQ's own Redis calls (not by admission) is run again. */
const MAX_BOOKKEEPING_RETRIES = 20;
/** Transient errors (Redis hiccup) retry the intake job after this delay. */
const TRANSIENT_RETRY_MS = 1_000;
/** Finished jobs on gpu-exec/gpu-held stay until the reconciler (or an admin) removes them. */
const KEEP = { removeOnComplete: false, removeOnFail: false } as const;

export function createGatekeeper(deps: GatekeeperDeps) {
  const { config, connection, clock } = deps;
  const log = deps.log.child({ role: 'gatekeeper' });
  const names = queueNames(config);
  const accounting = new Accounting(connection, names.prefix, config.settledRetainSeconds, config.timeZone, config.unknownGpuTypePolicy);
  const schema = intakeJobSchema(config);
  const execQueue = new Queue<ExecJobData>(names.exec, { connection, prefix: names.prefix });
  const heldQueue = new Queue<HeldJobData>(names.held, { connection, prefix: names.prefix });
  const rejectedQueue = new Queue<RejectedJobData>(names.rejected, { connection, prefix: names.prefix });

  /** Park a rejected job on gpu-rejected (reason in data and log), then fail it on intake without retry. */
  async function reject(job: Job, reason: string): Promise<never> {
    log.warn({ jobId: job.id, reason }, 'rejected');
    deps.metrics?.admissions.inc({ outcome: 'rejected' });
    const data = (typeof job.data === 'object' && job.data !== null ? job.data : {}) as { project?: unknown; user?: unknown };
    // Only names the contract accepts: an invalid job's fields may hold anything (the event is stored in Postgres).
    const named = (v: unknown) => typeof v === 'string' && NAME_RE.test(v);
    await accounting.events.emit('JOB_REJECTED', {
      jobId: printable(job.id!),
      ...(named(data.project) ? { project: data.project as string } : {}),
      ...(named(data.user) ? { user: data.user as string } : {}),
      reason,
      by: 'gatekeeper',
    }, `rejected:${printable(job.id!)}@${job.timestamp}`, clock.now());
    const park = (id: string) => rejectedQueue.add(
      job.name,
      { intake: job.data as unknown, rejected: { intakeJobId: id, reason, rejectedAt: clock.now(), by: 'gatekeeper', submittedAt: job.timestamp } },
      { jobId: rejectedJobId(id), ...KEEP },
    );
    let r = await park(job.id!);
    // An earlier job had this id (the intake queue's counter restarted): park this one under its own.
    const earlier = r.data.rejected.submittedAt;
    if (earlier !== undefined && earlier !== job.timestamp) r = await park(`${job.id!}@${job.timestamp}`);
    await r.log(`rejected: ${reason}`);
    throw new UnrecoverableError(reason);
  }

  /** Decide and carry out a batch of valid jobs; one result per job, in order. */
  async function admitBatch(batch: Pending[]): Promise<IntakeResult[]> {
    const now = clock.now();
    // Concurrent processing lets jobs arrive a little out of order: decide
    // each batch in submission order, so the earlier job gets the last hours.
    const reqs = batch.map((p) => ({ intakeJobId: p.job.id!, data: p.data, order: submissionOrder(p.job.id!, p.job.timestamp), submittedAt: p.job.timestamp }));
    const sorted = reqs.map((_, i) => i).sort((x, y) => reqs[x]!.order - reqs[y]!.order);
    const decidedSorted = await decideAdmissions(accounting, sorted.map((i) => reqs[i]!), now, config.unknownProjectPolicy);
    const decisions: Decision[] = new Array(batch.length);
    sorted.forEach((i, j) => (decisions[i] = decidedSorted[j]!));
    const toExec: Parameters<Queue<ExecJobData>['addBulk']>[0] = [];
    const toHold: Parameters<Queue<HeldJobData>['addBulk']>[0] = [];
    const unheld: string[] = [];
    batch.forEach(({ job, data }, i) => {
      const d = decisions[i]!;
      // The job's own id, unless that id had been another job's (see reserve.lua).
      const id = d.reservationId ?? job.id!;
      if (d.kind === 'cancelled' || d.kind === 'rejected' || d.kind === 'throttled') return;
      if (d.kind === 'held') {
        toHold.push({
          name: job.name,
          data: { ...data, held: { intakeJobId: id, reason: d.reason, hold: d.hold, heldAt: now, submittedAt: job.timestamp } },
          // Prioritized, not waiting: BullMQ keeps those in a sorted set, so taking
          // one out on release is O(log n); from the waiting list it is O(n), and
          // a release storm over 50,000 held jobs went quadratic (measured).
          opts: { jobId: heldJobId(id), priority: 1, ...KEEP },
        });
        return;
      }
      if (d.kind === 'admitted' && d.admission.softOver) {
        log.warn({ jobId: id, project: data.project, user: data.user, softOver: d.admission.softOver }, 'admitted past a soft limit');
      }
      // The derived job id makes a second add a no-op.
      if (d.kind === 'admitted' || d.state === 'reserved') {
        toExec.push({ name: job.name, data: { ...data, admission: d.admission }, opts: { jobId: execJobId(id), ...KEEP } });
      }
      // A retry after a crash: an earlier attempt may have parked it as held
      // before a budget change let this attempt admit it. One state only.
      if (d.kind === 'already') unheld.push(heldJobId(id));
    });
    const [, held] = await Promise.all([
      toExec.length > 0 ? execQueue.addBulk(toExec) : [],
      toHold.length > 0 ? heldQueue.addBulk(toHold) : [],
      ...unheld.map((id) => heldQueue.remove(id).catch(() => 0)),
    ]);
    // The reason is in the held job's data and the intake job's return value
    // (a job log line as well would cost one more Redis call per held job).
    for (const h of held) log.info({ jobId: h.data.held.intakeJobId, project: h.data.project, reason: h.data.held.reason }, 'held');
    return batch.map(({ job }, i) => result(decisions[i]!.reservationId ?? job.id!, decisions[i]!));
  }

  /**
   * Over a submission rate: back to delayed on intake until its slot is due
   * (its reserve call booked it), with the reason in the job's log. It leaves
   * its batch at once, so a flood never waits in front of other users' jobs.
   */
  async function throttle(job: Job, token: string | undefined, r: Extract<IntakeResult, { outcome: 'throttled' }>): Promise<never> {
    if (deps.metrics) {
      deps.metrics.admissions.inc({ outcome: 'throttled' });
      for (const s of r.scopes) deps.metrics.throttled.inc({ kind: s.slice(0, s.indexOf(':')) });
    }
    log.debug({ jobId: job.id, reason: r.reason }, 'throttled');
    await job.log(r.reason);
    await job.moveToDelayed(r.dueAt, token);
    throw new DelayedError();
  }

  const admissions = new GroupCommit<Pending, IntakeResult>(admitBatch, config.gatekeeperMaxBatch);

  async function processIntakeJob(job: Job, token: string | undefined): Promise<IntakeResult> {
    try {
      // A custom job id is the submitter's text too: it keys the reservation and every ledger row.
      const badId = unsafeText('job id', job.id!) ?? (job.id!.length > 256 ? 'job id is longer than 256 characters' : null);
      if (badId) return await reject(job, `invalid job: ${badId}`);
      const parsed = parseIntakeJob(schema, job.data);
      if (!parsed.ok) return await reject(job, parsed.reason);
      const r = await admissions.submit({ job, data: parsed.data });
      if (r.outcome === 'rejected') return await reject(job, r.reason);
      // An admin cancelled it while held; this is a late re-run of its intake job.
      if (r.outcome === 'cancelled') throw new UnrecoverableError('cancelled by an admin while held');
      if (r.outcome === 'throttled') return await throttle(job, token, r);
      if (deps.metrics) {
        deps.metrics.admissions.inc({ outcome: r.outcome });
        // Wall time, not the injected clock: this is how long submitters waited.
        deps.metrics.admissionLatency.observe(Math.max(0, Date.now() - job.timestamp) / 1000);
      }
      return r;
    } catch (err) {
      if (err instanceof UnrecoverableError || err instanceof DelayedError) throw err;
      // Not the job's fault (Redis failover, a timeout): try again later
      // rather than spend the submitter's attempts on it.
      log.error({ err, jobId: job.id }, 'admission step failed; retrying the job');
      await job.moveToDelayed(Date.now() + TRANSIENT_RETRY_MS, token);
      throw new DelayedError();
    }
  }

  const worker = new Worker(names.intake, processIntakeJob, {
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
  });
  worker.on('error', (err) => log.error({ err }, 'gatekeeper worker error'));
  // The processor fails a job only with UnrecoverableError (invalid, cancelled).
  // Any other failure came from BullMQ's own bookkeeping after the work was
  // done — a NOSCRIPT inside its completion step after SCRIPT FLUSH, a dropped
  // connection — so run the job again: every step is idempotent, and the
  // re-run just completes it with the same outcome.
  worker.on('failed', (job, err) => {
    if (!job || err instanceof UnrecoverableError || err.name === 'UnrecoverableError') return;
    if ((job.attemptsStarted ?? 0) > MAX_BOOKKEEPING_RETRIES) {
      log.error({ err, jobId: job.id }, 'intake job keeps failing in Redis bookkeeping; left failed');
      return;
    }
    log.warn({ err: err.message, jobId: job.id }, 'intake job failed outside admission; running it again');
    // The retry itself is a Redis call that may meet the same trouble: try again, backing off.
    const retry = (n: number): void => {
      job.retry('failed').catch((e: unknown) => {
        if (n >= 8) return log.error({ err: e, jobId: job.id }, 'could not retry the intake job; left failed');
        setTimeout(() => retry(n + 1), 100 * 2 ** n).unref();
      });
    };
    retry(0);
  });

  return {
    worker,
    async close(): Promise<void> {
      await worker.close();
      await Promise.all([execQueue.close(), heldQueue.close(), rejectedQueue.close()]);
    },
  };
}

function result(intakeJobId: string, d: Decision): IntakeResult {
  if (d.kind === 'cancelled') return { outcome: 'cancelled' };
  if (d.kind === 'rejected') return { outcome: 'rejected', reason: d.reason };
  if (d.kind === 'throttled') return { outcome: 'throttled', dueAt: d.dueAt, reason: d.reason, scopes: d.over.map((b) => b.scope) };
  if (d.kind === 'held') return { outcome: 'held', heldJobId: heldJobId(intakeJobId), reason: d.reason };
  return {
    outcome: 'admitted',
    execJobId: execJobId(intakeJobId),
    ...(d.kind === 'already' && d.state === 'settled' ? { alreadySettled: true } : {}),
  };
}

export type Gatekeeper = ReturnType<typeof createGatekeeper>;

/**
 * The admin side of held jobs: list, release (re-run admission first in,
 * first out), override (admit regardless of budget), cancel (to gpu-rejected).
 * Every action writes one audit row, after the Lua script made the change
 * (through the audit outbox if Postgres refuses it then: src/audit/change.ts).
 * The Lua scripts make each decision; this
 * module moves the BullMQ jobs to match and works in batches, so releasing
 * 10,000 held jobs never blocks Redis or the event loop for long.
 *
 * Crash safety: a decision is recorded in Redis first (reservation state),
 * then the jobs are moved. A crash in between leaves a reservation whose job
 * is still on gpu-held; `promoteReleased` (promote.ts; run again by the
 * reconciler's sweep) finishes the move. Every move is idempotent.
 */
import { Queue, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { Pool } from '../db/pool.ts';
import type { Actor, AuditEntry } from '../db/audit.ts';
import { recordAudit, type DurableAudit } from '../audit/change.ts';
import { Accounting } from '../accounting/counters.ts';
import type { Hold, OpenReservation, ReleaseOutcome, Shortfall, UnpricedWhy } from '../accounting/types.ts';
import { describeHold } from '../accounting/reasons.ts';
import { gpuTypeRefusal } from '../accounting/admission.ts';
import type { ExecJobData, HeldJobData, RejectedJobData } from '../../queues/contract.ts';
import { heldJobId, queueNames, rejectedJobId } from '../../queues/names.ts';
import { promoteReleased } from './promote.ts';
import { heldNow } from './held-now.ts';
import { UNIT_SCALE } from '../accounting/pricing.ts';
import { Budgets } from '../accounting/budgets.ts';
import { PriceList } from '../accounting/price-list.ts';
import { GpuCaps } from '../accounting/gpu-caps.ts';
import { gpuMsToHours } from '../units.ts';
import { pipelined } from '../redis/pipelined.ts';

/** Jobs per release script call: bounds how long Redis runs one script. */
const RELEASE_BATCH = 500;

export interface HeldView {
  jobId: string;
  name: string;
  project: string;
  user: string;
  jobType?: string | undefined;
  estimatedGpuHours: number;
  /** Why it waits, with today's numbers. */
  reason: string;
  /** What will start it, in words: room freed, a period's reset, the jobs ahead of it, or an admin. */
  startsWhen: string;
  /** The hold as data, in GPU-hours (or a limit's own unit), as of now. */
  hold: HoldView;
  heldAt: number;
  ageSeconds: number;
}

export interface HoldView {
  shortfalls: (
    | { scope: string; code: Shortfall['code']; limitGpuHours: number | null; usedGpuHours: number; reservedGpuHours: number; neededGpuHours: number }
    | { scope: string; code: 'over-gpus'; limitGpus: number; inFlightGpus: number; neededGpus: number }
    /** A limit in units or dollars: its numbers as decimals of its unit. */
    | { scope: string; code: Shortfall['code']; unit: Shortfall['unit']; limit: number | null; used: number; reserved: number; needed: number }
  )[];
  /** Older held jobs ahead of it in the line of `line` (first in, first out). */
  ahead: number;
  line?: string;
  /** Scopes whose lines it waits in. */
  lines: string[];
  /** Older held jobs ahead of it in each of those lines. */
  positions: { scope: string; ahead: number }[];
}

function holdView(h: Hold, positions: HoldView['positions']): HoldView {
  return {
    shortfalls: h.shortfalls.map((s) => s.code === 'over-gpus'
      // A GPU cap's numbers are GPUs (queues/contract.ts Shortfall).
      ? { scope: s.scope, code: s.code, limitGpus: s.limitGpuMs!, inFlightGpus: s.reservedGpuMs, neededGpus: s.neededGpuMs }
      : (s.unit ?? 'gpuHours') === 'gpuHours'
        ? {
          scope: s.scope, code: s.code, limitGpuHours: s.limitGpuMs === null ? null : gpuMsToHours(s.limitGpuMs),
          usedGpuHours: gpuMsToHours(s.usedGpuMs), reservedGpuHours: gpuMsToHours(s.reservedGpuMs), neededGpuHours: gpuMsToHours(s.neededGpuMs),
        }
        // A limit in units or dollars: its numbers in its unit (decimals).
        : ((d: (n: number) => number) => ({
          scope: s.scope, code: s.code, unit: s.unit, limit: s.limitGpuMs === null ? null : d(s.limitGpuMs),
          used: d(s.usedGpuMs), reserved: d(s.reservedGpuMs), needed: d(s.neededGpuMs),
        }))((n) => n / UNIT_SCALE[s.unit!])),
    ahead: h.ahead,
    ...(h.line ? { line: h.line } : {}),
    lines: h.lines ?? [],
    positions,
  };
}

export interface ReleaseSelector {
  all?: boolean;
  project?: string;
  user?: string;
  ids?: string[];
  /** Only jobs of these projects, or of this person (what the caller may see or manage; src/http/access.ts). */
  within?: JobScope;
}

/** Jobs of any of `projects`, and (when given) every job of `user`. */
export interface JobScope {
  projects: readonly string[];
  user?: string;
}

export interface ReleaseReport {
  considered: number;
  admitted: string[];
  stillHeld: { jobId: string; reason: string }[];
  notHeld: { jobId: string; state: string }[];
  /** Rejected as decided: their project may no longer use their GPU type. */
  rejected: { jobId: string; reason: string }[];
}

export class NotHeldError extends Error {
  constructor(
    readonly jobId: string,
    readonly state: string,
  ) {
    super(state === 'missing' ? `no held job ${jobId}` : `job ${jobId} is not held (it is ${state})`);
  }
}

export class HeldJobs {
  private readonly accounting: Accounting;
  private readonly exec: Queue<ExecJobData>;
  private readonly held: Queue<HeldJobData>;
  private readonly rejected: Queue<RejectedJobData>;
  private readonly audit: DurableAudit;
  private readonly budgets: Budgets;
  private readonly caps: GpuCaps;

  constructor(
    config: Config,
    private readonly redis: Redis,
    private readonly pool: Pool,
    private readonly clock: Clock,
    private readonly log: Logger,
  ) {
    const names = queueNames(config);
    const opts = { connection: redis, prefix: names.prefix };
    this.accounting = new Accounting(redis, names.prefix, config.settledRetainSeconds, config.timeZone, config.unknownGpuTypePolicy);
    this.exec = new Queue(names.exec, opts);
    this.held = new Queue(names.held, opts);
    this.rejected = new Queue(names.rejected, opts);
    this.audit = { pool, redis, outboxKey: this.accounting.keys.auditOutbox, log };
    this.budgets = new Budgets(pool, this.accounting, clock);
    this.caps = new GpuCaps(pool, this.accounting, clock);
  }

  async close(): Promise<void> {
    await Promise.all([this.exec.close(), this.held.close(), this.rejected.close()]);
  }

  /** How many jobs each project has held now; projects with none are left out. */
  async countsByProject(): Promise<Map<string, number>> {
    return new Map(Object.entries(await this.accounting.heldCounts()).filter(([, n]) => n > 0));
  }

  /** Held jobs, oldest first, optionally of one project and/or user; each as it stands now (src/admin/held-now.ts). */
  async list(filter: { project?: string | undefined; user?: string | undefined; within?: JobScope | undefined; limit: number; offset: number }): Promise<{ total: number; jobs: HeldView[] }> {
    const ids = await this.select({ project: filter.project, user: filter.user, within: filter.within, all: true });
    const page = (await this.jobs(ids.slice(filter.offset, filter.offset + filter.limit))).filter((j) => j !== undefined);
    const now = this.clock.now();
    const prices = await PriceList.read(this.accounting.definitions, now);
    const nows = await heldNow(this.redis, this.accounting.keys, this.budgets, this.caps, prices, this.accounting.timeZone, page.map((j) => j.data));
    return {
      total: ids.length,
      jobs: page.map((j, i) => {
        const d = j.data;
        const fresh = nows[i]!;
        return {
          jobId: d.held.intakeJobId,
          name: j.name,
          project: d.project,
          user: d.user,
          ...(d.jobType ? { jobType: d.jobType } : {}),
          estimatedGpuHours: d.estimatedGpuHours,
          reason: fresh.reason,
          startsWhen: fresh.startsWhen,
          hold: holdView(fresh.hold, fresh.positions),
          heldAt: d.held.heldAt,
          ageSeconds: Math.max(0, Math.round((now - d.held.heldAt) / 1000)),
        };
      }),
    };
  }

  /** Re-run admission for the selected held jobs, oldest first; the rest stay held with a fresh reason. */
  async release(sel: ReleaseSelector, actor: Actor): Promise<ReleaseReport> {
    const ids = await this.select(sel);
    const report = await this.decideAgain(ids, `released by ${actor.name}`);
    await recordAudit(this.audit, actor, {
      action: 'held.release',
      target: selectorText(sel),
      before: { held: ids.length },
      after: { admitted: report.admitted.length, stillHeld: report.stillHeld.length, notHeld: report.notHeld.length, rejected: report.rejected.length },
    });
    this.log.info({ actor: actor.name, selector: sel, admitted: report.admitted.length, stillHeld: report.stillHeld.length }, 'released held jobs');
    return report;
  }

  /**
   * Decide held jobs again because room appeared (workers/waker.ts): as
   * release does, first in first out, with `note` in the ledger and the
   * JOB_RELEASED events. `ids`: the first jobs of the line of scope base
   * `line`, as read a moment ago. Not an admin change, so no audit row.
   */
  async wake(line: string, ids: string[], note: string): Promise<ReleaseReport> {
    // Oldest first: the script stops at the first that stays (the rest wait behind it), and at one no longer in the line.
    return this.decideAgain(ids.slice(0, RELEASE_BATCH), note, 'wake', line);
  }

  private async decideAgain(ids: string[], note: string, mode: 'fifo' | 'wake' = 'fifo', line = ''): Promise<ReleaseReport> {
    const report: ReleaseReport = { considered: 0, admitted: [], stillHeld: [], notHeld: [], rejected: [] };
    for (let i = 0; i < ids.length; i += RELEASE_BATCH) {
      const chunk = ids.slice(i, i + RELEASE_BATCH);
      const now = this.clock.now();
      const outcomes = await this.accounting.release(chunk, mode, note, now, line);
      // In 'wake' mode the script answers only for the jobs it decided.
      const decided = chunk.slice(0, outcomes.length);
      report.considered += decided.length;
      await this.apply(decided, outcomes, report, now);
      await new Promise((r) => setImmediate(r)); // let other requests in between batches
    }
    return report;
  }

  /**
   * Admit one held job regardless of budget: counted in usage, flagged in the
   * ledger and the audit. `auditAfter`: more to record in the audit row's
   * `after` (an approved override request names its requester there).
   */
  /**
   * `opts.audit` writes the audit row instead of recordAudit (an override
   * request's approval writes it in the transaction that marks the request).
   */
  async override(jobId: string, actor: Actor, reason: string | null, opts: { auditAfter?: Record<string, unknown>; audit?: (e: AuditEntry) => Promise<void> } = {}): Promise<{ jobId: string; reservedGpuHours: number }> {
    const note = `override by ${actor.name}${reason ? `: ${reason}` : ''}`;
    const [out] = await this.accounting.release([jobId], 'override', note, this.clock.now());
    // Too costly to count (an override admits a type its project may not use): rejected, not admitted.
    if (out!.kind === 'rejected') throw new NotHeldError(jobId, `rejected: ${await this.rejectForGpuType(jobId, out!, undefined, actor.name)}`);
    if (out!.kind !== 'admitted') throw new NotHeldError(jobId, out!.kind === 'not-held' ? out!.state : 'held');
    await promoteReleased(this.accounting, this.exec, this.held, [jobId]);
    const reservedGpuHours = gpuMsToHours(out!.amountGpuMs);
    const entry: AuditEntry = {
      action: 'held.override',
      target: `job:${jobId}`,
      before: { state: 'held' },
      after: { state: 'admitted', reservedGpuHours, override: true, ...opts.auditAfter },
      reason,
    };
    await (opts.audit ? opts.audit(entry) : recordAudit(this.audit, actor, entry));
    return { jobId, reservedGpuHours };
  }

  /** Cancel a held job: it moves to gpu-rejected with the admin's reason. */
  async cancel(jobId: string, actor: Actor, reason: string): Promise<void> {
    const out = await this.accounting.cancel(jobId, this.clock.now());
    if (out.kind !== 'cancelled') throw new NotHeldError(jobId, out.state);
    const why = `cancelled by ${actor.name}: ${reason}`;
    const job = await this.moveToRejected(jobId, why, actor.name);
    await recordAudit(this.audit, actor, { action: 'held.cancel', target: `job:${jobId}`, before: { state: 'held' }, after: { state: 'rejected' }, reason });
    await this.emitRejected(jobId, job, why, actor.name);
  }

  /**
   * A held job the release script rejected for its GPU type as it was
   * decided again (its project may no longer use it, it has no rate and the
   * policy is now to reject such jobs, or its charge now passes 2^53; as
   * reserve rejects such a job): moved to gpu-rejected with the reason.
   */
  private async rejectForGpuType(jobId: string, out: { gpuType: string; why: UnpricedWhy }, job: Job<HeldJobData> | undefined, by: string): Promise<string> {
    const project = job?.data.project ?? '';
    const allowed = out.why === 'not-allowed' ? ((await this.accounting.allowedGpuTypes(project)) ?? []) : [];
    const known = out.why === 'unknown' ? await this.accounting.pricedGpuTypes() : [];
    const reason = gpuTypeRefusal(out.why, out.gpuType, project, allowed, known);
    await this.moveToRejected(jobId, reason, by, job);
    await this.emitRejected(jobId, job, reason, by);
    return reason;
  }

  /** The held BullMQ job (if it is still there) moved to gpu-rejected with `why`. */
  private async moveToRejected(jobId: string, why: string, by: string, known?: Job<HeldJobData>): Promise<Job<HeldJobData> | undefined> {
    const job = known ?? (await this.jobs([jobId]))[0];
    if (job) {
      const { held, ...intake } = job.data;
      const r = await this.rejected.add(
        job.name,
        { intake, rejected: { intakeJobId: jobId, reason: why, rejectedAt: this.clock.now(), by } },
        { jobId: rejectedJobId(jobId), removeOnComplete: false, removeOnFail: false },
      );
      await r.log(`rejected: ${why} (was held: ${held.reason})`);
      await this.held.remove(heldJobId(jobId));
    }
    return job;
  }

  private async emitRejected(jobId: string, job: Job<HeldJobData> | undefined, why: string, by: string): Promise<void> {
    await this.accounting.events.emit('JOB_REJECTED', {
      jobId, ...(job ? { project: job.data.project, user: job.data.user } : {}), reason: why, by,
    }, `rejected:${jobId}`, this.clock.now());
  }

  private async apply(ids: string[], outcomes: ReleaseOutcome[], report: ReleaseReport, now: number): Promise<void> {
    const admitted: string[] = [];
    const admittedJobs: (Job<HeldJobData> | undefined)[] = [];
    const records: OpenReservation[] = [];
    const jobs = await this.jobs(ids);
    await Promise.all(
      outcomes.map(async (out, i) => {
        const id = ids[i]!;
        if (out.kind === 'admitted') {
          // The script's answer is the reservation: no need to read it back.
          admitted.push(id);
          admittedJobs.push(jobs[i]);
          const job = jobs[i];
          records.push({
            jobId: id, state: 'reserved', amountGpuMs: out.amountGpuMs, scopes: out.scopes, admittedAt: now,
            meta: job ? { project: job.data.project, user: job.data.user, gpus: job.data.gpus } : { project: '', user: '', gpus: 1 },
          });
          return;
        }
        if (out.kind === 'not-held') return void report.notHeld.push({ jobId: id, state: out.state });
        const job = jobs[i];
        if (out.kind === 'rejected') {
          return void report.rejected.push({ jobId: id, reason: await this.rejectForGpuType(id, out, job, 'gatekeeper') });
        }
        const { kind: _, ...decided } = out;
        // A job held behind a line stays in the lines it was in.
        const lines = decided.lines ?? job?.data.held.hold?.lines;
        const hold: Hold = { ...decided, ...(lines ? { lines } : {}) };
        const reason = describeHold(hold);
        report.stillHeld.push({ jobId: id, reason });
        if (job && (job.data.held.reason !== reason || JSON.stringify(job.data.held.hold) !== JSON.stringify(hold))) {
          await job.updateData({ ...job.data, held: { ...job.data.held, reason, hold } });
          await job.log(`still held after release: ${reason}`);
        }
      }),
    );
    await promoteReleased(this.accounting, this.exec, this.held, admitted, { jobs: admittedJobs, records });
    report.admitted.push(...admitted);
  }

  /** Held job ids matching a selector, oldest first. */
  private async select(sel: ReleaseSelector): Promise<string[]> {
    const ids = await this.selectAll(sel);
    const within = sel.within;
    if (!within) return ids;
    const owners = await this.owners(ids);
    return ids.filter((_, i) => {
      const o = owners[i];
      return o != null && (within.projects.includes(o.project) || o.user === within.user);
    });
  }

  private async selectAll(sel: ReleaseSelector): Promise<string[]> {
    if (sel.ids) {
      const scores = sel.ids.length > 0 ? await this.redis.zmscore(this.accounting.keys.allHeld, ...sel.ids) : [];
      // Held ones in line order; the others (not held) last, so they are reported.
      return sel.ids
        .map((id, i) => ({ id, s: scores[i] === null ? Infinity : Number(scores[i]) }))
        .sort((a, b) => a.s - b.s)
        .map((x) => x.id);
    }
    const ids = await this.accounting.heldIds(sel.project);
    if (!sel.user) return ids;
    const owners = await this.owners(ids);
    return ids.filter((_, i) => owners[i]?.user === sel.user);
  }

  /** The project and user of each held job, from its reservation record, in one round trip (null: not held, or gone). */
  async owners(ids: string[]): Promise<({ project: string; user: string } | null)[]> {
    if (ids.length === 0) return [];
    const metas = await pipelined(this.redis, ids, (p, id) => p.hget(this.accounting.keys.reservation(id), 'meta'));
    return metas.map((meta) => (typeof meta === 'string' ? (JSON.parse(meta) as { project: string; user: string }) : null));
  }

  private async jobs(ids: string[]): Promise<(Job<HeldJobData> | undefined)[]> {
    return Promise.all(ids.map((id) => this.held.getJob(heldJobId(id))));
  }
}

function selectorText(sel: ReleaseSelector): string {
  if (sel.ids) return `jobs:${sel.ids.join(',')}`;
  if (sel.project && sel.user) return `project:${sel.project},user:${sel.user}`;
  if (sel.project) return `project:${sel.project}`;
  if (sel.user) return `user:${sel.user}`;
  return 'all';
}

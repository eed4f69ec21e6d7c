/**
 * Corrections, append-only (issue 22): a credit gives a scope back an amount
 * of one unit for its current period; a refund takes back part or all of one
 * job's charge; a re-rate charges the ended jobs of a GPU type and time range
 * at a corrected rate. Each writes new ledger rows of kind 'correction'
 * (src/db/corrections.ts) that reference what they correct, and changes the
 * counters the corrected charges are in by the same amounts; the rows, their
 * audit row and the Redis change are one admin change (src/audit/change.ts),
 * so all land or none. No ledger row is ever edited: a job's charge now is
 * its end row's plus its corrections', and every sum (counters, rollups,
 * exports, the drift audit, a rebuild) reads it that way.
 *
 * A correction of a job is dated at the job's end, so it counts in the
 * periods the job counted in (last month's export sums to last month's
 * corrected total); a credit is dated now, in the scope's current period.
 * All corrections take one lock: they are rare, and a refund and a re-rate
 * of the same job must not both start from the same charge.
 */
import type { Pool, Queryable } from '../db/pool.ts';
import type { Actor } from '../db/audit.ts';
import type { Logger } from '../log.ts';
import { adminChange } from '../audit/change.ts';
import { systemClock, type Clock } from '../clock.ts';
import { insertLedgerRows, type LedgerRow, type StreamPosition } from '../db/ledger.ts';
import { chargedJob, chargedJobsOfType, runningJobsOfType, type ChargedJob } from '../db/corrections.ts';
import { charges, LIMIT_UNITS, UNIT_SCALE, type Charges, type LimitUnit, type Rate } from './pricing.ts';
import { parseScopeId, scopeLabel } from './scopes.ts';
import { formatAmount, unitSuffix } from '../units.ts';
import type { Accounting } from './counters.ts';
import { chargedView } from './admission.ts';

/** A correction that cannot be made as asked: nothing changed (HTTP 404 or 409). */
export class CorrectionRefused extends Error {
  constructor(readonly status: 404 | 409, message: string) {
    super(message);
  }
}

export interface CorrectionResult {
  /** Correction rows written. */
  corrections: number;
  /** The change of charge over all of them, as decimals (negative: given back). */
  charged: { gpuHours: number; units: number; usd: number };
  /** A re-rate: jobs of the range still running, left as they are (re-rate them once they end). */
  skippedRunning?: number;
}

type Delta = [gpuMs: number, unitsMilli: number, usdMicro: number];
const minus = (a: Charges, b: Charges): Delta => [a.gpuMs - b.gpuMs, a.unitsMilli - b.unitsMilli, a.usdMicro - b.usdMicro];
const UNIT_INDEX: Record<LimitUnit, 0 | 1 | 2> = { gpuHours: 0, units: 1, usd: 2 };

export class Corrections {
  constructor(
    private readonly pool: Pool,
    private readonly accounting: Accounting,
    private readonly timeZone: string,
    private readonly clock: Clock = systemClock,
    private readonly log?: Logger,
  ) {}

  /** Give `scope` (a base: 'project:alpha', 'user-day:ann', …) back `amount` of `unit`'s integer in its current period. */
  async credit(scope: string, unit: LimitUnit, amount: number, actor: Actor, reason: string): Promise<CorrectionResult> {
    return this.change(`correction.credit`, scope, actor, reason, async (now) => {
      const [s] = await this.accounting.scopes([scope], now);
      const used = s!.counted[unit].used;
      if (amount > used) {
        throw new CorrectionRefused(409, `${scopeLabel(scope)} has used ${formatAmount(used, unit)}${unitSuffix(unit)} this period; a credit can give back at most that`);
      }
      const delta: Delta = [0, 0, 0];
      delta[UNIT_INDEX[unit]] = -amount;
      // Only a project's budget is a project's usage: a credit to a quota, a run cap or a GPU type
      // budget gives room back in that one limit and names nobody, so no usage rollup counts it.
      const p = parseScopeId(scope);
      const project = p.kind === 'project' ? p.name : '';
      const row = this.row({ correction: 'credit', jobId: `credit:${s!.id}`, project, user: '', scopes: [s!.id], at: now, delta, reason, actor });
      return { rows: [row], audit: { counter: s!.id, unit, amount: amount / UNIT_SCALE[unit] } };
    });
  }

  /** Take back `gpuMs` of job `jobId`'s last run (all that is left of it when null), at the price it is charged at. */
  async refund(jobId: string, gpuMs: number | null, actor: Actor, reason: string): Promise<CorrectionResult> {
    return this.change('correction.refund', `job:${jobId}`, actor, reason, async (_now, db) => {
      const job = await chargedJob(db, jobId);
      if (!job) throw new CorrectionRefused(404, `job ${jobId} has not ended (or is unknown): only an ended job's charge can be refunded`);
      if (job.exempt) throw new CorrectionRefused(409, `job ${jobId} is of an exempt job type: it was charged nothing`);
      const take = gpuMs ?? job.remainingGpuMs;
      if (take <= 0 || take > job.remainingGpuMs) {
        throw new CorrectionRefused(409, `job ${jobId} has ${job.remainingGpuMs / 3_600_000} GPU-h left to refund; asked for ${take / 3_600_000}`);
      }
      const delta = minus(charges(job.remainingGpuMs - take, job.rate, job.factorMilli), job.charged);
      return { rows: [this.jobRow(job, 'refund', delta, job.rate, reason, actor, take)], audit: { run: job.endId, refundedGpuHours: take / 3_600_000 } };
    });
  }

  /** Charge the ended jobs of `gpuType` admitted in [from, to) at `rate` from their start. */
  async reRate(gpuType: string, from: number, to: number, rate: Rate, actor: Actor, reason: string): Promise<CorrectionResult> {
    let running = 0;
    const out = await this.change('correction.re-rate', `gpu-type:${gpuType}`, actor, reason, async (_now, db) => {
      const jobs = await chargedJobsOfType(db, gpuType, new Date(from), new Date(to));
      const n = await runningJobsOfType(db, gpuType, new Date(from), new Date(to));
      running = n;
      const rows = jobs.flatMap((job) => {
        const delta = minus(charges(job.remainingGpuMs, rate, job.factorMilli), job.charged);
        return delta.some((d) => d !== 0) ? [this.jobRow(job, 're-rate', delta, rate, reason, actor, null)] : [];
      });
      const decimal = (r: Rate) => ({ unitsPerGpuHour: r.unitsMilli / 1000, usdPerGpuHour: r.usdMicro / 1_000_000 });
      return { rows, audit: { from: new Date(from).toISOString(), to: new Date(to).toISOString(), ...decimal(rate), jobs: rows.length, runningLeft: n } };
    });
    return { ...out, skippedRunning: running };
  }

  /**
   * One admin change: `build` reads what it corrects, through the change's
   * own connection `db` (the embedded Postgres has one: a read through the
   * pool would wait for this transaction forever), and answers the rows;
   * they are written with their audit row, and the counters they name move
   * by their charges (undone if the commit fails).
   */
  private async change(action: string, target: string, actor: Actor, reason: string, build: (now: number, db: Queryable) => Promise<{ rows: LedgerRow[]; audit: Record<string, unknown> }>): Promise<CorrectionResult> {
    return adminChange(this.pool, ['corrections'], async (tx) => {
      const { rows, audit } = await build(this.clock.now(), tx.db);
      const total: Delta = [0, 0, 0];
      const byCounter = new Map<string, Delta>();
      for (const r of rows) {
        const d = r.actualCharge!.split('|').map(Number) as Delta;
        for (let i = 0; i < 3; i++) total[i]! += d[i]!;
        for (const c of r.scopes) {
          const t = byCounter.get(c) ?? [0, 0, 0];
          for (let i = 0; i < 3; i++) t[i]! += d[i]!;
          byCounter.set(c, t);
        }
      }
      const charged = chargedView({ gpuMs: total[0], unitsMilli: total[1], usdMicro: total[2] });
      await this.refuseBelowZero(action.replace('correction.', ''), byCounter);
      if (rows.length > 0) {
        await insertLedgerRows(tx.db, rows.map((r) => ({ ...r, streamMs: null, streamSeq: null }) as unknown as LedgerRow & StreamPosition), this.timeZone);
        await tx.audit(actor, { action, target, before: null, after: { ...audit, corrections: rows.length, charged }, reason });
        const deltas = [...byCounter];
        tx.redis({ apply: () => this.accounting.addUsed(deltas), undo: () => this.accounting.addUsed(deltas.map(([c, d]) => [c, d.map((x) => -x) as Delta])) });
      }
      return { corrections: rows.length, charged };
    }, this.log);
  }

  /**
   * No correction takes a counter's used below 0 in any unit: a refund or a
   * re-rate checks only what is left of the job, and a credit may already
   * have given part of it back, so it would lift the limit. Every correction
   * holds one lock and settles only raise used, so nothing lowers a counter
   * between this read and the write.
   */
  private async refuseBelowZero(kind: string, byCounter: Map<string, Delta>): Promise<void> {
    const lowered = [...byCounter].filter(([, d]) => d.some((x) => x < 0));
    const used = await this.accounting.usedOf(lowered.map(([c]) => c));
    for (const [c, d] of lowered) {
      const u = used.get(c)!;
      const i = d.findIndex((x, k) => u[k]! + x < 0);
      if (i < 0) continue;
      const unit = LIMIT_UNITS[i]!;
      const { period } = parseScopeId(c);
      const amount = (n: number) => `${formatAmount(n, unit)}${unitSuffix(unit)}`;
      throw new CorrectionRefused(409, `${scopeLabel(c)} ${period ? `in period ${period}` : '(one-off)'} has ${amount(u[i]!)} of used left; this ${kind} would give back ${amount(-d[i]!)}: a credit already gave part of it back`);
    }
  }

  private jobRow(job: ChargedJob, correction: 'refund' | 're-rate', delta: Delta, rate: Rate, reason: string, actor: Actor, correctedGpuMs: number | null): LedgerRow {
    return {
      ...this.row({ correction, jobId: job.jobId, project: job.project, user: job.user, scopes: job.scopes, at: this.endAt(job), delta, reason, actor }),
      jobType: job.jobType, gpuType: job.gpuType, admittedAt: job.admittedAt.toISOString(),
      price: `${rate.unitsMilli}|${rate.usdMicro}|${job.factorMilli}`, corrects: job.endId, correctedGpuMs,
    };
  }

  /** A correction of a job is dated at the job's end: usage by period counts it where it counted the job (counters go by the job's scope ids). */
  private endAt(job: ChargedJob): number {
    return job.endedAt.getTime();
  }

  private row(r: { correction: LedgerRow['correction']; jobId: string; project: string; user: string; scopes: string[]; at: number; delta: Delta; reason: string; actor: Actor }): LedgerRow {
    return {
      kind: 'correction', jobId: r.jobId, project: r.project, user: r.user, jobType: null, gpuType: null, scopes: r.scopes,
      estimated: '0', actual: '0', admittedAt: null, at: new Date(r.at).toISOString(), note: r.reason, override: false, exempt: false,
      run: null, meta: null, submittedMs: null, price: null, charge: '0|0|0', actualCharge: r.delta.join('|'),
      correction: r.correction, corrects: null, correctedGpuMs: null, actor: r.actor.name,
    };
  }
}

/**
 * Preflight: what would happen to a job or a batch submitted now, without
 * reserving anything. The reserve script runs in dry-run mode, so each job is
 * decided exactly as the gatekeeper would decide it (in order, each seeing
 * the ones before it, first in first out), then nothing is written. The
 * answer says which jobs would be throttled (over a user's or project's
 * submission rate) and adds the scopes' remaining budget and quota, and warnings: projects
 * with no budget (their jobs are held, or rejected, until an admin sets one),
 * limits already past a threshold, thresholds the batch would cross, limits
 * it would exhaust, soft limits it would pass. Each warning is data first
 * (`warningDetails`: a code, the scope, the numbers) and a sentence
 * (`warnings`, the same ones in the same order). It prices the jobs that
 * would run (admitted, held or throttled: all run in the end) on their own
 * GPU types, and the same jobs on every other type of the rate card
 * (src/admin/batch-cost.ts).
 */
import type { Config } from '../config.ts';
import type { Accounting } from '../accounting/counters.ts';
import type { DryRunWarning, Hold, ReserveOutcome } from '../accounting/types.ts';
import type { Budgets, ScopeView } from '../accounting/budgets.ts';
import { gpuTypeRefusal, jobMeta } from '../accounting/admission.ts';
import { describeHold, describeThrottle } from '../accounting/reasons.ts';
import { parseScopeId, scopeLabel, scopesForJob } from '../accounting/scopes.ts';
import { intakeJobSchema, parseIntakeJob, type IntakeJobData } from '../../queues/contract.ts';
import { formatAmount, hoursToGpuMs, unitSuffix } from '../units.ts';
import { PriceList } from '../accounting/price-list.ts';
import { batchCost, costByGpuType, type BatchCost, type GpuTypeCost } from './batch-cost.ts';

export type PreflightOutcome =
  | { index: number; outcome: 'admitted'; exempt?: true; softOver?: string[] }
  /** waitsFor (held): hours (a budget or quota), gpus (a GPU cap), budget (none set), line (an older held job first). */
  | { index: number; outcome: 'held'; reason: string; waitsFor: WaitKind[] }
  | { index: number; outcome: 'rejected'; reason: string }
  /** Over a submission rate: it would wait on intake until dueAt (ISO 8601), then be decided. */
  | { index: number; outcome: 'throttled'; dueAt: string; reason: string };

/** One warning as data; `message` is the sentence `warnings` carries. */
export type PreflightWarning =
  /** Jobs of these held (policy hold) or rejected (policy reject) because their project has no budget. */
  | { code: 'no-budget'; scope: string; project: string; policy: 'hold' | 'reject'; jobs: number; message: string }
  /** The scope is already past one of its warning thresholds. */
  | { code: 'past-threshold'; scope: string; thresholdPercent: number; message: string }
  /** Admitting these jobs would reach a threshold. */
  | { code: 'would-cross-threshold'; scope: string; thresholdPercent: number; message: string }
  /** These jobs would use the scope up; the ones past it are held. */
  | { code: 'would-exhaust'; scope: string; message: string }
  /** Jobs of these admitted past the scope's soft limit. */
  | { code: 'soft-over'; scope: string; jobs: number; message: string };

export interface PreflightReport {
  jobs: number;
  admitted: number;
  held: number;
  rejected: number;
  throttled: number;
  outcomes: PreflightOutcome[];
  /** Every scope the valid jobs touch, now (before the batch). */
  scopes: ScopeView[];
  /** The sentences of warningDetails, in its order. */
  warnings: string[];
  warningDetails: PreflightWarning[];
  /** What the jobs that would run (admitted, held, throttled) cost on their own GPU types, at the rates in force now. */
  cost: BatchCost;
  /** The same jobs, all on each GPU type of the rate card instead, cheapest first. */
  byGpuType: GpuTypeCost[];
}

export class Preflight {
  private readonly schema;

  constructor(
    private readonly config: Config,
    private readonly accounting: Accounting,
    private readonly budgets: Budgets,
  ) {
    this.schema = intakeJobSchema(config);
  }

  /** Validate like the gatekeeper; answer one sentence per invalid job. */
  validate(inputs: unknown[]): ({ ok: true; data: IntakeJobData } | { ok: false; reason: string })[] {
    return inputs.map((i) => parseIntakeJob(this.schema, i));
  }

  async run(inputs: unknown[], now: number): Promise<PreflightReport> {
    return (await this.decide(inputs, now)).report;
  }

  /** The report, and each held job's hold as data (by index; undefined for the others): the submission screen words it. */
  async decide(inputs: unknown[], now: number): Promise<{ report: PreflightReport; holds: (Hold | undefined)[] }> {
    const parsed = this.validate(inputs);
    const valid = parsed.flatMap((p, index) => (p.ok ? [{ index, data: p.data }] : []));
    const reqs = valid.map(({ index, data }) => ({
      jobId: `preflight-${index}`,
      order: index,
      amountGpuMs: hoursToGpuMs(data.estimatedGpuHours),
      scopes: scopesForJob(data).map((s) => s.id),
      meta: jobMeta(data),
    }));
    const bases = [...new Set(reqs.flatMap((r) => r.scopes))];
    const [scopes, dry, prices] = await Promise.all([
      this.budgets.views(bases), this.accounting.dryRun(reqs, now, this.config.unknownProjectPolicy), PriceList.read(this.accounting.definitions, now),
    ]);
    const known = dry.outcomes.some((o) => o.kind === 'unpriced' && o.why === 'unknown') ? await this.accounting.pricedGpuTypes() : [];
    const refusedIn = [...new Set(dry.outcomes.flatMap((o, k) => (o.kind === 'unpriced' && o.why === 'not-allowed' ? [reqs[k]!.meta.project] : [])))];
    const allowed = new Map(await Promise.all(refusedIn.map(async (p) => [p, (await this.accounting.allowedGpuTypes(p)) ?? []] as const)));

    const outcomes: PreflightOutcome[] = parsed.map((p, index) => ({ index, outcome: 'rejected', reason: p.ok ? '' : p.reason }));
    const holds: (Hold | undefined)[] = parsed.map(() => undefined);
    const softPassed = new Map<string, number>();
    dry.outcomes.forEach((o, k) => {
      const index = valid[k]!.index;
      if (o.kind === 'reserved') {
        for (const s of o.softOver) softPassed.set(s, (softPassed.get(s) ?? 0) + 1);
        outcomes[index] = { index, outcome: 'admitted', ...(o.exempt ? { exempt: true as const } : {}), ...(o.softOver.length ? { softOver: o.softOver } : {}) };
      } else if (o.kind === 'held') {
        outcomes[index] = { index, outcome: 'held', reason: describeHold(o), waitsFor: waitsFor(o) };
        holds[index] = o;
      } else if (o.kind === 'throttled') {
        outcomes[index] = { index, outcome: 'throttled', dueAt: new Date(o.dueAt).toISOString(), reason: describeThrottle(o.over, o.dueAt) };
      } else if (o.kind === 'rejected') {
        outcomes[index] = { index, outcome: 'rejected', reason: `no budget for ${scopeLabel(o.scope)} (unknown projects are rejected: UNKNOWN_PROJECT_POLICY=reject)` };
      } else if (o.kind === 'unpriced') {
        const project = reqs[k]!.meta.project;
        outcomes[index] = { index, outcome: 'rejected', reason: gpuTypeRefusal(o.why, o.gpuType, project, allowed.get(project) ?? [], known) };
      } else {
        // 'already' / 'cancelled' cannot happen for preflight ids; say so rather than guess.
        outcomes[index] = { index, outcome: 'rejected', reason: `unexpected preflight outcome ${o.kind}` };
      }
    });

    const warningDetails = [
      ...noBudgetWarnings(dry.outcomes, this.config.unknownProjectPolicy),
      ...limitWarnings(scopes, dry.warnings, softPassed),
    ];
    const count = (k: PreflightOutcome['outcome']) => outcomes.filter((o) => o.outcome === k).length;
    const running = valid.filter(({ index }) => outcomes[index]!.outcome !== 'rejected').map(({ data }) => data);
    const projects = [...new Set(running.map((j) => j.project))];
    const allowedIn = new Map(await Promise.all(projects.map(async (p) => [p, await this.accounting.allowedGpuTypes(p)] as const)));
    const report = {
      jobs: inputs.length, admitted: count('admitted'), held: count('held'), rejected: count('rejected'), throttled: count('throttled'), outcomes, scopes,
      warnings: warningDetails.map((w) => w.message), warningDetails,
      cost: batchCost(prices, running), byGpuType: costByGpuType(prices, running, allowedIn),
    };
    return { report, holds };
  }
}

/**
 * One warning per project whose jobs here the decision held or rejected for
 * want of a budget (exempt jobs are admitted without one, and do not count).
 */
function noBudgetWarnings(outcomes: ReserveOutcome[], policy: 'hold' | 'reject'): PreflightWarning[] {
  const jobs = new Map<string, number>();
  for (const o of outcomes) {
    const scope = o.kind === 'rejected' ? o.scope : o.kind === 'held' ? o.shortfalls.find((f) => f.code === 'no-limit')?.scope : undefined;
    if (scope !== undefined && parseScopeId(scope).kind === 'project') jobs.set(scope, (jobs.get(scope) ?? 0) + 1);
  }
  return [...jobs].map(([scope, n]) => {
    const project = parseScopeId(scope).name;
    const fate = policy === 'hold' ? 'held' : 'rejected';
    return {
      code: 'no-budget', scope, project, policy, jobs: n,
      message: `project ${project} has no budget: its jobs will be ${fate} until an admin sets one (${n} of these job${n === 1 ? '' : 's'}; UNKNOWN_PROJECT_POLICY=${policy})`,
    };
  });
}

/** Limits already past a threshold, thresholds and limits these jobs would reach, soft limits they would pass. */
function limitWarnings(scopes: ScopeView[], dry: DryRunWarning[], softPassed: Map<string, number>): PreflightWarning[] {
  const out: PreflightWarning[] = [];
  for (const s of scopes) {
    if (s.effectiveLimitGpuMs === null || s.effectiveLimitGpuMs <= 0) continue;
    const total = s.usedGpuMs + s.reservedGpuMs;
    const past = s.thresholds.filter((t) => total * 100 >= t * s.effectiveLimitGpuMs!).pop();
    if (past !== undefined) {
      const used = `${formatAmount(total, s.unit)} of ${formatAmount(s.effectiveLimitGpuMs, s.unit)}${unitSuffix(s.unit)}`;
      out.push({ code: 'past-threshold', scope: s.scope, thresholdPercent: past, message: `${scopeLabel(s.scope)}: ${used} used or reserved, past its ${past}% warning` });
    }
  }
  for (const w of dry) {
    out.push(
      w.type === 'THRESHOLD_CROSSED'
        ? { code: 'would-cross-threshold', scope: w.scope, thresholdPercent: w.thresholdPercent!, message: `${scopeLabel(w.scope)}: this submission would reach ${w.thresholdPercent}% of its limit` }
        : { code: 'would-exhaust', scope: w.scope, message: `${scopeLabel(w.scope)}: this submission would hit its limit; the jobs past it are held` },
    );
  }
  for (const [scope, n] of softPassed) out.push({ code: 'soft-over', scope, jobs: n, message: `${scopeLabel(scope)}: ${n} job${n === 1 ? '' : 's'} would be admitted past its soft limit` });
  return out;
}

export type WaitKind = 'hours' | 'gpus' | 'budget' | 'line';

/** What a held job waits for, each kind once, in a fixed order. */
function waitsFor(h: Hold): WaitKind[] {
  const kinds = new Set<WaitKind>(h.shortfalls.map((s) => (s.code === 'over-gpus' ? 'gpus' : s.code === 'no-limit' ? 'budget' : 'hours')));
  if (h.ahead > 0) kinds.add('line');
  return (['hours', 'gpus', 'budget', 'line'] as const).filter((k) => kinds.has(k));
}

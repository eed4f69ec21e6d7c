/**
 * Preflight: what would happen to a job or a batch submitted now, without
 * reserving anything. The reserve script runs in dry-run mode, so each job is
 * decided exactly as the gatekeeper would decide it (in order, each seeing
 * the ones before it, first in first out), then nothing is written. The
 * answer adds the scopes' remaining budget and quota, and warnings: limits
 * already past a threshold, thresholds the batch would cross, limits it would
 * exhaust, soft limits it would pass.
 */
import type { Config } from '../config.ts';
import type { Accounting } from '../accounting/counters.ts';
import type { Budgets, ScopeView } from '../accounting/budgets.ts';
import { jobMeta } from '../accounting/admission.ts';
import { describeHold } from '../accounting/reasons.ts';
import { scopeLabel, scopesForJob } from '../accounting/scopes.ts';
import { intakeJobSchema, parseIntakeJob, type IntakeJobData } from '../../queues/contract.ts';
import { formatHours, hoursToGpuMs } from '../units.ts';

export type PreflightOutcome =
  | { index: number; outcome: 'admitted'; exempt?: true; softOver?: string[] }
  | { index: number; outcome: 'held' | 'rejected'; reason: string };

export interface PreflightReport {
  jobs: number;
  admitted: number;
  held: number;
  rejected: number;
  outcomes: PreflightOutcome[];
  /** Every scope the valid jobs touch, now (before the batch). */
  scopes: ScopeView[];
  warnings: string[];
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
    const [scopes, dry] = await Promise.all([this.budgets.views(bases), this.accounting.dryRun(reqs, now, this.config.unknownProjectPolicy)]);

    const outcomes: PreflightOutcome[] = parsed.map((p, index) => ({ index, outcome: 'rejected', reason: p.ok ? '' : p.reason }));
    const softPassed = new Map<string, number>();
    dry.outcomes.forEach((o, k) => {
      const index = valid[k]!.index;
      if (o.kind === 'reserved') {
        for (const s of o.softOver) softPassed.set(s, (softPassed.get(s) ?? 0) + 1);
        outcomes[index] = { index, outcome: 'admitted', ...(o.exempt ? { exempt: true as const } : {}), ...(o.softOver.length ? { softOver: o.softOver } : {}) };
      } else if (o.kind === 'held') {
        outcomes[index] = { index, outcome: 'held', reason: describeHold(o) };
      } else if (o.kind === 'rejected') {
        outcomes[index] = { index, outcome: 'rejected', reason: `no budget for ${scopeLabel(o.scope)} (unknown projects are rejected: UNKNOWN_PROJECT_POLICY=reject)` };
      } else {
        // 'already' / 'cancelled' cannot happen for preflight ids; say so rather than guess.
        outcomes[index] = { index, outcome: 'rejected', reason: `unexpected preflight outcome ${o.kind}` };
      }
    });

    const warnings: string[] = [];
    for (const s of scopes) {
      if (s.effectiveLimitGpuMs === null || s.effectiveLimitGpuMs <= 0) continue;
      const total = s.usedGpuMs + s.reservedGpuMs;
      const past = s.thresholds.filter((t) => total * 100 >= t * s.effectiveLimitGpuMs!).pop();
      if (past !== undefined) {
        warnings.push(`${scopeLabel(s.scope)}: ${formatHours(total)} of ${formatHours(s.effectiveLimitGpuMs)} GPU-h used or reserved, past its ${past}% warning`);
      }
    }
    for (const w of dry.warnings) {
      warnings.push(
        w.type === 'THRESHOLD_CROSSED'
          ? `${scopeLabel(w.scope)}: this submission would reach ${w.thresholdPercent}% of its limit`
          : `${scopeLabel(w.scope)}: this submission would hit its limit; the jobs past it are held`,
      );
    }
    for (const [scope, n] of softPassed) warnings.push(`${scopeLabel(scope)}: ${n} job${n === 1 ? '' : 's'} would be admitted past its soft limit`);

    const count = (k: PreflightOutcome['outcome']) => outcomes.filter((o) => o.outcome === k).length;
    return { jobs: inputs.length, admitted: count('admitted'), held: count('held'), rejected: count('rejected'), outcomes, scopes, warnings };
  }
}

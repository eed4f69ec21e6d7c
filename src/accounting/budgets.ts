/**
 * Limits: project budgets, user quotas and run caps (exempt job types are
 * usage factors of 0: src/accounting/rate-card.ts).
 * Postgres holds them (source of truth); Redis holds a copy next to the
 * counters for the scripts. Each change is one admin change
 * (src/audit/change.ts): the Postgres writes and the audit row (before and
 * after) in one transaction under a per-scope lock, the Redis copy written
 * before COMMIT and undone if anything fails, so both stores hold the change
 * with its audit row or neither does; start-up copies everything over again.
 * BUDGET_CHANGED is emitted after the commit.
 */
import type { Pool } from '../db/pool.ts';
import { allLimits, deleteLimit, getLimit, getLimits, upsertLimit, copyEachLocked, projectPartScopes, type LimitRow } from '../db/limits.ts';
import type { Accounting } from './counters.ts';
import type { ReleaseMode, ScopeDefinition, ScopePeriod, ScopePolicy } from './types.ts';
import { parseScopeId, projectScope, projectTypeScope, runScope, userQuotaScope } from './scopes.ts';
import type { Actor } from '../db/audit.ts';
import { recordAdjustment, recordCarries } from '../db/periods.ts';
import { gpuMsToHours } from '../units.ts';
import { periodAt } from '../periods.ts';
import { systemClock, type Clock } from '../clock.ts';
import { adminChange, type ChangeTx } from '../audit/change.ts';
import { syncRateLimits } from './rate-limits.ts';
import { syncGpuCaps } from './gpu-caps.ts';
import { syncAllowedGpuTypes } from './allowed-gpu-types.ts';
import { RateCard, syncRateCard } from './rate-card.ts';
import type { Logger } from '../log.ts';
import type { LimitUnit } from './pricing.ts';
import { adjustAudit, auditable, refuseUnitChange } from './limit-changes.ts';

import { DEFAULT_THRESHOLDS } from '../redis/wire.ts';

/** Scopes per script call when starting every periodic limit's period. */
const CHUNK = 1_000;

/** Changes made by the system itself (start-up, tests, the scheduler), not by a person. */
export const SYSTEM: Actor = { name: 'system', role: 'admin' };

/**
 * One scope now: its definition and its current period's counters. The
 * *GpuMs amounts (but the exempt ones) are in the limit's `unit`: GPU-ms,
 * milli-units or micro-dollars (pricing.ts); `counted` has every unit.
 */
export interface ScopeView {
  scope: string;
  unit: LimitUnit;
  counted: Record<LimitUnit, { used: number; reserved: number }>;
  /** The counters' id: the scope, or '<scope>@<period label>'. */
  counterId: string;
  period: ScopePeriod;
  periodLabel: string | null;
  periodStart: number | null;
  /** When the counters next start at zero (null: one-off). */
  nextResetAt: number | null;
  policy: ScopePolicy;
  gracePercent: number | null;
  rollover: boolean;
  rolloverCapGpuMs: number | null;
  /** Warning thresholds in percent of the effective limit. */
  thresholds: number[];
  /** auto: held jobs start by themselves when room appears; manual: an admin releases them. */
  release: ReleaseMode;
  /** As set; null: no limit (usage is still counted). */
  limitGpuMs: number | null;
  /** limit + carried over + adjusted, for this period. */
  effectiveLimitGpuMs: number | null;
  /** Where admission stops (effective limit, plus grace if soft); null: never. */
  ceilingGpuMs: number | null;
  carryGpuMs: number;
  adjustGpuMs: number;
  usedGpuMs: number;
  reservedGpuMs: number;
  /** effective limit - used - reserved; negative when in-flight jobs overran; null without a limit. */
  remainingGpuMs: number | null;
  exemptUsedGpuMs: number;
  exemptReservedGpuMs: number;
  updatedAt: Date | null;
}

export interface BudgetView extends ScopeView {
  project: string;
  limitGpuMs: number;
  remainingGpuMs: number;
  updatedAt: Date;
}

/** What an admin may set on a limit; omitted fields keep their current value (or the default). */
export interface LimitInput {
  /** In `unit`'s integer (pricing.ts UNIT_SCALE). */
  limitGpuMs: number;
  /** gpuHours when omitted and the limit had none. */
  unit?: LimitUnit;
  policy?: ScopePolicy;
  gracePercent?: number | null;
  period?: ScopePeriod;
  rollover?: boolean;
  rolloverCapGpuMs?: number | null;
  /** Percents of the limit that raise THRESHOLD_CROSSED; null = 75, 90, 100; [] = none. */
  thresholds?: number[] | null;
  release?: ReleaseMode;
}

export interface QuotaView {
  user: string;
  daily: ScopeView;
  weekly: ScopeView;
}

export class Budgets {
  constructor(
    private readonly pool: Pool,
    private readonly accounting: Accounting,
    private readonly clock: Clock = systemClock,
    /** Where a failed undo or a lost BUDGET_CHANGED event is reported. */
    private readonly log?: Logger,
  ) {}

  /** Set (raise or lower) a project's budget; see setLimit. */
  async set(project: string, limitGpuMs: number, actor: Actor = SYSTEM, reason: string | null = null, opts: Omit<LimitInput, 'limitGpuMs'> = {}): Promise<BudgetView> {
    await this.setLimit(projectScope(project).id, { ...opts, limitGpuMs }, actor, reason, 'budget.set');
    return (await this.get(project))!;
  }

  async get(project: string): Promise<BudgetView | null> {
    const v = await this.view(projectScope(project).id);
    if (v.limitGpuMs === null || v.updatedAt === null) return null;
    return { ...v, project, limitGpuMs: v.limitGpuMs, remainingGpuMs: v.remainingGpuMs!, updatedAt: v.updatedAt };
  }

  /**
   * Add (or take, when negative) GPU-ms to a project's current period only;
   * audited. Recorded in Postgres (with the period's carry, which is fixed
   * by now) in the same transaction as the audit row, so a rebuild of Redis
   * restores both exactly.
   */
  async adjust(project: string, deltaGpuMs: number, actor: Actor, reason: string | null): Promise<BudgetView | null> {
    const scope = projectScope(project).id;
    const before = await this.get(project);
    if (!before) return null;
    const change = await adminChange(this.pool, [scope], async (tx) => {
      const now = this.clock.now();
      const [s] = await this.accounting.scopes([scope], now);
      if (before.rollover) await recordCarries(tx.db, [{ counterId: s!.id, carryGpuMs: s!.carryGpuMs }], now);
      await recordAdjustment(tx.db, s!.id, deltaGpuMs, actor.name, now);
      const c: Change = {
        action: 'budget.adjust',
        target: scope,
        ...adjustAudit(before.unit, before.periodLabel, s!.adjustGpuMs, deltaGpuMs),
        reason,
      };
      await tx.audit(actor, c);
      tx.redis({ apply: () => this.accounting.definitions.adjustCounter(s!.id, deltaGpuMs, now), undo: () => this.accounting.definitions.adjustCounter(s!.id, -deltaGpuMs, now) });
      return c;
    }, this.log);
    // The event says what the audit row says.
    await this.announce(actor, change);
    return (await this.get(project))!;
  }

  async quota(user: string): Promise<QuotaView> {
    const [daily, weekly] = await this.views([userQuotaScope(user, 'day').id, userQuotaScope(user, 'week').id]);
    return { user, daily: daily!, weekly: weekly! };
  }

  /** Set or (with null) remove a user's daily and/or weekly quota; undefined leaves one as it is. */
  async setQuota(
    user: string,
    q: { daily?: Omit<LimitInput, 'period' | 'rollover' | 'rolloverCapGpuMs'> | null; weekly?: Omit<LimitInput, 'period' | 'rollover' | 'rolloverCapGpuMs'> | null },
    actor: Actor,
    reason: string | null,
  ): Promise<QuotaView> {
    // Daily and weekly in one change: both land, or neither.
    const parts = ([['day', q.daily], ['week', q.weekly]] as const).filter(([, input]) => input !== undefined);
    const changes = await adminChange(this.pool, parts.map(([which]) => userQuotaScope(user, which).id), async (tx) => {
      const out: Change[] = [];
      for (const [which, input] of parts) {
        const scope = userQuotaScope(user, which).id;
        const c = input === null
          ? await this.removeIn(tx, scope, actor, reason, 'quota.remove')
          : await this.setIn(tx, scope, { ...input!, period: which, rollover: false, rolloverCapGpuMs: null }, actor, reason, 'quota.set');
        if (c) out.push(c);
      }
      return out;
    }, this.log);
    for (const c of changes) await this.announce(actor, c);
    return this.quota(user);
  }

  /** Set or (with null) remove a project's budget for one GPU type ('project-type:<p>/<t>'). */
  async setTypeBudget(project: string, gpuType: string, input: LimitInput | null, actor: Actor, reason: string | null): Promise<ScopeView> {
    const scope = projectTypeScope(project, gpuType).id;
    if (input === null) await this.removeLimit(scope, actor, reason, 'type-budget.remove');
    else await this.setLimit(scope, input, actor, reason, 'type-budget.set');
    return this.view(scope);
  }

  /** The budgets for GPU types of these projects, by scope ('project-type:<p>/<t>'). */
  async typeBudgets(projects: string[]): Promise<ScopeView[]> {
    return this.views(await projectPartScopes(this.pool, { kind: 'project-type', projects, q: null, limit: 1000 }));
  }

  async runCap(project: string, run: string): Promise<ScopeView> {
    return this.view(runScope(project, run).id);
  }

  async setRunCap(project: string, run: string, input: Omit<LimitInput, 'period' | 'rollover' | 'rolloverCapGpuMs'> | null, actor: Actor, reason: string | null): Promise<ScopeView> {
    const scope = runScope(project, run).id;
    if (input === null) await this.removeLimit(scope, actor, reason, 'run-cap.remove');
    else await this.setLimit(scope, { ...input, period: 'none', rollover: false, rolloverCapGpuMs: null }, actor, reason, 'run-cap.set');
    return this.view(scope);
  }

  /** Job types with usage factor 0 (src/accounting/rate-card.ts). */
  async exemptTypes(): Promise<string[]> {
    return this.rateCard().exemptTypes();
  }

  /** Make a job type exempt (factor 0) or count it again (only if its factor is 0); audited when it changes anything. */
  async setExempt(jobType: string, exempt: boolean, actor: Actor, reason: string | null): Promise<string[]> {
    return this.rateCard().setExempt(jobType, exempt, actor, reason);
  }

  private rateCard(): RateCard {
    return new RateCard(this.pool, this.accounting, this.clock, this.log);
  }

  /** Scopes as admission sees them now. */
  async views(scopes: string[]): Promise<ScopeView[]> {
    const now = this.clock.now();
    const [states, rows] = await Promise.all([this.accounting.scopes(scopes, now), getLimits(this.pool, scopes)]);
    return states.map((s, i) => {
      const row = rows.get(scopes[i]!) ?? null;
      const period = periodOf(scopes[i]!, row);
      const p = period === 'none' ? null : periodAt(period, now, this.accounting.timeZone);
      return {
        scope: scopes[i]!,
        unit: row?.unit ?? 'gpuHours',
        counted: s.counted,
        counterId: s.id,
        period,
        periodLabel: p?.label ?? null,
        periodStart: p?.start ?? null,
        nextResetAt: p?.end ?? null,
        policy: row?.policy ?? 'hard',
        gracePercent: row?.gracePercent ?? null,
        rollover: row?.rollover ?? false,
        rolloverCapGpuMs: row?.rolloverCapGpuMs ?? null,
        thresholds: row ? (row.thresholds ?? [...DEFAULT_THRESHOLDS]) : [],
        release: row?.release ?? 'auto',
        limitGpuMs: row?.limitGpuMs ?? null,
        effectiveLimitGpuMs: s.limitGpuMs,
        ceilingGpuMs: s.ceilingGpuMs,
        carryGpuMs: s.carryGpuMs,
        adjustGpuMs: s.adjustGpuMs,
        usedGpuMs: s.usedGpuMs,
        reservedGpuMs: s.reservedGpuMs,
        remainingGpuMs: s.limitGpuMs === null ? null : s.limitGpuMs - s.usedGpuMs - s.reservedGpuMs,
        exemptUsedGpuMs: s.exemptUsedGpuMs,
        exemptReservedGpuMs: s.exemptReservedGpuMs,
        updatedAt: row?.updatedAt ?? null,
      };
    });
  }

  async view(scope: string): Promise<ScopeView> {
    return (await this.views([scope]))[0]!;
  }

  /** Every limit row, for the scheduler and the dashboard. */
  async all(): Promise<LimitRow[]> {
    return allLimits(this.pool);
  }

  /**
   * Set a limit on any scope, audited with before and after. Omitted fields
   * keep their current value, so raising a monthly budget keeps it monthly.
   */
  async setLimit(scope: string, input: LimitInput, actor: Actor, reason: string | null, action = 'limit.set'): Promise<void> {
    const c = await adminChange(this.pool, [scope], (tx) => this.setIn(tx, scope, input, actor, reason, action), this.log);
    await this.announce(actor, c);
  }

  private async removeLimit(scope: string, actor: Actor, reason: string | null, action: string): Promise<void> {
    const c = await adminChange(this.pool, [scope], (tx) => this.removeIn(tx, scope, actor, reason, action), this.log);
    if (c) await this.announce(actor, c);
  }

  /** Within a change: upsert the limit, audit it, and stage its Redis copy (undone to what Redis held). */
  private async setIn(tx: ChangeTx, scope: string, input: LimitInput, actor: Actor, reason: string | null, action: string): Promise<Change> {
    const prior = await getLimit(tx.db, scope);
    const unit = input.unit ?? prior?.unit ?? 'gpuHours';
    const newUnit = prior !== null && (prior.unit ?? 'gpuHours') !== unit;
    if (newUnit) await refuseUnitChange(this.accounting, this.clock.now(), scope, prior!.unit ?? 'gpuHours', unit);
    const def: ScopeDefinition = {
      limitGpuMs: input.limitGpuMs,
      unit,
      policy: input.policy ?? prior?.policy ?? 'hard',
      gracePercent: input.gracePercent !== undefined ? input.gracePercent : (prior?.gracePercent ?? null),
      period: input.period ?? prior?.period ?? 'none',
      rollover: input.rollover ?? prior?.rollover ?? false,
      // A cap in the old unit means nothing in the new one.
      rolloverCapGpuMs: input.rolloverCapGpuMs !== undefined ? input.rolloverCapGpuMs : newUnit ? null : (prior?.rolloverCapGpuMs ?? null),
      thresholds: input.thresholds !== undefined ? input.thresholds : (prior?.thresholds ?? null),
      release: input.release ?? prior?.release ?? 'auto',
      setAt: prior?.setAt ?? this.clock.now(),
    };
    const row = await upsertLimit(tx.db, scope, def);
    const change: Change = { action, target: scope, before: prior && auditable(prior), after: auditable(row), reason };
    await tx.audit(actor, change);
    await this.stageDefinition(tx, scope, { ...def, setAt: row.setAt });
    return change;
  }

  /** Within a change: delete the limit (audited if there was one) and stage its removal from Redis. */
  private async removeIn(tx: ChangeTx, scope: string, actor: Actor, reason: string | null, action: string): Promise<Change | null> {
    const prior = await getLimit(tx.db, scope);
    await deleteLimit(tx.db, scope);
    const change: Change | null = prior ? { action, target: scope, before: auditable(prior), after: null, reason } : null;
    if (change) await tx.audit(actor, change);
    await this.stageDefinition(tx, scope, null);
    return change;
  }

  private async stageDefinition(tx: ChangeTx, scope: string, def: ScopeDefinition | null): Promise<void> {
    const was = await this.accounting.definitions.definition(scope);
    const now = this.clock.now();
    tx.redis({ apply: () => this.accounting.definitions.define(scope, def, now), undo: () => this.accounting.definitions.define(scope, was, now) });
  }

  /**
   * Start the current period of every periodic limit: a rollover budget's
   * carry is computed on the period's first touch and fixed from then on
   * (by whichever comes first: this, or a job). Each fixed carry is recorded
   * in Postgres, so a rebuild restores the carry the period really started
   * with, not one recomputed from the previous period's later numbers.
   * Returns how many periodic limits there are.
   */
  async startPeriods(): Promise<number> {
    const now = this.clock.now();
    const periodic = (await this.all()).filter((r) => periodOf(r.scope, r) !== 'none');
    for (let i = 0; i < periodic.length; i += CHUNK) {
      const part = periodic.slice(i, i + CHUNK);
      const states = await this.accounting.scopes(part.map((r) => r.scope), now);
      const carries = states.filter((_, j) => part[j]!.rollover).map((s) => ({ counterId: s.id, carryGpuMs: s.carryGpuMs }));
      await recordCarries(this.pool, carries, now);
    }
    return periodic.length;
  }

  /** Copy every limit, rate limit, GPU cap, rate and usage factor from Postgres to Redis (start-up, rebuild), each under its lock. */
  async syncLimits(): Promise<number> {
    const rows = await allLimits(this.pool);
    await copyEachLocked(this.pool, rows.map((r) => r.scope), (scope) => scope, async (db, scope) => {
      const row = await getLimit(db, scope);
      await this.accounting.definitions.define(scope, row, null);
      return row !== null;
    });
    await syncRateLimits(this.pool, this.accounting.definitions);
    await syncGpuCaps(this.pool, this.accounting.definitions);
    await syncAllowedGpuTypes(this.pool, this.accounting.definitions);
    await syncRateCard(this.pool, this.accounting.definitions);
    return rows.length;
  }

  /**
   * Tell the event bus of a committed change (BUDGET_CHANGED). After the
   * commit, so an event never announces a change that was rolled back; if
   * Redis fails in this instant the event is lost (logged), never the change
   * or its audit row.
   */
  private async announce(actor: Actor, e: Change): Promise<void> {
    try {
      await this.accounting.events.emit('BUDGET_CHANGED', { scope: e.target, action: e.action, before: e.before, after: e.after, by: actor.name, reason: e.reason }, undefined, this.clock.now());
    } catch (err) {
      this.log?.error({ err, scope: e.target, action: e.action }, 'BUDGET_CHANGED could not be emitted; the change and its audit row are stored');
    }
  }
}

/** One audited change to a limit. */
interface Change {
  action: string;
  target: string;
  before: unknown;
  after: unknown;
  reason: string | null;
}

/** A scope's period: fixed for user quotas, as set for the rest. */
export function periodOf(scope: string, row: Pick<ScopeDefinition, 'period'> | null): ScopePeriod {
  const kind = parseScopeId(scope).kind;
  if (kind === 'user-day') return 'day';
  if (kind === 'user-week') return 'week';
  return row?.period ?? 'none';
}

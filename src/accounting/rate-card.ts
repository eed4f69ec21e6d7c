/**
 * The rate card (per GPU type, effective-dated: milli-units and micro-dollars
 * per GPU-hour) and usage factors (per job type, thousandths; 0 = exempt);
 * see src/accounting/pricing.ts for what they mean. Postgres holds them
 * (gpu_rates, append-only; usage_factors); Redis a copy the scripts read:
 *   rates    hash, field <gpu type> ('*': the default) = compactRates(history)
 *   factors  hash, field <job type> = String(factorMilli) (absent: 1000)
 * Each change is one admin change (src/audit/change.ts): its rows and audit
 * row in one transaction under the type's lock, the Redis copy written
 * before COMMIT and undone if anything fails. Start-up and the rebuild copy
 * everything again (syncRateCard).
 */
import type { Pool } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import type { Actor } from '../db/audit.ts';
import { copyEachLocked } from '../db/limits.ts';
import { allRates, deleteFactor, getFactor, insertRate, listFactors, rateHistory, rateLock, upsertFactor, type RateRow } from '../db/rates.ts';
import { adminChange, type ChangeTx } from '../audit/change.ts';
import { systemClock, type Clock } from '../clock.ts';
import type { Accounting } from './counters.ts';
import type { ScopeDefinitions } from './definitions.ts';
import {
  BUILTIN_DEFAULT_RATE, compactRates, DEFAULT_RATE_FIELD, FULL_FACTOR, MAX_FACTOR_MILLI, MAX_UNITS_MILLI_PER_HOUR, MAX_USD_MICRO_PER_HOUR,
  UNIT_SCALE, fromScaled, rateAt, type Rate,
} from './pricing.ts';

/** What the API calls the default rate (stored as DEFAULT_RATE_FIELD). */
export const DEFAULT_GPU_TYPE = 'default';

/** One row of a GPU type's history. */
export interface RateEntry extends Rate {
  effectiveFrom: number;
  setAt: number;
  setBy: string | null;
  /** A later entry with the same effectiveFrom replaced it before it took effect. */
  superseded: boolean;
}

export interface GpuTypeView {
  /** As the API names it: 'default' for the default rate. */
  gpuType: string;
  /** In force now; null: none yet (its jobs get the default rate). */
  current: (Rate & { effectiveFrom: number | null }) | null;
  /** The entry that takes effect next, if any. */
  next: RateEntry | null;
  /** Every entry, oldest first. */
  history: RateEntry[];
  /** The default rate while none was ever in force: pricing.ts BUILTIN_DEFAULT_RATE. */
  builtIn: boolean;
}

export interface FactorView {
  jobType: string;
  factorMilli: number;
  setAt: Date;
}

/** A change refused for what it asks (answered 400), not for a store that failed. */
export class RateRefused extends Error {}

const stored = (gpuType: string) => (gpuType === DEFAULT_GPU_TYPE ? DEFAULT_RATE_FIELD : gpuType);
const named = (field: string) => (field === DEFAULT_RATE_FIELD ? DEFAULT_GPU_TYPE : field);
const factorLock = (jobType: string) => `factor:${jobType}`;

export class RateCard {
  constructor(
    private readonly pool: Pool,
    private readonly accounting: Accounting,
    private readonly clock: Clock = systemClock,
    private readonly log?: Logger,
  ) {}

  /** Every GPU type with a rate, by name, and the default rate. */
  async gpuTypes(): Promise<{ gpuTypes: GpuTypeView[]; default: GpuTypeView }> {
    const now = this.clock.now();
    const byType = new Map<string, RateRow[]>();
    for (const r of await allRates(this.pool)) byType.set(r.gpuType, [...(byType.get(r.gpuType) ?? []), r]);
    const types = [...byType].filter(([t]) => t !== DEFAULT_RATE_FIELD).map(([t, rows]) => view(t, rows, now));
    return { gpuTypes: types, default: view(DEFAULT_RATE_FIELD, byType.get(DEFAULT_RATE_FIELD) ?? [], now) };
  }

  /** One GPU type ('default': the default rate); null for a type that never had one. */
  async gpuType(gpuType: string): Promise<GpuTypeView | null> {
    const field = stored(gpuType);
    const rows = await rateHistory(this.pool, field);
    return rows.length === 0 && field !== DEFAULT_RATE_FIELD ? null : view(field, rows, this.clock.now());
  }

  /**
   * Append a rate from `effectiveFrom` (default: now). Refused from before
   * now: jobs already admitted keep the rates they were admitted with. A
   * second entry with the same effectiveFrom replaces the first (the newest
   * wins). Audited with the rate that applied from that instant before.
   */
  async setRate(gpuType: string, input: Rate & { effectiveFrom?: number }, actor: Actor, reason: string | null): Promise<GpuTypeView> {
    assertRate(input);
    const field = stored(gpuType);
    await adminChange(this.pool, [rateLock(field)], async (tx) => {
      const now = this.clock.now();
      const from = input.effectiveFrom ?? now;
      if (!Number.isSafeInteger(from)) throw new RateRefused('effectiveFrom must be a time');
      if (from < now) {
        throw new RateRefused(`effectiveFrom ${new Date(from).toISOString()} is in the past (now ${new Date(now).toISOString()}): jobs already admitted keep their rates; give now or a later time`);
      }
      const prior = await rateHistory(tx.db, field);
      const was = rateAt(effective(prior), from);
      const row = await insertRate(tx.db, { gpuType: field, unitsMilli: input.unitsMilli, usdMicro: input.usdMicro, effectiveFrom: from, setAt: now, setBy: actor.name });
      const beforeRate = was ?? (field === DEFAULT_RATE_FIELD ? { ...BUILTIN_DEFAULT_RATE, builtIn: true } : null);
      await tx.audit(actor, { action: 'gpu-rate.set', target: `gpu-type:${named(field)}`, before: beforeRate && readable(beforeRate), after: readable(row), reason });
      await this.stageRates(tx, field, [...prior, row]);
    }, this.log);
    return (await this.gpuType(gpuType))!;
  }

  /** Every job type with a factor other than the full one, by name. */
  async factors(): Promise<FactorView[]> {
    return listFactors(this.pool);
  }

  /** Set a job type's usage factor (thousandths, 0 to MAX_FACTOR_MILLI); audited. */
  async setFactor(jobType: string, factorMilli: number, actor: Actor, reason: string | null, action = 'usage-factor.set'): Promise<FactorView> {
    assertFactor(factorMilli);
    return adminChange(this.pool, [factorLock(jobType)], async (tx) => {
      const prior = await getFactor(tx.db, jobType);
      const row = await upsertFactor(tx.db, jobType, factorMilli, this.clock.now());
      await tx.audit(actor, { action, target: `job-type:${jobType}`, before: prior && { factor: factorText(prior.factorMilli) }, after: { factor: factorText(factorMilli) }, reason });
      await this.stageFactor(tx, jobType, factorMilli);
      return row;
    }, this.log);
  }

  /**
   * Take a job type's factor away: it counts fully again. `onlyIf`: only
   * when the factor is that one (the exempt alias removes 0 only). False
   * when nothing was removed (nothing audited).
   */
  async removeFactor(jobType: string, actor: Actor, reason: string | null, opts: { onlyIf?: number; action?: string } = {}): Promise<boolean> {
    return adminChange(this.pool, [factorLock(jobType)], async (tx) => {
      const prior = await getFactor(tx.db, jobType);
      if (!prior || (opts.onlyIf !== undefined && prior.factorMilli !== opts.onlyIf)) return false;
      await deleteFactor(tx.db, jobType);
      await tx.audit(actor, { action: opts.action ?? 'usage-factor.remove', target: `job-type:${jobType}`, before: { factor: factorText(prior.factorMilli) }, after: null, reason });
      await this.stageFactor(tx, jobType, null);
      return true;
    }, this.log);
  }

  /** Exempt job types: those with factor 0. */
  async exemptTypes(): Promise<string[]> {
    return (await listFactors(this.pool)).filter((f) => f.factorMilli === 0).map((f) => f.jobType);
  }

  /** The exempt alias: exempt sets factor 0; not exempt removes the factor if it is 0. Audited as exempt.add / exempt.remove when it changes anything. */
  async setExempt(jobType: string, exempt: boolean, actor: Actor, reason: string | null): Promise<string[]> {
    if (exempt) {
      const prior = await getFactor(this.pool, jobType);
      if (prior?.factorMilli !== 0) await this.setFactor(jobType, 0, actor, reason, 'exempt.add');
    } else {
      await this.removeFactor(jobType, actor, reason, { onlyIf: 0, action: 'exempt.remove' });
    }
    return this.exemptTypes();
  }

  /** Copy the rate card and the factors from Postgres to Redis (start-up, rebuild). */
  async sync(): Promise<{ gpuTypes: number; factors: number }> {
    return syncRateCard(this.pool, this.accounting.definitions);
  }

  /** Within a change: write the type's history to Redis, undone to what Redis held. */
  private async stageRates(tx: ChangeTx, field: string, history: RateRow[]): Promise<void> {
    const defs = this.accounting.definitions;
    const was = (await defs.rates())[field] ?? null;
    const compact = compactRates(effective(history));
    tx.redis({ apply: () => defs.setRates(field, compact), undo: () => defs.setRates(field, was) });
  }

  /** Within a change: write (or with null, remove) the factor in Redis, undone to what Redis held. */
  private async stageFactor(tx: ChangeTx, jobType: string, factorMilli: number | null): Promise<void> {
    const defs = this.accounting.definitions;
    const held = (await defs.factors())[jobType];
    const was = held === undefined ? null : Number(held);
    tx.redis({ apply: () => defs.setFactor(jobType, factorMilli), undo: () => defs.setFactor(jobType, was) });
  }
}

/**
 * Copy every GPU type's rates and every usage factor from Postgres to Redis,
 * dropping what Postgres no longer has, each under its lock so a change
 * committing meanwhile is never undone; then drop the old exempt-types set.
 */
export async function syncRateCard(pool: Pool, defs: ScopeDefinitions): Promise<{ gpuTypes: number; factors: number }> {
  const fields = new Set([...(await allRates(pool)).map((r) => r.gpuType), ...Object.keys(await defs.rates())]);
  const gpuTypes = await copyEachLocked(pool, fields, rateLock, async (db, field) => {
    const rows = await rateHistory(db, field);
    await defs.setRates(field, rows.length > 0 ? compactRates(effective(rows)) : null);
    return rows.length > 0;
  });
  const jobTypes = new Set([...(await listFactors(pool)).map((f) => f.jobType), ...Object.keys(await defs.factors())]);
  const factors = await copyEachLocked(pool, jobTypes, factorLock, async (db, jobType) => {
    const row = await getFactor(db, jobType);
    await defs.setFactor(jobType, row?.factorMilli ?? null);
    return row !== null;
  });
  await defs.dropOldExemptSet();
  return { gpuTypes, factors };
}

/** Rows in the order they were set, sorted oldest first with the superseded ones left out: the last set of each effectiveFrom wins. */
function effective<T extends { effectiveFrom: number }>(rows: readonly T[]): T[] {
  const sorted = [...rows].sort((a, b) => a.effectiveFrom - b.effectiveFrom);
  return sorted.filter((r, i) => sorted[i + 1]?.effectiveFrom !== r.effectiveFrom);
}

function view(field: string, rows: RateRow[], now: number): GpuTypeView {
  const live = effective(rows);
  const entry = (r: RateRow): RateEntry => ({ unitsMilli: r.unitsMilli, usdMicro: r.usdMicro, effectiveFrom: r.effectiveFrom, setAt: r.setAt, setBy: r.setBy, superseded: !live.includes(r) });
  const current = rateAt(live, now);
  const next = live.find((r) => r.effectiveFrom > now) ?? null;
  const builtIn = current === null && field === DEFAULT_RATE_FIELD;
  return {
    gpuType: named(field),
    current: current ? { unitsMilli: current.unitsMilli, usdMicro: current.usdMicro, effectiveFrom: current.effectiveFrom } : builtIn ? { ...BUILTIN_DEFAULT_RATE, effectiveFrom: null } : null,
    next: next && entry(next),
    history: rows.map(entry),
    builtIn,
  };
}

/** A rate as the audit log shows it: decimal units and dollars per GPU-hour. */
function readable(r: Rate & { effectiveFrom?: number; builtIn?: boolean }) {
  return {
    unitsPerGpuHour: fromScaled(r.unitsMilli, UNIT_SCALE.units),
    usdPerGpuHour: fromScaled(r.usdMicro, UNIT_SCALE.usd),
    ...(r.effectiveFrom !== undefined ? { effectiveFrom: new Date(r.effectiveFrom).toISOString() } : {}),
    ...(r.builtIn ? { builtIn: true } : {}),
  };
}

/** A factor in thousandths as the decimal the API speaks (1000 -> 1). */
export const factorText = (milli: number) => fromScaled(milli, FULL_FACTOR);

/** A rate the table accepts, or a RangeError saying why. */
export function assertRate(r: Rate): void {
  if (!Number.isInteger(r.unitsMilli) || r.unitsMilli < 0 || r.unitsMilli > MAX_UNITS_MILLI_PER_HOUR) throw new RangeError(`unitsMilli must be a whole number from 0 to ${MAX_UNITS_MILLI_PER_HOUR}, got ${r.unitsMilli}`);
  if (!Number.isInteger(r.usdMicro) || r.usdMicro < 0 || r.usdMicro > MAX_USD_MICRO_PER_HOUR) throw new RangeError(`usdMicro must be a whole number from 0 to ${MAX_USD_MICRO_PER_HOUR}, got ${r.usdMicro}`);
}

/** A factor the table accepts, or a RangeError saying why. */
export function assertFactor(f: number): void {
  if (!Number.isInteger(f) || f < 0 || f > MAX_FACTOR_MILLI) throw new RangeError(`factorMilli must be a whole number from 0 to ${MAX_FACTOR_MILLI}, got ${f}`);
}

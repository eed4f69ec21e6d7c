/**
 * Rules of a limit change beyond its body (a unit change refused while the
 * period holds amounts of the old unit), and what the audit log records of
 * a limit and of an adjustment: decimal GPU hours, or the limit's own unit.
 */
import type { LimitRow } from '../db/limits.ts';
import type { Accounting } from './counters.ts';
import { gpuMsToHours } from '../units.ts';
import { UNIT_SCALE, type LimitUnit } from './pricing.ts';

/** An adjustment's before and after, in GPU hours (as always) or in the budget's unit. */
export function adjustAudit(unit: LimitUnit, period: string | null, was: number, delta: number) {
  if (unit === 'gpuHours') {
    return {
      before: { period, adjustGpuHours: gpuMsToHours(was) },
      after: { period, adjustGpuHours: gpuMsToHours(was + delta), deltaGpuHours: gpuMsToHours(delta) },
    };
  }
  const n = (x: number) => x / UNIT_SCALE[unit];
  return { before: { period, unit, adjust: n(was) }, after: { period, unit, adjust: n(was + delta), delta: n(delta) } };
}

export function auditable(r: LimitRow) {
  const unit = r.unit ?? 'gpuHours';
  const amount = (n: number) => n / UNIT_SCALE[unit];
  if (unit !== 'gpuHours') {
    return {
      unit, limit: amount(r.limitGpuMs), policy: r.policy,
      ...(r.gracePercent !== null ? { gracePercent: r.gracePercent } : {}),
      ...(r.thresholds != null ? { thresholds: r.thresholds } : {}),
      period: r.period,
      ...(r.release === 'manual' ? { release: 'manual' } : {}),
      ...(r.rollover ? { rollover: true, rolloverCap: r.rolloverCapGpuMs === null ? null : amount(r.rolloverCapGpuMs) } : {}),
    };
  }
  return {
    limitGpuHours: gpuMsToHours(r.limitGpuMs),
    policy: r.policy,
    ...(r.gracePercent !== null ? { gracePercent: r.gracePercent } : {}),
    ...(r.thresholds != null ? { thresholds: r.thresholds } : {}),
    period: r.period,
    ...(r.release === 'manual' ? { release: 'manual' } : {}),
    ...(r.rollover ? { rollover: true, rolloverCapGpuHours: r.rolloverCapGpuMs === null ? null : gpuMsToHours(r.rolloverCapGpuMs) } : {}),
  };
}

/** A limit change that would make numbers mean something else: refused, nothing changed (HTTP 409). */
export class LimitRefused extends Error {
  readonly status = 409;
}

/**
 * A period's carry and adjustment are amounts of the limit's unit: a limit
 * whose current period has either keeps its unit until the next period (no
 * rate turns dollars into hours).
 */
export async function refuseUnitChange(accounting: Accounting, now: number, scope: string, from: LimitUnit, to: LimitUnit): Promise<void> {
  const [s] = await accounting.scopes([scope], now);
  if (s && (s.carryGpuMs !== 0 || s.adjustGpuMs !== 0)) {
    throw new LimitRefused(
      `${scope} is in ${from} and its current period has a ${s.carryGpuMs !== 0 ? 'rolled-over carry' : 'manual adjustment'} in ${from}; ` +
        `its unit can change to ${to} from a period without one (or set it again in ${from})`,
    );
  }
}

/** What the audit log records of a limit and of an adjustment: decimal GPU hours, or the limit's own unit. */
import type { LimitRow } from '../db/limits.ts';
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

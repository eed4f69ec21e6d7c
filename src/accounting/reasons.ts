/**
 * Why a job does not fit, as data first (Shortfall) and as a sentence at the
 * edge. The sentence names the scope and the numbers, e.g.
 *   project alpha: 98.5 of 100.0 GPU-h used or reserved; job needs 4.0
 *   user bob's daily quota: 8.0 of 8.0 GPU-h used or reserved; job needs 1.0
 * and a throttled job's:
 *   throttled: user ann over 60 jobs/min (burst 10); due 12:03:04.123 UTC
 */
import { formatAmount, unitSuffix } from '../units.ts';
import type { LimitUnit } from './pricing.ts';
import { misfitOf } from '../redis/wire.ts';
import { capSubject, scopeLabel } from './scopes.ts';
import type { Hold, RateOver, Shortfall } from './types.ts';

export type { Shortfall } from './types.ts';

const UNIT_OF_LETTER: Record<string, LimitUnit> = { h: 'gpuHours', u: 'units', d: 'usd' };

/**
 * A script's misfit — scope, code (src/redis/wire.ts MISFIT_CODES), limit,
 * used, reserved, unit letter, need — as a Shortfall, whether it came in a
 * script's reply or in a JOB_HELD event. A misfit of five fields (stored
 * before rates) is in GPU-ms and needs `neededGpuMs`. An unknown code
 * throws (UnknownReplyError).
 */
export function misfitShortfall(m: (string | number | undefined)[], neededGpuMs: number): Shortfall {
  const [scope, code, limit, used, reserved, unit, need] = m;
  const c = misfitOf(code);
  const u = UNIT_OF_LETTER[String(unit)];
  return {
    scope: String(scope),
    code: c,
    ...(u && u !== 'gpuHours' ? { unit: u } : {}),
    limitGpuMs: c === 'no-limit' ? null : Number(limit),
    // A GPU cap's misfit carries the job's gpus where the others carry usage (includes/charges.lua misfits).
    usedGpuMs: c === 'over-gpus' ? 0 : Number(used),
    reservedGpuMs: Number(reserved),
    neededGpuMs: c === 'over-gpus' ? Number(used) : need !== undefined && need !== '' ? Number(need) : neededGpuMs,
  };
}

export function describeShortfall(s: Shortfall): string {
  if (s.code === 'over-gpus') {
    const gpus = (n: number) => `${n} GPU${n === 1 ? '' : 's'}`;
    return `${capSubject(s.scope)}: ${s.reservedGpuMs} of ${gpus(s.limitGpuMs ?? 0)} in flight; job needs ${s.neededGpuMs}`;
  }
  const label = scopeLabel(s.scope);
  if (s.code === 'no-limit') return `no budget for ${label}`;
  const unit = s.unit ?? 'gpuHours';
  const grace = s.code === 'over-grace' ? ' allowed with grace' : '';
  const amount = (n: number) => formatAmount(n, unit);
  return (
    `${label}: ${amount(s.usedGpuMs + s.reservedGpuMs)} of ${amount(s.limitGpuMs ?? 0)}${unitSuffix(unit)}${grace} ` +
    `used or reserved; job needs ${amount(s.neededGpuMs)}`
  );
}

export function describeShortfalls(all: Shortfall[]): string {
  return all.map(describeShortfall).join('; and ');
}

/** Why a held job is (still) held: its shortfalls, or its place in a line. */
export function describeHold(h: Hold): string {
  const behind = `${h.ahead === 1 ? '1 older held job' : `${h.ahead} older held jobs`} waiting for ${h.line ? scopeLabel(h.line) : 'the same scope'}`;
  if (h.shortfalls.length > 0) {
    const text = describeShortfalls(h.shortfalls);
    return h.ahead > 0 ? `${text} (behind ${behind})` : text;
  }
  if (h.ahead > 0) return `behind ${behind} (first in, first out)`;
  return 'fits now; waiting to be released';
}

/** Why a job waits on intake: the buckets it is over, and when it is due (UTC, to the ms). */
export function describeThrottle(over: RateOver[], dueAt: number): string {
  const buckets = over.map((b) => `${scopeLabel(b.scope)} over ${b.jobsPerMinute} jobs/min (burst ${b.burst})`).join(' and ');
  return `throttled: ${buckets}; due ${new Date(dueAt).toISOString().slice(11, 23)} UTC`;
}

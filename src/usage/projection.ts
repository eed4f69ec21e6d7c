/**
 * Budget run-out projection for the dashboard: "At the current rate, project
 * alpha's budget runs out in 6 days (Tue 1 Dec)", or "Not at the current rate: …"
 * when it won't. Pure functions; amounts are integer GPU-ms (see ../units.ts).
 *
 * Rules
 * - Burn rate (`burnRate`): a linearly weighted average of the last 7 complete
 *   local days: yesterday has weight 7, the day before 6, … 7 days ago weight 1,
 *   so an accelerating burn projects sooner than a flat average would. A shorter
 *   history averages over the days present with their own weights (days that are
 *   missing count as absent, not as zero). The last entry is today, which is
 *   partial, so it is ignored — unless it is the only entry, in which case it is
 *   the rate. Older entries than 7 complete days are ignored. The result is
 *   rounded to an integer GPU-ms per day (Math.round). No entries → 0.
 * - Checks, in order (`project`):
 *   1. limit null → no-limit.
 *   2. remaining = limit − used − reserved (a reservation is already spent for
 *      this purpose); remaining <= 0 → exhausted.
 *   3. rate 0 → idle ("not at the current rate": nothing used recently).
 *   4. The exact quotient remaining / rate is the time left in days, measured in
 *      real time (86,400,000 ms a day, not calendar days); `at` = now + that
 *      time, rounded up to the whole ms (the first ms by which the remainder is
 *      gone), computed exactly with BigInt.
 *   5. periodEnd set and at >= periodEnd → outlasts, resetsAt = periodEnd (the
 *      budget resets before it runs out).
 *   6. quotient > 365 → outlasts, resetsAt null.
 *   7. otherwise runs-out, days = ceil(quotient) (>= 1 here, since remaining > 0).
 * - Inputs must be safe integers (used, reserved and daily amounts >= 0; the
 *   limit may be below zero, when an adjustment took more than it); anything
 *   else is a RangeError, as is an unknown time zone.
 * - Text (`describeProjection`): dates are the local date in the time zone,
 *   written "Tue 1 Dec" (en-GB order). The names come from en-US, because en-GB
 *   in recent ICU abbreviates September as "Sept".
 *     runs-out  "At the current rate, {subject} runs out in {n} day(s) ({date})",
 *               or "… runs out today" when `at` falls on today's local date
 *               (days is then 1, except across a 25-hour DST day)
 *     outlasts  "Not at the current rate: {subject} lasts until it resets on {date}"
 *               "Not at the current rate: {subject} lasts beyond a year" (no reset)
 *     idle      "Not at the current rate: nothing used in the last 7 days"
 *     exhausted "{Subject} is used up" (first letter capitalised)
 *     no-limit  "{subject} has no limit"
 */
import { checkTimeZone, periodAt } from '../periods.ts';

export interface ProjectionInput {
  /** GPU-ms consumed per local day, oldest first, ending with today (today may be partial). Integers. */
  daily: number[];
  /** Effective limit of the current period (GPU-ms), null = no limit. */
  limitGpuMs: number | null;
  usedGpuMs: number;
  reservedGpuMs: number;
  /** End of the current period (epoch ms) if the budget resets (periodic); null for one-off budgets. */
  periodEnd: number | null;
  now: number;
  timeZone: string;
}

export type Projection =
  | { kind: 'no-limit' }
  | { kind: 'exhausted' } // limit - used - reserved <= 0 already
  | { kind: 'idle' } // no recent consumption: "not at the current rate"
  | { kind: 'outlasts'; resetsAt: number | null; ratePerDayGpuMs: number } // runs out after the period ends, or never within 365 days
  | { kind: 'runs-out'; days: number; at: number; ratePerDayGpuMs: number }; // days: whole days from now, rounded up, >= 1; at: the instant

const DAY_MS = 86_400_000;
/** Complete days the burn rate looks back over (weights 7 … 1). */
const WINDOW_DAYS = 7;
/** Beyond this many days the projection says "lasts beyond a year". */
const HORIZON_DAYS = 365;

function checkInteger(name: string, n: number, min?: number): void {
  if (!Number.isSafeInteger(n) || (min !== undefined && n < min)) {
    throw new RangeError(`${name} must be an integer${min === undefined ? '' : ` >= ${min}`}, got ${n}`);
  }
}

/** Weighted GPU-ms per day over the last 7 complete days (see header); integer. */
export function burnRate(daily: number[]): number {
  daily.forEach((v, i) => checkInteger(`daily[${i}]`, v, 0));
  if (daily.length === 0) return 0;
  if (daily.length === 1) return daily[0]!;

  const complete = daily.slice(0, -1).slice(-WINDOW_DAYS);
  let weighted = 0;
  let weights = 0;
  // complete is oldest first and ends with yesterday: yesterday weighs 7, the day before 6, …
  complete.forEach((v, i) => {
    const w = WINDOW_DAYS - (complete.length - 1 - i);
    weighted += v * w;
    weights += w;
  });
  return Math.round(weighted / weights);
}

export function project(input: ProjectionInput): Projection {
  const { daily, limitGpuMs, usedGpuMs, reservedGpuMs, periodEnd, now, timeZone } = input;
  checkTimeZone(timeZone);
  checkInteger('now', now);
  if (periodEnd !== null) checkInteger('periodEnd', periodEnd);
  checkInteger('usedGpuMs', usedGpuMs, 0);
  checkInteger('reservedGpuMs', reservedGpuMs, 0);
  const ratePerDayGpuMs = burnRate(daily);

  if (limitGpuMs === null) return { kind: 'no-limit' };
  // May be below zero: an adjustment can take more than the limit (then it is exhausted).
  checkInteger('limitGpuMs', limitGpuMs);

  const remaining = limitGpuMs - usedGpuMs - reservedGpuMs;
  if (remaining <= 0) return { kind: 'exhausted' };
  if (ratePerDayGpuMs === 0) return { kind: 'idle' };

  // remaining × DAY_MS can pass 2^53, so do the instant in BigInt; ceil division.
  const r = BigInt(remaining);
  const rate = BigInt(ratePerDayGpuMs);
  const beyondHorizon = r > BigInt(HORIZON_DAYS) * rate;
  const msLeft = (r * BigInt(DAY_MS) + rate - 1n) / rate;
  const at = beyondHorizon ? Infinity : now + Number(msLeft);

  if (periodEnd !== null && at >= periodEnd) return { kind: 'outlasts', resetsAt: periodEnd, ratePerDayGpuMs };
  if (beyondHorizon) return { kind: 'outlasts', resetsAt: null, ratePerDayGpuMs };

  const days = Number((r + rate - 1n) / rate);
  return { kind: 'runs-out', days, at, ratePerDayGpuMs };
}

const dateFormats = new Map<string, Intl.DateTimeFormat>();

/** "Tue 1 Dec": local date of `ms` in `timeZone`. */
function shortDate(ms: number, timeZone: string): string {
  let f = dateFormats.get(timeZone);
  if (f === undefined) {
    checkTimeZone(timeZone);
    f = new Intl.DateTimeFormat('en-US', { timeZone, weekday: 'short', day: 'numeric', month: 'short' });
    dateFormats.set(timeZone, f);
  }
  const parts: Partial<Record<Intl.DateTimeFormatPartTypes, string>> = {};
  for (const p of f.formatToParts(ms)) parts[p.type] = p.value;
  return `${parts.weekday} ${parts.day} ${parts.month}`;
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

export function describeProjection(subject: string, p: Projection, timeZone: string, now: number): string {
  switch (p.kind) {
    case 'no-limit':
      return `${subject} has no limit`;
    case 'exhausted':
      return `${capitalise(subject)} is used up`;
    case 'idle':
      return `Not at the current rate: nothing used in the last ${WINDOW_DAYS} days`;
    case 'outlasts':
      return p.resetsAt === null
        ? `Not at the current rate: ${subject} lasts beyond a year`
        : `Not at the current rate: ${subject} lasts until it resets on ${shortDate(p.resetsAt, timeZone)}`;
    case 'runs-out': {
      if (p.at < periodAt('day', now, timeZone).end) return `At the current rate, ${subject} runs out today`;
      const unit = p.days === 1 ? 'day' : 'days';
      return `At the current rate, ${subject} runs out in ${p.days} ${unit} (${shortDate(p.at, timeZone)})`;
    }
  }
}

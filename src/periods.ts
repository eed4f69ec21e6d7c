/**
 * Calendar periods (day, week, month) in an IANA time zone, using only Intl.
 *
 * Local wall-clock times are handled as "wall" numbers: the local fields encoded
 * with Date.UTC, so calendar arithmetic (next day, Monday of the week, 1st of the
 * month) is plain UTC arithmetic and only the final step needs the zone.
 */

export type PeriodKind = 'day' | 'week' | 'month';

export const PERIOD_KINDS: readonly PeriodKind[] = Object.freeze(['day', 'week', 'month'] as const);

export interface Period {
  kind: PeriodKind;
  /** Stable id of this period in this time zone: day 'YYYY-MM-DD' (local date), week 'W' + local date of its Monday ('W2026-11-23'), month 'YYYY-MM'. */
  label: string;
  /** First instant of the period, epoch ms. */
  start: number;
  /** First instant of the next period, epoch ms (exclusive end). */
  end: number;
}

const DAY_MS = 86_400_000;

// Building a DateTimeFormat costs far more than using one, and every period
// computation needs several offset lookups, so keep one per zone.
const formats = new Map<string, Intl.DateTimeFormat>();

function formatFor(timeZone: string): Intl.DateTimeFormat {
  let f = formats.get(timeZone);
  if (f === undefined) {
    try {
      f = new Intl.DateTimeFormat('en-US', {
        timeZone,
        // h23: some ICU versions render midnight as "24" under hour12: false.
        hourCycle: 'h23',
        year: 'numeric',
        month: 'numeric',
        day: 'numeric',
        hour: 'numeric',
        minute: 'numeric',
        second: 'numeric',
      });
    } catch {
      throw new RangeError(`unknown time zone "${timeZone}"`);
    }
    formats.set(timeZone, f);
  }
  return f;
}

/** Throws RangeError('unknown time zone "X"') for an invalid IANA zone; returns it otherwise. */
export function checkTimeZone(tz: string): string {
  formatFor(tz);
  return tz;
}

/** Local wall-clock time of instant `ms`, as a wall number, truncated to the second. */
function wallAt(ms: number, timeZone: string): number {
  const f: Record<string, number> = {};
  for (const part of formatFor(timeZone).formatToParts(ms)) {
    if (part.type !== 'literal') f[part.type] = Number(part.value);
  }
  return Date.UTC(f.year!, f.month! - 1, f.day!, f.hour!, f.minute!, f.second!);
}

/** The local minute of the week at `ms` in `timeZone`: Monday 00:00 is 0, Sunday 23:59 is 10,079 (GPU caps' peak windows). */
export function minuteOfWeek(ms: number, timeZone: string): number {
  const wall = wallAt(ms, timeZone);
  const monday0 = (new Date(wall).getUTCDay() + 6) % 7;
  return monday0 * 1440 + Math.floor(mod(wall, 86_400_000) / 60_000);
}

/** UTC offset (ms) in force at instant `ms`. */
function offsetAt(ms: number, timeZone: string): number {
  // Intl only reports whole seconds; compare against the instant floored likewise.
  return wallAt(ms, timeZone) - (ms - mod(ms, 1000));
}

/**
 * The first instant whose local wall time is `wall` (a whole second).
 *
 * Guess with the offsets in force a day before and a day after (real offsets are
 * within ±14 h, so any transition that matters lies between those two probes),
 * then measure the offset at each guess: a guess is right when the offset there
 * is the one it assumed.
 * - Both right: the wall time happens twice (fall-back); take the first.
 * - Neither right: the wall time falls in a gap (spring-forward). Take the
 *   transition itself, the first instant that exists after the gap, so a day
 *   whose midnight is skipped starts at e.g. 01:00.
 */
function instantOf(wall: number, timeZone: string): number {
  const guesses = [offsetAt(wall - DAY_MS, timeZone), offsetAt(wall + DAY_MS, timeZone)].map((o) => wall - o);
  const right = guesses.filter((t) => wallAt(t, timeZone) === wall);
  if (right.length > 0) return Math.min(...right);

  // In the gap: the earlier guess still has the old offset, the later the new one.
  // Binary-search the first millisecond with the new offset.
  let lo = Math.min(...guesses);
  let hi = Math.max(...guesses);
  const after = offsetAt(hi, timeZone);
  while (hi - lo > 1) {
    const mid = lo + Math.floor((hi - lo) / 2);
    if (offsetAt(mid, timeZone) === after) hi = mid;
    else lo = mid;
  }
  return hi;
}

function mod(a: number, n: number): number {
  return ((a % n) + n) % n;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

function dateLabel(wall: number): string {
  const d = new Date(wall);
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}`;
}

/** Local-midnight wall bounds and label of the period of `kind` containing local date `wall`. */
function bounds(kind: PeriodKind, wall: number): { label: string; from: number; to: number } {
  const d = new Date(wall);
  const y = d.getUTCFullYear();
  const m = d.getUTCMonth();
  const day = d.getUTCDate();
  switch (kind) {
    case 'day':
      return { label: dateLabel(Date.UTC(y, m, day)), from: Date.UTC(y, m, day), to: Date.UTC(y, m, day + 1) };
    case 'week': {
      const monday = Date.UTC(y, m, day - mod(d.getUTCDay() - 1, 7));
      return { label: `W${dateLabel(monday)}`, from: monday, to: monday + 7 * DAY_MS };
    }
    case 'month':
      return { label: `${pad(y, 4)}-${pad(m + 1, 2)}`, from: Date.UTC(y, m, 1), to: Date.UTC(y, m + 1, 1) };
  }
}

function checkInstant(ms: number): void {
  if (!Number.isSafeInteger(ms)) throw new RangeError(`instant must be an integer epoch ms, got ${ms}`);
}

/** The period of `kind` containing instant `atMs` in `timeZone`. */
export function periodAt(kind: PeriodKind, atMs: number, timeZone: string): Period {
  checkInstant(atMs);
  const b = bounds(kind, wallAt(atMs, timeZone));
  const period: Period = { kind, label: b.label, start: instantOf(b.from, timeZone), end: instantOf(b.to, timeZone) };
  // A few zones set the clock back across midnight rather than at it (St. John's
  // went 00:01 -> 23:01 until 2010), so for a while the local date reads as a day
  // that has already ended. Periods must not overlap: count that in the next one.
  return atMs < period.end ? period : periodAt(kind, period.end, timeZone);
}

/** The period just before `p` (same kind, same zone). */
export function previousPeriod(p: Period, timeZone: string): Period {
  // Going through the instant before `start` (rather than label arithmetic)
  // skips dates that never happened locally, e.g. Pacific/Apia's 2011-12-30.
  return periodAt(p.kind, p.start - 1, timeZone);
}

/** Earliest period end strictly after atMs among `kinds` (default all) — when the next reset happens. */
export function nextBoundary(atMs: number, timeZone: string, kinds: readonly PeriodKind[] = PERIOD_KINDS): number {
  if (kinds.length === 0) throw new RangeError('nextBoundary needs at least one period kind');
  return Math.min(...kinds.map((k) => periodAt(k, atMs, timeZone).end));
}

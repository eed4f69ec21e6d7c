/**
 * Budget run-out projection (pure: no Redis, no Postgres).
 *
 * Every expected number is worked out by hand in the comment next to it, in
 * hours (H = 3,600,000 GPU-ms) and days (DAY = 86,400,000 ms). Calendar facts
 * used: 2026-11-23 is a Monday, so 2026-11-25 is a Wednesday and 2026-12-01 a
 * Tuesday; Europe/Berlin is UTC+1 (CET) throughout late November / December.
 */
import { describe, expect, it } from 'vitest';
import { burnRate, describeProjection, project, type Projection, type ProjectionInput } from '../src/usage/projection.ts';
import { periodAt } from '../src/periods.ts';

const H = 3_600_000;
const DAY = 86_400_000;
const TZ = 'Europe/Berlin';
/** Wed 25 Nov 2026, 12:00 UTC (13:00 Berlin). */
const NOW = Date.UTC(2026, 10, 25, 12);
const SUBJECT = "project alpha's budget";

function hours(...hs: number[]): number[] {
  return hs.map((h) => h * H);
}

function input(over: Partial<ProjectionInput>): ProjectionInput {
  return {
    daily: [],
    limitGpuMs: 100 * H,
    usedGpuMs: 0,
    reservedGpuMs: 0,
    periodEnd: null,
    now: NOW,
    timeZone: TZ,
    ...over,
  };
}

describe('burnRate', () => {
  it('steady burn: the weighted average of equal days is that day', () => {
    // 14 complete days at 10 h, then today (partial, 3 h, ignored) → 10 h/day.
    expect(burnRate([...hours(...Array<number>(14).fill(10)), 3 * H])).toBe(10 * H);
  });

  it('accelerating burn weighs recent days more than a plain average', () => {
    // Complete days oldest→newest 1..7 h with weights 1..7; today 0 h (ignored).
    // Weighted: (1·1 + 2·2 + 3·3 + 4·4 + 5·5 + 6·6 + 7·7) / (1+…+7) = 140 / 28 = 5 h/day.
    // Plain average: 28 / 7 = 4 h/day.
    const rate = burnRate(hours(1, 2, 3, 4, 5, 6, 7, 0));
    expect(rate).toBe(5 * H);
    expect(rate).toBeGreaterThan(4 * H);
  });

  it('only the last 7 complete days count; today is ignored', () => {
    // Five old days of 100 h fall outside the window; seven days of 1 h; today 50 h ignored.
    expect(burnRate(hours(100, 100, 100, 100, 100, 1, 1, 1, 1, 1, 1, 1, 50))).toBe(1 * H);
  });

  it('a shorter history averages over the days present with their weights, rounded', () => {
    // Day before yesterday 2 h (weight 6), yesterday 4 h (weight 7), today ignored:
    // (6·2 + 7·4) / 13 = 40/13 h = 144,000,000 / 13 GPU-ms = 11,076,923.08 → 11,076,923.
    expect(burnRate(hours(2, 4, 9))).toBe(11_076_923);
  });

  it('a single entry (today, partial) is the rate', () => {
    expect(burnRate([3 * H])).toBe(3 * H);
  });

  it('no history is a zero rate', () => {
    expect(burnRate([])).toBe(0);
  });

  it('rejects non-integer or negative amounts', () => {
    expect(() => burnRate([1.5, 0])).toThrow(RangeError);
    expect(() => burnRate([-1, 0])).toThrow(RangeError);
  });
});

describe('project', () => {
  const steady = [...hours(...Array<number>(14).fill(10)), 3 * H]; // 10 h/day

  it('steady: 10 h/day with 100 h remaining runs out in 10 days', () => {
    // limit 200 h − used 100 h = 100 h; 100 / 10 = 10 days exactly.
    const p = project(input({ daily: steady, limitGpuMs: 200 * H, usedGpuMs: 100 * H }));
    expect(p).toEqual({ kind: 'runs-out', days: 10, at: NOW + 10 * DAY, ratePerDayGpuMs: 10 * H });
  });

  it('accelerating: the weighted rate projects sooner than the plain average would', () => {
    // Rate 5 h/day (see burnRate); 100 h remaining → 20 days. Plain 4 h/day would give 25.
    const p = project(input({ daily: hours(1, 2, 3, 4, 5, 6, 7, 0) }));
    expect(p).toEqual({ kind: 'runs-out', days: 20, at: NOW + 20 * DAY, ratePerDayGpuMs: 5 * H });
    expect(p.kind === 'runs-out' && p.days).toBeLessThan(100 / 4);
  });

  it('rounds a fractional day count up; `at` is the exact instant in real time', () => {
    // 25 h remaining at 10 h/day = 2.5 days → days 3, at = now + 2.5 × 86,400,000 = now + 216,000,000.
    const p = project(input({ daily: steady, limitGpuMs: 25 * H }));
    expect(p).toEqual({ kind: 'runs-out', days: 3, at: NOW + 216_000_000, ratePerDayGpuMs: 10 * H });
  });

  it('idle: zero consumption is "not at the current rate"', () => {
    expect(project(input({ daily: [0, 0, 0, 0, 0, 0, 0, 0] }))).toEqual({ kind: 'idle' });
    expect(project(input({ daily: [] }))).toEqual({ kind: 'idle' });
  });

  it('already over: used + reserved beyond the limit is exhausted', () => {
    // 60 + 50 = 110 h > 100 h.
    expect(project(input({ daily: steady, usedGpuMs: 60 * H, reservedGpuMs: 50 * H }))).toEqual({ kind: 'exhausted' });
    // Exactly at the limit: remaining 0 → exhausted too (even when idle).
    expect(project(input({ daily: [0, 0], usedGpuMs: 100 * H }))).toEqual({ kind: 'exhausted' });
  });

  it('reserved counts as spent', () => {
    // 100 − 40 used − 30 reserved = 30 h at 10 h/day → 3 days (without the reservation: 60 h → 6 days).
    const p = project(input({ daily: steady, usedGpuMs: 40 * H, reservedGpuMs: 30 * H }));
    expect(p).toEqual({ kind: 'runs-out', days: 3, at: NOW + 3 * DAY, ratePerDayGpuMs: 10 * H });
    const without = project(input({ daily: steady, usedGpuMs: 40 * H }));
    expect(without.kind === 'runs-out' && without.days).toBe(6);
  });

  it('no limit', () => {
    expect(project(input({ daily: steady, limitGpuMs: null }))).toEqual({ kind: 'no-limit' });
  });

  it('a periodic budget that resets before it runs out outlasts the period', () => {
    // 100 h at 10 h/day runs out at now + 10 days; the period ends at now + 5 days.
    const periodEnd = NOW + 5 * DAY;
    expect(project(input({ daily: steady, periodEnd }))).toEqual({ kind: 'outlasts', resetsAt: periodEnd, ratePerDayGpuMs: 10 * H });
    // Running out exactly at the reset is still outlasting (at >= periodEnd).
    expect(project(input({ daily: steady, periodEnd: NOW + 10 * DAY })).kind).toBe('outlasts');
    // One ms later and it runs out first.
    expect(project(input({ daily: steady, periodEnd: NOW + 10 * DAY + 1 }))).toEqual({
      kind: 'runs-out',
      days: 10,
      at: NOW + 10 * DAY,
      ratePerDayGpuMs: 10 * H,
    });
  });

  it('more than 365 days outlasts with no reset', () => {
    // 366 h at 1 h/day = 366 days > 365.
    const oneHourDaily = hours(1, 1, 1, 1, 1, 1, 1, 0);
    expect(project(input({ daily: oneHourDaily, limitGpuMs: 366 * H }))).toEqual({ kind: 'outlasts', resetsAt: null, ratePerDayGpuMs: H });
    // Exactly 365 days still runs out.
    expect(project(input({ daily: oneHourDaily, limitGpuMs: 365 * H }))).toEqual({
      kind: 'runs-out',
      days: 365,
      at: NOW + 365 * DAY,
      ratePerDayGpuMs: H,
    });
  });

  it('a single partial day is the rate', () => {
    // Only today, 3 h so far → 3 h/day. 10 h remaining → 10/3 = 3.33 days → days 4,
    // at = now + 10 × 86,400,000 / 3 = now + 288,000,000.
    const p = project(input({ daily: [3 * H], limitGpuMs: 10 * H }));
    expect(p).toEqual({ kind: 'runs-out', days: 4, at: NOW + 288_000_000, ratePerDayGpuMs: 3 * H });
  });

  it('stays exact when remaining × a day passes 2^53', () => {
    // 1,000,000 h remaining at 10,000 h/day = 100 days exactly; 3.6e12 × 8.64e7 ≈ 3.1e20 > 2^53.
    const p = project(input({ daily: hours(10_000, 0), limitGpuMs: 1_000_000 * H }));
    expect(p).toEqual({ kind: 'runs-out', days: 100, at: NOW + 100 * DAY, ratePerDayGpuMs: 10_000 * H });
  });

  it('is used up when an adjustment took more than the limit (an effective limit below zero)', () => {
    // Budget 1 GPU-ms, adjusted by -2: effective limit -1, nothing used.
    expect(project(input({ daily: hours(1, 0), limitGpuMs: -1, usedGpuMs: 0, reservedGpuMs: 0 }))).toEqual({ kind: 'exhausted' });
  });

  it('rejects bad input', () => {
    expect(() => project(input({ usedGpuMs: 0.5 }))).toThrow(RangeError);
    expect(() => project(input({ timeZone: 'Mars/Olympus' }))).toThrow(RangeError);
  });
});

describe('describeProjection', () => {
  const steady = hours(10, 10, 10, 10, 10, 10, 10, 0); // 10 h/day
  const say = (p: Projection, tz = TZ, now = NOW) => describeProjection(SUBJECT, p, tz, now);

  it('runs out in 6 days, dated across the month boundary in Europe/Berlin', () => {
    // now = Wed 25 Nov 11:30 UTC. 55 h at 10 h/day = 5.5 days → days 6,
    // at = Mon 30 Nov 23:30 UTC = Tue 1 Dec 00:30 Berlin.
    const now = Date.UTC(2026, 10, 25, 11, 30);
    const p = project(input({ daily: steady, limitGpuMs: 55 * H, now }));
    expect(p).toEqual({ kind: 'runs-out', days: 6, at: Date.UTC(2026, 10, 30, 23, 30), ratePerDayGpuMs: 10 * H });
    expect(say(p, TZ, now)).toBe("At the current rate, project alpha's budget runs out in 6 days (Tue 1 Dec)");
    // The same instant is still Mon 30 Nov in UTC.
    expect(say(p, 'UTC', now)).toBe("At the current rate, project alpha's budget runs out in 6 days (Mon 30 Nov)");
  });

  it('singular "1 day" when it runs out tomorrow', () => {
    // 9 h at 10 h/day = 0.9 day = 21.6 h → days 1; at = Wed 12:00 UTC + 21 h 36 min = Thu 26 Nov 09:36 UTC.
    const p = project(input({ daily: steady, limitGpuMs: 9 * H }));
    expect(p).toEqual({ kind: 'runs-out', days: 1, at: Date.UTC(2026, 10, 26, 9, 36), ratePerDayGpuMs: 10 * H });
    expect(say(p)).toBe("At the current rate, project alpha's budget runs out in 1 day (Thu 26 Nov)");
  });

  it('"today" when it runs out before local midnight', () => {
    // 5 h at 10 h/day = 12 h; now Wed 08:00 UTC (09:00 Berlin) → at 20:00 UTC (21:00 Berlin), same day.
    const now = Date.UTC(2026, 10, 25, 8);
    const p = project(input({ daily: steady, limitGpuMs: 5 * H, now }));
    expect(p).toEqual({ kind: 'runs-out', days: 1, at: Date.UTC(2026, 10, 25, 20), ratePerDayGpuMs: 10 * H });
    expect(say(p, TZ, now)).toBe("At the current rate, project alpha's budget runs out today");
  });

  it('"today" depends on the local date', () => {
    // 1 h at 10 h/day = 2.4 h; now Wed 21:00 UTC → at 23:24 UTC: still Wed in UTC, Thu 00:24 in Berlin.
    const now = Date.UTC(2026, 10, 25, 21);
    const p = project(input({ daily: steady, limitGpuMs: 1 * H, now }));
    expect(p).toEqual({ kind: 'runs-out', days: 1, at: Date.UTC(2026, 10, 25, 23, 24), ratePerDayGpuMs: 10 * H });
    expect(say(p, 'UTC', now)).toBe("At the current rate, project alpha's budget runs out today");
    expect(say(p, TZ, now)).toBe("At the current rate, project alpha's budget runs out in 1 day (Thu 26 Nov)");
  });

  it('September is "Sep", not en-GB\'s "Sept"', () => {
    // now Sat 29 Aug 2026 12:00 UTC; 30 h at 10 h/day = 3 days → Tue 1 Sep 12:00 UTC.
    const now = Date.UTC(2026, 7, 29, 12);
    const p = project(input({ daily: steady, limitGpuMs: 30 * H, now }));
    expect(say(p, TZ, now)).toBe("At the current rate, project alpha's budget runs out in 3 days (Tue 1 Sep)");
  });

  it('outlasts a monthly period: resets on the 1st, local', () => {
    // November in Berlin ends at Tue 1 Dec 00:00 CET = Mon 30 Nov 23:00 UTC; 100 h at 10 h/day
    // lasts to Sat 5 Dec, after the reset.
    const periodEnd = periodAt('month', NOW, TZ).end;
    expect(periodEnd).toBe(Date.UTC(2026, 10, 30, 23));
    const p = project(input({ daily: steady, periodEnd }));
    expect(p).toEqual({ kind: 'outlasts', resetsAt: periodEnd, ratePerDayGpuMs: 10 * H });
    expect(say(p)).toBe("Not at the current rate: project alpha's budget lasts until it resets on Tue 1 Dec");
  });

  it('outlasts beyond a year', () => {
    expect(say({ kind: 'outlasts', resetsAt: null, ratePerDayGpuMs: H })).toBe(
      "Not at the current rate: project alpha's budget lasts beyond a year",
    );
  });

  it('idle, exhausted, no limit', () => {
    expect(say({ kind: 'idle' })).toBe('Not at the current rate: nothing used in the last 7 days');
    expect(say({ kind: 'exhausted' })).toBe("Project alpha's budget is used up");
    expect(say({ kind: 'no-limit' })).toBe("project alpha's budget has no limit");
  });
});

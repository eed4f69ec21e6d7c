/**
 * Calendar periods in IANA time zones.
 *
 * Expected instants are written as Date.UTC(local wall time − known offset), with
 * the offsets and DST transition instants checked beforehand against Node's own
 * Intl data (ICU 78.2, tzdata 2025c) by formatting the instants in the zone, e.g.
 *   new Intl.DateTimeFormat('en-CA', { timeZone, hourCycle: 'h23', ..., timeZoneName: 'shortOffset' })
 *     .format(Date.UTC(2026, 8, 6, 4))  // 'Sun, 2026-09-06, 01:00:00 GMT-3'
 * The skipped-midnight cases also assert those Intl facts inline, so a tzdata
 * change that moves the gap fails loudly instead of silently testing nothing.
 */
import { describe, expect, it } from 'vitest';
import {
  PERIOD_KINDS,
  checkTimeZone,
  nextBoundary,
  periodAt,
  previousPeriod,
  type Period,
  type PeriodKind,
} from '../src/periods.ts';

const H = 3_600_000;
const DAY = 24 * H;

const oracles = new Map<string, Intl.DateTimeFormat>();

/** Local wall clock of `ms` in `tz`, straight from Intl (the independent oracle). */
function wall(tz: string, ms: number): string {
  let f = oracles.get(tz);
  f ??= new Intl.DateTimeFormat('en-US', {
    timeZone: tz,
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  });
  oracles.set(tz, f);
  const p = Object.fromEntries(f.formatToParts(ms).map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
}

/** UTC offset of `tz` at whole-second instant `ms`, in minutes, from Intl. */
function offsetMinutes(tz: string, ms: number): number {
  return (Date.parse(`${wall(tz, ms).replace(' ', 'T')}Z`) - ms) / 60_000;
}

function p(kind: PeriodKind, label: string, start: number, end: number): Period {
  return { kind, label, start, end };
}

describe('checkTimeZone', () => {
  it('returns valid zones and rejects unknown ones', () => {
    expect(checkTimeZone('Europe/Berlin')).toBe('Europe/Berlin');
    expect(checkTimeZone('UTC')).toBe('UTC');
    expect(() => checkTimeZone('Mars/Olympus')).toThrow(new RangeError('unknown time zone "Mars/Olympus"'));
    expect(() => checkTimeZone('')).toThrow(RangeError);
  });

  it('makes periodAt refuse unknown zones and non-integer instants', () => {
    expect(() => periodAt('day', 0, 'Mars/Olympus')).toThrow('unknown time zone "Mars/Olympus"');
    expect(() => periodAt('day', 1.5, 'UTC')).toThrow(RangeError);
    expect(() => periodAt('day', Number.NaN, 'UTC')).toThrow(RangeError);
  });
});

describe('UTC', () => {
  const tz = 'UTC';

  it('labels day, week and month across a year boundary', () => {
    const t = Date.UTC(2026, 11, 31, 23, 59, 59, 999); // Thu 2026-12-31
    expect(periodAt('day', t, tz)).toEqual(p('day', '2026-12-31', Date.UTC(2026, 11, 31), Date.UTC(2027, 0, 1)));
    expect(periodAt('week', t, tz)).toEqual(p('week', 'W2026-12-28', Date.UTC(2026, 11, 28), Date.UTC(2027, 0, 4)));
    expect(periodAt('month', t, tz)).toEqual(p('month', '2026-12', Date.UTC(2026, 11, 1), Date.UTC(2027, 0, 1)));

    const u = Date.UTC(2027, 0, 1); // one ms later: new day and month, same week
    expect(periodAt('day', u, tz).label).toBe('2027-01-01');
    expect(periodAt('week', u, tz).label).toBe('W2026-12-28');
    expect(periodAt('month', u, tz)).toEqual(p('month', '2027-01', Date.UTC(2027, 0, 1), Date.UTC(2027, 1, 1)));
  });

  it('starts weeks on Monday', () => {
    const sundayLate = Date.UTC(2026, 10, 29, 23, 59, 59, 999); // Sun 2026-11-29
    expect(periodAt('week', sundayLate, tz)).toEqual(
      p('week', 'W2026-11-23', Date.UTC(2026, 10, 23), Date.UTC(2026, 10, 30)),
    );
    const mondayMidnight = Date.UTC(2026, 10, 30); // Mon 2026-11-30
    expect(periodAt('week', mondayMidnight, tz)).toEqual(
      p('week', 'W2026-11-30', Date.UTC(2026, 10, 30), Date.UTC(2026, 11, 7)),
    );
    // A Monday belongs to its own week, not the one before.
    expect(periodAt('week', Date.UTC(2026, 10, 23), tz).label).toBe('W2026-11-23');
  });

  it('has a 29-day February in the leap year 2028', () => {
    const t = Date.UTC(2028, 1, 29, 12);
    expect(periodAt('month', t, tz)).toEqual(p('month', '2028-02', Date.UTC(2028, 1, 1), Date.UTC(2028, 2, 1)));
    expect(Date.UTC(2028, 2, 1) - Date.UTC(2028, 1, 1)).toBe(29 * DAY);
    expect(periodAt('day', t, tz)).toEqual(p('day', '2028-02-29', Date.UTC(2028, 1, 29), Date.UTC(2028, 2, 1)));
    // Tue 2028-02-29 is in the week of Mon 2028-02-28.
    expect(periodAt('week', t, tz).label).toBe('W2028-02-28');
  });

  it('includes start and excludes end', () => {
    const d = periodAt('day', Date.UTC(2026, 5, 1), 'UTC');
    expect(d.label).toBe('2026-06-01');
    expect(periodAt('day', Date.UTC(2026, 5, 2) - 1, 'UTC').label).toBe('2026-06-01');
    expect(periodAt('day', Date.UTC(2026, 5, 2), 'UTC').label).toBe('2026-06-02');
  });
});

describe('Europe/Berlin DST', () => {
  const tz = 'Europe/Berlin';

  it('spring-forward day 2026-03-29 is 23 h (00:00 CET to 00:00 CEST)', () => {
    const day = periodAt('day', Date.UTC(2026, 2, 29, 10), tz);
    expect(day).toEqual(p('day', '2026-03-29', Date.UTC(2026, 2, 28, 23), Date.UTC(2026, 2, 29, 22)));
    expect(day.end - day.start).toBe(23 * H);
    // Sun 2026-03-29 is in the week of Mon 2026-03-23 (CET) to Mon 2026-03-30 (CEST): 167 h.
    const week = periodAt('week', Date.UTC(2026, 2, 29, 10), tz);
    expect(week).toEqual(p('week', 'W2026-03-23', Date.UTC(2026, 2, 22, 23), Date.UTC(2026, 2, 29, 22)));
    expect(periodAt('month', Date.UTC(2026, 2, 29, 10), tz)).toEqual(
      p('month', '2026-03', Date.UTC(2026, 1, 28, 23), Date.UTC(2026, 2, 31, 22)),
    );
  });

  it('fall-back day 2026-10-25 is 25 h (00:00 CEST to 00:00 CET)', () => {
    const day = periodAt('day', Date.UTC(2026, 9, 25, 1, 30), tz); // inside the repeated hour
    expect(day).toEqual(p('day', '2026-10-25', Date.UTC(2026, 9, 24, 22), Date.UTC(2026, 9, 25, 23)));
    expect(day.end - day.start).toBe(25 * H);
  });

  it('puts 23:59 local and 00:00 local the next day in different days', () => {
    const lastMinute = Date.UTC(2026, 2, 28, 22, 59); // Sat 2026-03-28 23:59 CET
    const midnight = Date.UTC(2026, 2, 28, 23, 0); // Sun 2026-03-29 00:00 CET
    expect(wall(tz, lastMinute)).toBe('2026-03-28 23:59:00');
    expect(wall(tz, midnight)).toBe('2026-03-29 00:00:00');
    expect(periodAt('day', lastMinute, tz).label).toBe('2026-03-28');
    expect(periodAt('day', midnight - 1, tz).label).toBe('2026-03-28');
    expect(periodAt('day', midnight, tz).label).toBe('2026-03-29');
    expect(periodAt('day', lastMinute, tz).end).toBe(midnight);

    // Same at the end of the fall-back day, in CET.
    expect(periodAt('day', Date.UTC(2026, 9, 25, 22, 59), tz).label).toBe('2026-10-25');
    expect(periodAt('day', Date.UTC(2026, 9, 25, 23, 0), tz).label).toBe('2026-10-26');
  });
});

describe('zones where local midnight does not exist', () => {
  it('America/Santiago 2026-09-06 starts at 01:00 -03 after the 00:00 -> 01:00 jump', () => {
    const tz = 'America/Santiago';
    // Intl confirms the gap: the last instant of Saturday is 23:59:59 at -04, the next is 01:00 at -03.
    expect(wall(tz, Date.UTC(2026, 8, 6, 4) - 1)).toBe('2026-09-05 23:59:59');
    expect(wall(tz, Date.UTC(2026, 8, 6, 4))).toBe('2026-09-06 01:00:00');

    const day = periodAt('day', Date.UTC(2026, 8, 6, 15), tz);
    expect(day).toEqual(p('day', '2026-09-06', Date.UTC(2026, 8, 6, 4), Date.UTC(2026, 8, 7, 3)));
    expect(day.end - day.start).toBe(23 * H);
    expect(periodAt('day', Date.UTC(2026, 8, 6, 4), tz).label).toBe('2026-09-06');
    expect(periodAt('day', Date.UTC(2026, 8, 6, 4) - 1, tz)).toEqual(
      p('day', '2026-09-05', Date.UTC(2026, 8, 5, 4), Date.UTC(2026, 8, 6, 4)),
    );
    expect(previousPeriod(day, tz).end).toBe(day.start);
  });

  it('America/Havana 2026-03-08 starts at 01:00 -04; its 2026-11-01 midnight happens twice and the first wins', () => {
    const tz = 'America/Havana';
    expect(wall(tz, Date.UTC(2026, 2, 8, 5) - 1)).toBe('2026-03-07 23:59:59');
    expect(wall(tz, Date.UTC(2026, 2, 8, 5))).toBe('2026-03-08 01:00:00');
    expect(periodAt('day', Date.UTC(2026, 2, 8, 12), tz)).toEqual(
      p('day', '2026-03-08', Date.UTC(2026, 2, 8, 5), Date.UTC(2026, 2, 9, 4)),
    );

    // Fall-back at 01:00 -04 -> 00:00 -05: local 00:00-00:59 of Nov 1 occurs twice.
    expect(wall(tz, Date.UTC(2026, 10, 1, 4))).toBe('2026-11-01 00:00:00');
    expect(wall(tz, Date.UTC(2026, 10, 1, 5))).toBe('2026-11-01 00:00:00');
    const nov1 = periodAt('day', Date.UTC(2026, 10, 1, 4, 30), tz);
    expect(nov1).toEqual(p('day', '2026-11-01', Date.UTC(2026, 10, 1, 4), Date.UTC(2026, 10, 2, 5)));
    expect(nov1.end - nov1.start).toBe(25 * H);
    expect(periodAt('month', Date.UTC(2026, 10, 1, 4) - 1, tz)).toEqual(
      p('month', '2026-10', Date.UTC(2026, 9, 1, 4), Date.UTC(2026, 10, 1, 4)),
    );
  });

  it('Pacific/Apia skipped all of 2011-12-30: the day before ends where 2011-12-31 starts', () => {
    const tz = 'Pacific/Apia';
    expect(wall(tz, Date.UTC(2011, 11, 30, 10) - 1)).toBe('2011-12-29 23:59:59'); // -10
    expect(wall(tz, Date.UTC(2011, 11, 30, 10))).toBe('2011-12-31 00:00:00'); // +14
    const dec31 = periodAt('day', Date.UTC(2011, 11, 30, 10), tz);
    expect(dec31).toEqual(p('day', '2011-12-31', Date.UTC(2011, 11, 30, 10), Date.UTC(2011, 11, 31, 10)));
    expect(previousPeriod(dec31, tz)).toEqual(
      p('day', '2011-12-29', Date.UTC(2011, 11, 29, 10), Date.UTC(2011, 11, 30, 10)),
    );
    // That week lost a day: Mon 12-26 00:00 -10 to Mon 2012-01-02 00:00 +14 is 6 days.
    const week = periodAt('week', Date.UTC(2011, 11, 30, 10), tz);
    expect(week).toEqual(p('week', 'W2011-12-26', Date.UTC(2011, 11, 26, 10), Date.UTC(2012, 0, 1, 10)));
    expect(week.end - week.start).toBe(6 * DAY);
  });
});

describe('historical oddities (found by scanning every Intl zone for transitions across midnight)', () => {
  it('America/Toronto 1919-03-31: the gap 23:30 -> 00:30 swallows midnight, so the day starts at 00:30 EDT', () => {
    const tz = 'America/Toronto';
    expect(wall(tz, Date.UTC(1919, 2, 31, 4, 30) - 1)).toBe('1919-03-30 23:29:59'); // EST
    expect(wall(tz, Date.UTC(1919, 2, 31, 4, 30))).toBe('1919-03-31 00:30:00'); // EDT
    const day = periodAt('day', Date.UTC(1919, 2, 31, 4, 30), tz);
    expect(day).toEqual(p('day', '1919-03-31', Date.UTC(1919, 2, 31, 4, 30), Date.UTC(1919, 3, 1, 4)));
    expect(previousPeriod(day, tz)).toEqual(
      p('day', '1919-03-30', Date.UTC(1919, 2, 30, 5), Date.UTC(1919, 2, 31, 4, 30)),
    );
  });

  it('America/St_Johns 2010-11-07: the clock fell back from 00:01 to 23:01; that repeated hour stays in the new day', () => {
    const tz = 'America/St_Johns';
    expect(wall(tz, Date.UTC(2010, 10, 7, 2, 30))).toBe('2010-11-07 00:00:00'); // NDT, -02:30
    expect(wall(tz, Date.UTC(2010, 10, 7, 2, 31))).toBe('2010-11-06 23:01:00'); // NST, -03:30
    // Periods never overlap: 2010-11-06 ended at its first midnight, so the hour
    // that reads "Nov 6 23:xx" again is counted in 2010-11-07, which then lasts 25 h.
    const nov7 = p('day', '2010-11-07', Date.UTC(2010, 10, 7, 2, 30), Date.UTC(2010, 10, 8, 3, 30));
    expect(periodAt('day', Date.UTC(2010, 10, 7, 2, 30), tz)).toEqual(nov7);
    expect(periodAt('day', Date.UTC(2010, 10, 7, 2, 45), tz)).toEqual(nov7);
    expect(periodAt('day', Date.UTC(2010, 10, 7, 3, 30) - 1, tz)).toEqual(nov7);
    expect(periodAt('day', Date.UTC(2010, 10, 7, 2, 30) - 1, tz)).toEqual(
      p('day', '2010-11-06', Date.UTC(2010, 10, 6, 2, 30), Date.UTC(2010, 10, 7, 2, 30)),
    );
  });
});

describe('fixed positive and half-hour offsets', () => {
  it('Asia/Tokyo (+09:00) is already in the new year at 15:00 UTC on Dec 31', () => {
    const tz = 'Asia/Tokyo';
    const t = Date.UTC(2025, 11, 31, 15); // 2026-01-01 00:00 JST
    expect(periodAt('day', t - 1, tz).label).toBe('2025-12-31');
    expect(periodAt('day', t, tz)).toEqual(p('day', '2026-01-01', t, Date.UTC(2026, 0, 1, 15)));
    expect(periodAt('month', t, tz)).toEqual(p('month', '2026-01', t, Date.UTC(2026, 0, 31, 15)));
    // Thu 2026-01-01 is in the week of Mon 2025-12-29 00:00 JST.
    expect(periodAt('week', t, tz)).toEqual(
      p('week', 'W2025-12-29', Date.UTC(2025, 11, 28, 15), Date.UTC(2026, 0, 4, 15)),
    );
  });

  it('Asia/Kolkata (+05:30) days start at 18:30 UTC', () => {
    const tz = 'Asia/Kolkata';
    const mon = Date.UTC(2026, 5, 14, 18, 30); // Mon 2026-06-15 00:00 IST
    expect(periodAt('day', mon, tz)).toEqual(p('day', '2026-06-15', mon, Date.UTC(2026, 5, 15, 18, 30)));
    expect(periodAt('week', mon, tz)).toEqual(p('week', 'W2026-06-15', mon, Date.UTC(2026, 5, 21, 18, 30)));
    expect(periodAt('day', mon - 1, tz).label).toBe('2026-06-14');
    expect(periodAt('week', mon - 1, tz)).toEqual(
      p('week', 'W2026-06-08', Date.UTC(2026, 5, 7, 18, 30), mon),
    );
    expect(periodAt('month', mon, tz)).toEqual(
      p('month', '2026-06', Date.UTC(2026, 4, 31, 18, 30), Date.UTC(2026, 5, 30, 18, 30)),
    );
  });
});

describe('previousPeriod', () => {
  it('chains months back across a year boundary, each ending where the next starts', () => {
    const tz = 'Europe/Berlin';
    const mar = periodAt('month', Date.UTC(2026, 2, 15), tz);
    const feb = previousPeriod(mar, tz);
    const jan = previousPeriod(feb, tz);
    const dec = previousPeriod(jan, tz);
    expect(feb).toEqual(p('month', '2026-02', Date.UTC(2026, 0, 31, 23), Date.UTC(2026, 1, 28, 23)));
    expect(jan).toEqual(p('month', '2026-01', Date.UTC(2025, 11, 31, 23), Date.UTC(2026, 0, 31, 23)));
    expect(dec).toEqual(p('month', '2025-12', Date.UTC(2025, 10, 30, 23), Date.UTC(2025, 11, 31, 23)));
    expect(feb.end).toBe(mar.start);
    expect(jan.end).toBe(feb.start);
    expect(dec.end).toBe(jan.start);
  });

  it('steps days and weeks back over a DST change', () => {
    const tz = 'Europe/Berlin';
    const mon = periodAt('day', Date.UTC(2026, 2, 30, 12), tz);
    expect(previousPeriod(mon, tz)).toEqual(p('day', '2026-03-29', Date.UTC(2026, 2, 28, 23), Date.UTC(2026, 2, 29, 22)));
    const week = periodAt('week', Date.UTC(2026, 2, 30, 12), tz);
    expect(week.label).toBe('W2026-03-30');
    expect(previousPeriod(week, tz)).toEqual(
      p('week', 'W2026-03-23', Date.UTC(2026, 2, 22, 23), Date.UTC(2026, 2, 29, 22)),
    );
  });
});

describe('nextBoundary', () => {
  it('is the nearest of the day, week and month ends', () => {
    // Wed 2026-11-25 12:00 UTC: day ends first.
    expect(nextBoundary(Date.UTC(2026, 10, 25, 12), 'UTC')).toBe(Date.UTC(2026, 10, 26));
    // Sun 2026-11-29: day and week both end at Mon 00:00; month ends Dec 1.
    expect(nextBoundary(Date.UTC(2026, 10, 29, 12), 'UTC')).toBe(Date.UTC(2026, 10, 30));
  });

  it('respects the kinds filter', () => {
    const t = Date.UTC(2026, 10, 25, 12);
    expect(nextBoundary(t, 'UTC', ['week'])).toBe(Date.UTC(2026, 10, 30));
    expect(nextBoundary(t, 'UTC', ['month'])).toBe(Date.UTC(2026, 11, 1));
    expect(nextBoundary(t, 'UTC', ['week', 'month'])).toBe(Date.UTC(2026, 10, 30));
    // Sat 2027-05-29: the week ends (Mon 05-31) before the month (06-01).
    expect(nextBoundary(Date.UTC(2027, 4, 29), 'UTC', ['week', 'month'])).toBe(Date.UTC(2027, 4, 31));
    // Tue 2026-09-29: the month ends (Thu 10-01) before the week (Mon 10-05).
    expect(nextBoundary(Date.UTC(2026, 8, 29), 'UTC', ['week', 'month'])).toBe(Date.UTC(2026, 9, 1));
    expect(() => nextBoundary(t, 'UTC', [])).toThrow(RangeError);
  });

  it('is strictly after the instant, even exactly on a boundary', () => {
    expect(nextBoundary(Date.UTC(2026, 10, 30), 'UTC', ['week'])).toBe(Date.UTC(2026, 11, 7));
    expect(nextBoundary(Date.UTC(2026, 10, 30) - 1, 'UTC', ['week'])).toBe(Date.UTC(2026, 10, 30));
  });

  it('uses local midnight in the zone', () => {
    expect(nextBoundary(Date.UTC(2026, 2, 29, 12), 'Europe/Berlin', ['day'])).toBe(Date.UTC(2026, 2, 29, 22));
    expect(nextBoundary(Date.UTC(2026, 8, 5, 12), 'America/Santiago', ['day'])).toBe(Date.UTC(2026, 8, 6, 4));
  });
});

/** The label after `label`, by calendar arithmetic on the label alone. */
function nextLabel(kind: PeriodKind, label: string): string {
  const iso = (ms: number) => new Date(ms).toISOString().slice(0, 10);
  if (kind === 'month') {
    const [y, m] = label.split('-').map(Number) as [number, number];
    return iso(Date.UTC(y, m, 1)).slice(0, 7);
  }
  const [y, m, d] = label.replace('W', '').split('-').map(Number) as [number, number, number];
  return (kind === 'week' ? 'W' : '') + iso(Date.UTC(y, m - 1, d + (kind === 'week' ? 7 : 1)));
}

describe('invariants over two years', () => {
  // Irregular step so instants land at every time of day; plus each DST transition ±1 ms and ±1 h.
  const STEP = 17 * H + 13 * 60_000 + 17_123;
  const from = Date.UTC(2026, 0, 1);
  const to = Date.UTC(2028, 0, 1);
  const transitions: Record<string, number[]> = {
    // Berlin: 01:00 UTC on the last Sundays of March and October.
    'Europe/Berlin': [
      Date.UTC(2026, 2, 29, 1), Date.UTC(2026, 9, 25, 1), Date.UTC(2027, 2, 28, 1), Date.UTC(2027, 9, 31, 1),
    ],
    // New York: 02:00 local on the second Sunday of March (07:00 UTC) and first Sunday of November (06:00 UTC).
    'America/New_York': [
      Date.UTC(2026, 2, 8, 7), Date.UTC(2026, 10, 1, 6), Date.UTC(2027, 2, 14, 7), Date.UTC(2027, 10, 7, 6),
    ],
  };

  for (const [tz, changes] of Object.entries(transitions)) {
    it(`holds in ${tz}`, () => {
      const instants: number[] = [];
      for (let t = from; t < to; t += STEP) instants.push(t);
      for (const c of changes) instants.push(c - H, c - 1, c, c + 1, c + H);
      // The hand-written transition list is right if Intl's UTC offset changes exactly there.
      for (const c of changes) {
        expect(offsetMinutes(tz, c - 1000)).not.toBe(offsetMinutes(tz, c));
        expect(offsetMinutes(tz, c - 1000)).toBe(offsetMinutes(tz, c - 1000 - H));
      }

      for (const t of instants) {
        const localDate = wall(tz, t).slice(0, 10);
        for (const kind of PERIOD_KINDS) {
          const per = periodAt(kind, t, tz);
          expect(per.kind).toBe(kind);
          expect(per.start <= t && t < per.end, `${kind} ${per.label} contains ${new Date(t).toISOString()}`).toBe(true);
          expect(Number.isInteger(per.start) && Number.isInteger(per.end)).toBe(true);

          // Label agrees with Intl's local date of t.
          if (kind === 'day') expect(per.label).toBe(localDate);
          if (kind === 'month') expect(per.label).toBe(localDate.slice(0, 7));
          if (kind === 'week') {
            const monday = per.label.slice(1);
            expect(monday <= localDate && localDate < nextLabel('week', per.label).slice(1)).toBe(true);
            expect(new Date(`${monday}T00:00:00Z`).getUTCDay()).toBe(1);
          }

          // Boundaries are local midnights (neither zone skips midnight).
          expect(wall(tz, per.start).slice(11)).toBe('00:00:00');
          expect(wall(tz, per.end).slice(11)).toBe('00:00:00');

          expect(periodAt(kind, per.start, tz).label).toBe(per.label);
          expect(periodAt(kind, per.end - 1, tz).label).toBe(per.label);
          expect(periodAt(kind, per.end, tz).label).toBe(nextLabel(kind, per.label));
          expect(periodAt(kind, per.start - 1, tz).end).toBe(per.start);
          expect(previousPeriod(per, tz).end).toBe(per.start);

          const hours = (per.end - per.start) / H;
          if (kind === 'day') expect([23, 24, 25]).toContain(hours);
          if (kind === 'week') expect([167, 168, 169]).toContain(hours);
        }
        const ends = PERIOD_KINDS.map((k) => periodAt(k, t, tz).end);
        expect(nextBoundary(t, tz)).toBe(Math.min(...ends));
      }
    });
  }
});

/**
 * The demo's four weeks of settled history (scripts/demo-load.ts writes it
 * through src/usage/seed-history.ts before the live load): every day before
 * today, the demo's projects and users ran jobs, fewer at weekends and a
 * little more each week, so each card's 30-day line shows a trend at once.
 *
 * Amounts stay well inside the demo's limits in every period (no warning
 * fires in the past, nothing would have been held), and days stop before
 * today: today's daily quotas start empty, while this week's and this
 * month's history counts against their limits, as it would have.
 * Hours are quarters, so every amount is an exact integer of GPU-ms.
 */
import { periodAt, previousPeriod } from '../src/periods.ts';
import { hoursToGpuMs } from '../src/units.ts';
import type { HistoryJob } from '../src/usage/seed-history.ts';
import type { JobMeta } from '../src/accounting/types.ts';

export const HISTORY_DAYS = 28;

/** GPU-h on a weekday at the start of the four weeks; a weekend day runs a quarter of it. */
const WORK: { meta: JobMeta; hours: number; days?: number[] }[] = [
  { meta: { project: 'render-farm', user: 'dana', jobType: 'render', gpuType: 'l40s', gpus: 1 }, hours: 2.5 },
  { meta: { project: 'render-farm', user: 'ci-bot', jobType: 'regression-test', gpus: 1 }, hours: 1 },
  { meta: { project: 'ml-training', user: 'alice', jobType: 'train', gpuType: 'a100', gpus: 1 }, hours: 3 },
  { meta: { project: 'ml-training', user: 'bob', jobType: 'train', gpuType: 'a100', gpus: 1 }, hours: 1.5 },
  { meta: { project: 'ml-training', user: 'chen', jobType: 'train', gpuType: 'a100', gpus: 1 }, hours: 2 },
  // The one-off research budget: half an hour on Tuesdays and Thursdays.
  { meta: { project: 'research', user: 'chen', jobType: 'analysis', gpus: 1 }, hours: 0.5, days: [2, 4] },
];

const quarter = (h: number) => Math.round(h * 4) / 4;

/** The history jobs for the HISTORY_DAYS local days before the day of `now`, oldest first. */
export function demoHistory(now: number, timeZone: string): HistoryJob[] {
  const days = [];
  let day = previousPeriod(periodAt('day', now, timeZone), timeZone);
  for (let i = 0; i < HISTORY_DAYS; i++, day = previousPeriod(day, timeZone)) days.unshift(day);
  return days.flatMap((d, age) => {
    const weekday = new Date(`${d.label}T12:00:00Z`).getUTCDay();
    const weekend = weekday === 0 || weekday === 6;
    // +60 % over the four weeks.
    const growth = 1 + (0.6 * age) / HISTORY_DAYS;
    return WORK.flatMap((w, i) => {
      if (w.days && !w.days.includes(weekday)) return [];
      const hours = quarter(w.hours * growth * (weekend ? 0.25 : 1));
      if (hours === 0) return [];
      const actualGpuMs = hoursToGpuMs(hours);
      // Admitted from 09:00 local, half an hour apart; each ends two hours later.
      const admittedAt = d.start + 9 * 3_600_000 + i * 1_800_000;
      return [{ jobId: `history-${d.label}-${i + 1}`, meta: w.meta, estimatedGpuMs: actualGpuMs + hoursToGpuMs(0.25), actualGpuMs, admittedAt, endedAt: admittedAt + 2 * 3_600_000 }];
    });
  });
}

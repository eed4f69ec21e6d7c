/**
 * A card's 30-day line, as inline SVG (no chart library, no script): what
 * the scope had used of its limit at the end of each local day, the way an
 * admin compares it with the limit.
 *
 * - A weekly or monthly limit: settled GPU hours in that day's period so far
 *   (the running sum restarts at each reset; a period begun before the 30
 *   days starts from what it had settled by then). One line per period, so a
 *   reset is a break in the line, not a slope down.
 * - A daily quota: each day's settled hours (the period is the day), one line.
 * - A one-off budget: settled hours in all, to each day.
 * Exempt hours (not counted) are a second, dashed green line by the same
 * rule. The limit in force now is a dashed red line across; the y axis has
 * three or four round ticks (0 and two or three above) in GPU hours, the x axis the first, middle and
 * last day. Days are local days (GATEKEEPER_TIMEZONE) and a job counts on
 * the day it ended, as in the usage reports. Amounts stay integer GPU-ms
 * until they are drawn.
 */
import type { ScopePeriod } from '../src/accounting/types.ts';
import { formatHours, GPU_MS_PER_HOUR } from '../src/units.ts';
import { esc } from './html.ts';

export interface DayUsage {
  day: string;
  actualGpuMs: number;
  exemptGpuMs: number;
}

export interface TrendPoint {
  /** Local date 'YYYY-MM-DD'. */
  day: string;
  /** Settled GPU-ms in this day's period up to the end of this day (a daily quota: this day's). */
  countedGpuMs: number;
  exemptGpuMs: number;
  /** Points of one period share a number; a new number is a reset. */
  segment: number;
}

export interface TrendLine {
  period: ScopePeriod;
  points: TrendPoint[];
}

const DAY_MS = 86_400_000;

/** The period a local date belongs to, as a key: the month, the Monday of the week, the day, or one for all. */
function periodKey(period: ScopePeriod, day: string): string {
  if (period === 'month') return day.slice(0, 7);
  if (period === 'day') return day;
  if (period === 'none') return 'all';
  const t = Date.parse(`${day}T00:00:00Z`);
  return new Date(t - ((new Date(t).getUTCDay() + 6) % 7) * DAY_MS).toISOString().slice(0, 10);
}

/**
 * The line's points from `days` (the days shown, oldest first) and `lead`
 * (the days just before them, oldest first, enough to reach back to the
 * start of the first shown day's period). A one-off budget has no start
 * within reach: `before` is what it had settled before the first shown day.
 */
export function trendLine(period: ScopePeriod, days: DayUsage[], lead: DayUsage[], before: { actualGpuMs: number; exemptGpuMs: number }): TrendLine {
  const first = days[0] ? periodKey(period, days[0].day) : '';
  const carried = lead.filter((d) => periodKey(period, d.day) === first);
  let counted = period === 'none' ? before.actualGpuMs : carried.reduce((s, d) => s + d.actualGpuMs, 0);
  let exempt = period === 'none' ? before.exemptGpuMs : carried.reduce((s, d) => s + d.exemptGpuMs, 0);
  let key = first;
  let segment = 0;
  const points = days.map((d) => {
    const k = periodKey(period, d.day);
    if (k !== key) {
      [key, counted, exempt] = [k, 0, 0];
      // A daily quota's line is one line of days.
      if (period !== 'day') segment++;
    }
    if (period === 'day') [counted, exempt] = [0, 0];
    counted += d.actualGpuMs;
    exempt += d.exemptGpuMs;
    return { day: d.day, countedGpuMs: counted, exemptGpuMs: exempt, segment };
  });
  return { period, points };
}

/**
 * Ticks from 0 up to the first that reaches `maxGpuMs`: steps of 1, 2 or 5
 * times a power of ten GPU hours (from 0.001), the smallest step that needs
 * at most three, so there are two or three above 0 (one when the amount is
 * below the smallest step): three or four labels. In GPU-ms, exact.
 */
export function niceTicks(maxGpuMs: number): number[] {
  const max = Math.max(maxGpuMs, 1);
  let step = GPU_MS_PER_HOUR / 1000;
  for (let i = 0; Math.ceil(max / step) > 3; i++) step = [2, 5, 10][i % 3]! * (GPU_MS_PER_HOUR / 1000) * 10 ** Math.floor(i / 3);
  return Array.from({ length: Math.ceil(max / step) + 1 }, (_, i) => i * step);
}

/** "10", "2.5", "0.001": GPU hours as written on the axis. */
const hrs = (ms: number) => formatHours(ms).replace(/\.0$/, '');
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** '2026-12-01' -> '1 Dec'. */
const dayText = (day: string) => `${Number(day.slice(8, 10))} ${MONTHS[Number(day.slice(5, 7)) - 1]}`;

// The drawing: 300 x 120, the plot from (34, 14) to (292, 100).
const W = 300;
const HGT = 120;
const X0 = 34;
const X1 = 292;
const Y0 = 14;
const Y1 = 100;

const WHAT: Record<ScopePeriod, string> = {
  day: 'GPU hours per day',
  week: 'GPU hours used in the week, to each day',
  month: 'GPU hours used in the month, to each day',
  none: 'GPU hours used in all, to each day',
};
const UNIT: Record<ScopePeriod, string> = { day: 'GPU-h per day', week: 'GPU-h this week', month: 'GPU-h this month', none: 'GPU-h in all' };

/** The chart of `line` against `limitGpuMs` (null: no limit), with its summary in words. */
export function trendChart(line: TrendLine, limitGpuMs: number | null): string {
  const pts = line.points;
  const n = pts.length;
  if (n === 0) return '';
  const ticks = niceTicks(Math.max(limitGpuMs ?? 0, ...pts.map((p) => Math.max(p.countedGpuMs, p.exemptGpuMs))));
  const top = ticks[ticks.length - 1]!;
  const x = (i: number) => (n === 1 ? X0 : X0 + (i * (X1 - X0)) / (n - 1)).toFixed(1);
  const y = (ms: number) => (Y1 - (Math.max(0, ms) / top) * (Y1 - Y0)).toFixed(1);

  const yAxis = ticks
    .map((t) => `<g class="tick" data-gpu-hours="${t / GPU_MS_PER_HOUR}"><line class="grid" x1="${X0}" x2="${X1}" y1="${y(t)}" y2="${y(t)}"/><text x="${X0 - 4}" y="${(Number(y(t)) + 3).toFixed(1)}" text-anchor="end">${hrs(t)}</text></g>`)
    .join('');
  const labelled = [...new Set([0, Math.floor(n / 2), n - 1])];
  const xAxis = labelled
    .map((i) => `<text class="day" data-day="${esc(pts[i]!.day)}" x="${x(i)}" y="${Y1 + 13}" text-anchor="${i === 0 ? 'start' : i === n - 1 ? 'end' : 'middle'}">${esc(dayText(pts[i]!.day))}</text>`)
    .join('');
  const resets = pts.map((p, i) => (i > 0 && p.segment !== pts[i - 1]!.segment ? `<line class="reset" x1="${x(i)}" x2="${x(i)}" y1="${Y0}" y2="${Y1}"/>` : '')).join('');

  const lines = (cls: string, value: (p: TrendPoint) => number) => {
    const segs = new Map<number, string[]>();
    pts.forEach((p, i) => segs.set(p.segment, [...(segs.get(p.segment) ?? []), `${x(i)},${y(value(p))}`]));
    return [...segs.values()]
      .map((s) => (s.length === 1 ? `<circle class="${cls}" cx="${s[0]!.split(',')[0]}" cy="${s[0]!.split(',')[1]}" r="2"/>` : `<polyline class="${cls}" points="${s.join(' ')}"/>`))
      .join('');
  };
  const anyExempt = pts.some((p) => p.exemptGpuMs > 0);
  const limit =
    limitGpuMs === null
      ? ''
      : `<line class="limit" data-gpu-hours="${limitGpuMs / GPU_MS_PER_HOUR}" x1="${X0}" x2="${X1}" y1="${y(limitGpuMs)}" y2="${y(limitGpuMs)}"/>` +
        `<text class="limit" x="${X1}" y="${(Number(y(limitGpuMs)) - 3).toFixed(1)}" text-anchor="end">limit ${esc(hrs(limitGpuMs))} GPU-h</text>`;

  const peak = pts.reduce((a, p) => (p.countedGpuMs > a.countedGpuMs ? p : a), pts[0]!);
  const summary = [
    `${WHAT[line.period]}, last ${n} days`,
    peak.countedGpuMs > 0 ? `peak ${hrs(peak.countedGpuMs)} on ${dayText(peak.day)}` : 'nothing settled',
    line.period === 'day' ? null : `now ${hrs(pts[n - 1]!.countedGpuMs)}`,
    limitGpuMs === null ? 'no limit' : `limit ${hrs(limitGpuMs)}`,
    anyExempt ? `exempt (not counted) shown dashed, peak ${hrs(Math.max(...pts.map((p) => p.exemptGpuMs)))}` : null,
  ].filter((s) => s !== null).join('; ');

  return `<svg class="trend" viewBox="0 0 ${W} ${HGT}" width="${W}" height="${HGT}" role="img" aria-label="${esc(summary)}"><title>${esc(summary)}</title>
<text class="unit" x="0" y="8">${UNIT[line.period]}</text>${yAxis}${resets}
<line class="axis" x1="${X0}" x2="${X0}" y1="${Y0}" y2="${Y1}"/><line class="axis" x1="${X0}" x2="${X1}" y1="${Y1}" y2="${Y1}"/>${xAxis}
${limit}${anyExempt ? lines('exempt', (p) => p.exemptGpuMs) : ''}${lines('used', (p) => p.countedGpuMs)}</svg>`;
}

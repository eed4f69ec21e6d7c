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
 * three or four round ticks (0 and two or three above) in the limit's unit, the x axis the first, middle and
 * last day. Days are local days (GATEKEEPER_TIMEZONE) and a job counts on
 * the day it ended, as in the usage reports. Amounts stay integers of the
 * unit (GPU-ms, milli-units, micro-dollars; the fields keep the GPU-ms
 * names) until they are drawn. A limit in units or dollars has no exempt
 * line: exempt jobs cost it nothing.
 */
import type { ScopePeriod } from '../src/accounting/types.ts';
import { formatAmount, unitSuffix } from '../src/units.ts';
import { UNIT_SCALE, type LimitUnit } from '../src/accounting/pricing.ts';
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
 * Ticks from 0 up to the first that reaches `max`: steps of 1, 2 or 5
 * times a power of ten of the unit (from 0.001), the smallest step that needs
 * at most three, so there are two or three above 0 (one when the amount is
 * below the smallest step): three or four labels. In the unit's integers
 * (`scale` per whole unit; GPU-ms by default), exact.
 */
export function niceTicks(maxAmount: number, scale = UNIT_SCALE.gpuHours): number[] {
  const max = Math.max(maxAmount, 1);
  let step = scale / 1000;
  for (let i = 0; Math.ceil(max / step) > 3; i++) step = [2, 5, 10][i % 3]! * (scale / 1000) * 10 ** Math.floor(i / 3);
  return Array.from({ length: Math.ceil(max / step) + 1 }, (_, i) => i * step);
}

/** "10", "2.5", "0.001" (GPU hours or units), "$12.50": an amount as written on the axis. */
const amountText = (n: number, unit: LimitUnit) => (unit === 'usd' ? formatAmount(n, unit) : formatAmount(n, unit).replace(/\.0$/, ''));
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
  day: '%s per day',
  week: '%s used in the week, to each day',
  month: '%s used in the month, to each day',
  none: '%s used in all, to each day',
};
const UNIT: Record<ScopePeriod, string> = { day: '%s per day', week: '%s this week', month: '%s this month', none: '%s in all' };
/** The unit in the summary (WHAT) and above the axis (UNIT). */
const NOUN: Record<LimitUnit, [long: string, short: string]> = { gpuHours: ['GPU hours', 'GPU-h'], units: ['units', 'units'], usd: ['dollars', 'USD'] };

/** The chart of `line` against `limitGpuMs` (null: no limit) in the limit's `unit`, with its summary in words. */
export function trendChart(line: TrendLine, limitGpuMs: number | null, unit: LimitUnit = 'gpuHours'): string {
  const pts = line.points;
  const n = pts.length;
  if (n === 0) return '';
  const hrs = (x: number) => amountText(x, unit);
  const data = unit === 'gpuHours' ? 'data-gpu-hours' : 'data-amount';
  const ticks = niceTicks(Math.max(limitGpuMs ?? 0, ...pts.map((p) => Math.max(p.countedGpuMs, p.exemptGpuMs))), UNIT_SCALE[unit]);
  const top = ticks[ticks.length - 1]!;
  const x = (i: number) => (n === 1 ? X0 : X0 + (i * (X1 - X0)) / (n - 1)).toFixed(1);
  const y = (ms: number) => (Y1 - (Math.max(0, ms) / top) * (Y1 - Y0)).toFixed(1);

  const yAxis = ticks
    .map((t) => `<g class="tick" ${data}="${t / UNIT_SCALE[unit]}"><line class="grid" x1="${X0}" x2="${X1}" y1="${y(t)}" y2="${y(t)}"/><text x="${X0 - 4}" y="${(Number(y(t)) + 3).toFixed(1)}" text-anchor="end">${hrs(t)}</text></g>`)
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
      : `<line class="limit" ${data}="${limitGpuMs / UNIT_SCALE[unit]}" x1="${X0}" x2="${X1}" y1="${y(limitGpuMs)}" y2="${y(limitGpuMs)}"/>` +
        `<text class="limit" x="${X1}" y="${(Number(y(limitGpuMs)) - 3).toFixed(1)}" text-anchor="end">limit ${esc(hrs(limitGpuMs))}${unitSuffix(unit)}</text>`;

  const peak = pts.reduce((a, p) => (p.countedGpuMs > a.countedGpuMs ? p : a), pts[0]!);
  const summary = [
    `${WHAT[line.period].replace('%s', NOUN[unit][0])}, last ${n} days`,
    peak.countedGpuMs > 0 ? `peak ${hrs(peak.countedGpuMs)} on ${dayText(peak.day)}` : 'nothing settled',
    line.period === 'day' ? null : `now ${hrs(pts[n - 1]!.countedGpuMs)}`,
    limitGpuMs === null ? 'no limit' : `limit ${hrs(limitGpuMs)}`,
    anyExempt ? `exempt (not counted) shown dashed, peak ${hrs(Math.max(...pts.map((p) => p.exemptGpuMs)))}` : null,
  ].filter((s) => s !== null).join('; ');

  return `<svg class="trend" viewBox="0 0 ${W} ${HGT}" width="${W}" height="${HGT}" role="img" aria-label="${esc(summary)}"><title>${esc(summary)}</title>
<text class="unit" x="0" y="8">${UNIT[line.period].replace('%s', NOUN[unit][1])}</text>${yAxis}${resets}
<line class="axis" x1="${X0}" x2="${X0}" y1="${Y0}" y2="${Y1}"/><line class="axis" x1="${X0}" x2="${X1}" y1="${Y1}" y2="${Y1}"/>${xAxis}
${limit}${anyExempt ? lines('exempt', (p) => p.exemptGpuMs) : ''}${lines('used', (p) => p.countedGpuMs)}</svg>`;
}

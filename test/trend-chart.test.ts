/**
 * The dashboard's 30-day lines (real Redis and Postgres; history written
 * back-dated through the reserve and settle scripts, drained by the ledger
 * writer, the page rendered from dashboardData): the axes, the limit at its
 * height, the points where the settled days put them, the running sum of a
 * monthly budget restarting on the 1st. And the demo's four weeks of history
 * leave the drift audit clean, the usage report equal to what was seeded, and
 * this month's history counted in this month's counters. Every expected
 * height is worked out by hand beside its assertion, against the drawn axis.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { LedgerWriter } from '../src/ledger/writer.ts';
import { SYSTEM } from '../src/accounting/budgets.ts';
import { DriftAudit } from '../src/accounting/drift.ts';
import { usageReport } from '../src/usage/reports.ts';
import { seedHistory, type HistoryJob } from '../src/usage/seed-history.ts';
import { dashboardData } from '../dashboard/data.ts';
import { renderDashboard } from '../dashboard/page.ts';
import { demoHistory } from '../scripts/demo-history.ts';
import { compactRates } from '../src/accounting/pricing.ts';

const H = 3_600_000; // GPU-ms per GPU hour
const at = (iso: string) => Date.parse(`${iso}Z`);
/** A job (ana's on alpha unless told) that ran 09:00–11:00 UTC on `day` and settled `hours`. */
const ran = (day: string, hours: number, jobType = 'render', who = { project: 'alpha', user: 'ana' }): HistoryJob => ({
  jobId: `h-${day}-${jobType}-${who.user}`,
  meta: { ...who, jobType, gpus: 1 },
  estimatedGpuMs: hours * H,
  actualGpuMs: hours * H,
  admittedAt: at(`${day}T09:00:00`),
  endedAt: at(`${day}T11:00:00`),
});

async function drain(t: TestEnv): Promise<void> {
  const writer = new LedgerWriter(t.connection(), t.accounting.keys.ledger, t.pool, t.log, { timeZone: t.config.timeZone });
  while ((await writer.drainOnce()) > 0);
}

/** The SVG of `scope`'s card, and what it draws. */
function chart(html: string, scope: string) {
  const start = html.indexOf(`<article class="scope" data-scope="${scope}">`);
  expect(start, `no card for ${scope}`).toBeGreaterThanOrEqual(0);
  const art = html.slice(start, html.indexOf('</article>', start));
  const svg = /<svg class="trend"[\s\S]*?<\/svg>/.exec(art)?.[0] ?? '';
  const tickY = new Map([...svg.matchAll(/<g class="tick" data-gpu-hours="([^"]+)"><line class="grid" [^>]*y1="([-\d.]+)"/g)].map((m) => [Number(m[1]), Number(m[2])]));
  const tickText = [...svg.matchAll(/<text x="[\d.]+" y="[\d.]+" text-anchor="end">([^<]*)<\/text><\/g>/g)].map((m) => m[1]);
  const days = [...svg.matchAll(/<text class="day" data-day="([^"]+)"[^>]*>([^<]*)</g)].map((m) => [m[1], m[2]]);
  const lines = (cls: string) => [...svg.matchAll(new RegExp(`<polyline class="${cls}" points="([^"]+)"`, 'g'))].map((m) => m[1]!.split(' ').map((p) => p.split(',').map(Number) as [number, number]));
  const limit = /<line class="limit" data-gpu-hours="([^"]+)" [^>]*y1="([-\d.]+)"/.exec(svg);
  return {
    svg,
    label: /aria-label="([^"]*)"/.exec(svg)?.[1],
    tickY,
    tickText,
    days,
    used: lines('used'),
    exempt: lines('exempt'),
    limit: limit ? { hours: Number(limit[1]), y: Number(limit[2]) } : null,
    limitText: /<text class="limit"[^>]*>([^<]*)</.exec(svg)?.[1],
  };
}

describe('30-day lines', () => {
  let t: TestEnv;
  let html: string;
  beforeAll(async () => {
    t = await createTestEnv(); // clock: 2026-11-25 12:00 UTC; days are UTC days
    await t.budgets.set('alpha', 8 * H, SYSTEM, null, { period: 'month' });
    await t.budgets.setQuota('ana', { daily: { limitGpuMs: 12 * H } }, SYSTEM, null);
    await t.budgets.setExempt('regression-test', true, SYSTEM, null);
    // The 30 days shown are 27 Oct .. 25 Nov. 10 Oct is before them, in the same month as the first.
    await t.budgets.set('beta', 6 * H, SYSTEM, null); // one-off
    await t.budgets.setQuota('bo', { weekly: { limitGpuMs: 5 * H } }, SYSTEM, null);
    const bo = { project: 'beta', user: 'bo' };
    await seedHistory(t.accounting, [
      ran('2026-10-10', 1), ran('2026-10-30', 3), ran('2026-11-20', 2), ran('2026-11-22', 1, 'regression-test'),
      // bo on beta: 1 Oct is before the 61 days read; Monday 26 Oct is in the week of the first day shown.
      ran('2026-10-01', 1, 'render', bo), ran('2026-10-26', 1, 'render', bo), ran('2026-11-10', 2, 'render', bo),
    ], t.clock.now());
    await drain(t);
    const held = new HeldJobs(t.config, t.redis, t.pool, t.clock, t.log);
    html = renderDashboard(await dashboardData({ pool: t.pool, budgets: t.budgets, held, timeZone: 'UTC', now: t.clock.now() }), { role: 'viewer', board: null });
    await held.close();
  });
  afterAll(async () => {
    await t?.close();
  });

  it("draws a daily quota's days against its limit, on a labelled axis", () => {
    const c = chart(html, 'user-day:ana');
    // Largest value: the limit, 12 h. Steps of 1 h need 12 ticks, of 2 h 6 (more than 3), of 5 h 3: 0, 5, 10, 15.
    expect(c.tickText).toEqual(['0', '5', '10', '15']);
    expect([...c.tickY.keys()]).toEqual([0, 5, 10, 15]);
    const y0 = c.tickY.get(0)!;
    const y15 = c.tickY.get(15)!;
    expect(y15).toBeLessThan(y0); // up is more
    // First, middle (27 Oct + 15 days) and last day.
    expect(c.days).toEqual([['2026-10-27', '27 Oct'], ['2026-11-11', '11 Nov'], ['2026-11-25', '25 Nov']]);
    // The limit, 12 of 15: four fifths of the way up.
    expect(c.limit!.hours).toBe(12);
    expect(c.limit!.y).toBeCloseTo(y0 + (y15 - y0) * (12 / 15), 0);
    expect(c.limitText).toBe('limit 12 GPU-h');

    // One line of 30 days, evenly spaced.
    expect(c.used).toHaveLength(1);
    const pts = c.used[0]!;
    expect(pts).toHaveLength(30);
    const dx = (pts[29]![0] - pts[0]![0]) / 29;
    pts.forEach(([x], i) => expect(x).toBeCloseTo(pts[0]![0] + i * dx, 0));
    // 30 Oct (index 3) settled 3 h, 20 Nov (index 5 + 19 = 24) 2 h; 22 Nov's hour was exempt; all else 0.
    const expected = pts.map((_, i) => (i === 3 ? 3 : i === 24 ? 2 : 0));
    pts.forEach(([, y], i) => expect(y, `day ${i}`).toBeCloseTo(y0 + (y15 - y0) * (expected[i]! / 15), 0));
    // The exempt hour is its own line: 1 h on 22 Nov (index 26).
    expect(c.exempt[0]![26]![1]).toBeCloseTo(y0 + (y15 - y0) * (1 / 15), 0);
    expect(c.exempt[0]![25]![1]).toBeCloseTo(y0, 0);
    expect(c.label).toBe('GPU hours per day, last 30 days; peak 3 on 30 Oct; limit 12; exempt (not counted) shown dashed, peak 1');
    expect(c.svg).toContain('<title>GPU hours per day, last 30 days;');
  });

  it("draws a monthly budget's running sum, restarting on the 1st", () => {
    const c = chart(html, 'project:alpha');
    // Largest value: the limit, 8 h. Steps of 1 h need 8 ticks, of 2 h 4 (more than 3), of 5 h 2: 0, 5, 10.
    expect(c.tickText).toEqual(['0', '5', '10']);
    const y0 = c.tickY.get(0)!;
    const y10 = c.tickY.get(10)!;
    const height = (h: number) => y0 + (y10 - y0) * (h / 10);
    // The limit, 8 of 10.
    expect(c.limit!.y).toBeCloseTo(height(8), 0);
    expect(c.limitText).toBe('limit 8 GPU-h');
    // Two lines: October's 5 days, November's 25.
    expect(c.used.map((l) => l.length)).toEqual([5, 25]);
    // October: 1 h from 10 Oct, then 3 more on 30 Oct.
    expect(c.used[0]!.map(([, y]) => y)).toEqual([1, 1, 1, 4, 4].map((h) => expect.closeTo(height(h), 0)));
    // November: nothing until 20 Nov's 2 h; 22 Nov's hour was exempt and is not counted.
    expect(c.used[1]!.map(([, y]) => y)).toEqual([...Array(19).fill(0), 2, 2, 2, 2, 2, 2].map((h) => expect.closeTo(height(h), 0)));
    expect(c.exempt[1]!.map(([, y]) => y)).toEqual([...Array(21).fill(0), 1, 1, 1, 1].map((h) => expect.closeTo(height(h), 0)));
    expect(c.svg).toContain('<line class="reset"');
    expect(c.label).toBe('GPU hours used in the month, to each day, last 30 days; peak 4 on 30 Oct; now 2; limit 8; exempt (not counted) shown dashed, peak 1');
  });
  it("draws a weekly quota's running sum by week, and a one-off budget's total from before the 30 days", () => {
    const w = chart(html, 'user-week:bo');
    // Largest value: the limit, 5 h. Steps of 1 h need 5 ticks (more than 3), of 2 h 3: 0, 2, 4, 6.
    expect(w.tickText).toEqual(['0', '2', '4', '6']);
    const wy = (h: number) => w.tickY.get(0)! + (w.tickY.get(6)! - w.tickY.get(0)!) * (h / 6);
    expect(w.limit!.y).toBeCloseTo(wy(5), 0);
    // Weeks from Monday: 27 Oct–1 Nov (6 days shown), 2–8, 9–15, 16–22 Nov, 23–25 Nov (3).
    expect(w.used.map((l) => l.length)).toEqual([6, 7, 7, 7, 3]);
    // The first week starts from Monday 26 Oct's hour, read before the 30 days.
    expect(w.used[0]!.map(([, y]) => y)).toEqual(Array(6).fill(expect.closeTo(wy(1), 0)));
    // 9 Nov nothing, 10 Nov 2 h, then 2 for the rest of that week; the next starts at 0.
    expect(w.used[2]!.map(([, y]) => y)).toEqual([0, 2, 2, 2, 2, 2, 2].map((h) => expect.closeTo(wy(h), 0)));
    expect(w.used[3]!.map(([, y]) => y)).toEqual(Array(7).fill(expect.closeTo(wy(0), 0)));

    const o = chart(html, 'project:beta');
    // Largest value: the limit, 6 h. Ticks 0, 2, 4, 6.
    expect(o.tickText).toEqual(['0', '2', '4', '6']);
    const oy = (h: number) => o.tickY.get(0)! + (o.tickY.get(6)! - o.tickY.get(0)!) * (h / 6);
    // One line: 2 h settled before 27 Oct (1 and 26 Oct), 4 from 10 Nov (index 14).
    expect(o.used).toHaveLength(1);
    expect(o.used[0]!.map(([, y]) => y)).toEqual([...Array(14).fill(2), ...Array(16).fill(4)].map((h) => expect.closeTo(oy(h), 0)));
    expect(o.label).toBe('GPU hours used in all, to each day, last 30 days; peak 4 on 10 Nov; now 4; limit 6');
  });
});

describe('a budget in dollars', () => {
  it('draws its running total in dollars and projects when it runs out at its dollar burn', async () => {
    const t = await createTestEnv(); // clock: 2026-11-25 12:00 UTC
    try {
      // h100 at $4.10 and 3 units per GPU-hour, in force since long before the history (the scripts read this field).
      await t.accounting.definitions.setRates('h100', compactRates([{ effectiveFrom: 0, unitsMilli: 3000, usdMicro: 4_100_000 }]));
      await t.budgets.set('gamma', 20_000_000, SYSTEM, null, { unit: 'usd' }); // one-off, $20
      const h100 = (day: string, hours: number): HistoryJob => ({ ...ran(day, hours, 'render', { project: 'gamma', user: 'gil' }), meta: { project: 'gamma', user: 'gil', jobType: 'render', gpuType: 'h100', gpus: 1 } });
      await seedHistory(t.accounting, [h100('2026-11-10', 2), h100('2026-11-24', 1)], t.clock.now());
      await drain(t);
      const held = new HeldJobs(t.config, t.redis, t.pool, t.clock, t.log);
      const page = renderDashboard(await dashboardData({ pool: t.pool, budgets: t.budgets, held, timeZone: 'UTC', now: t.clock.now() }), { role: 'viewer', board: null });
      await held.close();
      const c = chart(page, 'project:gamma');
      // Largest value: the limit, $20. Steps of $1 need 20 ticks, $2 10, $5 4 (more than 3), $10 2: $0, $10, $20.
      const ticks = new Map([...c.svg.matchAll(/<g class="tick" data-amount="([^"]+)"><line class="grid" [^>]*y1="([-\d.]+)"/g)].map((m) => [Number(m[1]), Number(m[2])]));
      expect(c.tickText).toEqual(['$0.00', '$10.00', '$20.00']);
      const y = (usd: number) => ticks.get(0)! + (ticks.get(20)! - ticks.get(0)!) * (usd / 20);
      expect(c.limitText).toBe('limit $20.00');
      // 2 h on 10 Nov (index 14) = $8.20; 1 h on 24 Nov (index 28) = $4.10 more.
      expect(c.used[0]!.map(([, v]) => v)).toEqual([...Array(14).fill(0), ...Array(14).fill(8.2), 12.3, 12.3].map((d) => expect.closeTo(y(d), 0)));
      expect(c.exempt).toEqual([]);
      expect(c.label).toBe('dollars used in all, to each day, last 30 days; peak $12.30 on 24 Nov; now $12.30; limit $20.00');
      // Burn: only yesterday's $4.10 in the last 7 days, weight 7 of 28: $1.025 a day. $7.70 left / $1.025 = 7.51 days after 25 Nov 12:00: 3 Dec, 00:17.
      const card = page.slice(page.indexOf('<article class="scope" data-scope="project:gamma">'));
      expect(/<p class="projection">([^<]*)</.exec(card)?.[1]).toBe("At the current rate, project gamma&#39;s budget runs out in 8 days (Thu 3 Dec)");
    } finally {
      await t.close();
    }
  });
});

describe("the demo's history", () => {
  it('leaves the drift audit clean, the usage report equal to what was seeded, and this month counted', async () => {
    const t = await createTestEnv();
    try {
      // The demo's limits (scripts/demo-load.ts).
      await t.budgets.set('render-farm', 400 * H, SYSTEM, null, { period: 'month', rollover: true, rolloverCapGpuMs: 100 * H });
      await t.budgets.set('research', 60 * H, SYSTEM, null);
      await t.budgets.set('ml-training', 150 * H, SYSTEM, null, { period: 'week', policy: 'soft', gracePercent: 10 });
      await t.budgets.setQuota('alice', { daily: { limitGpuMs: 40 * H } }, SYSTEM, null);
      await t.budgets.setQuota('bob', { daily: { limitGpuMs: 12 * H }, weekly: { limitGpuMs: 50 * H } }, SYSTEM, null);
      await t.budgets.setQuota('chen', { daily: { limitGpuMs: 30 * H } }, SYSTEM, null);
      await t.budgets.setExempt('regression-test', true, SYSTEM, null);
      const now = t.clock.now(); // 2026-11-25 12:00 UTC
      const jobs = demoHistory(now, 'UTC');
      // 28 days before today: 28 Oct .. 24 Nov.
      expect(new Date(Math.min(...jobs.map((j) => j.endedAt))).toISOString().slice(0, 10)).toBe('2026-10-28');
      expect(new Date(Math.max(...jobs.map((j) => j.endedAt))).toISOString().slice(0, 10)).toBe('2026-11-24');
      expect(await seedHistory(t.accounting, jobs, now)).toBe(jobs.length);
      await drain(t);

      const report = await new DriftAudit(t.redis, t.accounting, t.pool).run();
      expect(report.drift).toEqual([]);
      expect(report.counters).toBeGreaterThan(0);

      // The seeded jobs' own amounts, summed per project (regression tests are exempt).
      const want = new Map<string, { jobs: number; actualGpuMs: number; exemptGpuMs: number }>();
      for (const j of jobs) {
        const w = want.get(j.meta.project) ?? { jobs: 0, actualGpuMs: 0, exemptGpuMs: 0 };
        w.jobs++;
        if (j.meta.jobType === 'regression-test') w.exemptGpuMs += j.actualGpuMs;
        else w.actualGpuMs += j.actualGpuMs;
        want.set(j.meta.project, w);
      }
      const rows = await usageReport(t.pool, { from: '2026-10-28', to: '2026-11-25', groupBy: ['project'] });
      expect(Object.fromEntries(rows.map((r) => [r.project, { jobs: r.jobs, actualGpuMs: r.actualGpuMs, exemptGpuMs: r.exemptGpuMs }]))).toEqual(Object.fromEntries(want));

      // This month's history (1–24 Nov) is in this month's counters, as it would have been.
      const novRender = jobs.filter((j) => j.meta.project === 'render-farm' && j.meta.jobType !== 'regression-test' && j.endedAt >= at('2026-11-01T00:00:00'));
      const rf = (await t.budgets.get('render-farm'))!;
      expect(rf.usedGpuMs).toBe(novRender.reduce((s, j) => s + j.actualGpuMs, 0));
      expect(rf.usedGpuMs).toBeGreaterThan(0);
      expect(rf.reservedGpuMs).toBe(0);
      // Today's daily quotas start empty: the history stops yesterday.
      expect((await t.budgets.view('user-day:alice')).usedGpuMs).toBe(0);
    } finally {
      await t.close();
    }
  });
});

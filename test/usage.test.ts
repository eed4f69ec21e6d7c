/**
 * Usage reports and the monthly export against the real ledger (jobs reserved
 * and settled through the scripts, written by the ledger writer): totals by
 * any grouping equal sums over the ledger, the export has exactly one row per
 * job that ended that month — exempt and override rows included — in CSV and
 * JSON, and bad queries get a 400.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import { listen, urlOf } from './support/http.ts';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { createApp } from '../src/api/app.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { LedgerWriter } from '../src/ledger/writer.ts';
import { SYSTEM } from '../src/accounting/budgets.ts';
import { hoursToGpuMs } from '../src/units.ts';
import type { JobMeta } from '../src/accounting/types.ts';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { EXIT, runCli } from '../src/cli/main.ts';
import { rebuildRollups } from '../src/db/usage.ts';
import { cover } from '../src/db/usage-pairs.ts';
import { inTransaction } from '../src/db/transaction.ts';

const H = hoursToGpuMs(1);
const viewer = 'test-viewer-token-0123456789';
let t: TestEnv;
let server: Server;
let base: string;

async function get(path: string): Promise<{ status: number; type: string; text: string }> {
  const res = await fetch(base + path, { headers: { authorization: `Bearer ${viewer}` } });
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

beforeAll(async () => {
  t = await createTestEnv();
  const held = new HeldJobs(t.config, t.redis, t.pool, t.clock, t.log);
  const app = createApp({ config: t.config, accounting: t.accounting, budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin: 'test-admin-token-0123456789', viewer } });
  server = await listen(app);
  base = `${urlOf(server)}/api/v1`;

  // A month of jobs through the real scripts: three projects, two users, an exempt type,
  // an override, a released job, one that ends in December, and a run.
  await t.budgets.setExempt('regression-test', true, SYSTEM, null);
  for (const p of ['alpha', 'beta']) await t.budgets.set(p, 1000 * H);
  await t.budgets.set('tiny', 0);
  const jobs: { id: string; meta: JobMeta; hours: number; actual: number; at: string; end: string; kind?: 'release' }[] = [
    { id: 'a1', meta: { project: 'alpha', user: 'ann', gpus: 1, jobType: 'render', gpuType: 'a100', run: 'ep1' }, hours: 2, actual: 1.5, at: '2026-11-02T10:00:00Z', end: '2026-11-02T12:00:00Z' },
    { id: 'a2', meta: { project: 'alpha', user: 'ann', gpus: 1, jobType: 'render', gpuType: 'a100', run: 'ep1' }, hours: 2, actual: 2.25, at: '2026-11-02T11:00:00Z', end: '2026-11-03T01:00:00Z' },
    { id: 'a3', meta: { project: 'alpha', user: 'bob', gpus: 1, jobType: 'regression-test' }, hours: 1, actual: 0.75, at: '2026-11-05T09:00:00Z', end: '2026-11-05T09:45:00Z' },
    { id: 'b1', meta: { project: 'beta', user: 'bob', gpus: 2, jobType: 'train', gpuType: 'h100' }, hours: 10, actual: 0, at: '2026-11-20T00:00:00Z', end: '2026-11-20T00:00:00Z', kind: 'release' },
    { id: 'b2', meta: { project: 'beta', user: 'bob', gpus: 2, jobType: 'train, "big"', gpuType: 'h100' }, hours: 10, actual: 9, at: '2026-11-30T20:00:00Z', end: '2026-12-01T02:00:00Z' },
  ];
  for (const j of jobs) {
    const r = await t.accounting.reserve(j.id, hoursToGpuMs(j.hours), ['project:' + j.meta.project], j.meta, Date.parse(j.at));
    expect(r.kind).toBe('reserved');
    await t.accounting.settle(j.id, (r as { scopes: string[] }).scopes, hoursToGpuMs(j.actual), j.kind ?? 'settle', Date.parse(j.end));
  }
  // An override: held at a zero budget, admitted regardless, then settled.
  await t.accounting.reserve('o1', 3 * H, ['project:tiny'], { project: 'tiny', user: 'cy', gpus: 1 }, Date.parse('2026-11-10T00:00:00Z'));
  await t.accounting.release(['o1'], 'override', 'override by ops', Date.parse('2026-11-10T01:00:00Z'));
  await t.accounting.settle('o1', ['project:tiny'], 3 * H, 'settle', Date.parse('2026-11-10T04:00:00Z'));
  const writer = new LedgerWriter(t.connection(), t.accounting.keys.ledger, t.pool, t.log);
  while ((await writer.drainOnce()) > 0);
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await t?.close();
});

/** What a job of `hours` counted GPU-hours was charged with no rate set: the built-in one unit and no dollars an hour. */
const charged = (hours: number) => ({ chargedGpuHours: hours, units: hours, usd: 0 });

describe('usage report', () => {
  it('totals by project and user equal the ledger, exempt hours apart', async () => {
    const r = await get('/usage?from=2026-11-01&to=2026-11-30&groupBy=project,user');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.text).rows).toEqual([
      { project: 'alpha', user: 'ann', jobs: 2, actualGpuHours: 3.75, estimatedGpuHours: 4, exemptGpuHours: 0, ...charged(3.75) },
      { project: 'alpha', user: 'bob', jobs: 1, actualGpuHours: 0, estimatedGpuHours: 0, exemptGpuHours: 0.75, ...charged(0) },
      { project: 'beta', user: 'bob', jobs: 1, actualGpuHours: 0, estimatedGpuHours: 10, exemptGpuHours: 0, ...charged(0) },
      { project: 'tiny', user: 'cy', jobs: 1, actualGpuHours: 3, estimatedGpuHours: 3, exemptGpuHours: 0, ...charged(3) },
    ]);
    // The same from the ledger itself.
    const sum = await t.pool.query(`SELECT sum(actual_gpu_ms) FILTER (WHERE NOT exempt) AS a FROM ledger WHERE kind <> 'reserve' AND at < '2026-12-01'`);
    expect(JSON.parse(r.text).rows.reduce((n: number, x: { actualGpuHours: number }) => n + x.actualGpuHours, 0)).toBe(Number(sum.rows[0].a) / H);
    // The dashboard's narrow rollup agrees with the wide one, per project and per user.
    for (const [kind, col] of [['project', 'project'], ['user', 'user_name']]) {
      const narrow = await t.pool.query(`SELECT name, sum(actual_gpu_ms)::bigint AS ms FROM usage_by_day WHERE kind = $1 GROUP BY name ORDER BY name`, [kind]);
      const wide = await t.pool.query(`SELECT ${col} AS name, sum(actual_gpu_ms)::bigint AS ms FROM usage_daily GROUP BY ${col} ORDER BY ${col}`);
      expect(narrow.rows).toEqual(wide.rows);
    }
  });

  it('groups by day and job type, and filters by user', async () => {
    const r = JSON.parse((await get('/usage?from=2026-11-01&to=2026-12-31&groupBy=day,jobType&user=bob')).text);
    expect(r.rows.map((x: Record<string, unknown>) => [x.day, x.jobType, x.actualGpuHours, x.exemptGpuHours])).toEqual([
      ['2026-11-05', 'regression-test', 0, 0.75],
      ['2026-11-20', 'train', 0, 0],
      ['2026-12-01', 'train, "big"', 9, 0],
    ]);
  });

  it.each([
    ['?to=2026-11-30', 'from is required (YYYY-MM-DD)'],
    ['?from=2026-11-31&to=2026-12-01', 'from is not a real date'],
    ['?from=2026-12-01&to=2026-11-01', 'from must not be after to'],
    ['?from=2026-01-01&to=2027-06-01', 'at most 366 days per report'],
    ['?from=2026-11-01&to=2026-11-30&groupBy=planet', 'groupBy must be a comma-separated list of project, user, jobType, gpuType, day'],
    ['?from=2026-11-01&to=2026-11-30&color=red', 'unknown query parameter(s): color'],
  ])('answers 400 to %s', async (q, message) => {
    const r = await get(`/usage${q}`);
    expect({ status: r.status, body: JSON.parse(r.text) }).toEqual({ status: 400, body: { error: { status: 400, message } } });
  });
});

describe('report from the monthly rollup', () => {
  const rows = async (path: string) => JSON.parse((await get(path)).text);

  it('adds whole months from usage_monthly and the edge days from usage_daily, exactly', async () => {
    // November is whole; 15-31 October (nothing) and 1 December (b2: 9 h of 10) are edge days.
    const r = await rows('/usage?from=2026-10-15&to=2026-12-01&groupBy=project,user');
    expect(r.rows).toEqual([
      { project: 'alpha', user: 'ann', jobs: 2, actualGpuHours: 3.75, estimatedGpuHours: 4, exemptGpuHours: 0, ...charged(3.75) }, // a1 1.5 + a2 2.25
      { project: 'alpha', user: 'bob', jobs: 1, actualGpuHours: 0, estimatedGpuHours: 0, exemptGpuHours: 0.75, ...charged(0) }, // a3, exempt
      { project: 'beta', user: 'bob', jobs: 2, actualGpuHours: 9, estimatedGpuHours: 20, exemptGpuHours: 0, ...charged(9) }, // b1 released (0 of 10) + b2 9 of 10
      { project: 'tiny', user: 'cy', jobs: 1, actualGpuHours: 3, estimatedGpuHours: 3, exemptGpuHours: 0, ...charged(3) }, // o1
    ]);
    expect(r.nextOffset).toBeNull();
    // Two whole months, by project only.
    expect((await rows('/usage?from=2026-11-01&to=2026-12-31&groupBy=project')).rows).toEqual([
      { project: 'alpha', jobs: 3, actualGpuHours: 3.75, estimatedGpuHours: 4, exemptGpuHours: 0.75, ...charged(3.75) },
      { project: 'beta', jobs: 2, actualGpuHours: 9, estimatedGpuHours: 20, exemptGpuHours: 0, ...charged(9) },
      { project: 'tiny', jobs: 1, actualGpuHours: 3, estimatedGpuHours: 3, exemptGpuHours: 0, ...charged(3) },
    ]);
  });

  it('pages with limit and offset in the grouping\'s order', async () => {
    const one = await rows('/usage?from=2026-10-15&to=2026-12-01&groupBy=project,user&limit=2');
    expect(one.rows.map((x: { project: string; user: string }) => `${x.project}/${x.user}`)).toEqual(['alpha/ann', 'alpha/bob']);
    expect(one.nextOffset).toBe(2);
    const two = await rows('/usage?from=2026-10-15&to=2026-12-01&groupBy=project,user&limit=2&offset=2');
    expect(two.rows.map((x: { project: string; user: string }) => `${x.project}/${x.user}`)).toEqual(['beta/bob', 'tiny/cy']);
    expect(two.nextOffset).toBeNull();
    // December whole (b2), 2-30 November as edge days: a pair's hours from both, summed once.
    const edge = await rows('/usage?from=2026-11-02&to=2026-12-31&groupBy=project,user&limit=1&offset=2');
    expect(edge.rows).toEqual([{ project: 'beta', user: 'bob', jobs: 2, actualGpuHours: 9, estimatedGpuHours: 20, exemptGpuHours: 0, ...charged(9) }]);
    expect(edge.nextOffset).toBe(3);
    expect((await rows('/usage?from=2026-11-02&to=2026-12-31&groupBy=project,user&limit=1')).rows.map((x: { user: string }) => x.user)).toEqual(['ann']);
  });

  it('cuts a range into whole months, whole weeks (cut at the 1st) and at most six days at each end', () => {
    // Tuesday 20 October to Tuesday 8 December 2026.
    expect(cover('2026-10-20', '2026-12-08')).toEqual({
      months: { start: '2026-11-01', end: '2026-12-01' },
      weeks: ['2026-10-26', '2026-12-01'],
      days: ['2026-10-20', '2026-10-21', '2026-10-22', '2026-10-23', '2026-10-24', '2026-10-25', '2026-12-07', '2026-12-08'],
    });
    expect(cover('2026-11-30', '2026-12-06')).toEqual({ months: null, weeks: ['2026-11-30', '2026-12-01'], days: [] });
  });

  it('adds the edge weeks from usage_weekly, exactly', async () => {
    const page = async (from: string, to: string) => (await rows(`/usage?from=${from}&to=${to}&groupBy=project,user&limit=10`)).rows;
    // The week of 1 December (Tuesday to Sunday) holds b2 only; 30 November, a week cut at the 1st, holds nothing.
    expect(await page('2026-12-01', '2026-12-06')).toEqual([{ project: 'beta', user: 'bob', jobs: 1, actualGpuHours: 9, estimatedGpuHours: 10, exemptGpuHours: 0, ...charged(9) }]);
    expect(await page('2026-11-30', '2026-11-30')).toEqual([]);
    // Weeks 2-29 November hold a1, a2, a3, o1 and b1.
    expect(await page('2026-11-02', '2026-11-29')).toEqual([
      { project: 'alpha', user: 'ann', jobs: 2, actualGpuHours: 3.75, estimatedGpuHours: 4, exemptGpuHours: 0, ...charged(3.75) },
      { project: 'alpha', user: 'bob', jobs: 1, actualGpuHours: 0, estimatedGpuHours: 0, exemptGpuHours: 0.75, ...charged(0) },
      { project: 'beta', user: 'bob', jobs: 1, actualGpuHours: 0, estimatedGpuHours: 10, exemptGpuHours: 0, ...charged(0) },
      { project: 'tiny', user: 'cy', jobs: 1, actualGpuHours: 3, estimatedGpuHours: 3, exemptGpuHours: 0, ...charged(3) },
    ]);
    // Days, a week, November whole, a week and days: every job once.
    expect(await page('2026-10-20', '2026-12-08')).toEqual([
      { project: 'alpha', user: 'ann', jobs: 2, actualGpuHours: 3.75, estimatedGpuHours: 4, exemptGpuHours: 0, ...charged(3.75) },
      { project: 'alpha', user: 'bob', jobs: 1, actualGpuHours: 0, estimatedGpuHours: 0, exemptGpuHours: 0.75, ...charged(0) },
      { project: 'beta', user: 'bob', jobs: 2, actualGpuHours: 9, estimatedGpuHours: 20, exemptGpuHours: 0, ...charged(9) },
      { project: 'tiny', user: 'cy', jobs: 1, actualGpuHours: 3, estimatedGpuHours: 3, exemptGpuHours: 0, ...charged(3) },
    ]);
  });

  it('holds what the ledger writer added, and a rebuild from usage_daily gives the same rows', async () => {
    const dump = async () => ({
      monthly: (await t.pool.query(`SELECT to_char(month, 'YYYY-MM-DD') AS month, project, user_name, exempt, jobs::int, estimated_gpu_ms::bigint AS est, actual_gpu_ms::bigint AS act
                                    FROM usage_monthly ORDER BY 1, 2, 3, 4`)).rows,
      period: (await t.pool.query(`SELECT kind, period, to_char(start, 'YYYY-MM-DD') AS start, name, exempt, jobs::int, actual_gpu_ms::bigint AS act
                                   FROM usage_by_period ORDER BY 1, 2, 3, 4, 5`)).rows,
      day: (await t.pool.query(`SELECT kind, name, to_char(day, 'YYYY-MM-DD') AS day, exempt, jobs::int, actual_gpu_ms::bigint AS act FROM usage_by_day ORDER BY 1, 2, 3, 4`)).rows,
      weekly: (await t.pool.query(`SELECT to_char(week, 'YYYY-MM-DD') AS week, project, user_name, exempt, jobs::int, estimated_gpu_ms::bigint AS est, actual_gpu_ms::bigint AS act
                                   FROM usage_weekly ORDER BY 1, 2, 3, 4`)).rows,
    });
    const kept = await dump();
    const ms = (h: number) => h * H;
    expect(kept.monthly).toEqual([
      { month: '2026-11-01', project: 'alpha', user_name: 'ann', exempt: false, jobs: 2, est: ms(4), act: ms(3.75) },
      { month: '2026-11-01', project: 'alpha', user_name: 'bob', exempt: true, jobs: 1, est: ms(1), act: ms(0.75) },
      { month: '2026-11-01', project: 'beta', user_name: 'bob', exempt: false, jobs: 1, est: ms(10), act: ms(0) },
      { month: '2026-11-01', project: 'tiny', user_name: 'cy', exempt: false, jobs: 1, est: ms(3), act: ms(3) },
      { month: '2026-12-01', project: 'beta', user_name: 'bob', exempt: false, jobs: 1, est: ms(10), act: ms(9) },
    ]);
    // alpha's week of Monday 2 November: a1 and a2 counted, a3 exempt; beta's last job falls in the week of 30 November.
    const week = (name: string, start: string) => kept.period.filter((x) => x.kind === 'project' && x.period === 'week' && x.name === name && x.start === start);
    expect(week('alpha', '2026-11-02')).toEqual([
      { kind: 'project', period: 'week', start: '2026-11-02', name: 'alpha', exempt: false, jobs: 2, act: ms(3.75) },
      { kind: 'project', period: 'week', start: '2026-11-02', name: 'alpha', exempt: true, jobs: 1, act: ms(0.75) },
    ]);
    expect(week('beta', '2026-11-30')).toEqual([{ kind: 'project', period: 'week', start: '2026-11-30', name: 'beta', exempt: false, jobs: 1, act: ms(9) }]);
    expect(kept.period.filter((x) => x.kind === 'user' && x.period === 'month' && x.name === 'bob')).toEqual([
      { kind: 'user', period: 'month', start: '2026-11-01', name: 'bob', exempt: false, jobs: 1, act: ms(0) },
      { kind: 'user', period: 'month', start: '2026-11-01', name: 'bob', exempt: true, jobs: 1, act: ms(0.75) },
      { kind: 'user', period: 'month', start: '2026-12-01', name: 'bob', exempt: false, jobs: 1, act: ms(9) },
    ]);
    // Weeks start on Monday or on the 1st: b2 (1 December, a Tuesday) is in the week of 1 December, not of 30 November.
    expect(kept.weekly).toEqual([
      { week: '2026-11-02', project: 'alpha', user_name: 'ann', exempt: false, jobs: 2, est: ms(4), act: ms(3.75) },
      { week: '2026-11-02', project: 'alpha', user_name: 'bob', exempt: true, jobs: 1, est: ms(1), act: ms(0.75) },
      { week: '2026-11-09', project: 'tiny', user_name: 'cy', exempt: false, jobs: 1, est: ms(3), act: ms(3) },
      { week: '2026-11-16', project: 'beta', user_name: 'bob', exempt: false, jobs: 1, est: ms(10), act: ms(0) },
      { week: '2026-12-01', project: 'beta', user_name: 'bob', exempt: false, jobs: 1, est: ms(10), act: ms(9) },
    ]);
    await inTransaction(t.pool, (db) => rebuildRollups(db));
    expect(await dump()).toEqual(kept);
  });
});

describe('monthly export', () => {
  const expected = [
    ['2026-11-02', 'alpha', 'ann', 'render', 'a100', 'ep1', 'a1', 'settle', 2 * H, 1.5 * H, false, false],
    ['2026-11-03', 'alpha', 'ann', 'render', 'a100', 'ep1', 'a2', 'settle', 2 * H, 2.25 * H, false, false],
    ['2026-11-05', 'alpha', 'bob', 'regression-test', null, null, 'a3', 'settle', 1 * H, 0.75 * H, true, false],
    ['2026-11-10', 'tiny', 'cy', null, null, null, 'o1', 'settle', 3 * H, 3 * H, false, true],
    ['2026-11-20', 'beta', 'bob', 'train', 'h100', null, 'b1', 'release', 10 * H, 0, false, false],
  ];

  it('has one JSON row per job that ended in the month, exempt and override included', async () => {
    const r = await get('/usage/export?month=2026-11&format=json');
    expect(r.type).toMatch(/^application\/json/);
    const rows = JSON.parse(r.text) as Record<string, unknown>[];
    expect(rows.map((x) => [x.date, x.project, x.user, x.jobType, x.gpuType, x.run, x.jobId, x.kind, x.estimatedGpuMs, x.actualGpuMs, x.exempt, x.override])).toEqual(expected);
  });

  it('has the same rows as CSV, quoting free text', async () => {
    const r = await get('/usage/export?month=2026-12');
    expect(r.type).toMatch(/^text\/csv/);
    const lines = r.text.trimEnd().split('\n');
    expect(lines[0]).toBe('date,endedAt,project,user,jobType,gpuType,run,jobId,kind,estimatedGpuMs,actualGpuMs,estimatedGpuHours,actualGpuHours,exempt,override,chargedGpuHours,units,costUSD,correction');
    // h100 has no rate here: the built-in one unit and no dollars an hour.
    expect(lines.slice(1)).toEqual(['2026-12-01,2026-12-01T02:00:00.000Z,beta,bob,"train, ""big""",h100,,b2,settle,36000000,32400000,10,9,false,false,9,9,0,']);
    const nov = (await get('/usage/export?month=2026-11&format=csv')).text.trimEnd().split('\n');
    expect(nov.slice(1).map((l) => l.split(',')[7])).toEqual(expected.map((e) => e[6]));
    expect((await get('/usage/export?month=2026-10&format=json')).text).toBe('[]\n');
  });

  it.each(['2026-13', 'nov', '2026-1', ''])('answers 400 to month %j', async (month) => {
    const r = await get(`/usage/export?month=${month}`);
    expect(r.status).toBe(400);
    expect(JSON.parse(r.text).error.message).toMatch(/^month must be YYYY-MM/);
  });
});

describe('CLI', () => {
  const cli = async (args: string[]) => {
    let out = '';
    const code = await runCli(['--url', base.replace(/\/api\/v1$/, ''), '--token', viewer, ...args], (x) => (out += x));
    return { code, out };
  };

  it('reports usage as a table', async () => {
    const r = await cli(['report', '--from', '2026-11-01', '--to', '2026-11-30', '--group-by', 'project']);
    expect(r.code).toBe(EXIT.ok);
    expect(r.out.split('\n').slice(0, 4)).toEqual([
      'PROJECT  JOBS  USED  ESTIMATED  EXEMPT  CHARGED  UNITS  USD',
      'alpha    3     3.75  4          0.75    3.75     3.75   $0.00',
      'beta     1     0     10         0       0        0      $0.00',
      'tiny     1     3     3          0       3        3      $0.00',
    ]);
  });

  it('exports a month to a file, byte for byte what the API streams', async () => {
    const dir = mkdtempSync(join(os.tmpdir(), 'gk-export-'));
    try {
      const file = join(dir, 'nov.csv');
      expect((await cli(['export', '--month', '2026-11', '--out', file])).code).toBe(EXIT.ok);
      expect(readFileSync(file, 'utf8')).toBe((await get('/usage/export?month=2026-11&format=csv')).text);
      expect((await cli(['export', '--month', 'november'])).code).toBe(EXIT.refused);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

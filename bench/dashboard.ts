/**
 * `npm run bench` (third part): the dashboard and the list APIs at an
 * organization's scale. Targets (issue 19): with BENCH_PROJECTS (1,000)
 * project budgets, BENCH_USERS (10,000) user quotas and BENCH_LEDGER_ROWS
 * (5,000,000) ledger rows, `/dashboard` (page 1 and a search), GET
 * /api/v1/projects and GET /api/v1/quotas answer at p50 < 200 ms and max <
 * 400 ms, and a 366-day usage report by project and user at p50 < 200 ms.
 *
 * Fills a real Postgres (DATABASE_URL, else local postgres binaries as the
 * tests use) in a few statements: half reserve, half settle rows over 400
 * days, each user working in two projects, 8 job types; usage_daily from the
 * ledger and every coarser rollup from it (rebuildRollups); the limits as
 * rows, copied to Redis as start-up does. Then times each call
 * BENCH_DASHBOARD_CALLS (20) times after 2 warm-up calls, against GET
 * /healthz in the same run, reports the page's bytes and the load average,
 * streams a month's export, and exits non-zero when a target is missed.
 */
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { loadConfig } from '../src/config.ts';
import { createLogger } from '../src/log.ts';
import { systemClock } from '../src/clock.ts';
import { createRedis } from '../queues/connection.ts';
import { createPool } from '../src/db/pool.ts';
import { migrate } from '../src/db/migrate.ts';
import { Accounting } from '../src/accounting/counters.ts';
import { Budgets } from '../src/accounting/budgets.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { createApp } from '../src/api/app.ts';
import { allLimits } from '../src/db/limits.ts';
import { rebuildRollups } from '../src/db/usage.ts';
import { cover } from '../src/db/usage-pairs.ts';
import { createDatabase, startInfra } from '../test/support/infra.ts';
import { save } from './results.ts';

const ROWS = Number(process.env.BENCH_LEDGER_ROWS ?? 5_000_000);
const PROJECTS = Number(process.env.BENCH_PROJECTS ?? 1_000);
const USERS = Number(process.env.BENCH_USERS ?? 10_000);
const CALLS = Number(process.env.BENCH_DASHBOARD_CALLS ?? 20);
const DAYS = 400;
const token = 'bench-admin-token-0123456789';
const pct = (sorted: number[], p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;

async function main(): Promise<void> {
  process.env.GK_TEST_NO_DOCKER ??= '1';
  const infra = await startInfra();
  const db = await createDatabase(infra.databaseUrl, `gk_bench_${Date.now()}`);
  const config = loadConfig({ REDIS_URL: infra.redisUrl, DATABASE_URL: db.url, QUEUE_PREFIX: 'bench-dash', GATEKEEPER_ADMIN_TOKEN: token });
  const pool = createPool(config.databaseUrl!, 8);
  await migrate(pool);
  const redis = createRedis(infra.redisUrl);
  const accounting = new Accounting(redis, config.queuePrefix, config.settledRetainSeconds, config.timeZone);
  const budgets = new Budgets(pool, accounting);
  const held = new HeldJobs(config, redis, pool, systemClock, createLogger('silent'));
  let server: Server | undefined;
  try {
    const t0 = performance.now();
    const jobs = Math.floor(ROWS / 2);
    // Job g: user g*31 mod USERS, in one of that user's two projects; spread over the last 400 days (one statement each kind).
    const gen = (kind: 'reserve' | 'settle') =>
      pool.query(
        `INSERT INTO ledger (kind, job_id, project, user_name, job_type, gpu_type, scopes, estimated_gpu_ms, actual_gpu_ms, admitted_at, at, exempt, run)
         SELECT $1, 'j' || g, 'p' || p, 'u' || u, 'type' || (g % 8), 'a100', ARRAY['project:p' || p],
                3600000, ${kind === 'settle' ? '(g % 7200000)' : 'NULL'},
                now() - make_interval(secs => ((g * 7919) % ($3 * 86400))), now() - make_interval(secs => ((g * 7919) % ($3 * 86400))) + interval '1 hour',
                g % 50 = 0, CASE WHEN g % 10 = 0 THEN 'run' || (g % 100) END
         FROM generate_series(1, $2::bigint) AS g, LATERAL (SELECT (g * 31) % $4::bigint AS u) AS uu,
              LATERAL (SELECT (u * 7 + (g % 3 = 0)::int) % $5::bigint AS p) AS pp`,
        [kind, jobs, DAYS, USERS, PROJECTS],
      );
    await Promise.all([gen('reserve'), gen('settle')]);
    await pool.query(
      `INSERT INTO usage_daily SELECT (at AT TIME ZONE 'UTC')::date, project, user_name, coalesce(job_type, ''), coalesce(gpu_type, ''), exempt,
              count(*), sum(estimated_gpu_ms), sum(coalesce(actual_gpu_ms, 0))
       FROM ledger WHERE kind <> 'reserve' GROUP BY 1, 2, 3, 4, 5, 6`,
    );
    await rebuildRollups(pool);
    // Limits spread so that some scopes sit near or past them: monthly budgets of 50-549 GPU-h,
    // daily quotas of 1-24 GPU-h, weekly ones of 2-41 GPU-h.
    await pool.query(
      `INSERT INTO limits (scope, limit_gpu_ms, period)
         SELECT 'project:p' || p, (50 + (p * 37) % 500) * 3600000::bigint, 'month' FROM generate_series(0, $1::int - 1) AS p
         UNION ALL SELECT 'user-day:u' || u, (1 + u % 24) * 3600000::bigint, 'day' FROM generate_series(0, $2::int - 1) AS u
         UNION ALL SELECT 'user-week:u' || u, (2 + u % 40) * 3600000::bigint, 'week' FROM generate_series(0, $2::int - 1) AS u`,
      [PROJECTS, USERS],
    );
    const limits = await allLimits(pool);
    for (let i = 0; i < limits.length; i += 1_000) await Promise.all(limits.slice(i, i + 1_000).map((r) => accounting.definitions.define(r.scope, r)));
    await pool.query('ANALYZE');
    const fillSeconds = (performance.now() - t0) / 1000;
    const count = async (table: string) => Number((await pool.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);
    const rollupRows = { usage_daily: await count('usage_daily'), usage_by_day: await count('usage_by_day'), usage_by_period: await count('usage_by_period'), usage_monthly: await count('usage_monthly'), usage_weekly: await count('usage_weekly') };

    const app = createApp({ config, accounting, budgets, held, redis, pool, log: createLogger('silent'), tokens: { admin: token, viewer: undefined } });
    server = await new Promise<Server>((r) => {
      const s = app.listen(0, '127.0.0.1', () => r(s));
    });
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const today = new Date().toISOString().slice(0, 10);
    const monthAgo = new Date(Date.now() - 30 * 86_400_000).toISOString().slice(0, 10);
    const yearAgo = new Date(Date.now() - 365 * 86_400_000).toISOString().slice(0, 10);
    // A year's range with the most edge days a report reads from usage_daily (six at each end).
    const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
    let worstTo = Date.now() - 7 * 86_400_000;
    while (cover(day(worstTo - 361 * 86_400_000), day(worstTo)).days.length < 12) worstTo -= 86_400_000;
    const worst12 = { from: day(worstTo - 361 * 86_400_000), to: day(worstTo) };
    const calls: [string, string][] = [
      ['healthz (floor)', '/healthz'],
      ['dashboard page 1', '/dashboard'],
      ['dashboard search q=12', '/dashboard?q=12'],
      ['dashboard page 20 of projects, 200 of quotas', '/dashboard?page=20&userPage=200'],
      ['projects API, first page (100)', '/api/v1/projects'],
      ['projects API, search q=12', '/api/v1/projects?q=12'],
      ['quota list, first page (100)', '/api/v1/quotas'],
      ['quota list, search q=12', '/api/v1/quotas?q=12'],
      ['usage, 30 days by project', `/api/v1/usage?from=${monthAgo}&to=${today}&groupBy=project`],
      ['report: 366 days by project and user, first 1,000 rows', `/api/v1/usage?from=${yearAgo}&to=${today}&groupBy=project,user&limit=1000`],
      [`report (not held to a target): 362 days with 12 edge days (${worst12.from} to ${worst12.to}), first 1,000 rows`, `/api/v1/usage?from=${worst12.from}&to=${worst12.to}&groupBy=project,user&limit=1000`],
      ['report (not held to a target): 366 days by project and user, first 10,000 rows', `/api/v1/usage?from=${yearAgo}&to=${today}&groupBy=project,user`],
      ['report (not held to a target): 30 days by project, user, day', `/api/v1/usage?from=${monthAgo}&to=${today}&groupBy=project,user,day`],
      ['one budget', '/api/v1/projects/p7/budget'],
      ['one user quota', '/api/v1/users/u42/quota'],
      ['alerts', '/api/v1/alerts?type=THRESHOLD_CROSSED,BUDGET_EXHAUSTED&unacked=true'],
      ['held jobs', '/api/v1/held?limit=100'],
    ];
    const headers = { authorization: `Bearer ${token}` };
    const results: { name: string; p50: number; p95: number; max: number; bytes: number }[] = [];
    for (const [name, path] of calls) {
      const ms: number[] = [];
      let bytes = 0;
      for (let i = 0; i < CALLS + 2; i++) {
        const t = performance.now();
        const res = await fetch(base + path, { headers });
        bytes = (await res.arrayBuffer()).byteLength;
        if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
        if (i >= 2) ms.push(performance.now() - t); // two warm-up calls
      }
      ms.sort((a, b) => a - b);
      results.push({ name, p50: pct(ms, 50), p95: pct(ms, 95), max: ms.at(-1)!, bytes });
    }

    // The export of the busiest month: streamed, so memory stays flat.
    const month = new Date(Date.now() - 45 * 86_400_000).toISOString().slice(0, 7);
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const te = performance.now();
    const res = await fetch(`${base}/api/v1/usage/export?month=${month}&format=csv`, { headers });
    let bytes = 0;
    let lines = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      bytes += chunk.length;
      for (const b of chunk) if (b === 10) lines++;
    }
    clearInterval(timer);
    const exportSeconds = (performance.now() - te) / 1000;

    const floor = results[0]!;
    const by = (prefix: string) => results.filter((r) => r.name.startsWith(prefix));
    const worst = (rs: typeof results) => ({ p50: Math.max(...rs.map((r) => r.p50)), max: Math.max(...rs.map((r) => r.max)) });
    const dash = worst(by('dashboard'));
    const projectsApi = worst(by('projects API'));
    const quotaList = worst(by('quota list'));
    const report = by('report: 366')[0]!;
    const pageBytes = by('dashboard page 1')[0]!.bytes;
    const loadAverage = os.loadavg().map((l) => Number(l.toFixed(2)));
    const targets = [
      { what: '/dashboard (page 1, search, a deep page) p50 < 200 ms and max < 400 ms', met: dash.p50 < 200 && dash.max < 400 },
      { what: 'GET /api/v1/projects p50 < 200 ms and max < 400 ms', met: projectsApi.p50 < 200 && projectsApi.max < 400 },
      { what: 'GET /api/v1/quotas p50 < 200 ms and max < 400 ms', met: quotaList.p50 < 200 && quotaList.max < 400 },
      { what: '366-day report by project and user p50 < 200 ms', met: report.p50 < 200 },
    ];
    const md = [
      `Dashboard and lists with ${PROJECTS.toLocaleString('en')} project budgets, ${USERS.toLocaleString('en')} users with daily and weekly quotas and ` +
        `${ROWS.toLocaleString('en')} ledger rows over ${DAYS} days (rollup rows: ${Object.entries(rollupRows).map(([k, v]) => `${k} ${v.toLocaleString('en')}`).join(', ')}; filled in ${fillSeconds.toFixed(0)} s), ` +
        `Postgres ${infra.how}, ${CALLS} calls each after 2 warm-up, one at a time, load average ${loadAverage.join(' ')}:`,
      '',
      '| call | p50 (ms) | p95 (ms) | max (ms) | p50 / healthz p50 | bytes |',
      '| --- | --- | --- | --- | --- | --- |',
      ...results.map((r) => `| ${r.name} | ${r.p50.toFixed(1)} | ${r.p95.toFixed(1)} | ${r.max.toFixed(1)} | ${(r.p50 / floor.p50).toFixed(1)} | ${r.bytes.toLocaleString('en')} |`),
      '',
      ...targets.map((t) => `- ${t.what}: ${t.met ? 'met' : 'NOT met'}`),
      `- dashboard page 1 weighs ${pageBytes.toLocaleString('en')} bytes (20 project cards, 20 quota cards, at most 12 near-limit rows, 50 held jobs).`,
      `- export of ${month}: ${(lines - 1).toLocaleString('en')} rows, ${(bytes / 1e6).toFixed(0)} MB CSV in ${exportSeconds.toFixed(1)} s; ` +
        `process RSS grew ${((peak - rss0) / 1e6).toFixed(0)} MB at most (server and client in this process).`,
    ].join('\n');
    console.log(md);
    save('dashboard.md', md + '\n');
    const summary = {
      healthzP50Ms: floor.p50,
      dashboardP50Ms: dash.p50,
      dashboardMaxMs: dash.max,
      projectsApiP50Ms: projectsApi.p50,
      projectsApiMaxMs: projectsApi.max,
      quotaListP50Ms: quotaList.p50,
      quotaListMaxMs: quotaList.max,
      report366P50Ms: report.p50,
      report366MaxMs: report.max,
      pageBytes,
      loadAverage,
      met: targets.every((t) => t.met),
    };
    save('dashboard.json', JSON.stringify({ rows: ROWS, projects: PROJECTS, users: USERS, rollupRows, summary, targets, calls: results, export: { month, rows: lines - 1, bytes, seconds: exportSeconds, rssGrowthBytes: peak - rss0 } }, null, 2) + '\n');
    if (!summary.met) process.exitCode = 1;
  } finally {
    await new Promise((r) => (server ? server.close(r) : r(null)));
    await held.close();
    await pool.end();
    await redis.quit();
    await db.drop();
    await infra.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

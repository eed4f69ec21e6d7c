/**
 * Corrections, append-only, against real Redis and Postgres: a refund, a
 * re-rate and a credit each add correction rows that name what they
 * correct, never edit a ledger row, move the counters by exactly their
 * charges (the drift audit agrees), are audited with actor and reason, and
 * refuse what cannot be done with nothing changed.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { apiSuite, TEST_TOKENS } from './support/api.ts';
import { EXIT, runCli } from '../src/cli/main.ts';
import { LedgerWriter } from '../src/ledger/writer.ts';
import { DriftAudit } from '../src/accounting/drift.ts';
import { rebuild } from '../src/accounting/rebuild.ts';
import type { JobMeta } from '../src/accounting/types.ts';
import { scopesForJob } from '../src/accounting/scopes.ts';

const { env, call } = apiSuite();
const HOUR = 3_600_000;

beforeAll(async () => {
  // H100 at 3 units and $4.10 per GPU-hour; the re-rate test's own type at the same price, so no other test's jobs are in its range.
  // Through the API, so a rebuild's copy from Postgres keeps them.
  for (const t of ['h100', 'h100-rr']) await call('PUT', `/gpu-types/${t}`, { unitsPerGpuHour: 3, usdPerGpuHour: 4.1 });
});

/** Two H100 jobs of `project`, run an hour each, and their ledger rows in Postgres. */
async function twoJobs(project: string, gpuType = 'h100'): Promise<{ ids: string[]; at: number }> {
  await call('PUT', `/projects/${project}/budget`, { usd: 100 });
  const at = Date.now();
  const ids = [`${project}-a`, `${project}-b`];
  await hours(ids, [`project:${project}`], { project, user: 'ann', gpuType, gpus: 1 }, at);
  return { ids, at };
}

/** Reserve and settle an hour of each job against `scopes` (bases), and write their ledger rows to Postgres. */
async function hours(ids: string[], scopes: string[], meta: JobMeta, at: number): Promise<void> {
  const a = env.t.accounting;
  const out = await a.reserveMany(ids.map((jobId) => ({ jobId, amountGpuMs: HOUR, scopes, meta })), at);
  for (const [i, o] of out.entries()) await a.settle(ids[i]!, (o as { scopes: string[] }).scopes, HOUR, 'settle', at + 1);
  await drain();
}

async function drain(): Promise<void> {
  const writer = new LedgerWriter(env.t.connection(), env.t.accounting.keys.ledger, env.t.pool, env.t.log);
  while ((await writer.drainOnce()) > 0);
}

const used = async (project: string) => (await env.t.accounting.scopes([`project:${project}`], Date.now()))[0]!.counted;
const ledgerRows = async (project: string) => (await env.t.pool.query('SELECT * FROM ledger WHERE project = $1::text ORDER BY id', [project])).rows;

describe('corrections', () => {
  it('refunds part of a job at its admission price: a new row naming the run, counters and the drift audit agree', async () => {
    const { ids } = await twoJobs('refunds');
    expect((await used('refunds')).usd.used).toBe(8_200_000);
    const before = await ledgerRows('refunds');
    const r = await call('POST', '/corrections', { kind: 'refund', jobId: ids[0], gpuHours: 0.5, reason: 'node failure half way' });
    // Half an H100 hour: 0.5 GPU-h, 1.5 units, $2.05.
    expect(r).toMatchObject({ status: 200, body: { kind: 'refund', corrections: 1, charged: { gpuHours: -0.5, units: -1.5, usd: -2.05 } } });
    expect(await used('refunds')).toMatchObject({ gpuHours: { used: 1.5 * HOUR }, units: { used: 4500 }, usd: { used: 6_150_000 } });
    const after = await ledgerRows('refunds');
    expect(after.slice(0, before.length)).toEqual(before); // no row edited
    const end = before.find((x) => x.kind === 'settle' && x.job_id === ids[0])!;
    expect(after.slice(before.length)).toMatchObject([{ kind: 'correction', correction: 'refund', corrects: end.id, corrected_gpu_ms: HOUR / 2, actor: 'ops-alice', note: 'node failure half way' }]);
    expect((await new DriftAudit(env.t.redis, env.t.accounting, env.t.pool).run()).drift).toEqual([]);
    // More than is left: refused, nothing changed.
    const over = await call('POST', '/corrections', { kind: 'refund', jobId: ids[0], gpuHours: 0.6, reason: 'too much' });
    expect(over).toMatchObject({ status: 409 });
    expect(await ledgerRows('refunds')).toHaveLength(after.length);
    // The rest of it: all that is left when no amount is given.
    expect((await call('POST', '/corrections', { kind: 'refund', jobId: ids[0], reason: 'whole run lost' })).body).toMatchObject({ charged: { gpuHours: -0.5, usd: -2.05 } });
    expect((await used('refunds')).usd.used).toBe(4_100_000);
  });

  it('re-rates the ended jobs of a type and time range, leaving running ones and already-refunded time out', async () => {
    const { ids, at } = await twoJobs('rerates', 'h100-rr');
    await call('POST', '/corrections', { kind: 'refund', jobId: ids[0], reason: 'lost' });
    await env.t.accounting.reserveMany([{ jobId: 'rerates-running', amountGpuMs: HOUR, scopes: ['project:rerates'], meta: { project: 'rerates', user: 'ann', gpuType: 'h100-rr', gpus: 1 } }], at);
    await drain();
    const r = await call('POST', '/corrections', {
      kind: 're-rate', gpuType: 'h100-rr', from: new Date(at - 1000).toISOString(), to: new Date(at + 1000).toISOString(),
      unitsPerGpuHour: 3, usdPerGpuHour: 5, reason: 'H100 price was wrong in November',
    });
    // Only job b still has charged time: $4.10 -> $5.00 for its hour; the refunded job has none left.
    expect(r).toMatchObject({ status: 200, body: { corrections: 1, charged: { gpuHours: 0, units: 0, usd: 0.9 }, skippedRunning: 1 } });
    expect((await used('rerates')).usd).toEqual({ used: 5_000_000, reserved: 4_100_000 });
    const audit = (await env.t.pool.query("SELECT action, after, reason FROM audit WHERE target = 'gpu-type:h100-rr' ORDER BY id DESC LIMIT 1")).rows[0];
    expect(audit).toMatchObject({ action: 'correction.re-rate', reason: 'H100 price was wrong in November', after: { usdPerGpuHour: 5, jobs: 1, runningLeft: 1 } });
    // A refund after it takes back at the corrected price.
    expect((await call('POST', '/corrections', { kind: 'refund', jobId: ids[1], gpuHours: 1, reason: 'lost too' })).body).toMatchObject({ charged: { usd: -5 } });
    expect((await new DriftAudit(env.t.redis, env.t.accounting, env.t.pool).run()).drift).toEqual([]);
  });

  it('credits a scope in one unit for its current period, at most what it used', async () => {
    await twoJobs('credits');
    expect(await call('POST', '/corrections', { kind: 'credit', scope: 'project:credits', usd: 1.25, reason: 'goodwill' })).toMatchObject({ status: 200, body: { corrections: 1, charged: { usd: -1.25 } } });
    expect((await used('credits')).usd.used).toBe(8_200_000 - 1_250_000);
    const over = await call('POST', '/corrections', { kind: 'credit', scope: 'project:credits', usd: 100, reason: 'too much' });
    expect(over.status).toBe(409);
    expect(over.body.error.message).toBe('project credits has used $6.95 this period; a credit can give back at most that');
    expect((await call('GET', '/corrections?jobId=credit:project:credits')).body).toMatchObject({ total: 1, corrections: [{ kind: 'credit', charged: { usd: -1.25 }, actor: 'ops-alice', reason: 'goodwill' }] });
    expect((await new DriftAudit(env.t.redis, env.t.accounting, env.t.pool).run()).drift).toEqual([]);
  });

  it("counts a credit to a quota, run cap or GPU type budget in nobody's usage: only a project budget's credit is its project's", async () => {
    // One H100 hour of bea's run r1 in project qc: $4.10 in each of its five scopes.
    await call('PUT', '/projects/qc/budget', { usd: 10 });
    const meta: JobMeta = { project: 'qc', user: 'bea', gpuType: 'h100', gpus: 1, run: 'r1' };
    const bases = scopesForJob(meta).map((s) => s.id);
    await hours(['qc-a'], bases, meta, Date.now());
    const credited = ['user-day:bea', 'user-week:bea', 'run:qc/r1', 'project-type:qc/h100'];
    for (const scope of credited) expect((await call('POST', '/corrections', { kind: 'credit', scope, usd: 1, reason: 'goodwill' })).status).toBe(200);
    // Each credited limit has $1 back ($3.10 used); the project's budget, credited nothing, still holds $4.10.
    const counters = await env.t.accounting.scopes(bases, Date.now());
    expect(counters.map((c) => [c.base, c.counted.usd.used])).toEqual([
      ['project:qc', 4_100_000], ['user-day:bea', 3_100_000], ['user-week:bea', 3_100_000], ['run:qc/r1', 3_100_000], ['project-type:qc/h100', 3_100_000],
    ]);
    // The project's report equals its budget counter; bea's is her job's $4.10 (not $2.10: two quota credits are no usage of hers).
    const day = new Date().toISOString().slice(0, 10);
    const report = async (q: string) => (await call('GET', `/usage?from=${day}&to=${day}&${q}`)).body.rows;
    expect(await report('groupBy=project&project=qc')).toEqual([expect.objectContaining({ project: 'qc', jobs: 1, usd: 4.1 })]);
    expect(await report('groupBy=user&user=bea')).toEqual([expect.objectContaining({ user: 'bea', jobs: 1, usd: 4.1 })]);
    // Every rollup: by day and by week and month for qc and bea, $4.10 each; no row for nobody in the wide ones.
    const named = await env.t.pool.query(`SELECT kind, 'day' AS period, usd_micro FROM usage_by_day WHERE name IN ('qc', 'bea')
      UNION ALL SELECT kind, period, usd_micro FROM usage_by_period WHERE name IN ('qc', 'bea') ORDER BY 1, 2`);
    expect(named.rows.map((r) => [r.kind, r.period, Number(r.usd_micro)])).toEqual(
      ['project', 'user'].flatMap((k) => ['day', 'month', 'week'].map((p) => [k, p, 4_100_000])),
    );
    const nobody = await env.t.pool.query(`SELECT 1 FROM usage_daily WHERE project = '' AND user_name = ''
      UNION ALL SELECT 1 FROM usage_monthly WHERE project = '' AND user_name = '' UNION ALL SELECT 1 FROM usage_weekly WHERE project = '' AND user_name = ''`);
    expect(nobody.rows).toEqual([]);
    // The export lists the credits, naming neither project nor user (the scope is in the job id); qc's rows are its job's.
    const res = await fetch(`${env.served.api}/usage/export?month=${day.slice(0, 7)}&format=json`, { headers: { authorization: `Bearer ${TEST_TOKENS.admin}` } });
    const rows = (await res.json()) as Record<string, any>[];
    const credits = rows.filter((r) => credited.some((c) => r.jobId.startsWith(`credit:${c}`)));
    expect(credits.map((r) => [r.project, r.user, r.correction, r.costUSD])).toEqual(credited.map(() => ['', '', 'credit', -1]));
    expect(rows.filter((r) => r.project === 'qc').map((r) => [r.jobId, r.kind, r.costUSD])).toEqual([['qc-a', 'settle', 4.1]]);
    expect((await new DriftAudit(env.t.redis, env.t.accounting, env.t.pool).run()).drift).toEqual([]);
  });

  it('refuses a refund that would take a counter below 0 after a credit, changing nothing', async () => {
    // Budget $10, one $4.10 H100 hour, all of it credited back: a refund of the job would leave used at -$4.10.
    await call('PUT', '/projects/below/budget', { usd: 10 });
    await hours(['below-a'], ['project:below'], { project: 'below', user: 'cy', gpuType: 'h100', gpus: 1 }, Date.now());
    expect((await call('POST', '/corrections', { kind: 'credit', scope: 'project:below', usd: 4.1, reason: 'goodwill' })).status).toBe(200);
    const before = { used: await used('below'), rows: await ledgerRows('below') };
    // Its GPU hours and units are still there to give back; its dollars are not.
    expect(before.used).toEqual({ gpuHours: { used: HOUR, reserved: 0 }, units: { used: 3000, reserved: 0 }, usd: { used: 0, reserved: 0 } });
    const r = await call('POST', '/corrections', { kind: 'refund', jobId: 'below-a', reason: 'lost' });
    expect(r.status).toBe(409);
    expect(r.body.error.message).toBe('project below (one-off) has $0.00 of used left; this refund would give back $4.10: a credit already gave part of it back');
    expect({ used: await used('below'), rows: await ledgerRows('below') }).toEqual(before);
    // An amount that rounds to 0 GPU-ms is a bad body, not a refusal.
    const tiny = await call('POST', '/corrections', { kind: 'refund', jobId: 'below-a', gpuHours: 1e-9, reason: 'lost' });
    expect([tiny.status, tiny.body.error.message]).toEqual([400, expect.stringContaining('gpuHours must be at least 0.000000278 (1 GPU-ms)')]);
    expect((await new DriftAudit(env.t.redis, env.t.accounting, env.t.pool).run()).drift).toEqual([]);
  });

  it('refuses bad bodies and unknown jobs, changing nothing', async () => {
    for (const [body, status] of [
      [{ kind: 'refund', jobId: 'nobody-1', reason: 'x' }, 404],
      [{ kind: 'refund', jobId: 'x' }, 400],
      [{ kind: 'credit', scope: 'project:x', gpuHours: 1, usd: 1, reason: 'x' }, 400],
      [{ kind: 'credit', scope: 'gpus-project:x', gpuHours: 1, reason: 'x' }, 400],
      [{ kind: 're-rate', gpuType: 'h100', from: '2026-12-01T00:00:00Z', to: '2026-11-01T00:00:00Z', unitsPerGpuHour: 1, usdPerGpuHour: 1, reason: 'x' }, 400],
      [{ kind: 'rebate', reason: 'x' }, 400],
    ] as const) {
      expect((await call('POST', '/corrections', body)).status).toBe(status);
    }
    expect((await env.t.pool.query("SELECT count(*)::int AS n FROM ledger WHERE kind = 'correction' AND job_id IN ('nobody-1', 'x')")).rows[0].n).toBe(0);
  });

  it('is made and listed from the CLI', async () => {
    const { ids } = await twoJobs('clicorr');
    let out = '';
    const cli = (args: string[]) => runCli(['--url', env.served.api.replace('/api/v1', ''), '--token', TEST_TOKENS.admin, ...args], (s) => (out += s));
    expect(await cli(['correct', 'refund', ids[1]!, '--hours', '0.25', '--reason', 'preempted'])).toBe(EXIT.ok);
    // A quarter H100 hour: 0.75 units, $1.025.
    expect(out).toBe('1 correction: -0.25 GPU-h, -0.75 units, -$1.025\n');
    out = '';
    expect(await cli(['corrections', '--job', ids[1]!])).toBe(EXIT.ok);
    expect(out.split('\n')[1]).toMatch(new RegExp(`^\\d+ +refund +${ids[1]} +-0\\.25 +-0\\.75 +-\\$1\\.025 +\\S+ +\\S+ +preempted$`));
    expect(await cli(['correct', 'refund', ids[1]!])).toBe(EXIT.usage);
  });

  it('survives a rebuild of Redis from the ledger: every counter as the corrections left it', async () => {
    await twoJobs('rebuilt');
    await call('POST', '/corrections', { kind: 'refund', jobId: 'rebuilt-a', gpuHours: 0.75, reason: 'lost' });
    await call('POST', '/corrections', { kind: 'credit', scope: 'project:rebuilt', units: 1, reason: 'goodwill' });
    const before = await used('rebuilt');
    // 2 H100 hours less 0.75 refunded, less 1 unit credited: 1.25 GPU-h, 2.75 units, $5.125.
    expect(before).toEqual({ gpuHours: { used: 1.25 * HOUR, reserved: 0 }, units: { used: 2750, reserved: 0 }, usd: { used: 5_125_000, reserved: 0 } });
    await env.t.redis.unlink(env.t.accounting.keys.scope('project:rebuilt'));
    await rebuild({ redis: env.t.redis, accounting: env.t.accounting, budgets: env.t.budgets, pool: env.t.pool, heldQueue: null, intakeQueue: null, settledRetainSeconds: 3600, now: Date.now() });
    expect(await used('rebuilt')).toEqual(before);
  });

  it("sums the month's export and usage report to the corrected totals, in every unit", async () => {
    const { ids } = await twoJobs('exported');
    await call('POST', '/corrections', { kind: 'refund', jobId: ids[0], gpuHours: 0.5, reason: 'half lost' });
    const month = new Date().toISOString().slice(0, 7);
    const res = await fetch(`${env.served.api}/usage/export?month=${month}&format=json`, { headers: { authorization: `Bearer ${TEST_TOKENS.admin}` } });
    const rows = ((await res.json()) as Record<string, any>[]).filter((r) => r.project === 'exported');
    // Two settled hours ($4.10, 3 units each) and the refund of half of one: one row each, none edited.
    expect(rows.map((r) => [r.jobId, r.kind, r.correction, r.chargedGpuHours, r.units, r.costUSD])).toEqual([
      [ids[0], 'settle', null, 1, 3, 4.1], [ids[1], 'settle', null, 1, 3, 4.1], [ids[0], 'correction', 'refund', -0.5, -1.5, -2.05],
    ]);
    const sum = (k: string) => Math.round(rows.reduce((n, r) => n + r[k] * 1e6, 0));
    expect([sum('chargedGpuHours'), sum('units'), sum('costUSD')]).toEqual([1_500_000, 4_500_000, 6_150_000]);
    const day = new Date().toISOString().slice(0, 10);
    const report = (await call('GET', `/usage?from=${day}&to=${day}&groupBy=project&project=exported`)).body;
    expect(report.rows).toEqual([expect.objectContaining({ project: 'exported', jobs: 2, actualGpuHours: 2, chargedGpuHours: 1.5, units: 4.5, usd: 6.15 })]);
  });
});


/**
 * Preflight prices a batch (issue 22; Story 032's cost comparison), against
 * real Redis and Postgres through the API and the CLI: the jobs that would
 * run, on their own GPU types at the rates in force now, and the same jobs
 * on every other GPU type of the rate card, cheapest first. Usage factors
 * weigh what is charged; rejected jobs cost nothing; a type a project may
 * not use is named. The expected figures are worked out by hand from the
 * rates below.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { apiSuite, TEST_TOKENS } from './support/api.ts';
import { runCli } from '../src/cli/main.ts';

const { env, call } = apiSuite();

beforeAll(async () => {
  // h100: 3 units, $4.10; a100: 2 units, $2.50; t4: a quarter unit, $0.35 (per GPU-hour).
  for (const [t, units, usd] of [['h100', 3, 4.1], ['a100', 2, 2.5], ['t4', 0.25, 0.35]] as const) {
    expect((await call('PUT', `/gpu-types/${t}`, { unitsPerGpuHour: units, usdPerGpuHour: usd })).status).toBe(200);
  }
  expect((await call('PUT', '/job-types/eval/usage-factor', { factor: 0.5 })).status).toBe(200);
  expect((await call('PUT', '/job-types/smoke/usage-factor', { factor: 0 })).status).toBe(200);
});

const jobs = (n: number, job: Record<string, unknown>) => Array.from({ length: n }, () => ({ user: 'ann', ...job }));

describe('preflight prices a batch', () => {
  it('160 GPU-h on H100: its cost, and the same batch on each GPU type cheapest first; nothing reserved', async () => {
    await call('PUT', '/projects/story/budget', { usd: 10_000 });
    const r = await call('POST', '/preflight', { jobs: jobs(40, { project: 'story', estimatedGpuHours: 4, gpuType: 'h100' }) });
    expect(r.status).toBe(200);
    expect(r.body.cost).toEqual({ jobs: 40, gpuHours: 160, chargedGpuHours: 160, units: 480, usd: 656 });
    expect(r.body.byGpuType.map((t: Record<string, unknown>) => [t.gpuType, t.usd, t.units, t.chargedGpuHours])).toEqual([
      ['t4', 56, 40, 160],
      ['a100', 400, 320, 160],
      ['h100', 656, 480, 160],
    ]);
    expect(r.body.byGpuType[1]).toMatchObject({ unitsPerGpuHour: 2, usdPerGpuHour: 2.5, notAllowedIn: [] });
    const budget = (await call('GET', '/projects/story/budget')).body;
    expect([budget.used, budget.reserved]).toEqual([0, 0]);
  });

  it('usage factors weigh the charge: half for eval, nothing for smoke, raw hours still shown', async () => {
    await call('PUT', '/projects/weigh/budget', { units: 1000 });
    const batch = [
      ...jobs(2, { project: 'weigh', estimatedGpuHours: 3, gpuType: 'h100', jobType: 'eval' }),
      { project: 'weigh', user: 'ann', estimatedGpuHours: 2, gpuType: 'h100', jobType: 'smoke' },
      { project: 'weigh', user: 'ann', estimatedGpuHours: 1, gpuType: 'a100' },
    ];
    const r = await call('POST', '/preflight', { jobs: batch });
    // eval: 2 x 3 h x 0.5 = 3 GPU-h, 9 units, $12.30; smoke: 0; a100: 1 GPU-h, 2 units, $2.50.
    expect(r.body.cost).toEqual({ jobs: 4, gpuHours: 9, chargedGpuHours: 4, units: 11, usd: 14.8 });
    // All on t4: eval 3 GPU-h x 0.25 = 0.75 units, $1.05; a100's hour on t4: 0.25 units, $0.35.
    expect(r.body.byGpuType[0]).toMatchObject({ gpuType: 't4', chargedGpuHours: 4, units: 1, usd: 1.4 });
  });

  it('a rejected job costs nothing; a GPU type a project may not use is named in the comparison', async () => {
    await call('PUT', '/projects/locked/budget', { gpuHours: 100 });
    expect((await call('PUT', '/projects/locked/gpu-types', { allowed: ['a100'] })).status).toBe(200);
    const r = await call('POST', '/preflight', { jobs: [
      { project: 'locked', user: 'ann', estimatedGpuHours: 5, gpuType: 'h100' },
      { project: 'locked', user: 'ann', estimatedGpuHours: 2, gpuType: 'a100' },
    ] });
    expect(r.body.outcomes.map((o: Record<string, unknown>) => o.outcome)).toEqual(['rejected', 'admitted']);
    expect(r.body.cost).toEqual({ jobs: 1, gpuHours: 2, chargedGpuHours: 2, units: 4, usd: 5 });
    const byType = Object.fromEntries(r.body.byGpuType.map((t: Record<string, unknown>) => [t.gpuType, t.notAllowedIn]));
    expect(byType).toEqual({ t4: ['locked'], a100: [], h100: ['locked'] });
  });

  it('held jobs count in the cost: they run once room frees', async () => {
    await call('PUT', '/projects/tight/budget', { gpuHours: 4 });
    const r = await call('POST', '/preflight', { jobs: jobs(3, { project: 'tight', estimatedGpuHours: 2, gpuType: 'a100' }) });
    expect([r.body.admitted, r.body.held]).toEqual([2, 1]);
    expect(r.body.cost).toEqual({ jobs: 3, gpuHours: 6, chargedGpuHours: 6, units: 12, usd: 15 });
  });

  it('the CLI prints the cost and a table of it on each GPU type', async () => {
    await call('PUT', '/projects/cli-cost/budget', { gpuHours: 100 });
    let out = '';
    const code = await runCli(['--url', env.served.api.replace('/api/v1', ''), '--token', TEST_TOKENS.viewer,
      'preflight', '--project', 'cli-cost', '--user', 'ann', '--hours', '4', '--count', '10', '--gpu-type', 'h100'], (s) => (out += s));
    expect(code).toBe(0);
    expect(out).toContain('cost of the 10 jobs that would run: 40 GPU-h = $164.00, 120 units');
    const rows = out.split('\n').filter((l) => /^(t4|a100|h100)\s/.test(l)).map((l) => l.split(/\s{2,}/).slice(0, 4));
    expect(rows).toEqual([['t4', '40', '10', '$14.00'], ['a100', '40', '80', '$100.00'], ['h100', '40', '120', '$164.00']]);
  });
});

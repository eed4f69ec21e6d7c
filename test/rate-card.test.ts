/**
 * The rate card and usage factors at the API, against real Redis and
 * Postgres: a rate is an exact integer row of an append-only history and
 * the exact field the scripts read, effective from now or later (never
 * before), audited; the default rate prices unknown GPU types; factors
 * count a job type at a fraction (0: exempt); a copy from Postgres restores
 * what Redis lost; bad bodies change nothing.
 */
import { describe, expect, it } from 'vitest';
import { apiSuite, TEST_TOKENS } from './support/api.ts';
import { decideAdmissions } from '../src/accounting/admission.ts';
import { EXIT, runCli } from '../src/cli/main.ts';

const { env, call } = apiSuite();
const DAY = 86_400_000;
const rows = async (gpuType: string) => (await env.t.pool.query('SELECT units_milli, usd_micro, effective_from, set_by FROM gpu_rates WHERE gpu_type = $1::text ORDER BY id', [gpuType])).rows;
const field = (gpuType: string) => env.t.redis.hget(env.t.accounting.keys.rates, gpuType);
let n = 0;
const job = (project: string, extra: Record<string, unknown>) => ({ intakeJobId: `${project}-${++n}`, order: n, data: { project, user: 'ann', gpus: 1, estimatedGpuHours: 2, ...extra } });

describe('the rate card', () => {
  it('sets a rate as exact integers, in Postgres and in the field reserve reads, audited', async () => {
    const r = await call('PUT', '/gpu-types/h100', { unitsPerGpuHour: 3, usdPerGpuHour: 4.1, reason: 'list price' });
    expect(r).toMatchObject({ status: 200, body: { gpuType: 'h100', unitsPerGpuHour: 3, usdPerGpuHour: 4.1, next: null } });
    const [row] = await rows('h100');
    expect(row).toMatchObject({ units_milli: 3000, usd_micro: 4_100_000, set_by: 'ops-alice' });
    const from = (row.effective_from as Date).getTime();
    expect(await field('h100')).toBe(`${from}:3000:4100000`);
    const audit = (await env.t.pool.query("SELECT action, before, after, reason FROM audit WHERE target = 'gpu-type:h100'")).rows;
    expect(audit).toEqual([{ action: 'gpu-rate.set', before: null, after: { unitsPerGpuHour: 3, usdPerGpuHour: 4.1, effectiveFrom: new Date(from).toISOString() }, reason: 'list price' }]);
    // A viewer reads the card, and may not write it.
    expect(await call('GET', '/gpu-types', undefined, TEST_TOKENS.viewer)).toMatchObject({ status: 200, body: { gpuTypes: [{ gpuType: 'h100', usdPerGpuHour: 4.1 }], unknownPolicy: 'default' } });
    expect((await call('PUT', '/gpu-types/h100', { unitsPerGpuHour: 1, usdPerGpuHour: 1 }, TEST_TOKENS.viewer)).status).toBe(403);
  });

  it('keeps a later rate as next, both in the field, and refuses one from the past, changing nothing', async () => {
    await call('PUT', '/gpu-types/a100', { unitsPerGpuHour: 2, usdPerGpuHour: 2.5 });
    const later = new Date(Date.now() + DAY).toISOString();
    const r = await call('PUT', '/gpu-types/a100', { unitsPerGpuHour: 2.25, usdPerGpuHour: 2.75, effectiveFrom: later });
    expect(r.body).toMatchObject({ unitsPerGpuHour: 2, usdPerGpuHour: 2.5, next: { unitsPerGpuHour: 2.25, usdPerGpuHour: 2.75, effectiveFrom: later } });
    const [first] = await rows('a100');
    expect(await field('a100')).toBe(`${(first.effective_from as Date).getTime()}:2000:2500000;${Date.parse(later)}:2250:2750000`);
    const past = await call('PUT', '/gpu-types/a100', { unitsPerGpuHour: 9, usdPerGpuHour: 9, effectiveFrom: '2026-01-01T00:00:00Z' });
    expect(past.status).toBe(400);
    expect(past.body.error.message).toContain('is in the past');
    expect(await rows('a100')).toHaveLength(2);
    for (const [body, message] of [
      [{ unitsPerGpuHour: 1, usdPerGpuHour: 4.1234567 }, 'usdPerGpuHour must be from 0 to 1000 with at most 6 decimals'],
      [{ unitsPerGpuHour: 1, usdPerGpuHour: 1001 }, 'usdPerGpuHour must be from 0 to 1000 with at most 6 decimals'],
      [{ unitsPerGpuHour: -1, usdPerGpuHour: 1 }, 'unitsPerGpuHour may not be negative'],
      [{ usdPerGpuHour: 1 }, 'unitsPerGpuHour is required'],
    ] as const) {
      expect(await call('PUT', '/gpu-types/a100', body)).toEqual({ status: 400, body: { error: { status: 400, message } } });
    }
    expect(await rows('a100')).toHaveLength(2);
  });

  it('prices a job of a GPU type with no rate at the default rate', async () => {
    await call('PUT', '/projects/dflt/budget', { gpuHours: 100 });
    expect((await call('GET', '/gpu-types/default')).body).toMatchObject({ gpuType: 'default', unitsPerGpuHour: 1, usdPerGpuHour: 0, builtIn: true });
    await call('PUT', '/gpu-types/default', { unitsPerGpuHour: 0.5, usdPerGpuHour: 1 });
    const [d] = await decideAdmissions(env.t.accounting, [job('dflt', { gpuType: 'tpu-v9' })], Date.now());
    expect(d).toMatchObject({ kind: 'admitted', admission: { charged: { gpuHours: 2, units: 1, usd: 2 }, price: { unitsPerGpuHour: 0.5, usdPerGpuHour: 1, usageFactor: 1 } } });
    expect(await field('*')).toMatch(/^\d+:500:1000000$/);
  });

  it('refuses "*" as a GPU type: it is where the default rate is kept', async () => {
    await call('PUT', '/gpu-types/default', { unitsPerGpuHour: 0.5, usdPerGpuHour: 1 });
    const [before, history] = [await field('*'), await rows('*')];
    const message = 'gpuType may not be "*": that name is kept for the default rate; the API calls it "default" (/gpu-types/default)';
    expect(await call('PUT', '/gpu-types/%2A', { unitsPerGpuHour: 9, usdPerGpuHour: 9 })).toEqual({ status: 400, body: { error: { status: 400, message } } });
    expect(await call('GET', '/gpu-types/%2A')).toEqual({ status: 400, body: { error: { status: 400, message } } });
    expect([await field('*'), await rows('*')]).toEqual([before, history]);
  });

  it('counts a job type at its usage factor, 0 exempt, and fully again once removed', async () => {
    await call('PUT', '/projects/factors/budget', { gpuHours: 100 });
    expect((await call('PUT', '/job-types/eval/usage-factor', { factor: 0.5, reason: 'evals are cheap' })).body).toEqual({ jobType: 'eval', usageFactor: 0.5, exempt: false });
    expect((await call('PUT', '/job-types/debug/usage-factor', { factor: 0 })).body).toMatchObject({ exempt: true });
    expect((await call('GET', '/exempt-job-types')).body).toEqual({ jobTypes: ['debug'] });
    const out = await decideAdmissions(env.t.accounting, [job('factors', { jobType: 'eval' }), job('factors', { jobType: 'debug' })], Date.now());
    expect(out.map((d) => d.kind === 'admitted' && [d.admission.charged!.gpuHours, d.admission.exempt ?? false])).toEqual([[1, false], [0, true]]);
    expect((await call('DELETE', '/job-types/eval/usage-factor')).body).toEqual({ jobType: 'eval', usageFactor: 1, removed: true });
    const [again] = await decideAdmissions(env.t.accounting, [job('factors', { jobType: 'eval' })], Date.now());
    expect(again).toMatchObject({ admission: { charged: { gpuHours: 2 } } });
    expect((await call('PUT', '/job-types/eval/usage-factor', { factor: 100.5 })).status).toBe(400);
  });

  it('restores the card and the factors from Postgres after Redis lost them', async () => {
    await call('PUT', '/gpu-types/l4', { unitsPerGpuHour: 0.8, usdPerGpuHour: 0.8 });
    await call('PUT', '/job-types/batch/usage-factor', { factor: 0.25 });
    const [rate, factor] = [await field('l4'), await env.t.redis.hget(env.t.accounting.keys.factors, 'batch')];
    await env.t.redis.unlink(env.t.accounting.keys.rates, env.t.accounting.keys.factors);
    await env.t.budgets.syncLimits();
    expect([await field('l4'), await env.t.redis.hget(env.t.accounting.keys.factors, 'batch')]).toEqual([rate, '250']);
    expect(factor).toBe('250');
  });

  it('is set and listed from the CLI', async () => {
    let out = '';
    const cli = (args: string[]) => runCli(['--url', env.served.api.replace('/api/v1', ''), '--token', TEST_TOKENS.admin, ...args], (s) => (out += s));
    expect(await cli(['gpu-types', 'set', 't4', '--units', '0.35', '--usd', '0.35'])).toBe(EXIT.ok);
    out = '';
    expect(await cli(['gpu-types', 'list'])).toBe(EXIT.ok);
    expect(out).toMatch(/^t4 +0\.35 +\$0\.35 +\d{4}-/m);
    expect(out).toMatch(/^default +/m);
    out = '';
    expect(await cli(['usage-factor', 'set', 'sweep', '1.5'])).toBe(EXIT.ok);
    expect(out).toBe('sweep: counts x1.5\n');
  });
});

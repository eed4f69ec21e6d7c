/**
 * Limits in a unit at the API, against real Redis and Postgres: a budget,
 * quota or run cap set in GPU hours, compute units or US dollars holds jobs
 * in its unit, every view shows all three units side by side, the audit
 * row says the unit, and a change that would make an amount mean something
 * else is refused with nothing changed.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { apiSuite, TEST_TOKENS as tokens } from './support/api.ts';
import { decideAdmissions } from '../src/accounting/admission.ts';

const { env, call } = apiSuite();

beforeAll(async () => {
  // H100 at 3 units and $4.10 per GPU-hour, from the epoch on (the scripts' rate card).
  await env.t.redis.hset(env.t.accounting.keys.rates, 'h100', '0:3000:4100000');
});
const audits = async (target: string) => (await env.t.pool.query('SELECT action, before, after FROM audit WHERE target = $1::text ORDER BY id', [target])).rows;
let n = 0;
const job = (project: string, user = 'ann') => ({ intakeJobId: `${project}-${++n}`, data: { project, user, gpuType: 'h100', gpus: 1, estimatedGpuHours: 1 }, order: n });

describe('limits in a unit', () => {
  it('holds a project at $10 of H100 time: two hours fit ($8.20), a third does not; the view shows dollars, hours and units', async () => {
    const put = await call('PUT', '/projects/dollars/budget', { usd: 10, reason: 'pilot' });
    expect(put).toMatchObject({ status: 200, body: { project: 'dollars', unit: 'usd', limit: 10, remaining: 10 } });
    expect(put.body).not.toHaveProperty('limitGpuHours');
    const out = await decideAdmissions(env.t.accounting, [job('dollars'), job('dollars'), job('dollars')], Date.now());
    expect(out.map((d) => d.kind)).toEqual(['admitted', 'admitted', 'held']);
    expect(out[2]).toMatchObject({ reason: 'project dollars: $8.20 of $10.00 used or reserved; job needs $4.10' });
    const view = (await call('GET', '/projects/dollars/budget', undefined, tokens.viewer)).body;
    expect(view).toMatchObject({
      unit: 'usd', limit: 10, used: 0, reserved: 8.2, remaining: 1.8,
      counted: { gpuHours: { used: 0, reserved: 2 }, units: { used: 0, reserved: 6 }, usd: { used: 0, reserved: 8.2 } },
      usedGpuHours: 0, reservedGpuHours: 2,
    });
    expect((await audits('project:dollars'))[0]).toMatchObject({ action: 'budget.set', before: null, after: { unit: 'usd', limit: 10, period: 'none' } });
  });

  it('takes quotas and run caps in units', async () => {
    const q = await call('PUT', '/users/una/quota', { daily: { units: 4.5 } });
    expect(q).toMatchObject({ status: 200, body: { daily: { unit: 'units', limit: 4.5 }, weekly: { limit: null } } });
    await call('PUT', '/projects/unitsp/budget', { gpuHours: 100 });
    const out = await decideAdmissions(env.t.accounting, [job('unitsp', 'una'), job('unitsp', 'una')], Date.now());
    // One H100 hour is 3 units: the second would take her to 6 of 4.5.
    expect(out[1]).toMatchObject({ kind: 'held', reason: "user una's daily quota: 3.0 of 4.5 units used or reserved; job needs 3.0" });
    const cap = await call('PUT', '/projects/unitsp/runs/r1/cap', { usd: 0.5 });
    expect(cap).toMatchObject({ status: 200, body: { unit: 'usd', limit: 0.5 } });
  });

  it('adjusts a budget in its own unit only, and keeps its unit while the period has an adjustment', async () => {
    await call('PUT', '/projects/adj/budget', { usd: 100 });
    expect(await call('POST', '/projects/adj/budget/adjust', { gpuHours: 5 })).toEqual({
      status: 409, body: { error: { status: 409, message: 'the budget of project adj is in usd; adjust it in usd' } },
    });
    expect(await call('POST', '/projects/adj/budget/adjust', { usd: 25.5, reason: 'grant' })).toMatchObject({ status: 200, body: { adjusted: 25.5, effectiveLimit: 125.5 } });
    expect((await audits('project:adj')).at(-1)).toMatchObject({ action: 'budget.adjust', before: { unit: 'usd', adjust: 0 }, after: { unit: 'usd', adjust: 25.5, delta: 25.5 } });
    const refused = await call('PUT', '/projects/adj/budget', { gpuHours: 50 });
    expect(refused.status).toBe(409);
    expect(refused.body.error.message).toContain('its unit can change to gpuHours from a period without one');
    expect((await call('GET', '/projects/adj/budget')).body).toMatchObject({ unit: 'usd', limit: 100, effectiveLimit: 125.5 });
    expect(await audits('project:adj')).toHaveLength(2);
  });

  it('refuses amounts finer than the unit holds and bodies in two units', async () => {
    for (const [body, message] of [
      [{ units: 1.0005 }, 'units has more decimals than a milli-unit (3)'],
      [{ usd: 1, units: 1 }, 'give the amount in one unit only, not units and usd'],
      [{ usd: -1 }, 'usd may not be negative'],
    ] as const) {
      expect(await call('PUT', '/projects/fine/budget', body)).toEqual({ status: 400, body: { error: { status: 400, message } } });
    }
    expect((await call('GET', '/projects/fine/budget')).status).toBe(404);
  });
});

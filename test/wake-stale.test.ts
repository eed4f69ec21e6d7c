/**
 * A waker reads a line's first jobs, then asks release.lua to decide them:
 * the other waker may act in between. These replay such a read by hand
 * against the real scripts (the other waker's calls first, then the stale
 * one) and hold release.lua to deciding only jobs still in the line woken
 * and in no manual line; the second checks the outcome is one the
 * reference model of test/wake-model.test.ts reaches.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestEnv } from './support/env.ts';
import { createWakeEnv, type WakeEnv } from './support/wake-env.ts';
import { WakeModel, type MJob } from './support/wake-model.ts';
import type { Budgets } from '../src/accounting/budgets.ts';
import type { HeldJobs } from '../src/admin/held.ts';
import type { Waker } from '../workers/waker.ts';

const NOW = Date.UTC(2026, 11, 5, 12);
const ops = { name: 'model', role: 'admin' as const };

let env: WakeEnv | undefined;
let t: TestEnv;
let budgets: Budgets;
let held: HeldJobs;
let wakers: Waker[];
beforeAll(async () => {
  env = await createWakeEnv(NOW);
  ({ t, budgets, held, wakers } = env);
});
afterAll(async () => env?.close());

describe('a stale read of a line', () => {
  const lines = (s: string) => t.redis.zrange(t.accounting.keys.line(s), '0', '-1');

  it('admits no job that moved into a manual line since, though room appeared there', async () => {
    const P = 'project:mp';
    const U = 'user-day:mu0';
    await budgets.set('mp', 10, ops, null, { release: 'auto', period: 'none' });
    await budgets.set('mo', 10, ops, null, { release: 'auto', period: 'none' });
    await budgets.setQuota('mu0', { daily: { limitGpuMs: 3, release: 'manual' } }, ops, null);
    const sub = async (id: string, order: number, amount: number, project = 'mp') =>
      (await t.accounting.reserveMany([{ jobId: id, order, amountGpuMs: amount, scopes: [`project:${project}`, U], meta: { project, user: 'mu0', gpus: 1 } }], NOW))[0]!.kind;
    expect(await sub('m0', 1, 2)).toBe('reserved');
    await budgets.set('mp', 2, ops, null, { release: 'auto' });
    expect(await sub('mX', 2, 1)).toBe('held');
    await budgets.set('mp', 10, ops, null, { release: 'auto' });
    expect(await sub('m1', 3, 1, 'mo')).toBe('reserved');
    // Waker A reads [mX] from P's line; B decides mX first: it misses the manual quota now, and waits there alone.
    await held.wake(P, ['mX'], 'B');
    expect([await lines(P), await lines(U)]).toEqual([[], ['mX']]);
    // Room appears in the manual quota; A's call comes: an admin releases that line, not A.
    await t.accounting.settle('m1', (await t.accounting.reservation('m1'))!.scopes, 0, 'settle', NOW);
    expect((await held.wake(P, ['mX'], 'A')).admitted).toEqual([]);
    expect(await t.accounting.reservation('mX')).toMatchObject({ state: 'held' });
  });

  it('leaves a job that moved to another line where the other waker put it', async () => {
    const P = 'project:ap';
    const U0 = 'user-day:au0';
    await budgets.set('ap', 4, ops, null, { release: 'auto', period: 'none' });
    await budgets.setQuota('au0', { daily: { limitGpuMs: 10, release: 'auto' } }, ops, null);
    const m = new WakeModel();
    m.limit.set(P, 4);
    m.limit.set(U0, 10);
    const sub = async (id: string, order: number, amount: number, user: string) => {
      const j: MJob = { id, order, amount, scopes: [P, `user-day:${user}`], state: 'held', lines: new Set() };
      const [out] = await t.accounting.reserveMany([{ jobId: id, order, amountGpuMs: amount, scopes: j.scopes, meta: { project: 'ap', user, gpus: 1 } }], NOW);
      expect(out!.kind).toBe(m.submit(j));
      return j;
    };
    const j0 = await sub('a0', 1, 4, 'au1');
    await sub('aX', 2, 2, 'au0');
    await sub('aY', 3, 3, 'au1');
    await budgets.setQuota('au0', { daily: { limitGpuMs: 1, release: 'auto' } }, ops, null);
    m.limit.set(U0, 1);
    // The quota's line is empty: its signal moves nothing.
    await Promise.all(wakers.map((w) => w.drain()));
    await t.accounting.settle('a0', (await t.accounting.reservation('a0'))!.scopes, 0, 'settle', NOW);
    m.settle(j0, 0);
    // Both wakers hold a turn at P. A reads [aX]; B moves aX to the quota's line alone, then admits aY; then A's call.
    m.signals.set(P, 2);
    await held.wake(P, ['aX'], 'B');
    await held.wake(P, ['aY'], 'B');
    await held.wake(P, ['aX'], 'A');
    await Promise.all(wakers.map((w) => w.drain()));
    const real = { P: await lines(P), U0: await lines(U0), Y: (await t.accounting.reservation('aY'))?.state };
    expect(real).toEqual({ P: [], U0: ['aX'], Y: 'reserved' });
    expect(m.quiescent().map((o) => ({ P: o.line(P).map((j) => j.id), U0: o.line(U0).map((j) => j.id), Y: o.jobs.get('aY')!.state }))).toContainEqual(real);
  });
});

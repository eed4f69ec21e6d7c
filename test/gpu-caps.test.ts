/**
 * Caps on GPUs in flight, decided in the reserve call with the hour budgets,
 * all or nothing (src/redis/lua/includes/caps.lua): per project, user,
 * project and GPU type, and for everything; peak windows in the time zone;
 * a cap set while jobs run counts them (caps-count.lua); a job ending gives
 * its GPUs back. Scripts driven through Accounting on a fixed clock (Wed 25
 * Nov 2026 12:00 UTC), each test in a project of its own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { unlinkMatching } from './support/infra.ts';
import { LedgerWriter } from '../src/ledger/writer.ts';
import { rebuild } from '../src/accounting/rebuild.ts';
import { DriftAudit } from '../src/accounting/drift.ts';
import { GpuCaps } from '../src/accounting/gpu-caps.ts';
import { createWaker } from '../workers/waker.ts';
import { scopesForJob } from '../src/accounting/scopes.ts';
import { describeHold } from '../src/accounting/reasons.ts';
import { hoursToGpuMs } from '../src/units.ts';
import type { JobMeta, ReserveOutcome } from '../src/accounting/types.ts';

let t: TestEnv;
let caps: GpuCaps;
const ops = { name: 'ops-alice', role: 'admin' as const };
const H = hoursToGpuMs(1);

beforeAll(async () => {
  t = await createTestEnv();
  caps = new GpuCaps(t.pool, t.accounting, t.clock);
});
afterAll(async () => {
  await t?.close();
});

const cap = (maxGpus: number, peak: { maxGpus: number; days: number; fromMinute: number; toMinute: number } | null = null) => ({ maxGpus, peak, release: 'auto' as const });

/** Reserve one job of `gpus` GPUs and one GPU-hour. */
async function job(id: string, project: string, gpus: number, extra: Partial<JobMeta> = {}): Promise<ReserveOutcome> {
  const meta: JobMeta = { project, user: extra.user ?? `u-${project}`, gpus, ...extra };
  const [out] = await t.accounting.reserveMany([{ jobId: id, amountGpuMs: H, scopes: scopesForJob(meta).map((s) => s.id), meta }], t.clock.now());
  return out!;
}

async function finish(id: string): Promise<void> {
  const r = (await t.accounting.reservation(id))!;
  await t.accounting.settle(id, r.scopes, H, 'settle', t.clock.now());
}

const inFlight = async (scope: string) => (await caps.get(scope))!.inFlightGpus;

/**
 * A fresh environment of its own with a ledger writer running, project
 * `project` with room for every job's hours and a 10-GPU cap, and a way to
 * reserve a job of `gpus` GPUs there: for the tests that lose Redis or audit
 * it against the ledger.
 */
async function withOwnEnv(project: string, body: (env: TestEnv, own: GpuCaps, reserve: (id: string, gpus: number) => Promise<unknown>) => Promise<void>): Promise<void> {
  const env = await createTestEnv();
  const writer = new LedgerWriter(env.connection(), env.accounting.keys.ledger, env.pool, env.log, { blockMs: 20 });
  await writer.start();
  try {
    const own = new GpuCaps(env.pool, env.accounting, env.clock);
    await env.budgets.set(project, hoursToGpuMs(100));
    await own.set(`gpus-project:${project}`, cap(10), ops, null);
    const reserve = (id: string, gpus: number) => {
      const meta: JobMeta = { project, user: `u-${project}`, gpus };
      return env.accounting.reserveMany([{ jobId: id, amountGpuMs: H, scopes: scopesForJob(meta).map((x) => x.id), meta }], env.clock.now());
    };
    await body(env, own, reserve);
  } finally {
    await writer.stop();
    await env.close();
  }
}

describe('GPUs in flight', () => {
  it('holds a job that would pass its project cap, with a reason in GPUs, and admits it when a job ends', async () => {
    await t.budgets.set('c-proj', hoursToGpuMs(100));
    await caps.set('gpus-project:c-proj', cap(4), ops, null);
    expect((await job('cp1', 'c-proj', 2)).kind).toBe('reserved');
    expect((await job('cp2', 'c-proj', 2)).kind).toBe('reserved');
    const held = await job('cp3', 'c-proj', 2);
    expect(held.kind).toBe('held');
    if (held.kind !== 'held') return;
    expect(describeHold(held)).toBe('project c-proj: 4 of 4 GPUs in flight; job needs 2');
    expect(held.shortfalls).toEqual([{ scope: 'gpus-project:c-proj', code: 'over-gpus', limitGpuMs: 4, usedGpuMs: 0, reservedGpuMs: 4, neededGpuMs: 2 }]);
    expect(await inFlight('gpus-project:c-proj')).toBe(4);
    // Its hours were not reserved either: all or nothing.
    expect((await t.budgets.get('c-proj'))!.reservedGpuMs).toBe(2 * H);

    await finish('cp1');
    expect(await inFlight('gpus-project:c-proj')).toBe(2);
    expect(await t.redis.zscore(t.accounting.keys.wake, 'gpus-project:c-proj')).not.toBeNull();
    const [r] = await t.accounting.release(['cp3'], 'fifo', 'test', t.clock.now());
    expect(r!.kind).toBe('admitted');
    expect(await inFlight('gpus-project:c-proj')).toBe(4);
    await finish('cp2');
    await finish('cp3');
    expect(await inFlight('gpus-project:c-proj')).toBe(0);
  });

  it('holds a job that fits the cap but not the budget without counting its GPUs', async () => {
    await t.budgets.set('c-both', H);
    await caps.set('gpus-project:c-both', cap(8), ops, null);
    expect((await job('cb1', 'c-both', 1)).kind).toBe('reserved');
    const out = await job('cb2', 'c-both', 1);
    expect(out.kind).toBe('held');
    expect(await inFlight('gpus-project:c-both')).toBe(1);
  });

  it('caps a user across projects, a GPU type within a project, and everything', async () => {
    await t.budgets.set('c-u1', hoursToGpuMs(100));
    await t.budgets.set('c-u2', hoursToGpuMs(100));
    await caps.set('gpus-user:cuma', cap(3), ops, null);
    expect((await job('cu1', 'c-u1', 2, { user: 'cuma' })).kind).toBe('reserved');
    const over = await job('cu2', 'c-u2', 2, { user: 'cuma' });
    expect(over.kind === 'held' && describeHold(over)).toBe('user cuma: 2 of 3 GPUs in flight; job needs 2');
    expect((await job('cu3', 'c-u2', 2, { user: 'cubo' })).kind).toBe('reserved');

    await caps.set('gpus-type:c-u1/h100', cap(1), ops, null);
    expect((await job('ct1', 'c-u1', 1, { user: 'ctia', gpuType: 'h100' })).kind).toBe('reserved');
    expect((await job('ct2', 'c-u1', 1, { user: 'ctia', gpuType: 'h100' })).kind).toBe('held');
    expect((await job('ct3', 'c-u1', 1, { user: 'ctia', gpuType: 'a100' })).kind).toBe('reserved');
  });

  it('counts the jobs already running when a cap is set, once each, and gives them back when they end', async () => {
    await t.budgets.set('c-late', hoursToGpuMs(100));
    await job('cl1', 'c-late', 3);
    await job('cl2', 'c-late', 2);
    await caps.set('gpus-project:c-late', cap(6), ops, null);
    expect(await inFlight('gpus-project:c-late')).toBe(5);
    // A second pass (a retry, a rebuild) counts nobody twice.
    expect(await caps.countRunning('gpus-project:c-late')).toBe(0);
    expect((await job('cl3', 'c-late', 2)).kind).toBe('held');
    await finish('cl1');
    await finish('cl2');
    expect(await inFlight('gpus-project:c-late')).toBe(0);
  });

  it('takes its peak value inside the weekly window, in the time zone', async () => {
    await t.budgets.set('c-peak', hoursToGpuMs(100));
    // 1 GPU Wednesdays 09:00-18:00 (bit 4), 3 otherwise; the clock is Wed 12:00 UTC.
    await caps.set('gpus-project:c-peak', cap(3, { maxGpus: 1, days: 4, fromMinute: 9 * 60, toMinute: 18 * 60 }), ops, null);
    const v = (await caps.get('gpus-project:c-peak'))!;
    expect([v.peakNow, v.effectiveMaxGpus]).toEqual([true, 1]);
    expect((await job('ck1', 'c-peak', 1)).kind).toBe('reserved');
    expect((await job('ck2', 'c-peak', 1)).kind).toBe('held');
    const evening = t.clock.t;
    t.clock.t = Date.UTC(2026, 10, 25, 18, 0);
    try {
      // 3 GPUs again: the held job fits (a new one waits behind it, first in, first out).
      expect((await job('ck3', 'c-peak', 1)).kind).toBe('held');
      expect((await t.accounting.release(['ck2', 'ck3'], 'fifo', 'test', t.clock.now())).map((r) => r.kind)).toEqual(['admitted', 'admitted']);
      expect(await inFlight('gpus-project:c-peak')).toBe(3);
    } finally {
      t.clock.t = evening;
    }
  });

  it("signals a cap's line when its peak window ends, and not before", async () => {
    await t.budgets.set('c-edge', hoursToGpuMs(100));
    await caps.set('gpus-project:c-edge', cap(2, { maxGpus: 1, days: 4, fromMinute: 9 * 60, toMinute: 18 * 60 }), ops, null);
    await job('ce-1', 'c-edge', 1);
    expect((await job('ce-2', 'c-edge', 1)).kind).toBe('held');
    const waker = createWaker({ config: t.config, connection: t.redis, pool: t.pool, log: t.log, clock: t.clock });
    try {
      await t.redis.zrem(t.accounting.keys.wake, 'gpus-project:c-edge');
      expect(await waker.peakTick(Date.UTC(2026, 10, 25, 17, 58))).toEqual([]);
      expect(await waker.peakTick(Date.UTC(2026, 10, 25, 17, 59))).toEqual([]);
      expect(await waker.peakTick(Date.UTC(2026, 10, 25, 18, 0))).toContain('gpus-project:c-edge');
      expect(await t.redis.zscore(t.accounting.keys.wake, 'gpus-project:c-edge')).not.toBeNull();
      expect(await waker.peakTick(Date.UTC(2026, 10, 25, 18, 1))).toEqual([]);
    } finally {
      await waker.close();
    }
  });

  it('does not count exempt job types', async () => {
    await t.budgets.set('c-ex', hoursToGpuMs(100));
    await t.budgets.setExempt('ci-check', true, ops, null);
    await caps.set('gpus-project:c-ex', cap(1), ops, null);
    expect((await job('ce1', 'c-ex', 4, { jobType: 'ci-check' })).kind).toBe('reserved');
    expect(await inFlight('gpus-project:c-ex')).toBe(0);
  });

  it('comes back exact after Redis loses its state: each cap counts the restored running jobs again', async () => {
    await withOwnEnv('c-rb', async (env, own, reserve) => {
      await reserve('rb1', 3);
      await reserve('rb2', 2);
      await reserve('rb3', 4);
      const r2 = (await env.accounting.reservation('rb2'))!;
      await env.accounting.settle('rb2', r2.scopes, H, 'settle', env.clock.now());
      expect((await own.get('gpus-project:c-rb'))!.inFlightGpus).toBe(7);
      await eventually(() => env.redis.xlen(env.accounting.keys.ledger), (n) => n === 0);

      await unlinkMatching(env.redis, `${env.accounting.keys.prefix}*`);
      await rebuild({ redis: env.redis, accounting: env.accounting, budgets: env.budgets, pool: env.pool, heldQueue: null, intakeQueue: null, settledRetainSeconds: env.config.settledRetainSeconds, now: env.clock.now() });
      expect((await own.get('gpus-project:c-rb'))!.inFlightGpus).toBe(7);
      // And the restored jobs give their GPUs back when they end.
      for (const id of ['rb1', 'rb3']) {
        const r = (await env.accounting.reservation(id))!;
        await env.accounting.settle(id, r.scopes, H, 'settle', env.clock.now());
      }
      expect((await own.get('gpus-project:c-rb'))!.inFlightGpus).toBe(0);
    });
  });

  it('shows in the drift audit when a cap counts other than its open reservations, and not while they agree', async () => {
    await withOwnEnv('c-dr', async (env, _own, reserve) => {
      await reserve('dr1', 2);
      await reserve('dr2', 3);
      const audit = new DriftAudit(env.redis, env.accounting, env.pool);
      expect((await audit.run()).drift).toEqual([]);
      await env.redis.hincrby(env.accounting.keys.scope('gpus-project:c-dr'), 'reserved', 1);
      const { drift } = await audit.run();
      expect(drift.map((d) => [d.counter, d.redis.reservedGpuMs, d.ledger.reservedGpuMs])).toEqual([['gpus-project:c-dr', 6, 5]]);
    });
  });
});

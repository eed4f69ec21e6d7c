/**
 * Held jobs start by themselves when they fit (workers/waker.ts): a settle
 * under the estimate, a cancelled or released job leaving a line, a raised or
 * adjusted limit all wake the line's first jobs, first in, first out, exactly
 * as an admin's release decides them; a limit with release 'manual' waits for
 * an admin. A real gatekeeper holds the jobs; each test has its own project.
 * Most tests drain the wake set themselves (waker.drain()), so what woke a
 * job is exactly what the test did; one runs the waker's own loop.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { createGatekeeper, type Gatekeeper } from '../workers/gatekeeper.ts';
import { createWaker, type Waker } from '../workers/waker.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { systemClock } from '../src/clock.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { execJobId } from '../queues/names.ts';

let t: TestEnv;
let gk: Gatekeeper;
let waker: Waker;
let held: HeldJobs;
let intake: Queue;
let exec: Queue;
const ops = { name: 'ops-alice', role: 'admin' as const };

beforeAll(async () => {
  t = await createTestEnv({}, { liveClock: true });
  gk = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: systemClock });
  waker = createWaker({ config: t.config, connection: t.redis, pool: t.pool, log: t.log, clock: systemClock });
  held = new HeldJobs(t.config, t.redis, t.pool, systemClock, t.log);
  const q = { connection: t.redis, prefix: t.config.queuePrefix };
  intake = new Queue(t.config.queues.intake, q);
  exec = new Queue(t.config.queues.exec, q);
});

afterAll(async () => {
  await gk?.close();
  await waker?.close();
  await held?.close();
  await Promise.all([intake?.close(), exec?.close()]);
  await t?.close();
});

/** Submit jobs (id, hours) of `project` in this order, one user each unless given, and wait until each is placed. */
async function submit(project: string, jobs: [id: string, hours: number, user?: string][]): Promise<void> {
  for (const [id, hours, user] of jobs) {
    await intake.add('train', { project, user: user ?? `u-${project}`, estimatedGpuHours: hours }, { jobId: id });
    await eventually(() => intake.getJobState(id), (s) => s === 'completed');
  }
}

const onExec = async (id: string) => (await exec.getJob(execJobId(id))) !== undefined;
const state = async (id: string) => (await t.accounting.reservation(id))?.state;

/** Settle a running job at `hours` actual, as the reconciler does when its GPU job ends. */
async function finish(id: string, hours: number): Promise<void> {
  const r = (await t.accounting.reservation(id))!;
  await t.accounting.settle(id, r.scopes, hoursToGpuMs(hours), 'settle', Date.now());
}

describe('the waker', () => {
  it('starts a held job once settles under their estimates make room for it, with no admin release', async () => {
    await t.budgets.set('w-settle', hoursToGpuMs(3));
    await submit('w-settle', [['ws1', 1], ['ws2', 1], ['ws3', 1], ['ws4', 1]]);
    expect(await state('ws4')).toBe('held');

    await finish('ws1', 0.25); // 0.75 h free: not enough for 1 h
    expect((await waker.drain()).admitted).toBe(0);
    expect(await state('ws4')).toBe('held');

    await finish('ws2', 0.25); // 1.5 h free
    expect((await waker.drain()).admitted).toBe(1);
    expect(await state('ws4')).toBe('reserved');
    expect(await onExec('ws4')).toBe(true);
    expect(await t.accounting.heldIds('w-settle')).toEqual([]);
    const b = (await t.budgets.get('w-settle'))!;
    expect([b.usedGpuMs, b.reservedGpuMs]).toEqual([hoursToGpuMs(0.5), hoursToGpuMs(2)]);
  });

  it('does not signal when a job used all it reserved', async () => {
    await t.budgets.set('w-full', hoursToGpuMs(1));
    await submit('w-full', [['wf1', 1], ['wf2', 1]]);
    await waker.drain();
    await finish('wf1', 1);
    expect(await t.redis.zscore(t.accounting.keys.wake, 'project:w-full')).toBeNull();
    await finish('wf1', 0); // a second settle of the same job changes nothing
    expect(await waker.drain()).toEqual({ lines: 0, admitted: 0 });
    expect(await state('wf2')).toBe('held');
  });

  it('keeps first in, first out: a small job behind a big one waits until the big one goes', async () => {
    await t.budgets.set('w-fifo', hoursToGpuMs(2));
    await submit('w-fifo', [['wq1', 2], ['wq2', 2], ['wq3', 0.5]]);
    expect([await state('wq2'), await state('wq3')]).toEqual(['held', 'held']);

    await finish('wq1', 1); // 1 h free: wq3 would fit, wq2 not, and wq2 is first
    await waker.drain();
    expect([await state('wq2'), await state('wq3')]).toEqual(['held', 'held']);

    await held.cancel('wq2', ops, 'too big');
    await waker.drain();
    expect(await state('wq3')).toBe('reserved');
    expect(await onExec('wq3')).toBe(true);
  });

  it('moves a whole line while its first jobs fit, oldest first', async () => {
    await t.budgets.set('w-line', hoursToGpuMs(4));
    await submit('w-line', [['wl1', 4], ['wl2', 1], ['wl3', 1], ['wl4', 1], ['wl5', 2]]);
    await finish('wl1', 0.5); // 3.5 h free: wl2, wl3, wl4 (3 h), then wl5 (2 h) does not fit
    await waker.drain();
    expect(await Promise.all(['wl2', 'wl3', 'wl4', 'wl5'].map(state))).toEqual(['reserved', 'reserved', 'reserved', 'held']);
  });

  it('moves a line of 60 that all fit, in growing steps, each job once', async () => {
    await t.budgets.set('w-long', hoursToGpuMs(1));
    await submit('w-long', [['wg0', 1]]);
    const ids = Array.from({ length: 60 }, (_, i) => `wg${i + 1}`);
    await intake.addBulk(ids.map((id) => ({ name: 'train', data: { project: 'w-long', user: 'u-w-long', estimatedGpuHours: 0.01 }, opts: { jobId: id } })));
    await eventually(() => Promise.all(ids.map((id) => intake.getJobState(id))), (s) => s.every((x) => x === 'completed'));
    expect(await t.accounting.heldIds('w-long')).toHaveLength(60);

    await finish('wg0', 0); // room for all 60 (0.6 h)
    expect((await waker.drain()).admitted).toBe(60);
    expect(await t.accounting.heldIds('w-long')).toEqual([]);
  });

  it("decides in 'wake' mode no job after the first that stays: the rest wait behind it", async () => {
    await t.budgets.set('w-stop', hoursToGpuMs(1));
    await submit('w-stop', [['wp1', 1], ['wp2', 1], ['wp3', 1]]);
    const before = await t.redis.hgetall(t.accounting.keys.reservation('wp3'));
    const out = await t.accounting.release(['wp2', 'wp3'], 'wake', 'test', Date.now(), 'project:w-stop');
    expect(out.map((o) => o.kind)).toEqual(['held']);
    expect(await t.redis.hgetall(t.accounting.keys.reservation('wp3'))).toEqual(before);
  });

  it('starts held jobs when an admin raises the limit, without a release', async () => {
    await t.budgets.set('w-raise', hoursToGpuMs(1));
    await submit('w-raise', [['wr1', 1], ['wr2', 1]]);
    await t.budgets.set('w-raise', hoursToGpuMs(2), ops, 'more room');
    await waker.drain();
    expect(await state('wr2')).toBe('reserved');
  });

  it('starts held jobs when an admin adjusts the current period', async () => {
    await t.budgets.set('w-adjust', hoursToGpuMs(1), ops, null, { period: 'month' });
    await submit('w-adjust', [['wa1', 1], ['wa2', 1]]);
    await t.budgets.adjust('w-adjust', hoursToGpuMs(1), ops, 'one-off extra');
    await waker.drain();
    expect(await state('wa2')).toBe('reserved');
  });

  it("leaves a manual limit's held jobs to an admin, who releases them as before", async () => {
    await t.budgets.set('w-manual', hoursToGpuMs(1), ops, null, { release: 'manual' });
    await submit('w-manual', [['wm1', 1], ['wm2', 1]]);
    await finish('wm1', 0.25);
    await t.budgets.set('w-manual', hoursToGpuMs(3), ops, 'raise, but a person decides');
    await waker.drain();
    expect(await state('wm2')).toBe('held');
    expect((await t.budgets.get('w-manual'))!.release).toBe('manual');

    const r = await held.release({ ids: ['wm2'] }, ops);
    expect(r.admitted).toEqual(['wm2']);
  });

  it('does not start a job that also waits in a manual line when room appears in another', async () => {
    await t.budgets.set('w-mixed', hoursToGpuMs(1));
    await t.budgets.setQuota('mia', { daily: { limitGpuMs: hoursToGpuMs(1), release: 'manual' } }, ops, null);
    await submit('w-mixed', [['wx1', 1, 'mia'], ['wx2', 1, 'mia']]);
    expect((await t.accounting.reservation('wx2'))!.state).toBe('held');
    await finish('wx1', 0.5); // room in both the project and mia's day; her quota is manual
    await waker.drain();
    expect(await state('wx2')).toBe('held');
  });

  it('runs by itself: a settle puts the waiting job on gpu-exec, and close() ends the wait at once', async () => {
    const own = createWaker({ config: t.config, connection: t.redis, pool: t.pool, log: t.log, clock: systemClock });
    await t.budgets.set('w-loop', hoursToGpuMs(1));
    await submit('w-loop', [['wo1', 1], ['wo2', 1]]);
    await own.start();
    try {
      await finish('wo1', 0);
      await eventually(() => onExec('wo2'), (on) => on);
    } finally {
      await own.close();
    }
  });

  it("signals nothing when start-up copies the limits from Postgres (the sweep signals the lines)", async () => {
    await t.budgets.set('w-sync', hoursToGpuMs(1));
    await t.redis.del(t.accounting.keys.wake);
    await t.budgets.syncLimits();
    expect(await t.redis.zcard(t.accounting.keys.wake)).toBe(0);
  });

  it('finds at start-up a line whose signal was lost', async () => {
    await t.budgets.set('w-lost', hoursToGpuMs(1));
    await submit('w-lost', [['wz1', 1], ['wz2', 1]]);
    await finish('wz1', 0);
    await t.redis.del(t.accounting.keys.wake); // taken by a waker that died before deciding
    expect(await waker.drain()).toEqual({ lines: 0, admitted: 0 });
    expect(await waker.sweep()).toBeGreaterThan(0);
    await waker.drain();
    expect(await state('wz2')).toBe('reserved');
  });
});

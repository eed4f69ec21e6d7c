/**
 * A reused job id is a new job. BullMQ's job ids come from a counter kept
 * with the queue; obliterating gpu-intake (any tool can) restarts it, and the
 * next job gets an id whose reservation record is still kept. The job is its
 * id and its submission time: a second job under an id is reserved, run and
 * charged as '<id>@<submitted at>', and the first job keeps its record.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { startPipeline } from './support/pipeline.ts';
import { DriftAudit } from '../src/accounting/drift.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { systemClock } from '../src/clock.ts';
import type { JobMeta } from '../src/accounting/types.ts';

/**
 * A job of n GPU-ms (n <= 3,600) priced while no rate is set: the built-in
 * default of one unit and no dollars per GPU-hour, factor 1, so it costs n
 * GPU-ms, 0.001 units (one milli-unit, rounded up) and nothing.
 */
const small = (n: number) => ({ price: { rate: { unitsMilli: 1000, usdMicro: 0 }, factorMilli: 1000 }, charges: { gpuMs: n, unitsMilli: 1, usdMicro: 0 } });
const smallCharges = (n: number) => ({ charges: small(n).charges });
const admittedSmall = (n: number) => ({ ...small(n), exempt: false });

const H = 3_600_000; // GPU-ms per GPU-hour
let t: TestEnv;

beforeAll(async () => {
  t = await createTestEnv({ RECONCILE_INTERVAL_MS: '20' }, { liveClock: true });
});
afterAll(async () => {
  await t?.close();
});

describe('the reserve script', () => {
  const meta: JobMeta = { project: 'p', user: 'u', gpus: 1 };
  const reserve = (jobId: string, submittedAt?: number, amountGpuMs = 10) =>
    t.accounting.reserveMany([{ jobId, amountGpuMs, scopes: ['s:reuse'], meta, ...(submittedAt === undefined ? {} : { submittedAt }) }], 1_000);

  it('tells a job from an earlier one with its id by submission time, and each retry from a new job', async () => {
    await t.accounting.definitions.define('s:reuse', { limitGpuMs: 100, policy: 'hard', gracePercent: null, period: 'none', rollover: false, rolloverCapGpuMs: null, thresholds: [], setAt: 0 });
    expect(await reserve('7', 500)).toEqual([{ kind: 'reserved', amountGpuMs: 10, scopes: ['s:reuse'], softOver: [], exempt: false, ...small(10) }]);
    // The same job again (a retry): nothing changes.
    expect(await reserve('7', 500)).toEqual([{ kind: 'already', amountGpuMs: 10, state: 'reserved', scopes: ['s:reuse'], exempt: false, ...smallCharges(10) }]);
    // Another job under id 7: reserved as 7@900, counted.
    expect(await reserve('7', 900, 20)).toEqual([{ kind: 'reserved', amountGpuMs: 20, scopes: ['s:reuse'], softOver: [], exempt: false, ...small(20), reservationId: '7@900' }]);
    // Its retry finds its own record.
    expect(await reserve('7', 900, 20)).toEqual([{ kind: 'already', amountGpuMs: 20, state: 'reserved', scopes: ['s:reuse'], exempt: false, ...smallCharges(20), reservationId: '7@900' }]);
    // A caller that does not know the submission time (preflight, old callers) means the job under the id.
    expect((await reserve('7'))[0]).toMatchObject({ kind: 'already', amountGpuMs: 10 });
    expect(await t.accounting.readScope('s:reuse')).toMatchObject({ reservedGpuMs: 30 });
    expect((await t.accounting.settle('7@900', ['s:reuse'], 5, 'settle', 2_000)).kind).toBe('settled');
    expect(await t.accounting.readScope('s:reuse')).toMatchObject({ usedGpuMs: 5, reservedGpuMs: 10 });
  });
});

describe('gpu-intake obliterated: its id counter starts again', () => {
  let intake: Queue;
  let exec: Queue;
  let held: HeldJobs;
  let pipeline: { close(): Promise<void> };
  beforeAll(async () => {
    intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
    exec = new Queue(t.config.queues.exec, { connection: t.redis, prefix: t.config.queuePrefix });
    held = new HeldJobs(t.config, t.redis, t.pool, systemClock, t.log);
    pipeline = await startPipeline(t);
  });
  afterAll(async () => {
    await pipeline?.close();
    await held?.close();
    await Promise.all([intake?.close(), exec?.close()]);
  });

  it('the next job, of another project and user, runs and is charged; the first keeps its numbers; drift stays zero', async () => {
    await t.budgets.set('alpha', 10 * H);
    await t.budgets.set('beta', 10 * H);
    await intake.obliterate({ force: true });
    const first = await intake.add('render', { project: 'alpha', user: 'ann', estimatedGpuHours: 1, payload: { simulate: { durationMs: 10, gpuHours: 0.5 } } });
    await eventually(() => t.budgets.get('alpha'), (b) => b!.usedGpuMs === 0.5 * H && b!.reservedGpuMs === 0);

    await intake.obliterate({ force: true });
    const second = await intake.add('train', { project: 'beta', user: 'bob', estimatedGpuHours: 2, payload: { simulate: { durationMs: 10, gpuHours: 1.5 } } });
    expect(second.id).toBe(first.id); // the counter did start again

    await eventually(() => second.getState(), (s) => s === 'completed');
    const rid = `${second.id}@${second.timestamp}`;
    expect((await intake.getJob(second.id!))!.returnvalue).toEqual({ outcome: 'admitted', execJobId: `intake-${rid}` });
    expect((await exec.getJob(`intake-${rid}`))!.data).toMatchObject({ project: 'beta', user: 'bob', admission: { intakeJobId: rid, reservedGpuHours: 2 } });
    const beta = await eventually(() => t.budgets.get('beta'), (b) => b!.usedGpuMs > 0 && b!.reservedGpuMs === 0);
    expect(beta!.usedGpuMs).toBe(1.5 * H);
    expect((await t.budgets.get('alpha'))!.usedGpuMs).toBe(0.5 * H);

    const rows = await eventually(
      async () => (await t.pool.query(`SELECT job_id, kind, project, actual_gpu_ms FROM ledger WHERE project IN ('alpha', 'beta') ORDER BY project, kind`)).rows,
      (r) => r.length === 4,
    );
    expect(rows).toEqual([
      { job_id: first.id, kind: 'reserve', project: 'alpha', actual_gpu_ms: null },
      { job_id: first.id, kind: 'settle', project: 'alpha', actual_gpu_ms: 0.5 * H },
      { job_id: rid, kind: 'reserve', project: 'beta', actual_gpu_ms: null },
      { job_id: rid, kind: 'settle', project: 'beta', actual_gpu_ms: 1.5 * H },
    ]);
    expect((await new DriftAudit(t.redis, t.accounting, t.pool).run()).drift).toEqual([]);
  });

  it('a job held under an id stays held and the new job under that id is admitted; the admin acts on each by its own id', async () => {
    await t.budgets.set('gamma', 0);
    await t.budgets.set('delta', 10 * H);
    await intake.obliterate({ force: true });
    const first = await intake.add('render', { project: 'gamma', user: 'cy', estimatedGpuHours: 1, payload: { simulate: { durationMs: 10, gpuHours: 1 } } });
    await eventually(() => first.getState(), (s) => s === 'completed');
    // Its id, or (after the test before) '<id>@<submitted at>': what its result names.
    const heldAs = ((await intake.getJob(first.id!))!.returnvalue as { heldJobId: string }).heldJobId.replace(/^intake-/, '');

    await intake.obliterate({ force: true });
    const second = await intake.add('render', { project: 'delta', user: 'di', estimatedGpuHours: 1, payload: { simulate: { durationMs: 10, gpuHours: 1 } } });
    expect(second.id).toBe(first.id);
    await eventually(() => second.getState(), (s) => s === 'completed');
    expect((await intake.getJob(second.id!))!.returnvalue).toMatchObject({ outcome: 'admitted' });
    await eventually(() => t.budgets.get('delta'), (b) => b!.usedGpuMs === H);

    const stillHeld = await held.list({ project: 'gamma', limit: 10, offset: 0 });
    expect(stillHeld.jobs.map((j) => j.jobId)).toEqual([heldAs]);
    await held.override(heldAs, { name: 'ops', role: 'admin' }, 'needed');
    await eventually(() => t.budgets.get('gamma'), (b) => b!.usedGpuMs === H && b!.reservedGpuMs === 0);
    expect((await t.budgets.get('delta'))!.usedGpuMs).toBe(H);
  });
});

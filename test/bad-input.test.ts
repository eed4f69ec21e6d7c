/**
 * Malformed intake jobs are rejected (failed, never retried) with a reason a
 * submitter can act on, while good jobs around them keep flowing and nothing
 * is reserved for the bad ones.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { createGatekeeper, type Gatekeeper } from '../workers/gatekeeper.ts';
import { systemClock } from '../src/clock.ts';
import { hoursToGpuMs } from '../src/units.ts';

let t: TestEnv;
let gk: Gatekeeper;
let intake: Queue;
let exec: Queue;
let rejected: Queue;

beforeAll(async () => {
  t = await createTestEnv({ MAX_PAYLOAD_BYTES: '1024', MAX_GPU_HOURS_PER_JOB: '500' }, { liveClock: true });
  gk = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: systemClock });
  intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
  exec = new Queue(t.config.queues.exec, { connection: t.redis, prefix: t.config.queuePrefix });
  rejected = new Queue(t.config.queues.rejected, { connection: t.redis, prefix: t.config.queuePrefix });
  await t.budgets.set('good', hoursToGpuMs(1000));
});
afterAll(async () => {
  await gk?.close();
  await Promise.all([intake?.close(), exec?.close(), rejected?.close()]);
  await t?.close();
});

const ok = { project: 'good', user: 'ana', estimatedGpuHours: 1 };
const REFUSED = 'control characters, bidirectional overrides and unpaired surrogates are not accepted';

const cases: [string, unknown, string][] = [
  ['missing project', { user: 'ana', estimatedGpuHours: 1 }, 'invalid job: project is required'],
  ['negative estimate', { ...ok, estimatedGpuHours: -2 }, 'invalid job: estimatedGpuHours must be greater than 0'],
  ['zero estimate', { ...ok, estimatedGpuHours: 0 }, 'invalid job: estimatedGpuHours must be greater than 0'],
  ['NaN estimate', { ...ok, estimatedGpuHours: NaN }, 'invalid job: estimatedGpuHours must be a number of GPU hours, got null (NaN and Infinity arrive as null in JSON)'],
  ['Infinity estimate', { ...ok, estimatedGpuHours: Infinity }, 'invalid job: estimatedGpuHours must be a number of GPU hours, got null (NaN and Infinity arrive as null in JSON)'],
  ['1e308 estimate', { ...ok, estimatedGpuHours: 1e308 }, 'invalid job: estimatedGpuHours must be at most 500 GPU hours per job'],
  ['string estimate', { ...ok, estimatedGpuHours: '4' }, 'invalid job: estimatedGpuHours must be a number of GPU hours, got the string "4"'],
  ['missing estimate', { project: 'good', user: 'ana' }, 'invalid job: estimatedGpuHours is required'],
  ['project with a space', { ...ok, project: 'my project' }, 'invalid job: project must be 1-128 characters of A-Z a-z 0-9 . _ -'],
  ['numeric user', { ...ok, user: 42 }, 'invalid job: user must be a string'],
  ['fractional gpus', { ...ok, gpus: 1.5 }, 'invalid job: gpus must be a whole number'],
  ['unknown field', { ...ok, estimatedGPUHours: 3 }, 'invalid job: unknown field(s): estimatedGPUHours'],
  ['data not an object', 'render please', 'invalid job: job data must be an object'],
  ['oversized payload', { ...ok, payload: { blob: 'x'.repeat(2000) } }, 'invalid job: payload is 2011 bytes; at most 1024 are allowed'],
  ['several problems at once', { project: '', estimatedGpuHours: -1 }, 'invalid job: project must be 1-128 characters of A-Z a-z 0-9 . _ -; user is required; estimatedGpuHours must be greater than 0'],
  // Text Postgres cannot store (it stopped the ledger for good) or a terminal would obey.
  ['job type with a NUL', { ...ok, jobType: 'ren\u0000der' }, `invalid job: jobType contains a control character (U+0000) at character 4; ${REFUSED}`],
  ['GPU type that retitles a terminal', { ...ok, gpuType: '\u001b]0;pwned\u0007' }, `invalid job: gpuType contains a control character (U+001B) at character 1; ${REFUSED}`],
  ['job type with an unpaired surrogate', { ...ok, jobType: 'a\ud800' }, `invalid job: jobType contains an unpaired surrogate (U+D800) at character 2; ${REFUSED}`],
  ['job type with a right-to-left override', { ...ok, jobType: 'txt.\u202eexe' }, `invalid job: jobType contains a bidirectional control character (U+202E) at character 5; ${REFUSED}`],
  // '*' is the rate card's field for the default rate: a job of that type would read it as its own.
  ['GPU type named as the default rate', { ...ok, gpuType: '*' }, 'invalid job: gpuType may not be "*": that name is kept for the default rate'],
  ['unknown field named with a NUL', { ...ok, ['x\u0000']: 1 }, 'invalid job: unknown field(s): x\\u0000'],
];

describe('bad input', () => {
  it('rejects each malformed job with a readable reason, without retry, while good jobs flow', async () => {
    const jobs = cases.flatMap(([name, data], i) => [
      { name: `bad:${name}`, data, opts: { attempts: 3 } },
      { name: `good-${i}`, data: ok },
    ]);
    await intake.addBulk(jobs as Parameters<Queue['addBulk']>[0]);
    await eventually(() => intake.getJobCounts('completed', 'failed'), (c) => (c.completed ?? 0) + (c.failed ?? 0) === jobs.length);

    const failed = await intake.getJobs(['failed']);
    const reasons = Object.fromEntries(failed.map((j) => [j.name.slice(4), j.failedReason]));
    expect(reasons).toEqual(Object.fromEntries(cases.map(([name, , reason]) => [name, reason])));
    for (const j of failed) expect(j.attemptsMade).toBe(1); // rejected, not retried

    // Each is also parked on gpu-rejected, its reason in its data and its log.
    const parked = await rejected.getJobs(['waiting']);
    expect(parked).toHaveLength(cases.length);
    for (const p of parked) {
      const intakeJob = failed.find((f) => f.id === p.data.rejected.intakeJobId)!;
      expect(p.data.rejected.reason).toBe(intakeJob.failedReason);
      expect(p.data.intake).toEqual(intakeJob.data);
      expect((await rejected.getJobLogs(p.id!)).logs).toEqual([`rejected: ${intakeJob.failedReason}`]);
    }

    expect(await exec.count()).toBe(cases.length);
    expect((await t.budgets.get('good'))!.reservedGpuMs).toBe(hoursToGpuMs(cases.length));
    expect(gk.worker.isRunning()).toBe(true);
  });
});

describe('job ids and text the contract accepts', () => {
  it('rejects a custom job id holding a control character, and admits 4-byte characters in free text', async () => {
    const bad = await intake.add('bad-id', ok, { jobId: 'job\u0000one' });
    const emoji = await intake.add('emoji', { ...ok, jobType: '🚀 render', gpuType: 'H100 ✓' });
    await eventually(() => Promise.all([bad.isFailed(), emoji.isCompleted()]), (xs) => xs.every(Boolean));
    expect((await intake.getJob(bad.id!))!.failedReason).toBe(`invalid job: job id contains a control character (U+0000) at character 4; ${REFUSED}`);
    expect(await t.accounting.reservation('job\u0000one')).toBeNull();
    expect((await intake.getJob(emoji.id!))!.returnvalue).toMatchObject({ outcome: 'admitted' });
    expect((await t.accounting.reservation(emoji.id!))!.meta).toMatchObject({ jobType: '🚀 render', gpuType: 'H100 ✓' });
  });
});

describe('unknown projects', () => {
  it('are held by default with "no budget for project X"', async () => {
    const j = await intake.add('stranger', { project: 'nobody', user: 'ana', estimatedGpuHours: 1 });
    await eventually(() => j.isCompleted(), Boolean);
    expect((await j.getState(), (await intake.getJob(j.id!))!.returnvalue)).toMatchObject({ outcome: 'held', reason: 'no budget for project nobody' });
  });

  it('are rejected with UNKNOWN_PROJECT_POLICY=reject', async () => {
    const strict = await createTestEnv({ UNKNOWN_PROJECT_POLICY: 'reject' }, { liveClock: true });
    const g = createGatekeeper({ config: strict.config, workerConnection: strict.connection(), connection: strict.redis, log: strict.log, clock: systemClock });
    const q = new Queue(strict.config.queues.intake, { connection: strict.redis, prefix: strict.config.queuePrefix });
    try {
      const j = await q.add('stranger', { project: 'nobody', user: 'ana', estimatedGpuHours: 1 });
      await eventually(() => j.isFailed(), Boolean);
      expect((await q.getJob(j.id!))!.failedReason).toBe('no budget for project nobody (unknown projects are rejected: UNKNOWN_PROJECT_POLICY=reject)');
      expect(await strict.accounting.heldIds()).toEqual([]);
    } finally {
      await g.close();
      await q.close();
      await strict.close();
    }
  });
});

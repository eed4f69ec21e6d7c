/**
 * Safety under contention: four gatekeeper processes at high concurrency race
 * over one budget. For random budgets and random estimates (fast-check), the
 * reservations never pass the limit, every job ends admitted or held exactly
 * once, and the held line is in submission order behind a job that did not fit.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Queue } from 'bullmq';
import type { ChildProcess } from 'node:child_process';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { assertExactlyOnce, readOutcomes } from './support/outcomes.ts';
import { hoursToGpuMs } from '../src/units.ts';

let t: TestEnv;
let intake: Queue;
const procs: ChildProcess[] = [];

beforeAll(async () => {
  t = await createTestEnv({}, { liveClock: true });
  intake = new Queue(t.config.queues.intake, { connection: t.redis, prefix: t.config.queuePrefix });
  for (let i = 0; i < 4; i++) procs.push(t.spawn('gatekeeper', { GATEKEEPER_CONCURRENCY: '64' }));
  // Race for real: start only once all four are taking jobs.
  await eventually(() => intake.getWorkersCount(), (n) => n >= 4, 30_000);
});
afterAll(async () => {
  await intake?.close();
  await t?.close();
});

describe('4 racing gatekeepers over one budget', () => {
  it('never admit past the limit, and place every job exactly once', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 60 }),
        fc.array(fc.double({ min: 0.001, max: 6, noNaN: true }), { minLength: 50, maxLength: 300 }),
        async (budgetHours, estimates) => {
          const project = `race-${run++}`;
          const limit = hoursToGpuMs(budgetHours);
          await t.budgets.set(project, limit);
          const jobs = await intake.addBulk(
            estimates.map((h, i) => ({ name: `j${i}`, data: { project, user: 'u', estimatedGpuHours: h } })),
          );
          const ids = new Set(jobs.map((j) => j.id!));
          const estimateOf = new Map(jobs.map((j, i) => [j.id!, hoursToGpuMs(estimates[i]!)]));
          const done = await eventually(
            () => readOutcomes(t),
            (o) => o.admitted.filter((id) => ids.has(id)).length + o.held.filter((id) => ids.has(id)).length === ids.size,
            60_000,
          );
          expect(assertExactlyOnce(done)).toEqual([]);

          const admitted = done.admitted.filter((id) => ids.has(id));
          const reserved = admitted.reduce((sum, id) => sum + estimateOf.get(id)!, 0);
          const scope = await t.accounting.readScope(`project:${project}`);
          expect(scope.reservedGpuMs).toBe(reserved);
          expect(scope.reservedGpuMs).toBeLessThanOrEqual(limit);
          // The held line holds exactly the held jobs, in submission order; the
          // first job ever held did not fit (the rest may wait behind it), and
          // reservations only grew since, so some held job still does not fit.
          const line = await t.accounting.heldIds(project);
          expect(new Set(line)).toEqual(new Set(done.held.filter((id) => ids.has(id))));
          expect(line).toEqual([...line].sort((a, b) => Number(a) - Number(b)));
          if (line.length > 0) expect(line.some((id) => reserved + estimateOf.get(id)! > limit)).toBe(true);
        },
      ),
      { numRuns: 8 },
    );
    expect(procs.every((p) => p.exitCode === null)).toBe(true);
  }, 240_000);
});

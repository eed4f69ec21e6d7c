/**
 * A throttled job is never lost, never admitted twice, and is admitted once
 * its token is due; what gets through a bucket never passes its rate.
 * fast-check draws a bucket (jobs per minute, burst), a few users sharing a
 * project, and jobs arriving at random instants; an event loop on an
 * injected clock plays the gatekeeper: each job is sent to reserve when it
 * arrives, a throttled one again at its due time (and sometimes early,
 * which must change nothing). At the end every job was reserved exactly
 * once, each user's admissions fit the bucket (in any window of L ms fewer
 * than burst + (L + 1) x jobsPerMinute / 60,000 of them: the exact GCRA bound,
 * less one ms because due times are whole ms rounded up from the exact
 * slot), and a job back at its due time was never throttled by the bucket
 * it had paid.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { scopesForJob } from '../src/accounting/scopes.ts';
import type { RateLimit, ReserveRequest } from '../src/accounting/types.ts';

const NOW = Date.UTC(2026, 10, 25, 12, 0, 0);
let t: TestEnv;
let run = 0;

beforeAll(async () => {
  t = await createTestEnv();
});
afterAll(async () => {
  await t?.close();
});

interface Case {
  user: RateLimit;
  /** A project bucket too, or none. */
  project: RateLimit | null;
  /** Per job: its user (0-2) and when it arrives (ms after NOW). */
  jobs: { user: number; at: number }[];
  /** Per throttled return: come back this many ms early first (0: on time only). */
  early: number[];
}

const rate = fc.record({ jobsPerMinute: fc.constantFrom(1, 7, 60, 120, 6000), burst: fc.integer({ min: 1, max: 5 }) });
const caseArb: fc.Arbitrary<Case> = fc.record({
  user: rate,
  project: fc.option(rate, { freq: 3 }),
  jobs: fc.array(fc.record({ user: fc.nat(2), at: fc.integer({ min: 0, max: 20_000 }) }), { minLength: 1, maxLength: 40 }),
  early: fc.array(fc.constantFrom(0, 0, 1, 500), { minLength: 1, maxLength: 10 }),
});

/** Fewer than burst + (L + 1) x jpm / 60,000 admissions in any closed window of L ms, for sorted times. */
function fits(times: number[], r: RateLimit): boolean {
  for (let i = 0; i < times.length; i++) {
    for (let j = i; j < times.length; j++) if ((j - i + 1 - r.burst) * 60_000 >= (times[j]! - times[i]! + 1) * r.jobsPerMinute) return false;
  }
  return true;
}

async function check(c: Case): Promise<void> {
  const p = `m${run++}`;
  await t.budgets.set(p, 1e12);
  for (let u = 0; u < 3; u++) await t.accounting.definitions.defineRate(`user:${p}u${u}`, c.user);
  if (c.project) await t.accounting.definitions.defineRate(`project:${p}`, c.project);
  const reqs: ReserveRequest[] = c.jobs.map((j, i) => {
    const user = `${p}u${j.user}`;
    return { jobId: `${p}-${i}`, order: i + 1, submittedAt: NOW + j.at, amountGpuMs: 1, scopes: scopesForJob({ project: p, user }).map((s) => s.id), meta: { project: p, user, gpus: 1 } };
  });
  // Events: [time, job index, sent at its due time?], earliest first; ties in submission order.
  const queue: [number, number, boolean][] = c.jobs.map((j, i) => [NOW + j.at, i, false]);
  const admittedAt = new Map<number, number>();
  let returns = 0;
  while (queue.length > 0) {
    queue.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    const [now, i, onTime] = queue.shift()!;
    const [out] = await t.accounting.reserveMany([reqs[i]!], now);
    if (out!.kind === 'reserved') {
      expect(admittedAt.has(i), `job ${i} reserved twice`).toBe(false);
      admittedAt.set(i, now);
    } else if (out!.kind === 'throttled') {
      expect(out!.dueAt).toBeGreaterThan(now);
      if (out!.retried) continue; // back early: it keeps its due time, already queued
      // Back at its due time it may wait once more, for a bucket it had not paid (the other one), never the same.
      if (onTime) expect(out!.over.length).toBe(1);
      queue.push([out!.dueAt, i, true]);
      const early = c.early[returns++ % c.early.length]!;
      if (early > 0) queue.push([out!.dueAt - early, i, false]);
    } else {
      expect.fail(`job ${i}: ${out!.kind}`);
    }
  }
  expect(admittedAt.size).toBe(c.jobs.length);
  for (let u = 0; u < 3; u++) {
    const times = [...admittedAt].filter(([i]) => c.jobs[i]!.user === u).map(([, at]) => at).sort((a, b) => a - b);
    expect(fits(times, c.user), `user ${u}: ${times.map((x) => x - NOW).join(',')}`).toBe(true);
  }
  if (c.project) expect(fits([...admittedAt.values()].sort((a, b) => a - b), c.project)).toBe(true);
  expect((await t.accounting.readScope(`project:${p}`, NOW)).reservedGpuMs).toBe(c.jobs.length);
}

describe('a token bucket against its definition', () => {
  it('admits every job exactly once, never faster than its rate, each once its token is due', async () => {
    await fc.assert(fc.asyncProperty(caseArb, check), { numRuns: 60 });
  });

  it('keeps the project rate when a job over both buckets comes back after another took the project next', async () => {
    // Job 2 is over its user's bucket (7/min) and the project's (60/min) at 0, due 8,572; job 1 takes the
    // project at 7,573. Booked at 0 rather than at its due time, job 2 went through 999 ms after job 1.
    await check({ user: { jobsPerMinute: 7, burst: 1 }, project: { jobsPerMinute: 60, burst: 1 }, jobs: [{ user: 2, at: 0 }, { user: 0, at: 7573 }, { user: 2, at: 0 }], early: [0] });
  });
});

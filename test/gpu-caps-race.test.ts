/**
 * Property: over random caps on GPUs in flight (per project, user, project
 * and GPU type, and for everything) and random jobs, with four gatekeepers
 * racing (four connections sending reserve batches at once), no cap's GPUs
 * in flight pass it; each cap counts exactly the GPUs of the admitted jobs
 * it applies to (worked out here from the jobs' fields); and once every job
 * has ended, every cap is back at zero.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { Accounting } from '../src/accounting/counters.ts';
import { scopesForJob } from '../src/accounting/scopes.ts';
import type { JobMeta, ReserveRequest } from '../src/accounting/types.ts';

const H = 3_600_000;
const NOW = Date.parse('2026-11-25T15:00:00Z');
const TYPES = ['h100', 'a100'];

const capArb = fc.option(fc.integer({ min: 0, max: 10 }), { nil: null });
const worldArb = fc.record({
  projects: fc.array(capArb, { minLength: 1, maxLength: 3 }),
  users: fc.array(capArb, { minLength: 1, maxLength: 3 }),
  types: fc.array(capArb, { minLength: 2, maxLength: 2 }),
  global: capArb,
  jobs: fc.array(
    fc.record({ project: fc.nat(), user: fc.nat(), type: fc.option(fc.nat(), { nil: null }), gpus: fc.integer({ min: 1, max: 6 }), gatekeeper: fc.integer({ min: 0, max: 3 }) }),
    { minLength: 1, maxLength: 50 },
  ),
});

let t: TestEnv;
let conns: Redis[];
let runNo = 0;

beforeAll(async () => {
  t = await createTestEnv();
  conns = [0, 1, 2, 3].map(() => t.connection());
});
afterAll(async () => t?.close());

describe('GPU caps under racing gatekeepers', () => {
  it('never pass a cap; each counts exactly its admitted jobs; all back at zero when they end', async () => {
    await fc.assert(
      fc.asyncProperty(worldArb, async (w) => {
        const prefix = `${t.config.queuePrefix}g${++runNo}`;
        const accs = conns.map((c) => new Accounting(c, prefix, 3600, 'UTC'));
        const a = accs[0]!;
        // Every project has room for every job's hours: only GPUs decide.
        const caps = new Map<string, number>();
        w.projects.forEach((c, i) => c !== null && caps.set(`gpus-project:p${i}`, c));
        w.users.forEach((c, i) => c !== null && caps.set(`gpus-user:u${i}`, c));
        w.types.forEach((c, i) => c !== null && caps.set(`gpus-type:p0/${TYPES[i]}`, c));
        if (w.global !== null) caps.set('gpus-global:all', w.global);
        for (let i = 0; i < w.projects.length; i++) await a.definitions.setLimit(`project:p${i}`, 1000 * H, NOW);
        for (const [scope, max] of caps) await a.definitions.defineCap(scope, { maxGpus: max, peak: null, release: 'auto' }, NOW);

        const jobs = w.jobs.map((j, i) => {
          const meta: JobMeta = { project: `p${j.project % w.projects.length}`, user: `u${j.user % w.users.length}`, gpus: j.gpus, ...(j.type !== null ? { gpuType: TYPES[j.type % 2] } : {}) };
          return { req: { jobId: `j${i}`, amountGpuMs: H, scopes: scopesForJob(meta).map((s) => s.id), meta } as ReserveRequest, gk: j.gatekeeper };
        });
        const outcomes = new Map<string, string>();
        await Promise.all(accs.map(async (acc, g) => {
          const mine = jobs.filter((j) => j.gk === g).map((j) => j.req);
          for (let i = 0; i < mine.length; i += 5) {
            const batch = mine.slice(i, i + 5);
            (await acc.reserveMany(batch, NOW)).forEach((o, k) => outcomes.set(batch[k]!.jobId, o.kind));
          }
        }));

        // What each cap should hold, from the jobs' own fields.
        const applies = (scope: string, m: JobMeta) =>
          scope === 'gpus-global:all' || scope === `gpus-project:${m.project}` || scope === `gpus-user:${m.user}` || scope === `gpus-type:${m.project}/${m.gpuType}`;
        const admitted = jobs.filter((j) => outcomes.get(j.req.jobId) === 'reserved').map((j) => j.req);
        expect(outcomes.size).toBe(jobs.length);
        const scopes = [...caps.keys()];
        const inFlight = await a.inFlight(scopes);
        scopes.forEach((scope, i) => {
          const expected = admitted.filter((r) => applies(scope, r.meta)).reduce((n, r) => n + r.meta.gpus, 0);
          expect({ scope, inFlight: inFlight[i] }).toEqual({ scope, inFlight: expected });
          expect(inFlight[i]).toBeLessThanOrEqual(caps.get(scope)!);
        });

        for (const r of admitted) {
          const rec = (await a.reservation(r.jobId))!;
          await a.settle(r.jobId, rec.scopes, H, 'settle', NOW);
        }
        expect(await a.inFlight(scopes)).toEqual(scopes.map(() => 0));
      }),
      { numRuns: 40 },
    );
  });
});

/**
 * Property: over random mixes of projects, users, quotas, run caps, soft and
 * hard policies and exempt job types, with four gatekeepers racing (four
 * connections sending reserve batches at once), no scope's used + reserved
 * passes where admission stops (the limit, or a soft limit's grace); every
 * counter equals the sum of the jobs admitted against it; exempt jobs are
 * always admitted, never counted, and always recorded; every job is decided
 * exactly once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { unlinkMatching } from './support/infra.ts';
import { Accounting } from '../src/accounting/counters.ts';
import type { ReserveOutcome, ReserveRequest, ScopeDefinition } from '../src/accounting/types.ts';
import { scopesForJob } from '../src/accounting/scopes.ts';

const H = 3_600_000;
const NOW = Date.parse('2026-11-25T15:00:00Z');
const EXEMPT = ['draft', 'regression-test'];

const limitArb = fc.record({
  limitGpuMs: fc.integer({ min: 0, max: 12 }).map((h) => h * H),
  policy: fc.constantFrom<'hard' | 'soft'>('hard', 'soft'),
  gracePercent: fc.option(fc.integer({ min: 0, max: 50 }), { nil: null }),
});
const worldArb = fc.record({
  projects: fc.array(limitArb, { minLength: 1, maxLength: 3 }),
  users: fc.array(fc.option(limitArb, { nil: null }), { minLength: 1, maxLength: 4 }),
  runs: fc.array(fc.option(limitArb, { nil: null }), { maxLength: 2 }),
  exempt: fc.subarray(EXEMPT),
  jobs: fc.array(
    fc.record({
      project: fc.nat(),
      user: fc.nat(),
      run: fc.option(fc.nat(), { nil: null }),
      jobType: fc.constantFrom(undefined, 'draft', 'regression-test', 'render'),
      amount: fc.integer({ min: 1, max: 4 * H }),
      gatekeeper: fc.integer({ min: 0, max: 3 }),
    }),
    { minLength: 1, maxLength: 60 },
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

describe('quotas, budgets, run caps and exemptions under racing gatekeepers', () => {
  it('never admit past a ceiling; counters exact; exempt tracked, never counted', async () => {
    await fc.assert(
      fc.asyncProperty(worldArb, async (w) => {
        const prefix = `${t.config.queuePrefix}r${++runNo}`;
        const admin = new Accounting(t.redis, prefix, 3600);
        const define = (scope: string, l: (typeof w.projects)[number]) =>
          admin.definitions.define(scope, { ...l, period: 'none', rollover: false, rolloverCapGpuMs: null, setAt: 0 } satisfies ScopeDefinition);
        try {
          const limits = new Map<string, (typeof w.projects)[number]>();
          for (const [i, l] of w.projects.entries()) limits.set(`project:p${i}`, l);
          for (const [i, l] of w.users.entries()) if (l) limits.set(`user-day:u${i}`, l);
          for (const [i, l] of w.runs.entries()) if (l) limits.set(`run:p0/r${i}`, l);
          for (const [scope, l] of limits) await define(scope, l);
          for (const type of w.exempt) await admin.definitions.setExempt(type, true);

          const reqs: (ReserveRequest & { gatekeeper: number })[] = w.jobs.map((j, i) => {
            const meta = {
              project: `p${j.project % w.projects.length}`,
              user: `u${j.user % w.users.length}`,
              gpus: 1,
              ...(j.jobType ? { jobType: j.jobType } : {}),
              ...(j.run !== null && w.runs.length > 0 ? { run: `r${j.run % w.runs.length}` } : {}),
            };
            // Runs are capped under project p0 only; elsewhere they are uncapped (and still counted).
            return { jobId: `j${i}`, order: i, amountGpuMs: j.amount, scopes: scopesForJob(meta).map((s) => s.id), meta, gatekeeper: j.gatekeeper };
          });
          // Four gatekeepers, each sending its share in small batches, all at once.
          const outcomes = new Map<string, ReserveOutcome>();
          await Promise.all(
            conns.map(async (c, g) => {
              const mine = reqs.filter((r) => r.gatekeeper === g);
              const acc = new Accounting(c, prefix, 3600);
              for (let i = 0; i < mine.length; i += 5) {
                const batch = mine.slice(i, i + 5);
                (await acc.reserveMany(batch, NOW)).forEach((o, k) => outcomes.set(batch[k]!.jobId, o));
              }
            }),
          );
          expect(outcomes.size).toBe(reqs.length);

          const expected = new Map<string, { counted: number; exempt: number }>();
          for (const r of reqs) {
            const o = outcomes.get(r.jobId)!;
            expect(['reserved', 'held']).toContain(o.kind);
            const exempt = w.exempt.includes(r.meta.jobType ?? '');
            if (exempt) expect(o).toMatchObject({ kind: 'reserved', exempt: true });
            if (o.kind !== 'reserved') continue;
            for (const s of r.scopes) {
              const e = expected.get(s) ?? { counted: 0, exempt: 0 };
              if (exempt) e.exempt += r.amountGpuMs;
              else e.counted += r.amountGpuMs;
              expected.set(s, e);
            }
          }
          const scopes = [...new Set(reqs.flatMap((r) => r.scopes))];
          const states = await admin.scopes(scopes, NOW);
          for (const s of states) {
            const e = expected.get(s.base) ?? { counted: 0, exempt: 0 };
            expect({ scope: s.base, reserved: s.reservedGpuMs, exempt: s.exemptReservedGpuMs }).toEqual({ scope: s.base, reserved: e.counted, exempt: e.exempt });
            if (s.ceilingGpuMs !== null) expect(s.usedGpuMs + s.reservedGpuMs).toBeLessThanOrEqual(s.ceilingGpuMs);
            const l = limits.get(s.base);
            if (l?.policy === 'hard') expect(s.reservedGpuMs).toBeLessThanOrEqual(l.limitGpuMs);
          }
        } finally {
          await unlinkMatching(t.redis, `gk:{${prefix}}:*`);
        }
      }),
      { numRuns: 40 },
    );
  });
});

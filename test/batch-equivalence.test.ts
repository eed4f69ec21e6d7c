/**
 * A batch decides exactly as its jobs sent one per call. fast-check draws
 * organisations (projects with and without a budget, hard and soft, users
 * with and without daily and weekly quotas, run caps, an exempt job type)
 * and two rounds of jobs mixing many users; the same definitions go under
 * two key prefixes on real Redis, one gets each round as one reserve call,
 * the other one call per job, in the same order. After each round both must
 * hold the same: each job's outcome, every counter, every held line, held
 * set and record, and the events (their fields; stream ids differ). Round
 * two starts with the lines round one left, so jobs are also held behind
 * older ones. Users and projects may have submission rate limits: round
 * two comes a little later and sends some of round one's jobs again (a
 * throttled job back early, on time or late). The ledger is left out: a batch writes one entry per chunk
 * by design (src/ledger/writer.ts reads both shapes).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { unlinkMatching } from './support/infra.ts';
import { Accounting } from '../src/accounting/counters.ts';
import type { RateLimit, ReserveRequest, ScopeDefinition } from '../src/accounting/types.ts';

const NOW = Date.UTC(2026, 11, 5, 12);
const PROJECTS = ['p0', 'p1', 'p2'] as const;
const USERS = ['u0', 'u1', 'u2', 'u3', 'u4', 'u5', 'u6', 'u7'] as const;

interface Org {
  /** Per project: null (no budget: an unknown project, its jobs held) or its limit and policy. */
  budgets: ({ limit: number; soft: boolean; grace: number | null; thresholds: number[] | null } | null)[];
  /** Per user: a daily and a weekly quota, or none. */
  quotas: { day: number | null; week: number | null }[];
  /** Run caps of run r0 and r1 of every project (null: none). */
  runCaps: (number | null)[];
  /** Submission rate limits per user and per project (null: none). */
  userRates: (RateLimit | null)[];
  projectRates: (RateLimit | null)[];
}
interface Job {
  project: number;
  user: number;
  run: number | null;
  amount: number;
  exempt: boolean;
}

const limit = fc.integer({ min: 0, max: 24 });
const rateArb: fc.Arbitrary<RateLimit> = fc.record({ jobsPerMinute: fc.constantFrom(1, 7, 60, 600), burst: fc.integer({ min: 1, max: 4 }) });
const orgArb: fc.Arbitrary<Org> = fc.record({
  budgets: fc.array(
    fc.option(fc.record({ limit, soft: fc.boolean(), grace: fc.option(fc.constantFrom(0, 10, 50)), thresholds: fc.option(fc.constantFrom([50], [25, 75], [] as number[])) }), { freq: 4 }),
    { minLength: PROJECTS.length, maxLength: PROJECTS.length },
  ),
  quotas: fc.array(fc.record({ day: fc.option(limit), week: fc.option(limit) }), { minLength: USERS.length, maxLength: USERS.length }),
  runCaps: fc.array(fc.option(limit), { minLength: 2, maxLength: 2 }),
  userRates: fc.array(fc.option(rateArb, { freq: 2 }), { minLength: USERS.length, maxLength: USERS.length }),
  projectRates: fc.array(fc.option(rateArb, { freq: 2 }), { minLength: PROJECTS.length, maxLength: PROJECTS.length }),
});
const jobArb: fc.Arbitrary<Job> = fc.record({
  project: fc.nat(PROJECTS.length - 1),
  user: fc.nat(USERS.length - 1),
  run: fc.option(fc.nat(1), { freq: 3 }),
  amount: fc.integer({ min: 1, max: 6 }),
  exempt: fc.nat(9).map((n) => n < 2),
});
const roundArb = fc.array(jobArb, { minLength: 1, maxLength: 40 });

const def = (limitGpuMs: number, over: Partial<ScopeDefinition> = {}): ScopeDefinition => ({
  limitGpuMs, policy: 'hard', gracePercent: null, period: 'none', rollover: false, rolloverCapGpuMs: null, setAt: 0, ...over,
});

async function defineOrg(acc: Accounting, org: Org): Promise<void> {
  for (const [i, b] of org.budgets.entries()) {
    if (b) await acc.definitions.define(`project:${PROJECTS[i]}`, def(b.limit, { policy: b.soft ? 'soft' : 'hard', gracePercent: b.soft ? b.grace : null, thresholds: b.thresholds }));
  }
  for (const [i, q] of org.quotas.entries()) {
    if (q.day !== null) await acc.definitions.define(`user-day:${USERS[i]}`, def(q.day, { period: 'day' }));
    if (q.week !== null) await acc.definitions.define(`user-week:${USERS[i]}`, def(q.week, { period: 'week' }));
  }
  for (const p of PROJECTS) {
    for (const [r, cap] of org.runCaps.entries()) if (cap !== null) await acc.definitions.define(`run:${p}/r${r}`, def(cap));
  }
  await acc.definitions.setExempt('eval', true);
  for (const [i, r] of org.userRates.entries()) if (r) await acc.definitions.defineRate(`user:${USERS[i]}`, r);
  for (const [i, r] of org.projectRates.entries()) if (r) await acc.definitions.defineRate(`project:${PROJECTS[i]}`, r);
}

/** The requests of a round; ids and submission orders carry on from earlier rounds. */
function requests(jobs: Job[], first: number): ReserveRequest[] {
  return jobs.map((j, k) => {
    const project = PROJECTS[j.project]!;
    const user = USERS[j.user]!;
    const run = j.run === null ? undefined : `${project}/r${j.run}`;
    const scopes = [`project:${project}`, `user-day:${user}`, `user-week:${user}`, ...(run ? [`run:${run}`] : [])];
    const meta = { project, user, gpus: 1, ...(run ? { run } : {}), ...(j.exempt ? { jobType: 'eval' } : {}) };
    return { jobId: `j${first + k}`, order: first + k, submittedAt: NOW - 1000 + first + k, amountGpuMs: j.amount, scopes, meta };
  });
}

/** Everything under a prefix but the ledger, keys without the prefix, values in a comparable form. */
async function state(redis: Redis, acc: Accounting): Promise<Record<string, unknown>> {
  const prefix = acc.keys.prefix;
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', '1000');
    keys.push(...found);
    cursor = next;
  } while (cursor !== '0');
  const out: Record<string, unknown> = {};
  for (const key of keys.sort()) {
    const type = await redis.type(key);
    const name = key.slice(prefix.length);
    if (name === 'ledger') continue;
    // Signalled when the limits were set up (reserve never writes it): its scores are those moments.
    if (name === 'wake') out[name] = (await redis.zrange(key, '0', '-1')).sort();
    else if (type === 'hash') out[name] = await redis.hgetall(key);
    else if (type === 'zset') out[name] = await redis.zrange(key, '0', '-1', 'WITHSCORES');
    else if (type === 'set') out[name] = (await redis.smembers(key)).sort();
    else if (type === 'stream') out[name] = (await redis.xrange(key, '-', '+')).map(([, fields]) => fields);
    else out[name] = type;
  }
  return out;
}

let t: TestEnv;
let run = 0;
beforeAll(async () => {
  t = await createTestEnv();
});
afterAll(async () => {
  await t?.close();
});

/** Round two's jobs sent again (indexes into round one's, in order) and how long after round one it comes (ms). */
async function check(org: Org, rounds: Job[][], again: number[], gapMs: number): Promise<void> {
  const [batched, single] = ['b', 's'].map((side) => new Accounting(t.redis, `${t.config.queuePrefix}eq${run}${side}`, 3600, 'UTC')) as [Accounting, Accounting];
  run++;
  try {
    for (const acc of [batched, single]) await defineOrg(acc, org);
    let first = 1;
    let previous: ReserveRequest[] = [];
    for (const [r, jobs] of rounds.entries()) {
      const now = NOW + r * gapMs;
      const reqs = [...(r === 0 ? [] : [...new Set(again)].sort((a, b) => a - b).flatMap((i) => previous[i] ?? [])), ...requests(jobs, first)];
      first += jobs.length;
      previous = reqs;
      const together = await batched.reserveMany(reqs, now);
      const alone = [];
      for (const req of reqs) alone.push(...(await single.reserveMany([req], now)));
      expect(together, `round ${r + 1}: outcomes`).toEqual(alone);
      expect(await state(t.redis, batched), `round ${r + 1}: what Redis holds`).toEqual(await state(t.redis, single));
    }
  } finally {
    for (const acc of [batched, single]) await unlinkMatching(t.redis, `${acc.keys.prefix}*`);
  }
}

describe('a batch of many users', () => {
  it('decides exactly as its jobs one per call: outcomes, counters, lines, events', async () => {
    const again = fc.array(fc.nat(39), { maxLength: 12 });
    const gap = fc.constantFrom(0, 999, 1000, 8572, 60_000);
    await fc.assert(fc.asyncProperty(orgArb, fc.array(roundArb, { minLength: 2, maxLength: 2 }), again, gap, check), { numRuns: 60 });
  });
});

/**
 * Submission rate limits (token buckets), decided in reserve's one call with
 * an injected now: a burst, then jobs throttled with exact due times; a
 * throttled job back at its due time admitted once, back early throttled
 * again with the same due time and nothing changed, rejected when it comes
 * back no longer counted as throttled; throttled jobs never
 * touch a budget; one user's flood of 1,000 does not hold back another's
 * job in the same batch; a dry run writes nothing; the rebuild restores the
 * limits. (The gatekeeper, the API and the CLI: rate-limits-api.test.ts.)
 *
 * Numbers, worked by hand: 60 jobs/min is one job per 1,000 ms; burst 10
 * lets 10 pass at once; the 11th is due when the first slot frees, 1,000 ms
 * later, the 12th 2,000 ms later, and so on.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { unlinkMatching } from './support/infra.ts';
import { scopesForJob } from '../src/accounting/scopes.ts';
import { RateLimits } from '../src/accounting/rate-limits.ts';
import { decideAdmissions } from '../src/accounting/admission.ts';
import { rebuild } from '../src/accounting/rebuild.ts';
import { SYSTEM } from '../src/accounting/budgets.ts';
import { ChangeFailed } from '../src/audit/change.ts';
import type { ReserveOutcome, ReserveRequest } from '../src/accounting/types.ts';
import { scriptSource } from '../src/redis/scripts.ts';
import { THROTTLED_KEEP_MS } from '../src/redis/wire.ts';

const NOW = Date.UTC(2026, 10, 25, 12, 0, 0);
const HOUR = 3_600_000;
let t: TestEnv;
let limits: RateLimits;
let seq = 0;

beforeAll(async () => {
  t = await createTestEnv();
  limits = new RateLimits(t.pool, t.accounting, t.clock, t.log);
});
afterAll(async () => {
  await t?.close();
});

/** A one-hour job of `user` in `project`, with a fresh id (or the id given: the same job again). */
function job(user: string, project: string, id = `j${++seq}`): ReserveRequest {
  return {
    jobId: id, order: Number(id.slice(1)), submittedAt: NOW - 60_000, amountGpuMs: HOUR,
    scopes: scopesForJob({ project, user }).map((s) => s.id), meta: { project, user, gpus: 1 },
  };
}
const kinds = (out: ReserveOutcome[]) => out.map((o) => o.kind);
const dues = (out: ReserveOutcome[]) => out.flatMap((o) => (o.kind === 'throttled' ? [o.dueAt - NOW] : []));

/** Every key of this file's prefix with its value (hashes; streams by length) and whether it expires: what a call changed. */
async function snapshot(): Promise<Record<string, unknown>> {
  const keys = (await t.redis.keys(`${t.accounting.keys.prefix}*`)).sort();
  const types = (await keys.reduce((p, k) => p.type(k), t.redis.pipeline()).exec())!.map(([, v]) => v as string);
  const p = t.redis.pipeline();
  keys.forEach((k, i) => (types[i] === 'hash' ? p.hgetall(k) : types[i] === 'stream' ? p.xlen(k) : p.type(k)).pttl(k));
  const r = (await p.exec())!.map(([, v]) => v);
  return Object.fromEntries(keys.map((k, i) => [k, [r[2 * i], (r[2 * i + 1] as number) > 0 ? 'expires' : r[2 * i + 1]]]));
}

describe('a burst, then throttled', () => {
  it('admits the burst and throttles the rest with exact due times, booking a slot each', async () => {
    await t.budgets.set('p1', 100 * HOUR);
    await limits.set('user', 'ann', { jobsPerMinute: 60, burst: 10 }, SYSTEM, null);
    const out = await t.accounting.reserveMany(Array.from({ length: 14 }, () => job('ann', 'p1')), NOW);
    expect(kinds(out).slice(0, 10)).toEqual(Array(10).fill('reserved'));
    // The 11th waits for the first slot (1,000 ms); each after it books the next.
    expect(dues(out)).toEqual([1000, 2000, 3000, 4000]);
    expect(out[10]).toEqual({ kind: 'throttled', dueAt: NOW + 1000, retried: false, over: [{ scope: 'user:ann', jobsPerMinute: 60, burst: 10 }] });
    // 10 admitted hours, none for the throttled four.
    expect((await t.accounting.readScope('project:p1', NOW)).reservedGpuMs).toBe(10 * HOUR);
    expect((await limits.get('user', 'ann'))!.tokensNow).toBe(0);
  });

  it('says why in the words the job log carries', async () => {
    await t.budgets.set('p2', 100 * HOUR);
    await limits.set('user', 'bea', { jobsPerMinute: 60, burst: 1 }, SYSTEM, null);
    const data = { project: 'p2', user: 'bea', estimatedGpuHours: 1, gpus: 1 };
    const d = await decideAdmissions(t.accounting, [1, 2].map((n) => ({ intakeJobId: `b${n}`, data, order: n, submittedAt: NOW })), NOW + 3_004_123 - 3_000_000);
    expect(d[1]).toMatchObject({ kind: 'throttled', reason: 'throttled: user bea over 60 jobs/min (burst 1); due 12:00:05.123 UTC' });
  });
});

describe('a throttled job comes back', () => {
  it('early: throttled again with the same due time, changing nothing; at its due time: admitted once', async () => {
    await t.budgets.set('p3', 100 * HOUR);
    await limits.set('user', 'cy', { jobsPerMinute: 60, burst: 2 }, SYSTEM, null);
    const [a, b, c] = [job('cy', 'p3'), job('cy', 'p3'), job('cy', 'p3')];
    expect(kinds(await t.accounting.reserveMany([a, b, c], NOW))).toEqual(['reserved', 'reserved', 'throttled']);
    expect(await t.redis.zscore(t.accounting.keys.throttled, c.jobId)).toBe(String(NOW + 1000));
    const before = await snapshot();
    const early = await t.accounting.reserveMany([c], NOW + 999);
    expect(early).toEqual([{ kind: 'throttled', dueAt: NOW + 1000, retried: true, over: [{ scope: 'user:cy', jobsPerMinute: 60, burst: 2 }] }]);
    expect(await snapshot()).toEqual(before);

    // At its due time its slot is paid: no new job of cy's gets in before it, and it is reserved.
    const [back, newer] = await t.accounting.reserveMany([c, job('cy', 'p3')], NOW + 1000);
    expect(back!.kind).toBe('reserved');
    expect(newer).toMatchObject({ kind: 'throttled', dueAt: NOW + 2000 });
    expect(await t.redis.hgetall(t.accounting.keys.reservation(c.jobId))).not.toHaveProperty('due');
    expect(await t.redis.pttl(t.accounting.keys.reservation(c.jobId))).toBe(-1);
    expect(await t.redis.zscore(t.accounting.keys.throttled, c.jobId)).toBeNull();
    // Again (a retry): already reserved, counted once.
    expect((await t.accounting.reserveMany([c], NOW + 5000))[0]!.kind).toBe('already');
    expect((await t.accounting.readScope('project:p3', NOW)).reservedGpuMs).toBe(3 * HOUR);
  });

  it('rejected when it comes back (its GPU type or its project refused now): no longer throttled, its record gone', async () => {
    await t.budgets.set('narrow', 100 * HOUR);
    await limits.set('user', 'rejo', { jobsPerMinute: 60, burst: 1 }, SYSTEM, null);
    const typed = (j: ReserveRequest): ReserveRequest => ({ ...j, meta: { ...j.meta, gpuType: 'h100' } });
    const [a, b] = [typed(job('rejo', 'narrow')), typed(job('rejo', 'narrow-nobudget'))];
    const waiting = await t.accounting.throttledCount(NOW);
    expect(kinds(await t.accounting.reserveMany([typed(job('rejo', 'narrow')), a, b], NOW))).toEqual(['reserved', 'throttled', 'throttled']);
    expect(await t.accounting.throttledCount(NOW)).toBe(waiting + 2);
    // While they wait, narrow is allowed A100s only, and the gatekeepers now reject jobs of a project without a budget.
    await t.accounting.definitions.defineAllowedGpuTypes('narrow', ['a100']);
    const back = await t.accounting.reserveMany([a, b], NOW + 2000, 'reject');
    expect(back).toEqual([{ kind: 'unpriced', gpuType: 'h100', why: 'not-allowed' }, { kind: 'rejected', scope: 'project:narrow-nobudget' }]);
    expect(await t.accounting.throttledCount(NOW)).toBe(waiting);
    expect(await t.redis.exists(t.accounting.keys.reservation(a.jobId), t.accounting.keys.reservation(b.jobId))).toBe(0);
  });

  it('after a rename (the queue handed its id out again) it is a new job', async () => {
    await t.budgets.set('p4', 100 * HOUR);
    await limits.set('user', 'dee', { jobsPerMinute: 1, burst: 1 }, SYSTEM, null);
    const first = job('dee', 'p4');
    const second = { ...job('dee', 'p4'), jobId: 'k1', order: 1 };
    await t.accounting.reserveMany([first, { ...second, submittedAt: NOW - 5 }], NOW);
    const again = await t.accounting.reserveMany([{ ...second, submittedAt: NOW - 1 }], NOW + 60_000);
    expect(again[0]).toMatchObject({ kind: 'throttled', dueAt: NOW + 120_000, retried: false, reservationId: 'k1@' + String(NOW - 1) });
  });
});

describe('budgets and buckets', () => {
  it('a throttled job never touches a budget, even one it would not fit', async () => {
    await t.budgets.set('p5', HOUR);
    await limits.set('user', 'eve', { jobsPerMinute: 60, burst: 1 }, SYSTEM, null);
    const out = await t.accounting.reserveMany([job('eve', 'p5'), job('eve', 'p5'), job('eve', 'nobudget')], NOW);
    expect(kinds(out)).toEqual(['reserved', 'throttled', 'throttled']);
    const s = await t.accounting.readScope('project:p5', NOW);
    expect([s.reservedGpuMs, s.usedGpuMs]).toEqual([HOUR, 0]);
    expect(await t.redis.exists(t.accounting.keys.scope('project:nobudget'))).toBe(0);
    expect(await t.accounting.heldIds()).toEqual([]);
  });

  it('over both buckets it books both; over the user only, the project keeps its tokens', async () => {
    await t.budgets.set('p6', 100 * HOUR);
    await limits.set('user', 'fay', { jobsPerMinute: 60, burst: 1 }, SYSTEM, null);
    await limits.set('project', 'p6', { jobsPerMinute: 120, burst: 3 }, SYSTEM, null);
    // fay: 1 passes both; 2 is over fay (due 1,000) only; project has 2 tokens left.
    const out = await t.accounting.reserveMany([job('fay', 'p6'), job('fay', 'p6')], NOW);
    expect(kinds(out)).toEqual(['reserved', 'throttled']);
    expect((await limits.get('project', 'p6'))!.tokensNow).toBe(2);
    // gus takes the project's last two; then gus's third is over the project
    // alone (500 ms a job), and fay's next over both: due at the later slot.
    const late = job('fay', 'p6');
    const more = await t.accounting.reserveMany([job('gus', 'p6'), job('gus', 'p6'), job('gus', 'p6'), late], NOW);
    expect(kinds(more)).toEqual(['reserved', 'reserved', 'throttled', 'throttled']);
    expect(more[2]).toMatchObject({ dueAt: NOW + 500, over: [{ scope: 'project:p6', jobsPerMinute: 120, burst: 3 }] });
    expect(more[3]).toMatchObject({ dueAt: NOW + 2000, over: [{ scope: 'user:fay' }, { scope: 'project:p6' }] });
    expect(await t.redis.hget(t.accounting.keys.reservation(late.jobId), 'paid')).toBe('user:fay,project:p6');
  });

  it("one user's flood of 1,000 does not delay another user's job in the same batch", async () => {
    await t.budgets.set('p7', 10_000 * HOUR);
    await limits.set('user', 'hal', { jobsPerMinute: 60, burst: 10 }, SYSTEM, null);
    await limits.set('project', 'p7', { jobsPerMinute: 600, burst: 20 }, SYSTEM, null);
    const flood = Array.from({ length: 1000 }, () => job('hal', 'p7'));
    const out = await t.accounting.reserveMany([...flood, job('ivy', 'p7')], NOW);
    expect(kinds(out).filter((k) => k === 'reserved')).toHaveLength(11);
    expect(out.at(-1)!.kind).toBe('reserved');
    expect(dues(out).at(-1)).toBe(990 * 1000);
    // The project paid only for what it admitted: 20 - 10 (hal) - 1 (ivy).
    expect((await limits.get('project', 'p7'))!.tokensNow).toBe(9);
  });

  it('a dry run says which would be throttled and writes nothing', async () => {
    await t.budgets.set('p8', 100 * HOUR);
    await limits.set('user', 'jo', { jobsPerMinute: 30, burst: 2 }, SYSTEM, null);
    const before = await snapshot();
    const dry = await t.accounting.dryRun([job('jo', 'p8'), job('jo', 'p8'), job('jo', 'p8'), job('jo', 'p8')], NOW);
    expect(kinds(dry.outcomes)).toEqual(['reserved', 'reserved', 'throttled', 'throttled']);
    expect(dues(dry.outcomes)).toEqual([2000, 4000]);
    expect(await snapshot()).toEqual(before);
  });

  it('a changed limit keeps the bucket as it was (no fresh burst); a new scale keeps the instant', async () => {
    await t.budgets.set('p9', 100 * HOUR);
    await limits.set('user', 'kim', { jobsPerMinute: 7, burst: 1 }, SYSTEM, null);
    await t.accounting.reserveMany([job('kim', 'p9')], NOW);
    // 7/min: the next slot is at 60,000 / 7 = 8,571.43 ms; at 14/min it is still then (rounded up to the ms).
    await limits.set('user', 'kim', { jobsPerMinute: 14, burst: 1 }, SYSTEM, null);
    expect(dues(await t.accounting.reserveMany([job('kim', 'p9')], NOW))).toEqual([8572]);
  });
});

describe('an admin change', () => {
  it('that fails at COMMIT, after Redis was written, leaves both stores as they were and no audit row', async () => {
    await limits.set('user', 'zed', { jobsPerMinute: 60, burst: 10 }, SYSTEM, null);
    await t.pool.query(`CREATE FUNCTION injected_failure() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$`);
    await t.pool.query(`CREATE CONSTRAINT TRIGGER fail_at_commit AFTER INSERT ON audit DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION injected_failure()`);
    try {
      await expect(limits.set('user', 'zed', { jobsPerMinute: 1, burst: 1 }, SYSTEM, null)).rejects.toThrow(ChangeFailed);
      await expect(limits.remove('user', 'zed', SYSTEM, null)).rejects.toThrow(ChangeFailed);
      await expect(limits.set('user', 'zoe', { jobsPerMinute: 1, burst: 1 }, SYSTEM, null)).rejects.toThrow(ChangeFailed);
    } finally {
      await t.pool.query('DROP TRIGGER fail_at_commit ON audit');
    }
    expect((await t.accounting.definitions.rate('user:zed'))!.limit).toEqual({ jobsPerMinute: 60, burst: 10 });
    expect(await limits.get('user', 'zed')).toMatchObject({ jobsPerMinute: 60, burst: 10 });
    expect(await t.accounting.definitions.rate('user:zoe')).toBeNull();
    expect(await t.accounting.definitions.rateScopes()).not.toContain('user:zoe');
    expect((await t.pool.query(`SELECT count(*)::int AS n FROM audit WHERE target IN ('user:zed', 'user:zoe')`)).rows[0].n).toBe(1);
  });
});

describe('the wire', () => {
  it("keeps a throttled job's record as long as the gauge counts it", () => {
    expect(scriptSource('reserve')).toContain(`local THROTTLED_KEEP_MS = ${THROTTLED_KEEP_MS} `);
  });
});

describe('rebuild', () => {
  it('restores the limits from Postgres (their buckets start full) and drops ones Postgres does not have', async () => {
    await limits.set('user', 'lee', { jobsPerMinute: 60, burst: 5 }, SYSTEM, null);
    await limits.set('project', 'p10', { jobsPerMinute: 600, burst: 50 }, SYSTEM, null);
    await t.budgets.set('p10', 100 * HOUR);
    await t.accounting.reserveMany([job('lee', 'p10'), job('lee', 'p10')], NOW);
    await unlinkMatching(t.redis, `${t.accounting.keys.prefix}*`);
    await t.accounting.definitions.defineRate('user:ghost', { jobsPerMinute: 1, burst: 1 });
    await rebuild({ redis: t.redis, accounting: t.accounting, budgets: t.budgets, pool: t.pool, heldQueue: null, intakeQueue: null, settledRetainSeconds: 3600, now: NOW });
    expect((await t.accounting.definitions.rate('user:lee'))!.limit).toEqual({ jobsPerMinute: 60, burst: 5 });
    expect((await t.accounting.definitions.rate('project:p10'))!.limit).toEqual({ jobsPerMinute: 600, burst: 50 });
    expect(await t.accounting.definitions.rate('user:ghost')).toBeNull();
    expect((await limits.get('user', 'lee'))!.tokensNow).toBe(5);
  });
});

/**
 * Rates, usage factors and limits in three units, on a real Redis: the
 * reserve and settle scripts charge each scope in its unit, exactly, at the
 * price a job was admitted with. Expected charges come from the rule as
 * written in docs/design.md (ceil(g * factor * rate / 3.6e9), in BigInt),
 * not from the scripts' limb arithmetic.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createTestEnv, TestClock, type TestEnv } from './support/env.ts';
import { HeldJobs } from '../src/admin/held.ts';
import type { JobMeta, ScopeDefinition } from '../src/accounting/types.ts';
import type { LimitUnit } from '../src/accounting/pricing.ts';
import { decideAdmissions } from '../src/accounting/admission.ts';
import { Accounting } from '../src/accounting/counters.ts';
import { PriceList } from '../src/accounting/price-list.ts';

let t: TestEnv;
beforeAll(async () => {
  t = await createTestEnv();
});
afterAll(async () => t?.close());

const now = 1_700_000_000_000;
const HOUR = 3_600_000;
let n = 0;

/** The rule: ceil(g * f * r / (3,600,000 * 1000)) in each unit; GPU-ms ceil(g * f / 1000). */
function expected(g: number, rate: { u: number; d: number }, f: number): [bigint, bigint, bigint] {
  const ceil = (a: bigint, b: bigint) => (a + b - 1n) / b;
  const gf = BigInt(g) * BigInt(f);
  return [ceil(gf, 1000n), ceil(gf * BigInt(rate.u), 3_600_000_000n), ceil(gf * BigInt(rate.d), 3_600_000_000n)];
}

/** Rate card entries as the scripts read them (the 'rates' hash). */
async function setRates(a: Accounting, rates: Record<string, [from: number, u: number, d: number][]>): Promise<void> {
  await t.redis.unlink(a.keys.rates);
  for (const [type, list] of Object.entries(rates)) await t.redis.hset(a.keys.rates, type, list.map((e) => e.join(':')).join(';'));
}

function limit(amount: number, unit: LimitUnit): ScopeDefinition {
  return { limitGpuMs: amount, unit, policy: 'hard', gracePercent: null, period: 'none', rollover: false, rolloverCapGpuMs: null, setAt: 0 };
}

const counted = async (a: Accounting, scope: string) => (await a.scopes([scope], now))[0]!;

describe('pricing', () => {
  it('charges an H100 hour at its rate: units and dollars side by side, the USD budget holding at $8.20', async () => {
    const a = t.accounting;
    const p = `usd${++n}`;
    await setRates(a, { h100: [[0, 3000, 4_100_000]], a100: [[0, 2000, 2_500_000]] });
    await a.definitions.define(`project:${p}`, limit(8_200_000, 'usd'), null);
    const meta = (gpuType: string): JobMeta => ({ project: p, user: 'u', gpuType, gpus: 1 });
    const out = await a.reserveMany([
      { jobId: `${p}-1`, amountGpuMs: HOUR, scopes: [`project:${p}`], meta: meta('h100') },
      { jobId: `${p}-2`, amountGpuMs: HOUR, scopes: [`project:${p}`], meta: meta('h100') },
      { jobId: `${p}-3`, amountGpuMs: HOUR, scopes: [`project:${p}`], meta: meta('h100') },
    ], now);
    expect(out[0]).toMatchObject({ kind: 'reserved', charges: { gpuMs: HOUR, unitsMilli: 3000, usdMicro: 4_100_000 } });
    expect(out[1]).toMatchObject({ kind: 'reserved' });
    // $8.20 used; a third H100 hour ($4.10) would pass it.
    expect(out[2]).toMatchObject({ kind: 'held', shortfalls: [{ scope: `project:${p}`, unit: 'usd', limitGpuMs: 8_200_000, reservedGpuMs: 8_200_000, neededGpuMs: 4_100_000 }] });
    const s = await counted(a, `project:${p}`);
    expect(s.unit).toBe('usd');
    expect(s.counted).toEqual({ gpuHours: { used: 0, reserved: 2 * HOUR }, units: { used: 0, reserved: 6000 }, usd: { used: 0, reserved: 8_200_000 } });
  });

  it('settles at the rate a job was admitted with, whatever the card says by then', async () => {
    const a = t.accounting;
    const p = `rr${++n}`;
    await setRates(a, { a100: [[0, 2000, 2_000_000]] });
    await a.definitions.define(`project:${p}`, limit(1_000_000_000, 'units'), null);
    const meta: JobMeta = { project: p, user: 'u', gpuType: 'a100', gpus: 1 };
    const [first] = await a.reserveMany([{ jobId: `${p}-1`, amountGpuMs: HOUR, scopes: [`project:${p}`], meta }], now);
    expect(first).toMatchObject({ kind: 'reserved' });
    // The price triples while it runs.
    await setRates(a, { a100: [[0, 2000, 2_000_000], [now + 1, 6000, 6_000_000]] });
    await a.settle(`${p}-1`, (first as { scopes: string[] }).scopes, 2 * HOUR, 'settle', now + 10);
    let s = await counted(a, `project:${p}`);
    expect(s.counted).toEqual({ gpuHours: { used: 2 * HOUR, reserved: 0 }, units: { used: 4000, reserved: 0 }, usd: { used: 4_000_000, reserved: 0 } });
    // A job admitted after the change pays the new price.
    const [second] = await a.reserveMany([{ jobId: `${p}-2`, amountGpuMs: HOUR, scopes: [`project:${p}`], meta }], now + 20);
    expect(second).toMatchObject({ kind: 'reserved', charges: { gpuMs: HOUR, unitsMilli: 6000, usdMicro: 6_000_000 } });
    s = await counted(a, `project:${p}`);
    expect(s.counted.units).toEqual({ used: 4000, reserved: 6000 });
  });

  it('counts a job type at its usage factor, and one of factor 0 nowhere but apart', async () => {
    const a = t.accounting;
    const p = `uf${++n}`;
    await setRates(a, {});
    await t.redis.hset(a.keys.factors, `half-${p}`, '500', `free-${p}`, '0');
    await a.definitions.define(`project:${p}`, limit(10 * HOUR, 'gpuHours'), null);
    const meta = (jobType: string): JobMeta => ({ project: p, user: 'u', jobType, gpus: 1 });
    const out = await a.reserveMany([
      { jobId: `${p}-1`, amountGpuMs: 3 * HOUR, scopes: [`project:${p}`], meta: meta(`half-${p}`) },
      { jobId: `${p}-2`, amountGpuMs: 3 * HOUR, scopes: [`project:${p}`], meta: meta(`free-${p}`) },
      { jobId: `${p}-3`, amountGpuMs: 3 * HOUR, scopes: [`project:${p}`], meta: meta('train') },
    ], now);
    expect(out.map((o) => o.kind === 'reserved' && [o.charges.gpuMs, o.exempt])).toEqual([[1.5 * HOUR, false], [0, true], [3 * HOUR, false]]);
    const s = await counted(a, `project:${p}`);
    expect(s.reservedGpuMs).toBe(4.5 * HOUR);
    expect(s.exemptReservedGpuMs).toBe(3 * HOUR);
  });

  it('takes the default rate for a GPU type with none, or rejects it naming the types that have one', async () => {
    const p = `uk${++n}`;
    await setRates(t.accounting, { h100: [[0, 3000, 4_000_000]], a100: [[0, 2000, 2_500_000]], '*': [[0, 500, 1_000_000]] });
    await t.accounting.definitions.define(`project:${p}`, limit(10 * HOUR, 'gpuHours'), null);
    const data = { project: p, user: 'u', gpuType: 'tpu-v9', gpus: 1, estimatedGpuHours: 1 };
    const [byDefault] = await decideAdmissions(t.accounting, [{ intakeJobId: `${p}-1`, data, order: 1 }], now);
    expect(byDefault).toMatchObject({ kind: 'admitted', admission: { charged: { gpuHours: 1, units: 0.5, usd: 1 } } });
    const strict = new Accounting(t.redis, t.config.queuePrefix, 3600, 'UTC', 'reject');
    const [rejected] = await decideAdmissions(strict, [{ intakeJobId: `${p}-2`, data, order: 2 }], now);
    expect(rejected).toEqual({
      kind: 'rejected',
      reason: 'gpuType "tpu-v9" has no rate; known GPU types: a100, h100 (jobs without a known GPU type are rejected: UNKNOWN_GPU_TYPE_POLICY=reject)',
    });
    // Rejected before anything was counted.
    expect((await counted(t.accounting, `project:${p}`)).counted.gpuHours.reserved).toBe(HOUR);
  });

  it('rejects a held job of a type with no rate when released once the policy is to reject such jobs; an override admits one at the default rate', async () => {
    const p = `ukheld${++n}`;
    await setRates(t.accounting, { h100: [[0, 3000, 4_000_000]], '*': [[0, 500, 1_000_000]] });
    await t.accounting.definitions.define(`project:${p}`, limit(0, 'gpuHours'), null);
    const meta = (gpuType: string): JobMeta => ({ project: p, user: 'u', gpuType, gpus: 1 });
    // Held under the default policy (priced at the default rate), then the gatekeepers restart with UNKNOWN_GPU_TYPE_POLICY=reject.
    const held = await t.accounting.reserveMany(['tpu-v9', 'h100', 'tpu-v9'].map((gpuType, i) => ({ jobId: `${p}-${i + 1}`, amountGpuMs: HOUR, scopes: [`project:${p}`], meta: meta(gpuType) })), now);
    expect(held.map((o) => o.kind)).toEqual(['held', 'held', 'held']);
    await t.accounting.definitions.define(`project:${p}`, limit(10 * HOUR, 'gpuHours'), null);
    const strict = new HeldJobs({ ...t.config, unknownGpuTypePolicy: 'reject' }, t.redis, t.pool, new TestClock(now + 1), t.log);
    try {
      const r = await strict.release({ ids: [`${p}-1`, `${p}-2`] }, { name: 'ops', role: 'admin' });
      expect(r).toMatchObject({
        admitted: [`${p}-2`],
        rejected: [{ jobId: `${p}-1`, reason: 'gpuType "tpu-v9" has no rate; known GPU types: h100 (jobs without a known GPU type are rejected: UNKNOWN_GPU_TYPE_POLICY=reject)' }],
      });
      expect(await t.accounting.reservation(`${p}-1`)).toMatchObject({ state: 'cancelled' });
      await strict.override(`${p}-3`, { name: 'ops', role: 'admin' }, 'a TPU run we know about');
    } finally {
      await strict.close();
    }
    // The h100 hour at its rate, the overridden TPU hour at the default's: 3 + 0.5 units.
    expect((await counted(t.accounting, `project:${p}`)).counted.units).toEqual({ used: 0, reserved: 3500 });
  });

  it('takes "*", the default rate\'s field, for no GPU type: a job of that type is of an unknown type', async () => {
    // The contract refuses gpuType '*' now; a job held before it did still reaches reserve and preflight.
    const p = `star${++n}`;
    await setRates(t.accounting, { h100: [[0, 3000, 4_000_000]], '*': [[0, 500, 1_000_000]] });
    await t.accounting.definitions.define(`project:${p}`, limit(10 * HOUR, 'gpuHours'), null);
    const data = { project: p, user: 'u', gpuType: '*', gpus: 1, estimatedGpuHours: 1 };
    const strict = new Accounting(t.redis, t.config.queuePrefix, 3600, 'UTC', 'reject');
    const [rejected] = await decideAdmissions(strict, [{ intakeJobId: `${p}-1`, data, order: 1 }], now);
    expect(rejected).toMatchObject({ kind: 'rejected', reason: expect.stringMatching(/^gpuType "\*" has no rate; known GPU types: h100 /) });
    expect((await PriceList.read(t.accounting.definitions, now)).rateFor('*')).toEqual({ rate: { unitsMilli: 500, usdMicro: 1_000_000 }, known: false });
  });

  it('uses a rate only from the moment it takes effect', async () => {
    const p = `ef${++n}`;
    await setRates(t.accounting, { l4: [[0, 1000, 500_000], [now + HOUR, 1500, 700_000]] });
    await t.accounting.definitions.define(`project:${p}`, limit(1_000_000_000, 'usd'), null);
    const meta: JobMeta = { project: p, user: 'u', gpuType: 'l4', gpus: 1 };
    const [before] = await t.accounting.reserveMany([{ jobId: `${p}-1`, amountGpuMs: HOUR, scopes: [`project:${p}`], meta }], now + HOUR - 1);
    const [after] = await t.accounting.reserveMany([{ jobId: `${p}-2`, amountGpuMs: HOUR, scopes: [`project:${p}`], meta }], now + HOUR);
    expect([before!, after!].map((o) => o.kind === 'reserved' && o.charges.usdMicro)).toEqual([500_000, 700_000]);
  });

  it('keeps charges exact where g * factor * rate passes 2^53: 10,000 GPU-hours at x100 and $1,000 an hour', async () => {
    const p = `big${++n}`;
    await setRates(t.accounting, { x: [[0, 999_999_999, 1_000_000_000]] });
    await t.redis.hset(t.accounting.keys.factors, `heavy-${p}`, '100000');
    const amount = 10_000 * HOUR - 7; // no round number hides a lost digit
    const meta: JobMeta = { project: p, user: 'u', gpuType: 'x', jobType: `heavy-${p}`, gpus: 1 };
    await t.accounting.definitions.define(`project:${p}`, limit(Number.MAX_SAFE_INTEGER, 'gpuHours'), null);
    const [o] = await t.accounting.reserveMany([{ jobId: `${p}-1`, amountGpuMs: amount, scopes: [`project:${p}`], meta }], now);
    // g * f * rate is about 3.6e24; the charges (worked out in Python's big integers) are below 2^53.
    const want = [3_599_999_999_300, 999_999_998_805_556, 999_999_999_805_556];
    expect(expected(amount, { u: 999_999_999, d: 1_000_000_000 }, 100_000).map(Number)).toEqual(want);
    const s = await counted(t.accounting, `project:${p}`);
    expect([s.counted.gpuHours.reserved, s.counted.units.reserved, s.counted.usd.reserved]).toEqual(want);
    expect(o).toMatchObject({ kind: 'reserved', charges: { gpuMs: want[0], unitsMilli: want[1], usdMicro: want[2] } });
  });

  it('rejects a job whose charge passes 2^53 and admits the rest of its batch; settles one that ran past it at 2^53 - 1', async () => {
    const p = `huge${++n}`;
    await setRates(t.accounting, { x: [[0, 999_999_999, 1_000_000_000]] });
    await t.redis.hset(t.accounting.keys.factors, `heavy-${p}`, '100000');
    await t.accounting.definitions.define(`project:${p}`, limit(Number.MAX_SAFE_INTEGER, 'gpuHours'), null);
    const data = (hours: number) => ({ project: p, user: 'u', gpuType: 'x', jobType: `heavy-${p}`, gpus: 1, estimatedGpuHours: hours });
    // 100,000 GPU-hours at x100 and $1,000 an hour: $10,000,000,000, 10^16 micro-dollars.
    const [huge, small] = await decideAdmissions(t.accounting, [{ intakeJobId: `${p}-1`, data: data(100_000), order: 1 }, { intakeJobId: `${p}-2`, data: data(1), order: 2 }], now);
    expect(huge).toEqual({ kind: 'rejected', reason: `its charge at "x"'s rate and its job type's usage factor passes 2^53 milli-units or micro-dollars, more than a counter holds exactly; submit it as smaller jobs` });
    expect(small).toMatchObject({ kind: 'admitted' });
    const scopes = (small as { admission: { scopes: string[] } }).admission.scopes;
    // It ran 100,000 GPU-hours: GPU-ms x100 still fit; units and dollars are counted as 2^53 - 1.
    const settled = await t.accounting.settle(`${p}-2`, scopes, 100_000 * HOUR, 'settle', now + 1, 'reported by the GPU worker');
    expect(settled).toEqual({ kind: 'settled', reservedGpuMs: HOUR, actualGpuMs: 100_000 * HOUR, capped: 'ud' });
    const s = await counted(t.accounting, `project:${p}`);
    expect([s.counted.gpuHours.used, s.counted.units.used, s.counted.usd.used]).toEqual([100_000 * HOUR * 100, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER]);
    expect([s.counted.gpuHours.reserved, s.counted.units.reserved, s.counted.usd.reserved]).toEqual([0, 0, 0]);
    const f = (await t.redis.xrevrange(t.accounting.keys.ledger, '+', '-', 'COUNT', 1))[0]![1];
    const field = (name: string) => f[f.indexOf(name) + 1];
    expect([field('jobId'), field('note')]).toEqual([`${p}-2`, 'reported by the GPU worker; charge past 2^53 in unit ud: counted as 2^53 - 1']);
  });

  it('rejects a held job whose charge now passes 2^53 when it is released, even by an override', async () => {
    const p = `heldhuge${++n}`;
    await setRates(t.accounting, { x: [[0, 999_999_999, 1_000_000_000]] });
    await t.accounting.definitions.define(`project:${p}`, limit(HOUR, 'gpuHours'), null);
    const meta: JobMeta = { project: p, user: 'u', gpuType: 'x', jobType: `heavy-${p}`, gpus: 1 };
    // 100,000 GPU-hours at $1,000 an hour fits a counter ($10^8); held by the one-hour budget.
    const [o] = await t.accounting.reserveMany([{ jobId: `${p}-1`, amountGpuMs: 100_000 * HOUR, scopes: [`project:${p}`], meta }], now);
    expect(o).toMatchObject({ kind: 'held' });
    // Its job type now counts x100: $10^10, past 2^53 micro-dollars.
    await t.redis.hset(t.accounting.keys.factors, `heavy-${p}`, '100000');
    expect(await t.accounting.release([`${p}-1`], 'override', 'test', now + 1)).toEqual([{ kind: 'rejected', gpuType: 'x', why: 'too-costly' }]);
    expect(await t.accounting.heldIds(p)).toEqual([]);
    expect(await t.accounting.reservation(`${p}-1`)).toMatchObject({ state: 'cancelled' });
    expect((await counted(t.accounting, `project:${p}`)).counted.usd).toEqual({ used: 0, reserved: 0 });
  });

  it('holds every counter at the sum of its jobs\' charges in each unit, and no scope past its limit in its unit (random cards, factors, units, jobs)', async () => {
    const a = t.accounting;
    const UNITS: LimitUnit[] = ['gpuHours', 'units', 'usd'];
    const rate = fc.record({ u: fc.integer({ min: 0, max: 1_000_000_000 }), d: fc.integer({ min: 0, max: 1_000_000_000 }) });
    const job = fc.record({
      amount: fc.integer({ min: 1, max: 50 * HOUR }),
      gpuType: fc.constantFrom('t4', 'a100', 'h100', 'b200', 'none'),
      jobType: fc.constantFrom(0, 1, 2),
      scopes: fc.subarray([0, 1, 2], { minLength: 1 }),
      actual: fc.option(fc.integer({ min: 0, max: 100 * HOUR }), { nil: undefined }),
    });
    await fc.assert(
      fc.asyncProperty(
        fc.record({ t4: rate, a100: rate, h100: rate, b200: rate, dflt: rate }),
        fc.tuple(fc.integer({ min: 0, max: 100_000 }), fc.constantFrom(0, 500, 1000, 2000), fc.integer({ min: 0, max: 3000 })),
        fc.tuple(...[0, 1, 2].map(() => fc.record({ unit: fc.constantFrom(...UNITS), amount: fc.integer({ min: 0, max: 2_000_000_000 }) }))),
        fc.array(job, { minLength: 1, maxLength: 30 }),
        async (card, factors, limits, jobs) => {
          const run = ++n;
          const scopes = [0, 1, 2].map((i) => `s:prop${run}-${i}`);
          const types = [`j0-${run}`, `j1-${run}`, `j2-${run}`];
          const { dflt, ...typed } = card;
          await setRates(a, { ...Object.fromEntries(Object.entries(typed).map(([k, r]) => [k, [[0, r.u, r.d] as [number, number, number]]])), '*': [[0, dflt.u, dflt.d]] });
          await t.redis.hset(a.keys.factors, ...types.flatMap((jt, i) => [jt, String(factors[i])]));
          for (const [i, l] of limits.entries()) await a.definitions.define(scopes[i]!, limit(l.amount, l.unit), null);
          const reqs = jobs.map((j, i) => ({
            jobId: `prop${run}-${i}`, amountGpuMs: j.amount, scopes: j.scopes.map((k) => scopes[k]!),
            meta: { project: `prop${run}`, user: 'u', gpus: 1, jobType: types[j.jobType], ...(j.gpuType === 'none' ? {} : { gpuType: j.gpuType }) } as JobMeta,
          }));
          const out = await a.reserveMany(reqs, now);
          // Safety, right after admission: nothing past its limit in its unit.
          for (const [i, sc] of scopes.entries()) {
            const s = await counted(a, sc);
            const c = s.counted[limits[i]!.unit];
            expect(c.used + c.reserved).toBeLessThanOrEqual(limits[i]!.amount);
          }
          const want = scopes.map(() => ({ reserved: [0n, 0n, 0n], used: [0n, 0n, 0n], exemptReserved: 0, exemptUsed: 0 }));
          for (const [i, o] of out.entries()) {
            if (o.kind !== 'reserved') continue;
            const j = jobs[i]!;
            const r = j.gpuType === 'none' ? dflt : card[j.gpuType as keyof typeof typed];
            const f = factors[j.jobType]!;
            if (j.actual !== undefined) await a.settle(reqs[i]!.jobId, o.scopes, j.actual, 'settle', now + 1);
            for (const k of j.scopes) {
              const w = want[k]!;
              if (f === 0) {
                if (j.actual === undefined) w.exemptReserved += j.amount;
                else w.exemptUsed += j.actual;
                continue;
              }
              const e = j.actual === undefined ? expected(j.amount, r, f) : expected(j.actual, r, f);
              for (let x = 0; x < 3; x++) (j.actual === undefined ? w.reserved : w.used)[x]! += e[x]!;
            }
          }
          for (const [i, sc] of scopes.entries()) {
            const s = await counted(a, sc);
            const w = want[i]!;
            expect({
              reserved: UNITS.map((u) => BigInt(s.counted[u].reserved)), used: UNITS.map((u) => BigInt(s.counted[u].used)),
              exemptReserved: s.exemptReservedGpuMs, exemptUsed: s.exemptUsedGpuMs,
            }).toEqual(w);
          }
        },
      ),
      { numRuns: 40 },
    );
  });
});

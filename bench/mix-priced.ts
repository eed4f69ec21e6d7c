/**
 * The admission benchmark's priced mix: the realistic mix's jobs (bench/mix.ts:
 * same users, projects, hours and runs) each given one of four GPU types,
 * each type with its own rate, and a job type: most count fully, one at a
 * usage factor of 0.5, one exempt (0). Rates and factors are written with
 * the definitions API (the Redis hashes the reserve script reads), so the
 * script prices every job. Budgets, quotas and run caps are spread over the
 * three units: projects and users by index mod 3, a project's run caps one
 * unit on. Limits are sized as the mix's, in each scope's unit, by replaying
 * the jobs under the same rules with the charge computed here, in BigInt,
 * from the documented rule (docs/design.md#units-rates-and-usage-factors),
 * not by src/accounting/pricing.ts: the check after a run trusts nothing of
 * the code it checks. After each gatekeeper run every limited scope and
 * every project's per-type counter is read back: used + reserved within the
 * limit in the scope's unit, reserved in each of the three units equal to the
 * charges of its jobs on gpu-exec, exempt GPU-ms equal to its exempt jobs'.
 * Figures: docs/benchmarks.md.
 */
import { parseScopeId } from '../src/accounting/scopes.ts';
import { compactRates, LIMIT_UNITS, type LimitUnit, type Rate } from '../src/accounting/pricing.ts';
import { hoursToGpuMs } from '../src/units.ts';
import type { Run } from './admission-kit.ts';
import {
  checkMix, defineLimits, demandBy, drawJobs, limitShape, mixOf, prng, replayHeld, sizeLimits, type Mix, type MixJob, type Pricing,
} from './mix.ts';

/** Milli-units and micro-dollars per GPU-hour; odd prices, so charges round up (a 1 h t4 job at factor 0.5: 166.5 -> 167 milli-units). */
export const GPU_RATES: Record<string, Rate> = {
  h100: { unitsMilli: 4_000, usdMicro: 2_987_653 },
  a100: { unitsMilli: 2_500, usdMicro: 1_456_789 },
  l40s: { unitsMilli: 1_250, usdMicro: 912_347 },
  t4: { unitsMilli: 333, usdMicro: 271_829 },
};
/** Share of the jobs on each type, in GPU_RATES's order. */
const TYPE_SHARE = [0.3, 0.3, 0.25, 0.15];
/** Usage factors in thousandths; 'train' has none (counts fully). */
export const FACTORS: Record<string, number> = { eval: 500, regression: 0 };
/** Share of the jobs of each type: train, eval (factor 0.5), regression (exempt). */
const JOB_TYPES: [string, number][] = [['train', 0.7], ['eval', 0.2], ['regression', 0.1]];
/** A daily quota of D GPU-hours is D a100 hours in the other units. */
const PER_HOUR: Record<LimitUnit, number> = { gpuHours: 3_600_000, units: GPU_RATES.a100!.unitsMilli, usd: GPU_RATES.a100!.usdMicro };

const ceilDiv = (a: bigint, b: bigint) => (a + b - 1n) / b;
const factorOf = (j: MixJob) => FACTORS[j.jobType ?? ''] ?? 1000;

/** A job's charge in `unit`: ceil(g f / 1000) GPU-ms, ceil(g f rate / 3.6e9) milli-units or micro-dollars, g its GPU-ms, f its factor. */
export function chargeOf(j: MixJob, unit: LimitUnit): number {
  const gf = BigInt(hoursToGpuMs(j.estimatedGpuHours)) * BigInt(factorOf(j));
  const rate = GPU_RATES[j.gpuType!]!;
  return Number(unit === 'gpuHours' ? ceilDiv(gf, 1000n) : ceilDiv(gf * BigInt(unit === 'units' ? rate.unitsMilli : rate.usdMicro), 3_600_000_000n));
}

export const PRICED: Pricing = { units: LIMIT_UNITS, charge: chargeOf, exempt: (j) => factorOf(j) === 0 };

/** A limited scope's unit: projects and users by index mod 3, a run cap one on from its project's. */
export function unitOf(id: string): LimitUnit {
  const { kind, name } = parseScopeId(id);
  const n = Number(/\d+/.exec(name)![0]);
  return LIMIT_UNITS[(kind === 'run' ? n + 1 : n) % 3]!;
}

export interface PricedMix extends Mix {
  /** The per-project, per-type counters (no limit: counted only), read back too. */
  typeScopes: string[];
  /** How many limits are in each unit. */
  byUnit: Record<LimitUnit, number>;
  exemptJobs: number;
}

/** The mix's jobs with GPU and job types drawn (seed 23), limits in three units sized to hold about a tenth. */
export function buildPricedMix(count: number): PricedMix {
  const rand = prng(23);
  const draw = <T>(xs: T[], share: number[]) => {
    let x = rand();
    return xs.find((_, i) => (x -= share[i]!) < 0) ?? xs.at(-1)!;
  };
  const jobs = drawJobs(count).map((j) => ({ ...j, gpuType: draw(Object.keys(GPU_RATES), TYPE_SHARE), jobType: draw(JOB_TYPES.map(([t]) => t), JOB_TYPES.map(([, s]) => s)) }));
  const exempt = (j: MixJob) => PRICED.exempt(j);
  const demand = demandBy(jobs, (j, id) => (exempt(j) ? 0 : chargeOf(j, unitOf(id))));
  const limited = [...demand].filter(([id]) => !id.startsWith('project-type:'));
  // D, the daily quota in a100 GPU-hours, is searched so that about a tenth of the jobs are held.
  const limitsFor = (d: number): Mix['limits'] => new Map(limited.map(([id, amount]) => {
    const unit = unitOf(id);
    return [id, { ...limitShape(id, amount, d * PER_HOUR[unit]), unit }];
  }));
  const held = (l: Mix['limits']) => replayHeld(jobs, l, PRICED);
  const limits = sizeLimits(count, 4 * count, limitsFor, held);
  const byUnit = { gpuHours: 0, units: 0, usd: 0 };
  for (const l of limits.values()) byUnit[l.unit!]++;
  return { ...mixOf(jobs, limits, held(limits)), typeScopes: [...demand.keys()].filter((id) => id.startsWith('project-type:')), byUnit, exemptJobs: jobs.filter(exempt).length };
}

/** The rate card and the usage factors, then every limit (the gatekeeper's runs only). */
export async function definePriced(run: Run, mix: PricedMix): Promise<void> {
  const defs = run.accounting.definitions;
  for (const [type, rate] of Object.entries(GPU_RATES)) await defs.setRates(type, compactRates([{ effectiveFrom: 0, ...rate }]));
  for (const [type, factor] of Object.entries(FACTORS)) await defs.setFactor(type, factor);
  await defineLimits(run, mix);
}

/** checkMix in all three units by the bench's own charge rule, the per-type counters too; every exempt job on gpu-exec. */
export async function checkPriced(run: Run, mix: PricedMix, exec: number, held: number): Promise<string[]> {
  const problems = await checkMix(run, mix, exec, held, PRICED, mix.typeScopes);
  const exemptHeld = (await run.held.getJobs(['prioritized', 'waiting', 'delayed'], 0, -1)).filter((j) => PRICED.exempt(j.data)).length;
  if (exemptHeld > 0) problems.push(`${exemptHeld} exempt jobs held`);
  return problems;
}

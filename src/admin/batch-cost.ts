/**
 * What a batch costs, and what it would cost on each other GPU type of the
 * rate card (Story 032: "this batch: 160 GPU-h on H100 = $640, 96 units; on
 * A100 = $400, 64 units"). Each job is priced like the reserve script prices
 * it (src/accounting/price-list.ts): its estimate at the rate in force now,
 * times its job type's usage factor, rounded up per job; the sums are exact
 * integers, turned into decimals only here at the edge.
 */
import { sumCharges, type PriceList } from '../accounting/price-list.ts';
import { fromScaled, UNIT_SCALE, type Charges } from '../accounting/pricing.ts';
import { hoursToGpuMs } from '../units.ts';

/** A priced job: what it estimates, who runs it, on what. */
export interface CostedJob {
  estimatedGpuHours: number;
  jobType?: string;
  gpuType?: string;
  project: string;
}

export interface BatchCost {
  jobs: number;
  /** The estimates added up, raw. */
  gpuHours: number;
  /** GPU hours as charged: each estimate times its job type's usage factor. */
  chargedGpuHours: number;
  units: number;
  usd: number;
}

export interface GpuTypeCost extends BatchCost {
  gpuType: string;
  unitsPerGpuHour: number;
  usdPerGpuHour: number;
  /** Projects of the batch that may not use this type (their jobs would be rejected on it). */
  notAllowedIn: string[];
}

function costOf(jobs: readonly CostedJob[], each: (j: CostedJob) => Charges): BatchCost {
  const c = sumCharges(jobs.map(each));
  const raw = jobs.reduce((n, j) => n + hoursToGpuMs(j.estimatedGpuHours), 0);
  return {
    jobs: jobs.length,
    gpuHours: fromScaled(raw, UNIT_SCALE.gpuHours),
    chargedGpuHours: fromScaled(c.gpuMs, UNIT_SCALE.gpuHours),
    units: fromScaled(c.unitsMilli, UNIT_SCALE.units),
    usd: fromScaled(c.usdMicro, UNIT_SCALE.usd),
  };
}

/** The jobs on their own GPU types (the default rate where a type has none). */
export function batchCost(prices: PriceList, jobs: readonly CostedJob[]): BatchCost {
  return costOf(jobs, (j) => prices.charge(hoursToGpuMs(j.estimatedGpuHours), j.jobType, j.gpuType));
}

/**
 * The same jobs, all on each GPU type with a rate in force, cheapest in
 * dollars first (then by units, then by name). `allowed` gives a project's
 * allowed types (null: any).
 */
export function costByGpuType(prices: PriceList, jobs: readonly CostedJob[], allowed: ReadonlyMap<string, readonly string[] | null>): GpuTypeCost[] {
  const projects = [...new Set(jobs.map((j) => j.project))].sort();
  return prices.types()
    .map((gpuType) => {
      const rate = prices.own(gpuType)!;
      return {
        gpuType,
        unitsPerGpuHour: fromScaled(rate.unitsMilli, UNIT_SCALE.units),
        usdPerGpuHour: fromScaled(rate.usdMicro, UNIT_SCALE.usd),
        ...costOf(jobs, (j) => prices.charge(hoursToGpuMs(j.estimatedGpuHours), j.jobType, gpuType)),
        notAllowedIn: projects.filter((p) => { const a = allowed.get(p); return a != null && !a.includes(gpuType); }),
      };
    })
    .sort((a, b) => a.usd - b.usd || a.units - b.units || (a.gpuType < b.gpuType ? -1 : 1));
}

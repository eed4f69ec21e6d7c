/**
 * Rates and charges in exact integers (docs/design.md#units-rates-and-usage-factors).
 *
 * A limit is in one of three units, each held as an integer:
 *   gpuHours  GPU-milliseconds (the raw unit, as before rates existed)
 *   units     milli-units (compute units, weighted per GPU type)
 *   usd       micro-dollars
 * A rate card entry gives, per GPU type, milli-units and micro-dollars per
 * GPU-hour; a job type's usage factor is in thousandths (1000 = counts
 * fully, 0 = exempt). A job of g GPU-ms is charged, in each unit,
 *   gpuHours  ceil(g * factor / 1000)
 *   units     ceil(g * factor * unitsMilli / 3,600,000,000)
 *   usd       ceil(g * factor * usdMicro   / 3,600,000,000)
 * one rounding per charge, up, so a job never costs less than its share.
 * The reserve and settle scripts compute the same numbers in Lua
 * (lua/includes/pricing.lua, exact with limbs); this is the TypeScript
 * side, in BigInt, for previews and for what Postgres is told.
 */

export type LimitUnit = 'gpuHours' | 'units' | 'usd';
export const LIMIT_UNITS: readonly LimitUnit[] = ['gpuHours', 'units', 'usd'];

/** Integers per whole unit: GPU-ms per GPU-hour, milli-units per unit, micro-dollars per dollar. */
export const UNIT_SCALE: Record<LimitUnit, number> = { gpuHours: 3_600_000, units: 1000, usd: 1_000_000 };

/** A usage factor of 1 (counts fully), in thousandths. */
export const FULL_FACTOR = 1000;
/** The largest usage factor, in thousandths (x100). */
export const MAX_FACTOR_MILLI = 100_000;
/** The largest rate a GPU type may have: 1,000,000 units per GPU-hour (milli-units). */
export const MAX_UNITS_MILLI_PER_HOUR = 1_000_000_000;
/** The largest price: $1,000 per GPU-hour (micro-dollars). Keeps every product in lua/includes/pricing.lua below 2^53. */
export const MAX_USD_MICRO_PER_HOUR = 1_000_000_000;

/** A GPU type's rate: milli-units and micro-dollars per GPU-hour. */
export interface Rate {
  unitsMilli: number;
  usdMicro: number;
}

/** The rate of a job whose GPU type has none, while no default is set: one unit per GPU-hour, no price. */
export const BUILTIN_DEFAULT_RATE: Rate = { unitsMilli: 1000, usdMicro: 0 };

/** A job's charge in each unit (GPU-ms, milli-units, micro-dollars). */
export interface Charges {
  gpuMs: number;
  unitsMilli: number;
  usdMicro: number;
}

const HOUR_TIMES_FACTOR = 3_600_000n * 1000n;

function ceilDiv(a: bigint, b: bigint): bigint {
  return (a + b - 1n) / b;
}

function safe(n: bigint, what: string): number {
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`${what} charge ${n} is past 2^53`);
  return Number(n);
}

/** What `gpuMs` GPU-milliseconds cost at `rate` with usage factor `factorMilli`, exactly. */
export function charges(gpuMs: number, rate: Rate, factorMilli: number): Charges {
  const g = BigInt(gpuMs) * BigInt(factorMilli);
  return {
    gpuMs: safe(ceilDiv(g, 1000n), 'gpuHours'),
    unitsMilli: safe(ceilDiv(g * BigInt(rate.unitsMilli), HOUR_TIMES_FACTOR), 'units'),
    usdMicro: safe(ceilDiv(g * BigInt(rate.usdMicro), HOUR_TIMES_FACTOR), 'usd'),
  };
}

/** The charge in one unit. */
export function chargeIn(c: Charges, unit: LimitUnit): number {
  return unit === 'gpuHours' ? c.gpuMs : unit === 'units' ? c.unitsMilli : c.usdMicro;
}

/**
 * A decimal from the edge (a JSON number or its text) as an integer of
 * 1/scale, exactly: 4.1 dollars at scale 1,000,000 is 4,100,000, never
 * 4,099,999.999. Null when it has more decimals than the scale holds, is
 * negative, or is not a plain decimal.
 */
export function toScaled(value: number | string, scale: number): number | null {
  const text = typeof value === 'number' ? (Number.isFinite(value) ? numberText(value) : '') : value.trim();
  const m = /^(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) return null;
  const digits = String(scale).length - 1;
  const frac = (m[2] ?? '').replace(/0+$/, '');
  if (frac.length > digits) return null;
  const n = BigInt(m[1]!) * BigInt(scale) + BigInt((frac + '0'.repeat(digits)).slice(0, digits) || '0');
  return n > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(n);
}

/** A JSON number's plain decimal text (1e-7 -> '0.0000001'). */
function numberText(n: number): string {
  const s = String(n);
  if (!/e/i.test(s)) return s;
  return n.toFixed(20).replace(/\.?0+$/, '');
}

/** An integer of 1/scale as a decimal number for the edge (exact as text for the sizes used here). */
export function fromScaled(n: number, scale: number): number {
  return n / scale;
}

/** The rate in force at `at` in an entry list sorted by effectiveFrom (null: none yet). */
export function rateAt<T extends { effectiveFrom: number }>(history: readonly T[], at: number): T | null {
  let found: T | null = null;
  for (const e of history) if (e.effectiveFrom <= at) found = e;
  return found;
}

/**
 * One GPU type's history as the scripts read it (the field of the 'rates'
 * hash): 'from:unitsMilli:usdMicro' per entry, ascending by from, joined by ';'.
 */
export function compactRates(history: readonly ({ effectiveFrom: number } & Rate)[]): string {
  return [...history]
    .sort((a, b) => a.effectiveFrom - b.effectiveFrom)
    .map((e) => `${e.effectiveFrom}:${e.unitsMilli}:${e.usdMicro}`)
    .join(';');
}

/** The field of the 'rates' hash holding the default rate (the API calls it 'default'). */
export const DEFAULT_RATE_FIELD = '*';

/**
 * Why `gpuType` may not name a GPU type, or null: a type named as the
 * default rate's field would read the default rate as its own (a known
 * type, with a budget scope of its own). The job contract and the API refuse it.
 */
export function reservedGpuType(gpuType: string): string | null {
  return gpuType === DEFAULT_RATE_FIELD ? `gpuType may not be "${DEFAULT_RATE_FIELD}": that name is kept for the default rate` : null;
}

/**
 * The prices the reserve script would use, read in TypeScript from the same
 * Redis copy (the 'rates' and 'factors' hashes, src/accounting/rate-card.ts)
 * and applied by the same rule (pricing.ts charges(); the script's
 * lua/includes/pricing.lua pricer): a GPU type's rate in force at a moment,
 * the default rate ('*', else BUILTIN_DEFAULT_RATE) for a job with no or an
 * unknown type, and a job type's usage factor (absent: 1). For answers that
 * price jobs without reserving them: preflight's cost and comparison, what
 * a held job would need now.
 */
import type { ScopeDefinitions } from './definitions.ts';
import { BUILTIN_DEFAULT_RATE, charges, DEFAULT_RATE_FIELD, FULL_FACTOR, rateAt, type Charges, type Rate } from './pricing.ts';

/** One entry of a compact history ('from:unitsMilli:usdMicro;...'), as compactRates writes it. */
export function parseCompactRates(text: string): ({ effectiveFrom: number } & Rate)[] {
  const out: ({ effectiveFrom: number } & Rate)[] = [];
  for (const entry of text.split(';')) {
    const m = /^(\d+):(\d+):(\d+)$/.exec(entry);
    if (m) out.push({ effectiveFrom: Number(m[1]), unitsMilli: Number(m[2]), usdMicro: Number(m[3]) });
  }
  return out.sort((a, b) => a.effectiveFrom - b.effectiveFrom);
}

export class PriceList {
  private constructor(
    private readonly rates: Map<string, ({ effectiveFrom: number } & Rate)[]>,
    private readonly factors: Map<string, number>,
    /** The moment the rates are read at. */
    readonly at: number,
  ) {}

  /** The rate card and usage factors as the scripts see them now. */
  static async read(defs: ScopeDefinitions, at: number): Promise<PriceList> {
    const [rates, factors] = await Promise.all([defs.rates(), defs.factors()]);
    return new PriceList(
      new Map(Object.entries(rates).map(([t, text]) => [t, parseCompactRates(text)])),
      new Map(Object.entries(factors).flatMap(([t, f]) => (/^\d+$/.test(f) ? [[t, Number(f)] as const] : []))),
      at,
    );
  }

  /** The GPU types with a rate in force, sorted (the default not among them). */
  types(): string[] {
    return [...this.rates.keys()].filter((t) => t !== DEFAULT_RATE_FIELD && this.own(t) !== null).sort();
  }

  /** A GPU type's own rate in force, or null (none yet, or not on the card). */
  own(gpuType: string): Rate | null {
    const e = rateAt(this.rates.get(gpuType) ?? [], this.at);
    return e ? { unitsMilli: e.unitsMilli, usdMicro: e.usdMicro } : null;
  }

  /** The rate a job on `gpuType` is charged at: its own, else the default. `known` says which ('*', the default's field, is no type). */
  rateFor(gpuType: string | undefined): { rate: Rate; known: boolean } {
    const own = gpuType && gpuType !== DEFAULT_RATE_FIELD ? this.own(gpuType) : null;
    if (own) return { rate: own, known: true };
    return { rate: this.own(DEFAULT_RATE_FIELD) ?? BUILTIN_DEFAULT_RATE, known: false };
  }

  /** A job type's usage factor in thousandths (1000 when none is set). */
  factorFor(jobType: string | undefined): number {
    return jobType ? (this.factors.get(jobType) ?? FULL_FACTOR) : FULL_FACTOR;
  }

  /** What a job of `gpuMs` would be charged on `gpuType` (its own when omitted) with its job type's factor. */
  charge(gpuMs: number, jobType: string | undefined, gpuType: string | undefined): Charges {
    return charges(gpuMs, this.rateFor(gpuType).rate, this.factorFor(jobType));
  }
}

/** Charges added up, exactly. */
export function sumCharges(cs: Iterable<Charges>): Charges {
  const total = { gpuMs: 0, unitsMilli: 0, usdMicro: 0 };
  for (const c of cs) {
    total.gpuMs += c.gpuMs;
    total.unitsMilli += c.unitsMilli;
    total.usdMicro += c.usdMicro;
  }
  return total;
}

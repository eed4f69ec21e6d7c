/**
 * Accounting's domain types: what a job is to admission, what was decided
 * about it, and what a scope is. The values every module passes around;
 * no behaviour here.
 */
import type { PeriodKind } from '../periods.ts';
import type { Hold, Shortfall } from '../../queues/contract.ts';
import type { Charges, LimitUnit, Rate } from './pricing.ts';

/** Why a job waits: defined with the held job's data it travels in. */
export type { Hold, Shortfall };

export interface JobMeta {
  project: string;
  user: string;
  jobType?: string | undefined;
  gpuType?: string | undefined;
  /** GPUs the job runs on: the fallback actual is wall time x gpus. */
  gpus: number;
  run?: string | undefined;
}

export type ReserveOutcome = DecidedOutcome & {
  /**
   * Set when the job's id had been used by another job (the intake queue's
   * id counter restarted): the id it was decided under, '<id>@<submitted at>',
   * which names it from then on (gpu-exec, gpu-held, the ledger).
   */
  reservationId?: string;
};

type DecidedOutcome =
  /**
   * `scopes`: the counter ids it was reserved in (scope base @ period label);
   * `softOver`: soft-limited scope bases it took past their limit (warn);
   * `exempt`: its job type is exempt, so nothing was counted against a limit.
   */
  | { kind: 'reserved'; amountGpuMs: number; scopes: string[]; softOver: string[]; exempt: boolean; price: Price; charges: Charges }
  /** `charges`: as it was admitted (null: a reservation older than rates, charged its GPU-ms only). */
  | { kind: 'already'; amountGpuMs: number; state: 'reserved' | 'settled'; scopes: string[]; exempt: boolean; charges: Charges | null }
  /** Held now, or before when `retried` (then without `lines`: they did not change). */
  | ({ kind: 'held'; retried: boolean } & Hold)
  | { kind: 'cancelled' }
  /**
   * Over its submission rate: back on intake at `dueAt` (epoch ms), its slot
   * booked; `retried`: it had been throttled before with this due time.
   */
  | { kind: 'throttled'; dueAt: number; retried: boolean; over: RateOver[] }
  /** A scope has no limit and the policy for that is to reject. */
  | { kind: 'rejected'; scope: string }
  /**
   * Refused for its GPU type ('' for none): 'unknown', it has no rate and the
   * policy for that is to reject (UNKNOWN_GPU_TYPE_POLICY); 'not-allowed',
   * its project may not use it; 'too-costly', its charge at the type's rate
   * and its job type's factor passes 2^53 in a unit (it cannot be counted exactly).
   */
  | { kind: 'unpriced'; gpuType: string; why: UnpricedWhy };

export type UnpricedWhy = 'unknown' | 'not-allowed' | 'too-costly';

/** What a job was priced with: its GPU type's rate in force and its job type's usage factor (thousandths). */
export interface Price {
  rate: Rate;
  factorMilli: number;
}

/** A submission rate limit (token bucket) on 'user:<u>' or 'project:<p>'. */
export interface RateLimit {
  jobsPerMinute: number;
  burst: number;
}

/** A bucket a throttled job was over, with its limit as the script read it. */
export interface RateOver extends RateLimit {
  scope: string;
}

/** What to do with a job when one of its scopes has no limit configured. */
export type NoLimitPolicy = 'hold' | 'reject';
/** What to do with a job whose GPU type has no rate: price it at the default rate, or reject it. */
export type UnpricedPolicy = 'default' | 'reject';

export interface ReserveRequest {
  jobId: string;
  /** Submission order: a held job's place in its lines (see submissionOrder). */
  order?: number;
  amountGpuMs: number;
  /** Scope bases (see scopes.ts); the script picks each one's current period. */
  scopes: string[];
  meta: JobMeta;
  /**
   * When it was submitted (BullMQ's job timestamp, epoch ms): with the id,
   * what tells this job from an earlier one that had the same id. Omitted:
   * a record under the id is taken to be this job's.
   */
  submittedAt?: number;
}

/** An event a preflighted batch would raise. */
export interface DryRunWarning {
  type: 'THRESHOLD_CROSSED' | 'BUDGET_EXHAUSTED';
  scope: string;
  thresholdPercent?: number;
}

export type ReleaseOutcome =
  | { kind: 'admitted'; amountGpuMs: number; scopes: string[]; price: Price; charges: Charges; exempt: boolean }
  /** Still held; `lines` when its lines changed (it now waits for what it misses). */
  | ({ kind: 'held' } & Hold)
  /** Its project may no longer use its GPU type, the type has no rate (UNKNOWN_GPU_TYPE_POLICY=reject), or its charge now passes 2^53: rejected (no longer held; HeldJobs moves it to gpu-rejected with the reason). */
  | { kind: 'rejected'; gpuType: string; why: UnpricedWhy }
  | { kind: 'not-held'; state: string };

/** How a budget or quota behaves at its limit: hold there, or admit past it with a warning. */
export type ScopePolicy = 'hard' | 'soft';
/** A scope's period; 'none' never resets. */
export type ScopePeriod = 'none' | PeriodKind;

/** What an admin set on a scope base (Redis copy of the Postgres row). */
export interface ScopeDefinition {
  /** In the limit's unit: GPU-ms, milli-units or micro-dollars (pricing.ts). */
  limitGpuMs: number;
  /** gpuHours when absent. */
  unit?: LimitUnit;
  policy: ScopePolicy;
  /** Soft only: percent past the limit still admitted; null = a soft limit never holds. */
  gracePercent: number | null;
  period: ScopePeriod;
  rollover: boolean;
  /** Most that rolls over into a new period; null = all of it. */
  rolloverCapGpuMs: number | null;
  /** When the budget was first set (a period before that has nothing to roll over). */
  setAt: number;
  /** Percents of the limit that raise THRESHOLD_CROSSED; null = 75, 90, 100. */
  thresholds?: number[] | null;
  /** auto (absent): held jobs are decided again when room appears (workers/waker.ts); manual: only an admin releases them. */
  release?: ReleaseMode;
}

export type ReleaseMode = 'auto' | 'manual';

/**
 * A scope as admission sees it now (see scope.lua). The *GpuMs amounts but
 * the exempt ones are in the limit's unit (`unit`: GPU-ms, milli-units or
 * micro-dollars; GPUs for a GPU cap); `counted` has every unit's counters.
 */
export interface ScopeState {
  base: string;
  /** Counter id: the base, or '<base>@<period label>'. */
  id: string;
  unit: LimitUnit | 'gpus';
  counted: Record<LimitUnit, { used: number; reserved: number }>;
  /** limit + carry + adjust; null when none is set. */
  limitGpuMs: number | null;
  /** Where admission stops: the limit (hard), limit + grace (soft), null (soft without grace, or no limit). */
  ceilingGpuMs: number | null;
  usedGpuMs: number;
  reservedGpuMs: number;
  carryGpuMs: number;
  adjustGpuMs: number;
  exemptUsedGpuMs: number;
  exemptReservedGpuMs: number;
}

export type SettleKind = 'settle' | 'release';

export type SettleOutcome =
  /** capped: the units (h, u, d) whose charge passed 2^53 and was counted as 2^53 - 1; '' when none. */
  | { kind: 'settled'; reservedGpuMs: number; actualGpuMs: number; capped: string }
  | { kind: 'already'; reservedGpuMs: number; actualGpuMs: number }
  | { kind: 'no-reservation' };

export interface ScopeCounters {
  scope: string;
  limitGpuMs: number | null;
  usedGpuMs: number;
  reservedGpuMs: number;
}

export interface OpenReservation {
  jobId: string;
  state: 'held' | 'reserved' | 'settled' | 'cancelled';
  amountGpuMs: number;
  scopes: string[];
  admittedAt: number;
  meta: JobMeta;
  /** Admitted since rates: its estimate's charge and the price it was admitted at. */
  charges?: Charges;
  price?: Price;
  exempt?: true;
}


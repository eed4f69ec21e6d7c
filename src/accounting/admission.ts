/**
 * Deciding: turn validated jobs into admission decisions. Accounting
 * (counters.ts) does the atomic arithmetic; this module only maps its
 * outcomes to what the gatekeeper does next. No Redis reads of its own: each
 * decision is made inside one Lua call (which may carry several jobs).
 */
import type { AdmissionRecord, IntakeJobData } from '../../queues/contract.ts';
import { hoursToGpuMs, gpuMsToHours } from '../units.ts';
import type { Accounting } from './counters.ts';
import type { Hold, JobMeta, NoLimitPolicy, Price, RateOver, UnpricedWhy } from './types.ts';
import type { Charges } from './pricing.ts';
import { printable } from '../text.ts';
import { describeHold, describeThrottle } from './reasons.ts';
import { scopeLabel, scopesForJob } from './scopes.ts';

/**
 * `reservationId`, when set: the job's id had been another job's (the intake
 * queue's id counter restarted), so it was decided, and is named from now on,
 * under this one (see reserve.lua).
 */
export type Decision = (
  | { kind: 'admitted'; admission: AdmissionRecord }
  | { kind: 'already'; state: 'reserved' | 'settled'; admission: AdmissionRecord }
  /** `retried`: it was held before (a re-run after a crash); make sure it is on gpu-held. */
  | { kind: 'held'; hold: Hold; reason: string; retried: boolean }
  | { kind: 'cancelled' }
  | { kind: 'rejected'; reason: string }
  /** Over a submission rate: back to intake until `dueAt` (epoch ms); nothing reserved. */
  | { kind: 'throttled'; dueAt: number; over: RateOver[]; reason: string }
) & { reservationId?: string };

export function jobMeta(data: IntakeJobData): JobMeta {
  return { project: data.project, user: data.user, jobType: data.jobType, gpuType: data.gpuType, gpus: data.gpus, ...(data.run ? { run: data.run } : {}) };
}

export interface AdmissionRequest {
  intakeJobId: string;
  data: IntakeJobData;
  /** Submission order (see submissionOrder in counters.ts). */
  order: number;
  /** BullMQ's timestamp of the intake job: with its id, the job's identity. */
  submittedAt?: number;
}

/**
 * Decide a batch in one reserve call; one decision per request, in the
 * order given (the gatekeeper sorts a batch by submission order first).
 */
export async function decideAdmissions(
  accounting: Accounting,
  reqs: AdmissionRequest[],
  now: number,
  noLimit: NoLimitPolicy = 'hold',
): Promise<Decision[]> {
  const prepared = reqs.map(({ intakeJobId, data, order, submittedAt }) => ({
    jobId: intakeJobId,
    order,
    ...(submittedAt === undefined ? {} : { submittedAt }),
    amountGpuMs: hoursToGpuMs(data.estimatedGpuHours),
    scopes: scopesForJob(data).map((s) => s.id),
    meta: jobMeta(data),
  }));
  const outcomes = await accounting.reserveMany(prepared, now, noLimit);
  // Read only when a job was rejected for its GPU type: the reason lists the types with a rate.
  let known: Promise<string[]> | undefined;
  return Promise.all(outcomes.map(async (out, i): Promise<Decision> => {
    const renamed = out.reservationId === undefined ? {} : { reservationId: out.reservationId };
    if (out.kind === 'held') {
      const { kind: _, retried, reservationId: __, ...hold } = out;
      return { kind: 'held', hold, reason: describeHold(hold), retried, ...renamed };
    }
    if (out.kind === 'cancelled') return { kind: 'cancelled', ...renamed };
    if (out.kind === 'throttled') return { kind: 'throttled', dueAt: out.dueAt, over: out.over, reason: describeThrottle(out.over, out.dueAt), ...renamed };
    if (out.kind === 'rejected') {
      return { kind: 'rejected', reason: `no budget for ${scopeLabel(out.scope)} (unknown projects are rejected: UNKNOWN_PROJECT_POLICY=reject)`, ...renamed };
    }
    if (out.kind === 'unpriced') {
      const project = prepared[i]!.meta.project;
      const allowed = out.why === 'not-allowed' ? ((await accounting.allowedGpuTypes(project)) ?? []) : [];
      const types = out.why === 'unknown' ? await (known ??= accounting.pricedGpuTypes()) : [];
      return { kind: 'rejected', reason: gpuTypeRefusal(out.why, out.gpuType, project, allowed, types), ...renamed };
    }
    const admission: AdmissionRecord = {
      intakeJobId: out.reservationId ?? prepared[i]!.jobId,
      reservedGpuMs: out.amountGpuMs,
      reservedGpuHours: gpuMsToHours(out.amountGpuMs),
      scopes: out.scopes,
      admittedAt: now,
      ...(out.exempt ? { exempt: true } : {}),
      ...(out.kind === 'reserved' && out.softOver.length > 0 ? { softOver: out.softOver } : {}),
      ...(out.kind === 'reserved' ? { charged: chargedView(out.charges), price: priceView(out.price) } : out.charges ? { charged: chargedView(out.charges) } : {}),
    };
    return out.kind === 'reserved' ? { kind: 'admitted', admission, ...renamed } : { kind: 'already', state: out.state, admission, ...renamed };
  }));
}

/**
 * Why a job is refused for its GPU type (reserve's and release's reply 8),
 * by `why`: `allowed`, the types its project may use ('not-allowed');
 * `known`, the types with a rate ('unknown'). Each is read only for its why.
 */
export function gpuTypeRefusal(why: UnpricedWhy, gpuType: string, project: string, allowed: string[], known: string[]): string {
  if (why === 'too-costly') return tooCostlyReason(gpuType);
  return why === 'not-allowed' ? notAllowedReason(project, gpuType, allowed) : unpricedReason(gpuType, known);
}

/** Why a job whose GPU type has no rate is rejected, naming the types that have one. */
function unpricedReason(gpuType: string, known: string[]): string {
  const what = gpuType === '' ? 'the job names no gpuType' : `gpuType ${JSON.stringify(printable(gpuType))} has no rate`;
  const list = known.length === 0 ? 'no GPU type has a rate yet' : `known GPU types: ${known.map((t) => printable(t)).join(', ')}`;
  return `${what}; ${list} (jobs without a known GPU type are rejected: UNKNOWN_GPU_TYPE_POLICY=reject)`;
}

/** Why a job whose charge cannot be counted exactly is rejected. */
function tooCostlyReason(gpuType: string): string {
  const at = gpuType === '' ? 'the default rate' : `${JSON.stringify(printable(gpuType))}'s rate`;
  return `its charge at ${at} and its job type's usage factor passes 2^53 milli-units or micro-dollars, more than a counter holds exactly; submit it as smaller jobs`;
}

/** Why a job for a GPU type its project may not use is rejected, naming the types it may. */
function notAllowedReason(project: string, gpuType: string, allowed: string[]): string {
  const asked = gpuType === '' ? 'the job names no gpuType' : `the job asks for ${JSON.stringify(printable(gpuType))}`;
  const may = allowed.length === 0 ? 'no GPU type' : `only ${allowed.map((t) => printable(t)).join(', ')}`;
  return `project ${project} may use ${may}; ${asked}`;
}

/** Charges as the edges show them: decimal GPU-hours, units and dollars. */
export function chargedView(c: Charges): { gpuHours: number; units: number; usd: number } {
  return { gpuHours: gpuMsToHours(c.gpuMs), units: c.unitsMilli / 1000, usd: c.usdMicro / 1_000_000 };
}

/** A price as the edges show it. */
export function priceView(p: Price): { unitsPerGpuHour: number; usdPerGpuHour: number; usageFactor: number } {
  return { unitsPerGpuHour: p.rate.unitsMilli / 1000, usdPerGpuHour: p.rate.usdMicro / 1_000_000, usageFactor: p.factorMilli / 1000 };
}

/**
 * reserve.lua's wire: the batch argument it reads (ARGV[5]) and the reply it
 * answers, as TypeScript values. Accounting.reserveMany and dryRun
 * (counters.ts) are the only callers of the script; this is the only code
 * that knows its encoding.
 */
import { misfitShortfall } from './reasons.ts';
import { charges, type Charges } from './pricing.ts';
import { MISFIT_CODES, MISFIT_WIDTH, replyOf, UNIT_LETTERS, UnknownReplyError } from '../redis/wire.ts';
import type { DryRunWarning, Price, RateOver, ReserveOutcome, ReserveRequest, Shortfall } from './types.ts';

/** The script's reply: { ids, results, renamed, prices[, warnings] } (see reserve.lua's header). */
export type ReserveReply = [string[], (number | (number | string)[])[], (number | string)[], (number | string)[], string[][]?];

/** 'unitsMilli|usdMicro|factor' (a price), as reserve and release answer it. */
export function parsePrice(text: string): Price {
  const m = /^(\d+)\|(\d+)\|(\d+)$/.exec(text);
  if (!m) throw new UnknownReplyError('price', text);
  return { rate: { unitsMilli: Number(m[1]), usdMicro: Number(m[2]) }, factorMilli: Number(m[3]) };
}

/** 'gpuMs|milliUnits|microUsd' (a charge), as records and replies keep it; null for '' (a record older than rates). */
export function parseCharge(text: unknown): Charges | null {
  const m = typeof text === 'string' ? /^(\d+)\|(\d+)\|(\d+)$/.exec(text) : null;
  return m ? { gpuMs: Number(m[1]), unitsMilli: Number(m[2]), usdMicro: Number(m[3]) } : null;
}

/** Outcomes (and a dry run's warnings) from the reply to `reqs`, encoded by reserveBatch as `sigs`, `jobSig` and `jobGroup`. */
export function decodeReserve(out: ReserveReply, reqs: ReserveRequest[], sigs: string[][], jobSig: number[], jobGroup: number[]): { outcomes: ReserveOutcome[]; warnings: DryRunWarning[] } {
  const [idList, results, renamed, priceList, warnings = []] = out;
  const prices = new Map<number, Price>();
  for (let i = 0; i < priceList.length; i += 2) prices.set(Number(priceList[i]), parsePrice(String(priceList[i + 1])));
  // A batch's jobs share a few estimates and prices: each charge computed once.
  const memo = new Map<string, Charges>();
  const chargeOf = (i: number): { price: Price; charges: Charges } => {
    const g = jobGroup[i]!;
    const price = prices.get(g);
    if (!price) throw new UnknownReplyError('reserve', `no price for group ${g}`);
    const key = `${g} ${reqs[i]!.amountGpuMs}`;
    let c = memo.get(key);
    if (!c) memo.set(key, (c = charges(reqs[i]!.amountGpuMs, price.rate, price.factorMilli)));
    return { price, charges: c };
  };
  const counterOf = new Map<string, string>();
  for (let i = 0; i < idList.length; i += 2) counterOf.set(idList[i]!, idList[i + 1]!);
  // The counter ids of each scope list, shared by its plainly admitted jobs.
  // (A list only retries used is not named: no plainly admitted job has it.)
  const sigIds = sigs.map((bases) => Object.freeze(bases.map((b) => counterOf.get(b)!)) as string[]);
  const outcomes = results.map((r, i): ReserveOutcome => {
    const need = reqs[i]!.amountGpuMs;
    if (r === 1) return { kind: 'reserved', amountGpuMs: need, scopes: sigIds[jobSig[i]! - 1]!, softOver: NO_SCOPES, exempt: false, ...chargeOf(i) };
    if (typeof r === 'number') throw new UnknownReplyError('reserve', r);
    switch (replyOf('reserve', r[0])) {
      case 'reserved': return { kind: 'reserved', amountGpuMs: Number(r[1]), scopes: csv(r[2]), softOver: csv(r[3]), exempt: r[4] === 1, ...chargeOf(i) };
      case 'already': return { kind: 'already', amountGpuMs: Number(r[1]), state: r[2] as 'reserved' | 'settled', scopes: csv(r[3]), exempt: r[4] === 1, charges: parseCharge(r[5]) };
      case 'heldBehind': {
        const n = Number(r[3]);
        return { kind: 'held', shortfalls: parseShortfalls(r, 3, need), ahead: Number(r[1]), line: String(r[2]), lines: csv(r[4 + MISFIT_WIDTH * n]), retried: false };
      }
      case 'held': {
        const shortfalls = parseShortfalls(r, 1, need);
        return { kind: 'held', shortfalls, ahead: 0, lines: shortfalls.map((s) => s.scope), retried: false };
      }
      case 'stillHeld': return { kind: 'held', shortfalls: parseShortfalls(r, 1, need), ahead: 0, retried: true };
      case 'cancelled': return { kind: 'cancelled' };
      case 'throttled': return { kind: 'throttled', dueAt: Number(r[1]), retried: r[2] === 1, over: parseRateOver(String(r[3])) };
      case 'rejected': return { kind: 'rejected', scope: String(r[1]) };
      case 'unpriced': return { kind: 'unpriced', gpuType: String(r[1]), why: r[2] === 'not-allowed' || r[2] === 'too-costly' ? r[2] : 'unknown' };
    }
  });
  for (let i = 0; i < renamed.length; i += 2) {
    const j = Number(renamed[i]) - 1;
    outcomes[j] = { ...outcomes[j]!, reservationId: String(renamed[i + 1]) };
  }
  return {
    outcomes,
    warnings: warnings.map(([type, scope, threshold]) => ({ type: type as DryRunWarning['type'], scope: scope!, ...(threshold ? { thresholdPercent: Number(threshold) } : {}) })),
  };
}

/**
 * reserve.lua's batch argument (ARGV[5]). Jobs of a batch share a few scope
 * lists (a project and its users) and a few metadata records (a user's
 * jobs look alike): each distinct list travels once, each distinct
 * (list, metadata) pair travels once as a group, and a job names its group
 * by index (1-based, for Lua). A job is then four short values (five with
 * its submission time) instead of also carrying its project, type and
 * metadata as escaped JSON: 82,125 ->
 * 78,813 Redis instructions per job at 256 per call (bench:instructions).
 * Numbers travel as strings: Lua would format a number with 14 digits only.
 * `jobSig[i]` is job i's list index.
 */
export function reserveBatch(reqs: ReserveRequest[], now: number): { batch: string; sigs: string[][]; jobSig: number[]; jobGroup: number[] } {
  const sigIndex = new Map<string, number>();
  const sigs: string[][] = [];
  const groupIndex = new Map<string, number>();
  const groups: [number, string, string, string, string][] = [];
  const jobSig: number[] = new Array(reqs.length);
  const jobGroup: number[] = new Array(reqs.length);
  const jobs = reqs.map((r, j) => {
    const sigKey = r.scopes.join(',');
    let sig = sigIndex.get(sigKey);
    if (sig === undefined) {
      sigs.push(r.scopes);
      sigIndex.set(sigKey, (sig = sigs.length));
    }
    jobSig[j] = sig;
    const meta = JSON.stringify(r.meta);
    const groupKey = `${sig} ${meta}`;
    let group = groupIndex.get(groupKey);
    if (group === undefined) {
      groups.push([sig, r.meta.project, meta, r.meta.jobType ?? '', r.meta.gpuType ?? '']);
      groupIndex.set(groupKey, (group = groups.length));
    }
    jobGroup[j] = group;
    const job: (string | number)[] = [r.jobId, String(r.order ?? now), String(r.amountGpuMs), group];
    if (r.submittedAt !== undefined) job.push(String(r.submittedAt));
    return job;
  });
  return { batch: JSON.stringify({ sigs, groups, jobs }), sigs, jobSig, jobGroup };
}

/**
 * A job's place in its project's held line. BullMQ's own job ids count up per
 * queue, so they are the exact submission order; a custom (non-numeric) id
 * falls back to its submission time in ms, which sorts after every numeric id.
 */
export function submissionOrder(jobId: string, timestampMs: number): number {
  return /^\d{1,15}$/.test(jobId) ? Number(jobId) : timestampMs;
}

export const csv = (v: unknown): string[] => (typeof v === 'string' && v !== '' ? v.split(',') : []);

/** The empty list most outcomes share (a plainly admitted job passed no soft limit); frozen, so no one adds to it. */
const NO_SCOPES = Object.freeze([]) as unknown as string[];

/** A scope named twice in a job's list? Lists are a handful long, so a scan, not a Set per job. */
export function hasDuplicate(list: string[]): boolean {
  for (let i = 1; i < list.length; i++) for (let j = 0; j < i; j++) if (list[i] === list[j]) return true;
  return false;
}

/** The buckets a throttled job was over: 'scope|jpm|burst' joined by ';' (includes/rate.lua). */
export function parseRateOver(text: string): RateOver[] {
  return text === '' ? [] : text.split(';').map((b) => {
    const [scope, jpm, burst] = b.split('|');
    return { scope: scope!, jobsPerMinute: Number(jpm), burst: Number(burst) };
  });
}

/** Shortfalls as a held record stores them (includes/charges.lua misfitsText). */
export function misfitsText(shortfalls: Shortfall[]): string {
  return shortfalls
    .map((s) => {
      const gpus = s.code === 'over-gpus';
      return [s.scope, MISFIT_CODES[s.code], s.limitGpuMs ?? -1, gpus ? s.neededGpuMs : s.usedGpuMs, s.reservedGpuMs, gpus ? 'g' : UNIT_LETTERS[s.unit ?? 'gpuHours'], s.neededGpuMs].join('|');
    })
    .join(';');
}

/** Shortfalls from a script reply whose field `at` is a count n, followed by n misfits of MISFIT_WIDTH fields (scope, code, limit, used, reserved, unit, need). */
export function parseShortfalls(r: (number | string)[], at: number, neededGpuMs: number): Shortfall[] {
  const out: Shortfall[] = [];
  for (let i = 0; i < Number(r[at]); i++) out.push(misfitShortfall(r.slice(at + 1 + i * MISFIT_WIDTH, at + 1 + (i + 1) * MISFIT_WIDTH), neededGpuMs));
  return out;
}

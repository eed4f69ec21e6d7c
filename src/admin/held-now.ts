/**
 * A held job as it stands now, not as it stood when it was last decided:
 * its shortfalls with today's numbers (the current period's counters), its
 * place in each line it waits in, and what will start it ("starts when
 * 2.0 GPU-h free up in project alpha", "or when it resets Mon 7 Dec 00:00
 * UTC", "needs an admin: …"). Read for the listed jobs only: one pipeline for
 * their lines and places, one read of the scopes they touch. A job's need in
 * each scope is in that scope's unit, priced as a release now would price
 * it (the rates in force now, its job type's usage factor: `prices`).
 */
import type { Redis } from 'ioredis';
import type { Keys } from '../redis/keys.ts';
import { pipelined } from '../redis/pipelined.ts';
import type { Budgets, ScopeView } from '../accounting/budgets.ts';
import type { Hold, Shortfall } from '../accounting/types.ts';
import type { HeldJobData } from '../../queues/contract.ts';
import { capSubject, capsForJob, parseScopeId, scopeLabel, scopesForJob } from '../accounting/scopes.ts';
import type { GpuCaps, GpuCapView } from '../accounting/gpu-caps.ts';
import { describeHold } from '../accounting/reasons.ts';
import { formatAmount, hoursToGpuMs, unitSuffix } from '../units.ts';
import type { PriceList } from '../accounting/price-list.ts';
import { chargeIn, type Charges } from '../accounting/pricing.ts';

export interface HeldNow {
  hold: Hold;
  /** Older held jobs ahead of it, per line it waits in. */
  positions: { scope: string; ahead: number }[];
  reason: string;
  startsWhen: string;
}

/** Kinds that admit everything without a limit (a project without a budget does not). */
const OPTIONAL = new Set(['user-day', 'user-week', 'run', 'project-type']);

export async function heldNow(redis: Redis, keys: Keys, budgets: Budgets, caps: GpuCaps, prices: PriceList, timeZone: string, jobs: HeldJobData[]): Promise<HeldNow[]> {
  const ids = jobs.map((d) => d.held.intakeJobId);
  const lines = (await pipelined(redis, ids, (p, id) => p.hget(keys.reservation(id), 'lines')))
    .map((v, i) => (typeof v === 'string' && v ? v.split(',') : (jobs[i]!.held.hold?.lines ?? [])));
  const places = ids.flatMap((id, i) => lines[i]!.map((l) => ({ id, l })));
  const ranks = (await pipelined(redis, places, (p, x) => p.zrank(keys.line(x.l), x.id))).map((v) => (typeof v === 'number' ? v : 0));
  const bases = jobs.map((d) => scopesForJob(d).map((s) => s.id));
  const distinct = [...new Set(bases.flat())];
  const views = new Map((await budgets.views(distinct)).map((v) => [v.scope, v]));
  const capViews = new Map((await caps.list()).map((v) => [v.scope, v]));
  let r = 0;
  return jobs.map((d, i) => {
    const need = prices.charge(hoursToGpuMs(d.estimatedGpuHours), d.jobType, d.gpuType);
    const positions = lines[i]!.map((scope) => ({ scope, ahead: ranks[r++]! }));
    const shortfalls = [
      ...bases[i]!.flatMap((b) => shortfallNow(views.get(b)!, need)),
      ...capsForJob(d).flatMap((c) => capShortfallNow(capViews.get(c.id), d.gpus ?? 1)),
    ];
    const first = positions.reduce<{ scope: string; ahead: number } | null>((m, x) => (x.ahead > (m?.ahead ?? 0) ? x : m), null);
    const hold: Hold = { shortfalls, ahead: first?.ahead ?? 0, ...(first ? { line: first.scope } : {}), lines: lines[i]! };
    return { hold, positions, reason: describeHold(hold), startsWhen: startsWhen(hold, positions, views, capViews, timeZone) };
  });
}

/** Does a job charged `charges` fit this scope now (in its unit)? The misfit as reserve.lua would report it, or nothing. */
function shortfallNow(v: ScopeView, charges: Charges): Shortfall[] {
  const need = chargeIn(charges, v.unit);
  const base = { scope: v.scope, unit: v.unit, usedGpuMs: v.usedGpuMs, reservedGpuMs: v.reservedGpuMs, neededGpuMs: need };
  if (v.limitGpuMs === null) return OPTIONAL.has(parseScopeId(v.scope).kind) ? [] : [{ ...base, code: 'no-limit', limitGpuMs: null }];
  if (v.ceilingGpuMs === null || v.usedGpuMs + v.reservedGpuMs + need <= v.ceilingGpuMs) return [];
  return [{ ...base, code: v.policy === 'soft' ? 'over-grace' : 'over-limit', limitGpuMs: v.ceilingGpuMs }];
}

/** Does a job on `gpus` GPUs pass this cap now? Its misfit as reserve.lua would report it, or nothing. */
function capShortfallNow(v: GpuCapView | undefined, gpus: number): Shortfall[] {
  if (!v || v.inFlightGpus + gpus <= v.effectiveMaxGpus) return [];
  return [{ scope: v.scope, code: 'over-gpus', limitGpuMs: v.effectiveMaxGpus, usedGpuMs: 0, reservedGpuMs: v.inFlightGpus, neededGpuMs: gpus }];
}

/** A cap's way out: GPUs freed by running jobs, the peak window's end, or an admin. */
function capWay(s: Shortfall, v: GpuCapView): { admin: string } | { way: string } {
  const subject = capSubject(s.scope);
  if (v.release === 'manual') return { admin: `${scopeLabel(s.scope)} are released by hand` };
  if (s.neededGpuMs > Math.max(v.maxGpus, v.peak?.maxGpus ?? 0)) return { admin: `the job needs ${s.neededGpuMs} GPUs, more than ${subject}'s cap ever allows` };
  const free = s.reservedGpuMs + s.neededGpuMs - s.limitGpuMs!;
  const ways = [...(free <= s.reservedGpuMs ? [`${free} GPU${free === 1 ? '' : 's'} free up in ${subject}`] : []), ...(v.peakNow ? [`${subject}'s peak hours end`] : [])];
  return ways.length > 0 ? { way: `starts when ${ways.join(', or when ')}` } : { admin: `${subject}'s cap leaves no room` };
}

/** What will start it, in words: each shortfall's way out, then its places in line. */
function startsWhen(hold: Hold, positions: HeldNow['positions'], views: Map<string, ScopeView>, capViews: Map<string, GpuCapView>, timeZone: string): string {
  const parts: string[] = [];
  const admin: string[] = [];
  for (const s of hold.shortfalls) {
    if (s.code === 'over-gpus') {
      const w = capWay(s, capViews.get(s.scope)!);
      if ('admin' in w) admin.push(w.admin);
      else parts.push(w.way);
      continue;
    }
    const v = views.get(s.scope)!;
    const label = scopeLabel(s.scope);
    if (s.code === 'no-limit') { admin.push(`no budget for ${label}`); continue; }
    if (v.release === 'manual') { admin.push(`${label} is released by hand`); continue; }
    const short = s.usedGpuMs + s.reservedGpuMs + s.neededGpuMs - s.limitGpuMs!;
    // Running jobs can free at most what they reserved; a new period starts from the limit as set (at least).
    const byRoom = short <= s.reservedGpuMs;
    const byReset = v.nextResetAt !== null && s.neededGpuMs <= (v.limitGpuMs ?? 0);
    const ways = [
      ...(byRoom ? [`${formatAmount(short, v.unit)}${unitSuffix(v.unit)} free up in ${label}`] : []),
      ...(byReset ? [`${byRoom ? '' : `${label} `}resets ${localTime(v.nextResetAt!, timeZone)}`] : []),
    ];
    if (ways.length === 0) admin.push(`${label} has no room coming (${v.period === 'none' ? 'one-off' : 'the job is larger than a period'})`);
    else parts.push(`starts when ${ways.join(', or when it ')}`);
  }
  for (const p of positions) {
    if (p.ahead === 0) continue;
    const manual = (views.get(p.scope) ?? capViews.get(p.scope))?.release === 'manual';
    parts.push(`after the ${p.ahead === 1 ? 'older held job' : `${p.ahead} older held jobs`} ahead of it in ${scopeLabel(p.scope)}'s line${manual ? ' (released by hand)' : ''}`);
  }
  if (admin.length > 0) parts.unshift(`needs an admin: ${admin.join('; ')}`);
  if (parts.length === 0) {
    const manual = positions.some((p) => (views.get(p.scope) ?? capViews.get(p.scope))?.release === 'manual');
    return manual ? "fits now: waiting for an admin's release" : 'fits now: starts at the next wake-up';
  }
  return parts.join('; ');
}

const formats = new Map<string, Intl.DateTimeFormat>();

/** "Mon 7 Dec 00:00 UTC": `ms` in `timeZone`, to the minute. */
export function localTime(ms: number, timeZone: string): string {
  let f = formats.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-GB', { timeZone, weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23', timeZoneName: 'short' });
    formats.set(timeZone, f);
  }
  const x: Partial<Record<Intl.DateTimeFormatPartTypes, string>> = {};
  for (const part of f.formatToParts(ms)) x[part.type] = part.value;
  return `${x.weekday} ${x.day} ${x.month} ${x.hour}:${x.minute} ${x.timeZoneName}`;
}

/**
 * The preflight's answer in plain words, for the submission screen: how many
 * jobs would start now, how many would wait and why, how many would be
 * refused, and, for each budget or quota that blocks jobs, the message the
 * PRD asks for:
 *   project alpha's budget is used up: 10.0 of 10.0 GPU-h. Contact your
 *   admin to raise it, or request an override.
 * The numbers are those of the first held job's shortfall on that scope: the
 * scope as the batch leaves it (the jobs before it counted, as the
 * gatekeeper would count them). Pure; the page renders what this returns.
 */
import type { PreflightReport } from '../src/admin/preflight.ts';
import type { Hold, Shortfall } from '../src/accounting/types.ts';
import { describeShortfall } from '../src/accounting/reasons.ts';
import { parseScopeId, scopeLabel } from '../src/accounting/scopes.ts';
import { formatAmount, unitSuffix } from '../src/units.ts';

export interface Why {
  text: string;
  jobs: number;
}

export interface Blocked {
  /** Scope base, e.g. project:alpha. */
  scope: string;
  message: string;
}

export interface Answer {
  jobs: number;
  start: number;
  /** Held, and throttled (they wait on intake, then are decided). */
  wait: number;
  refuse: number;
  /** Why they would wait, each reason once with how many jobs it holds, in batch order. */
  waitWhy: Why[];
  refuseWhy: Why[];
  blocked: Blocked[];
  /** The preflight's warnings, as sentences, with their codes. */
  warnings: { code: string; message: string }[];
  /** "These 12 jobs: 48 GPU-h = $196.80, 144 units", and the same on each other GPU type; null when none would run. */
  cost: { batch: string; byGpuType: string[] } | null;
}

/** "project alpha's budget", "user ann's daily quota", "run alpha/r1's cap". */
function subject(scope: string): string {
  const s = parseScopeId(scope);
  if (s.kind === 'project') return `project ${s.name}'s budget`;
  if (s.kind === 'run') return `run ${s.name}'s cap`;
  return scopeLabel(scope);
}

/** Why one shortfall holds a job, and (for budgets, quotas and run caps) what to do about it. */
export function shortfallWords(f: Shortfall): { why: string; blocked: string | null } {
  if (f.code === 'over-gpus') return { why: `${describeShortfall(f)} (it starts when running jobs end)`, blocked: null };
  if (f.code === 'no-limit') {
    const why = parseScopeId(f.scope).kind === 'project' ? `project ${parseScopeId(f.scope).name} has no budget` : `${scopeLabel(f.scope)} has no limit`;
    return { why, blocked: `${why}. Contact your admin to set one, or request an override.` };
  }
  const total = f.usedGpuMs + f.reservedGpuMs;
  const limit = f.limitGpuMs ?? 0;
  const unit = f.unit ?? 'gpuHours';
  const amount = (n: number) => formatAmount(n, unit);
  const grace = f.code === 'over-grace' ? ' (with its grace)' : '';
  const of = `${amount(total)} of ${amount(limit)}${unitSuffix(unit)}${grace}`;
  const why = total >= limit
    ? `${subject(f.scope)} is used up: ${of}`
    : `${subject(f.scope)} has too little left: ${of} used or reserved, and a job needs ${amount(f.neededGpuMs)}`;
  return { why, blocked: `${why}. Contact your admin to raise it, or request an override.` };
}

function tally(list: Why[], text: string): void {
  const w = list.find((x) => x.text === text);
  if (w) w.jobs += 1;
  else list.push({ text, jobs: 1 });
}

export function answerOf(report: PreflightReport, holds: readonly (Hold | undefined)[]): Answer {
  const waitWhy: Why[] = [];
  const refuseWhy: Why[] = [];
  const blocked = new Map<string, string>();
  for (const o of report.outcomes) {
    if (o.outcome === 'held') {
      const hold = holds[o.index];
      const shortfalls = hold?.shortfalls ?? [];
      // A job held only behind older held jobs says so in its reason.
      if (shortfalls.length === 0) tally(waitWhy, o.reason);
      for (const f of shortfalls) {
        const w = shortfallWords(f);
        tally(waitWhy, w.why);
        if (w.blocked !== null && !blocked.has(f.scope)) blocked.set(f.scope, w.blocked);
      }
    } else if (o.outcome === 'throttled') {
      // The due time differs job by job; the buckets are the reason.
      tally(waitWhy, `${o.reason.replace(/; due [^;]*$/, '')} (they go in turn as the rate allows)`);
    } else if (o.outcome === 'rejected') {
      tally(refuseWhy, o.reason);
    }
  }
  return {
    jobs: report.jobs,
    start: report.admitted,
    wait: report.held + report.throttled,
    refuse: report.rejected,
    waitWhy,
    refuseWhy,
    blocked: [...blocked].map(([scope, message]) => ({ scope, message })),
    warnings: report.warningDetails.map((w) => ({ code: w.code, message: w.message })),
    cost: costWords(report),
  };
}

const usd = (n: number) => formatAmount(Math.round(n * 1_000_000), 'usd');

/** What the jobs that would run cost, and on each GPU type of the rate card (cheapest first; where a project may not use it, said). */
function costWords(r: PreflightReport): Answer['cost'] {
  const c = r.cost;
  if (c.jobs === 0) return null;
  const hours = (h: number, charged: number) => `${h} GPU-h${charged !== h ? ` (${charged} as charged)` : ''}`;
  return {
    batch: `${c.jobs === r.jobs ? 'This batch' : `The ${jobs(c.jobs)} that would run`}: ${hours(c.gpuHours, c.chargedGpuHours)} = ${usd(c.usd)}, ${c.units} units.`,
    byGpuType: r.byGpuType.map((t) => `on ${t.gpuType}: ${usd(t.usd)}, ${t.units} units${t.notAllowedIn.length ? ` (not allowed in ${t.notAllowedIn.join(', ')})` : ''}`),
  };
}

const jobs = (n: number) => `${n} job${n === 1 ? '' : 's'}`;

/** "2 would wait: <why>." or, with several reasons, each with its count. */
function because(n: number, verb: string, why: Why[]): string {
  const reasons = why.length === 1 ? why[0]!.text : why.map((w) => `${w.text} (${jobs(w.jobs)})`).join('; ');
  return `${n} would ${verb}: ${reasons}.`;
}

/** The answer's sentences: start, wait, refuse (the latter two only when some do). */
export function sentences(a: Answer): { start: string; wait: string | null; refuse: string | null } {
  return {
    start: `${a.start} of ${jobs(a.jobs)} would start now.`,
    wait: a.wait > 0 ? because(a.wait, 'wait', a.waitWhy) : null,
    refuse: a.refuse > 0 ? because(a.refuse, 'be refused', a.refuseWhy) : null,
  };
}

/** After queueing: "queued 12 jobs: 10 start now, 2 wait". */
export function queuedSentence(a: Answer): string {
  const s = (n: number) => (n === 1 ? 's' : '');
  const parts = [`${a.start} start${s(a.start)} now`, ...(a.wait ? [`${a.wait} wait${s(a.wait)}`] : []), ...(a.refuse ? [`${a.refuse} will be refused`] : [])];
  return `queued ${jobs(a.jobs)}: ${parts.join(', ')}`;
}

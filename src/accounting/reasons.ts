/**
 * Why a job does not fit, as data first (Shortfall) and as a sentence at the
 * edge. The sentence names the scope and the numbers, e.g.
 *   project alpha: 98.5 of 100.0 GPU-h used or reserved; job needs 4.0
 *   user bob's daily quota: 8.0 of 8.0 GPU-h used or reserved; job needs 1.0
 */
import { formatHours } from '../units.ts';
import { scopeLabel } from './scopes.ts';

export interface Shortfall {
  /** Scope base. */
  scope: string;
  /**
   * no-limit: no budget configured (an unknown project); over-limit: the job
   * would pass a hard limit; over-grace: it would pass a soft limit's grace
   * (limitGpuMs is then the limit plus grace).
   */
  code: 'no-limit' | 'over-limit' | 'over-grace';
  limitGpuMs: number | null;
  usedGpuMs: number;
  reservedGpuMs: number;
  neededGpuMs: number;
}

/**
 * A script's misfit — scope, code (1 no limit, 2 over the limit, 3 over the
 * grace; see includes/scopes.lua misfits()), limit, used, reserved — as a
 * Shortfall, whether it came in a script's reply or in a JOB_HELD event.
 */
export function misfitShortfall(m: (string | number | undefined)[], neededGpuMs: number): Shortfall {
  const [scope, code, limit, used, reserved] = m;
  const c = Number(code);
  return {
    scope: String(scope),
    code: c === 1 ? 'no-limit' : c === 3 ? 'over-grace' : 'over-limit',
    limitGpuMs: c === 1 ? null : Number(limit),
    usedGpuMs: Number(used),
    reservedGpuMs: Number(reserved),
    neededGpuMs,
  };
}

export function describeShortfall(s: Shortfall): string {
  const label = scopeLabel(s.scope);
  if (s.code === 'no-limit') return `no budget for ${label}`;
  const of = s.code === 'over-grace' ? 'GPU-h allowed with grace' : 'GPU-h';
  return (
    `${label}: ${formatHours(s.usedGpuMs + s.reservedGpuMs)} of ${formatHours(s.limitGpuMs ?? 0)} ` +
    `${of} used or reserved; job needs ${formatHours(s.neededGpuMs)}`
  );
}

export function describeShortfalls(all: Shortfall[]): string {
  return all.map(describeShortfall).join('; and ');
}

/** Why a held job is (still) held: its shortfalls, or its place in a line. */
export function describeHold(h: { shortfalls: Shortfall[]; ahead: number; line?: string | undefined }): string {
  const behind = `${h.ahead === 1 ? '1 older held job' : `${h.ahead} older held jobs`} waiting for ${h.line ? scopeLabel(h.line) : 'the same scope'}`;
  if (h.shortfalls.length > 0) {
    const text = describeShortfalls(h.shortfalls);
    return h.ahead > 0 ? `${text} (behind ${behind})` : text;
  }
  if (h.ahead > 0) return `behind ${behind} (first in, first out)`;
  return 'fits now; waiting to be released';
}

/**
 * The scopes among `bases` that a hold reason (a sentence of describeHold)
 * names: its misfits and the line it waited behind. For rebuild, which has
 * the reason of a held job but lost its lines. A label counts only as a whole
 * name ("project a" is not named by "project ab: ...").
 */
export function scopesNamedIn(reason: string, bases: string[]): string[] {
  return bases.filter((b) => new RegExp(`(^|[^A-Za-z0-9._-])${escapeRegExp(scopeLabel(b))}(?![A-Za-z0-9._-])`).test(reason));
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

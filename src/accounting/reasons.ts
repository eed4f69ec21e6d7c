/**
 * Why a job does not fit, as data first (Shortfall) and as a sentence at the
 * edge. The sentence names the scope and the numbers, e.g.
 *   project alpha: 98.5 of 100.0 GPU-h used or reserved; job needs 4.0
 */
import { formatHours } from '../units.ts';
import { parseScopeId } from './scopes.ts';

export interface Shortfall {
  scope: string;
  /** no-limit: no budget configured; over-limit: the job would pass it. */
  code: 'no-limit' | 'over-limit';
  limitGpuMs: number | null;
  usedGpuMs: number;
  reservedGpuMs: number;
  neededGpuMs: number;
}

export function describeShortfall(s: Shortfall): string {
  const scope = parseScopeId(s.scope);
  const label = `${scope.kind} ${scope.name}`;
  if (s.code === 'no-limit') return `no budget for ${label}`;
  return (
    `${label}: ${formatHours(s.usedGpuMs + s.reservedGpuMs)} of ${formatHours(s.limitGpuMs ?? 0)} ` +
    `GPU-h used or reserved; job needs ${formatHours(s.neededGpuMs)}`
  );
}

export function describeShortfalls(all: Shortfall[]): string {
  return all.map(describeShortfall).join('; and ');
}

/** Why a held job is (still) held: its shortfalls, or its place in line. */
export function describeHold(project: string, h: { shortfalls: Shortfall[]; ahead: number }): string {
  const behind = h.ahead === 1 ? '1 older held job' : `${h.ahead} older held jobs`;
  if (h.shortfalls.length > 0) {
    const text = describeShortfalls(h.shortfalls);
    return h.ahead > 0 ? `${text} (behind ${behind} of project ${project})` : text;
  }
  if (h.ahead > 0) return `project ${project}: waiting behind ${behind} (first in, first out)`;
  return `project ${project}: fits now; waiting to be released`;
}

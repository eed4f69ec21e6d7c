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

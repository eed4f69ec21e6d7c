/**
 * What the CLI prints for people (tables and summaries); --json prints the
 * server's answer instead. Cells are made printable by table().
 */
import { table } from './table.ts';

export function preflightText(r: Record<string, any>): string {
  const lines = [`${r.jobs} job${r.jobs === 1 ? '' : 's'}: ${r.admitted} would be admitted now, ${r.held} held, ${r.rejected} rejected${r.throttled ? `, ${r.throttled} throttled` : ''}`];
  // Reasons grouped, each with how many jobs and the first one's index.
  const reasons = new Map<string, { n: number; first: number }>();
  for (const o of r.outcomes as { index: number; outcome: string; reason?: string }[]) {
    if (o.outcome === 'admitted') continue;
    const key = `${o.outcome}: ${o.reason}`;
    const g = reasons.get(key) ?? { n: 0, first: o.index };
    g.n += 1;
    reasons.set(key, g);
  }
  for (const [reason, g] of reasons) lines.push(`  ${g.n} × ${reason} (first: job ${g.first})`);
  lines.push('', scopeTable((r.scopes as Record<string, any>[]).map((s) => [s.scope, s])));
  if (r.warnings.length) lines.push('', 'warnings:', ...r.warnings.map((w: string) => `  ${w}`));
  return lines.join('\n');
}

export function submitText(r: Record<string, any>): string {
  const ids = r.jobIds as string[];
  const lines = [`submitted ${ids.length} job${ids.length === 1 ? '' : 's'} (${ids.length > 3 ? `${ids[0]} … ${ids.at(-1)}` : ids.join(', ')}); preflight: ${r.preflight.admitted} admitted, ${r.preflight.held} held${r.preflight.throttled ? `, ${r.preflight.throttled} throttled` : ''}`];
  if (r.warnings.length) lines.push('warnings:', ...r.warnings.map((w: string) => `  ${w}`));
  return lines.join('\n');
}

const SCOPE_COLUMNS = ['PERIOD', 'LIMIT', 'USED', 'RESERVED', 'REMAINING', 'EXEMPT', 'POLICY', 'NEXT RESET'];

/** A scope's cells under SCOPE_COLUMNS: limit (with what carried over or was adjusted), usage, remaining, next reset. */
function scopeCells(s: Record<string, any>): unknown[] {
  const limit = s.limitGpuHours === null ? 'none' : s.effectiveLimitGpuHours !== s.limitGpuHours ? `${s.effectiveLimitGpuHours} (${s.limitGpuHours} set)` : String(s.limitGpuHours);
  return [
    s.periodLabel ?? s.period, limit, s.usedGpuHours, s.reservedGpuHours, s.remainingGpuHours ?? '-',
    s.exemptUsedGpuHours + s.exemptReservedGpuHours, s.policy + (s.gracePercent !== null ? ` +${s.gracePercent}%` : '') + (s.release === 'manual' ? ', manual release' : ''), s.nextResetAt ?? '-',
  ];
}

/** One row per scope. */
export function scopeTable(rows: [string, Record<string, any>][]): string {
  return table(['SCOPE', ...SCOPE_COLUMNS], rows.map(([name, s]) => [name, ...scopeCells(s)])) + '\n(GPU hours)';
}

/** GET /projects: one row per project, with its held jobs; how to ask for the next page. */
export function projectsTable(r: Record<string, any>): string {
  const projects = r.projects as Record<string, any>[];
  const rows = projects.map((p) => [p.project, ...scopeCells(p), p.heldJobs]);
  const more = r.nextCursor === null ? '' : `; more: gatekeeper budget list --cursor ${r.nextCursor}`;
  return `${table(['PROJECT', ...SCOPE_COLUMNS, 'HELD'], rows)}\n${projects.length} project${projects.length === 1 ? '' : 's'}${more}\n(GPU hours; LIMIT none: no budget yet)`;
}

export function budgetTable(b: Record<string, any>): string {
  return scopeTable([[`project ${b.project}`, b]]);
}

export function quotaTable(q: Record<string, any>): string {
  return scopeTable([[`${q.user} daily`, q.daily], [`${q.user} weekly`, q.weekly]]);
}

export function age(s: number): string {
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172_800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86_400)}d`;
}


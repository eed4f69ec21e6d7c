/**
 * What the CLI prints for people (tables and summaries); --json prints the
 * server's answer instead. Cells are made printable by table().
 */
import { table } from './table.ts';
import { GPU_MS_PER_HOUR } from '../units.ts';
import { scopeLabel } from '../accounting/scopes.ts';

export function preflightText(r: Record<string, any>): string {
  const lines = [`${r.jobs} job${r.jobs === 1 ? '' : 's'}: ${r.admitted} would be admitted now, ${r.held} held, ${r.rejected} rejected${r.throttled ? `, ${r.throttled} throttled` : ''}`];
  const outcomes = (r.outcomes as { index: number; outcome: string; reason?: string }[]).filter((o) => o.outcome !== 'admitted');
  lines.push(...grouped(outcomes.map((o) => ({ what: `${o.outcome}: ${o.reason}`, job: o.index }))));
  lines.push('', scopeTable((r.scopes as Record<string, any>[]).map((s) => [scopeLabel(s.scope), s])));
  if (r.cost?.jobs) lines.push('', ...costLines(r.cost, r.byGpuType ?? []));
  if (r.warnings.length) lines.push('', 'warnings:', ...r.warnings.map((w: string) => `  ${w}`));
  return lines.join('\n');
}

/** The batch's cost on its own GPU types, and a table of it on each type of the rate card. */
function costLines(c: Record<string, any>, byType: Record<string, any>[]): string[] {
  const charged = c.chargedGpuHours !== c.gpuHours ? ` (${hoursCell(c.chargedGpuHours)} as charged)` : '';
  const lines = [`cost of the ${c.jobs} job${c.jobs === 1 ? '' : 's'} that would run: ${hoursCell(c.gpuHours)} GPU-h${charged} = ${usdCell(c.usd)}, ${unitsCell(c.units)} units`];
  if (byType.length === 0) return lines;
  const rows = byType.map((t) => [t.gpuType, hoursCell(t.chargedGpuHours), unitsCell(t.units), usdCell(t.usd), `${unitsCell(t.unitsPerGpuHour)} units, ${usdCell(t.usdPerGpuHour)}`, t.notAllowedIn.join(', ') || '-']);
  return [...lines, 'on each GPU type instead:', table(['GPU TYPE', 'GPU-H', 'UNITS', 'USD', 'RATE PER GPU-H', 'NOT ALLOWED IN'], rows)];
}

/** One line per distinct outcome and reason: how many jobs, and the first one. */
function grouped(items: { what: string; job: string | number }[]): string[] {
  const groups = new Map<string, { n: number; first: string | number }>();
  for (const { what, job } of items) {
    const g = groups.get(what) ?? { n: 0, first: job };
    g.n += 1;
    groups.set(what, g);
  }
  return [...groups].map(([what, g]) => `  ${g.n} × ${what} (first: job ${g.first})`);
}

export function submitText(r: Record<string, any>): string {
  const ids = r.jobIds as string[];
  const p = r.preflight;
  const lines = [`submitted ${ids.length} job${ids.length === 1 ? '' : 's'} (${ids.length > 3 ? `${ids[0]} … ${ids.at(-1)}` : ids.join(', ')}); preflight: ${p.admitted} admitted, ${p.held} held${p.throttled ? `, ${p.throttled} throttled` : ''}${p.rejected ? `, ${p.rejected} rejected` : ''}`];
  lines.push(...grouped(((p.rejections ?? []) as { jobId: string; reason: string }[]).map((x) => ({ what: `rejected: ${x.reason}`, job: x.jobId }))));
  if (r.warnings.length) lines.push('warnings:', ...r.warnings.map((w: string) => `  ${w}`));
  return lines.join('\n');
}

const SCOPE_COLUMNS = ['PERIOD', 'LIMIT', 'USED', 'RESERVED', 'REMAINING', 'GPU-H', 'UNITS', 'USD', 'EXEMPT', 'POLICY', 'NEXT RESET'];

// The API's amounts are decimals of integers (GPU-ms, milli-units, micro-dollars); a cell rounds
// back to the integer first, so neither a float's tail (0.30000000000000004) nor 19 digits print.

/** GPU hours as a cell: 98.5, 2, 0.000838 (to six decimals, as reasons write an amount that needs them). */
export const hoursCell = (h: number): string => String(Number((Math.round(h * GPU_MS_PER_HOUR) / GPU_MS_PER_HOUR).toFixed(6)));

/** Compute units as a cell, to the milli-unit: 96.25, 0.003. */
export const unitsCell = (u: number): string => String(Math.round(u * 1000) / 1000);

/** Dollars as a cell, to the micro-dollar: $12.50, -$1.025, $0.003437. */
export function usdCell(d: number): string {
  const micro = Math.round(d * 1_000_000);
  const [whole, frac = ''] = String(Math.abs(micro) / 1_000_000).split('.');
  return `${micro < 0 ? '-' : ''}$${whole}.${frac.padEnd(2, '0')}`;
}

/** An amount of a scope's unit as a cell: 12.5 (GPU-h), 12.5 units, $12.50. */
function inUnit(n: number | null | undefined, unit: string | undefined): string {
  if (n === null || n === undefined) return '-';
  if (unit === 'usd') return usdCell(n);
  return unit === 'units' ? `${unitsCell(n)} units` : hoursCell(n);
}

/**
 * A scope's cells under SCOPE_COLUMNS: limit (with what carried over or was
 * adjusted), usage and remaining in the limit's unit, then what it counted
 * in each unit (used + reserved), exempt hours, policy and next reset.
 */
function scopeCells(s: Record<string, any>): unknown[] {
  const u = s.unit as string | undefined;
  const limit = s.limit === null || s.limit === undefined ? 'none' : s.effectiveLimit !== s.limit ? `${inUnit(s.effectiveLimit, u)} (${inUnit(s.limit, u)} set)` : inUnit(s.limit, u);
  const c = s.counted ?? { gpuHours: { used: 0, reserved: 0 }, units: { used: 0, reserved: 0 }, usd: { used: 0, reserved: 0 } };
  return [
    s.periodLabel ?? s.period, limit, inUnit(s.used, u), inUnit(s.reserved, u), inUnit(s.remaining, u),
    hoursCell(c.gpuHours.used + c.gpuHours.reserved), unitsCell(c.units.used + c.units.reserved), usdCell(c.usd.used + c.usd.reserved),
    hoursCell(s.exemptUsedGpuHours + s.exemptReservedGpuHours), s.policy + (s.gracePercent !== null ? ` +${s.gracePercent}%` : '') + (s.release === 'manual' ? ', manual release' : ''), s.nextResetAt ?? '-',
  ];
}

/** One row per scope. */
export function scopeTable(rows: [string, Record<string, any>][]): string {
  return table(['SCOPE', ...SCOPE_COLUMNS], rows.map(([name, s]) => [name, ...scopeCells(s)])) + '\n(limit, used, reserved, remaining in the limit\'s unit; GPU-H, UNITS, USD: used + reserved; EXEMPT in GPU hours)';
}

/** GET /projects: one row per project, with its held jobs; how to ask for the next page. */
export function projectsTable(r: Record<string, any>): string {
  const projects = r.projects as Record<string, any>[];
  const rows = projects.map((p) => [p.project, ...scopeCells(p), p.heldJobs]);
  const more = r.nextCursor === null ? '' : `; more: gatekeeper budget list --cursor ${r.nextCursor}`;
  return `${table(['PROJECT', ...SCOPE_COLUMNS, 'HELD'], rows)}\n${projects.length} project${projects.length === 1 ? '' : 's'}${more}\n(amounts in each budget's unit; LIMIT none: no budget yet)`;
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


/**
 * Amounts are integers of GPU-milliseconds (one GPU busy for one millisecond)
 * everywhere inside: Redis counters, Postgres columns, Lua arithmetic. Only the
 * edges (API, CLI, log text) speak decimal GPU hours.
 *
 * Why milliseconds: BullMQ stamps processedOn/finishedOn in ms, so the fallback
 * "wall time x GPUs" is exact with no rounding at all. 2^53 GPU-ms is about
 * 2.5 billion GPU-hours (285,000 GPU-years), far beyond any budget, so Lua's
 * doubles stay exact.
 */
export const GPU_MS_PER_HOUR = 3_600_000;

/** Decimal GPU hours from the edge -> integer GPU-ms (nearest). */
export function hoursToGpuMs(hours: number): number {
  return Math.round(hours * GPU_MS_PER_HOUR);
}

/** Integer GPU-ms -> decimal GPU hours for display (exact to the ms). */
export function gpuMsToHours(gpuMs: number): number {
  return gpuMs / GPU_MS_PER_HOUR;
}

/** "98.5" style text for reasons: one decimal, more when the amount needs it. */
export function formatHours(gpuMs: number): string {
  const h = gpuMsToHours(gpuMs);
  const oneDecimal = h.toFixed(1);
  return Number(oneDecimal) === h ? oneDecimal : String(Number(h.toFixed(6)));
}

/** An amount of a limit's unit as text: GPU-ms as hours ("98.5"), milli-units as units ("96.25"), micro-dollars as dollars ("$4.10"). */
export function formatAmount(n: number, unit: 'gpuHours' | 'units' | 'usd'): string {
  if (unit === 'gpuHours') return formatHours(n);
  if (unit === 'units') return decimalText(n, 1000, 1);
  return `${n < 0 ? '-' : ''}$${decimalText(Math.abs(n), 1_000_000, 2)}`;
}

/** What follows an amount in a sentence: ' GPU-h', ' units', or nothing for dollars (the $ leads). */
export function unitSuffix(unit: 'gpuHours' | 'units' | 'usd'): string {
  return unit === 'gpuHours' ? ' GPU-h' : unit === 'units' ? ' units' : '';
}

/** n / scale as exact decimal text with at least `min` decimals (integers only, so no float rounding). */
function decimalText(n: number, scale: number, min: number): string {
  const digits = String(scale).length - 1;
  const sign = n < 0 ? '-' : '';
  const a = Math.abs(n);
  const whole = Math.floor(a / scale);
  let frac = String(a - whole * scale).padStart(digits, '0').replace(/0+$/, '');
  if (frac.length < min) frac = frac.padEnd(min, '0');
  return `${sign}${whole}${frac ? `.${frac}` : ''}`;
}

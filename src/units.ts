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

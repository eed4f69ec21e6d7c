/** Amounts are whole GPU-ms: refuse anything else before it reaches a script. */
export function assertAmount(n: number, min: number): void {
  if (!Number.isSafeInteger(n) || n < min) throw new RangeError(`amount must be an integer >= ${min} GPU-ms, got ${n}`);
}

/** Reading Redis stream replies (XINFO) and comparing stream ids. */

/** A reply as an object, whether it came as a flat array (RESP2) or a map (RESP3). */
export function fields(reply: unknown): Record<string, unknown> {
  if (!Array.isArray(reply)) return (reply instanceof Map ? Object.fromEntries(reply) : reply) as Record<string, unknown>;
  const flat = reply as unknown[];
  const o: Record<string, unknown> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) o[String(flat[i])] = flat[i + 1];
  return o;
}

/** Order of two stream ids ('<ms>-<seq>'): negative, zero or positive. */
export function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split('-').map(BigInt) as [bigint, bigint];
  return am === bm ? (as === bs ? 0 : as < bs ? -1 : 1) : am < bm ? -1 : 1;
}

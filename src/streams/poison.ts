/**
 * Telling one bad stream entry from a store that is down. A consumer that
 * cannot store a batch must know which it is: a store that is down (no
 * connection, shutting down, out of resources) means wait and retry, losing
 * nothing; an entry the store refuses on its own merits (a value Postgres
 * cannot hold, a constraint it breaks, a field we cannot parse) will fail
 * forever and must go aside, or it blocks every entry after it.
 *
 * Only refusals that are about the data count as the entry's fault: Postgres
 * SQLSTATE classes 22 (data exception: a NUL in text, a number out of
 * range), 23 (integrity constraint) and 54 (program limit: a value too large
 * to index), and an EntryError our own parsing throws. Anything else, an
 * error we do not recognise included, is treated as the store's: waiting is
 * the safe way to be wrong (a schema not yet migrated fails every entry alike,
 * and must not quarantine them all).
 */

/** Thrown by a consumer's own parsing of an entry: the entry is malformed. */
export class EntryError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'EntryError';
  }
}

const ENTRY_SQLSTATE_CLASSES = new Set(['22', '23', '54']);

/** The SQLSTATE of a Postgres error, if it is one. */
export function sqlstate(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : null;
}

/** True when `err` says the entries themselves cannot be stored (see the header). */
export function isEntryFault(err: unknown): boolean {
  if (err instanceof EntryError) return true;
  const code = sqlstate(err);
  return code !== null && ENTRY_SQLSTATE_CLASSES.has(code.slice(0, 2));
}

/**
 * The dead letter of a stream consumer: an entry no store will take goes to
 * the quarantine table with its error (src/db/quarantine.ts), is logged, and
 * is reported to `onQuarantined` (the process counts it and raises an
 * ENTRY_QUARANTINED event), so that the entries after it flow on. An admin
 * lists, inspects and replays it later (src/admin/quarantine.ts).
 */
import type { Logger } from '../log.ts';
import type { Queryable } from '../db/pool.ts';
import { quarantine, type QuarantineStream } from '../db/quarantine.ts';
import { printable } from '../text.ts';
import { sqlstate } from './poison.ts';
import type { StreamEntry } from './consumer.ts';

export interface Quarantined {
  id: number;
  stream: QuarantineStream;
  streamId: string;
  /** Why the store refused it, printable (it may quote the entry). */
  error: string;
  sqlstate: string | null;
}

/** Why a store refused an entry, in one printable line of at most 1,000 characters. */
export function describeRefusal(err: unknown): string {
  const code = sqlstate(err);
  const message = (err as Error | null)?.message ?? String(err);
  const text = printable(code ? `${code}: ${message}` : message);
  return text.length > 1_000 ? `${text.slice(0, 1_000)}…` : text;
}

/** A StreamConsumer's onPoison for `stream`: quarantine, log, report. A failure to quarantine fails the batch (retried). */
export function deadLetter(
  db: Queryable,
  stream: QuarantineStream,
  log: Logger,
  onQuarantined?: (q: Quarantined) => Promise<void> | void,
): (entry: StreamEntry, err: unknown) => Promise<void> {
  return async (entry, err) => {
    const q = { stream, streamId: entry.id, error: describeRefusal(err), sqlstate: sqlstate(err) };
    const id = await quarantine(db, { ...q, fields: entry.fields });
    log.error({ ...q, quarantineId: id }, `${stream} stream: an entry no store will take was quarantined; the entries after it go on`);
    await onQuarantined?.({ id, ...q });
  };
}

/**
 * Drains the audit outbox (src/audit/change.ts recordAudit) into the Postgres
 * audit table: the rows of changes made in Redis at a moment Postgres refused
 * them. At least once through a consumer group, once in the table (request
 * ids are unique); an entry that cannot be stored is quarantined. Runs in the
 * reconciler role, next to the ledger writer.
 */
import type { Redis } from 'ioredis';
import type { Pool, Queryable } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { writeAudit, type Actor, type AuditEntry } from '../db/audit.ts';
import { StreamConsumer, type StreamEntry } from '../streams/consumer.ts';
import { deadLetter, type Quarantined } from '../streams/dead-letter.ts';
import { EntryError } from '../streams/poison.ts';

interface OutboxRow extends AuditEntry {
  requestId: string;
  at: number;
  actor: Actor;
}

/** The outbox's consumer (start, stop, drainOnce). */
export function createAuditWriter(
  redis: Redis,
  streamKey: string,
  pool: Pool,
  log: Logger,
  opts: { blockMs?: number; onQuarantined?: (q: Quarantined) => Promise<void> | void } = {},
): StreamConsumer {
  return new StreamConsumer(redis, streamKey, 'audit-writers', log, (e) => writeAuditEntries(pool, e), {
    blockMs: opts.blockMs ?? 1_000,
    deleteAfterAck: true,
    onPoison: deadLetter(pool, 'audit', log, opts.onQuarantined),
  });
}

/** Store outbox entries' audit rows, each once (by request id). */
export async function writeAuditEntries(db: Queryable, entries: StreamEntry[]): Promise<void> {
  for (const e of entries) {
    let row: OutboxRow;
    try {
      const i = e.fields.indexOf('row');
      row = JSON.parse(e.fields[i + 1]!) as OutboxRow;
      if (i < 0 || typeof row.requestId !== 'string' || typeof row.action !== 'string' || typeof row.actor?.name !== 'string') throw new Error('not an audit row');
    } catch (err) {
      throw new EntryError(`audit outbox entry ${e.id} cannot be read: ${(err as Error).message}`, { cause: err });
    }
    const { requestId, at, actor, ...entry } = row;
    await writeAudit(db, actor, entry, { requestId, at });
  }
}

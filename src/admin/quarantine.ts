/**
 * The admin side of the quarantine: list and inspect the stream entries no
 * store would take, and replay one after a fix. A replay runs the entry
 * through the same code its consumer runs (the ledger writer's insert, or
 * the event store's), in one transaction with marking it replayed and its
 * audit row: it lands whole or not at all. `repair` stores text Postgres
 * cannot hold (a NUL in a job type, written before the edges refused it) as
 * visible escapes; amounts are never changed.
 */
import type { Queue } from 'bullmq';
import type { Pool } from '../db/pool.ts';
import type { Config } from '../config.ts';
import { writeAudit, type Actor } from '../db/audit.ts';
import { inTransaction } from '../db/transaction.ts';
import { getQuarantined, listQuarantine, lockQuarantined, markReplayed, type QuarantinedEntry, type QuarantineStream } from '../db/quarantine.ts';
import { writeLedgerEntries } from '../ledger/writer.ts';
import { deliverStored, insertEvents } from '../events/store.ts';
import { writeAuditEntries } from '../ledger/audit-writer.ts';
import type { DeliveryJobData } from '../events/webhooks.ts';
import { describeRefusal } from '../streams/dead-letter.ts';
import { isEntryFault } from '../streams/poison.ts';

/** The entry does not exist, or was replayed already, or still fails: the message says which. */
export class ReplayRefused extends Error {
  constructor(
    readonly status: 404 | 409,
    message: string,
  ) {
    super(message);
  }
}

export class QuarantineAdmin {
  constructor(
    private readonly pool: Pool,
    private readonly config: Pick<Config, 'timeZone' | 'webhookAttempts'>,
    /** gpu-webhooks: a replayed event is delivered like any other. */
    private readonly deliveries: Queue<DeliveryJobData>,
  ) {}

  list(f: { stream?: QuarantineStream; waiting?: boolean; limit: number; offset: number }) {
    return listQuarantine(this.pool, f);
  }

  get(id: number): Promise<QuarantinedEntry | null> {
    return getQuarantined(this.pool, id);
  }

  async replay(id: number, actor: Actor, opts: { repair: boolean; reason: string | null }): Promise<QuarantinedEntry> {
    const replayed = await inTransaction(this.pool, async (client) => {
      const q = await lockQuarantined(client, id);
      if (!q) throw new ReplayRefused(404, `no quarantined entry ${id}`);
      if (q.replayedAt) throw new ReplayRefused(409, `entry ${id} was replayed by ${q.replayedBy} at ${q.replayedAt.toISOString()}`);
      const streamEntry = { id: q.streamId, fields: q.fields };
      try {
        if (q.stream === 'ledger') await writeLedgerEntries(client, [streamEntry], this.config.timeZone, { repair: opts.repair });
        else if (q.stream === 'events') await insertEvents(client, [streamEntry], { repair: opts.repair });
        else await writeAuditEntries(client, [streamEntry]);
      } catch (err) {
        if (!isEntryFault(err)) throw err;
        throw new ReplayRefused(409, `entry ${id} still cannot be stored: ${describeRefusal(err)}${opts.repair ? '' : ' (a repairing replay writes text Postgres cannot hold as escapes)'}`);
      }
      await markReplayed(client, id, actor.name);
      await writeAudit(client, actor, {
        action: 'quarantine.replay',
        target: `quarantine:${id}`,
        before: { stream: q.stream, streamId: q.streamId, replayed: false },
        after: { replayed: true, repair: opts.repair },
        reason: opts.reason,
      });
      return q;
    });
    const entry: QuarantinedEntry = { ...replayed, replayedAt: new Date(), replayedBy: actor.name };
    // Deliveries are queued after the commit (their job ids dedupe): a crash in between leaves
    // the event stored and listed as an alert, but not sent to webhooks.
    if (entry.stream === 'events') await deliverStored(this.pool, this.deliveries, this.config, [entry.streamId]);
    return entry;
  }
}

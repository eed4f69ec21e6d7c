/**
 * Every admin change commits with its audit row, or not at all.
 *
 * Changes whose truth is in Postgres (limits, exempt types; `adminChange`):
 * the Postgres writes and the audit row go in one transaction, holding an
 * advisory lock per thing changed; the Redis copy is written before COMMIT,
 * with an undo for each step. Redis refuses a step: the steps already done
 * are undone and the transaction rolled back. COMMIT fails: the audit row is
 * looked for by its request id (an answer lost on the way may hide a commit
 * that landed); not there, the Redis steps are undone. So a failure at any
 * step leaves both stores as they were, or the change complete and audited.
 * (Postgres unreachable right after a failed COMMIT: the Redis steps are
 * undone, and start-up copies the limits from Postgres again.)
 *
 * Changes made in Redis first (releasing, overriding or cancelling held jobs,
 * a rebuild; `recordAudit`): a Lua script makes the change atomically, then
 * its audit row is inserted; if Postgres refuses it at that moment, the row
 * goes to the audit outbox stream in Redis, which the reconciler drains into
 * Postgres (src/ledger/audit-writer.ts). The change is never left unaudited
 * unless Redis fails in the instant after it succeeded (then the row is
 * logged whole, at error level).
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Pool, PoolClient } from '../db/pool.ts';
import type { Logger } from '../log.ts';
import { auditExists, writeAudit, type Actor, type AuditEntry } from '../db/audit.ts';
import { lockLimit } from '../db/limits.ts';
import { begin, commit, rollback } from '../db/transaction.ts';

/** One write to Redis and how to take it back. */
export interface RedisStep {
  apply(): Promise<void>;
  undo(): Promise<void>;
}

export interface ChangeTx {
  db: PoolClient;
  /** Insert an audit row in this transaction. */
  audit(actor: Actor, e: AuditEntry): Promise<void>;
  /** A Redis write made after the Postgres writes and before COMMIT. */
  redis(step: RedisStep): void;
}

/** Thrown when a change did not happen; `cause` says why. Both stores are as they were. */
export class ChangeFailed extends Error {}

export async function adminChange<T>(pool: Pool, locks: string[], fn: (tx: ChangeTx) => Promise<T>, log?: Logger): Promise<T> {
  const requestId = randomUUID();
  const steps: RedisStep[] = [];
  let audits = 0;
  const client = await pool.connect();
  const applied: RedisStep[] = [];
  let released = false;
  const release = (err?: Error) => {
    if (!released) client.release(err);
    released = true;
  };
  try {
    await begin(client);
    // Sorted, so two changes over the same keys never wait on each other in a circle.
    for (const key of [...new Set(locks)].sort()) await lockLimit(client, key);
    const out = await fn({
      db: client,
      audit: async (actor, e) => {
        // One request may audit several rows (a quota's daily and weekly part): each gets its own id.
        await writeAudit(client, actor, e, { requestId: audits++ === 0 ? requestId : `${requestId}.${audits}` });
      },
      redis: (step) => void steps.push(step),
    });
    for (const step of steps) {
      await step.apply();
      applied.push(step);
    }
    try {
      await commit(client);
    } catch (err) {
      release(err as Error); // the connection may be broken: never reuse it
      if (audits > 0 && (await auditExists(pool, requestId).catch(() => false))) return out; // it landed after all
      throw err;
    }
    return out;
  } catch (err) {
    if (!released) await rollback(client).catch(() => {});
    for (const step of applied.reverse()) {
      await step.undo().catch((e: unknown) => log?.error({ err: e, requestId }, 'admin change: could not undo a Redis step after the change failed; start-up (or gatekeeper rebuild) copies Postgres to Redis again'));
    }
    throw err instanceof ChangeFailed ? err : new ChangeFailed('the change was not made', { cause: err });
  } finally {
    release();
  }
}

export interface DurableAudit {
  pool: Pool;
  redis: Redis;
  /** The audit outbox stream (Keys.auditOutbox). */
  outboxKey: string;
  log: Logger;
}

/**
 * The audit row of a change already made in Redis: into Postgres now, or
 * through the outbox when Postgres refuses it (see the header).
 */
export async function recordAudit(d: DurableAudit, actor: Actor, e: AuditEntry, at = Date.now(), requestId: string = randomUUID()): Promise<void> {
  try {
    await writeAudit(d.pool, actor, e, { requestId, at });
    return;
  } catch (err) {
    d.log.warn({ err, action: e.action, target: e.target, requestId }, 'audit row refused by Postgres; sent through the audit outbox');
  }
  const row = JSON.stringify({ requestId, at, actor, ...e });
  try {
    await d.redis.xadd(d.outboxKey, '*', 'row', row);
  } catch (err) {
    d.log.error({ err, auditRow: row }, 'audit row could not be stored in Postgres nor in the outbox; it is only in this log line');
    throw err;
  }
}

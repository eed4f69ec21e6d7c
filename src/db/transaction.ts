/**
 * Transactions: the statements that open and close one, and the two ways
 * callers run work inside one. A caller that must decide what happens
 * between COMMIT and releasing the client (src/audit/change.ts) uses
 * begin/commit/rollback itself.
 */
import type { Pool, PoolClient, Queryable } from './pool.ts';

export async function begin(db: Queryable): Promise<void> {
  await db.query('BEGIN');
}

/** A read-only transaction whose statements all see the same snapshot. */
export async function beginSnapshot(db: Queryable): Promise<void> {
  await db.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
}

export async function commit(db: Queryable): Promise<void> {
  await db.query('COMMIT');
}

export async function rollback(db: Queryable): Promise<void> {
  await db.query('ROLLBACK');
}

/** Run `fn` in one transaction on one client: committed if it resolves, rolled back if it throws. */
export function inTransaction<T>(pool: Pool, fn: (db: PoolClient) => Promise<T>): Promise<T> {
  return run(pool, begin, fn);
}

/** As inTransaction, read-only, every statement seeing the same instant (beginSnapshot). */
export function inSnapshot<T>(pool: Pool, fn: (db: PoolClient) => Promise<T>): Promise<T> {
  return run(pool, beginSnapshot, fn);
}

async function run<T>(pool: Pool, start: (db: Queryable) => Promise<void>, fn: (db: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await start(client);
    const out = await fn(client);
    await commit(client);
    return out;
  } catch (err) {
    await rollback(client).catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

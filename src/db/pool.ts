import pg from 'pg';

// bigint columns come back as strings by default; our amounts stay below
// 2^53 (see units.ts), so they are exact as JS numbers.
pg.types.setTypeParser(20, (v) => Number(v));

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
/** Anything that runs a query: the pool, or one client inside a transaction. */
export type Queryable = Pick<pg.Pool, 'query'>;

/** The cheapest round trip: resolves if Postgres answers (the health check). */
export async function ping(db: Queryable): Promise<void> {
  await db.query('SELECT 1');
}

/**
 * `waitForClientMs`: how long a query waits for a connection (a new one, or a
 * free one when all `max` are busy) before it fails: a Postgres that does not
 * answer makes calls fail instead of hanging. @default 5000
 */
export function createPool(connectionString: string, max = 10, waitForClientMs = 5_000): pg.Pool {
  const pool = new pg.Pool({ connectionString, max, connectionTimeoutMillis: waitForClientMs });
  // An idle client losing its connection must not crash the process.
  pool.on('error', () => {});
  return pool;
}

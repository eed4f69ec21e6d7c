import pg from 'pg';

// bigint columns come back as strings by default; our amounts stay below
// 2^53 (see units.ts), so they are exact as JS numbers.
pg.types.setTypeParser(20, (v) => Number(v));

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
/** Anything that runs a query: the pool, or one client inside a transaction. */
export type Queryable = Pick<pg.Pool, 'query'>;

export function createPool(connectionString: string, max = 10): pg.Pool {
  // A Postgres that does not answer makes calls fail after 5 s instead of hanging.
  const pool = new pg.Pool({ connectionString, max, connectionTimeoutMillis: 5_000 });
  // An idle client losing its connection must not crash the process.
  pool.on('error', () => {});
  return pool;
}

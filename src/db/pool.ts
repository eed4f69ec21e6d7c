import pg from 'pg';

// bigint columns come back as strings by default; our amounts stay below
// 2^53 (see units.ts), so they are exact as JS numbers.
pg.types.setTypeParser(20, (v) => Number(v));

export type Pool = pg.Pool;

export function createPool(connectionString: string, max = 10): pg.Pool {
  const pool = new pg.Pool({ connectionString, max });
  // An idle client losing its connection must not crash the process.
  pool.on('error', () => {});
  return pool;
}

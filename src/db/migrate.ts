/**
 * Numbered SQL migrations (src/db/migrations/NNN_name.sql), each in its own
 * transaction that first records itself, so a migration is never applied
 * twice. Processes starting together also serialize on a transaction-scoped
 * advisory lock: Postgres' own catalog races (two concurrent CREATE TABLE IF
 * NOT EXISTS can both try to create it) never surface as a start-up failure.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Pool } from './pool.ts';

const dir = new URL('./migrations/', import.meta.url);

export function migrationFiles(): { id: number; name: string; sql: string }[] {
  return readdirSync(dir)
    .filter((f) => /^\d{3}_.+\.sql$/.test(f))
    .sort()
    .map((f) => ({ id: Number(f.slice(0, 3)), name: f, sql: readFileSync(new URL(f, dir), 'utf8') }));
}

/** Any fixed number: the advisory lock all migrators of one database share. */
const MIGRATION_LOCK = 7_311_002;

export async function migrate(pool: Pool): Promise<number[]> {
  const applied: number[] = [];
  for (const m of migrationFiles()) {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [MIGRATION_LOCK]);
      await client.query(
        `CREATE TABLE IF NOT EXISTS gatekeeper_migrations (
           id int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const r = await client.query(
        'INSERT INTO gatekeeper_migrations (id, name) VALUES ($1::int, $2::text) ON CONFLICT (id) DO NOTHING',
        [m.id, m.name],
      );
      if (r.rowCount === 0) {
        await client.query('ROLLBACK');
        continue;
      }
      await client.query(m.sql);
      await client.query('COMMIT');
      applied.push(m.id);
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }
  return applied;
}

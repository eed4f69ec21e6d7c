/**
 * Numbered SQL migrations (src/db/migrations/NNN_name.sql), each in its own
 * transaction that first records itself: two processes migrating at once
 * collide on the primary key and one rolls back, instead of migrating twice.
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

export async function migrate(pool: Pool): Promise<number[]> {
  await pool.query(
    `CREATE TABLE IF NOT EXISTS gatekeeper_migrations (
       id int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
  );
  const applied: number[] = [];
  for (const m of migrationFiles()) {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
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
      // Another process applied it between our check and our insert.
      if ((err as { code?: string }).code === '23505') continue;
      throw err;
    } finally {
      client.release();
    }
  }
  return applied;
}

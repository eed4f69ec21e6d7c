/**
 * src/db/schema.sql is the schema the migrations produce: an empty database
 * is migrated and its dump (src/db/schema.ts) compared with the committed
 * file, on the server Postgres the other suites use and on the embedded
 * PGlite that runs when DATABASE_URL is unset. A migration that changes the
 * schema without the file regenerated fails here, with the diff.
 */
import { afterAll, describe, expect, inject, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPool } from '../src/db/pool.ts';
import { migrate } from '../src/db/migrate.ts';
import { schemaDump } from '../src/db/schema.ts';
import { EMBEDDED_POOL_SIZE, startEmbeddedPostgres } from '../src/db/embedded.ts';
import { createDatabase } from './support/infra.ts';

const committed = readFileSync(new URL('../src/db/schema.sql', import.meta.url), 'utf8');
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** Migrate the empty database at `url` and dump its schema. */
async function migratedDump(url: string, connections: number): Promise<string> {
  const pool = createPool(url, connections);
  try {
    await migrate(pool);
    return await schemaDump(pool);
  } finally {
    await pool.end();
  }
}

const hint = (where: string) =>
  `src/db/schema.sql is not the schema that migrating an empty ${where} produces (the diff below: - committed, + migrated). ` +
  'If the migration is meant to change the schema, run `npm run db:schema` and commit src/db/schema.sql with it.';

describe('the committed schema dump', () => {
  it('is what migrating an empty Postgres database produces', async () => {
    const db = await createDatabase(inject('databaseUrl'), `gk_schema_${randomBytes(5).toString('hex')}`);
    cleanups.push(db.drop);
    expect(await migratedDump(db.url, 2), hint('Postgres database')).toBe(committed);
  });

  it('is what migrating an empty embedded PGlite produces', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gk-schema-test-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const pg = await startEmbeddedPostgres(dir);
    cleanups.push(pg.stop);
    expect(await migratedDump(pg.url, EMBEDDED_POOL_SIZE), hint('embedded PGlite')).toBe(committed);
  });
});

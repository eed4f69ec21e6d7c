/**
 * `npm run db:schema`: write src/db/schema.sql, the schema that migrating an
 * empty database produces (src/db/schema.ts renders it). Run it after adding
 * a migration and commit the file with it; test/schema.test.ts fails until
 * they agree. It migrates a fresh embedded PGlite in a temporary directory,
 * so it needs no server; the test checks a server Postgres gives the same.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EMBEDDED_POOL_SIZE, startEmbeddedPostgres } from '../src/db/embedded.ts';
import { createPool } from '../src/db/pool.ts';
import { migrate } from '../src/db/migrate.ts';
import { schemaDump } from '../src/db/schema.ts';

const target = fileURLToPath(new URL('../src/db/schema.sql', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'gk-schema-'));
try {
  const pg = await startEmbeddedPostgres(dir);
  const pool = createPool(pg.url, EMBEDDED_POOL_SIZE);
  try {
    await migrate(pool);
    const text = await schemaDump(pool);
    const before = (() => {
      try {
        return readFileSync(target, 'utf8');
      } catch {
        return null;
      }
    })();
    if (before === text) process.stdout.write('src/db/schema.sql is up to date\n');
    else {
      writeFileSync(target, text);
      process.stdout.write('wrote src/db/schema.sql: review its diff and commit it with the migration\n');
    }
  } finally {
    await pool.end();
    await pg.stop();
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * DATABASE_URL unset: an embedded Postgres (PGlite) under DATA_DIR, served on
 * a loopback port by pglite-socket so the ordinary `pg` driver talks to it.
 * One process only: PGlite is single-writer. Set DATABASE_URL to scale out.
 *
 * One connection, serialised by the pg pool (EMBEDDED_POOL_SIZE): PGlite runs
 * one protocol exchange at a time, and the socket server's multiplexer
 * queues each message (Parse, Bind, Execute, Sync) on its own, so two
 * connections' extended-protocol exchanges interleave and one request's
 * statement is bound with another's parameters (seen: wrong values written,
 * 500s, a request never answered). The multiplexer is wrong, not slow, so
 * nothing measured could make it the choice; the server is started without
 * it (maxConnections 1) so a second connection is refused, not mixed in.
 */
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';

/** Connections the process may open to the embedded Postgres: one (see above). */
export const EMBEDDED_POOL_SIZE = 1;

export interface EmbeddedPostgres {
  url: string;
  stop(): Promise<void>;
}

export async function startEmbeddedPostgres(dataDir: string): Promise<EmbeddedPostgres> {
  const { PGlite } = await import('@electric-sql/pglite');
  const { PGLiteSocketServer } = await import('@electric-sql/pglite-socket');
  const dir = resolve(dataDir, 'pglite');
  mkdirSync(dir, { recursive: true });
  const db = await PGlite.create(dir);
  const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0, maxConnections: EMBEDDED_POOL_SIZE });
  await server.start();
  const conn = server.getServerConn(); // "127.0.0.1:PORT"
  return {
    url: `postgres://postgres@${conn}/postgres?sslmode=disable`,
    async stop() {
      await server.stop();
      await db.close();
    },
  };
}

/** People's keys in Postgres (src/people/api-keys.ts): the row, never the secret, only its SHA-256. */
import type { Queryable } from './pool.ts';
import type { PersonRole } from '../http/access.ts';

export interface KeyRow {
  id: string;
  person: string;
  role: PersonRole;
  projects: string[] | null;
  created_at: Date;
  created_by: string;
  expires_at: Date | null;
  revoked_at: Date | null;
  revoked_by: string | null;
  last_used_at: Date | null;
}

const COLUMNS = 'id, person, role, projects, created_at, created_by, expires_at, revoked_at, revoked_by, last_used_at';

export async function insertKey(
  db: Queryable,
  k: { id: string; person: string; role: PersonRole; projects: string[] | null; secretSha256: Buffer; createdBy: string; expiresAt: Date | null },
): Promise<KeyRow> {
  const r = await db.query(
    `INSERT INTO api_keys (id, person, role, projects, secret_sha256, created_by, expires_at)
     VALUES ($1::text, $2::text, $3::text, $4::text[], $5::bytea, $6::text, $7::timestamptz) RETURNING ${COLUMNS}`,
    [k.id, k.person, k.role, k.projects, k.secretSha256, k.createdBy, k.expiresAt],
  );
  return r.rows[0] as KeyRow;
}

/** At most 1,000 keys, by person. */
export async function listKeys(db: Queryable, f: { person: string | null; includeRevoked: boolean }): Promise<KeyRow[]> {
  const r = await db.query(
    `SELECT ${COLUMNS} FROM api_keys WHERE ($1::text IS NULL OR person = $1::text) AND ($2::boolean OR revoked_at IS NULL)
     ORDER BY person COLLATE "C", created_at, id LIMIT 1000`,
    [f.person, f.includeRevoked],
  );
  return r.rows as KeyRow[];
}

/** The key revoked now, or null if there is none or it was revoked already. */
export async function revokeKey(db: Queryable, id: string, by: string): Promise<KeyRow | null> {
  const r = await db.query(
    `UPDATE api_keys SET revoked_at = now(), revoked_by = $2::text WHERE id = $1::text AND revoked_at IS NULL RETURNING ${COLUMNS}`,
    [id, by],
  );
  return (r.rows[0] as KeyRow | undefined) ?? null;
}

export async function keyById(db: Queryable, id: string): Promise<KeyRow | null> {
  const r = await db.query(`SELECT ${COLUMNS} FROM api_keys WHERE id = $1::text`, [id]);
  return (r.rows[0] as KeyRow | undefined) ?? null;
}

/** The row with the digest of its secret, to check a presented key against. */
export async function keyWithDigest(db: Queryable, id: string): Promise<(KeyRow & { secret_sha256: Buffer }) | null> {
  const r = await db.query(`SELECT ${COLUMNS}, secret_sha256 FROM api_keys WHERE id = $1::text`, [id]);
  return (r.rows[0] as (KeyRow & { secret_sha256: Buffer }) | undefined) ?? null;
}

export async function touchKey(db: Queryable, id: string): Promise<void> {
  await db.query('UPDATE api_keys SET last_used_at = now() WHERE id = $1::text', [id]);
}

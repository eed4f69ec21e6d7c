/**
 * The quarantine (migration 011): stream entries no store could take, kept
 * with their error until an admin replays them. Entries are stored as the
 * JSON of their [field, value, ...] list, so any text survives.
 */
import type { Queryable } from './pool.ts';

export type QuarantineStream = 'ledger' | 'events' | 'audit';

export interface QuarantinedEntry {
  id: number;
  stream: QuarantineStream;
  streamId: string;
  /** The entry's fields as read: field, value, field, value, ... */
  fields: string[];
  error: string;
  sqlstate: string | null;
  quarantinedAt: Date;
  replayedAt: Date | null;
  replayedBy: string | null;
}

const COLUMNS = 'id, stream, stream_id, entry, error, sqlstate, quarantined_at, replayed_at, replayed_by';

/** Set an entry aside; the same entry quarantined twice (a re-read) keeps its first row. Returns its id. */
export async function quarantine(db: Queryable, e: { stream: QuarantineStream; streamId: string; fields: string[]; error: string; sqlstate: string | null }): Promise<number> {
  const r = await db.query(
    `WITH ins AS (
       INSERT INTO quarantine (stream, stream_id, entry, error, sqlstate) VALUES ($1::text, $2::text, $3::text, $4::text, $5::text)
       ON CONFLICT (stream, stream_id) DO NOTHING RETURNING id)
     SELECT id FROM ins UNION ALL SELECT id FROM quarantine WHERE stream = $1::text AND stream_id = $2::text LIMIT 1`,
    [e.stream, e.streamId, JSON.stringify(e.fields), e.error, e.sqlstate],
  );
  return Number(r.rows[0].id);
}

export async function listQuarantine(db: Queryable, f: { stream?: QuarantineStream; waiting?: boolean; limit: number; offset: number }): Promise<{ total: number; entries: QuarantinedEntry[] }> {
  const where = `WHERE ($1::text IS NULL OR stream = $1::text) AND ($2::boolean IS NULL OR (replayed_at IS NULL) = $2::boolean)`;
  const params = [f.stream ?? null, f.waiting ?? null];
  const [rows, count] = await Promise.all([
    db.query(`SELECT ${COLUMNS} FROM quarantine ${where} ORDER BY id LIMIT $3::int OFFSET $4::int`, [...params, f.limit, f.offset]),
    db.query(`SELECT count(*)::int AS n FROM quarantine ${where}`, params),
  ]);
  return { total: count.rows[0].n, entries: rows.rows.map(toEntry) };
}

export async function getQuarantined(db: Queryable, id: number): Promise<QuarantinedEntry | null> {
  const r = await db.query(`SELECT ${COLUMNS} FROM quarantine WHERE id = $1::bigint`, [id]);
  return r.rows[0] ? toEntry(r.rows[0]) : null;
}

/** Lock an entry for its replay (inside the replay's transaction); null if there is none. */
export async function lockQuarantined(db: Queryable, id: number): Promise<QuarantinedEntry | null> {
  const r = await db.query(`SELECT ${COLUMNS} FROM quarantine WHERE id = $1::bigint FOR UPDATE`, [id]);
  return r.rows[0] ? toEntry(r.rows[0]) : null;
}

export async function markReplayed(db: Queryable, id: number, by: string): Promise<void> {
  await db.query('UPDATE quarantine SET replayed_at = now(), replayed_by = $2::text WHERE id = $1::bigint', [id, by]);
}

/** Ledger entries still waiting (not replayed), oldest first: what the drift audit adds to the ledger's side. */
export async function waitingLedgerEntries(db: Queryable): Promise<QuarantinedEntry[]> {
  const r = await db.query(`SELECT ${COLUMNS} FROM quarantine WHERE stream = 'ledger' AND replayed_at IS NULL ORDER BY id`);
  return r.rows.map(toEntry);
}

/** Entries not yet replayed, per stream (for the metrics gauge). */
export async function waitingCounts(db: Queryable): Promise<Record<QuarantineStream, number>> {
  const r = await db.query(`SELECT stream, count(*)::int AS n FROM quarantine WHERE replayed_at IS NULL GROUP BY stream`);
  const out: Record<QuarantineStream, number> = { ledger: 0, events: 0, audit: 0 };
  for (const x of r.rows as { stream: QuarantineStream; n: number }[]) out[x.stream] = x.n;
  return out;
}

interface Raw {
  id: number;
  stream: QuarantineStream;
  stream_id: string;
  entry: string;
  error: string;
  sqlstate: string | null;
  quarantined_at: Date;
  replayed_at: Date | null;
  replayed_by: string | null;
}

function toEntry(r: Raw): QuarantinedEntry {
  return {
    id: Number(r.id),
    stream: r.stream,
    streamId: r.stream_id,
    fields: JSON.parse(r.entry) as string[],
    error: r.error,
    sqlstate: r.sqlstate,
    quarantinedAt: r.quarantined_at,
    replayedAt: r.replayed_at,
    replayedBy: r.replayed_by,
  };
}

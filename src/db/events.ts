/**
 * The event log (`events`): every event once (its stream id, or its
 * emitter's dedupe key, is unique), listed as alerts and acknowledged by
 * admins. Types and data are what src/events/types.ts defines; this layer
 * stores them as text and JSON without knowing them.
 */
import type { Queryable } from './pool.ts';

export interface NewEvent {
  streamId: string;
  dedupeKey: string | null;
  type: string;
  version: number;
  /** ISO 8601. */
  at: string;
  /** Stored as jsonb. */
  data: unknown;
}

export interface StoredEvent {
  id: number;
  type: string;
  version: number;
  at: Date;
  data: unknown;
  ackedAt: Date | null;
  ackedBy: string | null;
}

const COLUMNS = 'id, type, version, at, data, acked_at, acked_by';

/** Insert events in one statement; one already stored (same stream id or dedupe key) is skipped. */
export async function insertEventRows(db: Queryable, events: NewEvent[]): Promise<void> {
  await db.query(
    `INSERT INTO events (stream_id, dedupe_key, type, version, at, data)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::integer[], $5::timestamptz[], $6::jsonb[])
     ON CONFLICT DO NOTHING`,
    [
      events.map((e) => e.streamId), events.map((e) => e.dedupeKey), events.map((e) => e.type), events.map((e) => e.version),
      events.map((e) => e.at), events.map((e) => JSON.stringify(e.data)),
    ],
  );
}

/** The stored events of these stream entries, in id order. */
export async function eventsByStreamIds(db: Queryable, streamIds: string[]): Promise<StoredEvent[]> {
  const r = await db.query(`SELECT ${COLUMNS} FROM events WHERE stream_id = ANY($1::text[]) ORDER BY id`, [streamIds]);
  return r.rows.map(toEvent);
}

/** Alerts newest first, a page at a time, with how many match in all. `types` null: every type; `unacked` null: both. */
export async function listAlerts(db: Queryable, f: { types: string[] | null; unacked: boolean | null; limit: number; offset: number }): Promise<{ total: number; alerts: StoredEvent[] }> {
  const where = `WHERE ($1::text[] IS NULL OR type = ANY($1::text[])) AND ($2::boolean IS NULL OR (acked_at IS NULL) = $2::boolean)`;
  const params = [f.types, f.unacked];
  const [rows, count] = await Promise.all([
    db.query(`SELECT ${COLUMNS} FROM events ${where} ORDER BY id DESC LIMIT $3::int OFFSET $4::int`, [...params, f.limit, f.offset]),
    db.query(`SELECT count(*)::int AS n FROM events ${where}`, params),
  ]);
  return { total: count.rows[0].n, alerts: rows.rows.map(toEvent) };
}

/** The newest `limit` events of these types (the dashboard's alerts). */
export async function recentEvents(db: Queryable, types: string[], limit: number): Promise<StoredEvent[]> {
  const r = await db.query(`SELECT ${COLUMNS} FROM events WHERE type = ANY($1::text[]) ORDER BY id DESC LIMIT $2::int`, [types, limit]);
  return r.rows.map(toEvent);
}

/** Acknowledge an event: when; null if there is no such event or it was acknowledged already (see eventAck). */
export async function ackEvent(db: Queryable, id: number, by: string): Promise<Date | null> {
  const r = await db.query(
    `UPDATE events SET acked_at = now(), acked_by = $2::text WHERE id = $1::bigint AND acked_at IS NULL RETURNING acked_at`,
    [id, by],
  );
  return (r.rows[0] as { acked_at: Date } | undefined)?.acked_at ?? null;
}

/** Who acknowledged an event and when (both null if nobody); null if there is no such event. */
export async function eventAck(db: Queryable, id: number): Promise<{ ackedAt: Date | null; ackedBy: string | null } | null> {
  const r = await db.query('SELECT acked_at, acked_by FROM events WHERE id = $1::bigint', [id]);
  const x = r.rows[0] as { acked_at: Date | null; acked_by: string | null } | undefined;
  return x ? { ackedAt: x.acked_at, ackedBy: x.acked_by } : null;
}

interface Raw {
  id: number;
  type: string;
  version: number;
  at: Date;
  data: unknown;
  acked_at: Date | null;
  acked_by: string | null;
}

function toEvent(r: Raw): StoredEvent {
  return { id: Number(r.id), type: r.type, version: r.version, at: r.at, data: r.data, ackedAt: r.acked_at, ackedBy: r.acked_by };
}

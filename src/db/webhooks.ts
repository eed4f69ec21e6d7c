/**
 * The webhook registry (`webhooks`). The secret leaves this table in one
 * answer only, webhookSecret's (the delivery worker signs with it); a listed
 * webhook never carries it.
 */
import type { Queryable } from './pool.ts';

/** A registered webhook; never carries its secret. */
export interface Webhook {
  id: string;
  url: string;
  /** Event types delivered; empty means all. */
  types: string[];
  createdAt: Date;
}

const COLUMNS = 'id, url, types, created_at';

/** Store a webhook; id and secret are the caller's (src/events/webhooks.ts makes them). */
export async function insertWebhookRow(db: Queryable, w: { id: string; url: string; secret: string; types: string[] }): Promise<Webhook> {
  const r = await db.query(
    `INSERT INTO webhooks (id, url, secret, types) VALUES ($1::text, $2::text, $3::text, $4::text[]) RETURNING ${COLUMNS}`,
    [w.id, w.url, w.secret, w.types],
  );
  return toWebhook(r.rows[0]);
}

export async function listWebhooks(db: Queryable): Promise<Webhook[]> {
  const r = await db.query(`SELECT ${COLUMNS} FROM webhooks ORDER BY created_at, id`);
  return r.rows.map(toWebhook);
}

/** True if it existed. Deliveries already queued for it are skipped by the worker. */
export async function deleteWebhook(db: Queryable, id: string): Promise<boolean> {
  const r = await db.query('DELETE FROM webhooks WHERE id = $1::text', [id]);
  return (r.rowCount ?? 0) > 0;
}

/** The signing secret, or null if the webhook no longer exists. */
export async function webhookSecret(db: Queryable, id: string): Promise<string | null> {
  const r = await db.query('SELECT secret FROM webhooks WHERE id = $1::text', [id]);
  return (r.rows[0] as { secret: string } | undefined)?.secret ?? null;
}

/** The webhooks an event of `type` goes to (those with no types take every event). */
export async function webhooksFor(db: Queryable, type: string): Promise<Webhook[]> {
  const r = await db.query(
    `SELECT ${COLUMNS} FROM webhooks WHERE cardinality(types) = 0 OR $1::text = ANY(types) ORDER BY created_at, id`,
    [type],
  );
  return r.rows.map(toWebhook);
}

interface Raw {
  id: string;
  url: string;
  types: string[];
  created_at: Date;
}

function toWebhook(r: Raw): Webhook {
  return { id: r.id, url: r.url, types: r.types, createdAt: r.created_at };
}

/**
 * The webhook registry (Postgres `webhooks`, its statements in
 * src/db/webhooks.ts) and the delivery job contract.
 *
 * One delivery job per event per webhook on the webhooks queue
 * (workers/webhook-delivery.ts POSTs it). The secret stays in Postgres: job
 * data is visible in Redis and Bull Board, so the worker looks the secret up
 * by webhook id instead.
 */
import { randomBytes } from 'node:crypto';
import type { BackoffOptions, Queue } from 'bullmq';
import type { Queryable } from '../db/pool.ts';
import { insertWebhookRow, type Webhook } from '../db/webhooks.ts';
import type { Config } from '../config.ts';
import { checkTarget, type Resolve } from '../net/lookup.ts';

// The registry's reads and deletes, for this module's callers.
export { deleteWebhook, listWebhooks, webhookSecret, webhooksFor, type Webhook } from '../db/webhooks.ts';

/**
 * Register a webhook. The secret is returned here only (show it once); it is
 * never listed or logged afterwards. A URL whose host is refused
 * (src/net/egress.ts, WEBHOOK_ALLOWED_TARGETS) throws TargetRefused, a
 * RangeError like every other bad URL; a host name is resolved and every
 * address judged (one that does not resolve is accepted: delivery judges it
 * again when it connects). `opts.resolve` is for tests.
 */
export async function createWebhook(
  db: Queryable,
  w: { url: string; types: string[] },
  config: Pick<Config, 'webhookAllowedTargets'>,
  opts: { resolve?: Resolve } = {},
): Promise<Webhook & { secret: string }> {
  await checkWebhookUrl(w.url, config, opts);
  return insertWebhook(db, w);
}

/**
 * Whether a webhook may be registered at `url` (throws RangeError or
 * TargetRefused saying why). Resolves the host: call it before opening a
 * transaction, so a slow resolver never holds a database connection.
 */
export async function checkWebhookUrl(url: string, config: Pick<Config, 'webhookAllowedTargets'>, opts: { resolve?: Resolve } = {}): Promise<void> {
  const u = checkUrl(url);
  await checkTarget(u.hostname, config.webhookAllowedTargets, opts.resolve);
}

/** Store a webhook whose URL checkWebhookUrl passed; its secret is returned here only. */
export async function insertWebhook(db: Queryable, w: { url: string; types: string[] }): Promise<Webhook & { secret: string }> {
  // 9 bytes = exactly 12 base64url chars; 32 bytes of secret = 256 bits, the HMAC-SHA256 key size.
  const id = `wh_${randomBytes(9).toString('base64url')}`;
  const secret = randomBytes(32).toString('base64url');
  return { ...(await insertWebhookRow(db, { id, url: w.url, secret, types: w.types })), secret };
}

/** Data of one delivery job. */
export interface DeliveryJobData {
  eventId: number;
  webhookId: string;
  url: string;
  type: string;
  /**
   * The exact JSON text POSTed: the event serialized once by the producer, so
   * every retry sends (and signs) identical bytes.
   */
  body: string;
}

/**
 * One job per event and webhook: enqueueing the same delivery twice is a
 * no-op (BullMQ ignores a duplicate id). BullMQ forbids plain-integer custom
 * ids, hence the prefix. Also sent as x-gatekeeper-delivery.
 */
export const deliveryJobId = (eventId: number, webhookId: string): string => `ev${eventId}-${webhookId}`;

const DEFAULT_BACKOFF: BackoffOptions = { type: 'exponential', delay: 1000 };

/**
 * Queue deliveries: WEBHOOK_ATTEMPTS tries, exponential backoff from 1 s.
 * Finished jobs are kept a day (failed ones a week) for Bull Board, then
 * removed. `opts.backoff` exists for tests, which cannot wait seconds.
 */
export async function enqueueDeliveries(
  queue: Queue<DeliveryJobData>,
  config: Pick<Config, 'webhookAttempts'>,
  items: DeliveryJobData[],
  opts: { backoff?: BackoffOptions } = {},
) {
  return queue.addBulk(
    items.map((data) => ({
      name: data.type,
      data,
      opts: {
        jobId: deliveryJobId(data.eventId, data.webhookId),
        attempts: config.webhookAttempts,
        backoff: opts.backoff ?? DEFAULT_BACKOFF,
        removeOnComplete: { age: 86_400 },
        removeOnFail: { age: 7 * 86_400 },
      },
    })),
  );
}

/** Only http(s) URLs, without credentials (the signature authenticates; a password in a URL ends up in lists and logs). */
function checkUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new RangeError('webhook url must be an absolute http or https URL (could not parse it)');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new RangeError(`webhook url must use http or https, got "${u.protocol.slice(0, -1)}"`);
  }
  if (u.username || u.password) {
    throw new RangeError('webhook url may not contain credentials; authenticate with the signature instead');
  }
  return u;
}

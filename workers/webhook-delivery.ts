/**
 * Webhook delivery: consumes the webhooks queue (one job per event per
 * webhook, see src/events/webhooks.ts) and POSTs each job's body, signed
 * (src/events/signing.ts), to its URL.
 *
 * A 2xx answer is delivered. Anything else (another status, a redirect, a
 * network error, no answer within WEBHOOK_TIMEOUT_MS) throws, and BullMQ
 * retries with the job's backoff until its attempts are used up; the job then
 * stays failed (for Bull Board) with the reason. Deliveries are at least
 * once: receivers deduplicate on x-gatekeeper-delivery.
 *
 * The target is checked again here, not only at creation (src/net/egress.ts):
 * an IP-literal host before the request, a host name by the lookup that opens
 * the connection, so the address judged is the address connected to, whatever
 * DNS answered at creation. A refused target fails the delivery at once,
 * without retries: the refusal is policy, and retrying would only give a
 * rebinding DNS server more tries.
 *
 * Requests run concurrently, so a receiver that hangs holds one slot for at
 * most the timeout and does not delay the others.
 */
import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../src/config.ts';
import type { Logger } from '../src/log.ts';
import type { Queryable } from '../src/db/pool.ts';
import { webhookSecret, type DeliveryJobData } from '../src/events/webhooks.ts';
import { DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, signatureHeader } from '../src/events/signing.ts';
import { createAgents, NoAnswer, post } from '../src/events/post.ts';
import { TargetRefused } from '../src/net/egress.ts';
import { checkedLookup, checkLiteral, type Resolve } from '../src/net/lookup.ts';

const CONCURRENCY = 32;
/** Secrets are read from Postgres at most once a minute per webhook, not once per request. */
const SECRET_TTL_MS = 60_000;

export type DeliveryOutcome = 'delivered' | 'retry' | 'failed';

export interface WebhookDeliveryDeps {
  config: Config;
  workerConnection: Redis;
  pool: Queryable;
  log: Logger;
  /** Called after each attempt, for metrics; `failed` means the last attempt failed. */
  onResult?: (outcome: DeliveryOutcome, ms: number) => void;
  /** How host names are resolved (default: the system resolver); tests give a DNS that changes its answer. */
  resolve?: Resolve;
}

export function createWebhookDelivery(deps: WebhookDeliveryDeps) {
  const { config } = deps;
  const log = deps.log.child({ role: 'webhook-delivery' });
  const secrets = new Map<string, { secret: string; until: number }>();
  const allowed = config.webhookAllowedTargets;
  const lookup = checkedLookup(allowed, deps.resolve);
  const agents = createAgents();

  // Only found secrets are cached: a webhook deleted meanwhile may still get
  // deliveries for up to a minute, but a Postgres error is never mistaken
  // for "deleted" (it throws, and the job is retried).
  async function secretFor(webhookId: string): Promise<string | null> {
    const hit = secrets.get(webhookId);
    if (hit && hit.until > Date.now()) return hit.secret;
    const secret = await webhookSecret(deps.pool, webhookId);
    if (secret === null) secrets.delete(webhookId);
    else secrets.set(webhookId, { secret, until: Date.now() + SECRET_TTL_MS });
    return secret;
  }

  async function deliver(job: Job<DeliveryJobData>) {
    const { url, body, type, webhookId } = job.data;
    const started = Date.now();
    // Only the host is ever logged or kept as the failure reason: some
    // receivers (chat webhooks) carry a token in the path.
    const target = parse(url);
    const host = target?.host ?? null;
    // attemptsMade counts the failed attempts before this one.
    const last = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    try {
      // Inside the try: Postgres being down is a failed attempt like any other.
      const secret = await secretFor(webhookId);
      if (secret === null) return { skipped: 'webhook deleted' };
      // Retrying cannot fix a URL that is not http(s); fail at once.
      if (target === null) throw new UnrecoverableError('webhook url is not an http(s) URL');
      // Node connects to an IP literal without calling `lookup`: judge it here.
      checkLiteral(target.hostname, allowed);
      const status = await post({
        url: target,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'gpu-gatekeeper-webhooks',
          // Signed at each attempt: a retry after the 5-minute tolerance must still verify.
          [SIGNATURE_HEADER]: signatureHeader(secret, body, Date.now()),
          [EVENT_HEADER]: type,
          [DELIVERY_HEADER]: job.id!,
        },
        body,
        timeoutMs: config.webhookTimeoutMs,
        lookup,
        agents,
      });
      // A redirect is not a delivery, and is not followed: following it would
      // turn the POST into a GET, and could lead to a target never checked.
      if (status >= 300 && status <= 399) throw new Error(`${host}: HTTP ${status} (redirects are not followed)`);
      if (status < 200 || status > 299) throw new Error(`${host}: HTTP ${status}`);
      deps.onResult?.('delivered', Date.now() - started);
      return { status, ms: Date.now() - started };
    } catch (err) {
      const ms = Date.now() - started;
      const reason = describe(err, host, config.webhookTimeoutMs);
      const refused = err instanceof TargetRefused;
      const final = last || refused || err instanceof UnrecoverableError;
      const fields = { jobId: job.id, webhookId, type, host, attempt: job.attemptsMade + 1, reason, ms };
      if (final) log.error(fields, 'webhook delivery failed for good');
      else log.warn(fields, 'webhook delivery failed; will retry');
      deps.onResult?.(final ? 'failed' : 'retry', ms);
      // A fresh error with the short reason, so socket internals (and nothing
      // but the host) end up as the job's failedReason in Redis.
      if (err instanceof UnrecoverableError) throw err;
      throw refused ? new UnrecoverableError(reason) : new Error(reason);
    }
  }

  const worker = new Worker<DeliveryJobData>(config.queues.webhooks, deliver, {
    connection: deps.workerConnection,
    prefix: config.queuePrefix,
    concurrency: CONCURRENCY,
  });
  worker.on('error', (err) => log.error({ err }, 'webhook delivery worker error'));
  return {
    worker,
    close: async () => {
      await worker.close();
      agents.http.destroy();
      agents.https.destroy();
      secrets.clear();
    },
  };
}

/** The URL if it is http(s); its `host` (no path) is all that is ever logged. */
function parse(url: string): URL | null {
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u : null;
  } catch {
    return null;
  }
}

/** A one-line reason naming the host only (never the URL path, body or secret). */
function describe(err: unknown, host: string | null, timeoutMs: number): string {
  if (err instanceof UnrecoverableError) return err.message;
  // Names the URL's host and the address it was refused for; never the path.
  if (err instanceof TargetRefused) return err.message;
  if (err instanceof NoAnswer) return `${host}: no answer within ${timeoutMs} ms`;
  // Socket errors carry a code (ECONNREFUSED, ECONNRESET, ...); their message may name more.
  const e = err as { code?: string; message?: string };
  if (e?.code) return `${host}: ${e.code}`;
  return e?.message?.startsWith(`${host}:`) ? e.message : `${host}: ${e?.message ?? String(err)}`;
}

/**
 * Webhook delivery against real Redis, Postgres and local HTTP receivers:
 * retries until a 2xx with identical, correctly signed bytes; a receiver that
 * never answers times out, fails after WEBHOOK_ATTEMPTS and does not hold up
 * other deliveries; the registry validates URLs and never lists secrets.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { Queue } from 'bullmq';
import { urlOf } from './support/http.ts';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { createWebhookDelivery, type DeliveryOutcome } from '../workers/webhook-delivery.ts';
import {
  createWebhook,
  deleteWebhook,
  deliveryJobId,
  enqueueDeliveries,
  listWebhooks,
  webhookSecret,
  webhooksFor,
  type DeliveryJobData,
} from '../src/events/webhooks.ts';
import { DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, signatureHeader, verifySignature } from '../src/events/signing.ts';
import { EVENT_VERSION, type GatekeeperEvent } from '../src/events/types.ts';

interface Received {
  headers: IncomingHttpHeaders;
  raw: Buffer;
  at: number;
}

interface Receiver {
  url: string;
  requests: Received[];
  /** Requests whose connection is still open (not answered, not aborted). */
  open: number;
  close(): Promise<void>;
}

/** A local receiver; `answer` returns the status to send, or null to never answer. */
async function receiver(answer: (n: number) => number | null): Promise<Receiver> {
  const r: Receiver = { url: '', requests: [], open: 0, close: async () => {} };
  const server: Server = createServer(async (req, res) => {
    r.open++;
    res.on('close', () => r.open--);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    r.requests.push({ headers: req.headers, raw: Buffer.concat(chunks), at: Date.now() });
    const status = answer(r.requests.length);
    if (status !== null) res.writeHead(status).end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  // The path stands in for a token some receivers keep in their URL; it must never be logged.
  r.url = `${urlOf(server)}/hooks/S3CRET-PATH`;
  r.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return r;
}

/**
 * Verification written from the recipe in words (src/events/signing.ts), not
 * from its code: raw body bytes, HMAC-SHA256(secret, t + "." + body),
 * compared as bytes in constant time, |now - t| <= 5 minutes.
 */
function independentlyVerify(secret: string, header: string, rawBody: Buffer, nowMs: number): boolean {
  const values = new Map<string, string[]>();
  for (const part of header.split(',')) {
    const i = part.indexOf('=');
    if (i > 0) values.set(part.slice(0, i), [...(values.get(part.slice(0, i)) ?? []), part.slice(i + 1)]);
  }
  const t = values.get('t')?.[0];
  if (t === undefined || !/^\d+$/.test(t) || Math.abs(nowMs - Number(t)) > 5 * 60 * 1000) return false;
  const mac = createHmac('sha256', secret)
    .update(Buffer.concat([Buffer.from(`${t}.`, 'utf8'), rawBody]))
    .digest();
  return (values.get('v1') ?? []).some((v) => {
    const given = Buffer.from(v, 'hex');
    return given.length === mac.length && timingSafeEqual(given, mac);
  });
}

function heldEvent(id: number): GatekeeperEvent<'JOB_HELD'> {
  return {
    id,
    type: 'JOB_HELD',
    version: EVENT_VERSION,
    at: new Date().toISOString(),
    // Non-ASCII on purpose: bytes, not characters, are signed and sent.
    data: { jobId: `${id}`, project: 'ålpha', user: 'zoë', estimatedGpuHours: 1, reason: 'project ålpha: 10.0 of 10.0 GPU-h used — “full”' },
  };
}

const FAST = { backoff: { type: 'fixed', delay: 50 } };

let t: TestEnv;
let queue: Queue<DeliveryJobData>;
let delivery: ReturnType<typeof createWebhookDelivery>;
const outcomes: DeliveryOutcome[] = [];
const receivers: Receiver[] = [];
const queues: Queue[] = [];

beforeAll(async () => {
  // The receivers listen on loopback, which webhooks may reach only when allowed.
  t = await createTestEnv({ WEBHOOK_TIMEOUT_MS: '300', WEBHOOK_ATTEMPTS: '2', WEBHOOK_ALLOWED_TARGETS: '127.0.0.1/32' });
  queue = new Queue<DeliveryJobData>(t.config.queues.webhooks, { connection: t.redis, prefix: t.config.queuePrefix });
  delivery = createWebhookDelivery({
    config: t.config,
    workerConnection: t.connection(),
    pool: t.pool,
    log: t.log,
    onResult: (o) => outcomes.push(o),
  });
});

afterAll(async () => {
  await delivery?.close();
  await Promise.all([queue?.close(), ...queues.map((q) => q.close())]);
  await Promise.all(receivers.map((r) => r.close()));
  await t?.close();
});

async function start(answer: (n: number) => number | null): Promise<Receiver> {
  const r = await receiver(answer);
  receivers.push(r);
  return r;
}

const finished = (id: string) =>
  eventually(
    () => queue.getJobState(id),
    (s) => s === 'completed' || s === 'failed',
  );

describe('webhook delivery', () => {
  it('retries a 500 until the fourth try succeeds, sending identical signed bytes each time', async () => {
    outcomes.length = 0;
    const flaky = await start((n) => (n <= 3 ? 500 : 200));
    const hook = await createWebhook(t.pool, { url: flaky.url, types: [] }, t.config);
    const body = JSON.stringify(heldEvent(1));
    const item: DeliveryJobData = { eventId: 1, webhookId: hook.id, url: flaky.url, type: 'JOB_HELD', body };
    // Four tries needed; this env's WEBHOOK_ATTEMPTS is 2 (for the timeout test).
    await enqueueDeliveries(queue, { webhookAttempts: 5 }, [item], FAST);
    // The same delivery enqueued again is a no-op.
    await enqueueDeliveries(queue, { webhookAttempts: 5 }, [item], FAST);

    const id = deliveryJobId(1, hook.id);
    expect(await finished(id)).toBe('completed');
    const job = (await queue.getJob(id))!;
    expect(job.returnvalue).toMatchObject({ status: 200 });
    expect(flaky.requests).toHaveLength(4);
    expect(outcomes).toEqual(['retry', 'retry', 'retry', 'delivered']);

    const stamps = new Set<string>();
    for (const req of flaky.requests) {
      expect(req.raw.equals(Buffer.from(body, 'utf8'))).toBe(true);
      expect(req.headers['content-type']).toBe('application/json');
      expect(req.headers[EVENT_HEADER]).toBe('JOB_HELD');
      expect(req.headers[DELIVERY_HEADER]).toBe(`ev1-${hook.id}`);
      const sig = req.headers[SIGNATURE_HEADER] as string;
      expect(sig).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
      expect(independentlyVerify(hook.secret, sig, req.raw, Date.now())).toBe(true);
      expect(independentlyVerify('another-secret', sig, req.raw, Date.now())).toBe(false);
      stamps.add(sig.split(',')[0]!);

      // The library's own verifier agrees, and rejects tampering and replays.
      const text = req.raw.toString('utf8');
      const ts = Number(sig.slice(2, sig.indexOf(',')));
      expect(verifySignature(hook.secret, sig, text, Date.now())).toBe(true);
      expect(verifySignature(hook.secret, sig, text.replace('ålpha', 'alpha'), Date.now())).toBe(false);
      expect(verifySignature(hook.secret, sig, text, ts + 5 * 60_000 + 1)).toBe(false);
      expect(verifySignature(hook.secret, sig, text, ts - 5 * 60_000 - 1)).toBe(false);
      expect(verifySignature('another-secret', sig, text, Date.now())).toBe(false);
    }
    // Signed afresh at each attempt.
    expect(stamps.size).toBe(4);
  });

  it('verifySignature accepts any matching v1 (secret rotation) and refuses malformed headers', () => {
    const now = Date.now();
    const good = signatureHeader('new-secret', '{"a":1}', now);
    const old = signatureHeader('old-secret', '{"a":1}', now);
    const rotating = `${old},${good.split(',')[1]}`;
    expect(independentlyVerify('new-secret', rotating, Buffer.from('{"a":1}'), now)).toBe(true);
    expect(verifySignature('new-secret', rotating, '{"a":1}', now)).toBe(true);
    expect(verifySignature('old-secret', rotating, '{"a":1}', now)).toBe(true);
    for (const bad of ['', 'garbage', `t=${now}`, `v1=${good.split('v1=')[1]}`, `t=abc,${good.split(',')[1]}`, `t=${now},v1=abcd`]) {
      expect(verifySignature('new-secret', bad, '{"a":1}', now)).toBe(false);
    }
  });

  it('a receiver that never answers fails after WEBHOOK_ATTEMPTS timeouts without holding up other deliveries', async () => {
    outcomes.length = 0;
    const hang = await start(() => null);
    let hangingWhenGoodArrived = -1;
    const good = await start(() => {
      hangingWhenGoodArrived = hang.open;
      return 204;
    });
    const hangHook = await createWebhook(t.pool, { url: hang.url, types: ['JOB_HELD'] }, t.config);
    const goodHook = await createWebhook(t.pool, { url: good.url, types: ['JOB_HELD'] }, t.config);
    const body = JSON.stringify(heldEvent(2));

    await enqueueDeliveries(queue, t.config, [{ eventId: 2, webhookId: hangHook.id, url: hang.url, type: 'JOB_HELD', body }], FAST);
    await eventually(async () => hang.requests.length, (n) => n >= 1);
    await enqueueDeliveries(queue, t.config, [{ eventId: 2, webhookId: goodHook.id, url: good.url, type: 'JOB_HELD', body }], FAST);
    await eventually(async () => good.requests.length, (n) => n === 1);
    // The good delivery arrived while the first hanging request (300 ms timeout) was still open.
    expect(hangingWhenGoodArrived).toBe(1);
    expect(await finished(deliveryJobId(2, goodHook.id))).toBe('completed');

    const hangId = deliveryJobId(2, hangHook.id);
    expect(await finished(hangId)).toBe('failed');
    const job = (await queue.getJob(hangId))!;
    expect(job.attemptsMade).toBe(2);
    expect(hang.requests).toHaveLength(2);
    expect(job.failedReason).toBe(`${new URL(hang.url).host}: no answer within 300 ms`);
    expect(job.failedReason).not.toContain('S3CRET-PATH');
    // Both hanging requests were aborted by the client.
    await eventually(async () => hang.open, (n) => n === 0);
    expect(outcomes.filter((o) => o !== 'delivered')).toEqual(['retry', 'failed']);
    expect(outcomes.filter((o) => o === 'delivered')).toHaveLength(1);
  });

  it('completes a delivery for a deleted webhook without sending it', async () => {
    const r = await start(() => 200);
    const hook = await createWebhook(t.pool, { url: r.url, types: [] }, t.config);
    expect(await deleteWebhook(t.pool, hook.id)).toBe(true);
    expect(await deleteWebhook(t.pool, hook.id)).toBe(false);
    expect(await webhookSecret(t.pool, hook.id)).toBeNull();
    await enqueueDeliveries(queue, t.config, [{ eventId: 3, webhookId: hook.id, url: r.url, type: 'JOB_HELD', body: '{}' }], FAST);
    const id = deliveryJobId(3, hook.id);
    expect(await finished(id)).toBe('completed');
    expect((await queue.getJob(id))!.returnvalue).toEqual({ skipped: 'webhook deleted' });
    expect(r.requests).toHaveLength(0);
  });
});

describe('webhook registry', () => {
  it('accepts only http(s) URLs and never lists the secret', async () => {
    await expect(createWebhook(t.pool, { url: 'ftp://x', types: [] }, t.config)).rejects.toThrow(RangeError);
    await expect(createWebhook(t.pool, { url: 'ftp://x', types: [] }, t.config)).rejects.toThrow(/http or https/);
    await expect(createWebhook(t.pool, { url: 'not a url', types: [] }, t.config)).rejects.toThrow(RangeError);
    await expect(createWebhook(t.pool, { url: 'https://user:pw@example.com/', types: [] }, t.config)).rejects.toThrow(RangeError);

    const all = await createWebhook(t.pool, { url: 'https://93.184.216.34/all', types: [] }, t.config);
    const some = await createWebhook(t.pool, { url: 'http://93.184.216.34/some', types: ['BUDGET_EXHAUSTED'] }, t.config);
    expect(all.id).toMatch(/^wh_[A-Za-z0-9_-]{12}$/);
    expect(Buffer.from(all.secret, 'base64url')).toHaveLength(32);
    expect(await webhookSecret(t.pool, all.id)).toBe(all.secret);

    const listed = await listWebhooks(t.pool);
    const mine = listed.find((w) => w.id === some.id)!;
    expect(mine).toEqual({ id: some.id, url: some.url, types: ['BUDGET_EXHAUSTED'], createdAt: expect.any(Date) });
    for (const w of listed) expect(Object.keys(w).sort()).toEqual(['createdAt', 'id', 'types', 'url']);
    expect(JSON.stringify(listed)).not.toContain(all.secret);

    const forExhausted = (await webhooksFor(t.pool, 'BUDGET_EXHAUSTED')).map((w) => w.id);
    const forReset = (await webhooksFor(t.pool, 'QUOTA_RESET')).map((w) => w.id);
    expect(forExhausted).toEqual(expect.arrayContaining([all.id, some.id]));
    expect(forReset).toContain(all.id);
    expect(forReset).not.toContain(some.id);
  });

  it('enqueues with the production defaults: WEBHOOK_ATTEMPTS tries, exponential backoff from 1 s', async () => {
    // A queue no worker consumes, so the job stays as enqueued.
    const q = new Queue<DeliveryJobData>('webhook-defaults', { connection: t.redis, prefix: t.config.queuePrefix });
    queues.push(q);
    await enqueueDeliveries(q, t.config, [{ eventId: 9, webhookId: 'wh_x', url: 'https://example.com/', type: 'QUOTA_RESET', body: '{}' }]);
    const job = (await q.getJob('ev9-wh_x'))!;
    expect(job.name).toBe('QUOTA_RESET');
    expect(job.opts).toMatchObject({
      attempts: 2,
      backoff: { type: 'exponential', delay: 1000 },
      removeOnComplete: { age: 86_400 },
      removeOnFail: { age: 7 * 86_400 },
    });
  });
});

/**
 * Webhook targets are checked (SSRF), against real Redis, Postgres and
 * loopback receivers: POST /webhooks refuses unsafe URLs with a 400 that says
 * why and stores nothing; the delivery worker judges the target again when it
 * connects (the address connected to is the one judged, whatever DNS said at
 * creation), refuses before any request goes out, and does not follow
 * redirects. Traffic only ever goes to loopback: refused targets are refused
 * before connecting, and DNS answers come from the test, not the network.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Queue } from 'bullmq';
import { listen, urlOf } from './support/http.ts';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { loadConfig, type Config } from '../src/config.ts';
import { createApp } from '../src/api/app.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { createWebhook, deliveryJobId, enqueueDeliveries, type DeliveryJobData } from '../src/events/webhooks.ts';
import type { Resolve } from '../src/net/lookup.ts';
import { createWebhookDelivery, type DeliveryOutcome } from '../workers/webhook-delivery.ts';

const ADMIN = 'test-admin-token-0123456789';
const FAST = { backoff: { type: 'fixed', delay: 50 } };
const ALWAYS = '(always, whatever WEBHOOK_ALLOWED_TARGETS says)';
const UNLESS = '(WEBHOOK_ALLOWED_TARGETS does not allow it)';

let t: TestEnv;
const closers: (() => Promise<unknown>)[] = [];
let eventId = 100;

beforeAll(async () => {
  t = await createTestEnv();
});
afterAll(async () => {
  for (const c of closers.reverse()) await c();
  await t?.close();
});

/** This file's settings with another allow list (and its own delivery queue). */
const configWith = (targets: string, extra: Record<string, string> = {}): Config => loadConfig({ ...t.env, WEBHOOK_ALLOWED_TARGETS: targets, ...extra });

interface Receiver {
  url: string;
  port: number;
  hits: string[];
}

/** A loopback receiver answering `status` (and `headers`) to every request; `port` 0 picks one. */
async function receiver(host: string, port: number, status = 200, headers: Record<string, string> = {}): Promise<Receiver> {
  const r: Receiver = { url: '', port: 0, hits: [] };
  const server: Server = createServer((req, res) => {
    r.hits.push(req.url ?? '');
    req.resume().on('end', () => res.writeHead(status, headers).end());
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, resolve));
  r.port = (server.address() as AddressInfo).port;
  r.url = `http://${host}:${r.port}`;
  closers.push(() => new Promise((done) => { server.closeAllConnections(); server.close(done); }));
  return r;
}

/** A delivery worker with its own allow list and resolver, on its own queue. */
function worker(targets: string, resolve?: Resolve, attempts = '3') {
  const name = `wh-${Math.random().toString(36).slice(2, 8)}`;
  const config = configWith(targets, { WEBHOOK_QUEUE: name, WEBHOOK_ATTEMPTS: attempts });
  const outcomes: DeliveryOutcome[] = [];
  const delivery = createWebhookDelivery({ config, workerConnection: t.connection(), pool: t.pool, log: t.log, resolve, onResult: (o) => outcomes.push(o) });
  const queue = new Queue<DeliveryJobData>(name, { connection: t.redis, prefix: config.queuePrefix });
  closers.push(() => delivery.close(), () => queue.close());
  return {
    outcomes,
    /** Deliver one event to the webhook; the job once it finished. */
    async deliver(webhookId: string, url: string) {
      const id = deliveryJobId(++eventId, webhookId);
      await enqueueDeliveries(queue, config, [{ eventId, webhookId, url, type: 'JOB_HELD', body: '{"id":1}' }], FAST);
      await eventually(() => queue.getJobState(id), (s) => s === 'completed' || s === 'failed');
      return (await queue.getJob(id))!;
    },
  };
}

/** A webhook row as one stored before this check existed: no check at all. */
async function storedWebhook(url: string): Promise<string> {
  const id = `wh_old${++eventId}`;
  await t.pool.query("INSERT INTO webhooks (id, url, secret, types) VALUES ($1::text, $2::text, 'old-secret', '{}'::text[])", [id, url]);
  return id;
}

describe('POST /webhooks', () => {
  async function api(targets: string) {
    const config = configWith(targets);
    const held = new HeldJobs(config, t.redis, t.pool, t.clock, t.log);
    const server = await listen(createApp({ config, budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin: ADMIN } }));
    closers.push(() => held.close(), () => new Promise((r) => server.close(r)));
    return async (url: string) => {
      const res = await fetch(`${urlOf(server)}/api/v1/webhooks`, {
        method: 'POST',
        headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
        body: JSON.stringify({ url }),
      });
      return { status: res.status, body: (await res.json()) as { error?: { message: string; details?: { refused: Record<string, unknown> } } } };
    };
  }
  const stored = async () => (await t.pool.query("SELECT (SELECT count(*)::int FROM webhooks) AS hooks, (SELECT count(*)::int FROM audit WHERE action = 'webhook.create') AS audits")).rows[0];

  it('answers 400 naming the host, what it is and why, for every refused spelling, and stores nothing', async () => {
    const post = await api('');
    const before = await stored();
    // [URL, the message's host and what it is, kind, always]
    const cases: [string, string, string, boolean][] = [
      ['http://169.254.169.254/latest/meta-data/S3CRET', '169.254.169.254 is a link-local address (cloud metadata)', 'metadata', true],
      ['http://2852039166/', '169.254.169.254 is a link-local address (cloud metadata)', 'metadata', true],
      ['http://0xa9fea9fe/', '169.254.169.254 is a link-local address (cloud metadata)', 'metadata', true],
      ['http://0251.0376.0251.0376/', '169.254.169.254 is a link-local address (cloud metadata)', 'metadata', true],
      ['http://169.254.169.254./', '169.254.169.254 is a link-local address (cloud metadata)', 'metadata', true],
      ['http://[::ffff:169.254.169.254]/', '[::ffff:a9fe:a9fe] is 169.254.169.254 in IPv4-mapped IPv6, a link-local address (cloud metadata)', 'metadata', true],
      ['http://[::169.254.169.254]/', '[::a9fe:a9fe] is 169.254.169.254 in IPv4-compatible IPv6, a link-local address (cloud metadata)', 'metadata', true],
      ['http://[64:ff9b::169.254.169.254]/', '[64:ff9b::a9fe:a9fe] is 169.254.169.254 in NAT64 IPv6, a link-local address (cloud metadata)', 'metadata', true],
      ['http://[2002:a9fe:a9fe::]/', '[2002:a9fe:a9fe::] is 169.254.169.254 in 6to4 IPv6, a link-local address (cloud metadata)', 'metadata', true],
      ['http://[fd00:ec2::254]/', '[fd00:ec2::254] is a cloud metadata address (AWS, IPv6)', 'metadata', true],
      ['http://100.100.100.200/', '100.100.100.200 is a cloud metadata address (Alibaba Cloud)', 'metadata', true],
      ['http://metadata.google.internal/computeMetadata/v1/', 'metadata.google.internal is a cloud metadata host name', 'metadata', true],
      ['http://Metadata./', 'metadata. is a cloud metadata host name', 'metadata', true],
      ['http://169.254.10.1/', '169.254.10.1 is a link-local address', 'link-local', true],
      ['http://[fe80::1]/', '[fe80::1] is a link-local address', 'link-local', true],
      ['http://0.0.0.0:8080/', '0.0.0.0 is an unspecified ("this network") address', 'unspecified', true],
      ['http://[::]/', '[::] is the unspecified address', 'unspecified', true],
      ['http://224.0.0.251/', '224.0.0.251 is a multicast address', 'multicast', true],
      ['http://[ff02::1]/', '[ff02::1] is a multicast address', 'multicast', true],
      ['http://255.255.255.255/', '255.255.255.255 is the broadcast address', 'broadcast', true],
      ['http://240.1.2.3/', '240.1.2.3 is a reserved address (240.0.0.0/4)', 'reserved', true],
      ['http://0x7f000001/', '127.0.0.1 is a loopback address', 'loopback', false],
      ['http://127.1:3000/', '127.0.0.1 is a loopback address', 'loopback', false],
      ['http://[::1]/', '[::1] is a loopback address', 'loopback', false],
      ['http://localhost:3000/', 'localhost is a loopback host name', 'loopback', false],
      ['http://hooks.localhost/', 'hooks.localhost is a loopback host name', 'loopback', false],
      ['http://10.0.0.1/', '10.0.0.1 is a private address', 'private', false],
      ['http://172.16.5.4/', '172.16.5.4 is a private address', 'private', false],
      ['http://192.168.1.1/', '192.168.1.1 is a private address', 'private', false],
      ['http://100.64.0.1/', '100.64.0.1 is a shared (carrier-grade NAT) address', 'private', false],
      ['http://[fd00::1]/', '[fd00::1] is a unique local (private) address', 'private', false],
    ];
    for (const [url, what, kind, always] of cases) {
      const res = await post(url);
      expect(res.status, url).toBe(400);
      expect(res.body.error!.message, url).toBe(`webhook url host ${what}; refused ${always ? ALWAYS : UNLESS}`);
      expect(res.body.error!.details!.refused, url).toMatchObject({ kind, always });
      expect(res.body.error!.message).not.toContain('S3CRET');
    }
    expect(await stored()).toEqual(before);
  });

  it('accepts private targets WEBHOOK_ALLOWED_TARGETS allows, and still refuses the always-refused', async () => {
    const post = await api('127.0.0.0/8, 10.0.0.0/8, localhost');
    const before = await stored();
    // Created, never delivered: no worker reads this file's default delivery queue.
    for (const url of ['http://0x7f000001:9/x', 'http://10.0.0.1/hook', 'http://localhost:9/x']) expect((await post(url)).status, url).toBe(201);
    for (const url of ['http://169.254.169.254/', 'http://[::ffff:169.254.169.254]/', 'http://0.0.0.0/', 'http://[::1]/']) expect((await post(url)).status, url).toBe(400);
    expect(await stored()).toEqual({ hooks: before.hooks + 3, audits: before.audits + 3 });
  });
});

describe('delivery', () => {
  it('a name that resolved to a public address at creation and to loopback at delivery is refused before connecting, without retries', async () => {
    const target = await receiver('127.0.0.1', 0);
    const url = `http://hooks.rebind.test:${target.port}/hooks/S3CRET-PATH`;
    // Creation asks DNS once: a public address (nothing is sent to it).
    const hook = await createWebhook(t.pool, { url, types: [] }, configWith(''), { resolve: async () => [{ address: '93.184.216.34', family: 4 }] });
    // The same name now answers loopback: DNS rebinding.
    const w = worker('', async () => [{ address: '127.0.0.1', family: 4 }]);
    const job = await w.deliver(hook.id, url);
    expect(await job.getState()).toBe('failed');
    expect(job.failedReason).toBe(`webhook url host hooks.rebind.test resolves to 127.0.0.1, a loopback address; refused ${UNLESS}`);
    expect(job.attemptsMade).toBe(1); // of 3: a refusal is not retried
    expect(w.outcomes).toEqual(['failed']);
    expect(target.hits).toEqual([]);
  });

  it('the address connected to is the address judged: an answer that changes between lookups cannot slip past', async () => {
    const target = await receiver('127.0.0.1', 0);
    const allowed = await receiver('127.0.0.2', target.port); // same port, another loopback address
    let lookups = 0;
    // First answer: the allowed 127.0.0.2; every later one: the refused 127.0.0.1. A
    // check that resolved apart from the connection would pass, then connect to 127.0.0.1.
    const w = worker('127.0.0.2/32', async () => [{ address: ++lookups === 1 ? '127.0.0.2' : '127.0.0.1', family: 4 }]);
    const url = `http://hooks.flip.test:${target.port}/x`;
    const job = await w.deliver(await storedWebhook(url), url);
    expect(await job.getState()).toBe('completed');
    expect(lookups).toBe(1);
    expect(allowed.hits).toEqual(['/x']);
    expect(target.hits).toEqual([]);
  });

  it('localhost allowed by name where the webhook was created is refused by a worker whose list does not name it', async () => {
    const target = await receiver('127.0.0.1', 0);
    const url = `http://localhost:${target.port}/hooks/S3CRET-PATH`;
    // Resolved by the system (/etc/hosts): loopback, allowed there by name.
    const hook = await createWebhook(t.pool, { url, types: [] }, configWith('localhost'));
    const w = worker('');
    const job = await w.deliver(hook.id, url);
    expect(job.failedReason).toBe(`webhook url host localhost is a loopback host name; refused ${UNLESS}`);
    expect(target.hits).toEqual([]);
  });

  it('IP-literal hosts stored before the check are judged before connecting; 0.0.0.0, which reaches this host, even when loopback is allowed', async () => {
    const target = await receiver('127.0.0.1', 0);
    const w = worker('127.0.0.0/8');
    const p = target.port;
    const refused: [string, string][] = [
      [`http://0.0.0.0:${p}/S3CRET-PATH`, `webhook url host 0.0.0.0 is an unspecified ("this network") address; refused ${ALWAYS}`],
      [`http://0:${p}/`, `webhook url host 0.0.0.0 is an unspecified ("this network") address; refused ${ALWAYS}`],
      [`http://[::ffff:0.0.0.0]:${p}/`, `webhook url host [::ffff:0:0] is 0.0.0.0 in IPv4-mapped IPv6, an unspecified ("this network") address; refused ${ALWAYS}`],
      [`http://[::]:${p}/`, `webhook url host [::] is the unspecified address; refused ${ALWAYS}`],
    ];
    for (const [url, reason] of refused) {
      const job = await w.deliver(await storedWebhook(url), url);
      expect(job.failedReason, url).toBe(reason);
      expect(job.attemptsMade, url).toBe(1);
    }
    expect(target.hits).toEqual([]);
    // The control: the same receiver is reachable where the list allows it.
    const ok = `http://0x7f000001:${p}/ok`;
    expect(await (await w.deliver(await storedWebhook(ok), ok)).getState()).toBe('completed');
    expect(target.hits).toEqual(['/ok']);
    // And a worker with no list refuses that one too.
    const strict = worker('');
    const job = await strict.deliver(await storedWebhook(ok), ok);
    expect(job.failedReason).toBe(`webhook url host 127.0.0.1 is a loopback address; refused ${UNLESS}`);
    expect(target.hits).toEqual(['/ok']);
  });

  it.each([302, 307])('a %i redirect is not followed: the attempt fails and the redirect target gets nothing', async (status) => {
    const landing = await receiver('127.0.0.1', 0);
    const redirecting = await receiver('127.0.0.1', 0, status, { location: `${landing.url}/landing` });
    const w = worker('127.0.0.1/32', undefined, '2');
    const url = `${redirecting.url}/hook`;
    const job = await w.deliver(await storedWebhook(url), url);
    expect(await job.getState()).toBe('failed');
    expect(job.failedReason).toBe(`127.0.0.1:${redirecting.port}: HTTP ${status} (redirects are not followed)`);
    expect(job.attemptsMade).toBe(2); // an ordinary failure: retried
    expect(redirecting.hits).toEqual(['/hook', '/hook']);
    expect(landing.hits).toEqual([]);
    expect(w.outcomes).toEqual(['retry', 'failed']);
  });
});

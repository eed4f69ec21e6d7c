/**
 * No page elsewhere can act with an admin's browser (Debian's Chromium
 * through playwright-core, real Redis and Postgres). An admin who opened the
 * dashboard has Basic credentials cached; a page on another origin then
 * tries every write a page can send without a CORS preflight — auto-submitted
 * forms (text/plain, urlencoded) and no-cors fetches — against the API and
 * Bull Board. Nothing changes. (Chromium keeps cached credentials per
 * top-level site, so the page that gets them is one on the same host: another
 * port, such as a notebook or a second service. Other browsers may not
 * partition at all; the server's check does not depend on either, and the
 * header tests below cover a page on another site.) The dashboard's own
 * buttons, Bearer clients and non-browser Basic clients keep working.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Queue } from 'bullmq';
import { chromium, type Browser } from 'playwright-core';
import { listen, urlOf } from './support/http.ts';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { createApp } from '../src/api/app.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { createGatekeeper, type Gatekeeper } from '../workers/gatekeeper.ts';
import { systemClock } from '../src/clock.ts';
import { hoursToGpuMs } from '../src/units.ts';

const CHROMIUM = '/usr/bin/chromium';
const admin = 'test-admin-token-0123456789';
let t: TestEnv;
let browser: Browser;
let target: string;
let attacker: Server;
let attackerPort: number;
let queues: Record<'intake' | 'exec' | 'held' | 'rejected', Queue>;
let heldId: string;
const closers: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  // Loopback allowed, so the forged webhook below would be created if the CSRF guard let it through.
  t = await createTestEnv({ WEBHOOK_ALLOWED_TARGETS: '127.0.0.1/32' }, { liveClock: true });
  const q = (name: string) => new Queue(name, { connection: t.redis, prefix: t.config.queuePrefix });
  queues = { intake: q(t.config.queues.intake), exec: q(t.config.queues.exec), held: q(t.config.queues.held), rejected: q(t.config.queues.rejected) };
  const held = new HeldJobs(t.config, t.redis, t.pool, systemClock, t.log);
  const app = createApp({ config: t.config, accounting: t.accounting, intake: queues.intake, budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin }, boardQueues: queues });
  const server = await listen(app);
  target = urlOf(server); // http://127.0.0.1:<port>
  const gk: Gatekeeper = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: systemClock });
  closers.push(() => gk.close(), () => held.close(), () => new Promise((r) => server.close(r)), ...Object.values(queues).map((x) => () => x.close()));

  // One job admitted, one held: something for a forged override, release or cancel to act on.
  await t.budgets.set('alpha', hoursToGpuMs(1));
  await queues.intake.addBulk([1, 2].map((i) => ({ name: `j${i}`, data: { project: 'alpha', user: 'ana', estimatedGpuHours: 1 } })));
  await eventually(() => t.accounting.heldIds(), (ids) => ids.length === 1);
  heldId = (await t.accounting.heldIds())[0]!;

  attacker = createServer((req, res) => {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    res.end(attackPage(target, heldId, queues.intake.name));
  });
  await new Promise<void>((r) => attacker.listen(0, '127.0.0.1', () => r()));
  attackerPort = (attacker.address() as AddressInfo).port;
  closers.push(() => new Promise((r) => attacker.close(r)));

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  for (const c of closers.reverse()) await c();
  await t?.close();
});

/**
 * Every write a page can send cross-origin without a preflight. Form bodies
 * in text/plain come out as `name=value`: the name carries JSON up to a
 * string the value closes, so the body parses as JSON if the server reads it.
 */
function attackPage(target: string, id: string, intake: string): string {
  const json = (o: Record<string, unknown>) => {
    const text = JSON.stringify({ ...o, pad: '' });
    return { name: text.slice(0, -2), value: '"}' };
  };
  const forms: [string, string, Record<string, unknown> | null][] = [
    ['text/plain', `/api/v1/held/${id}/override`, { reason: 'forged' }],
    ['text/plain', `/api/v1/held/${id}/cancel`, { reason: 'forged' }],
    ['text/plain', '/api/v1/held/release', { all: true }],
    ['text/plain', '/api/v1/projects/alpha/budget/adjust', { gpuHours: 100 }],
    ['text/plain', '/api/v1/webhooks', { url: 'http://127.0.0.1:9/x' }],
    ['text/plain', '/api/v1/jobs', { project: 'alpha', user: 'mallory', estimatedGpuHours: 1 }],
    ['application/x-www-form-urlencoded', '/api/v1/rebuild', null],
    ['text/plain', `/admin/queues/api/queues/${intake}/add`, { name: 'forged', data: { project: 'alpha', user: 'mallory', estimatedGpuHours: 1 } }],
  ];
  const html = forms
    .map(([enctype, path, body], i) => {
      const field = body ? json(body) : null;
      const input = field ? `<input type="hidden" name='${field.name.replace(/'/g, '&#39;')}' value='${field.value}'>` : '';
      return `<iframe name="sink${i}"></iframe><form id="f${i}" method="POST" enctype="${enctype}" action="${target}${path}" target="sink${i}">${input}</form>`;
    })
    .join('\n');
  const fetches = [
    [`/api/v1/held/${id}/override`, '{"reason":"forged"}'],
    ['/api/v1/held/release', '{"all":true}'],
    ['/api/v1/rebuild', ''],
    [`/admin/queues/api/queues/${intake}/add`, '{"name":"forged","data":{"project":"alpha","user":"mallory","estimatedGpuHours":1}}'],
  ];
  return `<!doctype html><html><body>${html}
<script>
  const loads = [...document.querySelectorAll('iframe')].map((f) => new Promise((r) => f.addEventListener('load', r, { once: true })));
  document.querySelectorAll('form').forEach((f) => f.submit());
  const sent = ${JSON.stringify(fetches)}.map(([p, b]) =>
    fetch(${JSON.stringify(target)} + p, { method: 'POST', mode: 'no-cors', credentials: 'include', body: b }).catch(() => null));
  Promise.all([...loads, ...sent]).then(() => { document.title = 'done'; });
</script></body></html>`;
}

/** Everything a forged write would change. */
async function state() {
  const q = (sql: string) => t.pool.query(sql).then((r) => r.rows);
  return {
    held: await t.accounting.heldIds(),
    reservation: (await t.accounting.reservation(heldId))?.state,
    audit: await q('SELECT action, target FROM audit ORDER BY id'),
    webhooks: await q('SELECT count(*)::int AS n FROM webhooks'),
    adjust: (await t.budgets.get('alpha'))!.adjustGpuMs,
    intake: await queues.intake.count() + (await queues.intake.getCompletedCount()) + (await queues.intake.getFailedCount()),
    exec: await queues.exec.count(),
    rejected: await queues.rejected.count(),
  };
}

describe('cross-site requests', () => {
  it('a page on another port of the same host cannot act with an admin browser\'s cached credentials', async () => {
    const context = await browser.newContext({ httpCredentials: { username: 'ops-alice', password: admin } });
    try {
      const tab = await context.newPage();
      // The admin logs in to the dashboard: the browser now holds the credentials for this origin.
      expect((await tab.goto(`${target}/dashboard`))!.status()).toBe(200);
      const before = await state();
      await tab.goto(`http://127.0.0.1:${attackerPort}/`);
      await tab.waitForFunction(() => document.title === 'done', undefined, { timeout: 20_000 });
      expect(await state()).toEqual(before);
      expect(before.held).toEqual([heldId]);
    } finally {
      await context.close();
    }
  });

  it('refuses a write whose Origin is elsewhere and a JSON route sent as a form, saying why', async () => {
    const basic = `Basic ${Buffer.from(`ops-alice:${admin}`).toString('base64')}`;
    const forged = await fetch(`${target}/api/v1/projects/alpha/budget/adjust`, {
      method: 'POST', headers: { authorization: basic, origin: 'https://evil.example', 'content-type': 'application/json' }, body: '{"gpuHours":5}',
    });
    expect(forged.status).toBe(403);
    expect(((await forged.json()) as { error: { message: string } }).error.message).toBe(
      'a POST from another origin (https://evil.example) is refused; use the dashboard itself, or a Bearer token',
    );
    const form = await fetch(`${target}/api/v1/projects/alpha/budget/adjust`, {
      method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'text/plain' }, body: '{"gpuHours":5}',
    });
    expect(form.status).toBe(415);
    expect((await t.budgets.get('alpha'))!.adjustGpuMs).toBe(0);
  });

  it('lets Bearer clients, non-browser Basic clients and the page\'s own origin write', async () => {
    const basic = `Basic ${Buffer.from(`ops-alice:${admin}`).toString('base64')}`;
    const cases: Record<string, string>[] = [
      { authorization: `Bearer ${admin}`, origin: 'https://evil.example' }, // a script: the header proves it is not a forged form
      { authorization: basic }, // curl -u: no Origin, no Sec-Fetch-Site
      { authorization: basic, origin: target }, // the dashboard's own fetch
    ];
    for (const headers of cases) {
      const r = await fetch(`${target}/api/v1/projects/alpha/budget/adjust`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: '{"gpuHours":1}' });
      expect(r.status, JSON.stringify(headers)).toBe(200);
    }
    expect((await t.budgets.get('alpha'))!.adjustGpuMs).toBe(hoursToGpuMs(3));
    await fetch(`${target}/api/v1/projects/alpha/budget/adjust`, { method: 'POST', headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' }, body: '{"gpuHours":-3}' });
  });

  it('never lets another site frame the dashboard or Bull Board', async () => {
    const basic = { authorization: `Basic ${Buffer.from(`a:${admin}`).toString('base64')}` };
    for (const path of ['/dashboard', '/admin/queues']) {
      const r = await fetch(`${target}${path}`, { headers: basic });
      expect([r.headers.get('x-frame-options'), r.headers.get('content-security-policy')]).toEqual(['DENY', "frame-ancestors 'none'"]);
    }
  });
});

describe('Bull Board on gpu-intake', () => {
  const basic = { authorization: `Basic ${Buffer.from(`ops-alice:${admin}`).toString('base64')}` };
  const board = (method: string, path: string) => fetch(`${target}/admin/queues/api/queues/${queues.intake.name}${path}`, { method, headers: basic });

  it.each([
    ['obliterate', 'PUT', '/obliterate'],
    ['empty', 'PUT', '/empty'],
    ['pause', 'PUT', '/pause'],
    ['remove a job', 'PUT', '/1/clean'],
    ['edit a job', 'PATCH', '/1/update-data'],
  ])('refuses to %s (it would restart job ids or drop submitters\' jobs unaudited)', async (_name, method, path) => {
    const before = await state();
    const r = await board(method, path);
    expect(r.status).toBe(403);
    expect(((await r.json()) as { error: { message: string } }).error.message).toMatch(/^Bull Board may only retry, promote, add and clean finished jobs on /);
    expect(await state()).toEqual(before);
    expect(await t.redis.exists(`${t.config.queuePrefix}:${queues.intake.name}:id`)).toBe(1); // the id counter is still there
  });

  it('retries a failed intake job, with an audit row naming the admin', async () => {
    const bad = await queues.intake.add('bad', { project: 'alpha' });
    await eventually(() => bad.isFailed(), Boolean);
    const r = await board('PUT', `/${bad.id}/retry`);
    expect(r.status).toBe(204);
    const rows = (await t.pool.query(`SELECT actor, action, target FROM audit WHERE action LIKE 'board.%'`)).rows;
    expect(rows).toEqual([{ actor: 'ops-alice', action: 'board.retry-job', target: `queue:${queues.intake.name}/${bad.id}` }]);
  });
});

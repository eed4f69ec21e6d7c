/**
 * Different people in a real browser (Debian's Chromium through
 * playwright-core; real Redis, Postgres and a gatekeeper): a submitter sees
 * only their own and cannot reach another's data by URL; submits a batch on
 * /submit that then does exactly what the preview said; asks for an override
 * of a held job, which a manager approves on the dashboard, the audit naming
 * both. A page on another origin cannot use a logged-in person's browser to
 * send any of the new forms.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { callApi, serveApi, type ServedApi } from './support/api.ts';
import { hoursToGpuMs } from '../src/units.ts';
import { systemClock } from '../src/clock.ts';

const CHROMIUM = '/usr/bin/chromium';
const admin = 'test-admin-token-0123456789';
let t: TestEnv;
let api: ServedApi;
let origin: string;
let browser: Browser;
const keys: Record<string, string> = {};
const contexts: BrowserContext[] = [];

const asAdmin = (method: string, path: string, body?: unknown) => callApi(api.api, admin, method, path, body);

/** A browser logged in as `who` (their key as the Basic password). */
async function as(who: string): Promise<BrowserContext> {
  const c = await browser.newContext({ httpCredentials: { username: who, password: keys[who]! }, viewport: { width: 1200, height: 900 } });
  contexts.push(c);
  return c;
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`);
  t = await createTestEnv({}, { liveClock: true });
  api = await serveApi(t, { clock: systemClock, tokens: { admin } });
  origin = api.api.replace(/\/api\/v1$/, '');
  await t.budgets.set('alpha', hoursToGpuMs(3));
  await t.budgets.set('beta', hoursToGpuMs(5));
  for (const [user, role, projects] of [['ann', 'submitter', ['alpha']], ['bob', 'submitter', ['beta']], ['max', 'manager', ['alpha']]] as const) {
    const r = await asAdmin('POST', '/keys', { user, role, projects });
    keys[user] = r.body.key;
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
}, 60_000);

afterAll(async () => {
  for (const c of contexts) await c.close();
  await browser?.close();
  await api?.close();
  await t?.close();
});

describe('a submitter in the browser', () => {
  it('sees only their own, and another\'s data is not theirs by URL', async () => {
    await asAdmin('POST', '/jobs', { project: 'beta', user: 'bob', estimatedGpuHours: 1 });
    const tab = await (await as('ann')).newPage();
    expect((await tab.goto(`${origin}/dashboard`))!.status()).toBe(200);
    expect(await tab.locator('article.scope[data-scope="project:alpha"]').count()).toBeGreaterThan(0);
    expect(await tab.locator('article.scope[data-scope="project:beta"]').count()).toBe(0);
    expect((await tab.goto(`${origin}/submit`))!.status()).toBe(200);
    expect(await tab.locator('#who').getAttribute('data-user')).toBe('ann');
    expect(await tab.locator('#budgets article.scope').evaluateAll((as) => as.map((a) => a.getAttribute('data-scope')))).toEqual(['project:alpha']);
    for (const path of ['/api/v1/projects/beta/budget', '/api/v1/users/bob/quota', '/api/v1/held?user=bob', '/api/v1/audit', '/api/v1/alerts']) {
      const res = await tab.goto(`${origin}${path}`);
      if (path.startsWith('/api/v1/held')) {
        expect(res!.status(), path).toBe(200);
        expect(JSON.parse(await tab.locator('body').innerText()).jobs, path).toEqual([]);
      } else {
        expect(res!.status(), path).toBe(403);
      }
    }
  });

  it('submits a batch on /submit that then does what the preview said', async () => {
    const tab = await (await as('ann')).newPage();
    await tab.goto(`${origin}/submit`);
    await tab.selectOption('#f-project', 'alpha');
    await tab.fill('#f-hours', '1');
    await tab.fill('#f-count', '5');
    await tab.click('#preview-fields');
    const preview = tab.locator('#preview');
    expect([await preview.getAttribute('data-would-start'), await preview.getAttribute('data-would-wait')]).toEqual(['3', '2']);
    expect(await tab.locator('#blocked p.blocked').first().innerText()).toBe(
      "project alpha's budget is used up: 3.0 of 3.0 GPU-h. Contact your admin to raise it, or request an override.",
    );
    await tab.click('#queue');
    expect([await tab.locator('#result').getAttribute('data-would-start'), await tab.locator('#result').getAttribute('data-would-wait')]).toEqual(['3', '2']);
    const ids = await tab.locator('#job-ids li').evaluateAll((ls) => ls.map((l) => l.getAttribute('data-job-id')));
    expect(ids).toHaveLength(5);
    // The gatekeeper decides them as the preview said: the first three start, the last two wait.
    const held = await eventually(() => t.accounting.heldIds('alpha'), (h) => h.length === 2);
    expect(held.sort()).toEqual(ids.slice(3).sort());
    expect((await t.budgets.get('alpha'))!.reservedGpuMs).toBe(hoursToGpuMs(3));
  });
});

describe('an override, asked and approved in the browser', () => {
  it('the owner asks on /submit, a manager approves on the dashboard, the audit names both', async () => {
    // Alpha's budget is 3 GPU-h: a 10-hour job of ann's waits.
    const sent = await callApi(api.api, keys.ann!, 'POST', '/jobs', { project: 'alpha', user: 'ann', estimatedGpuHours: 10 });
    const jobId = sent.body.jobIds[0] as string;
    await eventually(() => t.accounting.heldIds('alpha'), (h) => h.includes(jobId));

    const ann = await (await as('ann')).newPage();
    await ann.goto(`${origin}/submit`);
    await ann.fill(`#request-reason-${jobId}`, 'the paper deadline is Friday');
    await ann.click(`#request-button-${jobId}`);
    const result = ann.locator('#request-result');
    expect(await result.getAttribute('data-ok')).not.toBeNull();
    const requestId = await result.getAttribute('data-request-id');

    const max = await (await as('max')).newPage();
    await max.goto(`${origin}/dashboard`);
    max.on('dialog', (d) => void d.accept('fine for the deadline'));
    await max.click(`#override-requests button[data-action="approve"][data-request-id="${requestId}"]`);
    await max.waitForFunction(() => /^Approved request/.test(document.getElementById('msg')?.textContent ?? ''));
    expect(await t.accounting.heldIds('alpha')).not.toContain(jobId);

    const rows = (await asAdmin('GET', `/audit?target=job:${jobId}`)).body.entries as { action: string; actor: string; role: string; via: string; reason: string; after: any }[];
    expect(rows.map((r) => [r.action, r.actor, r.role, r.via])).toEqual([
      ['held.override', 'max', 'manager', `key:${keys.max!.slice(3, 15)}`],
      ['override-request.create', 'ann', 'submitter', `key:${keys.ann!.slice(3, 15)}`],
    ]);
    expect(rows[0]!.after.request).toMatchObject({ id: Number(requestId), requestedBy: 'ann', requestedVia: `key:${keys.ann!.slice(3, 15)}` });
    expect(rows[0]!.reason).toBe(`request #${requestId} by ann: the paper deadline is Friday; fine for the deadline`);
    // Ann sees it approved.
    await ann.goto(`${origin}/submit`);
    expect(await ann.locator(`#my-requests tr[data-request-id="${requestId}"]`).getAttribute('data-state')).toBe('approved');
  });
});

describe('cross-site requests', () => {
  let attacker: Server;
  let attackerUrl: string;
  beforeAll(async () => {
    attacker = createServer((_req, res) => {
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(attackPage());
    });
    await new Promise<void>((r) => attacker.listen(0, '127.0.0.1', () => r()));
    attackerUrl = `http://127.0.0.1:${(attacker.address() as AddressInfo).port}/`;
  });
  afterAll(() => new Promise((r) => attacker.close(r)));

  let heldJob = 'none';

  /** Every new form, auto-submitted from another origin into hidden frames. */
  function attackPage(): string {
    const batch = JSON.stringify([{ project: 'alpha', user: 'ann', estimatedGpuHours: 1 }]);
    const forms: [string, Record<string, string>][] = [
      ['/submit/preview', { mode: 'json', json: batch }],
      ['/submit', { batch, digest: 'x', once: 'x' }],
      [`/submit/held/${heldJob}/override-request`, { reason: 'forged', kind: 'override' }],
    ];
    const html = forms
      .map(([path, fields], i) => `<iframe name="s${i}"></iframe><form method="POST" action="${origin}${path}" target="s${i}">${Object.entries(fields)
        .map(([k, v]) => `<input type="hidden" name="${k}" value='${v.replace(/'/g, '&#39;')}'>`)
        .join('')}</form>`)
      .join('\n');
    return `<!doctype html><html><body>${html}
<script>
  const loads = [...document.querySelectorAll('iframe')].map((f) => new Promise((r) => f.addEventListener('load', r, { once: true })));
  document.querySelectorAll('form').forEach((f) => f.submit());
  Promise.all(loads).then(() => { document.title = 'done'; });
</script></body></html>`;
  }

  it('a page elsewhere cannot send the new forms with a logged-in person\'s browser', async () => {
    const sent = await callApi(api.api, keys.ann!, 'POST', '/jobs', { project: 'alpha', user: 'ann', estimatedGpuHours: 10 });
    heldJob = sent.body.jobIds[0] as string;
    await eventually(() => t.accounting.heldIds('alpha'), (h) => h.includes(heldJob));
    const context = await as('ann');
    const tab = await context.newPage();
    expect((await tab.goto(`${origin}/submit`))!.status()).toBe(200);
    const requestsBefore = (await t.pool.query('SELECT count(*)::int AS n FROM override_requests')).rows[0].n;
    const intakeBefore = await api.intake.count();
    const auditBefore = (await t.pool.query('SELECT count(*)::int AS n FROM audit')).rows[0].n;
    const refused: number[] = [];
    tab.on('response', (r) => {
      if (r.url().startsWith(origin) && r.request().method() === 'POST') refused.push(r.status());
    });
    await tab.goto(attackerUrl);
    await tab.waitForFunction(() => document.title === 'done', undefined, { timeout: 20_000 });
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((s) => s === 403)).toBe(true);
    expect(await api.intake.count()).toBe(intakeBefore);
    expect((await t.pool.query('SELECT count(*)::int AS n FROM audit')).rows[0].n).toBe(auditBefore);
    expect((await t.pool.query('SELECT count(*)::int AS n FROM override_requests')).rows[0].n).toBe(requestsBefore);
  });
});

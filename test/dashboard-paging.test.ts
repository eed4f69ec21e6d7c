/**
 * The dashboard and the list APIs at scale, in miniature (real Redis and
 * Postgres, jobs settled through the scripts and written by the ledger
 * writer): 25 project budgets in pages of 20, most settled this month first;
 * the scopes at >= 75 % of their limit first in their own table; a search by
 * name substring; the quota list a page at a time; and hostile or malformed
 * query parameters answered with a 400 in JSON. Every expected order below is
 * written out by hand from the hours each project settled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import { listen, urlOf } from './support/http.ts';
import { createTestEnv, type TestEnv } from './support/env.ts';
import { createApp } from '../src/api/app.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { LedgerWriter } from '../src/ledger/writer.ts';
import { SYSTEM } from '../src/accounting/budgets.ts';
import { EXIT, runCli } from '../src/cli/main.ts';

const H = 3_600_000; // GPU-ms per GPU hour
const viewer = 'test-viewer-token-0123456789';
let t: TestEnv;
let server: Server;
let base: string;

/** Hours each project settles this month (clock: 2026-11-25 12:00 UTC); budgets are 100 h a month. */
const settled = (n: number) => ({ 3: 75, 7: 90, 20: 74 })[n] ?? n;
const p = (n: number) => `p-${String(n).padStart(2, '0')}`;

async function page(path: string): Promise<{ status: number; type: string; text: string }> {
  const res = await fetch(base + path, { headers: { authorization: `Bearer ${viewer}` } });
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}
const cards = (html: string, section: string) => {
  const start = html.indexOf(`<div class="grid" id="${section}">`);
  const end = html.indexOf('<h2>', start);
  return [...html.slice(start, end).matchAll(/<article class="scope" data-scope="([^"]+)">/g)].map((m) => m[1]);
};
const nearRows = (html: string) => [...html.matchAll(/<tr data-near="([^"]+)">/g)].map((m) => m[1]);

beforeAll(async () => {
  t = await createTestEnv();
  const held = new HeldJobs(t.config, t.redis, t.pool, t.clock, t.log);
  const app = createApp({ config: t.config, accounting: t.accounting, budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin: 'test-admin-token-0123456789', viewer }, clock: t.clock });
  server = await listen(app);
  base = urlOf(server);
  const now = t.clock.now();
  for (let n = 0; n < 25; n++) {
    await t.budgets.set(p(n), 100 * H, SYSTEM, null, { period: 'month' });
    if (settled(n) === 0) continue;
    const r = await t.accounting.reserve(`j${n}`, settled(n) * H, [`project:${p(n)}`], { project: p(n), user: 'ann', gpus: 1 }, now);
    expect(r.kind).toBe('reserved');
    await t.accounting.settle(`j${n}`, (r as { scopes: string[] }).scopes, settled(n) * H, 'settle', now);
  }
  for (const u of ['bo-1', 'bo-2']) await t.budgets.setQuota(u, { daily: { limitGpuMs: 10 * H } }, SYSTEM, null);
  await t.budgets.setQuota('cy', { weekly: { limitGpuMs: 1 * H } }, SYSTEM, null);
  const writer = new LedgerWriter(t.connection(), t.accounting.keys.ledger, t.pool, t.log);
  while ((await writer.drainOnce()) > 0);
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await t?.close();
});

describe('dashboard pages', () => {
  it('shows 20 project budgets, most settled first, with the count and a link to the rest', async () => {
    const r = await page('/dashboard');
    expect(r.status).toBe(200);
    // 90, 75, 74, then 24 down to 0 h, skipping 20, 7 and 3 (already placed).
    expect(cards(r.text, 'projects')).toEqual(['p-07', 'p-03', 'p-20', 'p-24', 'p-23', 'p-22', 'p-21', 'p-19', 'p-18', 'p-17', 'p-16', 'p-15', 'p-14', 'p-13', 'p-12', 'p-11', 'p-10', 'p-09', 'p-08', 'p-06'].map((x) => `project:${x}`));
    expect(r.text).toContain('Projects 1–20 of 25, most used this period first.');
    expect(r.text).toContain('<a rel="next" href="/dashboard?page=2">next 5</a>');
    // The quotas, none used: by name.
    expect(cards(r.text, 'users')).toEqual(['user-day:bo-1', 'user-day:bo-2', 'user-week:cy']);

    const two = await page('/dashboard?page=2');
    expect(cards(two.text, 'projects')).toEqual(['p-05', 'p-04', 'p-02', 'p-01', 'p-00'].map((x) => `project:${x}`));
    expect(two.text).toContain('Projects 21–25 of 25');
    expect(two.text).toContain('<a rel="prev" href="/dashboard">previous</a>');
    expect(two.text).not.toContain('rel="next"');
    // The settled-usage table holds the projects on the page only.
    expect([...two.text.matchAll(/<tr><td>(p-\d\d)<\/td>/g)].map((m) => m[1])).toEqual(['p-01', 'p-02', 'p-04', 'p-05']);
  });

  it('lists the scopes at 75 % of their limit or more first, nearest first', async () => {
    const r = await page('/dashboard?page=2');
    // p-07 at 90 %, p-03 at exactly 75 %; p-20 at 74 % is not near.
    expect(nearRows(r.text)).toEqual(['project:p-07', 'project:p-03']);
    expect(r.text).toContain('<h2>Near their limits (2)</h2>');
    expect(r.text).toMatch(/<tr data-near="project:p-07"><td>project p-07<\/td><td class="n">90%<\/td>/);
  });

  it('searches project and user names by substring, case-insensitively', async () => {
    const r = await page('/dashboard?q=P-2');
    expect(r.status).toBe(200);
    expect(cards(r.text, 'projects')).toEqual(['p-20', 'p-24', 'p-23', 'p-22', 'p-21'].map((x) => `project:${x}`));
    expect(r.text).toContain('No user quota matches.');
    expect(r.text).toContain('value="P-2"');
    expect(nearRows(r.text)).toEqual([]);
    const users = await page('/dashboard?q=bo');
    expect(cards(users.text, 'users')).toEqual(['user-day:bo-1', 'user-day:bo-2']);
    expect(cards(users.text, 'projects')).toEqual([]);
  });

  it('refuses hostile or malformed parameters with a 400 in JSON', async () => {
    for (const q of [
      '/dashboard?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E',
      "/dashboard?q=%27%20OR%201%3D1--",
      `/dashboard?q=${'a'.repeat(129)}`,
      '/dashboard?q=a&q=b',
      '/dashboard?page=0',
      '/dashboard?page=abc',
      '/dashboard?userPage=1.5',
      '/dashboard?sort=name',
      '/api/v1/projects?q=%25',
      '/api/v1/projects?q=',
      '/api/v1/quotas?q=%3Cb%3E',
      '/api/v1/quotas?limit=1001',
      '/api/v1/quotas?cursor=a%20b',
      '/api/v1/usage?from=2026-11-01&to=2026-11-30&limit=0',
      '/api/v1/usage?from=2026-11-01&to=2026-11-30&offset=-1',
    ]) {
      const r = await page(q);
      expect({ q, status: r.status, type: r.type }).toEqual({ q, status: 400, type: expect.stringMatching(/^application\/json/) });
      expect(JSON.parse(r.text).error.message, q).toMatch(/must|may not|unknown/);
    }
  });
});

describe('list APIs', () => {
  it('GET /api/v1/projects?q= keeps the names holding it, by name, a page at a time', async () => {
    const get = async (path: string) => JSON.parse((await page(`/api/v1${path}`)).text);
    const one = await get('/projects?q=P-2&limit=3');
    expect(one.projects.map((x: { project: string }) => x.project)).toEqual(['p-20', 'p-21', 'p-22']);
    expect(one.nextCursor).toBe('p-22');
    const two = await get(`/projects?q=P-2&limit=3&cursor=${one.nextCursor}`);
    expect(two.projects.map((x: { project: string }) => x.project)).toEqual(['p-23', 'p-24']);
    expect(two.nextCursor).toBeNull();
    expect(one.projects[0].usedGpuHours).toBe(74);
  });

  it('GET /api/v1/quotas lists users with a quota by name, each with both quotas, a page at a time', async () => {
    const get = async (path: string) => JSON.parse((await page(`/api/v1${path}`)).text);
    const one = await get('/quotas?limit=2');
    expect(one.quotas.map((x: { user: string }) => x.user)).toEqual(['bo-1', 'bo-2']);
    expect(one.nextCursor).toBe('bo-2');
    expect([one.quotas[0].daily.limitGpuHours, one.quotas[0].weekly.limitGpuHours]).toEqual([10, null]);
    const two = await get(`/quotas?limit=2&cursor=${one.nextCursor}`);
    expect(two.quotas.map((x: { user: string }) => x.user)).toEqual(['cy']);
    expect([two.quotas[0].daily.limitGpuHours, two.quotas[0].weekly.limitGpuHours]).toEqual([null, 1]);
    expect(two.nextCursor).toBeNull();
    expect((await get('/quotas?q=BO')).quotas.map((x: { user: string }) => x.user)).toEqual(['bo-1', 'bo-2']);
  });

  it('the CLI lists quotas and searches budgets through them', async () => {
    const cli = async (args: string[]) => {
      let out = '';
      const code = await runCli(['--url', base, '--token', viewer, ...args], (x) => (out += x));
      return { code, out };
    };
    const q = await cli(['quota', 'list', '--search', 'bo']);
    expect(q.code).toBe(EXIT.ok);
    expect(q.out.split('\n').filter((l) => /^bo-/.test(l)).map((l) => l.split(/\s+/).slice(0, 4).join(' '))).toEqual([
      'bo-1 daily 2026-11-25 10', 'bo-1 weekly W2026-11-23 none', 'bo-2 daily 2026-11-25 10', 'bo-2 weekly W2026-11-23 none',
    ]);
    const b = await cli(['budget', 'list', '--search', 'p-2', '--limit', '3']);
    expect(b.out).toContain('more: gatekeeper budget list --cursor p-22');
  });
});

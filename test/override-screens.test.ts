/**
 * Override requests on the screens, over HTTP with people's keys in Basic
 * auth (as a browser sends them), real Redis and Postgres and a real
 * gatekeeper: on /submit a submitter sees her held job and asks for an
 * override through a plain form (the request is then in the API's list);
 * another person's job and a form from another site are refused with
 * nothing created; a denial's reason reaches her page. On the dashboard a
 * manager of the job's project sees the open request with Approve and Deny
 * buttons, a manager of another project does not, and the requester sees
 * her request's state. Each test holds jobs of its own.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { callApi, serveApi, type ServedApi } from './support/api.ts';

const admin = 'test-admin-token-0123456789';
let t: TestEnv;
let api: ServedApi;
let base: string;
const keys: Record<string, string> = {};

const call = (token: string, method: string, path: string, body?: unknown) => callApi(api.api, token, method, path, body);
const basic = (key: string) => `Basic ${Buffer.from(`x:${key}`).toString('base64')}`;

/** A page as `who`'s browser gets it; a form POSTs as a same-origin browser sends it unless `headers` say otherwise. */
async function page(who: string, path: string, form?: Record<string, string>, headers: Record<string, string> = {}): Promise<{ status: number; html: string }> {
  const res = await fetch(base + path, {
    method: form ? 'POST' : 'GET',
    headers: { authorization: basic(keys[who]!), ...(form ? { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin' } : {}), ...headers },
    body: form ? new URLSearchParams(form).toString() : undefined,
    redirect: 'manual',
  });
  return { status: res.status, html: await res.text() };
}

const unescape = (s: string) => s.replace(/&(quot|amp|lt|gt|#39);/g, (_m, e: string) => ({ quot: '"', amp: '&', lt: '<', gt: '>', '#39': "'" })[e]!);
const words = (html: string) => unescape(html.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim());
/** The inside of the element with this id. */
function inside(html: string, id: string): string | null {
  const m = new RegExp(`<(\\w+)[^>]*\\sid="${id}"[^>]*>`).exec(html);
  if (!m) return null;
  const rest = html.slice(m.index + m[0].length);
  return rest.slice(0, rest.indexOf(`</${m[1]}>`));
}
/** The row of request `id` in the element `within`: its state and its words; null if not there. */
function requestRow(html: string, within: string, id: number): { state: string; text: string; row: string } | null {
  const part = inside(html, within);
  const m = part && new RegExp(`<tr data-request-id="${id}" data-state="([a-z]+)"[^>]*>([\\s\\S]*?)</tr>`).exec(part);
  return m ? { state: m[1]!, text: words(m[2]!), row: m[0] } : null;
}

/** A held job of `user` in `project` (budget 0), submitted with their key. */
async function heldJob(project: string, user: string): Promise<string> {
  const before = new Set(await t.accounting.heldIds(project));
  expect((await call(keys[user]!, 'POST', '/jobs', { project, user, estimatedGpuHours: 1 })).status).toBe(202);
  const ids = await eventually(() => t.accounting.heldIds(project), (ids) => ids.some((id) => !before.has(id)));
  return ids.find((id) => !before.has(id))!;
}

/** Every request of `jobId`, as an admin lists them through the API. */
async function requestsOf(jobId: string): Promise<Record<string, any>[]> {
  const r = await call(admin, 'GET', '/override-requests?state=all&limit=1000');
  expect(r.status).toBe(200);
  return (r.body.requests as Record<string, any>[]).filter((q) => q.jobId === jobId);
}

const ask = (who: string, jobId: string, reason: string, kind = 'override', headers: Record<string, string> = {}) =>
  page(who, `/submit/held/${encodeURIComponent(jobId)}/override-request`, { reason, kind }, headers);

beforeAll(async () => {
  t = await createTestEnv({ UNKNOWN_PROJECT_POLICY: 'hold' });
  api = await serveApi(t, { clock: t.clock, tokens: { admin } });
  base = api.api.replace(/\/api\/v1$/, '');
  await t.budgets.set('alpha', 0);
  await t.budgets.set('beta', 0);
  const people: [string, string, string[]][] = [
    ['ann', 'submitter', ['alpha']],
    ['bob', 'submitter', ['alpha']],
    ['max', 'manager', ['alpha']],
    ['bea', 'manager', ['beta']],
  ];
  for (const [user, role, projects] of people) {
    const r = await call(admin, 'POST', '/keys', { user, role, projects });
    expect(r.status).toBe(201);
    keys[user] = r.body.key as string;
  }
});
afterAll(async () => {
  await api?.close();
  await t?.close();
});

describe('override requests on /submit', () => {
  it('ann sees her held job with its reason and asks for an override through the form; the API lists the request', async () => {
    const job = await heldJob('alpha', 'ann');
    const before = await page('ann', '/submit');
    expect(before.status).toBe(200);
    const held = inside(before.html, 'held-jobs')!;
    expect(held).toContain(`<tr data-job="${job}">`);
    // Budget 0: the job waits for room in project alpha's budget.
    expect(words(held)).toContain('alpha');
    expect(held).toContain(`<form id="request-${job}" class="ask" method="post" action="/submit/held/${job}/override-request">`);
    expect(held).toMatch(new RegExp(`<textarea id="request-reason-${job}" name="reason"[^>]* required>`));
    expect(held).toContain(`<button id="request-button-${job}" type="submit">`);
    expect(before.html).not.toContain('<script');

    const r = await ask('ann', job, 'client demo at 9');
    expect(r.status).toBe(200);
    const [made] = await requestsOf(job);
    expect(made).toMatchObject({ jobId: job, project: 'alpha', user: 'ann', kind: 'override', reason: 'client demo at 9', state: 'open', requestedBy: 'ann' });
    expect(words(inside(r.html, 'request-result')!)).toBe(`Asked for an override of job ${job}: request #${made!.id}, open`);
    // Her requests list it; the held job shows the open request instead of a second form.
    expect(requestRow(r.html, 'my-requests', made!.id)).toMatchObject({ state: 'open' });
    expect(inside(r.html, 'held-jobs')).not.toContain(`id="request-${job}"`);
  });

  it("a request for another person's job through the form is refused with the reason; nothing is created", async () => {
    const bobs = await heldJob('alpha', 'bob');
    // ann cannot see bob's job: as if it did not exist.
    const r = await ask('ann', bobs, 'mine now');
    expect(r.status).toBe(404);
    expect(words(inside(r.html, 'request-result')!)).toBe(`Not asked: no held job ${bobs}`);
    expect(r.html).toMatch(/id="request-result"[^>]*data-ok="false"/);
    expect(await requestsOf(bobs)).toEqual([]);
    // An empty reason is refused too.
    const own = await heldJob('alpha', 'ann');
    const empty = await ask('ann', own, '   ');
    expect(empty.status).toBe(400);
    expect(words(inside(empty.html, 'request-result')!)).toBe('Not asked: reason may not be empty');
    expect(await requestsOf(own)).toEqual([]);
  });

  it('a form posted from another site is refused with nothing created; the same form from the page is taken', async () => {
    const job = await heldJob('alpha', 'ann');
    const cross = await ask('ann', job, 'please', 'raise', { 'sec-fetch-site': 'cross-site' });
    expect(cross.status).toBe(403);
    expect(await requestsOf(job)).toEqual([]);
    const same = await ask('ann', job, 'please', 'raise');
    expect(same.status).toBe(200);
    const [made] = await requestsOf(job);
    expect(made).toMatchObject({ kind: 'raise', state: 'open' });
    expect(words(inside(same.html, 'request-result')!)).toBe(`Asked for a budget raise for job ${job}: request #${made!.id}, open`);
  });

  it("after a manager denies with a reason, ann's /submit and dashboard show the denial and its reason", async () => {
    const job = await heldJob('alpha', 'ann');
    expect((await ask('ann', job, 'deadline friday')).status).toBe(200);
    const [made] = await requestsOf(job);
    const denied = await call(keys.max!, 'POST', `/override-requests/${made!.id}/deny`, { reason: 'no budget left this quarter' });
    expect(denied.status).toBe(200);

    const s = await page('ann', '/submit');
    const row = requestRow(s.html, 'my-requests', made!.id)!;
    expect(row.state).toBe('denied');
    expect(row.text).toContain('denied by max: no budget left this quarter');
    // The job is still held, with no open request: she may ask again.
    expect(inside(s.html, 'held-jobs')).toContain(`id="request-${job}"`);

    const d = await page('ann', '/dashboard');
    const dash = requestRow(d.html, 'override-requests', made!.id)!;
    expect(dash.state).toBe('denied');
    expect(dash.text).toContain('denied by max: no budget left this quarter');
  });
});

describe('override requests on the dashboard', () => {
  it("max (manager of alpha) sees the open request with Approve and Deny; bea (manager of beta) does not; ann sees its state", async () => {
    const job = await heldJob('alpha', 'ann');
    expect((await ask('ann', job, 'paper due', 'raise')).status).toBe(200);
    const [made] = await requestsOf(job);
    const id = made!.id as number;

    const max = await page('max', '/dashboard');
    expect(max.status).toBe(200);
    const row = requestRow(max.html, 'override-requests', id)!;
    expect(row.state).toBe('open');
    expect(row.text).toBe(`#${id} ${job} alpha ann raise paper due ann 0s Approve Deny`);
    expect(row.row).toContain(`<button data-action="approve" data-request-id="${id}" data-job="${job}">Approve</button>`);
    expect(row.row).toContain(`<button data-action="deny" data-request-id="${id}" data-job="${job}">Deny</button>`);
    // The page's script answers those buttons through the JSON API.
    expect(max.html).toContain("'/api/v1/override-requests/' + encodeURIComponent(id) + '/' + action");
    expect(max.html).toContain("'Approve override request #' + id + '? Reason (optional):'");

    const bea = await page('bea', '/dashboard');
    expect(bea.status).toBe(200);
    expect(inside(bea.html, 'override-requests')).not.toBeNull();
    expect(requestRow(bea.html, 'override-requests', id)).toBeNull();
    expect(bea.html).not.toContain(`data-request-id="${id}"`);

    const ann = await page('ann', '/dashboard');
    const mine = requestRow(ann.html, 'override-requests', id)!;
    expect(mine.state).toBe('open');
    expect(mine.text).toContain('waiting for a manager');
    expect(mine.row).not.toContain('data-action');
  });
});

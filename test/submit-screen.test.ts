/**
 * The submission screen (/submit) over HTTP with a person's key in Basic
 * auth, real Redis and Postgres and a real gatekeeper: the bars carry the
 * API's numbers, the preview says in words what the preflight says, the
 * queue button queues exactly that batch and the gatekeeper then decides it
 * as shown, a changed state queues nothing, and what may not be done is
 * refused with nothing queued: another person's or project's jobs, bad JSON,
 * a form from another site, the same form twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { callApi, serveApi, type ServedApi } from './support/api.ts';
import { SYSTEM } from '../src/accounting/budgets.ts';
import { hoursToGpuMs } from '../src/units.ts';

const admin = 'test-admin-token-0123456789';
let t: TestEnv;
let api: ServedApi;
let base: string;

const call = (token: string, method: string, path: string, body?: unknown) => callApi(api.api, token, method, path, body);

/** A key for `user` in `projects` (omitted: every project). */
async function submitterKey(user: string, projects?: string[], role = 'submitter'): Promise<string> {
  const r = await call(admin, 'POST', '/keys', { user, role, ...(projects ? { projects } : {}) });
  expect(r.status).toBe(201);
  return r.body.key as string;
}

const basic = (key: string) => `Basic ${Buffer.from(`x:${key}`).toString('base64')}`;

async function page(key: string, path: string, form?: Record<string, string>, headers: Record<string, string> = {}): Promise<{ status: number; html: string; headers: Headers }> {
  const res = await fetch(base + path, {
    method: form ? 'POST' : 'GET',
    headers: { authorization: basic(key), ...(form ? { 'content-type': 'application/x-www-form-urlencoded', 'sec-fetch-site': 'same-origin' } : {}), ...headers },
    body: form ? new URLSearchParams(form).toString() : undefined,
    redirect: 'manual',
  });
  return { status: res.status, html: await res.text(), headers: res.headers };
}

const unescape = (s: string) => s.replace(/&(quot|amp|lt|gt|#39);/g, (_m, e: string) => ({ quot: '"', amp: '&', lt: '<', gt: '>', '#39': "'" })[e]!);
/** The text of the element with this id, tags dropped. */
const textOf = (html: string, id: string) => {
  const m = new RegExp(`<(\\w+)[^>]*\\sid="${id}"[^>]*>`).exec(html);
  if (!m) return '';
  const rest = html.slice(m.index + m[0].length);
  return unescape(rest.slice(0, rest.indexOf(`</${m[1]}>`)).replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim());
};
const attr = (html: string, id: string, name: string) => new RegExp(`id="${id}"[^>]*\\s${name}="([^"]*)"`).exec(html)?.[1];
const hidden = (html: string, name: string) => unescape(new RegExp(`name="${name}" value="([^"]*)"`).exec(html)![1]!);
/** The exact numbers a scope's card carries. */
function card(html: string, scope: string) {
  const art = new RegExp(`<article class="scope" data-scope="${scope}"[^>]*>([\\s\\S]*?)</article>`).exec(html)?.[1];
  if (art === undefined) return null;
  const n = (cls: string) => Number(new RegExp(`class="${cls}" data-(?:gpu-hours|amount)="([^"]*)"`).exec(art)![1]);
  return { used: n('used'), reserved: n('reserved'), remaining: n('remaining'), limit: n('limit'), resets: unescape(/class="resets"[^>]*>([^<]*)</.exec(art)![1]!) };
}

/** BullMQ's id counter of the intake queue: it moves with every job added, whatever then happens to the job. */
const added = async () => Number((await t.redis.get(`${t.config.queuePrefix}:${t.config.queues.intake}:id`)) ?? 0);

const batchForm = (project: string, count: number, hours = 1, extra: Record<string, string> = {}) =>
  ({ project, jobType: 'train', gpuType: 'h100', gpus: '1', hours: String(hours), count: String(count), run: '', ...extra });

/** Preview, then the queue form's fields. */
async function previewed(key: string, form: Record<string, string>) {
  const p = await page(key, '/submit/preview', form);
  expect(p.status).toBe(200);
  return { ...p, queueForm: { batch: hidden(p.html, 'batch'), digest: hidden(p.html, 'digest'), once: hidden(p.html, 'once') } };
}

beforeAll(async () => {
  t = await createTestEnv();
  api = await serveApi(t, { clock: t.clock, tokens: { admin } });
  base = api.api.replace(/\/api\/v1$/, '');
});
afterAll(async () => {
  await api?.close();
  await t?.close();
});

describe('the submission screen', () => {
  it("shows the submitter's project budget and quota with the API's numbers, and their project only", async () => {
    const key = await submitterKey('ann', ['alpha']);
    await t.budgets.set('alpha', hoursToGpuMs(14));
    await t.budgets.set('beta', hoursToGpuMs(5));
    await t.budgets.setQuota('ann', { daily: { limitGpuMs: hoursToGpuMs(100) }, weekly: { limitGpuMs: hoursToGpuMs(200) } }, SYSTEM, null);
    // Four 1-hour jobs admitted (reserved: no worker runs them).
    expect((await call(key, 'POST', '/jobs', { jobs: Array.from({ length: 4 }, () => ({ project: 'alpha', user: 'ann', estimatedGpuHours: 1 })) })).status).toBe(202);
    await eventually(() => t.budgets.get('alpha'), (b) => b!.reservedGpuMs === hoursToGpuMs(4));

    const p = await page(key, '/submit');
    expect(p.status).toBe(200);
    expect(p.headers.get('x-frame-options')).toBe('DENY');
    expect(p.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    const budget = (await call(key, 'GET', '/projects/alpha/budget')).body;
    const alpha = card(p.html, 'project:alpha')!;
    expect(alpha).toMatchObject({ used: budget.usedGpuHours, reserved: budget.reservedGpuHours, remaining: budget.remainingGpuHours, limit: budget.effectiveLimitGpuHours });
    // By hand: 14 h, 4 reserved, none settled, 10 left; a one-off budget.
    expect(alpha).toEqual({ used: 0, reserved: 4, remaining: 10, limit: 14, resets: 'does not reset' });
    expect(card(p.html, 'project:beta')).toBeNull();

    const quota = (await call(key, 'GET', '/users/ann/quota')).body;
    const day = card(p.html, 'user-day:ann')!;
    const week = card(p.html, 'user-week:ann')!;
    expect(day).toMatchObject({ used: quota.daily.usedGpuHours, reserved: quota.daily.reservedGpuHours, remaining: quota.daily.remainingGpuHours, limit: quota.daily.effectiveLimitGpuHours });
    // The clock is Wed 25 Nov 2026 12:00 UTC: the day resets at midnight, the week on Monday.
    expect(day).toEqual({ used: 0, reserved: 4, remaining: 96, limit: 100, resets: 'resets Thu 26 Nov 00:00 UTC' });
    expect(week).toEqual({ used: 0, reserved: 4, remaining: 196, limit: 200, resets: 'resets Mon 30 Nov 00:00 UTC' });
    // The project is a choice among theirs; the user is themselves.
    expect(p.html).toMatch(/<select id="f-project" name="project" required><option selected>alpha<\/option><\/select>/);
    expect(p.html).toContain('<span id="f-user-fixed" data-user="ann">ann</span>');
    expect(p.html).not.toContain('id="f-user"');
  });

  it("shows the budgets for GPU types of the submitter's projects, and no other project's", async () => {
    const key = await submitterKey('tia', ['typed']);
    await t.budgets.set('typed', hoursToGpuMs(100));
    await t.budgets.setTypeBudget('typed', 'h100', { limitGpuMs: hoursToGpuMs(6), period: 'none' }, SYSTEM, null);
    await t.budgets.setTypeBudget('other', 'h100', { limitGpuMs: hoursToGpuMs(6), period: 'none' }, SYSTEM, null);
    expect((await call(key, 'POST', '/jobs', { jobs: [{ project: 'typed', user: 'tia', gpuType: 'h100', estimatedGpuHours: 2 }] })).status).toBe(202);
    await eventually(() => t.budgets.view('project-type:typed/h100'), (v) => v.reservedGpuMs === hoursToGpuMs(2));
    const p = await page(key, '/submit');
    // By hand: 6 h for H100s, 2 reserved, 4 left, one-off.
    expect(card(p.html, 'project-type:typed/h100')).toEqual({ used: 0, reserved: 2, remaining: 4, limit: 6, resets: 'does not reset' });
    expect(unescape(p.html)).toContain("project typed's h100 budget");
    expect(card(p.html, 'project-type:other/h100')).toBeNull();
  });

  it('previews 12 × 1 h with 10 h left as 10 starting and 2 waiting with the PRD message, then queues exactly that', async () => {
    const key = await submitterKey('bo', ['gamma']);
    await t.budgets.set('gamma', hoursToGpuMs(14));
    expect((await call(key, 'POST', '/jobs', { jobs: Array.from({ length: 4 }, () => ({ project: 'gamma', user: 'bo', estimatedGpuHours: 1 })) })).status).toBe(202);
    await eventually(() => t.budgets.get('gamma'), (b) => b!.reservedGpuMs === hoursToGpuMs(4));
    const before = await added();

    const p = await previewed(key, batchForm('gamma', 12));
    expect(await added()).toBe(before); // a preview queues nothing
    expect([attr(p.html, 'preview', 'data-jobs'), attr(p.html, 'preview', 'data-would-start'), attr(p.html, 'preview', 'data-would-wait')]).toEqual(['12', '10', '2']);
    expect(textOf(p.html, 'would-start')).toBe('10 of 12 jobs would start now.');
    expect(textOf(p.html, 'would-wait')).toBe("2 would wait: project gamma's budget is used up: 14.0 of 14.0 GPU-h.");
    expect(textOf(p.html, 'blocked')).toBe("project gamma's budget is used up: 14.0 of 14.0 GPU-h. Contact your admin to raise it, or request an override.");
    expect(p.html).toContain('<li data-code="would-exhaust">project gamma: this submission would hit its limit; the jobs past it are held</li>');
    expect(p.html).toMatch(/<button id="queue" type="submit" data-jobs="12">Queue these 12 jobs<\/button>/);
    // The batch carried is the fields' job twelve times, the user being the person.
    expect(JSON.parse(p.queueForm.batch)).toEqual(Array.from({ length: 12 }, () => ({ project: 'gamma', user: 'bo', jobType: 'train', gpuType: 'h100', gpus: 1, estimatedGpuHours: 1 })));

    const q = await page(key, '/submit', p.queueForm);
    expect(q.status).toBe(200);
    expect(textOf(q.html, 'queued-sentence')).toBe('queued 12 jobs: 10 start now, 2 wait');
    const ids = [...q.html.matchAll(/data-job-id="([^"]+)"/g)].map((m) => m[1]!);
    expect(ids).toHaveLength(12);
    expect(await added()).toBe(before + 12);
    // The gatekeeper decides as the preview said: the first ten admitted, the last two held.
    const held = await eventually(() => t.accounting.heldIds('gamma'), (h) => h.length === 2);
    expect(held.sort()).toEqual([ids[10], ids[11]].sort());
    await eventually(() => t.budgets.get('gamma'), (b) => b!.reservedGpuMs === hoursToGpuMs(14));

    // The same form again (a reload): nothing more is queued.
    const again = await page(key, '/submit', p.queueForm);
    expect(again.status).toBe(409);
    expect(again.html).toContain(`this form was queued already: jobs ${ids.join(', ')}`);
    expect(await added()).toBe(before + 12);
  });

  it('prices the batch on its GPU type and on each other one, and shows a budget in dollars in dollars', async () => {
    const key = await submitterKey('di', ['priced']);
    for (const [gpuType, units, usd] of [['h100', 3, 4.1], ['a100', 2, 2.5]] as const) {
      expect((await call(admin, 'PUT', `/gpu-types/${gpuType}`, { unitsPerGpuHour: units, usdPerGpuHour: usd })).status).toBe(200);
    }
    expect((await call(admin, 'PUT', '/projects/priced/budget', { usd: 100 })).status).toBe(200);
    const p = await previewed(key, batchForm('priced', 4, 2));
    // By hand: 4 x 2 h on h100 = 8 GPU-h, $32.80, 24 units; on a100 $20.00, 16 units.
    expect(textOf(p.html, 'cost')).toBe('This batch: 8 GPU-h = $32.80, 24 units.');
    expect(textOf(p.html, 'cost-by-gpu-type')).toBe('on a100: $20.00, 16 units on h100: $32.80, 24 units');
    const page1 = await page(key, '/submit');
    expect(page1.html).toMatch(/data-scope="project:priced" data-unit="usd"/);
    expect(card(page1.html, 'project:priced')).toMatchObject({ used: 0, reserved: 0, remaining: 100, limit: 100 });
    expect(page1.html).toContain('of <span class="limit" data-amount="100">$100.00</span> ·');
  });

  it('queues nothing when the decisions changed between preview and submit, and shows the new answer', async () => {
    const key = await submitterKey('cy', ['delta']);
    await t.budgets.set('delta', hoursToGpuMs(10));
    const p = await previewed(key, batchForm('delta', 12));
    expect(attr(p.html, 'preview', 'data-would-start')).toBe('10');
    expect((await call(admin, 'PUT', '/projects/delta/budget', { gpuHours: 5, reason: 'cut' })).status).toBe(200);
    const before = await added();

    const q = await page(key, '/submit', p.queueForm);
    expect(q.status).toBe(409);
    expect(q.html).toContain('Things changed since you looked: nothing was queued.');
    expect(textOf(q.html, 'would-start')).toBe('5 of 12 jobs would start now.');
    expect(textOf(q.html, 'would-wait')).toBe("7 would wait: project delta's budget is used up: 5.0 of 5.0 GPU-h.");
    expect(await added()).toBe(before);
    expect(q.html).not.toContain('id="result"');
  });

  it('refuses a submitter jobs for another user or another project, with nothing queued', async () => {
    const key = await submitterKey('di', ['eps']);
    await t.budgets.set('eps', hoursToGpuMs(10));
    await t.budgets.set('zeta', hoursToGpuMs(10));
    const before = await added();
    const other = await page(key, '/submit/preview', batchForm('eps', 1, 1, { user: 'eve' }));
    expect(other.status).toBe(403);
    expect(textOf(other.html, 'errors')).toContain('job 0: di (submitter of eps) may not preflight jobs for user "eve" in project "eps"');
    const pasted = await page(key, '/submit/preview', { json: JSON.stringify([{ project: 'zeta', estimatedGpuHours: 1 }]) });
    expect(pasted.status).toBe(403);
    expect(pasted.html).toContain('may not preflight jobs for user &quot;di&quot; in project &quot;zeta&quot;');
    // A queue form made up by hand is checked again.
    const forged = await page(key, '/submit', { batch: JSON.stringify([{ project: 'zeta', user: 'di', estimatedGpuHours: 1 }]), digest: '0'.repeat(64), once: 'A'.repeat(22) });
    expect(forged.status).toBe(403);
    expect(forged.html).toContain('may not submit jobs for user &quot;di&quot; in project &quot;zeta&quot;');
    expect(await added()).toBe(before);
  });

  it('answers a malformed or invalid pasted batch with a readable reason and queues nothing', async () => {
    const key = await submitterKey('ed', ['eta']);
    const before = await added();
    const bad = await page(key, '/submit/preview', { json: '[{"project": "eta", "estimatedGpuHours": 1,' });
    expect(bad.status).toBe(400);
    expect(textOf(bad.html, 'errors')).toMatch(/^Nothing was queued\s+the pasted batch is not valid JSON: /);
    expect(bad.html).toContain('[{&quot;project&quot;: &quot;eta&quot;, &quot;estimatedGpuHours&quot;: 1,</textarea>'); // shown back to fix
    const invalid = await page(key, '/submit/preview', { json: JSON.stringify({ jobs: [{ project: 'eta', estimatedGpuHours: 1 }, { project: 'eta', estimatedGpuHours: -1 }, { project: 'eta', estimatedGpuHours: -2 }] }) });
    expect(invalid.status).toBe(400);
    expect(textOf(invalid.html, 'errors')).toContain('2 of 3 jobs are invalid');
    expect(textOf(invalid.html, 'errors')).toContain('2 jobs (1, 2): invalid job: estimatedGpuHours must be greater than 0');
    expect(invalid.html).not.toContain('id="preview"');
    expect(await added()).toBe(before);
  });

  it('refuses a form posted from another site', async () => {
    const key = await submitterKey('fay', ['theta']);
    await t.budgets.set('theta', hoursToGpuMs(10));
    const before = await added();
    const p = await previewed(key, batchForm('theta', 2));
    for (const [path, form] of [['/submit/preview', batchForm('theta', 2)], ['/submit', p.queueForm]] as const) {
      const r = await page(key, path, form, { 'sec-fetch-site': 'cross-site' });
      expect(r.status).toBe(403);
      expect(r.html).toContain('(Sec-Fetch-Site: cross-site) is refused');
    }
    expect(await added()).toBe(before);
  });

  it('lets a manager type the user, shows a viewer the answer without a button, and lists every project for a key of all', async () => {
    await t.budgets.set('iota', hoursToGpuMs(5));
    await t.budgets.set('iris', hoursToGpuMs(5));
    const manager = await submitterKey('mia', ['iota'], 'manager');
    const viewer = await submitterKey('vic', ['iota'], 'viewer');
    const everywhere = await submitterKey('sal');

    expect((await page(manager, '/submit')).html).toContain('<input id="f-user" name="user" value="mia"');
    const m = await previewed(manager, batchForm('iota', 2, 1, { user: 'zed' }));
    expect(JSON.parse(m.queueForm.batch)[0].user).toBe('zed');
    expect(m.html).toContain('<button id="queue"');

    const before = await added();
    const v = await page(viewer, '/submit/preview', { json: JSON.stringify([{ project: 'iota', user: 'zed', estimatedGpuHours: 1 }]) });
    expect(v.status).toBe(200);
    expect(attr(v.html, 'preview', 'data-would-start')).toBe('1');
    expect(v.html).not.toContain('id="queue"');
    expect(textOf(v.html, 'may-not-queue')).toBe('job 0: vic (viewer of iota) may not submit jobs for user "zed" in project "iota"');
    expect((await page(viewer, '/submit', { batch: JSON.stringify([{ project: 'iota', user: 'zed', estimatedGpuHours: 1 }]), digest: '0'.repeat(64), once: 'B'.repeat(22) })).status).toBe(403);
    expect(await added()).toBe(before);

    // A key of every project: a text field with the listed names, and a search.
    const all = await page(everywhere, '/submit?q=io');
    expect(all.status).toBe(200);
    expect(card(all.html, 'project:iota')).toMatchObject({ limit: 5, remaining: 5 });
    expect(card(all.html, 'project:alpha')).toBeNull(); // 'alpha' holds no "io"
    expect(all.html).toContain('<datalist id="project-names"><option value="iota"></datalist>');
    expect(all.html).toContain('<input id="f-project" name="project"');
    expect((await page(everywhere, '/submit?q=%3Cscript%3E')).status).toBe(400);
  });
});

/**
 * Override requests (real Redis and Postgres, through the HTTP API and the
 * CLI): a held job's owner asks with a reason; managers of its project see
 * the request (an event and a webhook delivery too) and approve it (the job
 * is admitted as an override, audited with requester and approver) or deny
 * it (the requester reads why); nobody else asks, sees or decides; one open
 * request per job; a request whose job left the held state closes by itself.
 * Each test works in a project of its own, so any one runs alone.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { callApi, serveApi, type ServedApi } from './support/api.ts';
import { EventStore } from '../src/events/store.ts';
import { EXIT, runCli } from '../src/cli/main.ts';
import { hoursToGpuMs } from '../src/units.ts';

const admin = 'test-admin-token-0123456789';
const viewer = 'test-viewer-token-0123456789';
let t: TestEnv;
let api: ServedApi;
let store: EventStore;
let exec: Queue;
let deliveries: Queue;
const keys: Record<string, string> = {};
const keyId = (who: string) => keys[who]!.slice(3, 15);

const call = (token: string, method: string, path: string, body?: unknown) => callApi(api.api, token, method, path, body);
const as = (who: string, method: string, path: string, body?: unknown) => call(keys[who]!, method, path, body);

/** A held job of `user` in `project` (whose budget is 0), submitted with `user`'s key. */
async function heldJob(project: string, user: string): Promise<string> {
  const before = new Set(await t.accounting.heldIds(project));
  expect((await as(user, 'POST', '/jobs', { project, user, estimatedGpuHours: 1 })).status).toBe(202);
  const ids = await eventually(() => t.accounting.heldIds(project), (ids) => ids.some((id) => !before.has(id)));
  return ids.find((id) => !before.has(id))!;
}

async function ask(user: string, jobId: string, reason = 'client demo at 9'): Promise<number> {
  const r = await as(user, 'POST', `/held/${jobId}/override-requests`, { reason });
  expect(r.status).toBe(201);
  return r.body.id as number;
}

const idsOf = (r: { body: Record<string, any> }) => (r.body.requests as { id: number }[]).map((q) => q.id);

beforeAll(async () => {
  t = await createTestEnv({ UNKNOWN_PROJECT_POLICY: 'hold', WEBHOOK_ALLOWED_TARGETS: '127.0.0.1/32' });
  api = await serveApi(t, { clock: t.clock, tokens: { admin, viewer } });
  store = new EventStore(t.connection(), t.accounting.keys.events, t.pool, t.config, t.log);
  exec = new Queue(t.config.queues.exec, { connection: t.redis, prefix: t.config.queuePrefix });
  deliveries = new Queue(t.config.queues.webhooks, { connection: t.redis, prefix: t.config.queuePrefix });
  for (const project of ['p-ask', 'p-who', 'p-approve', 'p-deny', 'p-gone', 'p-cli', 'p-other']) await t.budgets.set(project, 0);
  const people: [string, string, string[]][] = [
    ['ann', 'submitter', ['p-ask', 'p-who', 'p-approve', 'p-deny', 'p-gone', 'p-cli']],
    ['bob', 'submitter', ['p-ask', 'p-who']],
    ['max', 'manager', ['p-ask', 'p-who', 'p-approve', 'p-deny', 'p-gone', 'p-cli']],
    ['bea', 'manager', ['p-other']],
    ['vic', 'viewer', ['p-approve']],
  ];
  for (const [user, role, projects] of people) {
    const r = await call(admin, 'POST', '/keys', { user, role, projects });
    expect(r.status).toBe(201);
    keys[user] = r.body.key as string;
  }
});
afterAll(async () => {
  await store?.stop();
  await exec?.close();
  await deliveries?.close();
  await api?.close();
  await t?.close();
});

describe('asking', () => {
  it('the owner asks; the project’s managers see it, with an event and a webhook delivery', async () => {
    const hook = await call(admin, 'POST', '/webhooks', { url: 'http://127.0.0.1:9/hook', types: ['OVERRIDE_REQUESTED'] });
    expect(hook.status).toBe(201);
    const job = await heldJob('p-ask', 'ann');
    const r = await as('ann', 'POST', `/held/${job}/override-requests`, { reason: 'client demo at 9', kind: 'raise' });
    expect(r.status).toBe(201);
    expect(r.body).toEqual({
      id: expect.any(Number), jobId: job, project: 'p-ask', user: 'ann', kind: 'raise', reason: 'client demo at 9', state: 'open',
      requestedBy: 'ann', requestedVia: `key:${keyId('ann')}`, requestedAt: '2026-11-25T12:00:00.000Z', // the test clock
      decidedBy: null, decidedVia: null, decidedAt: null, decisionReason: null, closedNote: null,
    });
    const id = r.body.id as number;
    expect(idsOf(await as('max', 'GET', '/override-requests'))).toContain(id);
    expect(idsOf(await call(admin, 'GET', '/override-requests'))).toContain(id);
    expect(idsOf(await as('ann', 'GET', '/override-requests'))).toContain(id);
    // A manager of another project, and another submitter of the same one, see nothing of it.
    expect(idsOf(await as('bea', 'GET', '/override-requests'))).not.toContain(id);
    expect(idsOf(await as('bob', 'GET', '/override-requests'))).not.toContain(id);

    while ((await store.drainOnce()) > 0);
    const alerts = (await call(admin, 'GET', '/alerts?type=OVERRIDE_REQUESTED')).body.alerts as { id: number; data: unknown }[];
    const alert = alerts.find((a) => (a.data as { requestId: number }).requestId === id)!;
    expect(alert.data).toEqual({ requestId: id, jobId: job, project: 'p-ask', user: 'ann', kind: 'raise', reason: 'client demo at 9', requestedBy: 'ann' });
    const delivery = await deliveries.getJob(`ev${alert.id}-${hook.body.id}`);
    expect(delivery?.data).toMatchObject({ type: 'OVERRIDE_REQUESTED', url: 'http://127.0.0.1:9/hook' });
    expect(JSON.parse(delivery!.data.body).data).toEqual(alert.data);
  });

  it('a second open request for the same job is refused, naming the first', async () => {
    const job = await heldJob('p-ask', 'ann');
    const first = await ask('ann', job);
    const again = await as('max', 'POST', `/held/${job}/override-requests`, { reason: 'me too' });
    expect([again.status, again.body.error.message]).toEqual([409, `job ${job} already has an open override request (#${first} by ann)`]);
  });

  it('nobody else asks: another submitter and another project’s manager find no such job, a viewer may not', async () => {
    const job = await heldJob('p-who', 'ann');
    for (const who of ['bob', 'bea']) {
      const r = await as(who, 'POST', `/held/${job}/override-requests`, { reason: 'mine now' });
      expect([who, r.status, r.body.error.message]).toEqual([who, 404, `no held job ${job}`]);
    }
    const v = await call(viewer, 'POST', `/held/${job}/override-requests`, { reason: 'looks stuck' });
    expect([v.status, v.body.error.message]).toEqual([403, `ops-alice (viewer) may not request an override of job ${job} (project p-who, user ann): only its owner, with a key of their own, or a manager of the project`]);
    // Its manager may ask on the owner's behalf.
    expect((await as('max', 'POST', `/held/${job}/override-requests`, { reason: 'for ann' })).status).toBe(201);
    const none = await as('ann', 'POST', '/held/no-such-job/override-requests', { reason: 'x' });
    expect([none.status, none.body.error.message]).toEqual([404, 'no held job no-such-job']);
  });

  it.each([
    [{}, 'reason is required'],
    [{ reason: '   ' }, 'reason may not be empty'],
    [{ reason: 'x', kind: 'refund' }, 'kind must be one of override, raise'],
    [{ reason: 'x', urgent: true }, 'unknown field(s): urgent'],
    [{ reason: 'bell\u0007' }, expect.stringMatching(/^reason /)],
  ])('a bad request body is refused with its reason: %j', async (body, message) => {
    const r = await as('ann', 'POST', '/held/any-job/override-requests', body);
    expect([r.status, r.body.error.message]).toEqual([400, message]);
  });
});

describe('hostile input', () => {
  it.each([
    ['POST', '/override-requests/abc/approve', {}, 400, 'a request id is a whole number such as 12'],
    ['POST', '/override-requests/1.5/deny', { reason: 'x' }, 400, 'a request id is a whole number such as 12'],
    ['POST', '/override-requests/99999999999999999999/approve', {}, 400, 'a request id is a whole number such as 12'],
    ['POST', '/override-requests/0/approve', {}, 400, 'a request id is a whole number such as 12'],
    ['POST', '/override-requests/424242/approve', {}, 404, 'no override request #424242'],
    ['POST', '/held/%00x/override-requests', { reason: 'x' }, 400, expect.stringMatching(/^job id /)],
    ['GET', '/override-requests?state=pending', undefined, 400, 'state must be one of open, approved, denied, closed, all'],
    ['GET', '/override-requests?limit=0', undefined, 400, 'limit must be at least 1'],
    ['GET', '/override-requests?user=bob', undefined, 400, 'unknown query parameter(s): user'],
  ])('%s %s %j is answered %i with its reason', async (method, path, body, status, message) => {
    const r = await call(admin, method, path, body);
    expect([r.status, r.body.error.message]).toEqual([status, message]);
  });
});

describe('deciding', () => {
  it('a manager of the project approves: the job is admitted as an override, audited with requester and approver', async () => {
    const job = await heldJob('p-approve', 'ann');
    const id = await ask('ann', job, 'client demo at 9');
    // Not theirs to see, not theirs to decide, not a manager at all.
    const bea = await as('bea', 'POST', `/override-requests/${id}/approve`, {});
    expect([bea.status, bea.body.error.message]).toEqual([404, `no override request #${id}`]);
    expect((await as('vic', 'POST', `/override-requests/${id}/approve`, {})).status).toBe(403);
    expect((await as('ann', 'POST', `/override-requests/${id}/approve`, {})).status).toBe(403);
    expect(await t.accounting.heldIds('p-approve')).toEqual([job]);

    const r = await as('max', 'POST', `/override-requests/${id}/approve`, { reason: 'ok for the demo' });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ id, state: 'approved', decidedBy: 'max', decidedVia: `key:${keyId('max')}`, decisionReason: 'ok for the demo', decidedAt: '2026-11-25T12:00:00.000Z' });
    expect(await t.accounting.heldIds('p-approve')).toEqual([]);
    expect((await exec.getJob(`intake-${job}`))?.data).toMatchObject({ project: 'p-approve', user: 'ann', admission: { intakeJobId: job, reservedGpuHours: 1 } });

    const [row] = (await call(admin, 'GET', `/audit?target=job:${job}`)).body.entries;
    expect(row).toMatchObject({
      action: 'held.override', actor: 'max', role: 'manager', via: `key:${keyId('max')}`,
      reason: `request #${id} by ann: client demo at 9; ok for the demo`,
      after: { state: 'admitted', override: true, request: { id, kind: 'override', requestedBy: 'ann', requestedVia: `key:${keyId('ann')}` } },
    });
    const again = await as('max', 'POST', `/override-requests/${id}/approve`, {});
    expect([again.status, again.body.error.message]).toEqual([409, `override request #${id} is already approved by max: ok for the demo`]);
  });

  it('a denial needs a reason, which the requester reads; it is audited', async () => {
    const job = await heldJob('p-deny', 'ann');
    const id = await ask('ann', job, 'need it tonight');
    expect((await as('max', 'POST', `/override-requests/${id}/deny`, {})).body.error.message).toBe('reason is required');
    const r = await as('max', 'POST', `/override-requests/${id}/deny`, { reason: 'wait for Monday' });
    expect(r.body).toMatchObject({ id, state: 'denied', decidedBy: 'max', decisionReason: 'wait for Monday' });
    const mine = (await as('ann', 'GET', '/override-requests?state=denied')).body.requests.find((q: { id: number }) => q.id === id);
    expect(mine).toMatchObject({ jobId: job, state: 'denied', decisionReason: 'wait for Monday', decidedBy: 'max' });
    expect(await t.accounting.heldIds('p-deny')).toEqual([job]);
    const [row] = (await call(admin, 'GET', `/audit?target=job:${job}`)).body.entries;
    expect(row).toMatchObject({
      action: 'override-request.deny', actor: 'max', via: `key:${keyId('max')}`, reason: 'wait for Monday',
      before: { request: id, state: 'open', requestedBy: 'ann', requestedVia: `key:${keyId('ann')}` }, after: { request: id, state: 'denied' },
    });
    while ((await store.drainOnce()) > 0);
    const denied = (await call(admin, 'GET', '/alerts?type=OVERRIDE_DENIED')).body.alerts.map((a: { data: unknown }) => a.data);
    expect(denied).toContainEqual({ requestId: id, jobId: job, project: 'p-deny', user: 'ann', reason: 'wait for Monday', deniedBy: 'max' });
    // Denied, the job may be asked for again.
    expect((await as('ann', 'POST', `/held/${job}/override-requests`, { reason: 'Monday now' })).status).toBe(201);
  });
});

describe('deciding at once', () => {
  it('a decision waits for one in progress on the same request, then answers what that one decided', async () => {
    const job = await heldJob('p-approve', 'ann');
    const id = await ask('ann', job);
    // Another decision holds the request (as deny() does between its lock and its COMMIT).
    const other = await t.pool.connect();
    try {
      await other.query('BEGIN');
      await other.query('SELECT 1 FROM override_requests WHERE id = $1 FOR UPDATE', [id]);
      const approving = as('max', 'POST', `/override-requests/${id}/approve`, {});
      await eventually(
        () => t.pool.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`),
        (r) => r.rows[0].n > 0,
      );
      await other.query(`UPDATE override_requests SET state = 'denied', decided_by = 'bea', decision_reason = 'no', decided_at = now() WHERE id = $1`, [id]);
      await other.query('COMMIT');
      const r = await approving;
      expect([r.status, r.body.error.message]).toEqual([409, `override request #${id} is already denied by bea: no`]);
    } finally {
      other.release();
    }
    // The job's fate agrees with the row's: still held.
    expect(await t.accounting.heldIds('p-approve')).toEqual([job]);
  });
});

describe('a request whose job left the held state', () => {
  it('closes by itself when listed (released, cancelled), and cannot be approved after', async () => {
    const [released, cancelled] = [await heldJob('p-gone', 'ann'), await heldJob('p-gone', 'ann')];
    const [r1, r2] = [await ask('ann', released), await ask('ann', cancelled)];
    await t.budgets.set('p-gone', hoursToGpuMs(1));
    expect((await as('max', 'POST', '/held/release', { ids: [released] })).body.admittedIds).toEqual([released]);
    expect((await as('ann', 'POST', `/held/${cancelled}/cancel`, { reason: 'wrong scene' })).status).toBe(200);

    expect(idsOf(await as('max', 'GET', '/override-requests'))).not.toContain(r1);
    const closed = (await as('max', 'GET', '/override-requests?state=closed')).body.requests as Record<string, unknown>[];
    expect(closed.filter((q) => q.id === r1 || q.id === r2).map((q) => [q.id, q.state, q.closedNote])).toEqual([
      [r2, 'closed', 'the job left the held state: cancelled'],
      [r1, 'closed', 'the job left the held state: admitted'],
    ]);
    const late = await as('max', 'POST', `/override-requests/${r1}/approve`, {});
    expect([late.status, late.body.error.message]).toEqual([409, `override request #${r1} is closed (the job left the held state: admitted)`]);
  });

  it('closes when a decision finds the job gone, and the decision is refused', async () => {
    await t.budgets.set('p-gone', 0);
    const job = await heldJob('p-gone', 'ann');
    const id = await ask('ann', job);
    expect((await call(admin, 'POST', `/held/${job}/override`, { reason: 'directly' })).status).toBe(200);
    const r = await as('max', 'POST', `/override-requests/${id}/deny`, { reason: 'no' });
    expect([r.status, r.body.error.message]).toEqual([409, `override request #${id} is closed (the job left the held state: admitted)`]);
    expect((await as('ann', 'GET', '/override-requests?state=all')).body.requests.find((q: { id: number }) => q.id === id)).toMatchObject({ state: 'closed', decidedBy: null });
    const asked = await as('ann', 'POST', `/held/${job}/override-requests`, { reason: 'again' });
    expect([asked.status, asked.body.error.message]).toEqual([409, `job ${job} is not held (it is reserved): nothing to override`]);
  });
});

describe('the CLI', () => {
  const cli = async (who: string, args: string[]) => {
    let out = '';
    const code = await runCli(['--url', api.api.replace(/\/api\/v1$/, ''), '--token', keys[who]!, ...args], (s) => (out += s));
    return { code, out };
  };

  it('asks, lists, denies and approves', async () => {
    const [a, b] = [await heldJob('p-cli', 'ann'), await heldJob('p-cli', 'ann')];
    const asked = await cli('ann', ['held', 'request-override', a, '--reason', 'client demo']);
    const id = Number(/#(\d+)/.exec(asked.out)![1]);
    expect(asked).toEqual({ code: EXIT.ok, out: `override request #${id} for job ${a} (override, asked by ann): open\n` });
    const raised = await cli('ann', ['held', 'request-override', b, '--raise', '--reason', 'more hours']);
    expect(raised.out).toBe(`override request #${id + 1} for job ${b} (raise, asked by ann): open\n`);

    const list = await cli('max', ['override-requests']);
    expect(list.code).toBe(EXIT.ok);
    const lines = list.out.trim().split('\n');
    expect(lines[0]).toMatch(/^ID +JOB +PROJECT +USER +KIND +ASKED BY +REASON +STATE +DECISION$/);
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^${id} +${a} +p-cli +ann +override +ann +client demo +open *$`)));

    expect(await cli('max', ['override-requests', 'deny', String(id), '--reason', 'not today'])).toEqual({ code: EXIT.ok, out: `override request #${id} for job ${a} (override, asked by ann): denied by max: not today\n` });
    expect((await cli('max', ['override-requests', 'deny', String(id + 1)])).code).toBe(EXIT.usage); // --reason is required
    expect(await cli('max', ['override-requests', 'approve', String(id + 1)])).toEqual({ code: EXIT.ok, out: `override request #${id + 1} for job ${b} (raise, asked by ann): approved by max\n` });
    expect((await cli('max', ['override-requests', 'approve', String(id)])).code).toBe(EXIT.refused);
    expect((await cli('ann', ['override-requests', 'approve', String(id)])).code).toBe(EXIT.forbidden);

    const denied = await cli('ann', ['override-requests', '--state', 'denied']);
    expect(denied.out).toMatch(new RegExp(`^${id} +${a} .* denied +max: not today$`, 'm'));
  });
});

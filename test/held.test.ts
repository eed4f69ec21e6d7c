/**
 * The ops story, through the HTTP API with a real gatekeeper: budget 10 h,
 * 20 one-hour jobs -> 10 admitted, 10 held with reasons; raise to 15 and
 * release -> 5 admitted in submission order, 5 still held; override one ->
 * admitted, flagged in the ledger and the audit; cancel one -> rejected with
 * the admin's reason. Viewers read but cannot act; bad requests change nothing.
 * Each test plays the story up to its step in a project of its own (tenHeld,
 * fiveStillHeld), so any one runs alone (`-t`).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import { Queue, type Job } from 'bullmq';
import { listen, urlOf } from './support/http.ts';
import { createTestEnv, eventually, type TestEnv } from './support/env.ts';
import { createApp } from '../src/api/app.ts';
import { HeldJobs } from '../src/admin/held.ts';
import { LedgerWriter } from '../src/ledger/writer.ts';
import { systemClock } from '../src/clock.ts';
import { createGatekeeper, type Gatekeeper } from '../workers/gatekeeper.ts';

let t: TestEnv;
let server: Server;
let base: string;
let gk: Gatekeeper;
let held: HeldJobs;
let writer: LedgerWriter;
const q: Record<string, Queue> = {};
const admin = 'test-admin-token-0123456789';
const viewer = 'test-viewer-token-0123456789';

beforeAll(async () => {
  t = await createTestEnv({}, { liveClock: true });
  for (const k of ['intake', 'exec', 'held', 'rejected'] as const) {
    q[k] = new Queue(t.config.queues[k], { connection: t.redis, prefix: t.config.queuePrefix });
  }
  held = new HeldJobs(t.config, t.redis, t.pool, systemClock, t.log);
  gk = createGatekeeper({ config: t.config, workerConnection: t.connection(), connection: t.redis, log: t.log, clock: systemClock });
  writer = new LedgerWriter(t.connection(), t.accounting.keys.ledger, t.pool, t.log, { blockMs: 20 });
  await writer.start();
  const app = createApp({ budgets: t.budgets, held, redis: t.redis, pool: t.pool, log: t.log, tokens: { admin, viewer } });
  server = await listen(app);
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}/api/v1`;
});
afterAll(async () => {
  await new Promise((r) => server?.close(r));
  await gk?.close();
  await writer?.stop();
  await held?.close();
  await Promise.all(Object.values(q).map((x) => x.close()));
  await t?.close();
});

async function call(method: string, path: string, body?: unknown, token = admin, actor = 'ops-alice') {
  const res = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-gatekeeper-actor': actor },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: (await res.json()) as Record<string, any> };
}

const heldIds = async (project: string) => (await call('GET', `/held?project=${project}&limit=1000`)).body.jobs.map((j: { jobId: string }) => j.jobId);
const execIds = async () => (await q.exec!.getRanges(['waiting', 'active', 'completed', 'failed', 'delayed'], 0, -1)).map((id) => id.replace('intake-', ''));

/** One project's jobs as tenHeld left them. Each test builds its own project: no test depends on another. */
interface Story {
  project: string;
  /** Its 20 jobs, in submission order. */
  ids: string[];
  /** The ten on gpu-exec. */
  admitted: string[];
  /** The ten held, oldest first. */
  heldLine: string[];
  /** Its two users, ana-<project> and bob-<project>, taking turns. */
  userOf: (id: string) => string;
}

/**
 * Budget 10 h for `project`, then 20 one-hour jobs from its two users in
 * turn, each placed by the gatekeeper. Which ten get in depends on the order
 * concurrent admissions reach Redis; the held line is in submission order.
 */
async function tenHeld(project: string): Promise<Story> {
  expect((await call('PUT', `/projects/${project}/budget`, { gpuHours: 10 })).status).toBe(200);
  const users = [`ana-${project}`, `bob-${project}`] as const;
  const jobs: Job[] = [];
  for (let i = 0; i < 20; i++) jobs.push(await q.intake!.add(`render-${i}`, { project, user: users[i % 2], estimatedGpuHours: 1 }));
  await eventually(() => Promise.all(jobs.map((j) => j.isCompleted())), (done) => done.every(Boolean));
  const ids = jobs.map((j) => j.id!);
  const onExec = new Set(await execIds());
  return {
    project,
    ids,
    admitted: ids.filter((id) => onExec.has(id)),
    heldLine: ids.filter((id) => !onExec.has(id)),
    userOf: (id) => users[ids.indexOf(id) % 2]!,
  };
}

/** tenHeld, then the budget raised to 15 h and the project released: the first five held admitted, heldLine[5..9] still held. */
async function fiveStillHeld(project: string): Promise<Story> {
  const s = await tenHeld(project);
  await call('PUT', `/projects/${project}/budget`, { gpuHours: 15, reason: 'quarter-end push' });
  expect((await call('POST', '/held/release', { project })).body).toMatchObject({ admitted: 5, stillHeld: 5 });
  return s;
}

/** Project alpha as tenHeld leaves it, built by whichever test needs it first; the tests that use it only try to change it. */
let alpha: Promise<Story> | undefined;
const guarded = () => (alpha ??= tenHeld('alpha'));

describe('the ops story', () => {
  it('budget 10 h, 20 one-hour jobs: 10 admitted, 10 held with reasons, listed in submission order', async () => {
    const s = await tenHeld('submit');
    expect(s.admitted).toHaveLength(10);
    const list = await call('GET', '/held?project=submit', undefined, viewer);
    expect(list.status).toBe(200);
    expect(list.body.total).toBe(10);
    expect(list.body.jobs.map((j: { jobId: string }) => j.jobId)).toEqual(s.heldLine);
    expect(list.body.jobs[0]).toMatchObject({ project: 'submit', estimatedGpuHours: 1 });
    expect(list.body.jobs[0].reason).toMatch(/^project submit: 10\.0 of 10\.0 GPU-h used or reserved; job needs 1\.0/);
    expect(list.body.jobs[0].ageSeconds).toBeGreaterThanOrEqual(0);
    // The reason as data: what it misses, by how much, and the lines it waits in.
    const overBudget = { scope: 'project:submit', code: 'over-limit', limitGpuHours: 10, usedGpuHours: 0, reservedGpuHours: 10, neededGpuHours: 1 };
    expect(list.body.jobs[0].hold).toEqual({ shortfalls: [overBudget], ahead: 0, lines: ['project:submit'], positions: [{ scope: 'project:submit', ahead: 0 }] });
    expect(list.body.jobs[1].hold).toEqual({
      shortfalls: [overBudget], ahead: 1, line: 'project:submit', lines: ['project:submit'], positions: [{ scope: 'project:submit', ahead: 1 }],
    });
    expect(list.body.jobs[1].startsWhen).toBe("starts when 1.0 GPU-h free up in project submit; after the older held job ahead of it in project submit's line");
    const bobs = await call('GET', '/held?user=bob-submit', undefined, viewer);
    expect(bobs.body.jobs.map((j: { jobId: string }) => j.jobId)).toEqual(s.heldLine.filter((id) => s.userOf(id) === 'bob-submit'));
  });

  it('raise to 15 and release: 5 admitted in submission order, 5 still held with a fresh reason', async () => {
    const { heldLine, ids } = await tenHeld('release');
    await call('PUT', '/projects/release/budget', { gpuHours: 15, reason: 'quarter-end push' });
    const r = await call('POST', '/held/release', { project: 'release' });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ considered: 10, admitted: 5, stillHeld: 5, admittedIds: heldLine.slice(0, 5) });
    const onExec = new Set(await execIds());
    expect(ids.filter((id) => onExec.has(id))).toHaveLength(15);
    expect(await heldIds('release')).toEqual(heldLine.slice(5));
    const first = (await call('GET', '/held?project=release')).body.jobs[0];
    expect(first.reason).toBe('project release: 15.0 of 15.0 GPU-h used or reserved; job needs 1.0');
    expect(first.hold).toEqual({
      shortfalls: [{ scope: 'project:release', code: 'over-limit', limitGpuHours: 15, usedGpuHours: 0, reservedGpuHours: 15, neededGpuHours: 1 }],
      ahead: 0,
      lines: ['project:release'],
      positions: [{ scope: 'project:release', ahead: 0 }],
    });
    expect((await call('GET', '/projects/release/budget')).body).toMatchObject({ limitGpuHours: 15, reservedGpuHours: 15, remainingGpuHours: 0 });
  });

  it('a new job waits behind the held ones even when room opens up', async () => {
    const { heldLine } = await fiveStillHeld('line');
    await call('PUT', '/projects/line/budget', { gpuHours: 16 });
    const late = await q.intake!.add('late', { project: 'line', user: 'ana-line', estimatedGpuHours: 1 });
    await eventually(() => late.isCompleted(), Boolean);
    expect(await heldIds('line')).toEqual([...heldLine.slice(5), late.id]);
  });

  it('override admits one held job past the budget, flagged in the ledger and the audit', async () => {
    const id = (await fiveStillHeld('override')).heldLine[7]!;
    const r = await call('POST', `/held/${id}/override`, { reason: 'demo for the board' });
    expect(r).toEqual({ status: 200, body: { jobId: id, reservedGpuHours: 1 } });
    expect(await execIds()).toContain(id);
    expect(await heldIds('override')).not.toContain(id);
    expect((await call('GET', '/projects/override/budget')).body).toMatchObject({ reservedGpuHours: 16, remainingGpuHours: -1 });
    const row = await eventually(
      async () => (await t.pool.query(`SELECT override, note FROM ledger WHERE job_id = $1 AND kind = 'reserve'`, [id])).rows,
      (rows) => rows.length === 1,
    );
    expect(row[0]).toEqual({ override: true, note: 'override by ops-alice: demo for the board' });
    const audit = (await call('GET', `/audit?target=job:${id}`)).body.entries;
    expect(audit).toMatchObject([{ actor: 'ops-alice', role: 'admin', action: 'held.override', reason: 'demo for the board', after: { override: true } }]);
  });

  it('cancel moves a held job to gpu-rejected with the admin\'s reason', async () => {
    const id = (await fiveStillHeld('cancel')).heldLine[6]!;
    const r = await call('POST', `/held/${id}/cancel`, { reason: 'duplicate submission' });
    expect(r).toEqual({ status: 200, body: { jobId: id, state: 'rejected' } });
    expect(await heldIds('cancel')).not.toContain(id);
    const rej = (await q.rejected!.getJob(`intake-${id}`))!;
    expect(rej.data.rejected).toMatchObject({ intakeJobId: id, reason: 'cancelled by ops-alice: duplicate submission', by: 'ops-alice' });
    expect(rej.data.intake).toMatchObject({ project: 'cancel', estimatedGpuHours: 1 });
    expect((await q.rejected!.getJobLogs(rej.id!)).logs[0]).toMatch(/^rejected: cancelled by ops-alice: duplicate submission \(was held: /);
    expect((await call('POST', `/held/${id}/cancel`, { reason: 'again' })).status).toBe(409);
  });

  it('audits every change with who, what, before and after', async () => {
    // The story's changes: budget 10, 15 and release, 16 and back to 15, an override and a cancel.
    const { heldLine } = await fiveStillHeld('audit');
    await call('PUT', '/projects/audit/budget', { gpuHours: 16 });
    await call('PUT', '/projects/audit/budget', { gpuHours: 15 });
    await call('POST', `/held/${heldLine[7]}/override`, { reason: 'demo for the board' });
    await call('POST', `/held/${heldLine[6]}/cancel`, { reason: 'duplicate submission' });
    const targets = ['project:audit', `job:${heldLine[7]}`, `job:${heldLine[6]}`];
    const entries = ((await call('GET', '/audit?limit=50')).body.entries as { action: string; target: string; before: unknown; after: unknown; actor: string }[])
      .filter((e) => targets.includes(e.target));
    const budget = entries.filter((e) => e.action === 'budget.set').reverse();
    expect(budget.map((e) => [e.before, e.after])).toEqual([
      [null, { limitGpuHours: 10, policy: 'hard', period: 'none' }],
      [{ limitGpuHours: 10, policy: 'hard', period: 'none' }, { limitGpuHours: 15, policy: 'hard', period: 'none' }],
      [{ limitGpuHours: 15, policy: 'hard', period: 'none' }, { limitGpuHours: 16, policy: 'hard', period: 'none' }],
      [{ limitGpuHours: 16, policy: 'hard', period: 'none' }, { limitGpuHours: 15, policy: 'hard', period: 'none' }],
    ]);
    expect(entries.find((e) => e.action === 'held.release')).toMatchObject({ target: 'project:audit', before: { held: 10 }, after: { admitted: 5, stillHeld: 5 } });
    expect(entries.map((e) => e.action).sort()).toEqual(['budget.set', 'budget.set', 'budget.set', 'budget.set', 'held.cancel', 'held.override', 'held.release']);
    expect(entries.every((e) => e.actor === 'ops-alice')).toBe(true);
  });
});

describe('who may do what', () => {
  it.each([
    ['PUT', '/projects/alpha/budget', { gpuHours: 999 }],
    ['POST', '/held/release', { all: true }],
    ['POST', `/held/x/override`, {}],
    ['POST', `/held/x/cancel`, { reason: 'no' }],
  ])('a viewer may not %s %s: 403 and nothing changes', async (method, path, body) => {
    await guarded();
    const before = [await heldIds('alpha'), (await call('GET', '/projects/alpha/budget')).body];
    const r = await call(method, path, body, viewer);
    expect(r.status).toBe(403);
    expect(r.body.error.message).toMatch(/^(PUT|POST) \/\S+ needs a manager or an admin; ops-alice \(viewer\) may not$|^ops-alice \(viewer\) may not cancel held jobs$/);
    expect([await heldIds('alpha'), (await call('GET', '/projects/alpha/budget')).body]).toEqual(before);
  });

  it('no token or a wrong one: 401', async () => {
    expect((await fetch(`${base}/held`)).status).toBe(401);
    expect((await call('GET', '/held', undefined, 'wrong-token-wrong-token')).status).toBe(401);
  });
});

describe('bad requests change nothing', () => {
  it.each([
    ['POST', '/held/release', {}, 400, 'say what to release: {"all": true}, "project", "user" (or both), or "ids"'],
    ['POST', '/held/release', { all: false }, 400, 'all must be true when given'],
    ['POST', '/held/release', { all: true, project: 'alpha' }, 400, '"all" cannot be combined with other selectors'],
    ['POST', '/held/release', { ids: 'abc' }, 400, 'ids must be an array of job ids'],
    ['POST', '/held/release', { ids: [] }, 400, 'ids may not be empty'],
    ['POST', '/held/release', { project: 'bad name' }, 400, 'project must be 1-128 characters of A-Z a-z 0-9 . _ -'],
    ['POST', '/held/release', { everything: true }, 400, 'unknown field(s): everything; say what to release: {"all": true}, "project", "user" (or both), or "ids"'],
    ['POST', '/held/nope/override', {}, 404, 'no held job nope'],
    ['POST', '/held/nope/cancel', {}, 400, 'reason is required'],
    ['POST', '/held/nope/cancel', { reason: '   ' }, 400, 'reason may not be empty'],
    ['POST', '/held/nope/cancel', { reason: 'x' }, 404, 'no held job nope'],
    ['GET', '/held?limit=0', undefined, 400, 'limit must be at least 1'],
    ['GET', '/held?limit=abc', undefined, 400, 'limit must be a number'],
    ['GET', '/held?color=red', undefined, 400, 'unknown query parameter(s): color'],
  ])('%s %s %j -> %i', async (method, path, body, status, message) => {
    await guarded();
    const before = await heldIds('alpha');
    const r = await call(method, path, body);
    expect(r).toEqual({ status, body: { error: { status, message } } });
    expect(await heldIds('alpha')).toEqual(before);
  });

  it('releasing jobs that are not held reports them and changes nothing', async () => {
    const admittedId = (await guarded()).admitted[0]!;
    const before = [await heldIds('alpha'), (await call('GET', '/projects/alpha/budget')).body];
    const r = await call('POST', '/held/release', { ids: [admittedId, 'ghost'] });
    expect(r.body).toMatchObject({ admitted: 0, notHeld: [{ jobId: admittedId, state: 'reserved' }, { jobId: 'ghost', state: 'missing' }] });
    expect([await heldIds('alpha'), (await call('GET', '/projects/alpha/budget')).body]).toEqual(before);
  });
});
